//! `/sync` for rooms: what changed in the user's rooms since a token, waiting (long-poll) until
//! something does. Tokens are stream positions (`s<N>`, the same as `/messages` uses, so a
//! `prev_batch` from sync pages on with `/messages`); they stay valid across restarts.

use crate::{
    pdu::Pdu,
    read::{EventFilter, Viewer, Visibility, make_token, parse_sync_token},
    service::RoomService,
};
use myelin_core::{Error, Result};
use myelin_store::{EventRow, MembershipRow, StateMap};
use ruma::RoomId;
use serde_json::{Value, json};
use std::{collections::HashSet, sync::Arc, time::Duration};

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
            let now = *changes.borrow_and_update();
            typing_changes.borrow_and_update();
            let now = now.max(self.store.rooms().max_stream().await?);
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
        let mut room_data: std::collections::HashMap<String, Vec<Value>> = std::collections::HashMap::new();
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
        // that changed).
        let changed_rooms: Option<HashSet<String>> = match since {
            Some(since) if !options.full_state => {
                Some(self.store.rooms().rooms_changed_between(since, now).await?.into_iter().collect())
            }
            _ => None,
        };
        if let Some(since) = since {
            // Device lists move with key changes and with memberships (events in the rooms).
            let rooms_moved =
                memberships.iter().any(|m| self.changes.changed_after(&crate::changes::members_key(&m.room_id), since));
            if rooms_moved || self.changes.changed_after(crate::changes::DEVICE_LISTS_KEY, since) {
                let (changed, left) = self.device_list_updates(viewer.user, since, now).await?;
                out.device_lists_changed = changed.into_iter().collect();
                out.device_lists_left = left.into_iter().collect();
            }
        }
        for m in memberships {
            if m.forgotten
                || options.not_rooms.contains(&m.room_id)
                || options.rooms.as_ref().is_some_and(|rooms| !rooms.contains(&m.room_id))
            {
                continue;
            }
            let room_id = RoomId::parse(&m.room_id).map_err(Error::internal)?;
            let changed_since = |stream: i64| since.is_none_or(|since| stream > since);
            match m.membership.as_str() {
                "join" => {
                    let fresh = since.is_none() || options.full_state || changed_since(m.stream_ordering);
                    let data = room_data.remove(&m.room_id).unwrap_or_default();
                    let quiet = changed_rooms.as_ref().is_some_and(|changed| !changed.contains(&m.room_id));
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
                    let receipts_since = if fresh { None } else { since };
                    let mut ephemeral: Vec<Value> =
                        self.receipt_event(viewer.user, &room_id, receipts_since, now).await?.into_iter().collect();
                    ephemeral.extend(self.typing.event(&room_id, if fresh { None } else { since_typing }));
                    match self
                        .room_update(viewer, &room_id, Window { since, upto: now, fresh }, options, &ignored)
                        .await?
                    {
                        Some(mut update) => {
                            update.account_data = data;
                            update.ephemeral = ephemeral;
                            out.join.push(update);
                        }
                        // Only account data or receipts changed.
                        None if !data.is_empty() || !ephemeral.is_empty() => out.join.push(RoomUpdate {
                            room_id: m.room_id.clone(),
                            account_data: data,
                            ephemeral,
                            ..Default::default()
                        }),
                        None => {}
                    }
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
                        StrippedRoom { room_id: m.room_id.clone(), events: self.stripped_state(&room_id, &m).await? };
                    if m.membership == "invite" {
                        out.invite.push(stripped);
                    } else {
                        out.knock.push(stripped);
                    }
                }
                "leave" | "ban" if m.stream_ordering <= now => {
                    let left_now = since.is_some() && changed_since(m.stream_ordering);
                    let wanted = left_now || (options.include_leave && (since.is_none() || options.full_state));
                    if wanted
                        && let Some(mut update) = self
                            .room_update(
                                viewer,
                                &room_id,
                                Window { since, upto: m.stream_ordering, fresh: true },
                                options,
                                &ignored,
                            )
                            .await?
                    {
                        update.summary = None;
                        out.leave.push(update);
                    }
                }
                _ => {}
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

    /// A room's timeline after `since` up to `upto`, with the state the client needs to follow
    /// it: everything when `fresh` (first sync, newly joined, full_state), else the state that
    /// changed in a gap the limited timeline skipped. None when nothing happened.
    async fn room_update(
        &self,
        viewer: Viewer<'_>,
        room_id: &RoomId,
        window: Window,
        options: &SyncOptions,
        ignored: &Arc<HashSet<String>>,
    ) -> Result<Option<RoomUpdate>> {
        let Window { since, upto, fresh } = window;
        let rooms = self.store.rooms();
        let limit = options.timeline_limit.clamp(1, 500);
        // The latest `limit + 1` events of the window, newest first: one more tells `limited`.
        let lower = if fresh { 0 } else { since.unwrap_or(0) };
        let mut rows = rooms.events_in_room(room_id.as_str(), upto + 1, Some(lower), false, limit as i64 + 1).await?;
        let limited = rows.len() > limit;
        rows.truncate(limit);
        rows.reverse();
        if rows.is_empty() && !fresh {
            return Ok(None);
        }
        let mut visibility = Visibility::with_ignored(self, room_id, viewer.user, ignored.clone()).await?;
        let mut shown: Vec<(EventRow, Option<String>)> = Vec::new();
        for row in &rows {
            if !options.timeline.matches(row) {
                continue;
            }
            let (visible, membership) = visibility.check(row).await?;
            if visible {
                shown.push((row.clone(), membership));
            }
        }
        let shown_rows: Vec<EventRow> = shown.iter().map(|(row, _)| row.clone()).collect();
        let extras = self.extras(&shown_rows, viewer).await?;
        let mut timeline = Vec::with_capacity(shown.len());
        let mut senders = HashSet::new();
        for (row, membership) in &shown {
            let pdu = Pdu::from_stored(&row.event_id, &row.json)?;
            senders.insert(row.sender.clone());
            timeline.push(sync_format(self.client_event_with(row, &pdu, viewer, membership.clone(), &extras).await?));
        }

        // The state before the timeline (or now, when it is empty).
        let state_at_start: StateMap = match rows.first() {
            Some(first) => StateMap::clone(&*self.state_at(first.state_before).await?),
            None => match rooms.event_at_or_before(room_id.as_str(), upto).await? {
                Some(row) => StateMap::clone(&*self.state_at(row.state_after).await?),
                None => StateMap::new(),
            },
        };
        let state_ids: Vec<String> = if fresh {
            state_at_start
                .iter()
                .filter(|((kind, key), _)| {
                    !options.lazy_load_members
                        || kind != "m.room.member"
                        || senders.contains(key)
                        || key == viewer.user.as_str()
                })
                .map(|(_, id)| id.clone())
                .collect()
        } else if limited {
            // What changed between the last sync and the start of the timeline.
            let before: StateMap = match rooms.event_at_or_before(room_id.as_str(), since.unwrap_or(0)).await? {
                Some(row) => StateMap::clone(&*self.state_at(row.state_after).await?),
                None => StateMap::new(),
            };
            state_at_start.iter().filter(|(key, id)| before.get(*key) != Some(*id)).map(|(_, id)| id.clone()).collect()
        } else {
            Vec::new()
        };
        let state_rows = self.rows_with_outliers(&state_ids).await?;
        let state_extras = self.extras(&state_rows, viewer).await?;
        let mut state = Vec::with_capacity(state_rows.len());
        for row in &state_rows {
            let pdu = Pdu::from_stored(&row.event_id, &row.json)?;
            state.push(sync_format(self.client_event_with(row, &pdu, viewer, None, &state_extras).await?));
        }

        let members = rooms.members(room_id.as_str()).await?;
        let count = |membership: &str| members.iter().filter(|m| m.membership == membership).count() as u64;
        let heroes: Vec<String> = members
            .iter()
            .filter(|m| m.user_id != viewer.user.as_str() && matches!(m.membership.as_str(), "join" | "invite"))
            .take(5)
            .map(|m| m.user_id.clone())
            .collect();
        Ok(Some(RoomUpdate {
            room_id: room_id.to_string(),
            timeline,
            limited,
            prev_batch: rows.first().map(|row| make_token(row.stream_ordering - 1)),
            state,
            summary: Some((heroes, count("join"), count("invite"))),
            account_data: Vec::new(),
            ephemeral: Vec::new(),
            unread: None,
        }))
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
