//! Rooms: creation, sending, state, reading events and the timeline, in every room version.

use crate::{backend_tests, common::*};
use serde_json::{Value, json};

backend_tests!(
    create_send_and_read,
    transaction_ids_are_idempotent,
    concurrent_messages_form_one_chain,
    every_room_version,
    unsupported_room_version,
    state_events,
    messages_pagination,
    redactions,
    history_visibility_and_unsigned_membership,
    timestamp_to_event,
    malformed_requests,
    relayed_content_is_untouched
);

pub async fn create_room(server: &TestServer, user: &User, body: Value) -> String {
    let (status, answer) = server.post("/_matrix/client/v3/createRoom", Some(&user.token), body).await;
    assert_eq!(status, 200, "{answer}");
    answer["room_id"].as_str().unwrap().to_owned()
}

pub async fn send_text(server: &TestServer, user: &User, room: &str, txn: &str, body: &str) -> String {
    let path = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}");
    let (status, answer) = server.put(&path, Some(&user.token), json!({ "msgtype": "m.text", "body": body })).await;
    assert_eq!(status, 200, "{answer}");
    answer["event_id"].as_str().unwrap().to_owned()
}

/// `user` joins `room`, which must succeed.
pub async fn join(server: &TestServer, user: &User, room: &str) {
    let (status, body) =
        server.post(&format!("/_matrix/client/v3/join/{}", enc(room)), Some(&user.token), json!({})).await;
    assert_eq!(status, 200, "join: {body}");
}

/// `inviter` invites `invitee` to `room`, which must succeed.
pub async fn invite(server: &TestServer, inviter: &User, room: &str, invitee: &User) {
    let path = format!("/_matrix/client/v3/rooms/{}/invite", enc(room));
    let (status, body) = server.post(&path, Some(&inviter.token), json!({ "user_id": invitee.user_id })).await;
    assert_eq!(status, 200, "invite: {body}");
}

pub fn enc(s: &str) -> String {
    // Room version 3 event IDs are standard base64: `/` and `+` too.
    s.replace('%', "%25")
        .replace('!', "%21")
        .replace('$', "%24")
        .replace('#', "%23")
        .replace(':', "%3A")
        .replace('@', "%40")
        .replace('/', "%2F")
        .replace('+', "%2B")
}

