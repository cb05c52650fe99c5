//! Reads on SQLite run on the calling thread, on read-only connections of our own.
//!
//! Through sqlx each query is a message to the connection's thread, its rows messages back,
//! and a ping on that thread when the connection returns to the pool: an incremental sync of
//! ten small queries spent half its CPU time in thread switches (`docs/PERFORMANCE.md`). An
//! indexed read is microseconds of SQLite work, and WAL readers never wait for writers, so the
//! hot reads run here directly. The SQL text is the one sqlx runs on PostgreSQL: parameters
//! `$1`, `$2` … are bound by name, and rows are read by column name.

use crate::{EventRow, MembershipRow, Result};
use rusqlite::{Connection, OpenFlags, Row, ToSql, types::FromSql};
use std::{
    path::{Path, PathBuf},
    sync::{Mutex, PoisonError},
    time::Duration,
};

/// Idle connections kept; more are opened when more threads read at once.
const MAX_IDLE: usize = 8;

pub(crate) struct SqliteReads {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl std::fmt::Debug for SqliteReads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteReads").field("path", &self.path).finish_non_exhaustive()
    }
}

impl SqliteReads {
    pub(crate) fn new(path: &Path) -> SqliteReads {
        SqliteReads { path: path.to_owned(), idle: Mutex::new(Vec::new()) }
    }

    fn open(&self) -> rusqlite::Result<Connection> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
        )?;
        // Readers wait only while a WAL is being recovered after a crash.
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.set_prepared_statement_cache_capacity(64);
        Ok(conn)
    }

    /// Every row of `sql` with `params` bound to `$1`, `$2` …
    pub(crate) fn fetch_all<T: FromSqlite>(&self, sql: &str, params: &[&dyn ToSql]) -> Result<Vec<T>> {
        self.with(|conn| query(conn, sql, params))
    }

    /// Runs `work` on an idle connection (a new one when none is).
    pub(crate) fn with<T>(&self, work: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T> {
        let taken = self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let conn = match taken {
            Some(conn) => conn,
            None => self.open()?,
        };
        let result = work(&conn);
        // A connection left inside a transaction (an error halfway) is not reused.
        if conn.is_autocommit() {
            let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
            if idle.len() < MAX_IDLE {
                idle.push(conn);
            }
        }
        Ok(result?)
    }
}

/// Every row of `sql` on `conn`, with `params` bound to `$1`, `$2` …
pub(crate) fn query<T: FromSqlite>(conn: &Connection, sql: &str, params: &[&dyn ToSql]) -> rusqlite::Result<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql)?;
    for (i, param) in params.iter().enumerate() {
        if let Some(index) = stmt.parameter_index(&format!("${}", i + 1))? {
            stmt.raw_bind_parameter(index, param)?;
        }
    }
    let mut rows = stmt.raw_query();
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(T::from_sqlite(row)?);
    }
    Ok(out)
}

/// A row type read from SQLite by column name (what `sqlx::FromRow` is on PostgreSQL).
pub(crate) trait FromSqlite: Sized {
    fn from_sqlite(row: &Row<'_>) -> rusqlite::Result<Self>;
}

/// Single values and tuples, by position, as sqlx's `query_scalar` and tuple rows.
macro_rules! tuple_from_sqlite {
    ($($t:ident $i:tt),+) => {
        impl<$($t: FromSql),+> FromSqlite for ($($t,)+) {
            fn from_sqlite(row: &Row<'_>) -> rusqlite::Result<Self> {
                Ok(($(row.get::<_, $t>($i)?,)+))
            }
        }
    };
}
tuple_from_sqlite!(A 0);
tuple_from_sqlite!(A 0, B 1);
tuple_from_sqlite!(A 0, B 1, C 2);
tuple_from_sqlite!(A 0, B 1, C 2, D 3);
tuple_from_sqlite!(A 0, B 1, C 2, D 3, E 4);
tuple_from_sqlite!(A 0, B 1, C 2, D 3, E 4, F 5);

impl FromSqlite for EventRow {
    fn from_sqlite(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(EventRow {
            event_id: row.get("event_id")?,
            room_id: row.get("room_id")?,
            stream_ordering: row.get("stream_ordering")?,
            depth: row.get("depth")?,
            event_type: row.get("event_type")?,
            state_key: row.get("state_key")?,
            sender: row.get("sender")?,
            origin_server_ts: row.get("origin_server_ts")?,
            state_before: row.get("state_before")?,
            state_after: row.get("state_after")?,
            json: row.get("json")?,
        })
    }
}

impl FromSqlite for MembershipRow {
    fn from_sqlite(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(MembershipRow {
            room_id: row.get("room_id")?,
            user_id: row.get("user_id")?,
            membership: row.get("membership")?,
            event_id: row.get("event_id")?,
            stream_ordering: row.get("stream_ordering")?,
            forgotten: row.get("forgotten")?,
        })
    }
}

/// Runs a read returning every row as `$row`: on SQLite on the calling thread (see above), on
/// PostgreSQL through sqlx. `$sql` is a `&str` or `String`; each bind is `ToSql` and
/// `sqlx::Encode` alike.
macro_rules! read_all {
    ($db:expr, $row:ty, $sql:expr $(, $bind:expr)* $(,)?) => {
        match $db {
            $crate::db::Db::Sqlite { reads, .. } => {
                reads.fetch_all::<$row>(&$sql, &[$(&$bind as &dyn rusqlite::ToSql),*])?
            }
            $crate::db::Db::Postgres(pool) => {
                #[allow(unused_mut)]
                let mut query = sqlx::query_as::<_, $row>(sqlx::AssertSqlSafe($sql.to_string()));
                $(query = query.bind($bind);)*
                query.fetch_all(pool).await?
            }
        }
    };
}
pub(crate) use read_all;
