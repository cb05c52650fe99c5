//! Unread counts kept in memory per user and room, as Synapse keeps `event_push_summary`: a
//! sync reads a room's counts from here instead of counting its unread push actions again
//! (the largest part of an incremental sync, and one that grew with every unread message).
//!
//! Counts enter the cache from the store and are then kept current by the writers: a new
//! event adds its push actions to the counts of its room, while a receipt, a membership
//! change or a failed write drops the counts it may have changed (the next sync counts them
//! again). A count read from the store is cached only if no write of its room started or
//! ended while it was being read: each write marks its room from before it starts until it
//! is done (a guard, so a write abandoned halfway still lets go and drops the room's counts),
//! and each start and end gives the room a new generation, which a reader compares with the
//! one it saw before reading.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
};

use myelin_store::PushAction;

use crate::notifications::UnreadCounts;

/// Most (user, room) counts kept; past it the cache starts afresh (a sync counts again).
const MAX_ENTRIES: usize = 200_000;

/// A room's counts, by (user, threads counted apart).
type RoomCounts = HashMap<(String, bool), UnreadCounts>;

#[derive(Default)]
struct RoomMark {
    generation: u64,
    /// Writes of the room under way.
    writing: u32,
}

#[derive(Default)]
struct Inner {
    counts: HashMap<String, RoomCounts>,
    entries: usize,
    /// Kept when the counts start afresh: a reader's generation must stay comparable.
    marks: HashMap<String, RoomMark>,
    next_generation: u64,
}

impl Inner {
    fn bump(&mut self, room: &str) -> &mut RoomMark {
        self.next_generation += 1;
        let generation = self.next_generation;
        let mark = self.marks.entry(room.to_owned()).or_default();
        mark.generation = generation;
        mark
    }

    fn forget_room(&mut self, room: &str) {
        if let Some(room) = self.counts.remove(room) {
            self.entries -= room.len();
        }
    }
}

/// A room whose counts a reader did not find, with the room's generation when it looked.
pub(crate) struct Missing {
    pub room: String,
    generation: u64,
}

#[derive(Default)]
pub(crate) struct UnreadCache {
    inner: Mutex<Inner>,
}

impl UnreadCache {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached counts of `rooms` for the user, and the rooms to count in the store.
    pub(crate) fn lookup(
        &self,
        user: &str,
        by_thread: bool,
        rooms: &[String],
    ) -> (HashMap<String, UnreadCounts>, Vec<Missing>) {
        let inner = self.lock();
        let key = (user.to_owned(), by_thread);
        let mut found = HashMap::new();
        let mut missing = Vec::new();
        for room in rooms {
            match inner.counts.get(room).and_then(|counts| counts.get(&key)) {
                Some(counts) => {
                    found.insert(room.clone(), counts.clone());
                }
                None => {
                    let generation = inner.marks.get(room).map_or(0, |mark| mark.generation);
                    missing.push(Missing { room: room.clone(), generation });
                }
            }
        }
        (found, missing)
    }

    /// Keeps the counts read from the store for rooms `lookup` missed, those that no write
    /// touched meanwhile.
    pub(crate) fn fill(&self, user: &str, by_thread: bool, read: Vec<(Missing, UnreadCounts)>) {
        let mut inner = self.lock();
        if inner.entries + read.len() > MAX_ENTRIES {
            inner.counts.clear();
            inner.entries = 0;
            return;
        }
        for (missing, counts) in read {
            let untouched = match inner.marks.get(&missing.room) {
                Some(mark) => mark.writing == 0 && mark.generation == missing.generation,
                None => missing.generation == 0,
            };
            if untouched
                && inner.counts.entry(missing.room).or_default().insert((user.to_owned(), by_thread), counts).is_none()
            {
                inner.entries += 1;
            }
        }
    }

    /// A write to the room is about to start: an event, a receipt, a membership. Until the
    /// guard is dropped, counts of the room read from the store are not kept.
    pub(crate) fn writing(self: &Arc<Self>, room: &str) -> Writing {
        self.lock().bump(room).writing += 1;
        Writing { cache: self.clone(), room: room.to_owned(), done: Done::ForgetRoom }
    }
}

/// What a finished write leaves of its room's counts.
enum Done {
    /// Unknown (a membership, a failed or abandoned write): all of them go.
    ForgetRoom,
    /// A receipt: the user's.
    ForgetUser(String),
    /// A new event whose push actions were added: they stay.
    Keep,
}

/// A write to a room under way (see `UnreadCache::writing`).
pub(crate) struct Writing {
    cache: Arc<UnreadCache>,
    room: String,
    done: Done,
}

impl Writing {
    /// The write is a receipt of `user`: only their counts of the room change.
    pub(crate) fn receipt_of(mut self, user: &str) -> Self {
        self.done = Done::ForgetUser(user.to_owned());
        self
    }

    /// The event was stored: its push actions count for their users. Call at once after
    /// the store answers, with nothing awaited in between. A membership event (or a state
    /// reset) changes whose counts start where: the room's counts go instead.
    pub(crate) fn stored(mut self, actions: &[PushAction], changes_members: bool) {
        if changes_members {
            return;
        }
        let mut inner = self.cache.lock();
        if let Some(counts) = inner.counts.get_mut(&self.room) {
            for action in actions {
                for by_thread in [false, true] {
                    if let Some(counts) = counts.get_mut(&(action.user_id.clone(), by_thread)) {
                        add(counts, action, by_thread);
                    }
                }
            }
        }
        self.done = Done::Keep;
    }
}

