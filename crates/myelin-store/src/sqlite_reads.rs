//! Reads on SQLite run on the calling thread, on read-only connections of our own.
//!
//! Through sqlx each query is a message to the connection's thread, its rows messages back,
//! and a ping on that thread when the connection returns to the pool: an incremental sync of
//! ten small queries spent half its CPU time in thread switches (`docs/PERFORMANCE.md`). An
//! indexed read is microseconds of SQLite work, and WAL readers never wait for writers, so the
//! hot reads run here directly. The SQL text is the one sqlx runs on PostgreSQL: parameters
//! `$1`, `$2` … are bound by name, and rows are read by column name (looked up once per
//! query, not once per value: by name, each value was a scan of the column names).

use crate::{AccessTokenInfo, EventRow, MembershipRow, Result};
use rusqlite::{Connection, OpenFlags, Row, Statement, ToSql, config::DbConfig, types::FromSql};
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
        // Query planner stability: a plan never depends on the values bound. Without it a
        // bound `LIMIT $2` marks the statement to be prepared again at every new value, and
        // preparing was a seventh of an initial sync's CPU time (`docs/PERFORMANCE.md`).
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
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
    let layout = T::layout(&stmt)?;
    let mut rows = stmt.raw_query();
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(T::from_sqlite(row, &layout)?);
    }
    Ok(out)
}

/// A row type read from SQLite by column name (what `sqlx::FromRow` is on PostgreSQL).
pub(crate) trait FromSqlite: Sized {
    /// Where the columns are in a statement's rows, found once per query.
    type Layout;
    fn layout(stmt: &Statement<'_>) -> rusqlite::Result<Self::Layout>;
    fn from_sqlite(row: &Row<'_>, layout: &Self::Layout) -> rusqlite::Result<Self>;
}

/// The positions of named columns in a statement's rows.
fn positions<const N: usize>(stmt: &Statement<'_>, names: [&str; N]) -> rusqlite::Result<[usize; N]> {
    let mut out = [0; N];
    for (slot, name) in out.iter_mut().zip(names) {
        *slot = stmt.column_index(name)?;
    }
    Ok(out)
}

/// Single values and tuples, by position, as sqlx's `query_scalar` and tuple rows.
macro_rules! tuple_from_sqlite {
    ($($t:ident $i:tt),+) => {
        impl<$($t: FromSql),+> FromSqlite for ($($t,)+) {
            type Layout = ();
            fn layout(_: &Statement<'_>) -> rusqlite::Result<()> {
                Ok(())
            }
            fn from_sqlite(row: &Row<'_>, _: &()) -> rusqlite::Result<Self> {
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
    type Layout = [usize; 11];
    fn layout(stmt: &Statement<'_>) -> rusqlite::Result<[usize; 11]> {
        positions(
            stmt,
            [
                "event_id",
                "room_id",
                "stream_ordering",
                "depth",
                "event_type",
                "state_key",
                "sender",
                "origin_server_ts",
                "state_before",
                "state_after",
                "json",
            ],
        )
    }
    fn from_sqlite(row: &Row<'_>, at: &[usize; 11]) -> rusqlite::Result<Self> {
        Ok(EventRow {
            event_id: row.get(at[0])?,
            room_id: row.get(at[1])?,
            stream_ordering: row.get(at[2])?,
            depth: row.get(at[3])?,
            event_type: row.get(at[4])?,
            state_key: row.get(at[5])?,
            sender: row.get(at[6])?,
            origin_server_ts: row.get(at[7])?,
            state_before: row.get(at[8])?,
            state_after: row.get(at[9])?,
            json: row.get(at[10])?,
        })
    }
}

impl FromSqlite for MembershipRow {
    type Layout = [usize; 6];
    fn layout(stmt: &Statement<'_>) -> rusqlite::Result<[usize; 6]> {
        positions(stmt, ["room_id", "user_id", "membership", "event_id", "stream_ordering", "forgotten"])
    }
    fn from_sqlite(row: &Row<'_>, at: &[usize; 6]) -> rusqlite::Result<Self> {
        Ok(MembershipRow {
            room_id: row.get(at[0])?,
            user_id: row.get(at[1])?,
            membership: row.get(at[2])?,
            event_id: row.get(at[3])?,
            stream_ordering: row.get(at[4])?,
            forgotten: row.get(at[5])?,
        })
    }
}

impl FromSqlite for AccessTokenInfo {
    type Layout = [usize; 6];
    fn layout(stmt: &Statement<'_>) -> rusqlite::Result<[usize; 6]> {
        positions(stmt, ["user_id", "device_id", "expires_ts", "refresh_token_hash", "used", "is_admin"])
    }
    fn from_sqlite(row: &Row<'_>, at: &[usize; 6]) -> rusqlite::Result<Self> {
        Ok(AccessTokenInfo {
            user_id: row.get(at[0])?,
            device_id: row.get(at[1])?,
            expires_ts: row.get(at[2])?,
            refresh_token_hash: row.get(at[3])?,
            used: row.get(at[4])?,
            is_admin: row.get(at[5])?,
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
