//! Push rules evaluated on every event: unread counts in `/sync` (per thread too),
//! `GET /notifications`, and pushers; the push actions staged with events moved in batches.

use crate::{
    backend_tests,
    common::*,
    rooms::{create_room, enc, invite, join, send_text},
    sync::sync,
};
use serde_json::{Value, json};

backend_tests!(
    unread_counts_follow_push_rules_and_receipts,
    thread_counts_and_notifications,
    staged_push_actions_are_moved,
    pushers
);

async fn send(server: &TestServer, user: &User, room: &str, txn: &str, content: Value) -> String {
    let path = format!("/_matrix/client/v3/rooms/{}/send/m.room.message/{txn}", enc(room));
    let (status, body) = server.put(&path, Some(&user.token), content).await;
    assert_eq!(status, 200, "{body}");
    body["event_id"].as_str().unwrap().to_owned()
}

fn unread(sync: &Value, room: &str) -> (Value, Value) {
    let counts = &sync["rooms"]["join"][room]["unread_notifications"];
    (counts["notification_count"].clone(), counts["highlight_count"].clone())
}

async fn unread_counts_follow_push_rules_and_receipts(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let room = create_room(&server, &alice, json!({ "preset": "private_chat" })).await;
    invite(&server, &alice, &room, &bob).await;
    // The invite notifies bob (`.m.rule.invite_for_me`).
    let (_, listed) = server.get("/_matrix/client/v3/notifications", Some(&bob.token)).await;
    assert_eq!(listed["notifications"][0]["event"]["type"], "m.room.member", "{listed}");
    join(&server, &bob, &room).await;

    send_text(&server, &alice, &room, "t1", "hello").await;
    let mention = json!({ "msgtype": "m.text", "body": "bob, look", "m.mentions": { "user_ids": [bob.user_id] } });
    let last = send(&server, &alice, &room, "t2", mention).await;
    // One-to-one messages notify; an intentional mention highlights too.
    let bobs = sync(&server, &bob, "").await;
    assert_eq!(unread(&bobs, &room), (json!(2), json!(1)), "{}", bobs["rooms"]["join"][&room]);
    // Nobody is notified of their own messages.
    let alices = sync(&server, &alice, "").await;
    assert_eq!(unread(&alices, &room), (json!(0), json!(0)));

    // A read receipt clears them; the incremental sync carries the new counts.
    let next = bobs["next_batch"].as_str().unwrap().to_owned();
    let receipt = format!("/_matrix/client/v3/rooms/{}/receipt/m.read/{}", enc(&room), enc(&last));
    assert_eq!(server.post(&receipt, Some(&bob.token), json!({})).await.0, 200);
    let delta = sync(&server, &bob, &format!("since={next}")).await;
    assert_eq!(unread(&delta, &room), (json!(0), json!(0)), "{delta}");

    // A rule of bob's own: this room does not notify him any more (the cached rules follow).
    let rule = format!("/_matrix/client/v3/pushrules/global/room/{}", enc(&room));
    let (status, body) = server.put(&rule, Some(&bob.token), json!({ "actions": [] })).await;
    assert_eq!(status, 200, "{body}");
    send_text(&server, &alice, &room, "t3", "quiet now").await;
    assert_eq!(unread(&sync(&server, &bob, "").await, &room), (json!(0), json!(0)));
    server.request(reqwest::Method::DELETE, &rule, Some(&bob.token), None).await;
    send_text(&server, &alice, &room, "t4", "loud again").await;
    assert_eq!(unread(&sync(&server, &bob, "").await, &room), (json!(1), json!(0)));
    // Kept current in memory from here: each message counts once more.
    send_text(&server, &alice, &room, "t5", "and again").await;
    assert_eq!(unread(&sync(&server, &bob, "").await, &room), (json!(2), json!(0)));

    // Leaving and joining again: what came before the new join is not unread.
    let leave = format!("/_matrix/client/v3/rooms/{}/leave", enc(&room));
    assert_eq!(server.post(&leave, Some(&bob.token), json!({})).await.0, 200);
    invite(&server, &alice, &room, &bob).await;
    join(&server, &bob, &room).await;
    assert_eq!(unread(&sync(&server, &bob, "").await, &room), (json!(0), json!(0)));
    send_text(&server, &alice, &room, "t6", "welcome back").await;
    assert_eq!(unread(&sync(&server, &bob, "").await, &room), (json!(1), json!(0)));
}