impl Drop for Writing {
    fn drop(&mut self) {
        let mut inner = self.cache.lock();
        let mark = inner.bump(&self.room);
        mark.writing = mark.writing.saturating_sub(1);
        match &self.done {
            Done::ForgetRoom => inner.forget_room(&self.room),
            Done::ForgetUser(user) => {
                let mut removed = 0;
                if let Some(counts) = inner.counts.get_mut(&self.room) {
                    removed += usize::from(counts.remove(&(user.clone(), false)).is_some());
                    removed += usize::from(counts.remove(&(user.clone(), true)).is_some());
                }
                inner.entries -= removed;
            }
            Done::Keep => {}
        }
    }
}

/// One more unread event, as the store counts it: with threads apart, a threaded event
/// counts in its thread, every other in the room's main counts.
fn add(counts: &mut UnreadCounts, action: &PushAction, by_thread: bool) {
    let (notify, highlight) = (u64::from(action.notify), u64::from(action.highlight));
    match &action.thread_id {
        Some(thread) if by_thread => {
            let counts = counts.threads.entry(thread.clone()).or_default();
            counts.0 += notify;
            counts.1 += highlight;
        }
        _ => {
            counts.notification_count += notify;
            counts.highlight_count += highlight;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(user: &str, thread: Option<&str>, highlight: bool) -> PushAction {
        PushAction {
            user_id: user.to_owned(),
            notify: true,
            highlight,
            thread_id: thread.map(str::to_owned),
            actions: "[\"notify\"]".to_owned(),
        }
    }

    fn fill_one(cache: &UnreadCache, user: &str, by_thread: bool, room: &str, counts: UnreadCounts) -> bool {
        let (found, missing) = cache.lookup(user, by_thread, &[room.to_owned()]);
        assert!(found.is_empty());
        cache.fill(user, by_thread, missing.into_iter().map(|m| (m, counts.clone())).collect());
        cache.lookup(user, by_thread, &[room.to_owned()]).1.is_empty()
    }

    #[test]
    fn stored_events_add_to_the_counts_of_their_users() {
        let cache = Arc::new(UnreadCache::default());
        assert!(fill_one(&cache, "@a:x", false, "!r:x", UnreadCounts { notification_count: 2, ..Default::default() }));
        assert!(fill_one(&cache, "@a:x", true, "!r:x", UnreadCounts::default()));
        cache.writing("!r:x").stored(
            &[action("@a:x", Some("$root"), true), action("@a:x", None, false), action("@b:x", None, false)],
            false,
        );
        let (found, _) = cache.lookup("@a:x", false, &["!r:x".to_owned()]);
        assert_eq!((found["!r:x"].notification_count, found["!r:x"].highlight_count), (4, 1));
        let (found, _) = cache.lookup("@a:x", true, &["!r:x".to_owned()]);
        assert_eq!((found["!r:x"].notification_count, found["!r:x"].highlight_count), (1, 0));
        assert_eq!(found["!r:x"].threads["$root"], (1, 1));
        // @b's counts were never read: nothing is made up for them.
        assert_eq!(cache.lookup("@b:x", false, &["!r:x".to_owned()]).1.len(), 1);
    }

    #[test]
    fn a_read_during_a_write_is_not_kept() {
        let cache = Arc::new(UnreadCache::default());
        // The read starts, then a write of the room starts and ends before the read is kept.
        let (_, missing) = cache.lookup("@a:x", false, &["!r:x".to_owned()]);
        cache.writing("!r:x").stored(&[action("@a:x", None, false)], false);
        cache.fill("@a:x", false, missing.into_iter().map(|m| (m, UnreadCounts::default())).collect());
        assert_eq!(cache.lookup("@a:x", false, &["!r:x".to_owned()]).1.len(), 1);
        // A write under way when the read ends: not kept either.
        let (_, missing) = cache.lookup("@a:x", false, &["!r:x".to_owned()]);
        let writing = cache.writing("!r:x");
        cache.fill("@a:x", false, missing.into_iter().map(|m| (m, UnreadCounts::default())).collect());
        drop(writing);
        assert_eq!(cache.lookup("@a:x", false, &["!r:x".to_owned()]).1.len(), 1);
        // Nothing in between: kept.
        assert!(fill_one(&cache, "@a:x", false, "!r:x", UnreadCounts::default()));
    }

    #[test]
    fn receipts_memberships_and_failed_writes_drop_counts() {
        let cache = Arc::new(UnreadCache::default());
        let filled = |user: &str| fill_one(&cache, user, false, "!r:x", UnreadCounts::default());
        assert!(filled("@a:x") && filled("@b:x"));
        drop(cache.writing("!r:x").receipt_of("@a:x"));
        assert_eq!(cache.lookup("@a:x", false, &["!r:x".to_owned()]).1.len(), 1);
        assert!(cache.lookup("@b:x", false, &["!r:x".to_owned()]).1.is_empty());
        assert!(filled("@a:x"));
        cache.writing("!r:x").stored(&[], true);
        assert_eq!(cache.lookup("@b:x", false, &["!r:x".to_owned()]).1.len(), 1);
        assert!(filled("@a:x") && filled("@b:x"));
        // Dropped without `stored`: the write failed or was abandoned.
        drop(cache.writing("!r:x"));
        assert_eq!(cache.lookup("@a:x", false, &["!r:x".to_owned()]).1.len(), 1);
        assert_eq!(cache.lookup("@b:x", false, &["!r:x".to_owned()]).1.len(), 1);
    }
}
