//! State resolution for room version 1, as `rooms/v1.md` defines it (ruma implements only v2,
//! which version 2 introduced). Done as Synapse does (`synapse/state/v1.py`), which the other
//! servers of such a room must agree with:
//!
//! - Unconflicted entries (one event ID for a key across the states) are kept; the auth events
//!   the conflicted events are checked against start as the unconflicted entries of their auth
//!   types.
//! - Events unknown here, or of another room, are left out of the conflicts.
//! - Conflicts of the power levels (`m.room.power_levels` with the empty state key), then of
//!   `m.room.join_rules`, then of each `m.room.member` key: the events sorted by ascending depth then descending SHA-1 of the event ID; each
//!   after the first is checked against the auth events with the one before it applied, and
//!   the last one allowed wins.
//! - Every other conflict: the first event, by descending depth then ascending SHA-1, that the
//!   auth rules allow against the auth events resolved so far (else the last one).

use crate::pdu::Pdu;
use myelin_store::{StateKey, StateMap};
use ruma::{RoomId, room_version_rules::AuthorizationRules};
use sha1::{Digest, Sha1};
use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::Arc,
};

/// Resolves `states` (each a map of state keys to event IDs) of room `room_id`. `events`
/// holds the events of the conflicted entries and the unconflicted entries' events; a
/// conflicted event missing there, or of another room, is left out (as Synapse does), and an
/// entry left with one event is unconflicted.
pub(crate) fn resolve(
    rules: &AuthorizationRules,
    room_id: &RoomId,
    states: &[StateMap],
    events: &HashMap<String, Arc<Pdu>>,
) -> StateMap {
    let mut ids_by_key: BTreeMap<&StateKey, BTreeSet<&String>> = BTreeMap::new();
    for state in states {
        for (key, id) in state {
            ids_by_key.entry(key).or_default().insert(id);
        }
    }
    let mut unconflicted = StateMap::new();
    let mut conflicted: BTreeMap<StateKey, Vec<Arc<Pdu>>> = BTreeMap::new();
    for (key, ids) in ids_by_key {
        let mut list: Vec<Arc<Pdu>> = Vec::with_capacity(ids.len());
        if ids.len() > 1 {
            list = ids.iter().filter_map(|id| events.get(*id)).filter(|pdu| pdu.room_id == room_id).cloned().collect();
        }
        match list.len() {
            0 if ids.len() == 1 => {
                unconflicted.insert(key.clone(), (*ids.first().expect("one")).clone());
            }
            0 => {}
            1 => {
                unconflicted.insert(key.clone(), list[0].event_id.to_string());
            }
            _ => {
                conflicted.insert(key.clone(), list);
            }
        }
    }
    if conflicted.is_empty() {
        return unconflicted;
    }

    // The auth events of the conflicted events, from the unconflicted state.
    let mut auth: HashMap<StateKey, Arc<Pdu>> = HashMap::new();
    for pdu in conflicted.values().flatten() {
        for key in auth_keys(rules, pdu) {
            if let Some(id) = unconflicted.get(&key)
                && let Some(event) = events.get(id)
            {
                auth.insert(key, event.clone());
            }
        }
    }

    let mut resolved: StateMap = StateMap::new();
    // The power levels (of the empty state key only), then join rules, then members.
    let phases: [&dyn Fn(&StateKey) -> bool; 3] =
        [&|key| key.0 == "m.room.power_levels" && key.1.is_empty(), &|key| key.0 == "m.room.join_rules", &|key| {
            key.0 == "m.room.member"
        }];
    for phase in phases {
        let keys: Vec<StateKey> = conflicted.keys().filter(|key| phase(key)).cloned().collect();
        let mut chosen = Vec::new();
        for key in keys {
            let winner = resolve_auth_events(rules, &conflicted[&key], &auth);
            chosen.push((key, winner));
        }
        for (key, winner) in chosen {
            resolved.insert(key.clone(), winner.event_id.to_string());
            auth.insert(key, winner);
        }
    }
    for (key, list) in &conflicted {
        if !resolved.contains_key(key) {
            resolved.insert(key.clone(), resolve_normal_events(rules, list, &auth).event_id.to_string());
        }
    }
    unconflicted.extend(resolved);
    unconflicted
}

/// Descending depth, then ascending SHA-1 of the event ID.
fn ordered(events: &[Arc<Pdu>]) -> Vec<Arc<Pdu>> {
    let mut list: Vec<(i64, [u8; 20], Arc<Pdu>)> =
        events.iter().map(|pdu| (-pdu.depth, Sha1::digest(pdu.event_id.as_bytes()).into(), pdu.clone())).collect();
    list.sort_by_key(|item| (item.0, item.1));
    list.into_iter().map(|(_, _, pdu)| pdu).collect()
}