/// Push actions are written with their event as one staged row and moved to one row per
/// member shortly after, in batches, without a reader having to ask: a burst of messages is
/// moved by then, and counted once each.
async fn staged_push_actions_are_moved(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let carol = server.register("carol").await;
    let room = create_room(&server, &alice, json!({ "preset": "public_chat" })).await;
    join(&server, &bob, &room).await;
    join(&server, &carol, &room).await;
    let sends = (0..30).map(|i| {
        let (server, alice, room) = (&server, &alice, &room);
        async move { send_text(server, alice, room, &format!("burst{i}"), "hello").await }
    });
    futures_util::future::join_all(sends).await;
    // The background move comes 250 ms after the first of them; a second after, nothing is left.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let left = server.services().store.push().rotate_staged().await.unwrap();
    assert_eq!(left, 0, "the staged push actions were not moved in the background");
    for user in [&bob, &carol] {
        assert_eq!(unread(&sync(&server, user, "").await, &room), (json!(30), json!(0)));
    }
    let (_, listed) = server.get("/_matrix/client/v3/notifications?limit=100", Some(&bob.token)).await;
    assert_eq!(listed["notifications"].as_array().unwrap().len(), 30, "{listed}");
}

async fn thread_counts_and_notifications(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let room = create_room(&server, &alice, json!({ "preset": "public_chat" })).await;
    join(&server, &bob, &room).await;
    let root = send_text(&server, &alice, &room, "r", "root").await;
    let reply = json!({
        "msgtype": "m.text", "body": "in thread",
        "m.relates_to": { "rel_type": "m.thread", "event_id": root },
    });
    send(&server, &alice, &room, "t1", reply).await;
    let mention = json!({ "msgtype": "m.text", "body": "hey", "m.mentions": { "user_ids": [bob.user_id] } });
    let highlighted = send(&server, &alice, &room, "t2", mention).await;

    // Threads apart when the filter asks: the main timeline has the root and the mention.
    let filter = enc(&json!({ "room": { "timeline": { "unread_thread_notifications": true } } }).to_string());
    let threaded = sync(&server, &bob, &format!("filter={filter}")).await;
    let joined = &threaded["rooms"]["join"][&room];
    assert_eq!(unread(&threaded, &room), (json!(2), json!(1)), "{joined}");
    assert_eq!(joined["unread_thread_notifications"][&root]["notification_count"], 1, "{joined}");
    // Without, everything counts together.
    assert_eq!(unread(&sync(&server, &bob, "").await, &room), (json!(3), json!(1)));

    // GET /notifications: newest first, pages, highlights only, read flags.
    let (status, all) = server.get("/_matrix/client/v3/notifications", Some(&bob.token)).await;
    assert_eq!(status, 200, "{all}");
    let list = all["notifications"].as_array().unwrap();
    assert_eq!(list.len(), 3, "{all}");
    assert_eq!(list[0]["event"]["event_id"], highlighted.as_str());
    assert_eq!(list[0]["room_id"], room.as_str());
    assert_eq!(list[0]["read"], false);
    assert!(list[0]["actions"].as_array().unwrap().iter().any(|a| a == "notify"), "{all}");
    assert!(list[0]["ts"].is_i64());
    let (_, page) = server.get("/_matrix/client/v3/notifications?limit=2", Some(&bob.token)).await;
    assert_eq!(page["notifications"].as_array().unwrap().len(), 2);
    let token = page["next_token"].as_str().expect("next_token").to_owned();
    let (_, rest) = server.get(&format!("/_matrix/client/v3/notifications?from={token}"), Some(&bob.token)).await;
    assert_eq!(rest["notifications"].as_array().unwrap().len(), 1, "{rest}");
    assert_eq!(rest["notifications"][0]["event"]["event_id"], root.as_str());
    let (_, only) = server.get("/_matrix/client/v3/notifications?only=highlight", Some(&bob.token)).await;
    assert_eq!(only["notifications"].as_array().unwrap().len(), 1, "{only}");
    let receipt = format!("/_matrix/client/v3/rooms/{}/receipt/m.read/{}", enc(&room), enc(&highlighted));
    server.post(&receipt, Some(&bob.token), json!({})).await;
    let (_, after) = server.get("/_matrix/client/v3/notifications", Some(&bob.token)).await;
    assert!(after["notifications"].as_array().unwrap().iter().all(|n| n["read"] == true), "{after}");
    let bad = server.get("/_matrix/client/v3/notifications?from=nonsense", Some(&bob.token)).await;
    assert_error(&bad, 400, "M_INVALID_PARAM");

    // The unthreaded receipt read everything. Both kinds of counts, kept in memory once read,
    // follow a new reply in the thread, a mention.
    assert_eq!(unread(&sync(&server, &bob, &format!("filter={filter}")).await, &room), (json!(0), json!(0)));
    assert_eq!(unread(&sync(&server, &bob, "").await, &room), (json!(0), json!(0)));
    let mention_in_thread = json!({
        "msgtype": "m.text", "body": "bob, here", "m.mentions": { "user_ids": [bob.user_id] },
        "m.relates_to": { "rel_type": "m.thread", "event_id": root },
    });
    send(&server, &alice, &room, "t3", mention_in_thread).await;
    let threaded = sync(&server, &bob, &format!("filter={filter}")).await;
    let joined = &threaded["rooms"]["join"][&room];
    assert_eq!(unread(&threaded, &room), (json!(0), json!(0)), "{joined}");
    assert_eq!(joined["unread_thread_notifications"][&root]["notification_count"], 1, "{joined}");
    assert_eq!(joined["unread_thread_notifications"][&root]["highlight_count"], 1, "{joined}");
    assert_eq!(unread(&sync(&server, &bob, "").await, &room), (json!(1), json!(1)));
}

