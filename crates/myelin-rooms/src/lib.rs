//! Rooms of Myelin: building and signing events in their room version's format, checking them
//! against the auth rules (ruma's state-res), persisting them with the state they change, and
//! reading rooms back as clients see them.

mod aliases;
mod create;
pub mod keys;
mod membership;
pub mod pdu;
mod read;
mod send;
mod service;

pub use create::{DEFAULT_ROOM_VERSION, supported_room_versions};
pub use membership::MembershipChange;
pub use read::{EventFilter, Page, Pagination, Viewer, make_token, parse_token};
pub use service::{RoomInfo, RoomService, Txn};
