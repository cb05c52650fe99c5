//! `/sync` for rooms: what changed in the user's rooms since a token, waiting (long-poll) until
//! something does. Tokens are stream positions (`s<N>`, the same as `/messages` uses, so a
//! `prev_batch` from sync pages on with `/messages`); they stay valid across restarts.

use crate::{
    read::{EventFilter, Viewer, Visibility, make_token, parse_sync_token},
    service::RoomService,
};
use myelin_core::{Error, Result};
use myelin_store::{EventRow, MembershipRow, StateMap};
use ruma::RoomId;
use serde_json::{Value, json};
use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

/// The longest a client may make `/sync` wait.
pub const MAX_SYNC_TIMEOUT: Duration = Duration::from_secs(120);

/// What a `/sync` asks for besides the token.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    pub timeout: Duration,
    pub full_state: bool,
    pub timeline_limit: usize,
    pub timeline: EventFilter,
    pub lazy_load_members: bool,
    pub include_leave: bool,
    pub rooms: Option<Vec<String>>,
    pub not_rooms: Vec<String>,
    /// Count notifications of threads apart (`unread_thread_notifications` in the filter).
    pub unread_thread_notifications: bool,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            timeout: Duration::ZERO,
            full_state: false,
            timeline_limit: 10,
            timeline: EventFilter::default(),
            lazy_load_members: false,
            include_leave: false,
            rooms: None,
            not_rooms: Vec::new(),
            unread_thread_notifications: false,
        }
    }
}

/// A joined (or left) room's part of a sync.
#[derive(Debug, Default)]
pub struct RoomUpdate {
    pub room_id: String,
    pub timeline: Vec<Value>,
    pub limited: bool,
    pub prev_batch: Option<String>,
    pub state: Vec<Value>,
    /// (heroes, joined members, invited members), for joined rooms.
    pub summary: Option<(Vec<String>, u64, u64)>,
    /// The room's account data that changed (all of it on a first sync).
    pub account_data: Vec<Value>,
    /// Ephemeral events: the `m.receipt` of receipts that changed.
    pub ephemeral: Vec<Value>,
    /// Unread notification counts (joined rooms).
    pub unread: Option<crate::UnreadCounts>,
}

/// Invited or knocked: the stripped state the user may see.
#[derive(Debug, Default)]
pub struct StrippedRoom {
    pub room_id: String,
    pub events: Vec<Value>,
}

#[derive(Debug, Default)]
pub struct SyncRooms {
    pub next_batch: String,
    /// `m.presence` of users sharing a room with the viewer that changed.
    pub presence: Vec<Value>,
    /// Global account data that changed (all of it on a first sync).
    pub account_data: Vec<Value>,
    pub join: Vec<RoomUpdate>,
    pub invite: Vec<StrippedRoom>,
    pub leave: Vec<RoomUpdate>,
    pub knock: Vec<StrippedRoom>,
    /// To-device messages for the syncing device.
    pub to_device: Vec<Value>,
    /// Users whose devices changed / no longer sharing a room (incremental syncs only).
    pub device_lists_changed: Vec<String>,
    pub device_lists_left: Vec<String>,
}

impl SyncRooms {
    fn is_empty(&self) -> bool {
        self.join.is_empty()
            && self.invite.is_empty()
            && self.leave.is_empty()
            && self.knock.is_empty()
            && self.account_data.is_empty()
            && self.presence.is_empty()
            && self.to_device.is_empty()
            && self.device_lists_changed.is_empty()
            && self.device_lists_left.is_empty()
    }
}

/// The part of a room's history a sync covers: after `since` up to `upto`; `fresh` when the
/// client needs the room from scratch (first sync, newly joined, `full_state`).
#[derive(Debug, Clone, Copy)]
struct Window {
    since: Option<i64>,
    upto: i64,
    fresh: bool,
}

/// One room a sync brings up to date, and the viewer's membership in it now.
struct RoomJob {
    room_id: ruma::OwnedRoomId,
    window: Window,
    membership: Option<String>,
}

/// What `room_updates` has found of one room on its way.
struct RoomPart {
    /// The timeline window's events, oldest first.
    rows: Vec<EventRow>,
    limited: bool,
    /// The events the viewer may see, with their membership at each.
    shown: Vec<(EventRow, Option<String>)>,
    state_ids: Vec<String>,
}

