//! The Store API of Myelin: domain operations over SQLite or PostgreSQL. The only code that
//! speaks SQL; services never learn which database they run on.

mod backup;
mod db;
mod error;
mod federation;
mod keys;
mod media;
mod membership_cache;
mod meta;
mod outbox;
mod push;
mod registration_tokens;
mod rooms;
mod sqlite_checkpoint;
mod sqlite_messages;
mod sqlite_reads;
mod to_device;
mod tokens;
mod uia;
mod users;

pub mod testing;

pub use backup::{BackupKeyRow, BackupVersionRow, Backups};
pub use db::{Backend, ConnectOptions};
pub use error::{Error, Result};
pub use federation::{BackoffRow, Federation, KeyDocumentRow, OldSigningKeyRow, VerifyKeyRow};
pub use keys::{KeySignatureRow, Keys, OneTimeKeyRow};
pub use media::{CompletePending, Media, MediaRow, MediaScope, ThumbnailRow};
pub use meta::Meta;
pub use outbox::{OutboxRow, RemoteInviteRow};
pub use push::{NotificationRow, Push, UnreadRow};
pub use registration_tokens::{RegistrationToken, RegistrationTokens};
pub use rooms::{
    EventRow, MembershipRow, NewEvent, NewRoom, Persisted, PushAction, QueuedWrite, RelationRow, RoomRow, Rooms,
    StateKey, StateMap, StateReset,
};
pub use to_device::{NewToDevice, ToDevice, ToDeviceRow};
pub use tokens::{AccessTokenInfo, NewAccessToken, Tokens};
pub use uia::{UiaSession, UiaSessions};
pub use users::{DeviceRow, NewRegistration, UserRow, Users};

use db::Db;

/// A handle on the database; cheap to clone (pools inside).
#[derive(Clone, Debug)]
pub struct Store {
    db: Db,
}

impl Store {
    /// Connects to `url` (`sqlite:…` or `postgres://…`) and runs the pending migrations.
    pub async fn connect(url: &str, options: &ConnectOptions) -> Result<Store> {
        let db = Db::connect(url, options).await?;
        db.migrate().await?;
        Ok(Store { db })
    }

    pub fn backend(&self) -> Backend {
        self.db.backend()
    }

    pub fn users(&self) -> Users<'_> {
        Users(&self.db)
    }

    pub fn tokens(&self) -> Tokens<'_> {
        Tokens(&self.db)
    }

    pub fn uia(&self) -> UiaSessions<'_> {
        UiaSessions(&self.db)
    }

    pub fn registration_tokens(&self) -> RegistrationTokens<'_> {
        RegistrationTokens(&self.db)
    }

    pub fn media(&self) -> Media<'_> {
        Media(&self.db)
    }

    pub fn rooms(&self) -> Rooms<'_> {
        Rooms(&self.db)
    }

    pub fn keys(&self) -> Keys<'_> {
        Keys(&self.db)
    }

    pub fn to_device(&self) -> ToDevice<'_> {
        ToDevice(&self.db)
    }

    pub fn backups(&self) -> Backups<'_> {
        Backups(&self.db)
    }

    pub fn push(&self) -> Push<'_> {
        Push(&self.db)
    }

    pub fn federation(&self) -> Federation<'_> {
        Federation(&self.db)
    }

    pub fn meta(&self) -> Meta<'_> {
        Meta(&self.db)
    }

    /// Waits for in-flight queries and closes every connection (SQLite checkpoints its WAL).
    pub async fn close(&self) {
        self.db.close().await;
    }
}
