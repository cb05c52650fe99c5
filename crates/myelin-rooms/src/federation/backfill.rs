//! History from before this server joined a room: when a client pages back past the room's
//! earliest local event, its older events are asked of the other servers in the room
//! (`/backfill`), checked (signatures, hash, auth rules against their auth events and against
//! the state before them) and stored below the stream's zero, each with its own state.
//!
//! The state before a backfilled event is worked out as for a live one, from its previous
//! events, oldest first; where they are not known here (the oldest events of a batch), it is
//! asked of the server (`/state_ids`, the unknown state events then fetched). History
//! visibility is judged by that state, as on the server that had the room all along.

use crate::{pdu::Pdu, service::RoomInfo, service::RoomService};
use myelin_core::{Error, Result};
use myelin_store::StateMap;
use ruma::{
    CanonicalJsonObject, EventId, OwnedEventId, RoomId, ServerName, UInt,
    api::federation::backfill::get_backfill::v1 as backfill,
    api::federation::event::get_room_state_ids::v1 as get_state_ids,
    api::federation::event::{get_event::v1 as get_event, get_room_state::v1 as get_state},
};
use std::{collections::HashMap, sync::Arc};

/// Events asked for per backfill request.
const BACKFILL_LIMIT: u32 = 100;

/// Unknown state events at a backfill point fetched one by one (`/event`); beyond this many,
/// the whole state is asked for at once (`/state`).
const FETCH_ONE_BY_ONE: usize = 50;

/// The most state events taken from another server's answer.
const MAX_STATE: usize = 100_000;

/// The most events of one batch whose state is asked of the server (`/state_ids`).
const MAX_REMOTE_STATES: usize = 2;

/// A room's backfill in progress, released when dropped.
struct BackfillGuard<'a> {
    service: &'a RoomService,
    room_id: ruma::OwnedRoomId,
}

impl<'a> BackfillGuard<'a> {
    fn take(service: &'a RoomService, room_id: &RoomId) -> Option<Self> {
        let mut rooms = service.backfilling.lock().unwrap_or_else(|e| e.into_inner());
        rooms.insert(room_id.to_owned()).then(|| BackfillGuard { service, room_id: room_id.to_owned() })
    }
}

impl Drop for BackfillGuard<'_> {
    fn drop(&mut self) {
        self.service.backfilling.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.room_id);
    }
}

impl RoomService {
    /// Fetches the room's history before its earliest local event from another server in the
    /// room; how many events were stored (0 when the room's start is already here).
    pub(crate) async fn backfill(&self, room_id: &RoomId) -> Result<usize> {
        let room = self.known_room(room_id).await?;
        // One backfill of a room at a time: a second reader finds the history being fetched
        // and pages what is here (batches never interleave their positions).
        let Some(_guard) = BackfillGuard::take(self, room_id) else { return Ok(0) };
        let Some(earliest) = self.store.rooms().earliest_event(room_id.as_str()).await? else { return Ok(0) };
        if earliest.event_type == "m.room.create" {
            return Ok(0);
        }
        let Ok(from) = EventId::parse(&earliest.event_id) else { return Ok(0) };
        let start = crate::pdu::Pdu::from_stored(&earliest.event_id, &earliest.json)?.prev_events;
        let servers = self.servers_in_room(room_id).await?;
        for server in servers.iter() {
            let mut request =
                backfill::Request::new(room_id.to_owned(), vec![from.clone()], UInt::from(BACKFILL_LIMIT));
            request.limit = UInt::from(BACKFILL_LIMIT);
            let answer = match self.federation.client.send(server, request).await {
                Ok(answer) => answer,
                Err(e) => {
                    tracing::info!(%server, %room_id, "backfill failed: {e}");
                    continue;
                }
            };
            let events: Vec<CanonicalJsonObject> = answer
                .pdus
                .iter()
                .take(BACKFILL_LIMIT as usize + 1)
                .filter_map(|raw| serde_json::from_str(raw.get()).ok())
                .collect();
            let mut events = ancestors_of(&start, events, &room);
            // Oldest first, so each event's previous events are worked out before it.
            events.sort_by_key(|json| match json.get("depth") {
                Some(ruma::CanonicalJsonValue::Integer(depth)) => i64::from(*depth),
                _ => 0,
            });
            let mut checked: Vec<(Pdu, i64, i64)> = Vec::with_capacity(events.len());
            let mut after_of: HashMap<String, i64> = HashMap::new();
            let mut remote_states = 0;
            for json in events {
                match self.check_backfilled(server, &room, json, &after_of, &mut remote_states).await {
                    Ok((pdu, before, after)) => {
                        after_of.insert(pdu.event_id.to_string(), after);
                        checked.push((pdu, before, after));
                    }
                    Err(e) => tracing::info!(%server, %room_id, "a backfilled event was refused: {e}"),
                }
            }
            // Newest first, so each event lands below the ones after it.
            let mut stored = 0;
            for (pdu, before, after) in checked.iter().rev() {
                let event = crate::service::stored_event(pdu, Some(*before), pdu.canonical_json());
                if self.store.rooms().persist_backfilled(&event, *before, *after).await? {
                    stored += 1;
                }
            }
            return Ok(stored);
        }
        Ok(0)
    }
}

