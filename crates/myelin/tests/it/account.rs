//! `/account/password` and `/account/deactivate`, both behind password UIA, with and without
//! an access token (v1.11).

use crate::{backend_tests, common::*};
use serde_json::{Value, json};

backend_tests!(change_password, change_password_without_token, deactivate);

const PASSWORD: &str = "/_matrix/client/v3/account/password";

fn password_auth(user: &str, password: &str, session: &Value) -> Value {
    json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user}, "password": password, "session": session})
}

async fn change_password(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let (_, other_device) = server.login("alice", &alice.password, json!({})).await;

    let (status, challenge) = server.post(PASSWORD, Some(&alice.token), json!({"new_password": "new secret 1"})).await;
    assert_eq!(status, 401);
    assert_eq!(challenge["flows"], json!([{"stages": ["m.login.password"]}]));
    let session = &challenge["session"];
    // Wrong password: still 401, with the error inside.
    let (status, body) = server
        .post(
            PASSWORD,
            Some(&alice.token),
            json!({"new_password": "new secret 1", "auth": password_auth("alice", "nope", session)}),
        )
        .await;
    assert_eq!((status.as_u16(), body["errcode"].as_str()), (401, Some("M_FORBIDDEN")), "{body}");
    // Someone else's password does not do either.
    let (status, _) = server
        .post(
            PASSWORD,
            Some(&alice.token),
            json!({"new_password": "new secret 1", "auth": password_auth("bob", &bob.password, session)}),
        )
        .await;
    assert_eq!(status, 401);
    assert_error(
        &server
            .post(
                PASSWORD,
                Some(&alice.token),
                json!({"new_password": "short", "auth": password_auth("alice", &alice.password, session)}),
            )
            .await,
        400,
        "M_WEAK_PASSWORD",
    );
    let (status, body) = server
        .post(
            PASSWORD,
            Some(&alice.token),
            json!({"new_password": "new secret 1", "auth": password_auth("alice", &alice.password, session)}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_error(&server.login("alice", &alice.password, json!({})).await, 403, "M_FORBIDDEN");
    assert_eq!(server.login("alice", "new secret 1", json!({})).await.0, 200);
    // logout_devices defaults to true: the other device is gone, this one stays.
    assert_eq!(server.get("/_matrix/client/v3/account/whoami", Some(&alice.token)).await.0, 200);
    assert_error(
        &server.get("/_matrix/client/v3/account/whoami", other_device["access_token"].as_str()).await,
        401,
        "M_UNKNOWN_TOKEN",
    );
    // With logout_devices = false the others stay.
    let (_, kept) = server.login("alice", "new secret 1", json!({})).await;
    let (status, _) = server
        .post(
            PASSWORD,
            Some(&alice.token),
            json!({"new_password": "new secret 2", "logout_devices": false, "auth": password_auth("alice", "new secret 1", &Value::Null)}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(server.get("/_matrix/client/v3/account/whoami", kept["access_token"].as_str()).await.0, 200);
}

async fn change_password_without_token(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    let (status, challenge) = server.post(PASSWORD, None, json!({"new_password": "brand new pw"})).await;
    assert_eq!(status, 401);
    let (status, body) = server
        .post(PASSWORD, None, json!({"new_password": "brand new pw", "auth": password_auth("@alice:localhost", &alice.password, &challenge["session"])}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(server.login("alice", "brand new pw", json!({})).await.0, 200);
    // Every session of the user ended, as no device made the request.
    assert_error(&server.get("/_matrix/client/v3/account/whoami", Some(&alice.token)).await, 401, "M_UNKNOWN_TOKEN");
}

async fn deactivate(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let url = "/_matrix/client/v3/account/deactivate";
    let (status, challenge) = server.post(url, Some(&alice.token), json!({})).await;
    assert_eq!(status, 401);
    let (status, body) = server
        .post(url, Some(&alice.token), json!({"auth": password_auth("alice", &alice.password, &challenge["session"])}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id_server_unbind_result"], "no-support");
    assert_error(&server.get("/_matrix/client/v3/account/whoami", Some(&alice.token)).await, 401, "M_UNKNOWN_TOKEN");
    assert_error(&server.login("alice", &alice.password, json!({})).await, 403, "M_USER_DEACTIVATED");
    // The user ID is never given out again.
    assert_error(
        &server
            .post(
                "/_matrix/client/v3/register",
                None,
                json!({"username": "alice", "password": "correct horse", "auth": {"type": "m.login.dummy"}}),
            )
            .await,
        400,
        "M_USER_IN_USE",
    );
    assert_error(&server.get("/_matrix/client/v3/profile/@alice:localhost", None).await, 404, "M_NOT_FOUND");
    // Without an access token, the password says who is leaving (v1.11).
    let (status, _) = server.post(url, None, json!({"auth": password_auth("bob", &bob.password, &Value::Null)})).await;
    assert_eq!(status, 200);
    assert_error(&server.login("bob", &bob.password, json!({})).await, 403, "M_USER_DEACTIVATED");
}