async fn pushers(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let pusher = |app: &str, key: &str| {
        json!({
            "kind": "http", "app_id": app, "pushkey": key, "app_display_name": "App",
            "device_display_name": "Phone", "lang": "en", "data": { "url": "https://push.example.org/_matrix/push/v1/notify" },
        })
    };
    let set = "/_matrix/client/v3/pushers/set";
    let (status, body) = server.post(set, Some(&alice.token), pusher("org.example.app", "key1")).await;
    assert_eq!(status, 200, "{body}");
    let (_, listed) = server.get("/_matrix/client/v3/pushers", Some(&alice.token)).await;
    assert_eq!(listed["pushers"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed["pushers"][0]["pushkey"], "key1");
    assert_eq!(listed["pushers"][0]["data"]["url"], "https://push.example.org/_matrix/push/v1/notify");

    // The same pushkey for bob, without append, takes it from alice.
    assert_eq!(server.post(set, Some(&bob.token), pusher("org.example.app", "key1")).await.0, 200);
    assert_eq!(server.get("/_matrix/client/v3/pushers", Some(&alice.token)).await.1["pushers"], json!([]));
    let mut appended = pusher("org.example.app", "key1");
    appended["append"] = json!(true);
    assert_eq!(server.post(set, Some(&alice.token), appended).await.0, 200);
    assert_eq!(
        server.get("/_matrix/client/v3/pushers", Some(&bob.token)).await.1["pushers"].as_array().unwrap().len(),
        1
    );

    // Kind null deletes.
    let delete = json!({ "kind": null, "app_id": "org.example.app", "pushkey": "key1" });
    assert_eq!(server.post(set, Some(&bob.token), delete).await.0, 200);
    assert_eq!(server.get("/_matrix/client/v3/pushers", Some(&bob.token)).await.1["pushers"], json!([]));

    // Bad input.
    let mut no_url = pusher("org.example.app", "key2");
    no_url["data"] = json!({});
    assert_eq!(server.post(set, Some(&alice.token), no_url).await.0, 400);
    let long_app = pusher(&"a".repeat(65), "key3");
    assert_error(&server.post(set, Some(&alice.token), long_app).await, 400, "M_INVALID_PARAM");
}
