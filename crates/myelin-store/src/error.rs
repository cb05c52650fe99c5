//! Errors of the store, and how they become Myelin errors.

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A row with the same key exists already.
    #[error("already exists")]
    Conflict,
    /// The registration token is used up or expired.
    #[error("registration token not usable")]
    TokenNotUsable,
    /// The user has as many pending async uploads as allowed.
    #[error("too many pending uploads")]
    TooManyPending,
    #[error("database: {0}")]
    Database(sqlx::Error),
    #[error("database: {0}")]
    Sqlite(rusqlite::Error),
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A new event's prev events were no longer the room's latest events when it came to be
    /// written (an event it was built on failed): nothing was written; build it again.
    #[error("the room moved on before the event was written")]
    StaleHead,
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

impl From<sqlx::Error> for Error {
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::Database(db) if db.is_unique_violation() => Error::Conflict,
            _ => Error::Database(error),
        }
    }
}

impl From<rusqlite::Error> for Error {
    fn from(error: rusqlite::Error) -> Self {
        use rusqlite::ffi::{SQLITE_CONSTRAINT_PRIMARYKEY, SQLITE_CONSTRAINT_UNIQUE};
        match &error {
            rusqlite::Error::SqliteFailure(e, _)
                if matches!(e.extended_code, SQLITE_CONSTRAINT_UNIQUE | SQLITE_CONSTRAINT_PRIMARYKEY) =>
            {
                Error::Conflict
            }
            _ => Error::Sqlite(error),
        }
    }
}

impl From<Error> for myelin_core::Error {
    fn from(error: Error) -> Self {
        myelin_core::Error::internal(error)
    }
}
