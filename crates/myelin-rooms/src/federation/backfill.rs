//! History from before this server joined a room: when a client pages back past the room's
//! earliest local event, its older events are asked of the other servers in the room
//! (`/backfill`), checked (signatures, hash, auth rules against their auth events) and stored
//! below the stream's zero.
//!
//! What the state was at those events is not fetched: they are stored with the state this
//! server knows at its earliest local event (for a joined room, the state before its join),
//! which is what history visibility is then judged by.

use crate::service::RoomService;
use myelin_core::Result;
use ruma::{CanonicalJsonObject, EventId, RoomId, UInt, api::federation::backfill::get_backfill::v1 as backfill};

/// Events asked for per backfill request.
const BACKFILL_LIMIT: u32 = 100;

impl RoomService {
    /// Fetches the room's history before its earliest local event from another server in the
    /// room; how many events were stored (0 when the room's start is already here).
    pub(crate) async fn backfill(&self, room_id: &RoomId) -> Result<usize> {
        let room = self.known_room(room_id).await?;
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
            // Newest first, so each event lands below the ones after it.
            events.sort_by_key(|json| match json.get("depth") {
                Some(ruma::CanonicalJsonValue::Integer(depth)) => -i64::from(*depth),
                _ => 0,
            });
            let mut stored = 0;
            for json in events {
                let pdu = match self.verify_pdu(&room, json).await {
                    Ok(pdu) => pdu,
                    Err(e) => {
                        tracing::info!(%server, "a backfilled event was refused: {e}");
                        continue;
                    }
                };
                if let Err(e) = self.check_against_auth_events(server, &room, &pdu).await {
                    tracing::info!(%server, event_id = %pdu.event_id, "a backfilled event was refused: {e}");
                    continue;
                }
                let event = crate::service::stored_event(&pdu, Some(earliest.state_before), pdu.canonical_json());
                if self.store.rooms().persist_backfilled(&event, earliest.state_before).await? {
                    stored += 1;
                }
            }
            return Ok(stored);
        }
        Ok(0)
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