/// How many members a room's summary names (the spec's recommendation).
const HEROES: usize = 5;

/// The state keys invitees and knockers see (the spec's recommendation for stripped state).
pub(crate) const STRIPPED_STATE: &[&str] = &[
    "m.room.create",
    "m.room.join_rules",
    "m.room.name",
    "m.room.avatar",
    "m.room.canonical_alias",
    "m.room.encryption",
    "m.room.topic",
];

impl RoomService {
    /// The rooms part of a `/sync`: waits up to the timeout for something new after `since`.
    pub async fn sync_rooms(
        &self,
        viewer: Viewer<'_>,
        since: Option<&str>,
        options: &SyncOptions,
    ) -> Result<SyncRooms> {
        // Syncing with a token acknowledges the to-device messages it delivered.
        if let (Some(token), Some(device)) = (since, viewer.device_id) {
            self.acknowledge_to_device(viewer.user, device, token).await?;
        }
        let since = since.map(parse_sync_token).transpose()?;
        let (since, since_typing) = (since.map(|(stream, _)| stream), since.and_then(|(_, typing)| typing));
        let deadline = tokio::time::Instant::now() + options.timeout.min(MAX_SYNC_TIMEOUT);
        let mut changes = self.stream_changes();
        let mut typing_changes = self.typing.changes.subscribe();
        loop {
            // The position to sync up to: every writer of a stream position advances `stream`
            // after its commit (waiting syncs depend on it), and positions commit in order, so
            // everything up to it is readable. The query of the stream counter that was here
            // added nothing to it (removing it measured within the noise: the first read after
            // a write pays for SQLite's emptied page cache wherever that read is).
            let now = *changes.borrow_and_update();
            typing_changes.borrow_and_update();
            let rooms = self.rooms_since(viewer, since, since_typing, now, options).await?;
            if since.is_none() || options.full_state || !rooms.is_empty() {
                return Ok(rooms);
            }
            // Nothing yet: wait for the next event or typing change anywhere, then look again.
            // Not at all when the time is up (`timeout=0`): a timer due now fires only at the
            // timer wheel's next millisecond tick, which made such syncs a millisecond slower.
            let woken = if tokio::time::Instant::now() >= deadline {
                Err(())
            } else {
                tokio::time::timeout_at(deadline, async {
                    tokio::select! {
                        changed = changes.changed() => changed.is_ok(),
                        changed = typing_changes.changed() => changed.is_ok(),
                    }
                })
                .await
                .map_err(|_| ())
            };
            if !matches!(woken, Ok(true)) {
                return Ok(SyncRooms {
                    next_batch: self.sync_token(now.max(since.unwrap_or(0))),
                    ..Default::default()
                });
            }
        }
    }

    /// The `next_batch` for a stream position, with the current typing position.
    fn sync_token(&self, stream: i64) -> String {
        format!("{}_{}", make_token(stream), self.typing.position())
    }

