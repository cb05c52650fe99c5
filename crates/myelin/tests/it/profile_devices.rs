//! Devices and profiles.

use crate::{backend_tests, common::*};
use serde_json::json;

backend_tests!(devices, profiles);

async fn devices(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let (_, phone) = server
        .login("alice", &alice.password, json!({"device_id": "PHONE", "initial_device_display_name": "Phone"}))
        .await;
    let (status, list) = server.get("/_matrix/client/v3/devices", Some(&alice.token)).await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = list["devices"].as_array().unwrap().iter().map(|d| d["device_id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&"PHONE") && ids.contains(&alice.device_id.as_str()));
    // Last seen is recorded from requests.
    let (_, me) = server.get(&format!("/_matrix/client/v3/devices/{}", alice.device_id), Some(&alice.token)).await;
    assert_eq!(me["last_seen_ip"], "127.0.0.1");
    assert!(me["last_seen_ts"].as_u64().is_some(), "{me}");

    let (status, _) =
        server.put("/_matrix/client/v3/devices/PHONE", Some(&alice.token), json!({"display_name": "Old phone"})).await;
    assert_eq!(status, 200);
    let (_, device) = server.get("/_matrix/client/v3/devices/PHONE", Some(&alice.token)).await;
    assert_eq!(device["display_name"], "Old phone");
    assert_error(&server.get("/_matrix/client/v3/devices/NOPE", Some(&alice.token)).await, 404, "M_NOT_FOUND");
    assert_error(
        &server.put("/_matrix/client/v3/devices/NOPE", Some(&alice.token), json!({"display_name": "x"})).await,
        404,
        "M_NOT_FOUND",
    );
    // Another user's device is not visible.
    assert_error(&server.get("/_matrix/client/v3/devices/PHONE", Some(&bob.token)).await, 404, "M_NOT_FOUND");

    // Deleting needs the password.
    let delete = |body| {
        server.request(reqwest::Method::DELETE, "/_matrix/client/v3/devices/PHONE", Some(&alice.token), Some(body))
    };
    let (status, challenge) = delete(json!({})).await;
    assert_eq!(status, 401);
    let auth = |password: &str| json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"}, "password": password, "session": challenge["session"]});
    let (status, body) = delete(json!({"auth": auth("wrong")})).await;
    assert_eq!((status.as_u16(), body["errcode"].as_str()), (401, Some("M_FORBIDDEN")));
    assert_eq!(delete(json!({"auth": auth(&alice.password)})).await.0, 200);
    assert_error(
        &server.get("/_matrix/client/v3/account/whoami", phone["access_token"].as_str()).await,
        401,
        "M_UNKNOWN_TOKEN",
    );
    assert_error(&delete(json!({})).await, 404, "M_NOT_FOUND");

    // Bulk delete; unknown IDs are skipped.
    let (_, a) = server.login("alice", &alice.password, json!({"device_id": "A"})).await;
    server.login("alice", &alice.password, json!({"device_id": "B"})).await;
    let (status, challenge) = server
        .post("/_matrix/client/v3/delete_devices", Some(&alice.token), json!({"devices": ["A", "B", "NOPE"]}))
        .await;
    assert_eq!(status, 401);
    let auth = json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"}, "password": alice.password, "session": challenge["session"]});
    let (status, _) = server
        .post(
            "/_matrix/client/v3/delete_devices",
            Some(&alice.token),
            json!({"devices": ["A", "B", "NOPE"], "auth": auth}),
        )
        .await;
    assert_eq!(status, 200);
    assert_error(
        &server.get("/_matrix/client/v3/account/whoami", a["access_token"].as_str()).await,
        401,
        "M_UNKNOWN_TOKEN",
    );
    let (_, list) = server.get("/_matrix/client/v3/devices", Some(&alice.token)).await;
    assert_eq!(list["devices"].as_array().unwrap().len(), 1);
}

async fn profiles(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let (status, profile) = server.get("/_matrix/client/v3/profile/@alice:localhost", None).await;
    assert_eq!(status, 200);
    assert_eq!(profile, json!({"displayname": "alice"}));

    let name_url = "/_matrix/client/v3/profile/@alice:localhost/displayname";
    assert_eq!(server.put(name_url, Some(&alice.token), json!({"displayname": "Alice 🌻"})).await.0, 200);
    assert_eq!(server.get(name_url, None).await.1, json!({"displayname": "Alice 🌻"}));
    assert_error(&server.put(name_url, Some(&bob.token), json!({"displayname": "Mallory"})).await, 403, "M_FORBIDDEN");
    assert_error(&server.put(name_url, None, json!({"displayname": "Mallory"})).await, 401, "M_MISSING_TOKEN");
    assert_error(
        &server.put(name_url, Some(&alice.token), json!({"displayname": "x".repeat(300)})).await,
        400,
        "M_INVALID_PARAM",
    );

    let avatar_url = "/_matrix/client/v3/profile/@alice:localhost/avatar_url";
    assert_eq!(
        server.put(avatar_url, Some(&alice.token), json!({"avatar_url": "mxc://localhost/abcdef"})).await.0,
        200
    );
    assert_eq!(server.get(avatar_url, None).await.1["avatar_url"], "mxc://localhost/abcdef");
    assert_error(
        &server.put(avatar_url, Some(&alice.token), json!({"avatar_url": "https://evil.example/x.png"})).await,
        400,
        "M_INVALID_PARAM",
    );
    let (_, profile) = server.get("/_matrix/client/v3/profile/@alice:localhost", Some(&bob.token)).await;
    assert_eq!(profile, json!({"displayname": "Alice 🌻", "avatar_url": "mxc://localhost/abcdef"}));
    // Clearing.
    assert_eq!(server.put(name_url, Some(&alice.token), json!({"displayname": null})).await.0, 200);
    assert_eq!(
        server.get("/_matrix/client/v3/profile/@alice:localhost", None).await.1,
        json!({"avatar_url": "mxc://localhost/abcdef"})
    );

    assert_error(&server.get("/_matrix/client/v3/profile/@nobody:localhost", None).await, 404, "M_NOT_FOUND");
    assert_error(&server.get("/_matrix/client/v3/profile/@someone:elsewhere.org", None).await, 404, "M_NOT_FOUND");
}
