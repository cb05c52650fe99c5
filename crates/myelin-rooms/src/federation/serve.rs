//! The room DAG as other servers read it: join templates and joins (`make_join`,
//! `send_join`), the state at an event, single events, auth chains, backfill and missing
//! events. Only servers with a user joined to the room (or any, for world-readable rooms) may
//! read.

use crate::{
    pdu::{EventContent, Pdu},
    service::RoomService,
};
use myelin_core::{Error, ErrorKind, Result, util::now_ms};
use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, EventId, OwnedEventId, RoomId, RoomVersionId, ServerName, UserId,
    room_version_rules::EventsReferenceFormatVersion,
};
use serde_json::{Value, json, value::RawValue};
use std::collections::{BTreeMap, HashMap, HashSet};

/// What `make_join` answers: the join event to sign, in the room's version.
pub struct JoinTemplate {
    pub room_version: RoomVersionId,
    pub event: Value,
}

/// What `send_join` answers.
pub struct SendJoinAnswer {
    pub state: Vec<Box<RawValue>>,
    pub auth_chain: Vec<Box<RawValue>>,
    /// The join event as stored, when this server added its signature (restricted joins).
    pub event: Option<Box<RawValue>>,
    pub servers_in_room: Vec<String>,
}

/// The most events one backfill or get_missing_events answer holds.
const MAX_EVENTS: usize = 100;

impl RoomService {
    /// A join event for a user of `origin`, on the room's latest events, if the auth rules
    /// would let the user join.
    pub async fn make_join(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        user: &UserId,
        versions: &[RoomVersionId],
    ) -> Result<JoinTemplate> {
        if user.server_name() != origin {
            return Err(Error::forbidden(format!("{origin} cannot join {user} to rooms")));
        }
        let room = self.known_room(room_id).await?;
        self.check_server_acl(room_id, origin).await?;
        if !versions.contains(&room.version) {
            return Err(Error::new(
                http::StatusCode::BAD_REQUEST,
                ErrorKind::IncompatibleRoomVersion(ruma::api::error::IncompatibleRoomVersionErrorData::new(
                    room.version.clone(),
                )),
                format!("the room's version {} is not one your server supports", room.version),
            ));
        }
        let mut content = json!({ "membership": "join" });
        if let Some(authoriser) = self.restricted_join_authoriser(&room, user).await? {
            content["join_authorised_via_users_server"] = json!(authoriser);
        }
        let template = self.member_template(&room, origin, user, content).await?;
        Ok(JoinTemplate { room_version: room.version, event: template })
    }

    /// A membership event of `user` (of `origin`) on the room's latest events, unsigned, if
    /// the auth rules would let it through now.
    pub(crate) async fn member_template(
        &self,
        room: &crate::RoomInfo,
        origin: &ServerName,
        user: &UserId,
        content: Value,
    ) -> Result<Value> {
        let room_id = &room.room_id;
        let event =
            EventContent { kind: "m.room.member".into(), content, state_key: Some(user.to_string()), redacts: None };
        let head = self.head(room).await?;
        let (auth_events, _) = self.auth_references(room, &head.state, user, &event).await?;
        let references = |events: &[(OwnedEventId, String)]| -> Vec<Value> {
            events
                .iter()
                .map(|(id, hash)| match room.rules.events_reference_format {
                    EventsReferenceFormatVersion::V1 => json!([id, { "sha256": hash }]),
                    _ => json!(id),
                })
                .collect()
        };
        let template = json!({
            "type": "m.room.member",
            "room_id": room_id,
            "sender": user,
            "state_key": user,
            "origin": origin,
            "origin_server_ts": now_ms(),
            "content": event.content,
            "depth": head.depth + 1,
            "prev_events": references(&head.prev_events),
            "auth_events": references(&auth_events),
        });
        // Would it pass? (A banned user, an invite-only room: refused now, not later.)
        let object: CanonicalJsonObject = serde_json::from_value(template.clone()).map_err(Error::internal)?;
        let probe = Pdu::from_json(EventId::parse("$probe:invalid").map_err(Error::internal)?, object)?;
        self.check_against_state(room, &probe, &head.state).await.map_err(Error::forbidden)?;
        Ok(template)
    }

