//! The rooms service and its event pipeline: every new event is placed on the room's latest
//! events, checked against the auth rules of its room version, persisted with the state it
//! changes, and only then acknowledged.

use crate::{
    cache::GenCache,
    completes::Completes,
    pdu::{self, BuildArgs, EventContent, Pdu},
};
use myelin_core::{Config, Error, Result, util::now_ms};
use myelin_federation::{Federation, SigningKey};
use myelin_store::{EventRow, StateMap, Store};
use ruma::{
    MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId, RoomId, RoomVersionId, UInt, UserId,
    room_version_rules::{EventsReferenceFormatVersion, RoomVersionRules},
};
use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
};

/// How many forward extremities a new event references at most.
const MAX_PREV_EVENTS: usize = 10;

pub struct RoomService {
    pub(crate) store: Store,
    pub(crate) config: Arc<Config>,
    pub(crate) key: Arc<SigningKey>,
    /// Other servers: requests, their keys, the outbound queue.
    pub(crate) federation: Arc<Federation>,
    /// The other servers with members joined to each room (where its events go); dropped at
    /// the room's next membership event.
    pub(crate) servers: Mutex<HashMap<OwnedRoomId, Arc<Vec<ruma::OwnedServerName>>>>,
    /// One lock per room: events of a room are built one after the other, each on the last.
    locks: Mutex<HashMap<OwnedRoomId, Arc<tokio::sync::Mutex<()>>>>,
    /// What the next event of each room builds on, kept from the last one (see `RoomHead`).
    heads: Arc<Mutex<HashMap<OwnedRoomId, HeadSlot>>>,
    /// Rooms' versions never change: looked up once.
    infos: Mutex<HashMap<OwnedRoomId, RoomInfo>>,
    /// Parsed events by ID. Events are immutable (redaction is applied when serving), so an
    /// entry never goes stale; the auth events of busy rooms stay here.
    pdu_cache: Arc<GenCache<String, Arc<Pdu>>>,
    /// The latest stream position persisted: long-polling `/sync` requests wait on it.
    pub(crate) stream: Arc<tokio::sync::watch::Sender<i64>>,
    pub(crate) typing: Arc<crate::typing::Typing>,
    /// Room states by state group. Groups never change once written, so an entry never goes
    /// stale; reading one otherwise walks up to 50 delta groups in the database.
    states: GenCache<i64, Arc<StateMap>>,
    /// Each room's local members whose push rules an event is matched against (see
    /// `notifications.rs`); dropped at the room's next membership event.
    pub(crate) push_members: Mutex<HashMap<OwnedRoomId, Arc<crate::notifications::RoomMembers>>>,
    /// The push-condition view of power levels events, by event ID (see `notifications.rs`).
    pub(crate) push_power_levels: GenCache<String, ruma::push::PushConditionPowerLevelsCtx>,
    /// Where the stream last changed per user and kind (see `changes.rs`).
    pub(crate) changes: Arc<crate::changes::StreamChanges>,
    /// Users' ignored users (`m.ignored_user_list`); dropped when it changes.
    pub(crate) ignored_cache: Mutex<HashMap<ruma::OwnedUserId, Arc<std::collections::HashSet<String>>>>,
    /// The presence each user was last written with and when (ms): a sync of an online user
    /// writes only now and then, and need not read it back each time.
    pub(crate) presence_written: Mutex<HashMap<ruma::OwnedUserId, (String, i64)>>,
    /// Devices' one-time key counts and unused fallback key types, as every sync reports them;
    /// dropped when the device uploads or someone claims.
    pub(crate) key_counts: Mutex<HashMap<(String, String), KeyCounts>>,
    /// Per device, the position its to-device messages were last deleted up to.
    pub(crate) to_device_acked: Mutex<HashMap<String, i64>>,
    /// Users' push rules; dropped when they change.
    pub(crate) push_rule_cache: Mutex<HashMap<ruma::OwnedUserId, Arc<ruma::push::Ruleset>>>,
    /// Set while a move of staged push actions is scheduled (see `notifications.rs`).
    pub(crate) push_rotation: Arc<std::sync::atomic::AtomicBool>,
    /// Unread counts per user and room, kept current by the writers (see `unread_cache`).
    pub(crate) unread_cache: Arc<crate::unread_cache::UnreadCache>,
    /// Rooms whose history is being fetched from other servers (one backfill per room).
    pub(crate) backfilling: Mutex<std::collections::HashSet<OwnedRoomId>>,
    /// Client transactions being sent (see `txns.rs`).
    pub(crate) txns: crate::txns::TxnsInFlight,
}

/// A device's one-time key counts by algorithm and its unused fallback key types.
pub(crate) type KeyCounts = (BTreeMap<String, u64>, Vec<String>);

/// A room's head, or the gate of the write that is about to replace it.
#[derive(Debug, Clone)]
enum HeadSlot {
    Ready(RoomHead),
    /// Locked until the event being persisted has landed and the head moved on.
    Pending(Arc<tokio::sync::Mutex<()>>),
    /// The head after messages queued but not yet written (see `append_message`): the next
    /// message builds on it; anything else waits for them to land.
    Ahead(RoomHead, Arc<Flight>),
}

