//! Account data (global and per room) and tags, through their endpoints and `/sync`.

use crate::{
    backend_tests,
    common::*,
    rooms::{create_room, enc, invite, join, send_text},
    sync::sync,
};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

backend_tests!(global_and_room_account_data, tags, refusals, ignored_users);

fn of_type<'a>(events: &'a Value, kind: &str) -> Option<&'a Value> {
    events["events"].as_array()?.iter().find(|e| e["type"] == kind)
}

async fn global_and_room_account_data(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    let room = create_room(&server, &alice, json!({})).await;
    let global = format!("/_matrix/client/v3/user/{}/account_data/m.direct", enc(&alice.user_id));
    let direct = json!({ "@bob:localhost": [room] });
    assert_eq!(server.put(&global, Some(&alice.token), direct.clone()).await.0, 200);
    assert_eq!(server.get(&global, Some(&alice.token)).await.1, direct);
    let per_room =
        format!("/_matrix/client/v3/user/{}/rooms/{}/account_data/org.example.note", enc(&alice.user_id), enc(&room));
    assert_eq!(server.put(&per_room, Some(&alice.token), json!({ "text": "remember" })).await.0, 200);
    assert_eq!(server.get(&per_room, Some(&alice.token)).await.1, json!({ "text": "remember" }));

    let first = sync(&server, &alice, "").await;
    assert_eq!(of_type(&first["account_data"], "m.direct").unwrap()["content"], direct);
    let room_data = &first["rooms"]["join"][&room]["account_data"];
    assert_eq!(of_type(room_data, "org.example.note").unwrap()["content"]["text"], "remember");

    // A change wakes a waiting sync, and only the change comes.
    let next = first["next_batch"].as_str().unwrap().to_owned();
    let started = Instant::now();
    let query = format!("since={next}&timeout=20000");
    let waiting = sync(&server, &alice, &query);
    let changing = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        server.put(&global, Some(&alice.token), json!({})).await
    };
    let (delta, _) = tokio::join!(waiting, changing);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(of_type(&delta["account_data"], "m.direct").unwrap()["content"], json!({}));
    assert!(delta["rooms"]["join"].get(&room).is_none(), "{delta}");
}

async fn tags(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    let room = create_room(&server, &alice, json!({})).await;
    let base = format!("/_matrix/client/v3/user/{}/rooms/{}/tags", enc(&alice.user_id), enc(&room));
    assert_eq!(server.get(&base, Some(&alice.token)).await.1, json!({ "tags": {} }));
    assert_eq!(server.put(&format!("{base}/u.work"), Some(&alice.token), json!({ "order": 0.5 })).await.0, 200);
    assert_eq!(server.put(&format!("{base}/m.favourite"), Some(&alice.token), json!({})).await.0, 200);
    let (_, tags) = server.get(&base, Some(&alice.token)).await;
    assert_eq!(tags["tags"]["u.work"]["order"], 0.5);
    assert!(tags["tags"]["m.favourite"].is_object());
    let synced = sync(&server, &alice, "").await;
    let tag = of_type(&synced["rooms"]["join"][&room]["account_data"], "m.tag").unwrap();
    assert_eq!(tag["content"]["tags"]["u.work"]["order"], 0.5);
    assert_eq!(
        server.request(reqwest::Method::DELETE, &format!("{base}/u.work"), Some(&alice.token), None).await.0,
        200
    );
    let (_, tags) = server.get(&base, Some(&alice.token)).await;
    assert!(tags["tags"].get("u.work").is_none());
}

async fn refusals(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let room = create_room(&server, &alice, json!({})).await;
    let mine = format!("/_matrix/client/v3/user/{}/account_data/org.example.x", enc(&alice.user_id));
    assert_error(&server.put(&mine, Some(&bob.token), json!({})).await, 403, "M_FORBIDDEN");
    assert_error(&server.get(&mine, Some(&bob.token)).await, 403, "M_FORBIDDEN");
    assert_error(&server.get(&mine, Some(&alice.token)).await, 404, "M_NOT_FOUND");
    assert_error(&server.put(&mine, Some(&alice.token), json!([1])).await, 400, "M_BAD_JSON");
    let fully_read =
        format!("/_matrix/client/v3/user/{}/rooms/{}/account_data/m.fully_read", enc(&alice.user_id), enc(&room));
    assert_error(&server.put(&fully_read, Some(&alice.token), json!({ "event_id": "$x" })).await, 405, "M_BAD_JSON");
    let unknown_room =
        format!("/_matrix/client/v3/user/{}/rooms/%21nope%3Alocalhost/account_data/x.y", enc(&alice.user_id));
    assert_error(&server.put(&unknown_room, Some(&alice.token), json!({})).await, 404, "M_NOT_FOUND");
}

async fn ignored_users(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let room = create_room(&server, &alice, json!({ "preset": "public_chat" })).await;
    join(&server, &bob, &room).await;
    let list = format!("/_matrix/client/v3/user/{}/account_data/m.ignored_user_list", enc(&alice.user_id));
    assert_eq!(
        server.put(&list, Some(&alice.token), json!({ "ignored_users": { bob.user_id.clone(): {} } })).await.0,
        200
    );
    send_text(&server, &bob, &room, "spam", "buy now").await;
    send_text(&server, &alice, &room, "own", "my own words").await;
    let bodies = |value: &Value, key: &str| -> Vec<String> {
        value[key].as_array().unwrap().iter().filter_map(|e| e["content"]["body"].as_str().map(str::to_owned)).collect()
    };
    let synced = sync(&server, &alice, "").await;
    let timeline = &synced["rooms"]["join"][&room]["timeline"];
    assert_eq!(bodies(timeline, "events"), ["my own words"], "{timeline}");
    let (_, page) = server
        .get(&format!("/_matrix/client/v3/rooms/{}/messages?dir=b&limit=20", enc(&room)), Some(&alice.token))
        .await;
    assert_eq!(bodies(&page, "chunk"), ["my own words"]);
    // Bob still sees his own; invites from bob do not reach alice.
    let (_, page) =
        server.get(&format!("/_matrix/client/v3/rooms/{}/messages?dir=b&limit=20", enc(&room)), Some(&bob.token)).await;
    assert_eq!(bodies(&page, "chunk"), ["my own words", "buy now"]);
    let other = create_room(&server, &bob, json!({})).await;
    invite(&server, &bob, &other, &alice).await;
    assert!(sync(&server, &alice, "").await["rooms"]["invite"].get(&other).is_none());
}
