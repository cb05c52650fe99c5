//! Push-rule evaluation: every new event is matched against the push rules of each local member
//! it could notify (ruma's `Ruleset::get_actions` with the room's member count, the member's
//! display name and the power levels), and the actions that notify are stored with the event.
//! `/sync` counts them after the member's read receipt (`unread_notifications`, per thread with
//! `unread_thread_notifications`) and `GET /notifications` lists them.
//!
//! They are stored with the event as one row, and moved into one row per member in batches
//! (`Push::rotate_staged`): 250 ms after an event that notifies someone, or before anything
//! reads them, whichever comes first. Under load one move takes many events at once: the
//! longer the wait, the fewer moves (each a transaction on the messages' writer, taking turns
//! with them) and the more rows of a member on each page they write.

use crate::{
    pdu::Pdu,
    read::{Viewer, Visibility},
    service::RoomService,
};
use myelin_core::{Error, Result};
use myelin_store::{PushAction, StateMap};
use ruma::{
    Int, OwnedUserId, RoomId, UInt, UserId,
    push::{FlattenedJson, PushConditionPowerLevelsCtx, PushConditionRoomCtx, Ruleset},
    room_version_rules::RoomPowerLevelsRules,
    serde::Raw,
};
use serde_json::{Value, json};
use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

/// How long staged push actions wait to be moved, gathering the events that follow.
const PUSH_ROTATION_DELAY: std::time::Duration = std::time::Duration::from_millis(250);

/// What of an event the push rules see: every field a rule can name (`type`, `content`,
/// `sender`, …), without the hashes, signatures and prev and auth events, which no rule names
/// and which would make flattening the event twice as long.
#[derive(serde::Serialize)]
struct Matchable<'a> {
    event_id: &'a ruma::EventId,
    room_id: &'a RoomId,
    sender: &'a UserId,
    #[serde(rename = "type")]
    kind: &'a ruma::events::TimelineEventType,
    content: &'a serde_json::value::RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    state_key: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    redacts: Option<&'a ruma::EventId>,
    origin_server_ts: ruma::MilliSecondsSinceUnixEpoch,
    depth: i64,
}

impl<'a> Matchable<'a> {
    fn of(pdu: &'a Pdu) -> Self {
        Matchable {
            event_id: &pdu.event_id,
            room_id: &pdu.room_id,
            sender: &pdu.sender,
            kind: &pdu.kind,
            content: &pdu.content,
            state_key: pdu.state_key.as_deref(),
            redacts: pdu.redacts.as_deref(),
            origin_server_ts: pdu.origin_server_ts,
            depth: pdu.depth,
        }
    }
}

/// A local member the push rules are evaluated for.
#[derive(Debug, Clone)]
pub(crate) struct PushMember {
    pub user_id: OwnedUserId,
    pub display_name: String,
}

/// The members of a room whose push rules matter: local and joined; and the joined count.
#[derive(Debug, Default)]
pub(crate) struct RoomMembers {
    pub local: Vec<PushMember>,
    pub joined: u64,
}

/// Unread counts of a room for a user: (notifications, highlights), per thread too.
#[derive(Debug, Clone, Default)]
pub struct UnreadCounts {
    pub notification_count: u64,
    pub highlight_count: u64,
    /// Thread root → counts, when the client asked for threads apart.
    pub threads: BTreeMap<String, (u64, u64)>,
}

/// One entry of `GET /notifications`.
#[derive(Debug)]
pub struct Notification {
    pub room_id: String,
    pub event: Value,
    pub actions: Value,
    pub read: bool,
    pub ts: i64,
}

