//! WAL checkpoints on a thread of their own, for the connections that write on a runtime
//! thread (`sqlite_messages`).
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses its threshold: one
//! commit in about a hundred then copies the WAL into the database and fsyncs both, taking
//! milliseconds instead of tens of microseconds (measured in `docs/PERFORMANCE.md`). Those
//! connections turn it off and this thread does it instead, after every
//! `COMMITS_PER_CHECKPOINT` commits or `INTERVAL` after the last one, whichever is first.
//! A passive checkpoint never blocks a writer or a reader.

use crate::Result;
use rusqlite::Connection;
use std::{
    path::Path,
    sync::{
        Arc, Weak,
        atomic::{AtomicUsize, Ordering},
    },
    thread::Thread,
    time::Duration,
};

/// Commits after which a checkpoint runs at once (some 15 MB of WAL for single messages).
const COMMITS_PER_CHECKPOINT: usize = 256;

/// How long commits wait for a checkpoint when fewer come.
const INTERVAL: Duration = Duration::from_millis(200);

pub(crate) struct Checkpointer {
    /// Commits since the last checkpoint. The thread holds it weakly: it ends once this goes.
    commits: Arc<AtomicUsize>,
    thread: Thread,
}

impl Checkpointer {
    /// Starts the thread, with a connection of its own to the database at `path`.
    pub(crate) fn start(path: &Path) -> Result<Checkpointer> {
        let conn = Connection::open(path)?;
        let commits = Arc::new(AtomicUsize::new(0));
        let weak = Arc::downgrade(&commits);
        let thread = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || run(&conn, &weak))
            .map_err(|e| crate::Error::Corrupt(format!("cannot start the checkpoint thread: {e}")))?;
        Ok(Checkpointer { commits, thread: thread.thread().clone() })
    }

    /// Counts a commit of a connection with automatic checkpoints off.
    pub(crate) fn committed(&self) {
        if self.commits.fetch_add(1, Ordering::Relaxed) + 1 == COMMITS_PER_CHECKPOINT {
            self.thread.unpark();
        }
    }
}

fn run(conn: &Connection, commits: &Weak<AtomicUsize>) {
    loop {
        std::thread::park_timeout(INTERVAL);
        let Some(commits) = commits.upgrade() else { return };
        if commits.swap(0, Ordering::Relaxed) == 0 {
            continue;
        }
        drop(commits);
        // (busy, WAL frames, frames copied): only an error is of interest.
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "WAL checkpoint failed; the next one retries");
        }
    }
}