async fn create_send_and_read(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    let room = create_room(
        &server,
        &alice,
        json!({ "name": "Lab", "topic": "Experiments", "preset": "private_chat", "room_alias_name": "lab" }),
    )
    .await;
    assert!(room.starts_with('!') && room.ends_with(":localhost"), "{room}");
    let event_id = send_text(&server, &alice, &room, "t1", "hello").await;

    let (status, event) = server
        .get(&format!("/_matrix/client/v3/rooms/{}/event/{}", enc(&room), enc(&event_id)), Some(&alice.token))
        .await;
    assert_eq!(status, 200, "{event}");
    assert_eq!(event["content"]["body"], "hello");
    assert_eq!(event["sender"], alice.user_id);
    assert_eq!(event["room_id"], room);
    assert_eq!(event["type"], "m.room.message");
    assert_eq!(event["unsigned"]["transaction_id"], "t1");
    assert_eq!(event["unsigned"]["membership"], "join");
    assert!(event["unsigned"]["age"].as_i64().unwrap() >= 0);
    for server_only in ["hashes", "signatures", "auth_events", "prev_events", "depth"] {
        assert!(event.get(server_only).is_none(), "{server_only} leaked: {event}");
    }

    let (status, state) =
        server.get(&format!("/_matrix/client/v3/rooms/{}/state", enc(&room)), Some(&alice.token)).await;
    assert_eq!(status, 200);
    let types: Vec<&str> = state.as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    for wanted in [
        "m.room.create",
        "m.room.member",
        "m.room.power_levels",
        "m.room.canonical_alias",
        "m.room.join_rules",
        "m.room.history_visibility",
        "m.room.guest_access",
        "m.room.name",
        "m.room.topic",
    ] {
        assert!(types.contains(&wanted), "{wanted} missing from {types:?}");
    }
    let (_, name) =
        server.get(&format!("/_matrix/client/v3/rooms/{}/state/m.room.name/", enc(&room)), Some(&alice.token)).await;
    assert_eq!(name, json!({ "name": "Lab" }));
    let (_, rules) = server
        .get(&format!("/_matrix/client/v3/rooms/{}/state/m.room.join_rules", enc(&room)), Some(&alice.token))
        .await;
    assert_eq!(rules["join_rule"], "invite");
    let (status, create) = server
        .get(&format!("/_matrix/client/v3/rooms/{}/state/m.room.create/?format=event", enc(&room)), Some(&alice.token))
        .await;
    assert_eq!(status, 200);
    assert_eq!(create["content"]["room_version"], "10");
    assert_eq!(create["type"], "m.room.create");

    let (_, joined) = server.get("/_matrix/client/v3/joined_rooms", Some(&alice.token)).await;
    assert_eq!(joined["joined_rooms"], json!([room]));
    let (_, members) =
        server.get(&format!("/_matrix/client/v3/rooms/{}/joined_members", enc(&room)), Some(&alice.token)).await;
    assert!(members["joined"][&alice.user_id].is_object(), "{members}");
    // The display name is the member event's.
    let path = format!("/_matrix/client/v3/rooms/{}/state/m.room.member/{}", enc(&room), enc(&alice.user_id));
    let (_, member) = server.get(&path, Some(&alice.token)).await;
    assert!(member["displayname"].is_string(), "{member}");
    assert_eq!(members["joined"][&alice.user_id]["display_name"], member["displayname"], "{members}");
    let (_, alias) = server.get("/_matrix/client/v3/directory/room/%23lab%3Alocalhost", None).await;
    assert_eq!(alias["room_id"], room);

    // Someone else sees nothing of a private room.
    let eve = server.register("eve").await;
    let (status, _) = server
        .get(&format!("/_matrix/client/v3/rooms/{}/event/{}", enc(&room), enc(&event_id)), Some(&eve.token))
        .await;
    assert_eq!(status, 404);
    let (status, _) = server.get(&format!("/_matrix/client/v3/rooms/{}/state", enc(&room)), Some(&eve.token)).await;
    assert_eq!(status, 403);
    assert_error(
        &server
            .put(
                &format!("/_matrix/client/v3/rooms/{}/send/m.room.message/x", enc(&room)),
                Some(&eve.token),
                json!({ "body": "let me in" }),
            )
            .await,
        403,
        "M_FORBIDDEN",
    );
}

async fn transaction_ids_are_idempotent(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    let room = create_room(&server, &alice, json!({})).await;
    let first = send_text(&server, &alice, &room, "same", "once").await;
    let again = send_text(&server, &alice, &room, "same", "once").await;
    assert_eq!(first, again);
    // Another device of the same user has its own transaction IDs.
    let (_, login) = server.login("alice", &alice.password, json!({})).await;
    let other = User { token: login["access_token"].as_str().unwrap().to_owned(), ..alice.clone() };
    let third = send_text(&server, &other, &room, "same", "once").await;
    assert_ne!(first, third);
    // The other device does not see the first device's transaction ID.
    let (_, event) =
        server.get(&format!("/_matrix/client/v3/rooms/{}/event/{}", enc(&room), enc(&first)), Some(&other.token)).await;
    assert!(event["unsigned"].get("transaction_id").is_none(), "{event}");
    // Concurrent retries of one transaction make one event.
    let sends = (0..5).map(|_| send_text(&server, &alice, &room, "raced", "one"));
    let ids: std::collections::BTreeSet<String> = futures_util::future::join_all(sends).await.into_iter().collect();
    assert_eq!(ids.len(), 1);
}