impl RoomService {
    /// Checks a backfilled event (signatures, hash, auth rules against its auth events and the
    /// state before it) and works out its state: (the event, state group before, after).
    /// `after_of`: the state after each event of the batch checked so far.
    async fn check_backfilled(
        &self,
        server: &ServerName,
        room: &RoomInfo,
        json: CanonicalJsonObject,
        after_of: &HashMap<String, i64>,
        remote_states: &mut usize,
    ) -> Result<(Pdu, i64, i64)> {
        let pdu = self.verify_pdu(room, json).await?;
        self.check_against_auth_events(server, room, &pdu).await?;
        let prevs: Vec<String> = pdu.prev_events.iter().map(ToString::to_string).collect();
        let mut groups: Vec<i64> = prevs.iter().filter_map(|id| after_of.get(id).copied()).collect();
        let rest: Vec<String> = prevs.iter().filter(|id| !after_of.contains_key(*id)).cloned().collect();
        let stored = if rest.is_empty() { Vec::new() } else { self.states_after(&room.room_id, &rest).await? };
        let all_known = stored.len() == rest.len();
        groups.extend(stored);
        let (before_group, before) = if !all_known {
            // A batch normally starts mid-history once; a server answering with many loose
            // ends is not followed further.
            *remote_states += 1;
            if *remote_states > MAX_REMOTE_STATES {
                return Err(Error::forbidden("too many events of the batch start from unknown events"));
            }
            let (group, remote) = self.remote_state_before(server, room, &pdu.event_id).await?;
            if groups.is_empty() {
                (group, remote)
            } else {
                // Some previous events are here: their states count too, resolved with the
                // server's (which alone could claim any state it has signed events for).
                let mut states = vec![StateMap::clone(&remote)];
                for group in &groups {
                    states.push(StateMap::clone(&*self.state_at(*group).await?));
                }
                let state = self.resolve_states(room, &states, None).await?;
                (self.store.rooms().save_state_group(room.room_id.as_str(), &state).await?, Arc::new(state))
            }
        } else if groups.len() == 1 {
            (groups[0], self.state_at(groups[0]).await?)
        } else {
            // Several previous events (resolved), or none (the create event: empty).
            let mut states = Vec::with_capacity(groups.len());
            for group in &groups {
                states.push(StateMap::clone(&*self.state_at(*group).await?));
            }
            let state =
                if states.is_empty() { StateMap::new() } else { self.resolve_states(room, &states, None).await? };
            (self.store.rooms().save_state_group(room.room_id.as_str(), &state).await?, Arc::new(state))
        };
        self.check_against_state(room, &pdu, &before)
            .await
            .map_err(|e| Error::forbidden(format!("{} is not allowed by the state before it: {e}", pdu.event_id)))?;
        let after = match &pdu.state_key {
            Some(key) => {
                self.store
                    .rooms()
                    .save_state_after(
                        room.room_id.as_str(),
                        before_group,
                        &pdu.kind.to_string(),
                        key,
                        pdu.event_id.as_str(),
                    )
                    .await?
            }
            None => before_group,
        };
        Ok((pdu, before_group, after))
    }

