//! Presence: set by clients and by `/sync`, seen by those who share a room.

use crate::{
    backend_tests,
    common::*,
    rooms::{create_room, enc, join},
};
use serde_json::json;

backend_tests!(presence_between_room_members);

async fn presence_between_room_members(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let eve = server.register("eve").await;
    let room = create_room(&server, &alice, json!({ "preset": "public_chat" })).await;
    join(&server, &bob, &room).await;
    let status = |user: &User| format!("/_matrix/client/v3/presence/{}/status", enc(&user.user_id));

    // Syncing makes alice online; bob sees it.
    let (_, first) = server.get("/_matrix/client/v3/sync", Some(&alice.token)).await;
    let next = first["next_batch"].as_str().unwrap().to_owned();
    let (code, seen) = server.get(&status(&alice), Some(&bob.token)).await;
    assert_eq!(code, 200, "{seen}");
    assert_eq!(seen["presence"], "online");
    assert_eq!(seen["currently_active"], true);

    // Bob steps away with a message; alice's sync brings it.
    let (code, _) =
        server.put(&status(&bob), Some(&bob.token), json!({ "presence": "unavailable", "status_msg": "lunch" })).await;
    assert_eq!(code, 200);
    let (_, delta) = server.get(&format!("/_matrix/client/v3/sync?since={next}&timeout=0"), Some(&alice.token)).await;
    let event = delta["presence"]["events"].as_array().unwrap().iter().find(|e| e["sender"] == bob.user_id.as_str());
    let event = event.unwrap_or_else(|| panic!("no presence of bob in {delta}"));
    assert_eq!(event["content"]["presence"], "unavailable");
    assert_eq!(event["content"]["status_msg"], "lunch");

    // Strangers see nothing; nobody sets someone else's presence; states are the spec's.
    assert_error(&server.get(&status(&bob), Some(&eve.token)).await, 403, "M_FORBIDDEN");
    assert_error(
        &server.put(&status(&bob), Some(&alice.token), json!({ "presence": "online" })).await,
        403,
        "M_FORBIDDEN",
    );
    let (code, _) = server.put(&status(&bob), Some(&bob.token), json!({ "presence": "dancing" })).await;
    assert_eq!(code, 400);
    // set_presence=offline leaves the presence as it is.
    server.get("/_matrix/client/v3/sync?set_presence=offline", Some(&bob.token)).await;
    assert_eq!(server.get(&status(&bob), Some(&alice.token)).await.1["presence"], "unavailable");
}
