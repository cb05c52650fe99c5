//! Non-state events on SQLite, written on the calling thread with group commit.
//!
//! Through sqlx, one write costs four round trips to its SQLite thread (a ping when the
//! connection leaves the pool, the statements, their rows, a ping when it goes back), each a
//! thread wake-up costing more than the statements themselves (measured in
//! `docs/PERFORMANCE.md`). Messages are most of what a server writes, so they get a
//! connection of their own, used directly: a write is a few cached statements and a WAL
//! append (`synchronous=NORMAL`: no fsync), tens of microseconds, done inline.
//!
//! Group commit: each caller queues its event, then tries to take the connection; whoever
//! holds it writes everything queued, in batches of one transaction each, and answers every
//! caller of the batch. A caller that finds the connection taken just waits for its answer:
//! the holder looks at the queue again after letting go, so nothing queued is left behind.
//!
//! Its commits do not checkpoint the WAL (see `sqlite_checkpoint`). With `synchronous=FULL`
//! a commit waits for an fsync, so there the writing moves to a blocking-pool thread.
//!
//! The other writer is sqlx's (state events, accounts, everything else): while it holds the
//! database's write lock, `BEGIN IMMEDIATE` here fails at once (`busy_timeout` 0) and the
//! waiting moves to a blocking-pool thread, so a runtime thread never sleeps on the lock.

use crate::{
    Error, NewEvent, Persisted, Result,
    rooms::{event_columns, staged_push_actions},
    sqlite_checkpoint::Checkpointer,
};
use rusqlite::{Connection, ErrorCode, params};
use std::{
    path::Path,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};
use tokio::sync::oneshot;

/// Most events one transaction writes.
const MAX_BATCH: usize = 200;

/// How long a write waits for sqlx's writer to let go of the database, as sqlx's own does.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// An event waiting to be written: the event, its state group, whether its prev events must
/// still be the room's forward extremities (see `enqueue_on_head`), where the answer goes.
type Queued = (NewEvent, i64, bool, oneshot::Sender<Result<Persisted>>);

/// The answer to a queued event, once its transaction has committed (or failed).
pub(crate) type Answer = oneshot::Receiver<Result<Persisted>>;

pub(crate) struct SqliteMessages {
    conn: Mutex<Connection>,
    queue: Mutex<Vec<Queued>>,
    checkpoints: Checkpointer,
    /// `synchronous=FULL`: each commit waits for an fsync, which no runtime thread should.
    full_sync: bool,
}

impl std::fmt::Debug for SqliteMessages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteMessages").finish_non_exhaustive()
    }
}

