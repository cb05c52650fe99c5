//! Joining a room that lives on other servers: `make_join` for a template, sign it,
//! `send_join`, check the state and auth chain the resident server sends, and persist the
//! join on that state. From then on the room's events arrive in transactions.

use crate::{
    pdu::Pdu,
    service::{RoomInfo, RoomService},
};
use myelin_core::{Error, Result, util::random_string};
use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, EventId, OwnedEventId, OwnedServerName, RoomId, UserId,
    api::federation::membership::{create_join_event::v2 as send_join, prepare_join_event::v1 as make_join},
    room_version_rules::EventIdFormatVersion,
};
use std::{collections::HashMap, sync::Arc};

impl RoomService {
    /// Whether this server takes part in the room (one of its users is joined).
    pub async fn is_resident(&self, room_id: &RoomId) -> Result<bool> {
        if self.room(room_id).await?.is_none() {
            return Ok(false);
        }
        Ok(self.store.rooms().has_joined_member_of(room_id.as_str(), self.config.server_name.as_str()).await?)
    }

    /// Joins `user` to a room this server is not in, through the first of `servers` that
    /// answers.
    pub async fn join_remote(
        &self,
        user: &UserId,
        room_id: &RoomId,
        servers: &[OwnedServerName],
        reason: Option<&str>,
    ) -> Result<OwnedEventId> {
        let mut candidates: Vec<OwnedServerName> =
            servers.iter().filter(|s| **s != self.config.server_name).cloned().collect();
        if let Some(server) = room_id.server_name()
            && server != self.config.server_name
            && !candidates.iter().any(|s| s == server)
        {
            candidates.push(server.to_owned());
        }
        if candidates.is_empty() {
            return Err(Error::not_found("this server is not in the room and knows no server that is"));
        }
        self.through_first("join", room_id, &candidates, |server| async move {
            self.join_through(user, room_id, &server, reason).await
        })
        .await
    }

