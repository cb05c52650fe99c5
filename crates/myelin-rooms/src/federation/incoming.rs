//! PDUs arriving from other servers (transactions, a join sent to us): the spec's checks on
//! receipt, missing previous events fetched, state before the event worked out (resolved
//! when it has several previous events), then persisted through the same store path as
//! local events. The EDUs of transactions are handled by `edus.rs`.

use crate::{pdu::Pdu, service::RoomInfo, service::RoomService};
use myelin_core::{Error, Result};
use ruma::{
    CanonicalJsonObject, EventId, OwnedEventId, RoomId, ServerName, UInt,
    api::federation::authorization::get_event_authorization::v1 as event_auth,
    api::federation::event::get_missing_events::v1 as missing_events,
};
use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

/// What happened to each PDU of a transaction: accepted, or why not.
pub type PduResults = BTreeMap<OwnedEventId, std::result::Result<(), String>>;

/// The most events of an auth chain taken from another server's answer.
const MAX_AUTH_CHAIN: usize = 10_000;

/// How many missing previous events are asked for at once.
const MISSING_EVENTS_LIMIT: u32 = 20;

impl RoomService {
    /// A transaction from `origin`: its PDUs and EDUs handled, once per transaction ID (a
    /// retry gets the first answer).
    pub async fn receive_transaction(
        &self,
        origin: &ServerName,
        txn_id: &str,
        pdus: Vec<CanonicalJsonObject>,
        edus: Vec<serde_json::Value>,
    ) -> Result<PduResults> {
        let federation = self.store.federation();
        if let Some(previous) = federation.transaction_response(origin.as_str(), txn_id).await? {
            let results: BTreeMap<OwnedEventId, Option<String>> = serde_json::from_str(&previous).unwrap_or_default();
            return Ok(results.into_iter().map(|(id, error)| (id, error.map_or(Ok(()), Err))).collect());
        }
        let results = self.receive_pdus(origin, pdus).await;
        self.receive_edus(origin, edus).await;
        let stored: BTreeMap<&OwnedEventId, Option<&String>> =
            results.iter().map(|(id, result)| (id, result.as_ref().err())).collect();
        let stored = serde_json::to_string(&stored).map_err(Error::internal)?;
        federation.save_transaction_response(origin.as_str(), txn_id, &stored, myelin_core::util::now_ms()).await?;
        Ok(results)
    }

    /// Forgets transactions received over a day ago (senders retry within minutes).
    pub async fn purge_old_transactions(&self) -> Result<u64> {
        let day = 24 * 3600 * 1000;
        Ok(self.store.federation().purge_transactions(myelin_core::util::now_ms() - day).await?)
    }