/// Messages of one room built one on the other ahead of their writes.
#[derive(Debug)]
pub(crate) struct Flight {
    /// How many are not written yet, and whether one of them failed (those built on it fail
    /// in turn, in the store).
    left: Mutex<(usize, bool)>,
    /// Set once every one of them is written or has failed.
    landed: tokio::sync::watch::Sender<bool>,
}

impl Flight {
    fn new() -> Arc<Flight> {
        Arc::new(Flight { left: Mutex::new((1, false)), landed: tokio::sync::watch::Sender::new(false) })
    }

    fn failed(&self) -> bool {
        self.left.lock().unwrap_or_else(|e| e.into_inner()).1
    }

    async fn wait_landed(&self) {
        let _ = self.landed.subscribe().wait_for(|landed| *landed).await;
    }
}

/// The tip of a room's DAG as this process last wrote it: the next event's prev_events, depth
/// and the state before it. Only the process holding the room's lock writes the room (one
/// process per database until the scale-out work moves the lock to PostgreSQL), so the copy
/// in memory is the truth; it is dropped whenever a write fails, and rebuilt from the store.
#[derive(Debug, Clone)]
pub(crate) struct RoomHead {
    /// (event ID, reference hash; the hash only in room versions 1 and 2).
    pub(crate) prev_events: Vec<(OwnedEventId, String)>,
    pub(crate) depth: i64,
    pub(crate) state_group: Option<i64>,
    pub(crate) state: Arc<StateMap>,
}

/// The state cache's budget in state entries (all cached groups' entries together; a group of
/// a big room weighs its size): some tens of MB at most.
const STATE_CACHE_BUDGET: usize = 400_000;

/// Parsed events the event cache holds at most.
const PDU_CACHE_ENTRIES: usize = 40_000;

/// Power levels events whose push-condition view is kept (one per room with traffic).
const PUSH_POWER_LEVELS_ENTRIES: usize = 2_000;

/// A room this server knows, with the rules of its version.
#[derive(Debug, Clone)]
pub struct RoomInfo {
    pub room_id: OwnedRoomId,
    pub version: RoomVersionId,
    pub rules: RoomVersionRules,
}

impl RoomInfo {
    /// A room of another server in `version`, which must be one this server supports.
    pub(crate) fn remote(room_id: &RoomId, version: RoomVersionId) -> Result<RoomInfo> {
        let supported = crate::supported_room_versions().contains(&version);
        let rules = version.rules().filter(|_| supported).ok_or_else(|| {
            Error::new(
                http::StatusCode::BAD_REQUEST,
                myelin_core::ErrorKind::UnsupportedRoomVersion,
                format!("the room's version {version} is not supported here"),
            )
        })?;
        Ok(RoomInfo { room_id: room_id.to_owned(), version, rules })
    }
}

/// The device and transaction ID a client sent an event with.
#[derive(Debug, Clone)]
pub struct Txn {
    pub device_id: String,
    pub txn_id: String,
}

impl RoomService {
    pub fn new(store: Store, config: Arc<Config>, key: Arc<SigningKey>, federation: Arc<Federation>) -> Result<Self> {
        Ok(RoomService {
            store,
            config,
            key,
            federation,
            servers: Mutex::default(),
            locks: Mutex::default(),
            heads: Arc::default(),
            infos: Mutex::default(),
            pdu_cache: Arc::new(GenCache::new(PDU_CACHE_ENTRIES, |_| 1)),
            stream: Arc::new(tokio::sync::watch::Sender::new(0)),
            typing: crate::typing::Typing::new(),
            states: GenCache::new(STATE_CACHE_BUDGET, |state: &Arc<StateMap>| state.len() + 1),
            push_members: Mutex::default(),
            push_power_levels: GenCache::new(PUSH_POWER_LEVELS_ENTRIES, |_| 1),
            push_rule_cache: Mutex::default(),
            push_rotation: Arc::default(),
            unread_cache: Arc::default(),
            backfilling: Mutex::default(),
            changes: Arc::new(crate::changes::StreamChanges::new()),
            ignored_cache: Mutex::default(),
            presence_written: Mutex::default(),
            key_counts: Mutex::default(),
            to_device_acked: Mutex::default(),
            txns: Default::default(),
        })
    }

    /// Call once at start-up, before serving: positions after this one are tracked in memory.
    pub async fn start(&self) -> Result<()> {
        let now = self.store.rooms().max_stream().await?;
        self.changes.init(now);
        advance(&self.stream, now);
        Ok(())
    }