    /// A leave event for a user of `origin` (rejecting an invite, leaving).
    pub async fn make_leave(&self, origin: &ServerName, room_id: &RoomId, user: &UserId) -> Result<JoinTemplate> {
        if user.server_name() != origin {
            return Err(Error::forbidden(format!("{origin} cannot make {user} leave rooms")));
        }
        let room = self.known_room(room_id).await?;
        self.check_server_acl(room_id, origin).await?;
        let template = self.member_template(&room, origin, user, json!({ "membership": "leave" })).await?;
        Ok(JoinTemplate { room_version: room.version, event: template })
    }

    /// A leave signed by `origin`'s server, checked and persisted like any PDU.
    pub async fn send_leave(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        event_id: &EventId,
        json: CanonicalJsonObject,
    ) -> Result<()> {
        self.receive_own_membership(origin, room_id, event_id, json, "leave").await?;
        Ok(())
    }

    /// A membership event (`membership`) of a user of `origin` for themselves, sent to us to
    /// enter the room (`send_leave`, `send_knock`): checked and persisted like any PDU.
    pub(crate) async fn receive_own_membership(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        event_id: &EventId,
        json: CanonicalJsonObject,
        membership: &str,
    ) -> Result<Pdu> {
        let room = self.known_room(room_id).await?;
        self.check_server_acl(room_id, origin).await?;
        if super::event_id_of(&json, &room)? != event_id {
            return Err(Error::bad_json("the event ID does not match the event"));
        }
        let pdu = self.verify_pdu(&room, json.clone()).await?;
        if pdu.sender.server_name() != origin
            || pdu.kind.to_string() != "m.room.member"
            || pdu.state_key.as_deref() != Some(pdu.sender.as_str())
            || pdu.content_value()["membership"] != membership
        {
            return Err(Error::bad_json(format!("not a {membership} of a user of the requesting server")));
        }
        let pdu = self.receive_pdu(origin, &room, json, false).await?;
        // The other servers in the room learn of it from us (unless it was soft-failed: kept
        // out of the room's timeline).
        if self.store.rooms().event(pdu.event_id.as_str()).await?.is_some() {
            self.distribute_except(room_id, &pdu, Some(origin)).await;
        }
        Ok(pdu)
    }

