//! Where the stream last changed, per user and kind (account data, presence, to-device per
//! device, device lists) and per room (events and receipts), as this process saw it: an
//! incremental `/sync` asks here before querying, so a sync where nothing changed for the user
//! costs (almost) no query, and one where a room changed reads that room alone — not every
//! room that had an event anywhere on the server since the token. Positions from before the
//! process started are unknown, so tokens older than the start always query. Like the room
//! heads, this assumes one process writes the database (see ARCHITECTURE.md).
//!
//! A writer calls `begin` before its write (before it takes its stream position) and `finish`
//! after: while a write is in flight its key counts as changed, so a sync that reads the
//! stream position between the commit and `finish` cannot skip what the write added.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicI64, Ordering},
    },
};

/// Marks a key whose last write ended without saying where (its request was dropped while
/// the write may still have committed): it counts as changed from then on.
const UNKNOWN: i64 = i64::MAX;

/// Per key: the latest position recorded, and the writes in flight.
#[derive(Default)]
struct Positions(Mutex<HashMap<String, (i64, u32)>>);

impl Positions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (i64, u32)>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn begin(&self, key: &str) {
        let mut latest = self.lock();
        match latest.get_mut(key) {
            Some(entry) => entry.1 += 1,
            None => {
                latest.insert(key.to_owned(), (i64::MIN, 1));
            }
        }
    }

    fn finish(&self, key: &str, position: Option<i64>) {
        let mut latest = self.lock();
        let entry = latest.entry(key.to_owned()).or_insert((i64::MIN, 1));
        entry.1 = entry.1.saturating_sub(1);
        if let Some(position) = position {
            entry.0 = entry.0.max(position);
        }
    }

    fn latest_of(entry: Option<&(i64, u32)>) -> Option<i64> {
        entry.map(|(position, in_flight)| if *in_flight > 0 { UNKNOWN } else { *position })
    }
}

pub(crate) struct StreamChanges {
    /// Positions at or before this one are from before the start: unknown.
    start: AtomicI64,
    /// Per key of the functions below.
    keys: Positions,
    /// Per room ID: its latest event or receipt.
    rooms: Positions,
    /// Per room ID: its latest receipt.
    receipts: Positions,
}

impl StreamChanges {
    pub(crate) fn new() -> Self {
        // Until `init`, everything counts as possibly changed.
        StreamChanges {
            start: AtomicI64::new(i64::MAX),
            keys: Positions::default(),
            rooms: Positions::default(),
            receipts: Positions::default(),
        }
    }

    /// The stream position at start-up.
    pub(crate) fn init(&self, start: i64) {
        self.start.store(start, Ordering::SeqCst);
    }

    /// Whether positions after `since` are all known here.
    fn knows_since(&self, since: i64) -> bool {
        since >= self.start.load(Ordering::SeqCst)
    }

    /// A write of `key` starts.
    pub(crate) fn begin(&self, key: &str) {
        self.keys.begin(key);
    }

    /// The write of `key` that `begin` announced is over, at `position` if it succeeded.
    pub(crate) fn finish(&self, key: &str, position: Option<i64>) {
        self.keys.finish(key, position);
    }

    /// The latest position recorded for `key` since the start; `i64::MAX` while a write of it
    /// is in flight.
    pub(crate) fn latest(&self, key: &str) -> Option<i64> {
        Positions::latest_of(self.keys.lock().get(key))
    }

    /// Whether `key` may have changed after `since`.
    pub(crate) fn changed_after(&self, key: &str, since: i64) -> bool {
        !self.knows_since(since) || self.latest(key).is_some_and(|p| p > since)
    }

    /// An event or receipt of `room` is about to be written: call before the write takes its
    /// stream position, and say how it ended on the guard (`RoomWrite::ended`).
    pub(crate) fn room_write(self: &Arc<Self>, room: &str) -> RoomWrite {
        self.rooms.begin(room);
        RoomWrite { changes: Arc::clone(self), room: room.to_owned(), receipt: false, ended: false }
    }

    /// `room_write` for a receipt, which is also a change of the room's receipts.
    pub(crate) fn receipt_write(self: &Arc<Self>, room: &str) -> RoomWrite {
        self.receipts.begin(room);
        let mut write = self.room_write(room);
        write.receipt = true;
        write
    }