impl RoomService {
    /// What the push rules of the room's local members say about `pdu`, given the state
    /// before it: one entry per member it notifies.
    pub(crate) async fn push_actions(
        &self,
        room_id: &RoomId,
        rules: &ruma::room_version_rules::RoomVersionRules,
        pdu: &Pdu,
        state: &StateMap,
    ) -> Result<Vec<PushAction>> {
        let members = self.push_members(room_id).await?;
        let mut recipients: Vec<PushMember> =
            members.local.iter().filter(|m| m.user_id != pdu.sender).cloned().collect();
        // An invite notifies the invitee (`.m.rule.invite_for_me`), who is not joined yet.
        if pdu.kind.to_string() == "m.room.member"
            && pdu.content_value().get("membership").and_then(Value::as_str) == Some("invite")
            && let Some(invitee) = pdu.state_key.as_deref().and_then(|k| UserId::parse(k).ok())
            && invitee.server_name() == self.config.server_name.as_str()
            && !recipients.iter().any(|m| m.user_id == invitee)
        {
            let display_name = invitee.localpart().to_owned();
            recipients.push(PushMember { user_id: invitee, display_name });
        }
        if recipients.is_empty() {
            return Ok(Vec::new());
        }
        // Flattened once for all members (`Ruleset::get_actions` would flatten it per member),
        // from the fields a rule can name: not the hashes, signatures and DAG links.
        let event = FlattenedJson::from_raw(&Raw::<Value>::from_json(
            serde_json::value::to_raw_value(&Matchable::of(pdu)).map_err(Error::internal)?,
        ));
        let thread_id = (event.get_str(r"content.m\.relates_to.rel_type") == Some("m.thread"))
            .then(|| event.get_str(r"content.m\.relates_to.event_id").map(str::to_owned))
            .flatten();
        // One context for all members, only the member's own fields changed for each.
        let mut ctx = PushConditionRoomCtx::new(
            room_id.to_owned(),
            UInt::new_saturating(members.joined),
            pdu.sender.clone(),
            String::new(),
        );
        ctx.power_levels = self.power_levels_ctx(rules, state).await?;
        let mut out = Vec::new();
        for member in recipients {
            let ruleset = self.cached_push_rules(&member.user_id).await?;
            ctx.user_id = member.user_id.clone();
            ctx.user_display_name = member.display_name.clone();
            // The first rule that applies decides, as in `Ruleset::get_match` (the sender, whose
            // own events never notify them, is not among the recipients).
            let mut actions: &[ruma::push::Action] = &[];
            for rule in ruleset.iter() {
                if rule.applies(&event, &ctx).await {
                    actions = rule.actions();
                    break;
                }
            }
            let notify = actions.iter().any(|a| a.should_notify());
            if !notify {
                continue;
            }
            out.push(PushAction {
                user_id: member.user_id.to_string(),
                notify,
                highlight: actions.iter().any(|a| a.is_highlight()),
                thread_id: thread_id.clone(),
                actions: serde_json::to_string(actions).map_err(Error::internal)?,
            });
        }
        Ok(out)
    }

    /// Schedules a move of the staged push actions, unless one is already waiting.
    pub(crate) fn schedule_push_rotation(&self) {
        use std::sync::atomic::Ordering;
        if self.push_rotation.swap(true, Ordering::AcqRel) {
            return;
        }
        let (store, scheduled) = (self.store.clone(), self.push_rotation.clone());
        tokio::spawn(async move {
            tokio::time::sleep(PUSH_ROTATION_DELAY).await;
            // Cleared first: an event staged while this move runs schedules the next one.
            scheduled.store(false, Ordering::Release);
            if let Err(e) = store.push().rotate_staged().await {
                tracing::warn!("moving staged push actions: {e}");
            }
        });
    }

    /// The push-condition view of the room's power levels (who may `@room`), if it has any.
    async fn power_levels_ctx(
        &self,
        rules: &ruma::room_version_rules::RoomVersionRules,
        state: &StateMap,
    ) -> Result<Option<PushConditionPowerLevelsCtx>> {
        let Some(id) = state.get(&("m.room.power_levels".to_owned(), String::new())) else {
            return Ok(None);
        };
        if let Some(ctx) = self.push_power_levels.get(id) {
            return Ok(Some(ctx));
        }
        let Some(pdu) = self.cached_pdus(std::slice::from_ref(id)).await?.remove(id) else {
            return Ok(None);
        };
        let content = pdu.content_value();
        let level = |v: &Value| v.as_i64().or_else(|| v.as_str()?.parse().ok()).and_then(Int::new);
        let users: BTreeMap<OwnedUserId, Int> = content
            .get("users")
            .and_then(Value::as_object)
            .map(|users| {
                users.iter().filter_map(|(u, l)| Some((OwnedUserId::try_from(u.as_str()).ok()?, level(l)?))).collect()
            })
            .unwrap_or_default();
        let users_default = content.get("users_default").and_then(level).unwrap_or_default();
        let notifications = serde_json::from_value(content.get("notifications").cloned().unwrap_or_else(|| json!({})))
            .unwrap_or_default();
        let power_rules = RoomPowerLevelsRules::new(&rules.authorization, std::iter::empty());
        let ctx = PushConditionPowerLevelsCtx::new(users, users_default, notifications, power_rules);
        // Events never change: the view is kept by the power levels event's ID.
        self.push_power_levels.insert(id.clone(), ctx.clone());
        Ok(Some(ctx))
    }

