//! Rooms across Myelin servers on loopback: joining a room of another server (by alias and
//! by ID with `via`), history backfilled, messages, typing, receipts and presence both ways,
//! invites (accepted and declined), knocks (and one withdrawn), kicks and bans, a leave, device keys and
//! to-device messages across, a network split healed once the stopped server is back, and
//! events of a banned user's old fork soft-failed while others' built on them are accepted.

use crate::{
    backend_tests,
    common::*,
    e2ee::{TestKey, device_keys, upload},
    federation::{TestCa, federated},
    rooms::{create_room, send_text},
};
use serde_json::{Value, json};
use std::time::Duration;

backend_tests!(
    join_and_chat,
    invites_kicks_and_bans,
    knocks_across,
    split_and_heal,
    split_and_heal_v1,
    keys_and_to_device_across,
    bad_federation_requests,
    history_visibility_across,
    soft_failed_events,
    backfilled_history_has_its_own_state,
    restricted_join_through_another_server,
    previous_events_of_another_room
);

/// Polls `check` every 50 ms for up to 15 s until it returns Some.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..300 {
        if let Some(value) = check().await {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

/// The bodies of the room's latest text messages, as `user` reads them on `server`.
async fn messages(server: &TestServer, user: &User, room: &str) -> Vec<String> {
    let (status, page) =
        server.get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=50"), Some(&user.token)).await;
    if status != 200 {
        return Vec::new();
    }
    let mut bodies: Vec<String> = page["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "m.room.message")
        .map(|e| e["content"]["body"].as_str().unwrap_or_default().to_owned())
        .collect();
    bodies.reverse();
    bodies
}

async fn members(server: &TestServer, user: &User, room: &str) -> Value {
    server.get(&format!("/_matrix/client/v3/rooms/{room}/joined_members"), Some(&user.token)).await.1["joined"].clone()
}

async fn membership(server: &TestServer, user: &User, room: &str, of: &str) -> Option<String> {
    let (status, event) =
        server.get(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.member/{of}"), Some(&user.token)).await;
    (status == 200).then(|| event["membership"].as_str().unwrap_or_default().to_owned())
}

/// A user's membership as the server stores it (readable whatever the user may see).
async fn stored_membership(server: &TestServer, room: &str, user: &str) -> Option<String> {
    let room = ruma::RoomId::parse(room).unwrap();
    let user = ruma::UserId::parse(user).unwrap();
    server.services().rooms.membership_of(&room, &user).await.unwrap()
}

/// The IDs of the room's current state events.
async fn state_ids(server: &TestServer, user: &User, room: &str) -> Vec<String> {
    let (_, events) = server.get(&format!("/_matrix/client/v3/rooms/{room}/state"), Some(&user.token)).await;
    let mut ids: Vec<String> =
        events.as_array().unwrap().iter().map(|e| e["event_id"].as_str().unwrap().to_owned()).collect();
    ids.sort();
    ids
}

/// Two federating servers A and B, alice on A and bob on B; A's server name.
struct Pair {
    _ca: TestCa,
    a: TestServer,
    b: TestServer,
    alice: User,
    bob: User,
    a_name: String,
}

async fn pair(backend: Backend) -> Pair {
    let ca = TestCa::new();
    let (a, a_name) = federated(backend, &ca, |_| {}).await;
    let (b, _) = federated(backend, &ca, |_| {}).await;
    let alice = a.register("alice").await;
    let bob = b.register("bob").await;
    Pair { _ca: ca, a, b, alice, bob, a_name }
}

/// A room created with `options` and one initial state event (`kind`, empty state key).
async fn with_state(server: &TestServer, user: &User, mut options: Value, kind: &str, content: &Value) -> String {
    options["initial_state"] = json!([{"type": kind, "state_key": "", "content": content}]);
    create_room(server, user, options).await
}

/// `user` of `server` joins `room` through `via`, which must succeed.
async fn join_via(server: &TestServer, user: &User, room: &str, via: &str) {
    let (status, body) =
        server.post(&format!("/_matrix/client/v3/join/{room}?via={via}"), Some(&user.token), json!({})).await;
    assert_eq!(status, 200, "{body}");
}

async fn join_and_chat(backend: Backend) {
    let Pair { _ca, a, b, alice, bob, a_name } = pair(backend).await;
    let room =
        create_room(&a, &alice, json!({"room_alias_name": "lobby", "preset": "public_chat", "name": "Lobby"})).await;
    send_text(&a, &alice, &room, "t1", "before bob").await;

    // Bob joins through the alias of A's server.
    let alias = format!("%23lobby:{a_name}");
    let (status, joined) = b.post(&format!("/_matrix/client/v3/join/{alias}"), Some(&bob.token), json!({})).await;
    assert_eq!(status, 200, "{joined}");
    assert_eq!(joined["room_id"], room);
    // Both servers agree on the members; B has the room's state (its name).
    let on_b = members(&b, &bob, &room).await;
    assert!(on_b.get(&alice.user_id).is_some() && on_b.get(&bob.user_id).is_some(), "{on_b}");
    // Alice's display name on B comes from her member event, which B has as an outlier.
    assert_eq!(on_b[&alice.user_id]["display_name"], members(&a, &alice, &room).await[&alice.user_id]["display_name"]);
    assert!(on_b[&alice.user_id]["display_name"].is_string(), "{on_b}");
    eventually("bob's join on A", || async {
        members(&a, &alice, &room).await.get(&bob.user_id).is_some().then_some(())
    })
    .await;
    // Bob's first sync on B carries the room's state (stored as outliers by the join).
    let (_, sync) = b.get("/_matrix/client/v3/sync", Some(&bob.token)).await;
    let joined = &sync["rooms"]["join"][&room];
    let mut events = joined["state"]["events"].as_array().cloned().unwrap_or_default();
    events.extend(joined["timeline"]["events"].as_array().cloned().unwrap_or_default());
    for kind in ["m.room.create", "m.room.name", "m.room.power_levels", "m.room.join_rules"] {
        assert!(events.iter().any(|e| e["type"] == kind), "no {kind} in {joined}");
    }
    assert!(events.iter().any(|e| e["type"] == "m.room.member" && e["state_key"] == alice.user_id), "{joined}");
    let (_, name) = b.get(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.name/"), Some(&bob.token)).await;
    assert_eq!(name["name"], "Lobby", "{name}");

    // History from before Bob's join is fetched from A when he pages back (backfill), with
    // the room's creation at its start.
    let history = messages(&b, &bob, &room).await;
    assert_eq!(history, vec!["before bob".to_owned()]);
    let (_, page) = b.get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=100"), Some(&bob.token)).await;
    let chunk = page["chunk"].as_array().unwrap();
    assert_eq!(chunk.last().unwrap()["type"], "m.room.create", "{page}");

    // Messages both ways.
    send_text(&a, &alice, &room, "t2", "hello bob").await;
    eventually("alice's message on B", || async {
        messages(&b, &bob, &room).await.contains(&"hello bob".to_owned()).then_some(())
    })
    .await;
    // Alice's token after her own message, which A keeps in memory for the syncs it wakes:
    // Bob's message comes after it from B, and her sync from that token must hold it.
    let (_, before) = a.get("/_matrix/client/v3/sync", Some(&alice.token)).await;
    let since = before["next_batch"].as_str().unwrap().to_owned();
    send_text(&b, &bob, &room, "t3", "hello alice").await;
    eventually("bob's message on A", || async {
        messages(&a, &alice, &room).await.contains(&"hello alice".to_owned()).then_some(())
    })
    .await;
    // Both have the same messages since bob's join, in the same order.
    let on_a = messages(&a, &alice, &room).await;
    let on_b = messages(&b, &bob, &room).await;
    assert_eq!(on_a[on_a.len() - 2..], on_b[on_b.len() - 2..], "{on_a:?} / {on_b:?}");

    // Bob's message reaches Alice's /sync; typing and a receipt of Bob's too.
    let (status, _) = b
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/typing/{}", bob.user_id),
            Some(&bob.token),
            json!({"typing": true, "timeout": 10000}),
        )
        .await;
    assert_eq!(status, 200);
    let (_, sync) = a.get("/_matrix/client/v3/sync", Some(&alice.token)).await;
    let timeline = &sync["rooms"]["join"][&room]["timeline"]["events"];
    assert!(timeline.as_array().unwrap().iter().any(|e| e["content"]["body"] == "hello alice"), "{sync}");
    let (_, sync) = a.get(&format!("/_matrix/client/v3/sync?since={since}"), Some(&alice.token)).await;
    let timeline = sync["rooms"]["join"][&room]["timeline"]["events"].as_array().cloned().unwrap_or_default();
    assert!(timeline.iter().any(|e| e["content"]["body"] == "hello alice"), "{sync}");
    eventually("bob typing on A", || async {
        let (_, sync) = a.get("/_matrix/client/v3/sync", Some(&alice.token)).await;
        let ephemeral = sync["rooms"]["join"][&room]["ephemeral"]["events"].as_array().cloned().unwrap_or_default();
        ephemeral
            .iter()
            .any(|e| {
                e["type"] == "m.typing" && e["content"]["user_ids"].as_array().unwrap().contains(&json!(bob.user_id))
            })
            .then_some(())
    })
    .await;
    let hello = send_text(&a, &alice, &room, "t4", "read me").await;
    eventually("alice's message on B", || async {
        messages(&b, &bob, &room).await.contains(&"read me".to_owned()).then_some(())
    })
    .await;
    let (status, body) =
        b.post(&format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/{hello}"), Some(&bob.token), json!({})).await;
    assert_eq!(status, 200, "{body}");
    eventually("bob's receipt on A", || async {
        let (_, sync) = a.get("/_matrix/client/v3/sync", Some(&alice.token)).await;
        let ephemeral = sync["rooms"]["join"][&room]["ephemeral"]["events"].as_array().cloned().unwrap_or_default();
        ephemeral
            .iter()
            .any(|e| e["type"] == "m.receipt" && e["content"][&hello]["m.read"][&bob.user_id].is_object())
            .then_some(())
    })
    .await;

    // A room of B joined from A by ID with `via`; then Bob leaves Alice's room.
    let other = create_room(&b, &bob, json!({"preset": "public_chat"})).await;
    let b_name = bob.user_id.split_once(':').unwrap().1.to_owned();
    let (status, body) =
        a.post(&format!("/_matrix/client/v3/join/{other}?via={b_name}"), Some(&alice.token), json!({})).await;
    assert_eq!(status, 200, "{body}");
    send_text(&a, &alice, &other, "t5", "in bob's room").await;
    eventually("alice's message in bob's room", || async {
        messages(&b, &bob, &other).await.contains(&"in bob's room".to_owned()).then_some(())
    })
    .await;
    let (status, _) = b.post(&format!("/_matrix/client/v3/rooms/{room}/leave"), Some(&bob.token), json!({})).await;
    assert_eq!(status, 200);
    eventually("bob's leave on A", || async {
        (membership(&a, &alice, &room, &bob.user_id).await.as_deref() == Some("leave")).then_some(())
    })
    .await;
    // A server not in a room cannot read it.
    let unknown = b.get("/_matrix/client/v3/rooms/!nothing:nowhere.invalid/messages", Some(&bob.token)).await;
    assert!(unknown.0.is_client_error(), "{unknown:?}");
}

async fn invites_kicks_and_bans(backend: Backend) {
    let Pair { _ca, a, b, alice, bob, a_name } = pair(backend).await;
    let room = create_room(&a, &alice, json!({"preset": "private_chat", "name": "Secret"})).await;

    // Not invited: a private room cannot be joined from B.
    let refused = b.post(&format!("/_matrix/client/v3/join/{room}?via={a_name}"), Some(&bob.token), json!({})).await;
    assert_error(&refused, 403, "M_FORBIDDEN");

    // Invited: B shows the invite with the room's name, then Bob joins.
    let (status, body) = a
        .post(&format!("/_matrix/client/v3/rooms/{room}/invite"), Some(&alice.token), json!({"user_id": bob.user_id}))
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, sync) = b.get("/_matrix/client/v3/sync", Some(&bob.token)).await;
    let invite = &sync["rooms"]["invite"][&room]["invite_state"]["events"];
    let events = invite.as_array().unwrap_or_else(|| panic!("no invite in {sync}"));
    assert!(events.iter().any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "Secret"), "{invite}");
    assert!(events.iter().any(|e| e["type"] == "m.room.member" && e["state_key"] == bob.user_id), "{invite}");
    let (status, body) = b.post(&format!("/_matrix/client/v3/rooms/{room}/join"), Some(&bob.token), json!({})).await;
    assert_eq!(status, 200, "{body}");
    eventually("bob's join on A", || async {
        (membership(&a, &alice, &room, &bob.user_id).await.as_deref() == Some("join")).then_some(())
    })
    .await;

    // An invite declined from B: A sees the leave, B no longer lists the invite.
    let other = create_room(&a, &alice, json!({"preset": "private_chat", "invite": [bob.user_id]})).await;
    eventually("the second invite on B", || async {
        (stored_membership(&b, &other, &bob.user_id).await.as_deref() == Some("invite")).then_some(())
    })
    .await;
    let (status, body) = b.post(&format!("/_matrix/client/v3/rooms/{other}/leave"), Some(&bob.token), json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(stored_membership(&a, &other, &bob.user_id).await.as_deref(), Some("leave"));
    assert_eq!(stored_membership(&b, &other, &bob.user_id).await.as_deref(), Some("leave"));
    let (_, sync) = b.get("/_matrix/client/v3/sync", Some(&bob.token)).await;
    assert!(sync["rooms"]["invite"].get(&other).is_none(), "{sync}");

    // Kicked, then banned: B learns both, and Bob can no longer send or join.
    let (status, _) = a
        .post(&format!("/_matrix/client/v3/rooms/{room}/kick"), Some(&alice.token), json!({"user_id": bob.user_id}))
        .await;
    assert_eq!(status, 200);
    eventually("the kick on B", || async {
        (stored_membership(&b, &room, &bob.user_id).await.as_deref() == Some("leave")).then_some(())
    })
    .await;
    let (status, _) = a
        .post(&format!("/_matrix/client/v3/rooms/{room}/ban"), Some(&alice.token), json!({"user_id": bob.user_id}))
        .await;
    assert_eq!(status, 200);
    eventually("the ban on B", || async {
        (stored_membership(&b, &room, &bob.user_id).await.as_deref() == Some("ban")).then_some(())
    })
    .await;
    let refused = b.post(&format!("/_matrix/client/v3/join/{room}?via={a_name}"), Some(&bob.token), json!({})).await;
    assert_error(&refused, 403, "M_FORBIDDEN");
}

async fn split_and_heal(backend: Backend) {
    split_and_heal_in(backend, "10").await;
}

/// The same in a room of version 1, whose state resolution is the first algorithm.
async fn split_and_heal_v1(backend: Backend) {
    split_and_heal_in(backend, "1").await;
}

async fn split_and_heal_in(backend: Backend, version: &str) {
    let Pair { _ca, a, b, alice, bob, a_name } = pair(backend).await;
    let room = create_room(&a, &alice, json!({"preset": "public_chat", "room_version": version})).await;
    join_via(&b, &bob, &room, &a_name).await;
    // Bob gets power to change the topic, then the network splits: B stops.
    let (status, body) = a
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/state/m.room.power_levels/"),
            Some(&alice.token),
            json!({"users": {alice.user_id.clone(): 100, bob.user_id.clone(): 50}, "state_default": 50}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    eventually("the power levels on B", || async {
        let (_, power) =
            b.get(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.power_levels/"), Some(&bob.token)).await;
        (power["users"][&bob.user_id] == 50).then_some(())
    })
    .await;
    let b_config = b.services().config.as_ref().clone();
    let b_db = b.stop().await;

    // A keeps going without B.
    send_text(&a, &alice, &room, "a1", "while b was away").await;
    let (status, _) = a
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/state/m.room.topic/"),
            Some(&alice.token),
            json!({"topic": "from A"}),
        )
        .await;
    assert_eq!(status, 200);

    // B comes back; it sends on its fork (built before it hears of A's events): a topic of
    // its own too, in conflict with A's.
    let b = TestServer::start_config(b_db, b_config).await;
    let bob_token = b.login("bob", &bob.password, json!({})).await.1["access_token"].as_str().unwrap().to_owned();
    let bob = User { token: bob_token, ..bob };
    let (status, body) = b
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/state/m.room.topic/"),
            Some(&bob.token),
            json!({"topic": "from B"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    send_text(&b, &bob, &room, "b1", "bob is back").await;

    // Both converge: all messages on both sides, and the same current state.
    for server in [(&a, &alice), (&b, &bob)] {
        eventually("all messages on both servers", || async {
            let bodies = messages(server.0, server.1, &room).await;
            (bodies.contains(&"while b was away".to_owned()) && bodies.contains(&"bob is back".to_owned()))
                .then_some(())
        })
        .await;
    }
    let on_a = state_ids(&a, &alice, &room).await;
    eventually("the same state on both servers", || async { (state_ids(&b, &bob, &room).await == on_a).then_some(()) })
        .await;
    let topic = |server: &TestServer, user: &User| {
        let (path, token) = (format!("/_matrix/client/v3/rooms/{room}/state/m.room.topic/"), user.token.clone());
        let server = server.base.clone();
        async move {
            let answer = reqwest::Client::new().get(format!("{server}{path}")).bearer_auth(token).send().await.unwrap();
            answer.json::<Value>().await.unwrap()["topic"].clone()
        }
    };
    let (on_a, on_b) = (topic(&a, &alice).await, topic(&b, &bob).await);
    assert_eq!(on_a, on_b);
    assert!(on_a == "from A" || on_a == "from B", "{on_a}");
}

async fn keys_and_to_device_across(backend: Backend) {
    let Pair { _ca, a, b, alice, bob, a_name } = pair(backend).await;
    let room = create_room(&a, &alice, json!({"preset": "public_chat"})).await;
    join_via(&b, &bob, &room, &a_name).await;
    let (_, first) = a.get("/_matrix/client/v3/sync", Some(&alice.token)).await;
    let since = first["next_batch"].as_str().unwrap().to_owned();

    // Bob uploads device keys on B: Alice's sync on A lists him as changed.
    let key = TestKey::new(Some(&bob.device_id));
    let (status, body) = upload(&b, &bob, json!({"device_keys": device_keys(&bob, &key)})).await;
    assert_eq!(status, 200, "{body}");
    eventually("bob's device list change on A", || async {
        let (_, sync) = a.get(&format!("/_matrix/client/v3/sync?since={since}"), Some(&alice.token)).await;
        let changed = sync["device_lists"]["changed"].as_array().cloned().unwrap_or_default();
        changed.contains(&json!(bob.user_id)).then_some(())
    })
    .await;

    // A to-device message from Alice reaches Bob's device on B, once.
    let path = "/_matrix/client/v3/sendToDevice/m.room_key_request/txn1";
    let body = json!({"messages": {bob.user_id.clone(): {bob.device_id.clone(): {"secret": 42}}}});
    let (status, _) = a.put(path, Some(&alice.token), body.clone()).await;
    assert_eq!(status, 200);
    let (status, _) = a.put(path, Some(&alice.token), body).await;
    assert_eq!(status, 200);
    let events = eventually("the to-device message on B", || async {
        let (_, sync) = b.get("/_matrix/client/v3/sync", Some(&bob.token)).await;
        let events = sync["to_device"]["events"].as_array().cloned().unwrap_or_default();
        (!events.is_empty()).then_some(events)
    })
    .await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["sender"], alice.user_id);
    assert_eq!(events[0]["type"], "m.room_key_request");
    assert_eq!(events[0]["content"]["secret"], 42);

    // Bob's presence on B reaches A.
    let (status, _) = b
        .put(
            &format!("/_matrix/client/v3/presence/{}/status", bob.user_id),
            Some(&bob.token),
            json!({"presence": "unavailable", "status_msg": "lunch"}),
        )
        .await;
    assert_eq!(status, 200);
    eventually("bob's presence on A", || async {
        let (status, presence) =
            a.get(&format!("/_matrix/client/v3/presence/{}/status", bob.user_id), Some(&alice.token)).await;
        (status == 200 && presence["presence"] == "unavailable" && presence["status_msg"] == "lunch").then_some(())
    })
    .await;
}

async fn knocks_across(backend: Backend) {
    let Pair { _ca, a, b, alice, bob, a_name } = pair(backend).await;
    let knock_rule = json!({"join_rule": "knock"});
    let room = with_state(
        &a,
        &alice,
        json!({"preset": "private_chat", "name": "Knock here"}),
        "m.room.join_rules",
        &knock_rule,
    )
    .await;
    let (status, body) = b
        .post(&format!("/_matrix/client/v3/knock/{room}?via={a_name}"), Some(&bob.token), json!({"reason": "hi"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(stored_membership(&a, &room, &bob.user_id).await.as_deref(), Some("knock"));
    let (_, sync) = b.get("/_matrix/client/v3/sync", Some(&bob.token)).await;
    let knock = &sync["rooms"]["knock"][&room]["knock_state"]["events"];
    let events = knock.as_array().unwrap_or_else(|| panic!("no knock in {sync}"));
    assert!(events.iter().any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "Knock here"), "{knock}");

    // Alice lets Bob in: invite, then his join.
    let (status, body) = a
        .post(&format!("/_matrix/client/v3/rooms/{room}/invite"), Some(&alice.token), json!({"user_id": bob.user_id}))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = b.post(&format!("/_matrix/client/v3/rooms/{room}/join"), Some(&bob.token), json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(stored_membership(&a, &room, &bob.user_id).await.as_deref(), Some("join"));

    // Bob knocks on another room, then thinks better of it: the knock is withdrawn through
    // A (a leave), and no longer in his sync.
    let second = with_state(&a, &alice, json!({"preset": "private_chat"}), "m.room.join_rules", &knock_rule).await;
    let (status, body) =
        b.post(&format!("/_matrix/client/v3/knock/{second}?via={a_name}"), Some(&bob.token), json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(stored_membership(&a, &second, &bob.user_id).await.as_deref(), Some("knock"));
    let (status, body) = b.post(&format!("/_matrix/client/v3/rooms/{second}/leave"), Some(&bob.token), json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(stored_membership(&a, &second, &bob.user_id).await.as_deref(), Some("leave"));
    let (_, sync) = b.get("/_matrix/client/v3/sync", Some(&bob.token)).await;
    assert!(sync["rooms"]["knock"][&second].is_null(), "{sync}");

    // A room whose rules do not allow knocking: refused.
    let closed = create_room(&a, &alice, json!({"preset": "private_chat"})).await;
    let refused = b.post(&format!("/_matrix/client/v3/knock/{closed}?via={a_name}"), Some(&bob.token), json!({})).await;
    assert_error(&refused, 403, "M_FORBIDDEN");
}

/// B's server sends A requests it signs itself: what a buggy or hostile server could send.
async fn signed(from: &TestServer, to: &str, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let destination = ruma::ServerName::parse(to).unwrap();
    let body = body.map(|b| serde_json::to_vec(&b).unwrap());
    let answer =
        from.services().federation.client.request(&destination, method, path, body, true, false).await.unwrap();
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap_or(Value::Null))
}

async fn bad_federation_requests(backend: Backend) {
    let Pair { _ca, a, b, alice, bob, a_name } = pair(backend).await;
    let room = create_room(&a, &alice, json!({"preset": "private_chat"})).await;
    let b_name = bob.user_id.split_once(':').unwrap().1.to_owned();
    use reqwest::Method;

    // Asking about a room B has no member in, or one that does not exist.
    let (status, body) =
        signed(&b, &a_name, Method::GET, &format!("/_matrix/federation/v1/state_ids/{room}?event_id=%24x"), None).await;
    assert_eq!((status, body["errcode"].as_str()), (403, Some("M_FORBIDDEN")), "{body}");
    let path = format!("/_matrix/federation/v1/make_join/!nope:nowhere/{}?ver=10", bob.user_id);
    let (status, body) = signed(&b, &a_name, Method::GET, &path, None).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["errcode"], "M_NOT_FOUND");
    // A join for a user of another server, and one the room's rules refuse.
    let (status, body) = signed(
        &b,
        &a_name,
        Method::GET,
        &format!("/_matrix/federation/v1/make_join/{room}/{}?ver=10", alice.user_id),
        None,
    )
    .await;
    assert_eq!((status, body["errcode"].as_str()), (403, Some("M_FORBIDDEN")), "{body}");
    let (status, body) = signed(
        &b,
        &a_name,
        Method::GET,
        &format!("/_matrix/federation/v1/make_join/{room}/{}?ver=10", bob.user_id),
        None,
    )
    .await;
    assert_eq!((status, body["errcode"].as_str()), (403, Some("M_FORBIDDEN")), "{body}");
    let (status, body) = signed(&b, &a_name, Method::GET, "/_matrix/federation/v1/event/%24nothing", None).await;
    assert_eq!(status, 404, "{body}");

    // A member of a public room asking, through it, for the auth chain of an event of the
    // private room: not an event of that room.
    let public = create_room(&a, &alice, json!({"preset": "public_chat"})).await;
    join_via(&b, &bob, &public, &a_name).await;
    let private_event = send_text(&a, &alice, &room, "p1", "private").await;
    let path = format!("/_matrix/federation/v1/event_auth/{public}/{}", private_event.replace('$', "%24"));
    let (status, body) = signed(&b, &a_name, Method::GET, &path, None).await;
    assert_eq!(status, 404, "{body}");
    let path = format!("/_matrix/federation/v1/event/{}", private_event.replace('$', "%24"));
    let (status, body) = signed(&b, &a_name, Method::GET, &path, None).await;
    assert_eq!((status, body["errcode"].as_str()), (403, Some("M_FORBIDDEN")), "{body}");
    // An invite for a user of A in a room A is in, that the room's rules refuse (B's user
    // may not invite into Alice's private room): refused, Alice's membership untouched.
    let forged_invite = json!({
        "room_version": "10",
        "event": {
            "type": "m.room.member", "room_id": room, "sender": bob.user_id, "state_key": alice.user_id,
            "content": {"membership": "invite"}, "origin_server_ts": 1, "depth": 5,
            "prev_events": [], "auth_events": [],
        },
    });
    let (status, body) =
        signed(&b, &a_name, Method::PUT, &format!("/_matrix/federation/v2/invite/{room}/%24x"), Some(forged_invite))
            .await;
    assert!((400..500).contains(&status), "{status} {body}");
    assert_eq!(stored_membership(&a, &room, &alice.user_id).await.as_deref(), Some("join"));

    // send_join with something that is not an event.
    let (status, body) = signed(
        &b,
        &a_name,
        Method::PUT,
        &format!("/_matrix/federation/v2/send_join/{room}/%24x"),
        Some(json!({"type": "m.room.member"})),
    )
    .await;
    assert!((400..500).contains(&status), "{status} {body}");
    assert!(body["errcode"].is_string(), "{body}");

    // A transaction: a PDU of an unknown room, garbage, and an event in Alice's room forged
    // by B in Alice's name. None is stored; the answer is 200 all the same.
    let forged = json!({
        "type": "m.room.message", "room_id": room, "sender": alice.user_id, "content": {"body": "forged"},
        "origin_server_ts": 1, "depth": 100, "prev_events": [], "auth_events": [],
        "hashes": {"sha256": "AAAA"}, "signatures": {b_name.clone(): {"ed25519:x": "AAAA"}},
    });
    let txn = json!({
        "origin": b_name, "origin_server_ts": 1,
        "pdus": [{"room_id": "!unknown:nowhere", "type": "x"}, {"not": "an event"}, forged],
        "edus": [{"edu_type": "m.typing", "content": {"room_id": room, "user_id": alice.user_id, "typing": true}}],
    });
    let (status, body) = signed(&b, &a_name, Method::PUT, "/_matrix/federation/v1/send/t1", Some(txn.clone())).await;
    assert_eq!(status, 200, "{body}");
    let bodies = messages(&a, &alice, &room).await;
    assert!(!bodies.contains(&"forged".to_owned()), "{bodies:?}");
    // Typing in Alice's name from B is ignored.
    let (_, sync) = a.get("/_matrix/client/v3/sync", Some(&alice.token)).await;
    let ephemeral = sync["rooms"]["join"][&room]["ephemeral"]["events"].as_array().cloned().unwrap_or_default();
    assert!(ephemeral.iter().all(|e| e["content"]["user_ids"].as_array().is_none_or(|u| u.is_empty())), "{sync}");
    // A transaction claiming another origin than its signer's.
    let mut other = txn;
    other["origin"] = json!(a_name);
    let (status, body) = signed(&b, &a_name, Method::PUT, "/_matrix/federation/v1/send/t2", Some(other)).await;
    assert_eq!((status, body["errcode"].as_str()), (403, Some("M_FORBIDDEN")), "{body}");
}

/// A room whose history is visible to joined members only: what was said before B's user
/// joined reaches B redacted (backfill), whole after.
async fn history_visibility_across(backend: Backend) {
    let Pair { _ca, a, b, alice, bob, a_name } = pair(backend).await;
    let joined_only = json!({"history_visibility": "joined"});
    let room =
        with_state(&a, &alice, json!({"preset": "public_chat"}), "m.room.history_visibility", &joined_only).await;
    send_text(&a, &alice, &room, "h1", "before bob").await;
    join_via(&b, &bob, &room, &a_name).await;
    let after = send_text(&a, &alice, &room, "h2", "after bob").await;
    eventually("the message after the join on B", || async {
        messages(&b, &bob, &room).await.contains(&"after bob".to_owned()).then_some(())
    })
    .await;
    let path = format!("/_matrix/federation/v1/backfill/{room}?v={}&limit=20", after.replace('$', "%24"));
    let (status, page) = signed(&b, &a_name, reqwest::Method::GET, &path, None).await;
    assert_eq!(status, 200, "{page}");
    let pdus = page["pdus"].as_array().unwrap();
    let find = |body: &str| {
        pdus.iter()
            .find(|p| p["type"] == "m.room.message" && p["depth"].as_i64().is_some() && p["content"]["body"] == body)
            .cloned()
    };
    assert!(find("after bob").is_some(), "{page}");
    assert!(find("before bob").is_none(), "the message from before the join came whole: {page}");
    let redacted = pdus.iter().filter(|p| p["type"] == "m.room.message").count();
    assert_eq!(redacted, 2, "both messages are in the DAG, one redacted: {page}");
    // Bob's client does not see it either.
    assert!(!messages(&b, &bob, &room).await.contains(&"before bob".to_owned()));
}

/// Bob is banned on A while B is down; back up, and before hearing of the ban, B's users send
/// on their old fork: Bob's message is soft-failed on A (allowed by the state before it, not
/// by the room now), and Carol's, built on Bob's, is accepted all the same (the spec: a
/// soft-failed event stays part of the DAG). Both servers end with Bob banned.
async fn soft_failed_events(backend: Backend) {
    let Pair { _ca, a, b, alice, bob, a_name } = pair(backend).await;
    let carol = b.register("carol").await;
    let room = create_room(&a, &alice, json!({"preset": "public_chat"})).await;
    join_via(&b, &bob, &room, &a_name).await;
    join_via(&b, &carol, &room, &a_name).await;
    eventually("Carol joined on A", || async {
        (stored_membership(&a, &room, &carol.user_id).await.as_deref() == Some("join")).then_some(())
    })
    .await;
    let b_config = b.services().config.as_ref().clone();
    let b_db = b.stop().await;

    // A bans Bob while B is away, then stops too: the ban waits in A's queue.
    let (status, body) = a
        .post(&format!("/_matrix/client/v3/rooms/{room}/ban"), Some(&alice.token), json!({"user_id": bob.user_id}))
        .await;
    assert_eq!(status, 200, "{body}");
    let a_config = a.services().config.as_ref().clone();
    let a_db = a.stop().await;

    // B, back without A, knows nothing of the ban: Bob sends, then Carol, after him.
    let b = TestServer::start_config(b_db, b_config).await;
    let mut tokens = Vec::new();
    for user in [&bob, &carol] {
        let (status, body) = b.login(user.user_id[1..].split(':').next().unwrap(), &user.password, json!({})).await;
        assert_eq!(status, 200, "{body}");
        tokens.push(User { token: body["access_token"].as_str().unwrap().to_owned(), ..user.clone() });
    }
    let (bob, carol) = (&tokens[0], &tokens[1]);
    send_text(&b, bob, &room, "s1", "bob on the old fork").await;
    send_text(&b, carol, &room, "s2", "carol after bob").await;

    // A comes back: its queue reaches B, B's reaches A.
    let a = TestServer::start_config(a_db, a_config).await;
    let (status, body) = a.login("alice", &alice.password, json!({})).await;
    assert_eq!(status, 200, "{body}");
    let alice = User { token: body["access_token"].as_str().unwrap().to_owned(), ..alice };
    eventually("Carol's message on A", || async {
        messages(&a, &alice, &room).await.contains(&"carol after bob".to_owned()).then_some(())
    })
    .await;
    assert!(!messages(&a, &alice, &room).await.contains(&"bob on the old fork".to_owned()));
    assert_eq!(stored_membership(&a, &room, &bob.user_id).await.as_deref(), Some("ban"));
    assert_eq!(stored_membership(&a, &room, &carol.user_id).await.as_deref(), Some("join"));
    eventually("the ban on B", || async {
        (stored_membership(&b, &room, &bob.user_id).await.as_deref() == Some("ban")).then_some(())
    })
    .await;
    // The room goes on: Alice's next message reaches Carol.
    send_text(&a, &alice, &room, "a2", "after the fork").await;
    eventually("Alice's message on B", || async {
        messages(&b, carol, &room).await.contains(&"after the fork".to_owned()).then_some(())
    })
    .await;
}

/// History fetched page by page (backfill) is stored with the state at each event, asked of
/// the other server where it starts mid-history: a message from when the room was joined-only
/// stays hidden from a later member though the room is `shared` now, and the topic at an old
/// event is the one of its time (a state event B had never seen, fetched).
async fn backfilled_history_has_its_own_state(backend: Backend) {
    let Pair { _ca, a, b, alice, bob, a_name } = pair(backend).await;
    let joined_only = json!({"history_visibility": "joined"});
    let room =
        with_state(&a, &alice, json!({"preset": "public_chat"}), "m.room.history_visibility", &joined_only).await;
    let early = send_text(&a, &alice, &room, "e", "early").await;
    let state = |kind: &str| format!("/_matrix/client/v3/rooms/{room}/state/{kind}/");
    for (kind, content) in [
        ("m.room.history_visibility", json!({"history_visibility": "shared"})),
        ("m.room.topic", json!({"topic": "first"})),
    ] {
        assert_eq!(a.put(&state(kind), Some(&alice.token), content).await.0, 200);
    }
    let mut fillers = Vec::new();
    for i in 0..120 {
        fillers.push(send_text(&a, &alice, &room, &format!("f{i}"), &format!("filler {i}")).await);
        if i == 60 {
            assert_eq!(a.put(&state("m.room.topic"), Some(&alice.token), json!({"topic": "second"})).await.0, 200);
        }
    }
    join_via(&b, &bob, &room, &a_name).await;

    // Bob pages back to the room's start.
    let mut seen = Vec::new();
    let mut from = String::new();
    for _ in 0..30 {
        let path = format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=40{from}");
        let (status, page) = b.get(&path, Some(&bob.token)).await;
        assert_eq!(status, 200, "{page}");
        seen.extend(page["chunk"].as_array().unwrap().iter().map(|e| e["event_id"].as_str().unwrap().to_owned()));
        match page["end"].as_str() {
            Some(end) => from = format!("&from={end}"),
            None => break,
        }
    }
    for (i, id) in fillers.iter().enumerate() {
        assert!(seen.contains(id), "filler {i} was not backfilled");
    }
    assert!(!seen.contains(&early), "a message of the joined-only days reached a later member");

    // The state B stored at an old filler is the state of its time.
    let row = b.services().store.rooms().event(&fillers[5]).await.unwrap().expect("backfilled");
    assert!(row.stream_ordering < 0);
    let before = b.services().store.rooms().state_at_group(row.state_before).await.unwrap();
    let topic = before.get(&("m.room.topic".to_owned(), String::new())).expect("a topic");
    let topic = b.services().store.rooms().pdu_jsons(std::slice::from_ref(topic)).await.unwrap();
    let topic: Value = serde_json::from_str(&topic[0].2).unwrap();
    assert_eq!(topic["content"]["topic"], "first");
}

/// A restricted room (members of room S may join) on A, with C in it too. Asked first, C
/// answers that it cannot check the condition (it is not in S: M_UNABLE_TO_AUTHORISE_JOIN),
/// then, once in S, that nobody of it may vouch for the join (M_UNABLE_TO_GRANT_JOIN); B's
/// user, joining through C then A, is let in by A.
async fn restricted_join_through_another_server(backend: Backend) {
    let Pair { _ca, a, b, alice, bob, a_name } = pair(backend).await;
    let (c, c_name) = federated(backend, &_ca, |_| {}).await;
    let carol = c.register("carol").await;
    let space = create_room(&a, &alice, json!({"preset": "public_chat"})).await;
    let rules = json!({"join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": space}]});
    let options =
        json!({"preset": "private_chat", "room_version": "10", "power_level_content_override": {"invite": 50}});
    let room = with_state(&a, &alice, options, "m.room.join_rules", &rules).await;
    // Carol is invited in (C is in the room, not in the space); Bob joins the space.
    let (status, body) = a
        .post(&format!("/_matrix/client/v3/rooms/{room}/invite"), Some(&alice.token), json!({"user_id": carol.user_id}))
        .await;
    assert_eq!(status, 200, "{body}");
    join_via(&c, &carol, &room, &a_name).await;
    join_via(&b, &bob, &space, &a_name).await;

    let make_join = format!("/_matrix/federation/v1/make_join/{room}/{}?ver=10", bob.user_id);
    let (status, body) = signed(&b, &c_name, reqwest::Method::GET, &make_join, None).await;
    assert_eq!((status, body["errcode"].as_str()), (400, Some("M_UNABLE_TO_AUTHORISE_JOIN")), "{body}");
    join_via(&c, &carol, &space, &a_name).await;
    let (status, body) = signed(&b, &c_name, reqwest::Method::GET, &make_join, None).await;
    assert_eq!((status, body["errcode"].as_str()), (400, Some("M_UNABLE_TO_GRANT_JOIN")), "{body}");

    let (status, body) =
        b.post(&format!("/_matrix/client/v3/join/{room}?via={c_name}&via={a_name}"), Some(&bob.token), json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(stored_membership(&a, &room, &bob.user_id).await.as_deref(), Some("join"));
    eventually("Bob's join on C", || async {
        (stored_membership(&c, &room, &bob.user_id).await.as_deref() == Some("join")).then_some(())
    })
    .await;
}

/// A PDU whose previous event is an event of another room (both rooms on A, Bob in both): its
/// state must not come from that room. It is refused, and the room's state is unchanged.
async fn previous_events_of_another_room(backend: Backend) {
    let Pair { _ca, a, b, alice, bob, a_name } = pair(backend).await;
    let room = create_room(&a, &alice, json!({"preset": "public_chat"})).await;
    let other = create_room(&a, &alice, json!({"preset": "public_chat", "name": "elsewhere"})).await;
    join_via(&b, &bob, &room, &a_name).await;
    join_via(&b, &bob, &other, &a_name).await;
    let elsewhere = send_text(&a, &alice, &other, "x", "in the other room").await;
    let before = state_ids(&a, &alice, &room).await;

    // Bob's server signs a message of the room built on the other room's event.
    let b_name = bob.user_id.split_once(':').unwrap().1.to_owned();
    let key = myelin_federation::signing_key::SigningKey::load_or_generate(&b.services().config.data_dir).unwrap();
    let state = |kind: &str, key: &str| {
        let (room, kind, key) = (room.clone(), kind.to_owned(), key.to_owned());
        let a = &a;
        async move {
            let room = ruma::RoomId::parse(&room).unwrap();
            a.services().rooms.current_state_event(&room, &kind, &key).await.unwrap().unwrap().event_id.to_string()
        }
    };
    let auth = vec![
        state("m.room.create", "").await,
        state("m.room.power_levels", "").await,
        state("m.room.member", &bob.user_id).await,
    ];
    let mut event: ruma::CanonicalJsonObject = serde_json::from_value(json!({
        "type": "m.room.message", "room_id": room, "sender": bob.user_id, "origin": b_name,
        "content": {"msgtype": "m.text", "body": "built on another room"},
        "origin_server_ts": 1_700_000_000_000u64, "depth": 50,
        "prev_events": [elsewhere], "auth_events": auth,
    }))
    .unwrap();
    let rules = ruma::room_version_rules::RoomVersionRules::V10;
    ruma::signatures::hash_and_sign_event(&b_name, key.pair(), &mut event, &rules.redaction).unwrap();
    let event_id = format!("${}", ruma::signatures::reference_hash(&event, &rules).unwrap());
    let txn = json!({"origin": b_name, "origin_server_ts": 1, "pdus": [event], "edus": []});
    let (status, body) = signed(&b, &a_name, reqwest::Method::PUT, "/_matrix/federation/v1/send/x1", Some(txn)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["pdus"][&event_id]["error"].is_string(), "{body}");
    assert!(!messages(&a, &alice, &room).await.contains(&"built on another room".to_owned()));
    assert_eq!(state_ids(&a, &alice, &room).await, before);
}