    /// Which of `rooms` may have had an event or receipt after `since`; None when this process
    /// cannot tell (a token from before it started).
    pub(crate) fn rooms_changed_after<'a>(
        &self,
        rooms: impl IntoIterator<Item = &'a str>,
        since: i64,
    ) -> Option<HashSet<String>> {
        self.changed_of(&self.rooms, rooms, since)
    }

    /// Which of `rooms` may have had a receipt after `since`; None when this process cannot
    /// tell.
    pub(crate) fn receipts_changed_after<'a>(
        &self,
        rooms: impl IntoIterator<Item = &'a str>,
        since: i64,
    ) -> Option<HashSet<String>> {
        self.changed_of(&self.receipts, rooms, since)
    }

    fn changed_of<'a>(
        &self,
        positions: &Positions,
        rooms: impl IntoIterator<Item = &'a str>,
        since: i64,
    ) -> Option<HashSet<String>> {
        if !self.knows_since(since) {
            return None;
        }
        let latest = positions.lock();
        Some(
            rooms
                .into_iter()
                .filter(|room| Positions::latest_of(latest.get(*room)).is_some_and(|p| p > since))
                .map(str::to_owned)
                .collect(),
        )
    }
}

/// A write of a room's event or receipt under way (see `StreamChanges::room_write`).
pub(crate) struct RoomWrite {
    changes: Arc<StreamChanges>,
    room: String,
    /// Also a change of the room's receipts.
    receipt: bool,
    ended: bool,
}

impl RoomWrite {
    /// The write committed at `position`, or (None) failed, writing nothing.
    pub(crate) fn ended(mut self, position: Option<i64>) {
        self.end(position);
    }

    fn end(&mut self, position: Option<i64>) {
        self.ended = true;
        self.changes.rooms.finish(&self.room, position);
        if self.receipt {
            self.changes.receipts.finish(&self.room, position);
        }
    }
}

impl Drop for RoomWrite {
    /// Neither: the request went away mid-write, which may have committed. The room counts as
    /// changed from now on (its syncs query it), never as quiet when it is not.
    fn drop(&mut self) {
        if !self.ended {
            self.end(Some(UNKNOWN));
        }
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
    use std::{collections::HashSet, sync::Arc};

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

    #[test]
    fn rooms_changed_after_a_position() {
        let changes = Arc::new(StreamChanges::new());
        assert_eq!(changes.rooms_changed_after(["!a"], 5), None, "before init nothing is known");
        changes.init(10);
        assert_eq!(changes.rooms_changed_after(["!a"], 9), None, "a token from before the start");
        assert_eq!(changes.rooms_changed_after(["!a", "!b"], 10), Some(HashSet::new()));
        let a = changes.room_write("!a");
        let b = changes.room_write("!b");
        assert_eq!(changes.rooms_changed_after(["!a", "!b"], 10), Some(set(&["!a", "!b"])), "in flight");
        a.ended(Some(11));
        b.ended(None);
        assert_eq!(changes.rooms_changed_after(["!a", "!b"], 10), Some(set(&["!a"])));
        assert_eq!(changes.rooms_changed_after(["!a", "!b"], 11), Some(HashSet::new()));
        drop(changes.room_write("!b"));
        assert_eq!(
            changes.rooms_changed_after(["!a", "!b"], 1_000),
            Some(set(&["!b"])),
            "a write that ended unsaid counts as changed for good"
        );
    }

    #[test]
    fn receipts_apart_from_events() {
        let changes = Arc::new(StreamChanges::new());
        changes.init(10);
        changes.room_write("!a").ended(Some(11));
        changes.receipt_write("!b").ended(Some(12));
        assert_eq!(changes.rooms_changed_after(["!a", "!b"], 10), Some(set(&["!a", "!b"])));
        assert_eq!(changes.receipts_changed_after(["!a", "!b"], 10), Some(set(&["!b"])));
        let c = changes.receipt_write("!c");
        assert_eq!(changes.receipts_changed_after(["!c"], 12), Some(set(&["!c"])), "in flight");
        drop(c);
        assert_eq!(changes.receipts_changed_after(["!c"], 1_000), Some(set(&["!c"])), "ended unsaid");
        assert_eq!(changes.receipts_changed_after(["!a"], 9), None, "a token from before the start");
    }

    fn set(rooms: &[&str]) -> HashSet<String> {
        rooms.iter().map(|r| r.to_string()).collect()
    }
}