/// Messages sent at once into one room (on SQLite built one on the other while those before
/// them are still being written) form one chain: every send answered is stored once, each
/// event has one prev event, and the room keeps one latest event. Repeated transaction IDs
/// among them (whose events fail to be written, and those built on them are built again —
/// after a few times with the room's lock held) still answer with the first event, and no send
/// fails.
async fn concurrent_messages_form_one_chain(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    let room = create_room(&server, &alice, json!({})).await;
    let sends = (0..48).map(|i| {
        let (server, alice, room) = (&server, &alice, &room);
        async move { send_text(server, alice, room, &format!("t{}", i % 32), &format!("m{}", i % 32)).await }
    });
    let ids = futures_util::future::join_all(sends).await;
    for i in 32..48 {
        assert_eq!(ids[i], ids[i - 32], "a repeated transaction ID answers with the first event");
    }
    let distinct: std::collections::BTreeSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), 32);

    let rooms = server.services().store.rooms();
    let latest = rooms.forward_extremities(&room).await.unwrap();
    assert_eq!(latest.len(), 1, "one latest event: {latest:?}");
    // Back along the prev events from the latest event to the room's creation.
    let mut chain = Vec::new();
    let mut at = latest[0].clone();
    loop {
        let row = rooms.event(&at).await.unwrap().expect("every prev event is stored");
        let event: Value = serde_json::from_str(&row.json).unwrap();
        chain.push(at.clone());
        let prev = event["prev_events"].as_array().unwrap();
        if prev.is_empty() {
            break;
        }
        assert_eq!(prev.len(), 1, "one prev event: {event}");
        at = prev[0].as_str().unwrap().to_owned();
    }
    assert!(distinct.iter().all(|id| chain.contains(id)), "every message is on the chain");
    let messages = chain.iter().filter(|id| distinct.contains(id)).count();
    assert_eq!(messages, 32, "each message stored once");
}

async fn every_room_version(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    for version in 1..=11 {
        let room = create_room(
            &server,
            &alice,
            json!({ "room_version": version.to_string(), "preset": "public_chat", "name": format!("v{version}") }),
        )
        .await;
        let event_id = send_text(&server, &alice, &room, &format!("v{version}"), "hi").await;
        // v1 and v2 event IDs name the server; from v3 on they are hashes.
        assert_eq!(event_id.ends_with(":localhost"), version <= 2, "v{version}: {event_id}");
        join(&server, &bob, &room).await;
        send_text(&server, &bob, &room, "b", "hello from bob").await;
        // Bob has no power to rename the room, in any version.
        assert_error(
            &server
                .put(
                    &format!("/_matrix/client/v3/rooms/{}/state/m.room.name/", enc(&room)),
                    Some(&bob.token),
                    json!({ "name": "mine" }),
                )
                .await,
            403,
            "M_FORBIDDEN",
        );
        let (_, create) = server
            .get(&format!("/_matrix/client/v3/rooms/{}/state/m.room.create/", enc(&room)), Some(&bob.token))
            .await;
        assert_eq!(create["room_version"], version.to_string());
        // Room version 11 dropped `creator`.
        assert_eq!(create.get("creator").is_some(), version < 11, "v{version}: {create}");
    }
    let (_, caps) = server.get("/_matrix/client/v3/capabilities", Some(&alice.token)).await;
    let available = caps["capabilities"]["m.room_versions"]["available"].as_object().unwrap();
    assert_eq!(available.len(), 11);
    assert_eq!(caps["capabilities"]["m.room_versions"]["default"], "10");
}

async fn unsupported_room_version(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    for version in ["99", "org.example.custom"] {
        assert_error(
            &server.post("/_matrix/client/v3/createRoom", Some(&alice.token), json!({ "room_version": version })).await,
            400,
            "M_UNSUPPORTED_ROOM_VERSION",
        );
    }
    assert_error(&server.post("/_matrix/client/v3/createRoom", None, json!({})).await, 401, "M_MISSING_TOKEN");
}