    /// A join signed by `origin`'s server: checked and persisted like any PDU, then answered
    /// with the room's state before it and that state's auth chain.
    pub async fn send_join(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        event_id: &EventId,
        mut json: CanonicalJsonObject,
    ) -> Result<SendJoinAnswer> {
        let room = self.known_room(room_id).await?;
        self.check_server_acl(room_id, origin).await?;
        let field = |json: &CanonicalJsonObject, name: &str| match json.get(name) {
            Some(CanonicalJsonValue::String(value)) => Some(value.clone()),
            _ => None,
        };
        let sender = field(&json, "sender").and_then(|s| UserId::parse(s).ok());
        let Some(sender) = sender.filter(|s| s.server_name() == origin) else {
            return Err(Error::forbidden(format!("the join is not one of a user of {origin}")));
        };
        if field(&json, "type").as_deref() != Some("m.room.member")
            || field(&json, "state_key").as_deref() != Some(sender.as_str())
        {
            return Err(Error::bad_json("not a join event of its sender"));
        }
        let content = match json.get("content") {
            Some(CanonicalJsonValue::Object(content)) => content.clone(),
            _ => return Err(Error::bad_json("the event has no content")),
        };
        if !matches!(content.get("membership"), Some(CanonicalJsonValue::String(m)) if m == "join") {
            return Err(Error::bad_json("the event is not a join"));
        }
        // A restricted join one of our users vouched for carries our signature too.
        let authorised_here = matches!(
            content.get("join_authorised_via_users_server"),
            Some(CanonicalJsonValue::String(user)) if UserId::parse(user).is_ok_and(|u| u.server_name() == self.config.server_name)
        );
        if authorised_here {
            // The join rules' conditions, checked again: a joining server that skipped
            // make_join must not get our signature for a user who meets none of them.
            let named = match content.get("join_authorised_via_users_server") {
                Some(CanonicalJsonValue::String(user)) => user.clone(),
                _ => String::new(),
            };
            match self.restricted_join_authoriser(&room, &sender).await? {
                Some(authoriser) if authoriser == named => {}
                _ => return Err(Error::forbidden("this server does not authorise that join")),
            }
            json.remove("unsigned");
            ruma::signatures::hash_and_sign_event(
                self.config.server_name.as_str(),
                self.key.pair(),
                &mut json,
                &room.rules.redaction,
            )
            .map_err(|e| Error::bad_json(format!("the join cannot be signed: {e}")))?;
        }
        if super::event_id_of(&json, &room)? != event_id {
            return Err(Error::bad_json("the event ID does not match the event"));
        }
        let pdu = self.receive_pdu(origin, &room, json, false).await?;
        let Some((row, _)) = self.pdu(pdu.event_id.as_str()).await? else {
            return Err(Error::forbidden("the join is not allowed by the room's current state"));
        };
        // The other servers in the room learn of the join from us.
        self.distribute_except(room_id, &pdu, Some(origin)).await;
        let state = self.state_at(row.state_before).await?;
        let state_ids: Vec<String> = state.values().cloned().collect();
        let (chain, _) = self.auth_chain(&state_ids).await?;
        let chain_ids: Vec<String> = chain.iter().map(ToString::to_string).collect();
        let servers = self.servers_in_room(room_id).await?;
        let mut servers_in_room: Vec<String> = servers.iter().map(ToString::to_string).collect();
        servers_in_room.push(self.config.server_name.to_string());
        Ok(SendJoinAnswer {
            state: self.raw_events(&state_ids).await?,
            auth_chain: self.raw_events(&chain_ids).await?,
            event: if authorised_here { Some(raw(&pdu.canonical_json())?) } else { None },
            servers_in_room,
        })
    }

    /// The room's state before an event, as event IDs, and the auth chain of that state.
    pub async fn state_ids_for_server(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        event_id: &EventId,
    ) -> Result<(Vec<OwnedEventId>, Vec<OwnedEventId>)> {
        self.check_server_may_see(origin, room_id).await?;
        let row = self
            .store
            .rooms()
            .event(event_id.as_str())
            .await?
            .filter(|row| row.room_id == room_id.as_str())
            .ok_or_else(|| Error::not_found(format!("{event_id} is not an event of {room_id} here")))?;
        let state = self.state_at(row.state_before).await?;
        let ids: Vec<String> = state.values().cloned().collect();
        let (chain, _) = self.auth_chain(&ids).await?;
        let state_ids = ids.iter().filter_map(|id| EventId::parse(id).ok()).collect();
        Ok((state_ids, chain.into_iter().collect()))
    }

    /// As `state_ids_for`, the events themselves.
    pub async fn state_for_server(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        event_id: &EventId,
    ) -> Result<(Vec<Box<RawValue>>, Vec<Box<RawValue>>)> {
        let (state, chain) = self.state_ids_for_server(origin, room_id, event_id).await?;
        let state: Vec<String> = state.iter().map(ToString::to_string).collect();
        let chain: Vec<String> = chain.iter().map(ToString::to_string).collect();
        Ok((self.raw_events(&state).await?, self.raw_events(&chain).await?))
    }

