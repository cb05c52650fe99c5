//! Users' memberships kept in memory between syncs, on SQLite.
//!
//! Every `/sync` starts from the list of the user's rooms: for a user in 200 rooms that was
//! 200 rows read, sorted and copied into strings each time, about a third of an incremental
//! sync's work (`docs/PERFORMANCE.md`), while memberships change rarely. Only on SQLite,
//! where this process is the database's only writer; with PostgreSQL several processes may
//! write, and the list is read each time.
//!
//! Correctness rests on one rule: every write that may change a row of `memberships` holds a
//! [`Changing`] guard from before its transaction begins until after it has committed (or
//! failed). While any guard is held the cache is neither read nor filled, and dropping one
//! moves the generation on, which makes everything cached before it stale. A list read
//! while no write was in progress, and stored only if none started meanwhile, is therefore
//! what the database holds whenever it is served.

use crate::MembershipRow;
use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

/// Rows kept over all users; the cache is emptied when more would be.
const MAX_ROWS: usize = 200_000;

#[derive(Debug, Default)]
pub(crate) struct MembershipCache {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    generation: u64,
    writes_in_progress: usize,
    rows: usize,
    users: HashMap<String, (u64, Arc<Vec<MembershipRow>>)>,
}

/// Held by a write that may change memberships, for as long as it runs.
pub(crate) struct Changing<'a>(&'a MembershipCache);

impl Drop for Changing<'_> {
    fn drop(&mut self) {
        let mut inner = self.0.lock();
        inner.writes_in_progress -= 1;
        inner.generation += 1;
    }
}

impl MembershipCache {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks a write of memberships as begun; it ends when the guard is dropped.
    pub(crate) fn changing(&self) -> Changing<'_> {
        self.lock().writes_in_progress += 1;
        Changing(self)
    }

    /// The user's memberships if known and current; else the generation to fill them with
    /// (None while a write is in progress: nothing may be stored then).
    pub(crate) fn get(&self, user_id: &str) -> Result<Arc<Vec<MembershipRow>>, Option<u64>> {
        let inner = self.lock();
        if inner.writes_in_progress > 0 {
            return Err(None);
        }
        match inner.users.get(user_id) {
            Some((generation, rows)) if *generation == inner.generation => Ok(rows.clone()),
            _ => Err(Some(inner.generation)),
        }
    }

    /// Stores what was read at `generation`, unless a write has begun since.
    pub(crate) fn fill(&self, user_id: &str, generation: u64, rows: Arc<Vec<MembershipRow>>) {
        let mut inner = self.lock();
        if inner.writes_in_progress > 0 || inner.generation != generation {
            return;
        }
        if inner.rows + rows.len() > MAX_ROWS {
            inner.users.clear();
            inner.rows = 0;
        }
        inner.rows += rows.len();
        if let Some((_, old)) = inner.users.insert(user_id.to_owned(), (generation, rows)) {
            inner.rows -= old.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(room: &str) -> MembershipRow {
        MembershipRow {
            room_id: room.into(),
            user_id: "@u:x".into(),
            membership: "join".into(),
            event_id: "$e".into(),
            stream_ordering: 1,
            forgotten: false,
        }
    }

    #[test]
    fn a_write_makes_the_cache_stale_and_nothing_is_stored_during_one() {
        let cache = MembershipCache::default();
        let generation = cache.get("@u:x").unwrap_err().unwrap();
        cache.fill("@u:x", generation, Arc::new(vec![row("!a:x")]));
        assert_eq!(cache.get("@u:x").unwrap().len(), 1);

        let write = cache.changing();
        assert_eq!(cache.get("@u:x").unwrap_err(), None, "not served while a write runs");
        cache.fill("@u:x", generation, Arc::new(vec![]));
        drop(write);
        let after = cache.get("@u:x").unwrap_err().expect("stale after the write");
        assert_ne!(after, generation);

        // Read before a write began, stored after it: refused.
        let write = cache.changing();
        drop(write);
        cache.fill("@u:x", after, Arc::new(vec![row("!a:x"), row("!b:x")]));
        assert!(cache.get("@u:x").is_err());
    }
}
