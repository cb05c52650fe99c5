//! `/login`, `/refresh`, `/logout`, `/logout/all`, `/account/whoami`.

use crate::{backend_tests, common::*};
use serde_json::json;
use std::time::Duration;

backend_tests!(
    password_login,
    login_errors,
    device_id_reuse,
    logout_and_logout_all,
    refresh_tokens,
    expired_token_is_soft_logout
);

const WHOAMI: &str = "/_matrix/client/v3/account/whoami";

async fn password_login(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    let (status, body) = server.get("/_matrix/client/v3/login", None).await;
    assert_eq!(status, 200);
    assert_eq!(body["flows"], json!([{"type": "m.login.password"}]));

    let (status, body) = server.login("alice", &alice.password, json!({"initial_device_display_name": "Phone"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user_id"], "@alice:localhost");
    assert_ne!(body["device_id"], alice.device_id.as_str());
    let token = body["access_token"].as_str().unwrap();
    let (_, me) = server.get(WHOAMI, Some(token)).await;
    assert_eq!((&me["user_id"], &me["device_id"]), (&body["user_id"], &body["device_id"]));
    assert!(me.get("is_guest").is_none_or(|g| g == false), "{me}");
    // No refresh token unless asked for, and then no expiry.
    assert!(body.get("refresh_token").is_none() && body.get("expires_in_ms").is_none(), "{body}");
    // A full user ID, any case, and the legacy `user` field work too.
    assert_eq!(server.login("@ALICE:localhost", &alice.password, json!({})).await.0, 200);
    let (status, _) = server
        .post(
            "/_matrix/client/v3/login",
            None,
            json!({"type": "m.login.password", "user": "alice", "password": alice.password}),
        )
        .await;
    assert_eq!(status, 200);
    // The r0 path is still served.
    let (status, _) = server
        .post(
            "/_matrix/client/r0/login",
            None,
            json!({"type": "m.login.password", "user": "alice", "password": alice.password}),
        )
        .await;
    assert_eq!(status, 200);
}

async fn login_errors(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    assert_error(&server.login("alice", "wrong password", json!({})).await, 403, "M_FORBIDDEN");
    assert_error(&server.login("nobody", "wrong password", json!({})).await, 403, "M_FORBIDDEN");
    assert_error(&server.login("@alice:elsewhere.org", &alice.password, json!({})).await, 403, "M_FORBIDDEN");
    // v1.11: a type that GET /login does not list is a 400.
    for kind in ["m.login.token", "m.login.sso", "org.example.custom"] {
        let result = server.post("/_matrix/client/v3/login", None, json!({"type": kind, "token": "x"})).await;
        assert_error(&result, 400, "M_UNKNOWN");
    }
    let third_party = json!({"type": "m.login.password", "identifier": {"type": "m.id.thirdparty", "medium": "email", "address": "a@b.c"}, "password": "x"});
    assert_error(&server.post("/_matrix/client/v3/login", None, third_party).await, 400, "M_UNKNOWN");
    assert_error(
        &server.post("/_matrix/client/v3/login", None, json!({"type": "m.login.password", "password": "x"})).await,
        400,
        "M_MISSING_PARAM",
    );
}

async fn device_id_reuse(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    let (_, first) = server
        .login("alice", &alice.password, json!({"device_id": "KITCHEN", "initial_device_display_name": "Kitchen"}))
        .await;
    assert_eq!(first["device_id"], "KITCHEN");
    let (_, second) = server
        .login("alice", &alice.password, json!({"device_id": "KITCHEN", "initial_device_display_name": "Other"}))
        .await;
    assert_eq!(second["device_id"], "KITCHEN");
    // The device is the same; its old token is gone.
    assert_error(&server.get(WHOAMI, first["access_token"].as_str()).await, 401, "M_UNKNOWN_TOKEN");
    let (_, me) = server.get(WHOAMI, second["access_token"].as_str()).await;
    assert_eq!(me["device_id"], "KITCHEN");
    let (_, devices) = server.get("/_matrix/client/v3/devices", Some(&alice.token)).await;
    let kitchen: Vec<_> =
        devices["devices"].as_array().unwrap().iter().filter(|d| d["device_id"] == "KITCHEN").collect();
    assert_eq!(kitchen.len(), 1);
    assert_eq!(kitchen[0]["display_name"], "Kitchen");
}

async fn logout_and_logout_all(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    let (_, second) = server.login("alice", &alice.password, json!({})).await;
    let second_token = second["access_token"].as_str().unwrap();
    let (_, third) = server.login("alice", &alice.password, json!({})).await;
    let third_token = third["access_token"].as_str().unwrap();

    assert_eq!(server.post("/_matrix/client/v3/logout", Some(second_token), json!({})).await.0, 200);
    assert_error(&server.get(WHOAMI, Some(second_token)).await, 401, "M_UNKNOWN_TOKEN");
    // The device went with the token.
    let (_, devices) = server.get("/_matrix/client/v3/devices", Some(&alice.token)).await;
    assert_eq!(devices["devices"].as_array().unwrap().len(), 2);
    assert_error(&server.post("/_matrix/client/v3/logout", None, json!({})).await, 401, "M_MISSING_TOKEN");

    assert_eq!(server.post("/_matrix/client/v3/logout/all", Some(third_token), json!({})).await.0, 200);
    assert_error(&server.get(WHOAMI, Some(third_token)).await, 401, "M_UNKNOWN_TOKEN");
    assert_error(&server.get(WHOAMI, Some(&alice.token)).await, 401, "M_UNKNOWN_TOKEN");
    assert_eq!(server.login("alice", &alice.password, json!({})).await.0, 200);
}

async fn refresh_tokens(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    let (status, login) = server.login("alice", &alice.password, json!({"refresh_token": true})).await;
    assert_eq!(status, 200);
    assert_eq!(login["expires_in_ms"], 300_000);
    let first_refresh = login["refresh_token"].as_str().expect("refresh token").to_owned();

    let refresh = |token: String| {
        let server = &server;
        async move { server.post("/_matrix/client/v3/refresh", None, json!({"refresh_token": token})).await }
    };
    let (status, renewed) = refresh(first_refresh.clone()).await;
    assert_eq!(status, 200, "{renewed}");
    assert_eq!(renewed["expires_in_ms"], 300_000);
    let new_access = renewed["access_token"].as_str().unwrap();
    let new_refresh = renewed["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(new_refresh, first_refresh);
    // Until the new tokens are used, the old refresh token still works (a lost answer).
    let (status, again) = refresh(first_refresh.clone()).await;
    assert_eq!(status, 200);
    // That retry replaced the previous successor.
    assert_error(&server.get(WHOAMI, Some(new_access)).await, 401, "M_UNKNOWN_TOKEN");
    let (_, me) = server.get(WHOAMI, again["access_token"].as_str()).await;
    assert_eq!((&me["user_id"], &me["device_id"]), (&login["user_id"], &login["device_id"]));
    // Using the new access token retired the old refresh token.
    assert_error(&refresh(first_refresh).await, 401, "M_UNKNOWN_TOKEN");
    assert_eq!(refresh(again["refresh_token"].as_str().unwrap().to_owned()).await.0, 200);
    assert_error(&refresh("myr_made_up".into()).await, 401, "M_UNKNOWN_TOKEN");
    // The v3 registration can ask for one too.
    let (status, body) = server
        .post("/_matrix/client/v3/register", None, json!({"username": "bob", "password": "correct horse", "refresh_token": true, "auth": {"type": "m.login.dummy"}}))
        .await;
    assert_eq!(status, 200);
    assert!(body["refresh_token"].is_string() && body["expires_in_ms"].is_number(), "{body}");
}

async fn expired_token_is_soft_logout(backend: Backend) {
    let server = TestServer::start_with(backend, |c| c.auth.refreshable_access_token_lifetime_secs = 1).await;
    let alice = server.register("alice").await;
    let (_, login) = server.login("alice", &alice.password, json!({"refresh_token": true})).await;
    let token = login["access_token"].as_str().unwrap();
    assert_eq!(server.get(WHOAMI, Some(token)).await.0, 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let expired = server.get(WHOAMI, Some(token)).await;
    assert_error(&expired, 401, "M_UNKNOWN_TOKEN");
    assert_eq!(expired.1["soft_logout"], true);
    let (status, renewed) =
        server.post("/_matrix/client/v3/refresh", None, json!({"refresh_token": login["refresh_token"]})).await;
    assert_eq!(status, 200);
    assert_eq!(server.get(WHOAMI, renewed["access_token"].as_str()).await.0, 200);
    // A revoked token is not a soft logout.
    let revoked = server.get(WHOAMI, Some("mya_never_issued")).await;
    assert!(revoked.1.get("soft_logout").is_none_or(|v| v == false), "{}", revoked.1);
}