    /// One event, for a server that may see its room.
    pub async fn pdu_for_server(&self, origin: &ServerName, event_id: &EventId) -> Result<Box<RawValue>> {
        let rows = self.store.rooms().pdu_jsons(&[event_id.to_string()]).await?;
        let (_, room_id, json) = rows.into_iter().next().ok_or_else(|| Error::not_found("no such event here"))?;
        let room_id = RoomId::parse(room_id).map_err(Error::internal)?;
        self.check_server_may_see(origin, &room_id).await?;
        let pdu = Pdu::from_stored(event_id.as_str(), &json)?;
        Ok(self.as_visible_to(origin, &room_id, &[&pdu]).await?.remove(0))
    }

    /// An event's full auth chain.
    pub async fn event_auth_for(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        event_id: &EventId,
    ) -> Result<Vec<Box<RawValue>>> {
        self.check_server_may_see(origin, room_id).await?;
        let rows = self.store.rooms().pdu_jsons(&[event_id.to_string()]).await?;
        if !rows.iter().any(|(_, room, _)| room == room_id.as_str()) {
            return Err(Error::not_found(format!("{event_id} is not an event of {room_id} here")));
        }
        let (chain, _) = self.auth_chain(&[event_id.to_string()]).await?;
        let ids: Vec<String> = chain.iter().map(ToString::to_string).collect();
        self.raw_events(&ids).await
    }

    /// Events before `from` (themselves included), newest first, walking `prev_events`.
    pub async fn backfill_for(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        from: &[OwnedEventId],
        limit: usize,
    ) -> Result<Vec<Box<RawValue>>> {
        self.check_server_may_see(origin, room_id).await?;
        let found =
            self.walk_back(room_id, from.iter().map(ToString::to_string).collect(), &HashSet::new(), limit, 0).await?;
        let mut events: Vec<&Pdu> = found.values().collect();
        events.sort_by_key(|pdu| std::cmp::Reverse(pdu.depth));
        self.as_visible_to(origin, room_id, &events).await
    }

    /// The events between `earliest` (what the asker has) and `latest` (what it got),
    /// oldest first.
    pub async fn missing_events_for(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        earliest: &[OwnedEventId],
        latest: &[OwnedEventId],
        limit: usize,
        min_depth: i64,
    ) -> Result<Vec<Box<RawValue>>> {
        self.check_server_may_see(origin, room_id).await?;
        let stop: HashSet<String> = earliest.iter().map(ToString::to_string).collect();
        let latest_ids: Vec<String> = latest.iter().map(ToString::to_string).collect();
        let starts: Vec<String> = self
            .pdus(&latest_ids)
            .await?
            .values()
            .flat_map(|pdu| pdu.prev_events.iter().map(ToString::to_string))
            .collect();
        let found = self.walk_back(room_id, starts, &stop, limit, min_depth).await?;
        let mut events: Vec<&Pdu> = found.values().collect();
        events.sort_by_key(|pdu| pdu.depth);
        self.as_visible_to(origin, room_id, &events).await
    }

    /// Events as `server` may have them: whole where the room's history visibility at the
    /// event lets one of its users see it (`world_readable`, `shared`; `invited` with one of
    /// them invited or joined then; `joined` with one joined then), redacted otherwise, so the
    /// DAG stays whole (as Synapse's `filter_events_for_server` does).
    async fn as_visible_to(
        &self,
        server: &ServerName,
        room_id: &RoomId,
        events: &[&Pdu],
    ) -> Result<Vec<Box<RawValue>>> {
        let room = self.known_room(room_id).await?;
        let ids: Vec<String> = events.iter().map(|pdu| pdu.event_id.to_string()).collect();
        let groups: HashMap<String, i64> =
            self.store.rooms().events(&ids).await?.into_iter().map(|row| (row.event_id, row.state_before)).collect();
        let mut verdicts: HashMap<i64, bool> = HashMap::new();
        let mut out = Vec::with_capacity(events.len());
        for pdu in events {
            let visible = match groups.get(pdu.event_id.as_str()) {
                Some(group) => match verdicts.get(group) {
                    Some(visible) => *visible,
                    None => {
                        let visible = self.server_sees_at(server, *group).await?;
                        verdicts.insert(*group, visible);
                        visible
                    }
                },
                // An outlier: state or auth events of the room (a joined server sees the state).
                None => true,
            };
            if visible {
                out.push(raw(&pdu.canonical_json())?);
            } else {
                let redacted = ruma::canonical_json::redact(pdu.json.clone(), &room.rules.redaction, None)
                    .map_err(Error::internal)?;
                out.push(raw(&CanonicalJsonValue::Object(redacted).to_string())?);
            }
        }
        Ok(out)
    }

