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

use myelin_store::EventRow;
use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque},
    sync::{
        Arc, Mutex,
        atomic::{AtomicI64, Ordering},
    },
};

/// Marks a key whose last write ended without saying where (its request was dropped while
/// the write may still have committed): it counts as changed from then on.
const UNKNOWN: i64 = i64::MAX;

/// Per key: the latest position recorded and the writes in flight, with the keys also in
/// order of their latest position and the keys in flight apart: which keys changed after a
/// position is then read off the few that did, not looked up key by key. A sync of a user in
/// 200 rooms looked up each of them in each map (hashing every room ID and comparing it with
/// a stored one, cache misses all): some 50 µs a map; the keys changed since a recent token
/// are few, and usually none.
#[derive(Default)]
struct Positions(Mutex<Keys>);

#[derive(Default)]
struct Keys {
    latest: HashMap<String, (i64, u32)>,
    /// (latest position, key) for every key with a position: one entry per key.
    by_position: BTreeSet<(i64, String)>,
    /// The keys with writes in flight.
    in_flight: HashSet<String>,
    /// The rooms' latest events (kept for the rooms' positions only).
    recent: Recent,
}

impl Keys {
    /// The keys that may have changed after `since`: a later position, or a write in flight.
    fn changed_after(&self, since: i64) -> HashSet<&str> {
        // Entries at `since` itself sort from (since, ""): skipped by the filter.
        let later = self.by_position.range((since, String::new())..).filter(|(p, _)| *p > since);
        later.map(|(_, key)| key.as_str()).chain(self.in_flight.iter().map(String::as_str)).collect()
    }
}

impl Positions {
    fn lock(&self) -> std::sync::MutexGuard<'_, Keys> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn begin(&self, key: &str) {
        let mut keys = self.lock();
        match keys.latest.get_mut(key) {
            Some(entry) => entry.1 += 1,
            None => {
                keys.latest.insert(key.to_owned(), (i64::MIN, 1));
            }
        }
        if !keys.in_flight.contains(key) {
            keys.in_flight.insert(key.to_owned());
        }
    }

    fn finish(&self, key: &str, position: Option<i64>) {
        self.finish_with(key, position, |_| {});
    }

    /// `finish`, with `also` done under the same lock: a sync that finds no write of the key
    /// in flight finds what the write left too.
    fn finish_with(&self, key: &str, position: Option<i64>, also: impl FnOnce(&mut Keys)) {
        let mut keys = self.lock();
        also(&mut keys);
        let entry = keys.latest.entry(key.to_owned()).or_insert((i64::MIN, 1));
        entry.1 = entry.1.saturating_sub(1);
        let (before, in_flight) = *entry;
        let after = position.map_or(before, |position| before.max(position));
        entry.0 = after;
        if in_flight == 0 {
            keys.in_flight.remove(key);
        }
        if after != before {
            if before != i64::MIN {
                keys.by_position.remove(&(before, key.to_owned()));
            }
            keys.by_position.insert((after, key.to_owned()));
        }
    }

    fn latest_of(entry: Option<&(i64, u32)>) -> Option<i64> {
        entry.map(|(position, in_flight)| if *in_flight > 0 { UNKNOWN } else { *position })
    }
}

/// How many of a room's latest events are kept: the default timeline of 10, and one more that
/// tells whether it is limited.
const ROWS_PER_ROOM: usize = 11;

/// How many events are kept in all: the oldest recorded go first.
const MAX_ROWS: usize = 4096;

/// The rooms' latest events, as their writers recorded them after their commits: a sync woken
/// by a new message finds it here instead of reading it back from a database whose page cache
/// the write has just emptied (that first read was a quarter of a woken sync's time,
/// `docs/PERFORMANCE.md`). A room's rows are complete above its `floor`: every event of the
/// room with a later position whose write has ended is among them. A write that ends without
/// its row (a remote event, a join over federation, a request that went away) raises the
/// floor past it, so that nothing missing is ever claimed; so do the rows let go.
#[derive(Default)]
struct Recent {
    rooms: HashMap<String, RoomRows>,
    /// (position, room) of each row recorded, oldest first.
    recorded: VecDeque<(i64, String)>,
}

struct RoomRows {
    floor: i64,
    rows: BTreeMap<i64, EventRow>,
}

impl RoomRows {
    /// Lets go of the rows at or below `position`: the room is complete above it at best.
    fn raise_floor(&mut self, position: i64) {
        self.floor = self.floor.max(position);
        // One at a time from the oldest: usually one row, and no new tree as `split_off` makes.
        while self.rows.first_key_value().is_some_and(|(oldest, _)| *oldest <= self.floor) {
            self.rows.pop_first();
        }
    }
}

