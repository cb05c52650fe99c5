//! What clients ask for at start-up: TURN servers, protocols, 3PIDs, the user directory.

use crate::{
    backend_tests,
    common::*,
    rooms::{create_room, join},
};
use serde_json::json;

backend_tests!(startup_endpoints, turn_server_from_config, user_directory);

async fn startup_endpoints(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    assert_eq!(
        server.get("/_matrix/client/v3/voip/turnServer", Some(&alice.token)).await,
        (reqwest::StatusCode::OK, json!({}))
    );
    assert_error(&server.get("/_matrix/client/v3/voip/turnServer", None).await, 401, "M_MISSING_TOKEN");
    assert_eq!(server.get("/_matrix/client/v3/thirdparty/protocols", Some(&alice.token)).await.1, json!({}));
    assert_eq!(server.get("/_matrix/client/v3/account/3pid", Some(&alice.token)).await.1, json!({ "threepids": [] }));
}

async fn turn_server_from_config(backend: Backend) {
    let server = TestServer::start_with(backend, |config| {
        config.turn.uris = vec!["turn:turn.example.org:3478?transport=udp".into()];
        config.turn.shared_secret = Some("secret".into());
        config.turn.user_lifetime_secs = 600;
    })
    .await;
    let alice = server.register("alice").await;
    let (status, turn) = server.get("/_matrix/client/v3/voip/turnServer", Some(&alice.token)).await;
    assert_eq!(status, 200, "{turn}");
    let username = turn["username"].as_str().unwrap();
    let (expiry, user) = username.split_once(':').unwrap();
    assert_eq!(user, alice.user_id);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    assert!((now + 590..=now + 610).contains(&expiry.parse::<u64>().unwrap()), "{turn}");
    assert_eq!(turn["password"].as_str().unwrap().len(), 28, "base64 of a 20-byte HMAC-SHA1: {turn}");
    assert_eq!(turn["uris"], json!(["turn:turn.example.org:3478?transport=udp"]));
    assert_eq!(turn["ttl"], 600);
}

async fn user_directory(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let carol = server.register("carol").await;
    server.register("dave").await;
    server
        .put(
            &format!("/_matrix/client/v3/profile/{}/displayname", crate::rooms::enc(&bob.user_id)),
            Some(&bob.token),
            json!({ "displayname": "Bobby Tables" }),
        )
        .await;
    let shared = create_room(&server, &alice, json!({ "preset": "public_chat" })).await;
    join(&server, &bob, &shared).await;
    create_room(&server, &carol, json!({ "preset": "public_chat", "visibility": "public" })).await;
    let search = |term: &str, limit: u32| {
        let token = alice.token.clone();
        let server = &server;
        let body = json!({ "search_term": term, "limit": limit });
        async move { server.post("/_matrix/client/v3/user_directory/search", Some(&token), body).await.1 }
    };
    let ids = |found: &serde_json::Value| -> Vec<String> {
        found["results"].as_array().unwrap().iter().map(|u| u["user_id"].as_str().unwrap().to_owned()).collect()
    };
    let by_name = search("tables", 10).await;
    assert_eq!(ids(&by_name), [bob.user_id.as_str()]);
    assert_eq!(by_name["results"][0]["display_name"], "Bobby Tables");
    // Carol shares no room with alice but is in a public one; dave is nowhere.
    assert_eq!(ids(&search("carol", 10).await), [carol.user_id.as_str()]);
    assert!(ids(&search("dave", 10).await).is_empty());
    // Every user matches "localhost": limited to one.
    let page = search("localhost", 1).await;
    assert_eq!((ids(&page).len(), page["limited"].as_bool()), (1, Some(true)));
    // Wildcards in the term are literal.
    assert!(ids(&search("%", 10).await).is_empty());
}