    /// Whether a user of `server` could see an event whose state before it is `group`.
    async fn server_sees_at(&self, server: &ServerName, group: i64) -> Result<bool> {
        let state = self.state_at(group).await?;
        let visibility = match state.get(&("m.room.history_visibility".to_owned(), String::new())) {
            Some(id) => self
                .cached_pdus(std::slice::from_ref(id))
                .await?
                .get(id)
                .map(|pdu| pdu.content_value()["history_visibility"].as_str().unwrap_or("shared").to_owned()),
            None => None,
        };
        let visibility = visibility.unwrap_or_else(|| "shared".to_owned());
        if matches!(visibility.as_str(), "world_readable" | "shared") {
            return Ok(true);
        }
        let suffix = format!(":{server}");
        let members: Vec<String> = state
            .iter()
            .filter(|((kind, key), _)| kind == "m.room.member" && key.ends_with(&suffix))
            .map(|(_, id)| id.clone())
            .collect();
        let wanted: &[&str] = if visibility == "invited" { &["invite", "join"] } else { &["join"] };
        Ok(self
            .cached_pdus(&members)
            .await?
            .values()
            .any(|pdu| pdu.content_value()["membership"].as_str().is_some_and(|m| wanted.contains(&m))))
    }

    /// Breadth-first from `start` along `prev_events`, not past `stop` nor below `min_depth`.
    async fn walk_back(
        &self,
        room_id: &RoomId,
        start: Vec<String>,
        stop: &HashSet<String>,
        limit: usize,
        min_depth: i64,
    ) -> Result<BTreeMap<String, Pdu>> {
        let limit = limit.min(MAX_EVENTS);
        let mut found = BTreeMap::new();
        let mut seen: HashSet<String> = HashSet::new();
        let mut next: Vec<String> = start.into_iter().filter(|id| !stop.contains(id)).collect();
        while !next.is_empty() && found.len() < limit {
            let rows = self.store.rooms().events(&next).await?;
            let mut after = Vec::new();
            for row in rows {
                if row.room_id != room_id.as_str() || found.len() >= limit || row.depth < min_depth {
                    continue;
                }
                let pdu = Pdu::from_stored(&row.event_id, &row.json)?;
                for prev in &pdu.prev_events {
                    let prev = prev.to_string();
                    if !stop.contains(&prev) && seen.insert(prev.clone()) {
                        after.push(prev);
                    }
                }
                found.insert(row.event_id, pdu);
            }
            next = after;
        }
        Ok(found)
    }

    async fn check_server_may_see(&self, origin: &ServerName, room_id: &RoomId) -> Result<()> {
        self.known_room(room_id).await?;
        if !self.server_may_see(room_id, origin).await? {
            return Err(Error::forbidden(format!("{origin} is not in {room_id}")));
        }
        Ok(())
    }

    /// Events as their federation JSON.
    async fn raw_events(&self, ids: &[String]) -> Result<Vec<Box<RawValue>>> {
        let rows = self.store.rooms().pdu_jsons(ids).await?;
        let mut seen = HashSet::new();
        rows.into_iter().filter(|(id, _, _)| seen.insert(id.clone())).map(|(_, _, json)| raw(&json)).collect()
    }
}

fn raw(json: &str) -> Result<Box<RawValue>> {
    RawValue::from_string(json.to_owned()).map_err(Error::internal)
}