impl Recent {
    /// An event of `room` committed at its row's position.
    fn record(&mut self, room: &str, row: EventRow) {
        let position = row.stream_ordering;
        // A room's first row: nothing of the room is known below it.
        let entry = self
            .rooms
            .entry(room.to_owned())
            .or_insert_with(|| RoomRows { floor: position - 1, rows: BTreeMap::new() });
        if position <= entry.floor {
            return;
        }
        entry.rows.insert(position, row);
        if entry.rows.len() > ROWS_PER_ROOM
            && let Some(oldest) = entry.rows.keys().next().copied()
        {
            entry.raise_floor(oldest);
        }
        self.recorded.push_back((position, room.to_owned()));
        while self.recorded.len() > MAX_ROWS {
            let Some((position, room)) = self.recorded.pop_front() else { break };
            if let Some(entry) = self.rooms.get_mut(&room) {
                entry.raise_floor(position);
            }
        }
    }

    /// An event of `room` committed at `position` without its row.
    fn forget(&mut self, room: &str, position: i64) {
        let entry =
            self.rooms.entry(room.to_owned()).or_insert_with(|| RoomRows { floor: position, rows: BTreeMap::new() });
        let newest = entry.rows.keys().next_back().copied().unwrap_or(i64::MIN);
        entry.raise_floor(position.max(newest));
    }

