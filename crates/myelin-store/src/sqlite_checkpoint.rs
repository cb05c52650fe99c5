//! WAL checkpoints on a thread of their own, for the connections that write on a runtime
//! thread (`sqlite_messages`).
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses its threshold: one
//! commit in about a hundred then copies the WAL into the database and fsyncs both, taking
//! milliseconds instead of tens of microseconds (measured in `docs/PERFORMANCE.md`). Those
//! connections turn it off and this thread does it instead, after every
//! `COMMITS_PER_CHECKPOINT` commits or `INTERVAL` after the last one, whichever is first.
//! A passive checkpoint never blocks a writer or a reader.
//!
//! Under a steady stream of messages the WAL never started again from its beginning: SQLite
//! restarts it when a write begins with every frame copied and no reader on it, which a
//! passive checkpoint racing the writes did not bring about (even when it copied every frame,
//! measured). The WAL grew by every commit (629 MB in one rooms benchmark), each new page
//! zeroed by the kernel first (13% of the server's samples). So after its passive checkpoint
//! this thread pauses the message writer and runs a RESTART checkpoint: the few frames
//! committed meanwhile are copied and the WAL starts again, the pause lasting that copy, two
//! fsyncs and any wait for readers still on the WAL (at most `RESTART_WAIT_STEPS` steps).

use crate::Result;
use rusqlite::Connection;
use std::{
    path::Path,
    sync::{
        Arc, OnceLock, Weak,
        atomic::{AtomicUsize, Ordering},
    },
    thread::Thread,
    time::Duration,
};

/// Runs the given work while no message is written (see `Checkpointer::pause_writer_with`).
type PauseWriter = Box<dyn Fn(&mut dyn FnMut()) + Send + Sync>;

/// Commits after which a checkpoint runs at once (some 15 MB of WAL for single messages).
const COMMITS_PER_CHECKPOINT: usize = 256;

/// How long commits wait for a checkpoint when fewer come.
const INTERVAL: Duration = Duration::from_millis(200);

/// How long a checkpoint that starts the WAL again waits for readers still on it (and for
/// sqlx's writer), the message writer paused meanwhile: 20 ms, in steps of 50 µs (SQLite's
/// own busy timeout sleeps a millisecond at least, and most readers are done sooner).
const RESTART_WAIT_STEPS: i32 = 400;
const RESTART_WAIT_STEP: Duration = Duration::from_micros(50);

fn wait_briefly(attempt: i32) -> bool {
    std::thread::sleep(RESTART_WAIT_STEP);
    attempt < RESTART_WAIT_STEPS
}

pub(crate) struct Checkpointer {
    /// Commits since the last checkpoint. The thread holds it weakly: it ends once this goes.
    commits: Arc<AtomicUsize>,
    pause_writer: Arc<OnceLock<PauseWriter>>,
    thread: Thread,
}

impl Checkpointer {
    /// Starts the thread, with a connection of its own to the database at `path`.
    pub(crate) fn start(path: &Path) -> Result<Checkpointer> {
        let conn = Connection::open(path)?;
        conn.busy_handler(Some(wait_briefly))?;
        let commits = Arc::new(AtomicUsize::new(0));
        let weak = Arc::downgrade(&commits);
        let pause_writer: Arc<OnceLock<PauseWriter>> = Arc::default();
        let pause = pause_writer.clone();
        let thread = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || run(&conn, &weak, &pause))
            .map_err(|e| crate::Error::Corrupt(format!("cannot start the checkpoint thread: {e}")))?;
        Ok(Checkpointer { commits, pause_writer, thread: thread.thread().clone() })
    }

    /// How the thread pauses the message writer: `pause` runs the work it is given while no
    /// message is written. Set once, by the writer.
    pub(crate) fn pause_writer_with(&self, pause: impl Fn(&mut dyn FnMut()) + Send + Sync + 'static) {
        let _ = self.pause_writer.set(Box::new(pause));
    }

    /// Counts a commit of a connection with automatic checkpoints off.
    pub(crate) fn committed(&self) {
        if self.commits.fetch_add(1, Ordering::Relaxed) + 1 == COMMITS_PER_CHECKPOINT {
            self.thread.unpark();
        }
    }
}

fn run(conn: &Connection, commits: &Weak<AtomicUsize>, pause_writer: &OnceLock<PauseWriter>) {
    loop {
        std::thread::park_timeout(INTERVAL);
        let Some(commits) = commits.upgrade() else { return };
        if commits.swap(0, Ordering::Relaxed) == 0 {
            continue;
        }
        drop(commits);
        checkpoint(conn, "PASSIVE");
        // The frames committed while it ran, and the WAL started again, with the message
        // writer paused (see the module's doc). sqlx's writer and readers are not paused: a
        // RESTART waits for them.
        if let Some(pause) = pause_writer.get() {
            pause(&mut || checkpoint(conn, "RESTART"));
        }
    }
}

/// A checkpoint; (busy, WAL frames, frames copied): only an error is of interest (a busy
/// RESTART, readers still on the WAL after `RESTART_WAIT_STEPS`, is tried again next time).
fn checkpoint(conn: &Connection, mode: &str) {
    // Cached: preparing a PRAGMA loads the schema first, which costs more than the PRAGMA.
    let sql = format!("PRAGMA wal_checkpoint({mode})");
    if let Err(e) = conn.prepare_cached(&sql).and_then(|mut statement| statement.query_row([], |_| Ok(()))) {
        tracing::warn!(error = %e, "WAL checkpoint failed; the next one retries");
    }
}
