//! Rooms of Myelin: building and signing events in their room version's format, checking them
//! against the auth rules (ruma's state-res), persisting them with the state they change, and
//! reading rooms back as clients see them.

mod account_data;
mod aliases;
mod cache;
mod changes;
mod completes;
mod create;
pub mod e2ee;
mod federation;
mod membership;
mod notifications;
pub mod pdu;
mod presence;
mod public;
mod push_rules;
mod read;
mod receipts;
mod relations;
mod send;
mod service;
mod sync;
mod txns;
mod typing;
mod unread_cache;
mod upgrade;

pub use create::{DEFAULT_ROOM_VERSION, supported_room_versions};
pub use federation::{JoinTemplate, PduResults, SendJoinAnswer};
pub use membership::MembershipChange;
pub use notifications::{Notification, UnreadCounts};
pub use public::DirectoryPage;
pub use read::{Context, EventFilter, Page, Pagination, Viewer, make_token, parse_sync_token, parse_token};
pub use relations::{MAX_RECURSION_DEPTH, RelationsPage, RelationsQuery};
pub use service::{RoomInfo, RoomService, Txn};
pub use sync::{MAX_SYNC_TIMEOUT, RoomUpdate, StrippedRoom, SyncOptions, SyncRooms};