    /// The state before `event_id` as `server` has it (`/state_ids`), its state events this
    /// server lacks fetched and checked, written as a state group.
    async fn remote_state_before(
        &self,
        server: &ServerName,
        room: &RoomInfo,
        event_id: &EventId,
    ) -> Result<(i64, Arc<StateMap>)> {
        let request = get_state_ids::Request::new(event_id.to_owned(), room.room_id.clone());
        let answer = self.federation.client.send(server, request).await?;
        let ids: Vec<String> = answer.pdu_ids.iter().take(MAX_STATE).map(ToString::to_string).collect();
        let mut known = self.pdus(&ids).await?;
        let unknown: Vec<String> = ids.iter().filter(|id| !known.contains_key(*id)).cloned().collect();
        if unknown.len() > FETCH_ONE_BY_ONE {
            self.fetch_state(server, room, event_id).await?;
        } else {
            for id in &unknown {
                let Ok(id) = EventId::parse(id) else { continue };
                let answer = self.federation.client.send(server, get_event::Request::new(id.clone())).await?;
                let json: CanonicalJsonObject =
                    serde_json::from_str(answer.pdu.get()).map_err(|e| Error::bad_json(e.to_string()))?;
                let pdu = self.verify_pdu(room, json).await?;
                if pdu.event_id != id || pdu.room_id != room.room_id {
                    return Err(Error::forbidden(format!("{server} answered {id} with another event")));
                }
                self.check_against_auth_events(server, room, &pdu).await?;
                self.store
                    .rooms()
                    .save_outliers(room.room_id.as_str(), &[(id.to_string(), pdu.canonical_json())])
                    .await?;
            }
        }
        if !unknown.is_empty() {
            known = self.pdus(&ids).await?;
        }
        let mut state = StateMap::new();
        for id in &ids {
            let Some(pdu) = known.get(id) else {
                return Err(Error::not_found(format!("{server} did not give the state event {id}")));
            };
            if let (Some(key), true) = (&pdu.state_key, pdu.room_id == room.room_id) {
                state.insert((pdu.kind.to_string(), key.clone()), id.clone());
            }
        }
        let group = self.store.rooms().save_state_group(room.room_id.as_str(), &state).await?;
        Ok((group, Arc::new(state)))
    }

    /// The whole state at `event_id` with its auth chain from `server` (`/state`): every event
    /// verified and checked against its auth events, kept as outliers.
    async fn fetch_state(&self, server: &ServerName, room: &RoomInfo, event_id: &EventId) -> Result<()> {
        let request = get_state::Request::new(event_id.to_owned(), room.room_id.clone());
        let answer = self.federation.client.send(server, request).await?;
        let raw = answer.pdus.iter().chain(answer.auth_chain.iter()).take(2 * MAX_STATE);
        let jsons: Vec<CanonicalJsonObject> = raw.filter_map(|raw| serde_json::from_str(raw.get()).ok()).collect();
        let events: HashMap<OwnedEventId, Arc<Pdu>> =
            self.verify_pdus(room, jsons).await?.into_iter().map(|pdu| (pdu.event_id.clone(), Arc::new(pdu))).collect();
        let rules = room.rules.authorization.clone();
        let events =
            tokio::task::spawn_blocking(move || super::join::check_auth_chain(&rules, &events).map(|()| events))
                .await
                .map_err(Error::internal)?
                .map_err(|e| Error::forbidden(format!("the state from {server} breaks the auth rules: {e}")))?;
        let outliers: Vec<(String, String)> = events
            .values()
            .filter(|pdu| pdu.room_id == room.room_id)
            .map(|pdu| (pdu.event_id.to_string(), pdu.canonical_json()))
            .collect();
        self.store.rooms().save_outliers(room.room_id.as_str(), &outliers).await?;
        Ok(())
    }
}

/// The events of a backfill answer reached through `prev_events` from `start` (the earliest
/// local event's previous events); anything else the server sent along is dropped.
fn ancestors_of(
    start: &[ruma::OwnedEventId],
    events: Vec<CanonicalJsonObject>,
    room: &crate::RoomInfo,
) -> Vec<CanonicalJsonObject> {
    use std::collections::HashMap;
    let mut by_id: HashMap<ruma::OwnedEventId, CanonicalJsonObject> =
        events.into_iter().filter_map(|json| Some((super::event_id_of(&json, room).ok()?, json))).collect();
    let prevs = |json: &CanonicalJsonObject| -> Vec<ruma::OwnedEventId> {
        match json.get("prev_events") {
            Some(ruma::CanonicalJsonValue::Array(list)) => list
                .iter()
                .filter_map(|item| match item {
                    ruma::CanonicalJsonValue::String(id) => EventId::parse(id).ok(),
                    // Room versions 1 and 2: [event_id, hashes].
                    ruma::CanonicalJsonValue::Array(pair) => match pair.first() {
                        Some(ruma::CanonicalJsonValue::String(id)) => EventId::parse(id).ok(),
                        _ => None,
                    },
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    };
    let mut next: Vec<ruma::OwnedEventId> = start.to_vec();
    let mut kept = Vec::new();
    while let Some(id) = next.pop() {
        if let Some(json) = by_id.remove(&id) {
            next.extend(prevs(&json));
            kept.push(json);
        }
    }
    kept
}
