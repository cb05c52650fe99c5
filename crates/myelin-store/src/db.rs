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
            Db::Sqlite { writer, .. } => {
                let migrator = sqlite_migrator();
                announce_pending(&migrator, writer).await?;
                migrator.run(writer).await?
            }
            Db::Postgres(pool) => {
                announce_pending(&MIGRATIONS, pool).await?;
                MIGRATIONS.run(pool).await?
            }
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

/// Logs each migration about to be applied: some rebuild a table, which on a large database
/// keeps the server from answering for a while (0017: about 20 s per million events), and the
/// operator should see why.
async fn announce_pending<DB>(migrator: &sqlx::migrate::Migrator, pool: &sqlx::Pool<DB>) -> Result<()>
where
    DB: sqlx::Database,
    DB::Connection: sqlx::migrate::Migrate,
{
    use sqlx::migrate::Migrate;
    let mut conn = pool.acquire().await?;
    // Read only: creating the bookkeeping table is left to `run`, under its lock (servers
    // sharing a PostgreSQL database start at once).
    let Ok(applied) = conn.list_applied_migrations(&migrator.table_name).await else {
        tracing::info!("creating the database schema");
        return Ok(());
    };
    let applied: std::collections::HashSet<i64> = applied.iter().map(|m| m.version).collect();
    for migration in migrator.iter().filter(|m| m.migration_type.is_up_migration() && !applied.contains(&m.version)) {
        tracing::info!(version = migration.version, description = %migration.description, "applying a database migration");
    }
    Ok(())
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

    /// A database made before the SQLite-only migrations keeps its forward extremities, staged
    /// push actions and events through them, in tables of one B-tree each (events: plus the
    /// indexes they are looked up by).
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

        sqlx::query(
            "INSERT INTO events (event_id, room_id, stream_ordering, depth, event_type, state_key, sender,
                                 origin_server_ts, redacts, state_before, state_after, json, txn_device, txn_id)
             VALUES ('$a', '!r:x', 5, 1, 'm.room.message', NULL, '@u:x', 10, NULL, 1, 1, '{}', 'D', 't1'),
                    ('$b', '!r:x', 7, 2, 'm.room.redaction', NULL, '@u:x', 11, '$a', 1, 1, '{}', NULL, NULL)",
        )
        .execute(&pool)
        .await
        .unwrap();

        sqlite_migrator().run(&pool).await.unwrap();

        let events: Vec<(i64, String, Option<String>, Option<String>)> =
            sqlx::query_as("SELECT rowid, event_id, redacts, txn_id FROM events ORDER BY rowid")
                .fetch_all(&pool)
                .await
                .unwrap();
        assert_eq!(
            events,
            [(5, "$a".to_owned(), None, Some("t1".to_owned())), (7, "$b".to_owned(), Some("$a".to_owned()), None)],
            "the stream position is the rowid"
        );
        let mut event_indexes: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events' ORDER BY name",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        // One automatic index (the event ID's UNIQUE) where there were two.
        let automatic = event_indexes.iter().filter(|name| name.starts_with("sqlite_autoindex")).count();
        assert_eq!(automatic, 1, "{event_indexes:?}");
        event_indexes.retain(|name| !name.starts_with("sqlite_autoindex"));
        assert_eq!(event_indexes, ["events_by_redacts", "events_by_room", "events_by_room_ts", "events_by_txn"]);
        // The event ID and transaction keys still refuse a second event.
        let repeated = sqlx::query(
            "INSERT INTO events (event_id, room_id, stream_ordering, depth, event_type, sender, origin_server_ts,
                                 state_before, state_after, json)
             VALUES ('$a', '!r:x', 8, 3, 'm.room.message', '@u:x', 12, 1, 1, '{}')",
        )
        .execute(&pool)
        .await;
        assert!(repeated.is_err(), "a second row with the same event ID was taken");
        let repeated_txn = sqlx::query(
            "INSERT INTO events (event_id, room_id, stream_ordering, depth, event_type, sender, origin_server_ts,
                                 state_before, state_after, json, txn_device, txn_id)
             VALUES ('$c', '!r:x', 8, 3, 'm.room.message', '@u:x', 12, 1, 1, '{}', 'D', 't1')",
        )
        .execute(&pool)
        .await;
        assert!(repeated_txn.is_err(), "a second event with the same transaction ID was taken");

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