async fn state_events(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    let room = create_room(&server, &alice, json!({ "name": "one" })).await;
    let path = format!("/_matrix/client/v3/rooms/{}/state/m.room.name/", enc(&room));
    let (status, answer) = server.put(&path, Some(&alice.token), json!({ "name": "two" })).await;
    assert_eq!(status, 200, "{answer}");
    let event_id = answer["event_id"].as_str().unwrap().to_owned();
    let (_, name) = server.get(&path, Some(&alice.token)).await;
    assert_eq!(name["name"], "two");
    // The event carries what it replaced.
    let (_, event) = server
        .get(&format!("/_matrix/client/v3/rooms/{}/event/{}", enc(&room), enc(&event_id)), Some(&alice.token))
        .await;
    assert_eq!(event["unsigned"]["prev_content"], json!({ "name": "one" }));
    assert!(event["unsigned"]["replaces_state"].is_string());
    assert_eq!(event["state_key"], "");
    // Custom state with a state key.
    let custom = format!("/_matrix/client/v3/rooms/{}/state/org.example.setting/colour", enc(&room));
    assert_eq!(server.put(&custom, Some(&alice.token), json!({ "value": "blue" })).await.0, 200);
    assert_eq!(server.get(&custom, Some(&alice.token)).await.1, json!({ "value": "blue" }));
    assert_error(
        &server
            .get(&format!("/_matrix/client/v3/rooms/{}/state/org.example.none/", enc(&room)), Some(&alice.token))
            .await,
        404,
        "M_NOT_FOUND",
    );
    // A canonical alias must point to the room.
    assert_error(
        &server
            .put(
                &format!("/_matrix/client/v3/rooms/{}/state/m.room.canonical_alias/", enc(&room)),
                Some(&alice.token),
                json!({ "alias": "#nowhere:localhost" }),
            )
            .await,
        400,
        "M_BAD_ALIAS",
    );
    // Content that is not an object.
    let (status, _) = server.put(&custom, Some(&alice.token), json!([1, 2])).await;
    assert_eq!(status, 400);
    // Rooms this server does not know.
    assert_error(
        &server
            .put(
                "/_matrix/client/v3/rooms/%21nope%3Alocalhost/state/m.room.name/",
                Some(&alice.token),
                json!({ "name": "x" }),
            )
            .await,
        404,
        "M_NOT_FOUND",
    );
}