impl SqliteMessages {
    /// Opens the writing connection on the database file (created and migrated by sqlx).
    pub(crate) fn open(path: &Path, full_sync: bool) -> Result<Arc<SqliteMessages>> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::ZERO)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", if full_sync { "FULL" } else { "NORMAL" })?;
        conn.pragma_update(None, "foreign_keys", true)?;
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        conn.set_prepared_statement_cache_capacity(32);
        // Plans that do not depend on bound values: no statement prepared again (see reads).
        conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
        let checkpoints = Checkpointer::start(path)?;
        let messages =
            Arc::new(SqliteMessages { conn: Mutex::new(conn), queue: Mutex::new(Vec::new()), checkpoints, full_sync });
        // Holding the connection pauses the messages; whoever holds it writes what queued
        // meanwhile once done (see `drain`), here the checkpoint thread.
        let writer = Arc::downgrade(&messages);
        messages.checkpoints.pause_writer_with(move |work| {
            let Some(messages) = writer.upgrade() else { return };
            {
                let _conn = lock(&messages.conn);
                work();
            }
            messages.drain(true);
        });
        Ok(messages)
    }

    /// Persists a non-state event whose state before (and after) is group `state`. Answers
    /// only after its transaction has committed.
    pub(crate) async fn persist(self: &Arc<Self>, event: &NewEvent, state: i64) -> Result<Persisted> {
        let (answer, answered) = oneshot::channel();
        lock(&self.queue).push((event.clone(), state, false, answer));
        self.written(answered).await
    }

    /// Queues a non-state event built on its room's forward extremities, now and in call
    /// order, so that the room's next event may be built on it before it is written (see
    /// `RoomService::send`). Its write fails with `Error::StaleHead`, changing nothing, when its
    /// prev events are by then not all extremities of the room: an event it was built on
    /// failed, or another write moved the room on. `written` writes it.
    pub(crate) fn enqueue_on_head(&self, event: NewEvent, state: i64) -> Answer {
        let (answer, answered) = oneshot::channel();
        lock(&self.queue).push((event, state, true, answer));
        answered
    }

    /// Writes what is queued (or leaves it to the thread writing already) and waits for the
    /// answer of one queued event.
    pub(crate) async fn written(self: &Arc<Self>, answered: Answer) -> Result<Persisted> {
        if self.full_sync {
            let this = Arc::clone(self);
            tokio::task::spawn_blocking(move || this.drain(true));
        } else {
            self.drain(false);
        }
        answered.await.map_err(|_| Error::Corrupt("the group commit dropped an event".into()))?
    }

    /// Runs `work` on the connection (waiting for it, and for sqlx's writer, on a
    /// blocking-pool thread), then writes the messages that queued meanwhile. For other
    /// writes that come often: they and the messages take turns in process.
    pub(crate) async fn with_connection<T: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T> {
        let this = Arc::clone(self);
        let done = tokio::task::spawn_blocking(move || {
            let result = {
                let conn = lock(&this.conn);
                conn.busy_timeout(BUSY_TIMEOUT).and_then(|()| {
                    let result = work(&conn);
                    conn.busy_timeout(Duration::ZERO)?;
                    if result.is_ok() {
                        this.checkpoints.committed();
                    }
                    result
                })
            };
            this.drain(true);
            result
        });
        Ok(done.await.map_err(|e| Error::Corrupt(format!("the writing thread failed: {e}")))??)
    }

    /// Writes what is queued while the connection is free. `may_wait`: on a blocking-pool
    /// thread, where waiting for sqlx's writer is fine; on a runtime thread a busy database
    /// hands the rest to such a thread instead.
    fn drain(self: &Arc<Self>, may_wait: bool) {
        loop {
            let conn = match self.conn.try_lock() {
                Ok(conn) => conn,
                Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
                // The holder drains again after letting go.
                Err(std::sync::TryLockError::WouldBlock) => return,
            };
            if may_wait && let Err(e) = conn.busy_timeout(BUSY_TIMEOUT) {
                tracing::warn!(error = %e, "setting the busy timeout of the message writer");
            }
            let mut handed_off = false;
            loop {
                let batch: Vec<Queued> = {
                    let mut queue = lock(&self.queue);
                    let n = queue.len().min(MAX_BATCH);
                    queue.drain(..n).collect()
                };
                if batch.is_empty() {
                    break;
                }
                if let Err(batch) = write_batch(&conn, &self.checkpoints, batch) {
                    // Busy: back to the front of the queue, for a thread that may wait.
                    lock(&self.queue).splice(0..0, batch);
                    handed_off = true;
                    break;
                }
            }
            if may_wait {
                let _ = conn.busy_timeout(Duration::ZERO);
            }
            drop(conn);
            if handed_off {
                let this = Arc::clone(self);
                tokio::task::spawn_blocking(move || this.drain(true));
                return;
            }
            if lock(&self.queue).is_empty() {
                return;
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One transaction for the batch, each event in a savepoint of its own so that a bad one
/// (a repeated transaction ID) fails alone. Gives the batch back, unanswered, when the
/// database is busy.
fn write_batch(conn: &Connection, checkpoints: &Checkpointer, batch: Vec<Queued>) -> Result<(), Vec<Queued>> {
    match run(conn, "BEGIN IMMEDIATE") {
        Ok(()) => {}
        Err(e) if e.sqlite_error_code() == Some(ErrorCode::DatabaseBusy) => return Err(batch),
        Err(e) => {
            answer_all(batch, &e);
            return Ok(());
        }
    }
    // A batch of one needs no savepoint: the transaction is the event's own.
    let alone = batch.len() == 1;
    let mut written = Vec::with_capacity(batch.len());
    // Failures are answered after the commit too: a caller looking up what the batch wrote
    // (the event of a repeated transaction ID) must find it.
    let mut failed = Vec::new();
    for (event, state, on_head, answer) in batch {
        let result = if alone {
            write_event(conn, &event, state, on_head)
        } else {
            run(conn, "SAVEPOINT message")
                .map_err(Error::from)
                .and_then(|()| write_event(conn, &event, state, on_head))
                .and_then(|stream_ordering| Ok(run(conn, "RELEASE message").map(|()| stream_ordering)?))
        };
        match result {
            Ok(stream_ordering) => written.push((answer, Persisted { stream_ordering, state_after: state })),
            Err(e) => {
                let _ = if alone {
                    run(conn, "ROLLBACK")
                } else {
                    conn.execute_batch("ROLLBACK TO message; RELEASE message")
                };
                failed.push((answer, e));
            }
        }
    }
    if !(written.is_empty() && alone) {
        match run(conn, "COMMIT") {
            Ok(()) => {
                checkpoints.committed();
                for (answer, persisted) in written {
                    let _ = answer.send(Ok(persisted));
                }
            }
            Err(e) => {
                let _ = run(conn, "ROLLBACK");
                for (answer, _) in written {
                    let _ = answer.send(Err(Error::Corrupt(format!("commit failed: {e}"))));
                }
            }
        }
    } // else rolled back already
    for (answer, e) in failed {
        let _ = answer.send(Err(e));
    }
    Ok(())
}

/// One statement without parameters, prepared once.
fn run(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

fn answer_all(batch: Vec<Queued>, error: &rusqlite::Error) {
    for (_, _, _, answer) in batch {
        let _ = answer.send(Err(Error::Corrupt(format!("could not start a transaction: {error}"))));
    }
}

/// The rows of one non-state event, as `Rooms::persist_event` writes them on every backend;
/// returns its stream position. `on_head`: its prev events must be forward extremities.
fn write_event(conn: &Connection, e: &NewEvent, state: i64, on_head: bool) -> Result<i64> {
    let stream_ordering: i64 = conn
        .prepare_cached("UPDATE counters SET value = value + 1 WHERE name = 'stream' RETURNING value")?
        .query_row([], |row| row.get(0))?;
    conn.prepare_cached(concat!(
        "INSERT INTO events (",
        event_columns!(),
        ", redacts, txn_device, txn_id) VALUES (?1, ?2, ?3, ?4, ?5, NULL, ?6, ?7, ?8, ?8, ?9, ?10, ?11, ?12)"
    ))?
    .execute(params![
        e.event_id,
        e.room_id,
        stream_ordering,
        e.depth,
        e.event_type,
        e.sender,
        e.origin_server_ts,
        state,
        e.json,
        e.redacts,
        e.txn.as_ref().map(|(device, _)| device),
        e.txn.as_ref().map(|(_, txn)| txn)
    ])?;
    let mut unlink = conn.prepare_cached("DELETE FROM forward_extremities WHERE room_id = ?1 AND event_id = ?2")?;
    let mut unlinked = 0;
    for prev in &e.prev_events {
        unlinked += unlink.execute(params![e.room_id, prev])?;
    }
    if on_head && unlinked != e.prev_events.len() {
        return Err(Error::StaleHead);
    }
    conn.prepare_cached("INSERT INTO forward_extremities (room_id, event_id) VALUES (?1, ?2)")?
        .execute(params![e.room_id, e.event_id])?;
    if let Some((relates_to, rel_type)) = &e.relation {
        conn.prepare_cached(
            "INSERT INTO event_relations (event_id, relates_to, rel_type, room_id, event_type, sender, stream_ordering)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![
            e.event_id,
            relates_to,
            rel_type,
            e.room_id,
            e.event_type,
            e.sender,
            stream_ordering
        ])?;
    }
    if let Some(actions) = staged_push_actions(&e.push_actions) {
        conn.prepare_cached(
            "INSERT INTO event_push_staging (stream_ordering, room_id, event_id, actions) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![stream_ordering, e.room_id, e.event_id, actions])?;
    }
    Ok(stream_ordering)
}