    /// Something took stream position `position` (account data, a receipt, presence).
    pub(crate) fn advance_stream(&self, position: i64) {
        advance(&self.stream, position);
    }

    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    pub(crate) async fn lock(&self, room_id: &RoomId) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
            locks.entry(room_id.to_owned()).or_default().clone()
        };
        lock.lock_owned().await
    }

    /// The room, if this server knows it.
    pub async fn room(&self, room_id: &RoomId) -> Result<Option<RoomInfo>> {
        if let Some(info) = lock_map(&self.infos).get(room_id) {
            return Ok(Some(info.clone()));
        }
        let Some(row) = self.store.rooms().room(room_id.as_str()).await? else {
            return Ok(None);
        };
        let version = RoomVersionId::try_from(row.room_version.as_str()).map_err(Error::internal)?;
        let rules = version.rules().ok_or_else(|| Error::internal(format!("room version {version} has no rules")))?;
        let info = RoomInfo { room_id: room_id.to_owned(), version, rules };
        lock_map(&self.infos).insert(room_id.to_owned(), info.clone());
        Ok(Some(info))
    }

    /// The room state in a state group, from the cache or the store.
    pub(crate) async fn state_at(&self, group: i64) -> Result<Arc<StateMap>> {
        if let Some(state) = self.states.get(&group) {
            return Ok(state);
        }
        let state = Arc::new(self.store.rooms().state_at_group(group).await?);
        self.states.insert(group, state.clone());
        Ok(state)
    }

    /// The parsed event of a row already read: from the cache, else parsed (and cached).
    pub(crate) fn pdu_of_row(&self, row: &EventRow) -> Result<Arc<Pdu>> {
        if let Some(pdu) = self.pdu_cache.get(&row.event_id) {
            return Ok(pdu);
        }
        let pdu = Arc::new(Pdu::from_stored(&row.event_id, &row.json)?);
        self.pdu_cache.insert(row.event_id.clone(), pdu.clone());
        Ok(pdu)
    }

    /// Parsed events by ID, from the cache or the store (those that exist).
    pub(crate) async fn cached_pdus(&self, event_ids: &[String]) -> Result<HashMap<String, Arc<Pdu>>> {
        let mut found = HashMap::with_capacity(event_ids.len());
        let mut missing = Vec::new();
        for id in event_ids {
            match self.pdu_cache.get(id) {
                Some(pdu) => {
                    found.insert(id.clone(), pdu);
                }
                None => missing.push(id.clone()),
            }
        }
        if !missing.is_empty() {
            for (id, pdu) in self.pdus(&missing).await? {
                let pdu = Arc::new(pdu);
                self.pdu_cache.insert(id.clone(), pdu.clone());
                found.insert(id, pdu);
            }
        }
        Ok(found)
    }

    /// The room's head as stored, from memory or rebuilt from its forward extremities in the
    /// store: waits for the room's messages in flight to land.
    pub(crate) async fn head(&self, room: &RoomInfo) -> Result<RoomHead> {
        self.head_slot(room, false).await
    }

    /// The room's head; `ahead`: the head after the room's messages in flight, unless one of
    /// them failed.
    async fn head_slot(&self, room: &RoomInfo, ahead: bool) -> Result<RoomHead> {
        loop {
            let slot = lock_map(&self.heads).get(&room.room_id).cloned();
            match slot {
                Some(HeadSlot::Ready(head)) => return Ok(head),
                Some(HeadSlot::Pending(gate)) => drop(gate.lock().await),
                Some(HeadSlot::Ahead(head, flight)) => {
                    if ahead && !flight.failed() {
                        return Ok(head);
                    }
                    flight.wait_landed().await;
                }
                None => break,
            }
        }
        let rooms = self.store.rooms();
        let mut extremities = rooms.forward_extremities(room.room_id.as_str()).await?;
        extremities.truncate(MAX_PREV_EVENTS);
        let prev_rows = rooms.events(&extremities).await?;
        // With one extremity (always, while rooms are local) the state before the new event
        // is the state after it. Several extremities need state resolution: federation.
        // With several (a remote event on a fork), the room's current state is their resolved
        // state (kept so by `persist_remote`): written as a group for the next event to follow.
        let (state_group, state) = if prev_rows.len() > 1 {
            let state = rooms.current_state(room.room_id.as_str()).await?;
            let group = rooms.save_state_group(room.room_id.as_str(), &state).await?;
            (Some(group), Arc::new(state))
        } else {
            match prev_rows.first() {
                Some(row) => (Some(row.state_after), self.state_at(row.state_after).await?),
                None => (None, Arc::new(StateMap::new())),
            }
        };
        let needs_hashes = room.rules.events_reference_format == EventsReferenceFormatVersion::V1;
        let mut prev_events = Vec::with_capacity(prev_rows.len());
        for row in &prev_rows {
            let pdu = Pdu::from_stored(&row.event_id, &row.json)?;
            let hash = if needs_hashes { pdu::reference_hash(&pdu, &room.rules)? } else { String::new() };
            prev_events.push((pdu.event_id, hash));
        }
        Ok(RoomHead {
            prev_events,
            depth: prev_rows.iter().map(|row| row.depth).max().unwrap_or(0),
            state_group,
            state,
        })
    }

    pub(crate) async fn known_room(&self, room_id: &RoomId) -> Result<RoomInfo> {
        self.room(room_id).await?.ok_or_else(|| Error::not_found("this server knows no such room"))
    }

    pub async fn pdu(&self, event_id: &str) -> Result<Option<(EventRow, Pdu)>> {
        let Some(row) = self.store.rooms().event(event_id).await? else {
            return Ok(None);
        };
        let pdu = Pdu::from_stored(&row.event_id, &row.json)?;
        Ok(Some((row, pdu)))
    }

    /// Parsed events by ID, timeline events and outliers alike (those that exist).
    pub(crate) async fn pdus(&self, event_ids: &[String]) -> Result<HashMap<String, Pdu>> {
        let rows = self.store.rooms().pdu_jsons(event_ids).await?;
        rows.into_iter().map(|(id, _, json)| Ok((id.clone(), Pdu::from_stored(&id, &json)?))).collect()
    }

    /// Event rows by ID: timeline events, and outliers for the rest (the state a join over
    /// federation brought).
    pub(crate) async fn rows_with_outliers(&self, event_ids: &[String]) -> Result<Vec<EventRow>> {
        let mut rows = self.store.rooms().events(event_ids).await?;
        if rows.len() < event_ids.len() {
            let found: std::collections::HashSet<String> = rows.iter().map(|row| row.event_id.clone()).collect();
            let missing: Vec<String> = event_ids.iter().filter(|id| !found.contains(*id)).cloned().collect();
            rows.extend(self.outlier_rows(&missing).await?);
        }
        Ok(rows)
    }

    /// Outliers (events known but not in the timeline) as event rows: no stream position, and
    /// no state group of their own.
    pub(crate) async fn outlier_rows(&self, event_ids: &[String]) -> Result<Vec<EventRow>> {
        let rows = self.store.rooms().pdu_jsons(event_ids).await?;
        let mut out = Vec::with_capacity(rows.len());
        for (event_id, room_id, json) in rows {
            let pdu = Pdu::from_stored(&event_id, &json)?;
            out.push(EventRow {
                event_id,
                room_id,
                stream_ordering: 0,
                depth: pdu.depth,
                event_type: pdu.kind.to_string(),
                state_key: pdu.state_key.clone(),
                sender: pdu.sender.to_string(),
                origin_server_ts: i64::from(pdu.origin_server_ts.0),
                state_before: 0,
                state_after: 0,
                json,
            });
        }
        Ok(out)
    }

    /// The event currently holding a state key.
    pub async fn current_state_event(
        &self,
        room_id: &RoomId,
        event_type: &str,
        state_key: &str,
    ) -> Result<Option<Pdu>> {
        let Some(id) = self.store.rooms().current_state_event_id(room_id.as_str(), event_type, state_key).await? else {
            return Ok(None);
        };
        // An outlier too: a room joined over federation has its state from before the join so.
        Ok(self.cached_pdus(std::slice::from_ref(&id)).await?.remove(&id).map(|pdu| Pdu::clone(&pdu)))
    }

    /// The auth events of a new event (the state keys the rules name for it, in `state`),
    /// as referenced in the room's version (with reference hashes in versions 1 and 2), and
    /// the events themselves.
    pub(crate) async fn auth_references(
        &self,
        room: &RoomInfo,
        state: &StateMap,
        sender: &UserId,
        content: &EventContent,
    ) -> Result<(Vec<(OwnedEventId, String)>, HashMap<String, Arc<Pdu>>)> {
        let raw_content = serde_json::value::to_raw_value(&content.content).map_err(Error::internal)?;
        let auth_types = ruma::state_res::auth_types_for_event(
            &content.kind,
            sender,
            content.state_key.as_deref(),
            &raw_content,
            &room.rules.authorization,
        )
        .map_err(|e| Error::bad_json(format!("the content is not valid for its type: {e}")))?;
        let auth_ids: Vec<String> =
            auth_types.iter().filter_map(|(t, k)| state.get(&(t.to_string(), k.clone())).cloned()).collect();
        let auth_pdus = self.cached_pdus(&auth_ids).await?;
        let needs_hashes = room.rules.events_reference_format == EventsReferenceFormatVersion::V1;
        let mut auth_events = Vec::with_capacity(auth_ids.len());
        for id in &auth_ids {
            if let Some(pdu) = auth_pdus.get(id) {
                let hash = if needs_hashes { pdu::reference_hash(pdu, &room.rules)? } else { String::new() };
                auth_events.push((pdu.event_id.clone(), hash));
            }
        }
        Ok((auth_events, auth_pdus))
    }

    /// Builds the event on the room's latest events, checks it against the auth rules, and
    /// persists it. The caller holds the room's lock.
    pub(crate) async fn append(
        &self,
        room: &RoomInfo,
        sender: &UserId,
        content: EventContent,
        txn: Option<&Txn>,
        new_room: bool,
    ) -> Result<Pdu> {
        let started = std::time::Instant::now();
        let head = self.head(room).await?;
        let Built { pdu, event, next } = self.build_on(room, &head, sender, &content, txn, new_room).await?;
        let built = started.elapsed();
        let notifies = !event.push_actions.is_empty();
        // Membership changes move device lists (see `changes.rs`): in flight until persisted.
        let is_member = pdu.kind.to_string() == "m.room.member";
        if is_member {
            self.changes.begin_members(room.room_id.as_str());
        }
        // Persisting and advancing the head run to their end even if the request is dropped
        // halfway (the client went away): never an event stored but the head behind it (see
        // `completes.rs`). Until then, the head is `Pending` and the room's next event waits.
        let gate = Arc::new(tokio::sync::Mutex::new(()));
        let held = gate.clone().try_lock_owned().map_err(Error::internal)?;
        lock_map(&self.heads).insert(room.room_id.clone(), HeadSlot::Pending(gate));
        let (store, heads, pdu_cache, stream) =
            (self.store.clone(), self.heads.clone(), self.pdu_cache.clone(), self.stream.clone());
        let (room_id, stored_pdu) = (room.room_id.clone(), pdu.clone());
        let unread = self.unread_cache.writing(room.room_id.as_str());
        let room_write = self.changes.room_write(room.room_id.as_str());
        let persisted = Completes::new(async move {
            let _held = held;
            let persisted = match store.rooms().persist_event(&event).await {
                Ok(persisted) => {
                    unread.stored(&event.push_actions, is_member);
                    room_write.stored(event.row(persisted));
                    persisted
                }
                Err(e) => {
                    room_write.ended(None);
                    // Whatever the store holds now, the next event rebuilds its head from it.
                    lock_map(&heads).remove(&room_id);
                    return Err(Error::from(e));
                }
            };
            let next = RoomHead { state_group: Some(persisted.state_after), ..next };
            // Kept parsed: state events are the auth events of what follows, and every new
            // event is in the next sync of each member, which would otherwise parse it back
            // from its JSON.
            pdu_cache.insert(stored_pdu.event_id.to_string(), Arc::new(stored_pdu));
            lock_map(&heads).insert(room_id, HeadSlot::Ready(next));
            advance(&stream, persisted.stream_ordering);
            Ok(persisted)
        })
        .await;
        if is_member {
            self.changes.finish_members(room.room_id.as_str(), persisted.as_ref().ok().map(|p| p.stream_ordering));
        }
        let persisted = persisted?;
        self.appended(room, &pdu, notifies, persisted.stream_ordering, started, built).await;
        Ok(pdu)
    }

    /// Appends a message (no state key) on SQLite, where messages are queued for one writer
    /// (see `Rooms::queue_on_head`): built on the room's head even while the messages before
    /// it are still being written, and queued before the room's lock is let go, so that the
    /// messages of a busy room are built while the ones before them are written, and commit
    /// together. Answers once it has committed, as every event.
    ///
    /// When a message fails to be written, those built on it fail in the store as stale
    /// (changing nothing) and are built again, on the head rebuilt from the store once the
    /// room's messages in flight have all landed. A message stale that often (a burst of
    /// retried transactions, each failing and taking those behind it along) is appended as a
    /// state event is: with the room's lock held from its build to its commit, after the
    /// messages in flight, where nothing can make it stale.
    pub(crate) async fn append_message(
        &self,
        room: &RoomInfo,
        sender: &UserId,
        content: &EventContent,
        txn: Option<&Txn>,
    ) -> Result<Pdu> {
        /// Builds again after a stale write; more means something keeps failing.
        const ATTEMPTS: usize = 4;
        for attempt in 1..=ATTEMPTS {
            let started = std::time::Instant::now();
            let lock = self.lock(&room.room_id).await;
            let head = self.head_slot(room, true).await?;
            let Built { pdu, event, next } = self.build_on(room, &head, sender, content, txn, false).await?;
            let built = started.elapsed();
            let notifies = !event.push_actions.is_empty();
            let actions = event.push_actions.clone();
            // Before the message is queued: a write already under way may take it along.
            let unread = self.unread_cache.writing(room.room_id.as_str());
            let room_write = self.changes.room_write(room.room_id.as_str());
            // Its row once written, for the syncs it wakes (position and state filled in then).
            let row = event.row(myelin_store::Persisted { stream_ordering: 0, state_after: 0 });
            let Ok(queued) = self.store.rooms().queue_on_head(event) else {
                room_write.ended(None);
                return Err(Error::internal("only messages on SQLite are queued"));
            };
            let flight = {
                let mut heads = lock_map(&self.heads);
                let flight = match heads.get(&room.room_id) {
                    // Built on it (the room's lock is held): one more in flight.
                    Some(HeadSlot::Ahead(_, flight)) => {
                        flight.left.lock().unwrap_or_else(|e| e.into_inner()).0 += 1;
                        flight.clone()
                    }
                    _ => Flight::new(),
                };
                heads.insert(room.room_id.clone(), HeadSlot::Ahead(next, flight.clone()));
                flight
            };
            // Others waiting for the room (the lock's Arc is held by the map, this guard and
            // each of them): see below.
            let contended = Arc::strong_count(tokio::sync::OwnedMutexGuard::mutex(&lock)) > 2;
            drop(lock);
            // As in `append`: the write and what follows it run to their end, so that a request
            // dropped halfway leaves neither the flight nor the queue waiting.
            let (heads, pdu_cache, stream) = (self.heads.clone(), self.pdu_cache.clone(), self.stream.clone());
            let (room_id, stored_pdu) = (room.room_id.clone(), pdu.clone());
            let landing = async move {
                let written = queued.written().await;
                match &written {
                    Ok(persisted) => room_write.stored(myelin_store::EventRow {
                        stream_ordering: persisted.stream_ordering,
                        state_after: persisted.state_after,
                        ..row
                    }),
                    Err(_) => room_write.ended(None),
                }
                match &written {
                    Ok(_) => {
                        unread.stored(&actions, false);
                        pdu_cache.insert(stored_pdu.event_id.to_string(), Arc::new(stored_pdu));
                    }
                    Err(_) => drop(unread),
                }
                land(&heads, &room_id, &flight, written.is_ok());
                if let Ok(persisted) = &written {
                    advance(&stream, persisted.stream_ordering);
                }
                written
            };
            // The write runs in place, unless others wait for the room: the one woken by the
            // lock just let go waits in this runtime thread's next-task slot, which no other
            // thread may take, until this one is done writing. As a task of its own the write
            // takes that slot, and the next message is built on the other thread meanwhile
            // (measured in `docs/PERFORMANCE.md`: in place, 16 senders in one room lost 15%).
            let landed = if contended {
                tokio::spawn(landing).await.map_err(Error::internal)?
            } else {
                Completes::new(landing).await
            };
            match landed {
                Ok(persisted) => {
                    self.appended(room, &pdu, notifies, persisted.stream_ordering, started, built).await;
                    return Ok(pdu);
                }
                Err(myelin_store::Error::StaleHead) if attempt < ATTEMPTS => {
                    tracing::debug!(event_id = %pdu.event_id, attempt, "built on an event that failed; building again");
                }
                Err(myelin_store::Error::StaleHead) => break,
                Err(e) => return Err(e.into()),
            }
        }
        tracing::debug!(room_id = %room.room_id, "stale {ATTEMPTS} times; appending with the room's lock held");
        let _lock = self.lock(&room.room_id).await;
        self.append(room, sender, content.clone(), txn, false).await
    }

    /// Builds an event on `head`, checks it against the auth rules, and returns it with its
    /// row and the room's head after it (its state group that of the head before it, which a
    /// state event's write replaces).
    async fn build_on(
        &self,
        room: &RoomInfo,
        head: &RoomHead,
        sender: &UserId,
        content: &EventContent,
        txn: Option<&Txn>,
        new_room: bool,
    ) -> Result<Built> {
        if head.prev_events.is_empty() && !new_room {
            return Err(Error::internal(format!("room {} has no forward extremities", room.room_id)));
        }
        let (state_before, state) = (head.state_group, &head.state);
        let depth = head.depth + 1;

        let needs_hashes = room.rules.events_reference_format == EventsReferenceFormatVersion::V1;
        let (auth_events, auth_pdus) = self.auth_references(room, state, sender, content).await?;
        let prev_events = &head.prev_events;

        let pdu = pdu::build(BuildArgs {
            room_id: &room.room_id,
            version: &room.version,
            rules: &room.rules,
            sender,
            content,
            prev_events,
            auth_events: &auth_events,
            depth,
            origin_server_ts: MilliSecondsSinceUnixEpoch(UInt::new(now_ms() as u64).unwrap_or_default()),
            server_name: &self.config.server_name,
            key: &self.key,
        })?;

        let by_id: BTreeMap<&ruma::EventId, &Arc<Pdu>> = auth_pdus.values().map(|p| (&*p.event_id, p)).collect();
        ruma::state_res::check_state_independent_auth_rules(&room.rules.authorization, &pdu, |id| {
            by_id.get(id).map(|p| Arc::clone(p))
        })
        .map_err(Error::forbidden)?;
        let by_key: HashMap<(String, String), &Arc<Pdu>> =
            auth_pdus.values().filter_map(|p| Some(((p.kind.to_string(), p.state_key.clone()?), p))).collect();
        ruma::state_res::check_state_dependent_auth_rules(&room.rules.authorization, &pdu, |t, k| {
            by_key.get(&(t.to_string(), k.to_owned())).map(|p| Arc::clone(p))
        })
        .map_err(Error::forbidden)?;
        // A user of another server invited: their server signs the invite first.
        let pdu = self.countersign_invite(room, pdu, state).await?;

        let mut event = myelin_store::NewEvent {
            event_id: pdu.event_id.to_string(),
            room_id: room.room_id.to_string(),
            depth,
            event_type: pdu.kind.to_string(),
            state_key: pdu.state_key.clone(),
            sender: sender.to_string(),
            origin_server_ts: i64::from(pdu.origin_server_ts.0),
            redacts: pdu.redacts.as_ref().map(ToString::to_string),
            json: pdu.canonical_json(),
            state_before,
            prev_events: prev_events.iter().map(|(id, _)| id.to_string()).collect(),
            txn: txn.map(|t| (t.device_id.clone(), t.txn_id.clone())),
            relation: relation_of(&content.content),
            new_room: new_room.then(|| myelin_store::NewRoom {
                room_id: room.room_id.to_string(),
                room_version: room.version.to_string(),
                creator: sender.to_string(),
                created_ts: now_ms(),
            }),
            push_actions: Vec::new(),
            current_state: None,
        };
        event.push_actions = self.push_actions(&room.room_id, &room.rules, &pdu, state).await?;
        let hash = if needs_hashes { pdu::reference_hash(&pdu, &room.rules)? } else { String::new() };
        let state = match &pdu.state_key {
            Some(state_key) => {
                let mut next = StateMap::clone(&head.state);
                next.insert((pdu.kind.to_string(), state_key.clone()), pdu.event_id.to_string());
                Arc::new(next)
            }
            None => head.state.clone(),
        };
        let next =
            RoomHead { prev_events: vec![(pdu.event_id.clone(), hash)], depth, state_group: state_before, state };
        Ok(Built { pdu, event, next })
    }

    /// What follows every local event once it is stored.
    async fn appended(
        &self,
        room: &RoomInfo,
        pdu: &Pdu,
        notifies: bool,
        stream_ordering: i64,
        started: std::time::Instant,
        built: std::time::Duration,
    ) {
        if notifies {
            self.schedule_push_rotation();
        }
        if pdu.kind.to_string() == "m.room.member" {
            self.forget_push_members(&room.room_id);
        }
        self.distribute(&room.room_id, pdu).await;
        tracing::debug!(
            event_id = %pdu.event_id,
            stream = stream_ordering,
            build_us = built.as_micros() as u64,
            persist_us = (started.elapsed() - built).as_micros() as u64,
            "persisted"
        );
    }
}