/// The (type, state key) pairs the auth rules look up for `pdu` (none for an event whose
/// content they cannot read: it fails its checks then).
fn auth_keys(rules: &AuthorizationRules, pdu: &Pdu) -> Vec<StateKey> {
    ruma::state_res::auth_types_for_event(&pdu.kind, &pdu.sender, pdu.state_key.as_deref(), &pdu.content, rules)
        .map(|types| types.into_iter().map(|(kind, key)| (kind.to_string(), key)).collect())
        .unwrap_or_default()
}

fn allowed(rules: &AuthorizationRules, pdu: &Pdu, auth: &HashMap<StateKey, Arc<Pdu>>) -> bool {
    ruma::state_res::check_state_dependent_auth_rules(rules, pdu, |kind, key| {
        auth.get(&(kind.to_string(), key.to_owned())).cloned()
    })
    .is_ok()
}

/// Power levels, join rules, a member: oldest first, each applied while the next is allowed.
fn resolve_auth_events(
    rules: &AuthorizationRules,
    events: &[Arc<Pdu>],
    auth: &HashMap<StateKey, Arc<Pdu>>,
) -> Arc<Pdu> {
    let mut keys = BTreeSet::new();
    for pdu in events {
        keys.extend(auth_keys(rules, pdu));
    }
    let mut auth: HashMap<StateKey, Arc<Pdu>> =
        auth.iter().filter(|(key, _)| keys.contains(*key)).map(|(k, v)| (k.clone(), v.clone())).collect();
    let mut list = ordered(events);
    list.reverse();
    let mut previous = list[0].clone();
    for pdu in &list[1..] {
        if let Some(state_key) = &previous.state_key {
            auth.insert((previous.kind.to_string(), state_key.clone()), previous.clone());
        }
        if !allowed(rules, pdu, &auth) {
            return previous;
        }
        previous = pdu.clone();
    }
    previous
}