    /// The room's local joined members (with display names) and joined count, cached until
    /// the next membership event of the room.
    async fn push_members(&self, room_id: &RoomId) -> Result<Arc<RoomMembers>> {
        if let Some(members) = self.push_members.lock().unwrap_or_else(|e| e.into_inner()).get(room_id) {
            return Ok(members.clone());
        }
        let rows = self.store.rooms().members(room_id.as_str()).await?;
        let joined: Vec<_> = rows.into_iter().filter(|m| m.membership == "join").collect();
        let suffix = format!(":{}", self.config.server_name);
        let local: Vec<_> = joined.iter().filter(|m| m.user_id.ends_with(&suffix)).collect();
        let ids: Vec<String> = local.iter().map(|m| m.event_id.clone()).collect();
        let events = self.cached_pdus(&ids).await?;
        let mut members = RoomMembers { local: Vec::with_capacity(local.len()), joined: joined.len() as u64 };
        for m in local {
            let Ok(user_id) = OwnedUserId::try_from(m.user_id.as_str()) else { continue };
            let display_name = events
                .get(&m.event_id)
                .and_then(|e| e.content_value().get("displayname")?.as_str().map(str::to_owned))
                .unwrap_or_else(|| user_id.localpart().to_owned());
            members.local.push(PushMember { user_id, display_name });
        }
        let members = Arc::new(members);
        self.push_members.lock().unwrap_or_else(|e| e.into_inner()).insert(room_id.to_owned(), members.clone());
        Ok(members)
    }

    /// A member event changed the room's members: evaluate with fresh ones next time.
    pub(crate) fn forget_push_members(&self, room_id: &RoomId) {
        self.push_members.lock().unwrap_or_else(|e| e.into_inner()).remove(room_id);
    }

    /// The user's push rules, cached until they change.
    async fn cached_push_rules(&self, user: &UserId) -> Result<Arc<Ruleset>> {
        if let Some(rules) = self.push_rule_cache.lock().unwrap_or_else(|e| e.into_inner()).get(user) {
            return Ok(rules.clone());
        }
        let rules = Arc::new(self.push_rules(user).await?);
        let mut cache = self.push_rule_cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert(user.to_owned(), rules.clone());
        Ok(rules)
    }

    /// The user's rules changed.
    pub(crate) fn forget_push_rules(&self, user: &UserId) {
        self.push_rule_cache.lock().unwrap_or_else(|e| e.into_inner()).remove(user);
    }

    /// Unread counts of `rooms` (those absent have none): kept in memory once counted (see
    /// `unread_cache`), counted in the store for the others.
    pub async fn unread_counts(
        &self,
        user: &UserId,
        by_thread: bool,
        rooms: &[String],
    ) -> Result<HashMap<String, UnreadCounts>> {
        // In memory only on SQLite, where this process is the only writer (as for the cached
        // memberships): on PostgreSQL another process may store events and receipts.
        if self.store.backend() == myelin_store::Backend::Postgres {
            return self.count_unread(user, by_thread, rooms).await;
        }
        let (mut out, missing) = self.unread_cache.lookup(user.as_str(), by_thread, rooms);
        if missing.is_empty() {
            return Ok(out);
        }
        let to_count: Vec<String> = missing.iter().map(|m| m.room.clone()).collect();
        let mut counted = self.count_unread(user, by_thread, &to_count).await?;
        let read = missing
            .into_iter()
            .map(|m| {
                let counts = counted.remove(&m.room).unwrap_or_default();
                out.insert(m.room.clone(), counts.clone());
                (m, counts)
            })
            .collect();
        self.unread_cache.fill(user.as_str(), by_thread, read);
        Ok(out)
    }