/// An event built and checked, not yet stored.
struct Built {
    pdu: Pdu,
    event: myelin_store::NewEvent,
    /// The room's head once it is stored.
    next: RoomHead,
}

/// One message of a flight is written (or failed): once the last has, the head after them is
/// the room's head as stored, or, when one failed, is dropped to be rebuilt from the store.
fn land(heads: &Mutex<HashMap<OwnedRoomId, HeadSlot>>, room_id: &RoomId, flight: &Arc<Flight>, ok: bool) {
    let mut heads = lock_map(heads);
    let mut left = flight.left.lock().unwrap_or_else(|e| e.into_inner());
    left.0 -= 1;
    left.1 |= !ok;
    if left.0 > 0 {
        return;
    }
    let failed = left.1;
    drop(left);
    let ours = matches!(heads.get(room_id), Some(HeadSlot::Ahead(_, f)) if Arc::ptr_eq(f, flight));
    if ours {
        if failed {
            heads.remove(room_id);
        } else if let Some(HeadSlot::Ahead(head, _)) = heads.remove(room_id) {
            heads.insert(room_id.to_owned(), HeadSlot::Ready(head));
        }
    }
    flight.landed.send_replace(true);
}

impl RoomService {
    /// Persists an event received from another server, checked already, whose state before
    /// it is `before` (group `before_group`). When it does not simply follow the room's head
    /// (a fork), the room's current state becomes the resolution of the new extremities'
    /// states. The caller holds the room's lock.
    pub(crate) async fn persist_remote(
        &self,
        room: &RoomInfo,
        pdu: &Pdu,
        before_group: i64,
        before: Arc<StateMap>,
    ) -> Result<()> {
        let head = self.head(room).await?;
        let mut after = StateMap::clone(&before);
        if let Some(state_key) = &pdu.state_key {
            after.insert((pdu.kind.to_string(), state_key.clone()), pdu.event_id.to_string());
        }
        let others: Vec<&OwnedEventId> =
            head.prev_events.iter().map(|(id, _)| id).filter(|id| !pdu.prev_events.contains(id)).collect();
        let linear = others.is_empty() && head.state_group == Some(before_group);
        let reset = if linear {
            None
        } else {
            let mut states = vec![after.clone()];
            let other_ids: Vec<String> = others.iter().map(|id| id.to_string()).collect();
            for row in self.store.rooms().events(&other_ids).await? {
                states.push(StateMap::clone(&*self.state_at(row.state_after).await?));
            }
            let resolved =
                if states.len() == 1 { after.clone() } else { self.resolve_states(room, &states, Some(pdu)).await? };
            Some(self.state_reset(&head.state, resolved).await?)
        };
        let json = pdu.canonical_json();
        let push_actions = self.push_actions(&room.room_id, &room.rules, pdu, &before).await?;
        let mut event = stored_event(pdu, Some(before_group), json);
        event.prev_events = pdu.prev_events.iter().map(ToString::to_string).collect();
        event.push_actions = push_actions;
        event.current_state = reset;
        let is_member = pdu.kind.to_string() == "m.room.member";
        if is_member {
            self.changes.begin_members(room.room_id.as_str());
        }
        // As for local events, the head is replaced only once the event is stored.
        lock_map(&self.heads).remove(&room.room_id);
        let unread = self.unread_cache.writing(room.room_id.as_str());
        let room_write = self.changes.room_write(room.room_id.as_str());
        let persisted = self.store.rooms().persist_event(&event).await;
        room_write.ended(persisted.as_ref().ok().map(|p| p.stream_ordering));
        if is_member {
            self.changes.finish_members(room.room_id.as_str(), persisted.as_ref().ok().map(|p| p.stream_ordering));
        }
        let persisted = persisted?;
        unread.stored(&event.push_actions, is_member || event.current_state.is_some());
        if !event.push_actions.is_empty() {
            self.schedule_push_rotation();
        }
        if pdu.state_key.is_some() {
            self.pdu_cache.insert(pdu.event_id.to_string(), Arc::new(pdu.clone()));
        }
        if linear {
            let needs_hashes = room.rules.events_reference_format == EventsReferenceFormatVersion::V1;
            let hash = if needs_hashes { pdu::reference_hash(pdu, &room.rules)? } else { String::new() };
            let next = RoomHead {
                prev_events: vec![(pdu.event_id.clone(), hash)],
                depth: pdu.depth.max(head.depth),
                state_group: Some(persisted.state_after),
                state: Arc::new(after),
            };
            lock_map(&self.heads).insert(room.room_id.clone(), HeadSlot::Ready(next));
        } else {
            // Several extremities now: their resolved state is written as a group once, here,
            // under the room's lock, rather than at every later look at the head.
            let next = self.head(room).await?;
            lock_map(&self.heads).insert(room.room_id.clone(), HeadSlot::Ready(next));
        }
        advance(&self.stream, persisted.stream_ordering);
        if is_member {
            self.forget_push_members(&room.room_id);
            self.forget_servers(&room.room_id);
        }
        Ok(())
    }

