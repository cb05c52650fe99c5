//! The two backends behind one enum, and `on_db!`, which runs the same SQL text on either.
//! SQL is written once in the dialect both engines accept (`$1` parameters, `ON CONFLICT`,
//! `RETURNING`), migrations included (`migrations/`). What only SQLite needs is in
//! `migrations-sqlite/`, numbered in the same sequence: SQLite runs both lists as one.

use sqlx::{
    PgPool, SqlitePool,
    postgres::PgPoolOptions,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};
use std::{str::FromStr, time::Duration};

use crate::Result;

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");
static SQLITE_ONLY_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations-sqlite");

/// Both engines' migrations and SQLite's own, in version order.
fn sqlite_migrator() -> sqlx::migrate::Migrator {
    sqlx::migrate::Migrator::with_migrations(MIGRATIONS.iter().chain(SQLITE_ONLY_MIGRATIONS.iter()).cloned().collect())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// How to open the database.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub max_connections: u32,
    /// SQLite: fsync on every commit instead of only at WAL checkpoints.
    pub sqlite_full_sync: bool,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions { max_connections: 16, sqlite_full_sync: false }
    }
}

#[derive(Clone, Debug)]
pub(crate) enum Db {
    /// SQLite allows one writer at a time: writes go through a single connection (so they queue
    /// in-process instead of failing with SQLITE_BUSY) and reads use a pool of their own.
    Sqlite {
        writer: SqlitePool,
        reader: SqlitePool,
        /// The writer of non-state events, used on the calling thread (see `sqlite_messages`).
        messages: std::sync::Arc<crate::sqlite_messages::SqliteMessages>,
        /// Connections for the hot reads, used on the calling thread (see `sqlite_reads`).
        reads: std::sync::Arc<crate::sqlite_reads::SqliteReads>,
        /// Users' memberships between syncs (see `membership_cache`).
        memberships: std::sync::Arc<crate::membership_cache::MembershipCache>,
    },
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to the backend's pool: `read` or `write` picks the SQLite
/// pool; PostgreSQL has one pool for both.
macro_rules! on_db {
    ($db:expr, read, |$pool:ident| $body:expr) => {
        match $db {
            $crate::db::Db::Sqlite { reader: $pool, .. } => $body,
            $crate::db::Db::Postgres($pool) => $body,
        }
    };
    ($db:expr, write, |$pool:ident| $body:expr) => {
        match $db {
            $crate::db::Db::Sqlite { writer: $pool, .. } => $body,
            $crate::db::Db::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_db;

/// Takes the next value of a counter inside the caller's transaction.
macro_rules! next_counter {
    ($tx:expr, $name:expr) => {
        sqlx::query_scalar::<_, i64>("UPDATE counters SET value = value + 1 WHERE name = $1 RETURNING value")
            .bind($name)
            .fetch_one(&mut *$tx)
            .await?
    };
}
pub(crate) use next_counter;

impl Db {
    pub(crate) async fn connect(url: &str, options: &ConnectOptions) -> Result<Db> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = PgPoolOptions::new()
                .max_connections(options.max_connections)
                .acquire_timeout(Duration::from_secs(30))
                .connect(url)
                .await?;
            return Ok(Db::Postgres(pool));
        }
        let connect = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(if options.sqlite_full_sync { SqliteSynchronous::Full } else { SqliteSynchronous::Normal })
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        // No ping before handing out a connection: a local file does not go away, and each
        // ping is a round trip to the connection's thread.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .connect_with(connect.clone())
            .await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(options.max_connections.clamp(1, 8))
            .test_before_acquire(false)
            .connect_with(connect.clone().read_only(true))
            .await?;
        let messages = crate::sqlite_messages::SqliteMessages::open(connect.get_filename(), options.sqlite_full_sync)?;
        let reads = std::sync::Arc::new(crate::sqlite_reads::SqliteReads::new(connect.get_filename()));
        let memberships = std::sync::Arc::default();
        Ok(Db::Sqlite { writer, reader, messages, reads, memberships })
    }

    /// To hold while a write that may change memberships runs (see `membership_cache`).
    pub(crate) fn memberships_changing(&self) -> Option<crate::membership_cache::Changing<'_>> {
        match self {
            Db::Sqlite { memberships, .. } => Some(memberships.changing()),
            Db::Postgres(_) => None,
        }
    }

    pub(crate) async fn migrate(&self) -> Result<()> {
        match self {
            Db::Sqlite { writer, .. } => sqlite_migrator().run(writer).await?,
            Db::Postgres(pool) => MIGRATIONS.run(pool).await?,
        }
        Ok(())
    }

    pub(crate) fn backend(&self) -> Backend {
        match self {
            Db::Sqlite { .. } => Backend::Sqlite,
            Db::Postgres(_) => Backend::Postgres,
        }
    }

    pub(crate) async fn close(&self) {
        match self {
            Db::Sqlite { writer, reader, .. } => {
                reader.close().await;
                writer.close().await;
            }
            Db::Postgres(pool) => pool.close().await,
        }
    }
}

/// Starts a transaction that will write. On SQLite it takes the write lock at once
/// (`BEGIN IMMEDIATE`), so a concurrent writer in another process (the admin CLI) makes it
/// wait under `busy_timeout` instead of failing halfway.
pub(crate) trait BeginWrite {
    type Database: sqlx::Database;
    fn begin_write(
        &self,
    ) -> impl Future<Output = Result<sqlx::Transaction<'static, Self::Database>, sqlx::Error>> + Send;
}

impl BeginWrite for SqlitePool {
    type Database = sqlx::Sqlite;
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
        self.begin_with("BEGIN IMMEDIATE").await
    }
}

