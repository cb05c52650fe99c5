//! Rooms shared with other servers: what goes out (every event to the servers in the room),
//! what comes in (PDUs checked as the spec's "checks performed on receipt"), joining rooms
//! that live elsewhere, and the DAG served to other servers.

mod backfill;
mod edus;
mod incoming;
mod invites;
mod join;
mod knock;
mod serve;
mod state_res_v1;
mod verify;

pub use incoming::PduResults;
pub use serve::{JoinTemplate, SendJoinAnswer};

use crate::{pdu::Pdu, service::RoomInfo, service::RoomService};
use myelin_core::{Error, Result};
use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, EventId, OwnedEventId, OwnedServerName, RoomId, ServerName,
    room_version_rules::EventIdFormatVersion, serde::Base64, signatures::PublicKeyMap,
};
use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

impl RoomService {
    /// Queues a new local event for the other servers in its room (and, for a membership
    /// change, the target's server).
    pub(crate) async fn distribute(&self, room_id: &RoomId, pdu: &Pdu) {
        self.distribute_except(room_id, pdu, None).await;
    }

    /// `distribute`, leaving out `origin` (the server the event came from).
    pub(crate) async fn distribute_except(&self, room_id: &RoomId, pdu: &Pdu, origin: Option<&ServerName>) {
        if pdu.kind.to_string() == "m.room.member" {
            self.forget_servers(room_id);
        }
        let mut destinations = match self.servers_in_room(room_id).await {
            Ok(servers) => Vec::clone(&servers),
            Err(e) => {
                tracing::warn!(%room_id, "servers of the room: {e}");
                return;
            }
        };
        if pdu.kind.to_string() == "m.room.member"
            && let Some(target) = pdu.state_key.as_deref().and_then(|k| ruma::UserId::parse(k).ok())
            && target.server_name() != self.config.server_name
            && !destinations.iter().any(|d| d == target.server_name())
        {
            destinations.push(target.server_name().to_owned());
        }
        destinations.retain(|d| Some(&**d) != origin);
        if destinations.is_empty() {
            return;
        }
        if let Err(e) = self.federation.sender.send_pdu(&destinations, &pdu.canonical_json()).await {
            tracing::warn!(event_id = %pdu.event_id, "queueing the event for other servers: {e}");
        }
    }