/// Any other state: the newest the auth rules allow.
fn resolve_normal_events(
    rules: &AuthorizationRules,
    events: &[Arc<Pdu>],
    auth: &HashMap<StateKey, Arc<Pdu>>,
) -> Arc<Pdu> {
    let list = ordered(events);
    list.iter().find(|pdu| allowed(rules, pdu, auth)).unwrap_or_else(|| list.last().expect("conflicted")).clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    const ALICE: &str = "@alice:a";
    const BOB: &str = "@bob:b";
    const MALLORY: &str = "@mallory:m";

    fn pdu(id: &str, kind: &str, sender: &str, state_key: &str, content: Value, depth: i64) -> Arc<Pdu> {
        let json = json!({
            "event_id": id, "room_id": "!room:a", "sender": sender, "type": kind, "state_key": state_key,
            "content": content, "depth": depth, "origin_server_ts": depth, "prev_events": [], "auth_events": [],
        });
        let id = ruma::EventId::parse(id).unwrap();
        Arc::new(Pdu::from_json(id, serde_json::from_value(json).unwrap()).unwrap())
    }

    /// A version 1 room: Alice created it (power 100), it is public, Bob and Mallory joined.
    fn room() -> (StateMap, HashMap<String, Arc<Pdu>>) {
        let events = [
            pdu("$create:a", "m.room.create", ALICE, "", json!({"creator": ALICE}), 1),
            pdu("$alice:a", "m.room.member", ALICE, ALICE, json!({"membership": "join"}), 2),
            pdu("$power:a", "m.room.power_levels", ALICE, "", json!({"users": {ALICE: 100}}), 3),
            pdu("$rules:a", "m.room.join_rules", ALICE, "", json!({"join_rule": "public"}), 4),
            pdu("$bob:b", "m.room.member", BOB, BOB, json!({"membership": "join"}), 5),
            pdu("$mallory:m", "m.room.member", MALLORY, MALLORY, json!({"membership": "join"}), 5),
        ];
        let state = events
            .iter()
            .map(|p| ((p.kind.to_string(), p.state_key.clone().unwrap()), p.event_id.to_string()))
            .collect();
        (state, events.into_iter().map(|p| (p.event_id.to_string(), p)).collect())
    }

    fn fork(base: &StateMap, events: &mut HashMap<String, Arc<Pdu>>, add: Arc<Pdu>) -> StateMap {
        let mut state = base.clone();
        state.insert((add.kind.to_string(), add.state_key.clone().unwrap()), add.event_id.to_string());
        events.insert(add.event_id.to_string(), add);
        state
    }

    fn winner(resolved: &StateMap, kind: &str, key: &str) -> String {
        resolved[&(kind.to_owned(), key.to_owned())].clone()
    }

    #[test]
    fn other_state_goes_to_the_deepest_allowed() {
        let (base, mut events) = room();
        let old = fork(&base, &mut events, pdu("$t1:a", "m.room.topic", ALICE, "", json!({"topic": "old"}), 6));
        let new = fork(&base, &mut events, pdu("$t2:a", "m.room.topic", ALICE, "", json!({"topic": "new"}), 9));
        let rules = AuthorizationRules::V1;
        assert_eq!(
            winner(&resolve(&rules, &room_id(), &[old.clone(), new.clone()], &events), "m.room.topic", ""),
            "$t2:a"
        );
        // The order of the states does not matter; unconflicted entries stay.
        let resolved = resolve(&rules, &room_id(), &[new, old], &events);
        assert_eq!(winner(&resolved, "m.room.topic", ""), "$t2:a");
        assert_eq!(winner(&resolved, "m.room.member", BOB), "$bob:b");
    }

    #[test]
    fn a_ban_is_not_undone_by_a_later_join_on_a_fork() {
        let (base, mut events) = room();
        let ban = pdu("$ban:a", "m.room.member", ALICE, BOB, json!({"membership": "ban"}), 7);
        let banned = fork(&base, &mut events, ban);
        // Bob's fork: he leaves and joins again, deeper than the ban.
        let rejoin = pdu("$rejoin:b", "m.room.member", BOB, BOB, json!({"membership": "join"}), 9);
        let rejoined = fork(&base, &mut events, rejoin);
        let resolved = resolve(&AuthorizationRules::V1, &room_id(), &[rejoined, banned], &events);
        assert_eq!(winner(&resolved, "m.room.member", BOB), "$ban:a");
    }

    #[test]
    fn power_levels_by_someone_without_power_lose() {
        let (base, mut events) = room();
        let grab = json!({"users": {ALICE: 100, MALLORY: 100}});
        let grabbed = fork(&base, &mut events, pdu("$grab:m", "m.room.power_levels", MALLORY, "", grab, 12));
        let raise = json!({"users": {ALICE: 100, BOB: 50}});
        let raised = fork(&base, &mut events, pdu("$raise:a", "m.room.power_levels", ALICE, "", raise, 8));
        // Mallory's, deeper, would win on depth alone; checked after Alice's, it is refused.
        let resolved = resolve(&AuthorizationRules::V1, &room_id(), &[grabbed, raised.clone()], &events);
        assert_eq!(winner(&resolved, "m.room.power_levels", ""), "$raise:a");
        // Alice's own later change, allowed after her earlier one, wins.
        let lower = json!({"users": {ALICE: 100, BOB: 20}});
        let lowered = fork(&base, &mut events, pdu("$lower:a", "m.room.power_levels", ALICE, "", lower, 10));
        let resolved = resolve(&AuthorizationRules::V1, &room_id(), &[raised, lowered], &events);
        assert_eq!(winner(&resolved, "m.room.power_levels", ""), "$lower:a");
    }

    #[test]
    fn unknown_events_and_other_rooms_events_are_left_out() {
        let (base, mut events) = room();
        let mut unknown = base.clone();
        unknown.insert(("m.room.topic".into(), String::new()), "$nowhere:x".into());
        let known = fork(&base, &mut events, pdu("$t:a", "m.room.topic", ALICE, "", json!({"topic": "t"}), 6));
        let resolved = resolve(&AuthorizationRules::V1, &room_id(), &[known.clone(), unknown], &events);
        assert_eq!(winner(&resolved, "m.room.topic", ""), "$t:a");
        // A deeper topic of another room, named in a state of this one, does not win.
        let mut elsewhere = pdu("$t2:a", "m.room.topic", ALICE, "", json!({"topic": "t2"}), 9);
        Arc::make_mut(&mut elsewhere).room_id = ruma::RoomId::parse("!other:a").unwrap();
        let other = fork(&base, &mut events, elsewhere);
        let resolved = resolve(&AuthorizationRules::V1, &room_id(), &[known, other], &events);
        assert_eq!(winner(&resolved, "m.room.topic", ""), "$t:a");
    }

    fn room_id() -> ruma::OwnedRoomId {
        ruma::RoomId::parse("!room:a").unwrap()
    }
}