    async fn rooms_since(
        &self,
        viewer: Viewer<'_>,
        since: Option<i64>,
        since_typing: Option<u64>,
        now: i64,
        options: &SyncOptions,
    ) -> Result<SyncRooms> {
        // The typing position is read first: a change racing this sync comes again next time.
        let mut out = SyncRooms { next_batch: self.sync_token(now), ..Default::default() };
        let mut room_data: HashMap<String, Vec<Value>> = HashMap::new();
        let account_since = if options.full_state { None } else { since };
        // What changed for this user since the token, as far as this process knows: queries
        // only for what may have (see `changes.rs`).
        let may_have_changed = |key: &str| account_since.is_none_or(|since| self.changes.changed_after(key, since));
        if may_have_changed(&crate::changes::account_data_key(viewer.user.as_str())) {
            for (room, data) in self.account_data_changes(viewer.user, account_since, now).await? {
                if room.is_empty() {
                    out.account_data.push(data);
                } else {
                    room_data.entry(room).or_default().push(data);
                }
            }
        }
        if may_have_changed(crate::changes::PRESENCE_KEY) {
            out.presence = self.presence_events(viewer.user, account_since, now).await?;
        }
        if let Some(device) = viewer.device_id {
            let to_device = self.to_device_for_sync(viewer.user, device, now).await?;
            out.to_device = to_device.events;
            if let Some(delivered) = to_device.delivered_upto {
                out.next_batch = format!("{}_{delivered}", out.next_batch);
            }
        }
        let memberships = self.store.rooms().memberships_of_user(viewer.user.as_str()).await?;
        let ignored = self.ignored_users(viewer.user).await?;
        // Incremental: only rooms with new events or receipts can have timeline or receipt
        // updates, so the others cost no query (a user in 1,000 quiet rooms pays for the few
        // that changed). This process knows which changed since it started; for an older token
        // the store says.
        let changed_rooms: Option<HashSet<String>> = match since {
            Some(since) if !options.full_state => {
                match self.changes.rooms_changed_after(memberships.iter().map(|m| m.room_id.as_str()), since) {
                    Some(changed) => Some(changed),
                    None => Some(self.store.rooms().rooms_changed_between(since, now).await?.into_iter().collect()),
                }
            }
            _ => None,
        };
        if let Some(since) = since {
            // Device lists move with key changes and with memberships (events in the rooms).
            let rooms_moved = self.changes.members_changed_after(memberships.iter().map(|m| m.room_id.as_str()), since);
            if rooms_moved || self.changes.changed_after(crate::changes::DEVICE_LISTS_KEY, since) {
                let (changed, left) = self.device_list_updates(viewer.user, since, now).await?;
                out.device_lists_changed = changed.into_iter().collect();
                out.device_lists_left = left.into_iter().collect();
            }
        }
        // No typing change anywhere since the token: no room's typing to look up.
        let typing_moved = since_typing.is_none_or(|since| self.typing.position() != since);
        // Joined rooms that may have changed, gathered first and then read all together.
        let mut joined: Vec<(ruma::OwnedRoomId, bool, Vec<Value>)> = Vec::new();
        for m in memberships.iter() {
            if m.forgotten
                || options.not_rooms.contains(&m.room_id)
                || options.rooms.as_ref().is_some_and(|rooms| !rooms.contains(&m.room_id))
            {
                continue;
            }
            let changed_since = |stream: i64| since.is_none_or(|since| stream > since);
            // A quiet room with no account data and no typing change costs no more than this.
            let quiet = changed_rooms.as_ref().is_some_and(|changed| !changed.contains(&m.room_id));
            if m.membership == "join"
                && quiet
                && !changed_since(m.stream_ordering)
                && !options.full_state
                && !typing_moved
                && !room_data.contains_key(&m.room_id)
            {
                continue;
            }
            let room_id = RoomId::parse(&m.room_id).map_err(Error::internal)?;
            match m.membership.as_str() {
                "join" => {
                    let fresh = since.is_none() || options.full_state || changed_since(m.stream_ordering);
                    let data = room_data.remove(&m.room_id).unwrap_or_default();
                    if !fresh && quiet {
                        let typing = self.typing.event(&room_id, since_typing);
                        if !data.is_empty() || typing.is_some() {
                            out.join.push(RoomUpdate {
                                room_id: m.room_id.clone(),
                                account_data: data,
                                ephemeral: typing.into_iter().collect(),
                                ..Default::default()
                            });
                        }
                        continue;
                    }
                    joined.push((room_id, fresh, data));
                }
                "invite" | "knock" if m.stream_ordering <= now && changed_since(m.stream_ordering) => {
                    // Invites from ignored users are not shown.
                    if m.membership == "invite"
                        && let Some((_, invite)) = self.pdu(&m.event_id).await?
                        && ignored.contains(invite.sender.as_str())
                    {
                        continue;
                    }
                    let stripped =
                        StrippedRoom { room_id: m.room_id.clone(), events: self.stripped_state(&room_id, m).await? };
                    if m.membership == "invite" {
                        out.invite.push(stripped);
                    } else {
                        out.knock.push(stripped);
                    }
                }
                "leave" | "ban" if m.stream_ordering <= now => {
                    let left_now = since.is_some() && changed_since(m.stream_ordering);
                    let wanted = left_now || (options.include_leave && (since.is_none() || options.full_state));
                    if wanted {
                        let job = RoomJob {
                            room_id: room_id.clone(),
                            window: Window { since, upto: m.stream_ordering, fresh: true },
                            membership: Some(m.membership.clone()),
                        };
                        out.leave
                            .extend(self.room_updates(viewer, &[job], options, &ignored).await?.into_iter().flatten());
                    }
                }
                _ => {}
            }
        }
        // Receipts of all the joined rooms to read: two queries (rooms new to the client get
        // all of them, the others what changed: none, when the change index knows that no
        // receipt did — a room with a new message usually has no new receipt).
        let mut receipts: HashMap<String, Vec<crate::receipts::ReceiptRow>> = HashMap::new();
        for fresh in [true, false] {
            let mut ids: Vec<String> =
                joined.iter().filter(|(_, is_fresh, _)| *is_fresh == fresh).map(|(id, ..)| id.to_string()).collect();
            if !fresh
                && let Some(changed) =
                    since.and_then(|since| self.changes.receipts_changed_after(ids.iter().map(String::as_str), since))
            {
                ids.retain(|id| changed.contains(id));
            }
            if ids.is_empty() {
                continue;
            }
            let from = if fresh { None } else { since };
            for (room_id, user, kind, thread, event, ts) in
                self.store.rooms().receipts_of_rooms(&ids, from, now).await?
            {
                receipts.entry(room_id).or_default().push((user, kind, thread, event, ts));
            }
        }
        let jobs: Vec<RoomJob> = joined
            .iter()
            .map(|(room_id, fresh, _)| RoomJob {
                room_id: room_id.clone(),
                window: Window { since, upto: now, fresh: *fresh },
                membership: Some("join".to_owned()),
            })
            .collect();
        let updates = self.room_updates(viewer, &jobs, options, &ignored).await?;
        for ((room_id, fresh, data), update) in joined.into_iter().zip(updates) {
            let mut ephemeral: Vec<Value> =
                crate::receipts::receipt_event_of(viewer.user, receipts.remove(room_id.as_str()).unwrap_or_default())
                    .into_iter()
                    .collect();
            ephemeral.extend(self.typing.event(&room_id, if fresh { None } else { since_typing }));
            match update {
                Some(mut update) => {
                    update.account_data = data;
                    update.ephemeral = ephemeral;
                    out.join.push(update);
                }
                // Only account data or receipts changed.
                None if !data.is_empty() || !ephemeral.is_empty() => out.join.push(RoomUpdate {
                    room_id: room_id.to_string(),
                    account_data: data,
                    ephemeral,
                    ..Default::default()
                }),
                None => {}
            }
        }
        // Unread counts of the joined rooms in the answer: one query for all of them.
        if !out.join.is_empty() {
            let rooms: Vec<String> = out.join.iter().map(|update| update.room_id.clone()).collect();
            let mut unread = self.unread_counts(viewer.user, options.unread_thread_notifications, &rooms).await?;
            for update in &mut out.join {
                update.unread = Some(unread.remove(&update.room_id).unwrap_or_default());
            }
        }
        Ok(out)
    }