    /// Tries `attempt` through each of `servers` (other than this one) in turn until one
    /// answers; a 403 is the room's answer and ends it (another server would refuse alike),
    /// any other failure moves on. `what` names the request in logs and in the error when no
    /// server answered.
    pub(crate) async fn through_first<T, F, Fut>(
        &self,
        what: &str,
        room_id: &RoomId,
        servers: &[OwnedServerName],
        mut attempt: F,
    ) -> Result<T>
    where
        F: FnMut(OwnedServerName) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let mut last_error = Error::not_found(format!("no server of the room took the {what}"));
        for server in servers.iter().filter(|s| **s != self.config.server_name) {
            match attempt(server.clone()).await {
                Ok(answer) => return Ok(answer),
                Err(e) => {
                    tracing::info!(%server, %room_id, "{what} through {server} failed: {e}");
                    if matches!(e.kind(), Some(myelin_core::ErrorKind::Forbidden)) {
                        return Err(e);
                    }
                    last_error = e;
                }
            }
        }
        Err(last_error)
    }

    /// The other servers with a member joined to the room.
    pub(crate) async fn servers_in_room(&self, room_id: &RoomId) -> Result<Arc<Vec<OwnedServerName>>> {
        if let Some(servers) = self.servers.lock().unwrap_or_else(|e| e.into_inner()).get(room_id) {
            return Ok(servers.clone());
        }
        let members = self.store.rooms().members(room_id.as_str()).await?;
        let mut servers: Vec<OwnedServerName> = members
            .iter()
            .filter(|m| m.membership == "join")
            .filter_map(|m| ruma::UserId::parse(&m.user_id).ok())
            .map(|user| user.server_name().to_owned())
            .filter(|server| *server != self.config.server_name)
            .collect();
        servers.sort();
        servers.dedup();
        let servers = Arc::new(servers);
        self.servers.lock().unwrap_or_else(|e| e.into_inner()).insert(room_id.to_owned(), servers.clone());
        Ok(servers)
    }

    pub(crate) fn forget_servers(&self, room_id: &RoomId) {
        self.servers.lock().unwrap_or_else(|e| e.into_inner()).remove(room_id);
    }

    /// Whether `server` may read the room's events over federation: one of its users is joined
    /// to the room, or the room is world-readable.
    pub(crate) async fn server_may_see(&self, room_id: &RoomId, server: &ServerName) -> Result<bool> {
        if !self.server_allowed(room_id, server).await? {
            return Ok(false);
        }
        let members = self.store.rooms().members(room_id.as_str()).await?;
        let suffix = format!(":{server}");
        if members.iter().any(|m| m.user_id.ends_with(&suffix) && m.membership == "join") {
            return Ok(true);
        }
        let visibility = self.current_state_event(room_id, "m.room.history_visibility", "").await?;
        Ok(visibility.is_some_and(|pdu| pdu.content_value()["history_visibility"] == "world_readable"))
    }

    /// Whether the room's server ACL (`m.room.server_acl`) lets `server` take part: its PDUs,
    /// EDUs and requests about the room are refused otherwise.
    pub(crate) async fn server_allowed(&self, room_id: &RoomId, server: &ServerName) -> Result<bool> {
        let Some(acl) = self.current_state_event(room_id, "m.room.server_acl", "").await? else {
            return Ok(true);
        };
        match serde_json::from_str::<ruma::events::room::server_acl::RoomServerAclEventContent>(acl.content.get()) {
            Ok(content) => Ok(content.is_allowed(server)),
            // An ACL that does not parse denies nobody (as Synapse treats it).
            Err(_) => Ok(true),
        }
    }

    /// Refuses a request of `server` about a room whose ACL denies it.
    pub(crate) async fn check_server_acl(&self, room_id: &RoomId, server: &ServerName) -> Result<()> {
        if !self.server_allowed(room_id, server).await? {
            return Err(Error::forbidden(format!("{server} is denied by the room's server ACL")));
        }
        Ok(())
    }

    /// Checks a PDU received from another server — format, signatures of the servers that
    /// must sign it, content hash (a mismatch means it is used redacted) — and parses it.
    pub(crate) async fn verify_pdu(&self, room: &RoomInfo, json: CanonicalJsonObject) -> Result<Pdu> {
        let keys = self.keys_to_verify(room, std::slice::from_ref(&json)).await?;
        verify::check_pdu(room, json, &keys)
    }

    /// `verify_pdu` for many events (a join's state and auth chain): the keys fetched once,
    /// the checks spread over the cores, each core's share verified as one batch
    /// (`verify.rs`). Any bad event fails the whole batch.
    pub(crate) async fn verify_pdus(&self, room: &RoomInfo, events: Vec<CanonicalJsonObject>) -> Result<Vec<Pdu>> {
        let keys = Arc::new(self.keys_to_verify(room, &events).await?);
        let room = room.clone();
        on_all_cores(events, move |part| verify::check_pdus(&room, part, &keys)).await
    }

    /// The keys of every server that must have signed one of `events`. In room versions 5+
    /// a key counts only if valid at the event's time (for a batch: at its earliest event's),
    /// and retired keys only for events from before they were retired.
    async fn keys_to_verify(&self, room: &RoomInfo, events: &[CanonicalJsonObject]) -> Result<PublicKeyMap> {
        let mut times: HashMap<OwnedServerName, (i64, i64)> = HashMap::new();
        for json in events {
            let servers = ruma::signatures::required_server_signatures_to_verify_event(json, &room.rules.signatures)
                .map_err(|e| Error::bad_json(format!("an event cannot be verified: {e}")))?;
            let ts = match json.get("origin_server_ts") {
                Some(CanonicalJsonValue::Integer(ts)) => i64::from(*ts),
                _ => 0,
            };
            for server in servers {
                let entry = times.entry(server).or_insert((ts, ts));
                *entry = (entry.0.min(ts), entry.1.max(ts));
            }
        }
        let enforce = room.rules.enforce_key_validity;
        let mut keys = PublicKeyMap::new();
        for (server, (earliest, latest)) in times {
            let rows = self.federation.keys.verify_keys(&server, latest).await?;
            let set = rows
                .into_iter()
                .filter(|row| {
                    !enforce || (row.valid_until_ts >= earliest && row.expired_ts.is_none_or(|t| t > earliest))
                })
                .filter_map(|row| Some((row.key_id, Base64::parse(&row.public_key).ok()?)))
                .collect();
            keys.insert(server.to_string(), set);
        }
        Ok(keys)
    }

    /// Resolves several states of a room into one: state resolution v2 (ruma), or v1 for room
    /// version 1 (`state_res_v1.rs`).
    /// `incoming` is an event in one of the states that is not stored yet.
    pub(crate) async fn resolve_states(
        &self,
        room: &RoomInfo,
        states: &[myelin_store::StateMap],
        incoming: Option<&Pdu>,
    ) -> Result<myelin_store::StateMap> {
        let Some(rules) = room.rules.state_res.v2_rules().copied() else {
            return self.resolve_states_v1(room, states, incoming).await;
        };
        let mut maps = Vec::with_capacity(states.len());
        let mut chains = Vec::with_capacity(states.len());
        let mut events: HashMap<OwnedEventId, Arc<Pdu>> = HashMap::new();
        for state in states {
            let mut ids: Vec<String> = state.values().cloned().collect();
            if let Some(pdu) = incoming
                && ids.contains(&pdu.event_id.to_string())
            {
                // Its auth chain is its auth events' and theirs.
                ids.extend(pdu.auth_events.iter().map(ToString::to_string));
            }
            let (mut chain, found) = self.auth_chain(&ids).await?;
            if let Some(pdu) = incoming {
                chain.extend(pdu.auth_events.iter().filter(|_| ids.contains(&pdu.event_id.to_string())).cloned());
            }
            events.extend(found);
            for pdu in self.cached_pdus(&ids).await?.into_values() {
                events.insert(pdu.event_id.clone(), pdu);
            }
            chains.push(chain.into_iter().collect::<ruma::state_res::utils::event_id_set::EventIdSet<OwnedEventId>>());
            let map: ruma::state_res::StateMap<OwnedEventId> = state
                .iter()
                .filter_map(|((kind, key), id)| Some(((kind.as_str().into(), key.clone()), EventId::parse(id).ok()?)))
                .collect();
            maps.push(map);
        }
        if let Some(pdu) = incoming {
            events.insert(pdu.event_id.clone(), Arc::new(pdu.clone()));
        }
        let authorization = room.rules.authorization.clone();
        let resolved = tokio::task::spawn_blocking(move || {
            ruma::state_res::resolve(
                &authorization,
                &rules,
                maps.iter(),
                chains,
                |id| events.get(id).cloned(),
                |_| None,
            )
        })
        .await
        .map_err(Error::internal)?
        .map_err(|e| Error::internal(format!("state resolution: {e}")))?;
        Ok(resolved.into_iter().map(|((kind, key), id)| ((kind.to_string(), key), id.to_string())).collect())
    }

    /// `resolve_states` for room version 1 (see `state_res_v1.rs`).
    async fn resolve_states_v1(
        &self,
        room: &RoomInfo,
        states: &[myelin_store::StateMap],
        incoming: Option<&Pdu>,
    ) -> Result<myelin_store::StateMap> {
        let ids: HashSet<String> = states.iter().flat_map(|state| state.values().cloned()).collect();
        let ids: Vec<String> = ids.into_iter().collect();
        let mut events: HashMap<String, Arc<Pdu>> = self.cached_pdus(&ids).await?.into_iter().collect();
        if let Some(pdu) = incoming {
            events.insert(pdu.event_id.to_string(), Arc::new(pdu.clone()));
        }
        let (rules, states, room_id) = (room.rules.authorization.clone(), states.to_vec(), room.room_id.clone());
        tokio::task::spawn_blocking(move || state_res_v1::resolve(&rules, &room_id, &states, &events))
            .await
            .map_err(Error::internal)
    }

    /// The full auth chain of events (their auth events, recursively), with the events.
    pub(crate) async fn auth_chain(
        &self,
        event_ids: &[String],
    ) -> Result<(HashSet<OwnedEventId>, HashMap<OwnedEventId, Arc<Pdu>>)> {
        let mut chain = HashSet::new();
        let mut events = HashMap::new();
        let mut next: Vec<String> = event_ids.to_vec();
        let mut seen: HashSet<String> = HashSet::new();
        while !next.is_empty() {
            let found = self.cached_pdus(&next).await?;
            let mut after = Vec::new();
            for pdu in found.values() {
                for auth in &pdu.auth_events {
                    if seen.insert(auth.to_string()) {
                        chain.insert(auth.clone());
                        after.push(auth.to_string());
                    }
                }
            }
            for pdu in found.into_values() {
                events.insert(pdu.event_id.clone(), pdu);
            }
            next = after;
        }
        Ok((chain, events))
    }
}