    /// Unread counts of those of `rooms` that have any, counted in the store.
    async fn count_unread(
        &self,
        user: &UserId,
        by_thread: bool,
        rooms: &[String],
    ) -> Result<HashMap<String, UnreadCounts>> {
        let mut out: HashMap<String, UnreadCounts> = HashMap::new();
        for (room, thread, notify, highlight) in
            self.store.push().unread_counts(user.as_str(), by_thread, rooms).await?
        {
            let counts = out.entry(room).or_default();
            let (notify, highlight) = (notify.max(0) as u64, highlight.max(0) as u64);
            match thread {
                Some(thread) if by_thread => {
                    counts.threads.insert(thread, (notify, highlight));
                }
                _ => {
                    counts.notification_count += notify;
                    counts.highlight_count += highlight;
                }
            }
        }
        Ok(out)
    }

    /// `GET /notifications`: the user's notifications before `from` (a token it returned),
    /// newest first; with the token of the next page.
    pub async fn notifications(
        &self,
        user: &UserId,
        from: Option<&str>,
        limit: usize,
        highlights_only: bool,
    ) -> Result<(Vec<Notification>, Option<String>)> {
        let before = match from {
            Some(token) => {
                token.parse::<i64>().map_err(|_| Error::invalid_param("`from` is not a token of this server"))?
            }
            None => i64::MAX,
        };
        let limit = limit.clamp(1, 100);
        let rows = self.store.push().notifications(user.as_str(), before, limit as i64, highlights_only).await?;
        let next = (rows.len() == limit).then(|| rows.last().map(|r| r.stream_ordering.to_string())).flatten();
        let ids: Vec<String> = rows.iter().map(|r| r.event_id.clone()).collect();
        let viewer = Viewer { user, device_id: None };
        let events = self.client_events_by_id(viewer, &ids).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            // Events the user may no longer see (or redacted away) are left out.
            let Some(event) = events.get(&row.event_id) else { continue };
            out.push(Notification {
                room_id: row.room_id,
                ts: event.get("origin_server_ts").and_then(Value::as_i64).unwrap_or_default(),
                event: event.clone(),
                actions: serde_json::from_str(&row.actions).map_err(Error::internal)?,
                read: row.read,
            });
        }
        Ok((out, next))
    }

    /// `POST /pushers/set` (kind not null): stores the pusher as the client set it.
    pub async fn set_pusher(&self, user: &UserId, app_id: &str, pushkey: &str, json: &str, append: bool) -> Result<()> {
        Ok(self
            .store
            .push()
            .set_pusher(user.as_str(), app_id, pushkey, json, append, myelin_core::util::now_ms())
            .await?)
    }

    pub async fn delete_pusher(&self, user: &UserId, app_id: &str, pushkey: &str) -> Result<()> {
        Ok(self.store.push().delete_pusher(user.as_str(), app_id, pushkey).await?)
    }

    pub async fn pushers(&self, user: &UserId) -> Result<Vec<String>> {
        Ok(self.store.push().pushers(user.as_str()).await?)
    }

    /// Events by ID in the client format, those the viewer may see.
    async fn client_events_by_id(&self, viewer: Viewer<'_>, ids: &[String]) -> Result<HashMap<String, Value>> {
        let rows = self.store.rooms().events(ids).await?;
        let extras = self.extras(&rows, viewer).await?;
        let mut visibility: HashMap<String, Visibility<'_>> = HashMap::new();
        let mut out = HashMap::with_capacity(rows.len());
        for row in &rows {
            if !visibility.contains_key(&row.room_id) {
                let room_id = RoomId::parse(&row.room_id).map_err(Error::internal)?;
                visibility.insert(row.room_id.clone(), Visibility::new(self, &room_id, viewer.user).await?);
            }
            let Some(check) = visibility.get_mut(&row.room_id) else { continue };
            let (visible, membership) = check.check(row).await?;
            if !visible {
                continue;
            }
            let pdu = Pdu::from_stored(&row.event_id, &row.json)?;
            out.insert(row.event_id.clone(), self.client_event_with(row, &pdu, viewer, membership, &extras).await?);
        }
        Ok(out)
    }
}