    async fn join_through(
        &self,
        user: &UserId,
        room_id: &RoomId,
        server: &OwnedServerName,
        reason: Option<&str>,
    ) -> Result<OwnedEventId> {
        let mut request = make_join::Request::new(room_id.to_owned(), user.to_owned());
        request.ver = crate::supported_room_versions();
        let asked = std::time::Instant::now();
        let template = self.federation.client.send(server, request).await?;
        let room = RoomInfo::remote(room_id, template.room_version.unwrap_or(ruma::RoomVersionId::V1))?;

        // The template, completed and signed by this server.
        let mut content = self.member_content_with_profile(user, "join").await?;
        let template_json: serde_json::Value = serde_json::from_str(template.event.get()).unwrap_or_default();
        if let Some(via) = template_json["content"]["join_authorised_via_users_server"].as_str() {
            content["join_authorised_via_users_server"] = via.into();
        }
        if let Some(reason) = reason {
            content["reason"] = reason.into();
        }
        let SignedTemplate { event, event_id, raw } = self.sign_template(&room, template.event.get(), content)?;
        let answer = self
            .federation
            .client
            .send(server, send_join::Request::new(room_id.to_owned(), event_id.clone(), raw))
            .await?
            .room_state;
        // The resident server's copy carries its signature (restricted joins).
        let join_json = match &answer.event {
            Some(raw) => serde_json::from_str(raw.get()).map_err(|e| Error::bad_json(e.to_string()))?,
            None => event,
        };
        let join = self.verify_pdu(&room, join_json).await?;
        if join.event_id != event_id {
            return Err(Error::bad_json(format!("{server} sent back another join event")));
        }

        // The state and its auth chain: signatures checked, then the auth rules for each
        // event against its own auth events, oldest first.
        let answered = asked.elapsed();
        let started = std::time::Instant::now();
        let auth_chain_len = answer.auth_chain.len();
        let raws: Vec<_> = answer.auth_chain.into_iter().chain(answer.state).collect();
        let jsons = super::parse_events(raws).await.map_err(|e| Error::bad_json(format!("{server}: {e}")))?;
        let pdus = self.verify_pdus(&room, jsons).await?;
        let verified = started.elapsed();
        // `verify_pdus` keeps the order: the state is the tail.
        let mut state = myelin_store::StateMap::new();
        for pdu in &pdus[auth_chain_len..] {
            if let Some(key) = &pdu.state_key {
                state.insert((pdu.kind.to_string(), key.clone()), pdu.event_id.to_string());
            }
        }
        let events: HashMap<OwnedEventId, Arc<Pdu>> =
            pdus.into_iter().map(|pdu| (pdu.event_id.clone(), Arc::new(pdu))).collect();
        let checked = events.clone();
        let rules = room.rules.authorization.clone();
        tokio::task::spawn_blocking(move || check_auth_chain(&rules, &checked))
            .await
            .map_err(Error::internal)?
            .map_err(|e| Error::forbidden(format!("{server} sent a state that does not pass the auth rules: {e}")))?;
        let checked_at = started.elapsed();
        let Some(create_id) = state.get(&("m.room.create".to_owned(), String::new())) else {
            return Err(Error::bad_json(format!("{server} sent a room state without a create event")));
        };
        // The version the template claimed must be the room's (its create event's, "1" if none).
        let create = EventId::parse(create_id).ok().and_then(|id| events.get(&id).cloned());
        let created_as = create.map(|pdu| pdu.content_value()["room_version"].as_str().unwrap_or("1").to_owned());
        if created_as.as_deref() != Some(room.version.as_str()) {
            return Err(Error::bad_json(format!("{server} sent a join template of another room version")));
        }
        let _lock = self.lock(room_id).await;
        let outliers: Vec<(String, String)> =
            events.values().map(|pdu| (pdu.event_id.to_string(), pdu.canonical_json())).collect();
        self.store.rooms().save_outliers(room_id.as_str(), &outliers).await?;
        let before_group = self.store.rooms().save_state_group(room_id.as_str(), &state).await?;
        let mut after = state.clone();
        after.insert(("m.room.member".to_owned(), user.to_string()), join.event_id.to_string());
        let creator = events
            .get(&EventId::parse(&state[&("m.room.create".to_owned(), String::new())]).map_err(Error::internal)?)
            .map(|pdu| pdu.sender.to_string())
            .unwrap_or_default();
        let reset = self.state_reset_with(&events, &after);
        let json = join.canonical_json();
        let mut new_event = crate::service::stored_event(&join, Some(before_group), json);
        new_event.prev_events = join.prev_events.iter().map(ToString::to_string).collect();
        new_event.new_room = Some(myelin_store::NewRoom {
            room_id: room_id.to_string(),
            room_version: room.version.to_string(),
            creator,
            created_ts: myelin_core::util::now_ms(),
        });
        new_event.current_state = Some(reset);
        self.changes.begin_members(room_id.as_str());
        // A new membership: the room's unread counts start again.
        let unread = self.unread_cache.writing(room_id.as_str());
        let room_write = self.changes.room_write(room_id.as_str());
        let persisted = self.store.rooms().persist_event(&new_event).await;
        drop(unread);
        room_write.ended(persisted.as_ref().ok().map(|p| p.stream_ordering));
        self.changes.finish_members(room_id.as_str(), persisted.as_ref().ok().map(|p| p.stream_ordering));
        let persisted = persisted?;
        self.store.federation().forget_remote_invite(room_id.as_str(), user.as_str()).await?;
        self.remember_room(room);
        self.forget_head(room_id);
        self.forget_servers(room_id);
        self.forget_push_members(room_id);
        self.advance_stream(persisted.stream_ordering);
        tracing::info!(
            %room_id, %server, events = events.len(),
            remote_ms = answered.as_millis() as u64,
            verify_ms = verified.as_millis() as u64,
            auth_ms = (checked_at - verified).as_millis() as u64,
            store_ms = (started.elapsed() - checked_at).as_millis() as u64,
            "joined a room over federation"
        );
        Ok(join.event_id)
    }