    /// The whole new current state, with the memberships that differ from `old`.
    pub(crate) async fn state_reset(&self, old: &StateMap, new: StateMap) -> Result<myelin_store::StateReset> {
        let changed: Vec<String> = new
            .iter()
            .filter(|(key, id)| key.0 == "m.room.member" && old.get(*key) != Some(*id))
            .map(|(_, id)| id.clone())
            .collect();
        let pdus = self.cached_pdus(&changed).await?;
        let memberships = pdus
            .values()
            .filter_map(|pdu| {
                let membership = pdu.content_value()["membership"].as_str()?.to_owned();
                Some((pdu.state_key.clone()?, membership, pdu.event_id.to_string()))
            })
            .collect();
        Ok(myelin_store::StateReset { state: new, memberships })
    }

    /// Forgets the room's head: the next event rebuilds it from the store.
    pub(crate) fn forget_head(&self, room_id: &RoomId) {
        lock_map(&self.heads).remove(room_id);
    }

    /// Remembers a room this server just learned of (a join over federation).
    pub(crate) fn remember_room(&self, info: RoomInfo) {
        lock_map(&self.infos).insert(info.room_id.clone(), info);
    }
}

/// An event from another server as the store takes it (no client transaction, no new room;
/// prev events, push actions and state reset left empty for the caller).
pub(crate) fn stored_event(pdu: &Pdu, state_before: Option<i64>, json: String) -> myelin_store::NewEvent {
    myelin_store::NewEvent {
        event_id: pdu.event_id.to_string(),
        room_id: pdu.room_id.to_string(),
        depth: pdu.depth,
        event_type: pdu.kind.to_string(),
        state_key: pdu.state_key.clone(),
        sender: pdu.sender.to_string(),
        origin_server_ts: i64::from(pdu.origin_server_ts.0),
        redacts: pdu.redacts.as_ref().map(ToString::to_string),
        json,
        state_before,
        prev_events: Vec::new(),
        txn: None,
        relation: relation_of(&pdu.content_value()),
        new_room: None,
        push_actions: Vec::new(),
        current_state: None,
    }
}

/// Moves the latest stream position on (never back), waking long-polling syncs.
fn advance(stream: &tokio::sync::watch::Sender<i64>, position: i64) {
    stream.send_if_modified(|latest| {
        let newer = position > *latest;
        *latest = (*latest).max(position);
        newer
    });
}

/// Locks a map shared between requests; a panic elsewhere never poisons it for good.
fn lock_map<K, V>(map: &Mutex<HashMap<K, V>>) -> std::sync::MutexGuard<'_, HashMap<K, V>> {
    map.lock().unwrap_or_else(|e| e.into_inner())
}

/// `m.relates_to` of a content: (the event related to, rel_type). Replies (`m.in_reply_to`
/// alone) are not relations in this sense.
pub(crate) fn relation_of(content: &serde_json::Value) -> Option<(String, String)> {
    let relates_to = content.get("m.relates_to")?;
    let rel_type = relates_to.get("rel_type")?.as_str()?;
    let event_id = relates_to.get("event_id")?.as_str()?;
    Some((event_id.to_owned(), rel_type.to_owned()))
}