async fn messages_pagination(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    let room = create_room(&server, &alice, json!({})).await;
    for i in 0..7 {
        send_text(&server, &alice, &room, &format!("m{i}"), &format!("message {i}")).await;
    }
    let base = format!("/_matrix/client/v3/rooms/{}/messages", enc(&room));
    let filter = "&filter=%7B%22types%22%3A%5B%22m.room.message%22%5D%7D";
    let (status, page) = server.get(&format!("{base}?dir=b&limit=3{filter}"), Some(&alice.token)).await;
    assert_eq!(status, 200, "{page}");
    let bodies = |page: &Value| -> Vec<String> {
        page["chunk"].as_array().unwrap().iter().map(|e| e["content"]["body"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(bodies(&page), ["message 6", "message 5", "message 4"]);
    let end = page["end"].as_str().unwrap();
    let (_, next) = server.get(&format!("{base}?dir=b&limit=3&from={end}{filter}"), Some(&alice.token)).await;
    assert_eq!(bodies(&next), ["message 3", "message 2", "message 1"]);
    // Forwards from the start, everything.
    let (_, all) = server.get(&format!("{base}?dir=f&limit=50"), Some(&alice.token)).await;
    let chunk = all["chunk"].as_array().unwrap();
    assert_eq!(chunk[0]["type"], "m.room.create");
    assert_eq!(chunk.last().unwrap()["content"]["body"], "message 6");
    assert!(all.get("end").is_none(), "no more events: {all}");
    // Lazy-loaded members come along.
    let lazy = "&filter=%7B%22lazy_load_members%22%3Atrue%7D";
    let (_, page) = server.get(&format!("{base}?dir=b&limit=2{lazy}"), Some(&alice.token)).await;
    assert_eq!(page["state"][0]["type"], "m.room.member");
    assert_eq!(page["state"][0]["state_key"], alice.user_id);
    // Bad tokens are a 400, not a 500.
    assert_error(&server.get(&format!("{base}?dir=b&from=garbage"), Some(&alice.token)).await, 400, "M_INVALID_PARAM");
}

async fn redactions(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let room = create_room(&server, &alice, json!({ "preset": "public_chat" })).await;
    join(&server, &bob, &room).await;
    let alices = send_text(&server, &alice, &room, "a", "secret").await;
    let bobs = send_text(&server, &bob, &room, "b", "oops").await;
    let redact = |user: &User, event: &str, txn: &str| {
        let path = format!("/_matrix/client/v3/rooms/{}/redact/{}/{txn}", enc(&room), enc(event));
        let token = user.token.clone();
        let server = &server;
        async move { server.put(&path, Some(&token), json!({ "reason": "cleanup" })).await }
    };
    // Bob (power 0) may not redact Alice's event; he may redact his own.
    assert_error(&redact(&bob, &alices, "r1").await, 403, "M_FORBIDDEN");
    let (status, answer) = redact(&bob, &bobs, "r2").await;
    assert_eq!(status, 200, "{answer}");
    // Alice (power 100) may redact anyone's.
    let (status, _) = redact(&alice, &alices, "r3").await;
    assert_eq!(status, 200);
    let (_, event) =
        server.get(&format!("/_matrix/client/v3/rooms/{}/event/{}", enc(&room), enc(&alices)), Some(&bob.token)).await;
    assert_eq!(event["content"], json!({}));
    assert_eq!(event["unsigned"]["redacted_because"]["type"], "m.room.redaction");
    assert_eq!(event["unsigned"]["redacted_because"]["content"]["reason"], "cleanup");
}

async fn history_visibility_and_unsigned_membership(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    for (visibility, bob_sees_earlier) in [("joined", false), ("shared", true), ("invited", false)] {
        let room = create_room(
            &server,
            &alice,
            json!({ "preset": "public_chat", "initial_state": [
                { "type": "m.room.history_visibility", "content": { "history_visibility": visibility } }
            ] }),
        )
        .await;
        let before = send_text(&server, &alice, &room, &format!("{visibility}-1"), "before bob").await;
        let invite = format!("/_matrix/client/v3/rooms/{}/invite", enc(&room));
        assert_eq!(server.post(&invite, Some(&alice.token), json!({ "user_id": bob.user_id })).await.0, 200);
        let during = send_text(&server, &alice, &room, &format!("{visibility}-2"), "while invited").await;
        join(&server, &bob, &room).await;
        let after = send_text(&server, &alice, &room, &format!("{visibility}-3"), "after bob joined").await;
        let get = |event: String| {
            let path = format!("/_matrix/client/v3/rooms/{}/event/{}", enc(&room), enc(&event));
            let token = bob.token.clone();
            let server = &server;
            async move { server.get(&path, Some(&token)).await }
        };
        assert_eq!(get(before.clone()).await.0 == 200, bob_sees_earlier, "{visibility}: before");
        let (status, event) = get(during.clone()).await;
        assert_eq!(status == 200, visibility != "joined", "{visibility}: during");
        if status == 200 {
            assert_eq!(event["unsigned"]["membership"], "invite", "{visibility}");
        }
        let (status, event) = get(after).await;
        assert_eq!(status, 200);
        assert_eq!(event["unsigned"]["membership"], "join");
        if bob_sees_earlier && visibility == "shared" {
            // Bob had no membership when this was sent: MSC4115 calls that "leave".
            let (_, event) = get(before).await;
            assert_eq!(event["unsigned"]["membership"], "leave");
        }
        // /messages applies the same rule.
        let (_, page) = server
            .get(&format!("/_matrix/client/v3/rooms/{}/messages?dir=b&limit=50", enc(&room)), Some(&bob.token))
            .await;
        let bodies: Vec<&str> =
            page["chunk"].as_array().unwrap().iter().filter_map(|e| e["content"]["body"].as_str()).collect();
        assert_eq!(bodies.contains(&"before bob"), bob_sees_earlier, "{visibility}: {bodies:?}");
        assert!(bodies.contains(&"after bob joined"));
    }
}

async fn timestamp_to_event(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    let room = create_room(&server, &alice, json!({})).await;
    let event_id = send_text(&server, &alice, &room, "t", "now").await;
    let (_, event) = server
        .get(&format!("/_matrix/client/v3/rooms/{}/event/{}", enc(&room), enc(&event_id)), Some(&alice.token))
        .await;
    let ts = event["origin_server_ts"].as_i64().unwrap();
    let (status, found) = server
        .get(&format!("/_matrix/client/v1/rooms/{}/timestamp_to_event?ts={ts}&dir=b", enc(&room)), Some(&alice.token))
        .await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["origin_server_ts"], ts);
    assert_error(
        &server
            .get(
                &format!("/_matrix/client/v1/rooms/{}/timestamp_to_event?ts={}&dir=f", enc(&room), ts + 60_000),
                Some(&alice.token),
            )
            .await,
        404,
        "M_NOT_FOUND",
    );
}

async fn malformed_requests(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    let room = create_room(&server, &alice, json!({})).await;
    // An over-long room ID (v1.11: at most 255 bytes) and malformed IDs.
    let long = format!("%21{}%3Alocalhost", "a".repeat(300));
    let (status, _) = server.get(&format!("/_matrix/client/v3/rooms/{long}/state"), Some(&alice.token)).await;
    assert_eq!(status, 400);
    let (status, _) = server.get("/_matrix/client/v3/rooms/not-a-room/state", Some(&alice.token)).await;
    assert_eq!(status, 400);
    let (status, _) =
        server.get(&format!("/_matrix/client/v3/rooms/{}/event/not-an-event", enc(&room)), Some(&alice.token)).await;
    assert_eq!(status, 400);
    // Not JSON, and JSON of the wrong shape.
    let response = server
        .http
        .put(format!("{}/_matrix/client/v3/rooms/{}/send/m.room.message/x", server.base, enc(&room)))
        .bearer_auth(&alice.token)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let (status, _) =
        server.post("/_matrix/client/v3/createRoom", Some(&alice.token), json!({ "creation_content": 5 })).await;
    assert_eq!(status, 400);
    let (status, _) = server
        .post("/_matrix/client/v3/createRoom", Some(&alice.token), json!({ "initial_state": [{ "content": {} }] }))
        .await;
    assert_eq!(status, 400);
    // Refused before anything is written: no half-made room is left joined.
    for body in [
        json!({ "power_level_content_override": { "users": "everyone" } }),
        json!({ "initial_state": [{ "type": "m.room.member", "state_key": alice.user_id, "content": {} }] }),
        json!({ "initial_state": [{ "type": "m.room.name", "content": "not an object" }] }),
    ] {
        let (status, answer) = server.post("/_matrix/client/v3/createRoom", Some(&alice.token), body.clone()).await;
        assert_eq!((status.as_u16(), answer["errcode"].as_str()), (400, Some("M_BAD_JSON")), "{body}");
    }
    let (_, joined) = server.get("/_matrix/client/v3/joined_rooms", Some(&alice.token)).await;
    assert_eq!(joined["joined_rooms"], json!([room]));
}

async fn relayed_content_is_untouched(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    let room = create_room(&server, &alice, json!({})).await;
    // VoIP with the v1.11 muting metadata, and HTML maths: stored and served byte for byte.
    let call = json!({
        "call_id": "c1", "version": "1", "party_id": "p1", "lifetime": 60000,
        "offer": { "type": "offer", "sdp": "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n" },
        "sdp_stream_metadata": { "stream1": { "purpose": "m.usermedia", "audio_muted": true, "video_muted": false } }
    });
    let muted = json!({
        "call_id": "c1", "version": "1", "party_id": "p1",
        "sdp_stream_metadata": { "stream1": { "purpose": "m.usermedia", "audio_muted": false, "video_muted": true } }
    });
    let maths = json!({
        "msgtype": "m.text", "body": "x^2", "format": "org.matrix.custom.html",
        "formatted_body": "<span data-mx-maths=\"x^2\"><code>x^2</code></span>"
    });
    for (kind, content) in
        [("m.call.invite", call), ("m.call.sdp_stream_metadata_changed", muted), ("m.room.message", maths)]
    {
        let path = format!("/_matrix/client/v3/rooms/{}/send/{kind}/{kind}", enc(&room));
        let (status, answer) = server.put(&path, Some(&alice.token), content.clone()).await;
        assert_eq!(status, 200, "{kind}: {answer}");
        let event_id = answer["event_id"].as_str().unwrap();
        let (_, event) = server
            .get(&format!("/_matrix/client/v3/rooms/{}/event/{}", enc(&room), enc(event_id)), Some(&alice.token))
            .await;
        assert_eq!(event["content"], content, "{kind}");
        assert_eq!(event["type"], kind);
    }
}
