//! Read receipts (public, private, threaded), read markers and typing, through `/sync`.

use crate::{
    backend_tests,
    common::*,
    rooms::{create_room, enc, join, send_text},
    sync::sync,
};
use serde_json::{Value, json};

backend_tests!(receipts_reach_members_through_sync, read_markers_and_refusals, typing);

fn receipt_content<'a>(sync: &'a Value, room: &str) -> Option<&'a Value> {
    sync["rooms"]["join"][room]["ephemeral"]["events"]
        .as_array()?
        .iter()
        .find(|e| e["type"] == "m.receipt")
        .map(|e| &e["content"])
}

async fn receipts_reach_members_through_sync(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let room = create_room(&server, &alice, json!({ "preset": "public_chat" })).await;
    join(&server, &bob, &room).await;
    let event = send_text(&server, &alice, &room, "m", "read me").await;
    let alice_next = sync(&server, &alice, "").await["next_batch"].as_str().unwrap().to_owned();

    let receipt = |kind: &str| format!("/_matrix/client/v3/rooms/{}/receipt/{kind}/{}", enc(&room), enc(&event));
    assert_eq!(server.post(&receipt("m.read"), Some(&bob.token), json!({})).await.0, 200);
    assert_eq!(server.post(&receipt("m.read.private"), Some(&bob.token), json!({})).await.0, 200);
    assert_eq!(server.post(&receipt("m.read"), Some(&bob.token), json!({ "thread_id": "main" })).await.0, 200);

    // Alice sees bob's public receipt (threaded and not), not his private one.
    let delta = sync(&server, &alice, &format!("since={alice_next}")).await;
    let content = receipt_content(&delta, &room).expect("m.receipt for alice");
    assert!(content[&event]["m.read"][&bob.user_id]["ts"].is_i64(), "{content}");
    assert!(content[&event].get("m.read.private").is_none(), "{content}");
    // Bob sees his private one.
    let bobs = sync(&server, &bob, "").await;
    let content = receipt_content(&bobs, &room).expect("m.receipt for bob");
    assert!(content[&event]["m.read.private"][&bob.user_id].is_object(), "{content}");
}

async fn read_markers_and_refusals(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    let eve = server.register("eve").await;
    let room = create_room(&server, &alice, json!({})).await;
    let event = send_text(&server, &alice, &room, "m", "marked").await;
    let markers = format!("/_matrix/client/v3/rooms/{}/read_markers", enc(&room));
    let (status, body) =
        server.post(&markers, Some(&alice.token), json!({ "m.fully_read": event, "m.read": event })).await;
    assert_eq!(status, 200, "{body}");
    let data =
        format!("/_matrix/client/v3/user/{}/rooms/{}/account_data/m.fully_read", enc(&alice.user_id), enc(&room));
    assert_eq!(server.get(&data, Some(&alice.token)).await.1, json!({ "event_id": event }));
    let synced = sync(&server, &alice, "").await;
    let account = synced["rooms"]["join"][&room]["account_data"]["events"].as_array().unwrap();
    assert!(account.iter().any(|e| e["type"] == "m.fully_read" && e["content"]["event_id"] == event.as_str()));
    // Someone outside the room, an unknown event, an unknown receipt type.
    assert_error(&server.post(&markers, Some(&eve.token), json!({ "m.read": event })).await, 403, "M_FORBIDDEN");
    let missing = format!("/_matrix/client/v3/rooms/{}/receipt/m.read/%24missing", enc(&room));
    assert_error(&server.post(&missing, Some(&alice.token), json!({})).await, 404, "M_NOT_FOUND");
    let odd = format!("/_matrix/client/v3/rooms/{}/receipt/org.example.seen/{}", enc(&room), enc(&event));
    let (status, _) = server.post(&odd, Some(&alice.token), json!({})).await;
    assert_eq!(status, 400);
}

fn typing_users(sync: &Value, room: &str) -> Option<Vec<String>> {
    let event =
        sync["rooms"]["join"][room]["ephemeral"]["events"].as_array()?.iter().find(|e| e["type"] == "m.typing")?;
    Some(event["content"]["user_ids"].as_array()?.iter().map(|u| u.as_str().unwrap().to_owned()).collect())
}

async fn typing(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let eve = server.register("eve").await;
    let room = create_room(&server, &alice, json!({ "preset": "public_chat" })).await;
    join(&server, &bob, &room).await;
    let next = sync(&server, &alice, "").await["next_batch"].as_str().unwrap().to_owned();
    let typing = |user: &User| format!("/_matrix/client/v3/rooms/{}/typing/{}", enc(&room), enc(&user.user_id));

    // Bob starts typing: alice's waiting sync wakes with it.
    let query = format!("since={next}&timeout=20000");
    let waiting = sync(&server, &alice, &query);
    let typing_starts = async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        server.put(&typing(&bob), Some(&bob.token), json!({ "typing": true, "timeout": 1500 })).await
    };
    let (woken, (status, _)) = tokio::join!(waiting, typing_starts);
    assert_eq!(status, 200);
    assert_eq!(typing_users(&woken, &room), Some(vec![bob.user_id.clone()]), "{woken}");
    // Nothing more until it times out; then the room says nobody types.
    let next = woken["next_batch"].as_str().unwrap().to_owned();
    let after = sync(&server, &alice, &format!("since={next}&timeout=5000")).await;
    assert_eq!(typing_users(&after, &room), Some(vec![]), "{after}");
    // Stopping explicitly, and refusals.
    server.put(&typing(&bob), Some(&bob.token), json!({ "typing": true, "timeout": 30000 })).await;
    server.put(&typing(&bob), Some(&bob.token), json!({ "typing": false })).await;
    assert_eq!(typing_users(&sync(&server, &alice, "").await, &room), None, "nobody types any more");
    assert_error(
        &server.put(&typing(&bob), Some(&alice.token), json!({ "typing": true, "timeout": 1000 })).await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(
        &server.put(&typing(&eve), Some(&eve.token), json!({ "typing": true, "timeout": 1000 })).await,
        403,
        "M_FORBIDDEN",
    );
}
