//! `/sync` for rooms: initial and incremental syncs, invites, joins and leaves, long-polling,
//! filters.

use crate::{
    backend_tests,
    common::*,
    rooms::{create_room, enc, invite, join, send_text},
};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

backend_tests!(
    initial_and_incremental,
    invites_joins_and_leaves,
    long_poll,
    filters_and_bad_tokens,
    many_rooms_and_summaries,
    tokens_across_a_restart
);

/// A `/sync` with this query string, which must succeed.
pub async fn sync(server: &TestServer, user: &User, query: &str) -> Value {
    let (status, body) = server.get(&format!("/_matrix/client/v3/sync?{query}"), Some(&user.token)).await;
    assert_eq!(status, 200, "{body}");
    body
}

fn timeline_bodies(room: &Value) -> Vec<String> {
    room["timeline"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
        .collect()
}

async fn initial_and_incremental(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    let room = create_room(&server, &alice, json!({ "name": "Sync me" })).await;
    for i in 0..3 {
        send_text(&server, &alice, &room, &format!("m{i}"), &format!("message {i}")).await;
    }
    let filter = "filter=%7B%22room%22%3A%7B%22timeline%22%3A%7B%22limit%22%3A2%7D%7D%7D";
    let first = sync(&server, &alice, filter).await;
    let joined = &first["rooms"]["join"][&room];
    assert_eq!(timeline_bodies(joined), ["message 1", "message 2"], "{joined}");
    assert_eq!(joined["timeline"]["limited"], true);
    assert!(joined["timeline"]["prev_batch"].is_string());
    assert!(joined["timeline"]["events"][0].get("room_id").is_none(), "sync format has no room_id");
    assert_eq!(joined["timeline"]["events"][1]["unsigned"]["transaction_id"], "m2");
    let state_types: Vec<&str> =
        joined["state"]["events"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert!(state_types.contains(&"m.room.name") && state_types.contains(&"m.room.create"), "{state_types:?}");
    assert_eq!(joined["summary"]["m.joined_member_count"], 1);
    // prev_batch continues with /messages.
    let prev = joined["timeline"]["prev_batch"].as_str().unwrap();
    let (_, older) = server
        .get(&format!("/_matrix/client/v3/rooms/{}/messages?dir=b&limit=1&from={prev}", enc(&room)), Some(&alice.token))
        .await;
    assert_eq!(older["chunk"][0]["content"]["body"], "message 0");

    // Nothing new: an empty answer with the same token.
    let next = first["next_batch"].as_str().unwrap().to_owned();
    let idle = sync(&server, &alice, &format!("since={next}&timeout=0")).await;
    assert!(idle["rooms"]["join"].get(&room).is_none(), "{idle}");
    assert_eq!(idle["next_batch"], next.as_str());
    // One new message: only it, not limited, no state.
    send_text(&server, &alice, &room, "m3", "message 3").await;
    let delta = sync(&server, &alice, &format!("since={next}&timeout=0")).await;
    let joined = &delta["rooms"]["join"][&room];
    assert_eq!(timeline_bodies(joined), ["message 3"]);
    assert_ne!(joined["timeline"]["limited"], true, "ruma leaves out limited: false");
    assert!(joined["state"]["events"].as_array().is_none_or(|e| e.is_empty()), "{joined}");
    // A gap larger than the limit: limited, with the state that changed in the gap.
    let next = delta["next_batch"].as_str().unwrap().to_owned();
    let path = format!("/_matrix/client/v3/rooms/{}/state/m.room.topic/", enc(&room));
    server.put(&path, Some(&alice.token), json!({ "topic": "changed in the gap" })).await;
    for i in 4..8 {
        send_text(&server, &alice, &room, &format!("m{i}"), &format!("message {i}")).await;
    }
    let gap = sync(&server, &alice, &format!("since={next}&timeout=0&{filter}")).await;
    let joined = &gap["rooms"]["join"][&room];
    assert_eq!(joined["timeline"]["limited"], true);
    assert_eq!(timeline_bodies(joined), ["message 6", "message 7"]);
    let topics: Vec<&Value> =
        joined["state"]["events"].as_array().unwrap().iter().filter(|e| e["type"] == "m.room.topic").collect();
    assert_eq!(topics.len(), 1, "{joined}");
    assert_eq!(topics[0]["content"]["topic"], "changed in the gap");
    // full_state sends everything again.
    let full = sync(&server, &alice, &format!("since={}&full_state=true", gap["next_batch"].as_str().unwrap())).await;
    assert!(full["rooms"]["join"][&room]["state"]["events"].as_array().unwrap().len() >= 5);
}

/// A token from before a restart still brings what changed since, room by room: the server
/// knows which rooms changed only since it started (it asks the store about older tokens).
async fn tokens_across_a_restart(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    let quiet = create_room(&server, &alice, json!({ "name": "Quiet" })).await;
    let busy = create_room(&server, &alice, json!({ "name": "Busy" })).await;
    let before = sync(&server, &alice, "").await["next_batch"].as_str().unwrap().to_owned();
    let event = send_text(&server, &alice, &busy, "b1", "before the restart").await;
    let db = server.stop().await;
    let config = test_config(&db);
    let server = TestServer::start_config(db, config).await;

    let delta = sync(&server, &alice, &format!("since={before}&timeout=0")).await;
    assert_eq!(timeline_bodies(&delta["rooms"]["join"][&busy]), ["before the restart"], "{delta}");
    assert!(delta["rooms"]["join"].get(&quiet).is_none(), "{delta}");
    // Tokens of this process: only the rooms that changed since, a message in one and a
    // receipt in the other.
    let after = delta["next_batch"].as_str().unwrap().to_owned();
    send_text(&server, &alice, &quiet, "q1", "after the restart").await;
    let delta = sync(&server, &alice, &format!("since={after}&timeout=0")).await;
    assert_eq!(timeline_bodies(&delta["rooms"]["join"][&quiet]), ["after the restart"], "{delta}");
    assert!(delta["rooms"]["join"].get(&busy).is_none(), "{delta}");
    let next = delta["next_batch"].as_str().unwrap().to_owned();
    let path = format!("/_matrix/client/v3/rooms/{}/receipt/m.read/{}", enc(&busy), enc(&event));
    assert_eq!(server.post(&path, Some(&alice.token), json!({})).await.0, 200);
    let delta = sync(&server, &alice, &format!("since={next}&timeout=0")).await;
    let ephemeral = &delta["rooms"]["join"][&busy]["ephemeral"]["events"];
    assert_eq!(ephemeral[0]["type"], "m.receipt", "{delta}");
    assert!(delta["rooms"]["join"].get(&quiet).is_none(), "{delta}");
    let idle = sync(&server, &alice, &format!("since={}&timeout=0", delta["next_batch"].as_str().unwrap())).await;
    assert!(idle["rooms"]["join"].as_object().is_none_or(|rooms| rooms.is_empty()), "{idle}");
}

/// More rooms than one of the store's multi-room queries covers (50), each with its own
/// timeline, state and summary; summaries again only where the membership changed.
async fn many_rooms_and_summaries(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let mut rooms = Vec::new();
    for i in 0..53 {
        let room = create_room(&server, &alice, json!({ "name": format!("Room {i}"), "preset": "public_chat" })).await;
        send_text(&server, &alice, &room, &format!("t{i}"), &format!("hello {i}")).await;
        rooms.push(room);
    }
    join(&server, &bob, &rooms[52]).await;
    send_text(&server, &bob, &rooms[52], "b1", "bob was here").await;

    let first = sync(&server, &alice, "").await;
    let joined = first["rooms"]["join"].as_object().unwrap();
    assert_eq!(joined.len(), 53);
    for (i, room) in rooms.iter().enumerate() {
        let part = &joined[room];
        let bodies = timeline_bodies(part);
        let expected = if i == 52 { "bob was here".to_owned() } else { format!("hello {i}") };
        assert_eq!(bodies.last(), Some(&expected), "{room}: {part}");
        let names: Vec<&Value> = part["state"]["events"]
            .as_array()
            .unwrap()
            .iter()
            .chain(part["timeline"]["events"].as_array().unwrap())
            .filter(|e| e["type"] == "m.room.name")
            .collect();
        assert_eq!(names[0]["content"]["name"], format!("Room {i}"), "{part}");
        let members = if i == 52 { 2 } else { 1 };
        assert_eq!(part["summary"]["m.joined_member_count"], members, "{part}");
    }
    assert_eq!(joined[&rooms[52]]["summary"]["m.heroes"], json!([bob.user_id]));
    assert!(joined[&rooms[0]]["summary"].get("m.heroes").is_none_or(|h| h == &json!([])));

    // A message changes no membership: no summary. A join does: the new one.
    let next = first["next_batch"].as_str().unwrap().to_owned();
    send_text(&server, &alice, &rooms[1], "t-again", "again").await;
    join(&server, &bob, &rooms[2]).await;
    let delta = sync(&server, &alice, &format!("since={next}&timeout=0")).await;
    let joined = delta["rooms"]["join"].as_object().unwrap();
    assert_eq!(joined.len(), 2, "{delta}");
    assert_eq!(timeline_bodies(&joined[&rooms[1]]), ["again"]);
    assert!(joined[&rooms[1]].get("summary").is_none_or(|s| s == &json!({})), "{delta}");
    assert_eq!(joined[&rooms[2]]["summary"]["m.joined_member_count"], 2, "{delta}");
    assert_eq!(joined[&rooms[2]]["summary"]["m.heroes"], json!([bob.user_id]));
}

async fn invites_joins_and_leaves(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let room = create_room(&server, &alice, json!({ "name": "Club", "preset": "private_chat" })).await;
    let before = sync(&server, &bob, "").await["next_batch"].as_str().unwrap().to_owned();
    invite(&server, &alice, &room, &bob).await;
    let invited = sync(&server, &bob, &format!("since={before}")).await;
    let state = invited["rooms"]["invite"][&room]["invite_state"]["events"].as_array().unwrap();
    assert!(state.iter().any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "Club"), "{state:?}");
    assert!(state.iter().any(|e| e["type"] == "m.room.member"
        && e["state_key"] == bob.user_id.as_str()
        && e["content"]["membership"] == "invite"));
    assert!(invited["rooms"]["join"].get(&room).is_none());

    let next = invited["next_batch"].as_str().unwrap().to_owned();
    join(&server, &bob, &room).await;
    let joined = sync(&server, &bob, &format!("since={next}")).await;
    let room_part = &joined["rooms"]["join"][&room];
    // Newly joined: the whole state, whatever the token (the state before the timeline plus the
    // state events in it).
    let types: Vec<&str> = room_part["state"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .chain(room_part["timeline"]["events"].as_array().unwrap())
        .filter(|e| e.get("state_key").is_some())
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert!(types.contains(&"m.room.create") && types.contains(&"m.room.power_levels"), "{types:?}");
    assert!(joined["rooms"]["invite"].get(&room).is_none());

    let next = joined["next_batch"].as_str().unwrap().to_owned();
    send_text(&server, &alice, &room, "x", "goodbye bob").await;
    server.post(&format!("/_matrix/client/v3/rooms/{}/leave", enc(&room)), Some(&bob.token), json!({})).await;
    send_text(&server, &alice, &room, "y", "after bob left").await;
    let left = sync(&server, &bob, &format!("since={next}")).await;
    let room_part = &left["rooms"]["leave"][&room];
    let events = room_part["timeline"]["events"].as_array().unwrap();
    assert_eq!(events.last().unwrap()["content"]["membership"], "leave", "{room_part}");
    assert!(!timeline_bodies(room_part).contains(&"after bob left".to_owned()));
    assert!(left["rooms"]["join"].get(&room).is_none());
}

async fn long_poll(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    let room = create_room(&server, &alice, json!({})).await;
    let next = sync(&server, &alice, "").await["next_batch"].as_str().unwrap().to_owned();
    // Nothing happens: the answer comes after the timeout, empty.
    let started = Instant::now();
    let idle = sync(&server, &alice, &format!("since={next}&timeout=400")).await;
    assert!(started.elapsed() >= Duration::from_millis(350), "{:?}", started.elapsed());
    assert!(idle["rooms"]["join"].get(&room).is_none());
    // A message while waiting wakes the sync at once.
    let started = Instant::now();
    let query = format!("since={next}&timeout=20000");
    let waiting = sync(&server, &alice, &query);
    let sending = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        send_text(&server, &alice, &room, "w", "wake up").await
    };
    let (woken, _) = tokio::join!(waiting, sending);
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    assert_eq!(timeline_bodies(&woken["rooms"]["join"][&room]), ["wake up"]);
}

async fn filters_and_bad_tokens(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let room = create_room(&server, &alice, json!({})).await;
    for i in 0..3 {
        send_text(&server, &alice, &room, &format!("f{i}"), &format!("message {i}")).await;
    }
    let path = format!("/_matrix/client/v3/user/{}/filter", enc(&alice.user_id));
    let definition = json!({ "room": { "timeline": { "limit": 1, "types": ["m.room.message"] } } });
    let (status, created) = server.post(&path, Some(&alice.token), definition.clone()).await;
    assert_eq!(status, 200, "{created}");
    let id = created["filter_id"].as_str().unwrap();
    let (_, stored) = server.get(&format!("{path}/{id}"), Some(&alice.token)).await;
    assert_eq!(stored["room"]["timeline"]["limit"], 1);
    assert_error(&server.get(&format!("{path}/{id}"), Some(&bob.token)).await, 403, "M_FORBIDDEN");
    assert_error(&server.get(&format!("{path}/nope"), Some(&alice.token)).await, 404, "M_NOT_FOUND");
    let filtered = sync(&server, &alice, &format!("filter={id}")).await;
    assert_eq!(timeline_bodies(&filtered["rooms"]["join"][&room]), ["message 2"]);
    // Rooms can be filtered out.
    let not_rooms = format!("filter=%7B%22room%22%3A%7B%22not_rooms%22%3A%5B%22{}%22%5D%7D%7D", enc(&room));
    assert!(sync(&server, &alice, &not_rooms).await["rooms"]["join"].get(&room).is_none());
    // Tokens this server did not hand out are a 400, never a 500.
    for bad in ["garbage", "s-5", "12"] {
        assert_error(
            &server.get(&format!("/_matrix/client/v3/sync?since={bad}"), Some(&alice.token)).await,
            400,
            "M_INVALID_PARAM",
        );
    }
    assert_error(&server.get("/_matrix/client/v3/sync", None).await, 401, "M_MISSING_TOKEN");
}