    /// Rooms' timelines after `since` up to `upto`, with the state the client needs to follow
    /// them: everything when `fresh` (first sync, newly joined, full_state), else the state
    /// that changed in a gap a limited timeline skipped; None for a room where nothing
    /// happened. All the rooms are read together, a few queries for all of them rather than a
    /// few per room (a first sync of 200 rooms made 2,000 small queries, and on two cores each
    /// costs more in thread switches than in SQLite).
    async fn room_updates(
        &self,
        viewer: Viewer<'_>,
        jobs: &[RoomJob],
        options: &SyncOptions,
        ignored: &Arc<HashSet<String>>,
    ) -> Result<Vec<Option<RoomUpdate>>> {
        let rooms = self.store.rooms();
        let limit = options.timeline_limit.clamp(1, 500);
        // The latest `limit + 1` events of each window, newest first: one more tells `limited`.
        // A room followed on from a token finds its new events in memory when they are all
        // there (see `changes.rs`); the others are read together.
        let mut rows_of: HashMap<String, Vec<EventRow>> = HashMap::new();
        let windows: Vec<(String, i64, i64)> = jobs
            .iter()
            .filter_map(|job| {
                let Window { since, upto, fresh } = job.window;
                if let Some(since) = since.filter(|_| !fresh)
                    && let Some(rows) = self.changes.recent_events(job.room_id.as_str(), since, upto, limit + 1)
                {
                    rows_of.insert(job.room_id.to_string(), rows);
                    return None;
                }
                // Backfilled history (below the stream's zero) is left to `/messages`, where
                // `prev_batch` leads, as before rooms were read together.
                let above = if fresh { 0 } else { since.unwrap_or(0) };
                Some((job.room_id.to_string(), upto + 1, above))
            })
            .collect();
        for row in rooms.latest_events_of_rooms(&windows, limit as i64 + 1).await? {
            rows_of.entry(row.room_id.clone()).or_default().push(row);
        }

        // Each room's timeline rows the viewer may see.
        let mut parts: Vec<Option<RoomPart>> = Vec::with_capacity(jobs.len());
        for job in jobs {
            let mut rows = rows_of.remove(job.room_id.as_str()).unwrap_or_default();
            rows.sort_by_key(|row| std::cmp::Reverse(row.stream_ordering));
            let limited = rows.len() > limit;
            rows.truncate(limit);
            rows.reverse();
            if rows.is_empty() && !job.window.fresh {
                parts.push(None);
                continue;
            }
            let mut visibility =
                Visibility::with_membership(self, viewer.user, job.membership.clone(), ignored.clone());
            let mut shown = Vec::new();
            for row in &rows {
                if !options.timeline.matches(row) {
                    continue;
                }
                let (visible, membership) = visibility.check(row).await?;
                if visible {
                    shown.push((row.clone(), membership));
                }
            }
            parts.push(Some(RoomPart { rows, limited, shown, state_ids: Vec::new() }));
        }
        let all_shown: Vec<EventRow> =
            parts.iter().flatten().flat_map(|part| part.shown.iter().map(|(row, _)| row.clone())).collect();
        let extras = self.extras(&all_shown, viewer).await?;

        // The state each room's client needs.
        for (job, part) in jobs.iter().zip(parts.iter_mut()) {
            let Some(part) = part else { continue };
            let Window { since, upto, fresh } = job.window;
            if !fresh && !part.limited {
                // The timeline follows on from the last sync: no state to add.
                continue;
            }
            let state_at_start: Arc<StateMap> = match part.rows.first() {
                Some(first) => self.state_at(first.state_before).await?,
                None => match rooms.event_at_or_before(job.room_id.as_str(), upto).await? {
                    Some(row) => self.state_at(row.state_after).await?,
                    None => Arc::new(StateMap::new()),
                },
            };
            part.state_ids = if fresh {
                let senders: HashSet<&str> = part.shown.iter().map(|(row, _)| row.sender.as_str()).collect();
                state_at_start
                    .iter()
                    .filter(|((kind, key), _)| {
                        !options.lazy_load_members
                            || kind != "m.room.member"
                            || senders.contains(key.as_str())
                            || key == viewer.user.as_str()
                    })
                    .map(|(_, id)| id.clone())
                    .collect()
            } else {
                // Limited: what changed between the last sync and the start of the timeline.
                let before = match rooms.event_at_or_before(job.room_id.as_str(), since.unwrap_or(0)).await? {
                    Some(row) => self.state_at(row.state_after).await?,
                    None => Arc::new(StateMap::new()),
                };
                state_at_start
                    .iter()
                    .filter(|(key, id)| before.get(*key) != Some(*id))
                    .map(|(_, id)| id.clone())
                    .collect()
            };
        }
        let all_state_ids: Vec<String> = parts.iter().flatten().flat_map(|part| part.state_ids.clone()).collect();
        let mut state_rows_of: HashMap<String, Vec<EventRow>> = HashMap::new();
        let state_rows = self.rows_with_outliers(&all_state_ids).await?;
        let state_extras = self.extras(&state_rows, viewer).await?;
        for row in state_rows {
            state_rows_of.entry(row.room_id.clone()).or_default().push(row);
        }

        // Summaries (member counts and heroes) of joined rooms, which the spec asks for only when
        // they may have changed: rooms new to the client, or with a membership event in the answer.
        let is_member = |row: &EventRow| row.event_type == "m.room.member";
        let room_ids: Vec<String> = jobs
            .iter()
            .zip(&parts)
            .filter(|(job, part)| {
                job.membership.as_deref() == Some("join")
                    && part.as_ref().is_some_and(|part| {
                        job.window.fresh
                            || part.rows.iter().any(is_member)
                            || state_rows_of.get(job.room_id.as_str()).is_some_and(|rows| rows.iter().any(is_member))
                    })
            })
            .map(|(job, _)| job.room_id.to_string())
            .collect();
        let mut counts: HashMap<(String, String), u64> = HashMap::new();
        let mut heroes: HashMap<String, Vec<String>> = HashMap::new();
        if !room_ids.is_empty() {
            for (room_id, membership, count) in rooms.member_counts_of_rooms(&room_ids).await? {
                counts.insert((room_id, membership), u64::try_from(count).unwrap_or_default());
            }
            for (room_id, user_id) in rooms.first_members_of_rooms(&room_ids, HEROES as i64 + 1).await? {
                if user_id != viewer.user.as_str() {
                    heroes.entry(room_id).or_default().push(user_id);
                }
            }
        }

        let mut updates = Vec::with_capacity(jobs.len());
        for (job, part) in jobs.iter().zip(parts) {
            let Some(part) = part else {
                updates.push(None);
                continue;
            };
            let mut timeline = Vec::with_capacity(part.shown.len());
            for (row, membership) in &part.shown {
                let pdu = self.pdu_of_row(row)?;
                timeline
                    .push(sync_format(self.client_event_with(row, &pdu, viewer, membership.clone(), &extras).await?));
            }
            let state_rows = state_rows_of.remove(job.room_id.as_str()).unwrap_or_default();
            let mut state = Vec::with_capacity(state_rows.len());
            for row in &state_rows {
                let pdu = self.pdu_of_row(row)?;
                state.push(sync_format(self.client_event_with(row, &pdu, viewer, None, &state_extras).await?));
            }
            let room_id = job.room_id.to_string();
            let summary = room_ids.contains(&room_id).then(|| {
                let count =
                    |membership: &str| counts.get(&(room_id.clone(), membership.to_owned())).copied().unwrap_or(0);
                let mut room_heroes = heroes.remove(&room_id).unwrap_or_default();
                room_heroes.truncate(HEROES);
                (room_heroes, count("join"), count("invite"))
            });
            updates.push(Some(RoomUpdate {
                summary,
                room_id,
                timeline,
                limited: part.limited,
                prev_batch: part.rows.first().map(|row| make_token(row.stream_ordering - 1)),
                state,
                account_data: Vec::new(),
                ephemeral: Vec::new(),
                unread: None,
            }));
        }
        Ok(updates)
    }