impl BeginWrite for PgPool {
    type Database = sqlx::Postgres;
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
        self.begin().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SQLite runs the shared and its own migrations as one list: a version in both would be
    /// applied once and then fail the other's checksum at every start.
    #[test]
    fn sqlite_only_migrations_take_versions_of_their_own() {
        for own in SQLITE_ONLY_MIGRATIONS.iter() {
            assert!(!MIGRATIONS.version_exists(own.version), "version {} is in both lists", own.version);
        }
        let versions: Vec<i64> = sqlite_migrator().iter().map(|m| m.version).collect();
        assert!(versions.windows(2).all(|pair| pair[0] < pair[1]), "not in order: {versions:?}");
        assert_eq!(versions.len(), MIGRATIONS.iter().count() + SQLITE_ONLY_MIGRATIONS.iter().count());
    }

    /// A database made before the SQLite-only migrations keeps its forward extremities and
    /// staged push actions through them, in tables of one B-tree each.
    #[tokio::test]
    async fn sqlite_only_migrations_keep_the_rows() {
        let dir = tempfile::tempdir().unwrap();
        let options = SqliteConnectOptions::new().filename(dir.path().join("old.db")).create_if_missing(true);
        let pool = SqlitePoolOptions::new().max_connections(1).connect_with(options).await.unwrap();
        MIGRATIONS.run(&pool).await.unwrap();
        sqlx::query("INSERT INTO forward_extremities (room_id, event_id) VALUES ('!r:x', '$a'), ('!r:x', '$b')")
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query("INSERT INTO event_push_staging (stream_ordering, room_id, event_id, actions) VALUES (7, '!r:x', '$b', '[]')")
            .execute(&pool)
            .await
            .unwrap();

        sqlite_migrator().run(&pool).await.unwrap();

        let extremities: Vec<(String, String)> =
            sqlx::query_as("SELECT room_id, event_id FROM forward_extremities ORDER BY event_id")
                .fetch_all(&pool)
                .await
                .unwrap();
        assert_eq!(extremities, [("!r:x".to_owned(), "$a".to_owned()), ("!r:x".to_owned(), "$b".to_owned())]);
        let staged: (i64, String, String) =
            sqlx::query_as("SELECT rowid, event_id, actions FROM event_push_staging").fetch_one(&pool).await.unwrap();
        assert_eq!(staged, (7, "$b".to_owned(), "[]".to_owned()), "the stream position is the rowid");
        // No second B-tree left beside either table.
        let indexes: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name IN ('forward_extremities', 'event_push_staging')",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        assert_eq!(indexes, Vec::<String>::new());
    }
}