/// Parses events received as JSON text, on all cores (a join's thousands). Order is kept.
pub(crate) async fn parse_events(raws: Vec<Box<serde_json::value::RawValue>>) -> Result<Vec<CanonicalJsonObject>> {
    on_all_cores(raws, |part| {
        part.iter()
            .map(|raw| serde_json::from_str(raw.get()).map_err(|e| Error::bad_json(format!("a bad event: {e}"))))
            .collect()
    })
    .await
}

/// Runs `work` on `items` split in one share per core, on blocking threads; the results are
/// in the items' order.
async fn on_all_cores<T, R, F>(mut items: Vec<T>, work: F) -> Result<Vec<R>>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(Vec<T>) -> Result<Vec<R>> + Send + Sync + 'static,
{
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).max(1);
    let chunk = items.len().div_ceil(threads).max(1);
    let work = Arc::new(work);
    let mut tasks = Vec::new();
    while !items.is_empty() {
        let rest = items.split_off(chunk.min(items.len()));
        let part = std::mem::replace(&mut items, rest);
        let work = work.clone();
        tasks.push(tokio::task::spawn_blocking(move || work(part)));
    }
    let mut results = Vec::new();
    for task in tasks {
        results.extend(task.await.map_err(Error::internal)??);
    }
    Ok(results)
}

/// The event ID of a PDU: its `event_id` field in room versions 1 and 2, its reference hash
/// later.
pub(crate) fn event_id_of(json: &CanonicalJsonObject, room: &RoomInfo) -> Result<OwnedEventId> {
    match room.rules.event_id_format {
        EventIdFormatVersion::V1 => match json.get("event_id") {
            Some(CanonicalJsonValue::String(id)) => EventId::parse(id).map_err(|e| Error::bad_json(e.to_string())),
            _ => Err(Error::bad_json("the event has no event_id")),
        },
        _ => {
            let hash = ruma::signatures::reference_hash(json, &room.rules)
                .map_err(|e| Error::bad_json(format!("the event cannot be hashed: {e}")))?;
            EventId::parse(format!("${hash}")).map_err(Error::internal)
        }
    }
}
