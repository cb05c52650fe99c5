//! Where the stream last changed, per user and kind (account data, presence, to-device per
//! device, device lists), as this process saw it: an incremental `/sync` asks here before
//! querying, so a sync where nothing changed for the user costs (almost) no query. Positions
//! from before the process started are unknown, so tokens older than the start always query.
//! Like the room heads, this assumes one process writes the database (see ARCHITECTURE.md).
//!
//! A writer calls `begin` before its write and `finish` after: while a write is in flight its
//! key counts as changed, so a sync that reads the stream position between the commit and
//! `finish` cannot skip what the write added.

use std::{
    collections::HashMap,
    sync::{
        Mutex,
        atomic::{AtomicI64, Ordering},
    },
};

pub(crate) struct StreamChanges {
    /// Positions at or before this one are from before the start: unknown.
    start: AtomicI64,
    /// Per key: the latest position recorded, and the writes in flight.
    latest: Mutex<HashMap<String, (i64, u32)>>,
}

impl StreamChanges {
    pub(crate) fn new() -> Self {
        // Until `init`, everything counts as possibly changed.
        StreamChanges { start: AtomicI64::new(i64::MAX), latest: Mutex::default() }
    }

    /// The stream position at start-up.
    pub(crate) fn init(&self, start: i64) {
        self.start.store(start, Ordering::SeqCst);
    }

    /// A write of `key` starts.
    pub(crate) fn begin(&self, key: &str) {
        let mut latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        latest.entry(key.to_owned()).or_insert((i64::MIN, 0)).1 += 1;
    }

    /// The write of `key` that `begin` announced is over, at `position` if it succeeded.
    pub(crate) fn finish(&self, key: &str, position: Option<i64>) {
        let mut latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        let entry = latest.entry(key.to_owned()).or_insert((i64::MIN, 1));
        entry.1 = entry.1.saturating_sub(1);
        if let Some(position) = position {
            entry.0 = entry.0.max(position);
        }
    }

    /// The latest position recorded for `key` since the start; `i64::MAX` while a write of it
    /// is in flight.
    pub(crate) fn latest(&self, key: &str) -> Option<i64> {
        let latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        latest.get(key).map(|(position, in_flight)| if *in_flight > 0 { i64::MAX } else { *position })
    }

    /// Whether `key` may have changed after `since`.
    pub(crate) fn changed_after(&self, key: &str, since: i64) -> bool {
        since < self.start.load(Ordering::SeqCst) || self.latest(key).is_some_and(|p| p > since)
    }
}

/// Keys of the change index.
pub(crate) fn account_data_key(user: &str) -> String {
    format!("ad {user}")
}

pub(crate) fn to_device_key(user: &str, device: &str) -> String {
    format!("td {user} {device}")
}

pub(crate) fn members_key(room: &str) -> String {
    format!("mb {room}")
}

pub(crate) const PRESENCE_KEY: &str = "pr";
pub(crate) const DEVICE_LISTS_KEY: &str = "dl";

#[cfg(test)]
mod tests {
    use super::StreamChanges;

    #[test]
    fn unknown_before_start_known_after() {
        let changes = StreamChanges::new();
        assert!(changes.changed_after("k", 100), "before init everything may have changed");
        changes.init(10);
        assert!(changes.changed_after("k", 5), "a token from before the start");
        assert!(!changes.changed_after("k", 10));
        changes.begin("k");
        assert!(changes.changed_after("k", 1_000), "a write in flight counts as a change");
        changes.finish("k", Some(12));
        assert!(changes.changed_after("k", 11));
        assert!(!changes.changed_after("k", 12));
        changes.begin("k");
        changes.finish("k", Some(11));
        assert_eq!(changes.latest("k"), Some(12), "positions never move back");
        changes.begin("k");
        changes.finish("k", None);
        assert_eq!(changes.latest("k"), Some(12), "a failed write changes nothing");
    }
}