    /// Handles the PDUs of a transaction, each on its own: one bad PDU does not fail the rest.
    async fn receive_pdus(&self, origin: &ServerName, pdus: Vec<CanonicalJsonObject>) -> PduResults {
        let mut results = PduResults::new();
        for json in pdus {
            let room_id = match json.get("room_id") {
                Some(ruma::CanonicalJsonValue::String(id)) => RoomId::parse(id).ok(),
                _ => None,
            };
            let Some(room_id) = room_id else { continue };
            let room = match self.room(&room_id).await {
                Ok(Some(room)) => room,
                // Events of rooms this server is not in are dropped (nothing to check them by).
                _ => continue,
            };
            let Ok(event_id) = super::event_id_of(&json, &room) else { continue };
            let result = match self.check_server_acl(&room_id, origin).await {
                Ok(()) => self.receive_pdu(origin, &room, json, true).await.map(|_| ()).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = &result {
                tracing::info!(%origin, %event_id, "PDU not accepted: {e}");
            }
            results.insert(event_id, result);
        }
        results
    }

    /// Checks one PDU and persists it (a no-op for an event already stored). With
    /// `fetch_missing`, unknown previous events are fetched from `origin` first.
    pub(crate) async fn receive_pdu(
        &self,
        origin: &ServerName,
        room: &RoomInfo,
        json: CanonicalJsonObject,
        fetch_missing: bool,
    ) -> Result<Pdu> {
        let pdu = self.verify_pdu(room, json).await?;
        if let Some((_, known)) = self.pdu(pdu.event_id.as_str()).await? {
            return Ok(known);
        }
        // Soft-failed before: it stays so (not let into the timeline later, when the state has
        // changed, at a position that is not its own).
        let rooms = self.store.rooms();
        if !rooms.soft_failed_states(room.room_id.as_str(), &[pdu.event_id.to_string()]).await?.is_empty() {
            return Ok(pdu);
        }
        self.check_against_auth_events(origin, room, &pdu).await?;
        let prev_ids: Vec<String> = pdu.prev_events.iter().map(ToString::to_string).collect();
        let mut prev_states = self.states_after(&room.room_id, &prev_ids).await?;
        if prev_states.len() < prev_ids.len() && fetch_missing {
            self.fetch_missing(origin, room, &pdu).await;
            prev_states = self.states_after(&room.room_id, &prev_ids).await?;
        }
        if prev_states.len() < prev_ids.len() {
            return Err(Error::not_found(format!("{}: some of its previous events are unknown", pdu.event_id)));
        }

        let _lock = self.lock(&room.room_id).await;
        if let Some((_, known)) = self.pdu(pdu.event_id.as_str()).await? {
            return Ok(known);
        }
        // The state before the event: after its previous event, or their states resolved.
        let (before_group, before) = if prev_states.len() == 1 {
            (prev_states[0], self.state_at(prev_states[0]).await?)
        } else {
            let mut states = Vec::with_capacity(prev_states.len());
            for group in &prev_states {
                states.push(myelin_store::StateMap::clone(&*self.state_at(*group).await?));
            }
            let resolved = self.resolve_states(room, &states, None).await?;
            let group = self.store.rooms().save_state_group(room.room_id.as_str(), &resolved).await?;
            (group, Arc::new(resolved))
        };
        self.check_against_state(room, &pdu, &before)
            .await
            .map_err(|e| Error::forbidden(format!("{} is not allowed by the state before it: {e}", pdu.event_id)))?;
        // Soft failure: allowed by its own history but not by the room as it is now (a
        // banned user's event on an old fork): kept out of the timeline and the forward
        // extremities, with the state after it for later events built on it.
        let current = self.head(room).await?.state;
        if let Err(e) = self.check_against_state(room, &pdu, &current).await {
            tracing::info!(event_id = %pdu.event_id, "soft-failed: {e}");
            let after = match &pdu.state_key {
                Some(key) => {
                    let (kind, id) = (pdu.kind.to_string(), pdu.event_id.as_str());
                    rooms.save_state_after(room.room_id.as_str(), before_group, &kind, key, id).await?
                }
                None => before_group,
            };
            rooms.save_soft_failed(room.room_id.as_str(), pdu.event_id.as_str(), &pdu.canonical_json(), after).await?;
            return Ok(pdu);
        }
        self.persist_remote(room, &pdu, before_group, before).await?;
        Ok(pdu)
    }

    /// The state groups after those of `event_ids` this server has in the DAG: timeline
    /// events, and soft-failed events (outliers that later events may build on).
    /// Only events of `room_id` count: another room's event named as a previous event is
    /// unknown here (its state must never become this room's).
    pub(crate) async fn states_after(&self, room_id: &RoomId, event_ids: &[String]) -> Result<Vec<i64>> {
        let mut rows = self.store.rooms().events(event_ids).await?;
        rows.retain(|row| row.room_id == room_id.as_str());
        let mut groups: Vec<i64> = rows.iter().map(|row| row.state_after).collect();
        if groups.len() < event_ids.len() {
            let found: std::collections::HashSet<&str> = rows.iter().map(|row| row.event_id.as_str()).collect();
            let rest: Vec<String> = event_ids.iter().filter(|id| !found.contains(id.as_str())).cloned().collect();
            let soft_failed = self.store.rooms().soft_failed_states(room_id.as_str(), &rest).await?;
            groups.extend(soft_failed.into_iter().map(|(_, group)| group));
        }
        Ok(groups)
    }

    /// The auth rules against the event's own auth events (fetched from `origin` when
    /// unknown): a failure rejects it.
    pub(crate) async fn check_against_auth_events(
        &self,
        origin: &ServerName,
        room: &RoomInfo,
        pdu: &Pdu,
    ) -> Result<()> {
        let ids: Vec<String> = pdu.auth_events.iter().map(ToString::to_string).collect();
        let mut auth = self.cached_pdus(&ids).await?;
        if auth.len() < ids.len() {
            self.fetch_auth_chain(origin, room, &pdu.event_id, &pdu.auth_events).await?;
            auth = self.cached_pdus(&ids).await?;
        }
        if auth.len() < ids.len() {
            return Err(Error::not_found(format!("{}: some of its auth events are unknown", pdu.event_id)));
        }
        let by_id: HashMap<&EventId, &Arc<Pdu>> = auth.values().map(|p| (&*p.event_id, p)).collect();
        ruma::state_res::check_state_independent_auth_rules(&room.rules.authorization, pdu, |id| {
            by_id.get(id).map(|p| Arc::clone(p))
        })
        .map_err(|e| Error::forbidden(format!("{} is rejected: {e}", pdu.event_id)))?;
        let by_key: HashMap<(String, String), &Arc<Pdu>> =
            auth.values().filter_map(|p| Some(((p.kind.to_string(), p.state_key.clone()?), p))).collect();
        ruma::state_res::check_state_dependent_auth_rules(&room.rules.authorization, pdu, |t, k| {
            by_key.get(&(t.to_string(), k.to_owned())).map(|p| Arc::clone(p))
        })
        .map_err(|e| Error::forbidden(format!("{} is rejected by its auth events: {e}", pdu.event_id)))
    }

    /// The auth rules against a room state.
    pub(crate) async fn check_against_state(
        &self,
        room: &RoomInfo,
        pdu: &Pdu,
        state: &myelin_store::StateMap,
    ) -> std::result::Result<(), String> {
        let ruma_rules = &room.rules.authorization;
        let raw = &pdu.content;
        let types =
            ruma::state_res::auth_types_for_event(&pdu.kind, &pdu.sender, pdu.state_key.as_deref(), raw, ruma_rules)
                .map_err(|e| e.to_string())?;
        let ids: Vec<String> =
            types.iter().filter_map(|(t, k)| state.get(&(t.to_string(), k.clone())).cloned()).collect();
        let events = self.cached_pdus(&ids).await.map_err(|e| e.to_string())?;
        let by_key: HashMap<(String, String), &Arc<Pdu>> =
            events.values().filter_map(|p| Some(((p.kind.to_string(), p.state_key.clone()?), p))).collect();
        ruma::state_res::check_state_dependent_auth_rules(ruma_rules, pdu, |t, k| {
            by_key.get(&(t.to_string(), k.to_owned())).map(|p| Arc::clone(p))
        })
    }

    /// Asks `origin` for the events between what this server has and `pdu`
    /// (`get_missing_events`) and handles them oldest first.
    async fn fetch_missing(&self, origin: &ServerName, room: &RoomInfo, pdu: &Pdu) {
        let earliest = match self.store.rooms().forward_extremities(room.room_id.as_str()).await {
            Ok(ids) => ids.into_iter().filter_map(|id| EventId::parse(id).ok()).collect(),
            Err(_) => return,
        };
        let mut request = missing_events::Request::new(room.room_id.clone(), earliest, vec![pdu.event_id.clone()]);
        request.limit = UInt::from(MISSING_EVENTS_LIMIT);
        let response = match self.federation.client.send(origin, request).await {
            Ok(response) => response,
            Err(e) => {
                tracing::info!(%origin, event_id = %pdu.event_id, "get_missing_events failed: {e}");
                return;
            }
        };
        let mut events: Vec<(i64, CanonicalJsonObject)> = response
            .events
            .iter()
            .take(MISSING_EVENTS_LIMIT as usize)
            .filter_map(|raw| serde_json::from_str::<CanonicalJsonObject>(raw.get()).ok())
            .map(|json| {
                let depth = match json.get("depth") {
                    Some(ruma::CanonicalJsonValue::Integer(d)) => i64::from(*d),
                    _ => 0,
                };
                (depth, json)
            })
            .collect();
        events.sort_by_key(|(depth, _)| *depth);
        for (_, json) in events {
            if let Err(e) = Box::pin(self.receive_pdu(origin, room, json, false)).await {
                tracing::info!(%origin, "a missing event was not accepted: {e}");
            }
        }
    }

    /// Fetches an event's auth chain from `origin`, checks the events' signatures and keeps
    /// those its `auth_events` reach as outliers.
    pub(crate) async fn fetch_auth_chain(
        &self,
        origin: &ServerName,
        room: &RoomInfo,
        event_id: &EventId,
        auth_events: &[OwnedEventId],
    ) -> Result<()> {
        let request = event_auth::Request::new(room.room_id.clone(), event_id.to_owned());
        let response = self.federation.client.send(origin, request).await?;
        let mut found: HashMap<OwnedEventId, Pdu> = HashMap::new();
        for raw in response.auth_chain.iter().take(MAX_AUTH_CHAIN) {
            let Ok(json) = serde_json::from_str::<CanonicalJsonObject>(raw.get()) else { continue };
            let pdu = self.verify_pdu(room, json).await?;
            found.insert(pdu.event_id.clone(), pdu);
        }
        // Only what the event's auth events reach: anything else in the answer is dropped.
        let mut wanted: Vec<OwnedEventId> = auth_events.to_vec();
        let mut outliers = Vec::new();
        while let Some(id) = wanted.pop() {
            if let Some(pdu) = found.remove(&id) {
                wanted.extend(pdu.auth_events.iter().cloned());
                outliers.push((pdu.event_id.to_string(), pdu.canonical_json()));
            }
        }
        self.store.rooms().save_outliers(room.room_id.as_str(), &outliers).await?;
        Ok(())
    }
}