    /// A membership template from another server (`make_join`, `make_leave`) with our
    /// content, origin and time, hashed and signed by this server.
    pub(crate) fn sign_template(
        &self,
        room: &RoomInfo,
        template: &str,
        content: serde_json::Value,
    ) -> Result<SignedTemplate> {
        let mut event: CanonicalJsonObject =
            serde_json::from_str(template).map_err(|e| Error::bad_json(format!("a bad event template: {e}")))?;
        for field in ["signatures", "hashes", "unsigned", "event_id"] {
            event.remove(field);
        }
        let content: CanonicalJsonValue = serde_json::from_value(content).map_err(Error::internal)?;
        event.insert("content".into(), content);
        event.insert("origin".into(), CanonicalJsonValue::String(self.config.server_name.to_string()));
        event.insert(
            "origin_server_ts".into(),
            CanonicalJsonValue::Integer(ruma::Int::new_saturating(myelin_core::util::now_ms())),
        );
        if room.rules.event_id_format == EventIdFormatVersion::V1 {
            let id = format!("${}:{}", random_string(18), self.config.server_name);
            event.insert("event_id".into(), CanonicalJsonValue::String(id));
        }
        ruma::signatures::hash_and_sign_event(
            self.config.server_name.as_str(),
            self.key.pair(),
            &mut event,
            &room.rules.redaction,
        )
        .map_err(Error::internal)?;
        let event_id = super::event_id_of(&event, room)?;
        let raw = serde_json::value::to_raw_value(&event).map_err(Error::internal)?;
        Ok(SignedTemplate { event, event_id, raw })
    }

    /// The room's whole state from a join, with every member's membership.
    fn state_reset_with(
        &self,
        events: &HashMap<OwnedEventId, Arc<Pdu>>,
        state: &myelin_store::StateMap,
    ) -> myelin_store::StateReset {
        let memberships = state
            .iter()
            .filter(|((kind, _), _)| kind == "m.room.member")
            .filter_map(|((_, user), id)| {
                let membership = match events.get(&*EventId::parse(id).ok()?) {
                    Some(pdu) => pdu.content_value()["membership"].as_str()?.to_owned(),
                    // The joining user's own event, not among the resident's state.
                    None => "join".to_owned(),
                };
                Some((user.clone(), membership, id.clone()))
            })
            .collect();
        myelin_store::StateReset { state: state.clone(), memberships }
    }
}

/// A membership event completed from another server's template and signed here: the event,
/// its ID, and its JSON as sent.
pub(crate) struct SignedTemplate {
    pub event: CanonicalJsonObject,
    pub event_id: OwnedEventId,
    pub raw: Box<serde_json::value::RawValue>,
}

/// The auth rules for each event of a join's state and auth chain, against its own auth
/// events (all of which must be among them).
pub(crate) fn check_auth_chain(
    rules: &ruma::room_version_rules::AuthorizationRules,
    events: &HashMap<OwnedEventId, Arc<Pdu>>,
) -> std::result::Result<(), String> {
    // Each event is checked against its own auth events only: independent checks, spread
    // over the cores.
    let all: Vec<&Arc<Pdu>> = events.values().collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).max(1);
    let chunk = all.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = all
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().try_for_each(|pdu| check_one(rules, pdu, events))))
            .collect();
        workers.into_iter().try_for_each(|worker| worker.join().unwrap_or_else(|_| Err("a check panicked".into())))
    })
}

fn check_one(
    rules: &ruma::room_version_rules::AuthorizationRules,
    pdu: &Arc<Pdu>,
    events: &HashMap<OwnedEventId, Arc<Pdu>>,
) -> std::result::Result<(), String> {
    let auth: Vec<&Arc<Pdu>> = pdu.auth_events.iter().filter_map(|id| events.get(id)).collect();
    if auth.len() < pdu.auth_events.len() {
        return Err(format!("{}: auth events missing", pdu.event_id));
    }
    ruma::state_res::check_state_independent_auth_rules(rules, pdu, |id| events.get(id).cloned())
        .map_err(|e| format!("{}: {e}", pdu.event_id))?;
    let by_key: HashMap<(String, String), &Arc<Pdu>> =
        auth.iter().filter_map(|p| Some(((p.kind.to_string(), p.state_key.clone()?), *p))).collect();
    ruma::state_res::check_state_dependent_auth_rules(rules, pdu, |t, k| {
        by_key.get(&(t.to_string(), k.to_owned())).map(|p| Arc::clone(p))
    })
    .map_err(|e| format!("{}: {e}", pdu.event_id))
}