    /// The room's events after `since` up to `upto`, newest first, at most `max`; None when
    /// some of them may not be here.
    fn after(&self, room: &str, since: i64, upto: i64, max: usize) -> Option<Vec<EventRow>> {
        let entry = self.rooms.get(room)?;
        if since < entry.floor || upto <= since {
            return None;
        }
        Some(entry.rows.range(since + 1..=upto).rev().take(max).map(|(_, row)| row.clone()).collect())
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
    /// Per room ID: its latest membership change (which moves its members' device lists).
    members: Positions,
}

impl StreamChanges {
    pub(crate) fn new() -> Self {
        // Until `init`, everything counts as possibly changed.
        StreamChanges {
            start: AtomicI64::new(i64::MAX),
            keys: Positions::default(),
            rooms: Positions::default(),
            receipts: Positions::default(),
            members: Positions::default(),
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
        Positions::latest_of(self.keys.lock().latest.get(key))
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

    /// A membership change of `room` starts: its members' device lists move with it.
    pub(crate) fn begin_members(&self, room: &str) {
        self.members.begin(room);
    }

    /// The membership change of `room` that `begin_members` announced is over, at `position`
    /// if it succeeded.
    pub(crate) fn finish_members(&self, room: &str, position: Option<i64>) {
        self.members.finish(room, position);
    }

    /// Whether any of `rooms` may have had a membership change after `since`.
    pub(crate) fn members_changed_after<'a>(&self, rooms: impl IntoIterator<Item = &'a str>, since: i64) -> bool {
        self.changed_of(&self.members, rooms, since).is_none_or(|changed| !changed.is_empty())
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

    /// The latest events of `room` after `since` up to `upto`, newest first, at most `max`,
    /// when all of them are in memory: None while a write of the room is in flight or after
    /// one ended unsaid, or when `since` is older than what is kept.
    pub(crate) fn recent_events(&self, room: &str, since: i64, upto: i64, max: usize) -> Option<Vec<EventRow>> {
        if !self.knows_since(since) {
            return None;
        }
        let keys = self.rooms.lock();
        if Positions::latest_of(keys.latest.get(room)).is_some_and(|p| p == UNKNOWN) {
            return None;
        }
        keys.recent.after(room, since, upto, max)
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
        let keys = positions.lock();
        let changed = keys.changed_after(since);
        if changed.is_empty() {
            return Some(HashSet::new());
        }
        Some(rooms.into_iter().filter(|room| changed.contains(room)).map(str::to_owned).collect())
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
        self.end(position, None);
    }

    /// The write of an event committed as `row`: kept for the syncs it wakes.
    pub(crate) fn stored(mut self, row: EventRow) {
        self.end(Some(row.stream_ordering), Some(row));
    }

    fn end(&mut self, position: Option<i64>, row: Option<EventRow>) {
        self.ended = true;
        let (room, receipt) = (self.room.as_str(), self.receipt);
        self.changes.rooms.finish_with(room, position, |keys| match (position, row) {
            // A receipt adds no event.
            _ if receipt => {}
            (Some(_), Some(row)) => keys.recent.record(room, row),
            (Some(position), None) => keys.recent.forget(room, position),
            (None, _) => {}
        });
        if receipt {
            self.changes.receipts.finish(room, position);
        }
    }
}

impl Drop for RoomWrite {
    /// Neither: the request went away mid-write, which may have committed. The room counts as
    /// changed from now on (its syncs query it), never as quiet when it is not.
    fn drop(&mut self) {
        if !self.ended {
            self.end(Some(UNKNOWN), None);
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

pub(crate) const PRESENCE_KEY: &str = "pr";
pub(crate) const DEVICE_LISTS_KEY: &str = "dl";

#[cfg(test)]
mod tests {
    use super::{EventRow, Positions, StreamChanges};
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

    #[test]
    fn changed_keys_in_order_match_each_key() {
        // Begins and ends (some failed, some unsaid) in a fixed pseudo-random order: after each
        // step, the keys read off in position order are those whose own entry says changed.
        let positions = Positions::default();
        let keys = ["!a", "!b", "!c", "!d"];
        let mut open: Vec<&str> = Vec::new();
        let mut seed: u64 = 7;
        for step in 0..2_000i64 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let key = keys[(seed >> 33) as usize % keys.len()];
            if (seed >> 40).is_multiple_of(2) || open.is_empty() {
                positions.begin(key);
                open.push(key);
            } else {
                let key = open.remove((seed >> 20) as usize % open.len());
                let position = match (seed >> 50) % 5 {
                    0 => None,
                    1 if step % 97 == 0 => Some(super::UNKNOWN),
                    _ => Some(step),
                };
                positions.finish(key, position);
            }
            let inner = positions.lock();
            for since in [step - 50, step - 5, step - 1, step] {
                let changed = inner.changed_after(since);
                for key in keys {
                    let by_key = Positions::latest_of(inner.latest.get(key)).is_some_and(|p| p > since);
                    assert_eq!(changed.contains(key), by_key, "step {step}, since {since}, key {key}");
                }
            }
        }
    }

    fn row(room: &str, position: i64) -> EventRow {
        EventRow {
            event_id: format!("$e{position}"),
            room_id: room.to_owned(),
            stream_ordering: position,
            depth: position,
            event_type: "m.room.message".to_owned(),
            state_key: None,
            sender: "@u:x".to_owned(),
            origin_server_ts: 0,
            state_before: 1,
            state_after: 1,
            json: "{}".to_owned(),
        }
    }

    fn positions(rows: Option<Vec<EventRow>>) -> Option<Vec<i64>> {
        rows.map(|rows| rows.iter().map(|row| row.stream_ordering).collect())
    }

    #[test]
    fn recent_events_only_when_all_are_known() {
        let changes = Arc::new(StreamChanges::new());
        changes.init(10);
        assert_eq!(positions(changes.recent_events("!a", 10, 20, 11)), None, "nothing recorded");
        changes.room_write("!a").stored(row("!a", 11));
        changes.room_write("!a").stored(row("!a", 12));
        assert_eq!(positions(changes.recent_events("!a", 10, 12, 11)), Some(vec![12, 11]));
        assert_eq!(positions(changes.recent_events("!a", 11, 12, 11)), Some(vec![12]));
        assert_eq!(positions(changes.recent_events("!a", 10, 11, 11)), Some(vec![11]), "up to `upto` only");
        assert_eq!(positions(changes.recent_events("!a", 10, 12, 1)), Some(vec![12]), "at most `max`");
        assert_eq!(positions(changes.recent_events("!a", 9, 12, 11)), None, "a token from before the start");
        assert_eq!(positions(changes.recent_events("!a", 12, 20, 11)), Some(vec![]), "nothing new");

        let writing = changes.room_write("!a");
        assert_eq!(positions(changes.recent_events("!a", 12, 20, 11)), None, "a write in flight");
        writing.stored(row("!a", 13));
        // A receipt adds no event and takes nothing away.
        changes.receipt_write("!a").ended(Some(14));
        assert_eq!(positions(changes.recent_events("!a", 11, 20, 11)), Some(vec![13, 12]));

        // An event written without its row (a remote one, say): nothing up to it is claimed.
        changes.room_write("!a").ended(Some(15));
        assert_eq!(positions(changes.recent_events("!a", 12, 20, 11)), None);
        assert_eq!(positions(changes.recent_events("!a", 15, 20, 11)), Some(vec![]));
        changes.room_write("!a").stored(row("!a", 16));
        assert_eq!(positions(changes.recent_events("!a", 15, 20, 11)), Some(vec![16]));
        // Recorded late, below what was given up: not taken back in.
        changes.room_write("!a").stored(row("!a", 14));
        assert_eq!(positions(changes.recent_events("!a", 13, 20, 11)), None);

        // A failed write changes nothing; one that ended unsaid stops the room's rows for good.
        changes.room_write("!a").ended(None);
        assert_eq!(positions(changes.recent_events("!a", 15, 20, 11)), Some(vec![16]));
        drop(changes.room_write("!a"));
        assert_eq!(positions(changes.recent_events("!a", 16, 1_000, 11)), None);
    }

    #[test]
    fn recent_events_keep_the_latest_of_each_room() {
        let changes = Arc::new(StreamChanges::new());
        changes.init(0);
        for position in 1..=30 {
            changes.room_write("!a").stored(row("!a", position));
        }
        let newest: Vec<i64> = (20..=30).rev().collect();
        assert_eq!(positions(changes.recent_events("!a", 19, 30, 100)), Some(newest), "the latest 11");
        assert_eq!(positions(changes.recent_events("!a", 18, 30, 100)), None, "older ones let go");
        // Past the bound on all rooms, the oldest recorded go first.
        for position in 31..=(31 + super::MAX_ROWS as i64) {
            changes.room_write(&format!("!r{position}")).stored(row("!b", position));
        }
        assert_eq!(positions(changes.recent_events("!a", 29, 30, 100)), None);
        let last = 31 + super::MAX_ROWS as i64;
        assert_eq!(positions(changes.recent_events(&format!("!r{last}"), last - 1, last, 100)), Some(vec![last]));
    }

    fn set(rooms: &[&str]) -> HashSet<String> {
        rooms.iter().map(|r| r.to_string()).collect()
    }
}