    /// Stripped state of a room for an invitee or a knocker, their own member event included.
    async fn stripped_state(&self, room_id: &RoomId, membership: &MembershipRow) -> Result<Vec<Value>> {
        // An invite to a room on another server: the state its server sent with the invite.
        let mut remote: Vec<Value> = Vec::new();
        if matches!(membership.membership.as_str(), "invite" | "knock")
            && let Some(invite) = self.store.federation().remote_invite(room_id.as_str(), &membership.user_id).await?
            && invite.event_id == membership.event_id
        {
            remote = serde_json::from_str(&invite.stripped).unwrap_or_default();
        }
        let current = self.store.rooms().current_state(room_id.as_str()).await?;
        let mut ids: Vec<String> = STRIPPED_STATE
            .iter()
            .filter_map(|kind| current.get(&((*kind).to_owned(), String::new())).cloned())
            .collect();
        ids.push(membership.event_id.clone());
        let pdus = self.pdus(&ids).await?;
        remote.extend(ids.iter().filter_map(|id| pdus.get(id)).map(|pdu| {
            json!({
                "type": pdu.kind.to_string(),
                "state_key": pdu.state_key,
                "content": pdu.content_value(),
                "sender": pdu.sender,
            })
        }));
        Ok(remote)
    }

    /// Changes of the event stream: the latest position, updated after every persisted event.
    pub(crate) fn stream_changes(&self) -> tokio::sync::watch::Receiver<i64> {
        self.stream.subscribe()
    }
}

/// The sync format of a client event: no `room_id` (the room is the key it is listed under).
fn sync_format(mut event: Value) -> Value {
    if let Some(object) = event.as_object_mut() {
        object.remove("room_id");
    }
    event
}

impl RoomService {
    /// Stores a filter for the user; returns its ID.
    pub async fn create_filter(&self, user: &ruma::UserId, filter_json: &str) -> Result<String> {
        loop {
            let id = myelin_core::util::random_string(10);
            if self.store.rooms().add_filter(user.as_str(), &id, filter_json).await? {
                return Ok(id);
            }
        }
    }

    /// A filter the user stored, as JSON.
    pub async fn filter(&self, user: &ruma::UserId, filter_id: &str) -> Result<String> {
        self.store.rooms().filter(user.as_str(), filter_id).await?.ok_or_else(|| Error::not_found("no such filter"))
    }
}
