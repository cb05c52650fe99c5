//! `POST /register` with UIA (dummy, registration token, terms), `/register/available`,
//! registration token validity.

use crate::{backend_tests, common::*};
use serde_json::json;

backend_tests!(
    dummy_flow_in_two_steps,
    username_rules,
    registration_disabled,
    registration_token_flow,
    terms_flow,
    uia_session_rules,
);

const REGISTER: &str = "/_matrix/client/v3/register";

async fn dummy_flow_in_two_steps(backend: Backend) {
    let server = TestServer::start(backend).await;
    let request = json!({"username": "alice", "password": "correct horse", "initial_device_display_name": "Laptop"});
    let (status, challenge) = server.post(REGISTER, None, request.clone()).await;
    assert_eq!(status, 401, "{challenge}");
    assert_eq!(challenge["flows"], json!([{"stages": ["m.login.dummy"]}]));
    let session = challenge["session"].as_str().expect("a session");
    let mut second = request;
    second["auth"] = json!({"type": "m.login.dummy", "session": session});
    let (status, body) = server.post(REGISTER, None, second).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user_id"], "@alice:localhost");
    let token = body["access_token"].as_str().unwrap();
    let (_, whoami) = server.get("/_matrix/client/v3/account/whoami", Some(token)).await;
    assert_eq!(whoami["user_id"], "@alice:localhost");
    assert_eq!(whoami["device_id"], body["device_id"]);
    let (_, devices) = server.get("/_matrix/client/v3/devices", Some(token)).await;
    assert_eq!(devices["devices"][0]["display_name"], "Laptop");
    // The session is finished: it cannot be replayed.
    let (status, replay) = server
        .post(REGISTER, None, json!({"username": "bob", "password": "correct horse", "auth": {"type": "m.login.dummy", "session": session}}))
        .await;
    assert_eq!((status.as_u16(), replay["errcode"].as_str()), (400, Some("M_UNKNOWN")));
    // inhibit_login: the account, no session.
    let (status, body) = server
        .post(REGISTER, None, json!({"username": "carol", "password": "correct horse", "inhibit_login": true, "auth": {"type": "m.login.dummy"}}))
        .await;
    assert_eq!(status, 200);
    assert!(body.get("access_token").is_none() && body["user_id"] == "@carol:localhost", "{body}");
    // No username: the server picks one.
    let (status, body) =
        server.post(REGISTER, None, json!({"password": "correct horse", "auth": {"type": "m.login.dummy"}})).await;
    assert_eq!(status, 200);
    assert!(body["user_id"].as_str().unwrap().ends_with(":localhost"));
}

async fn username_rules(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.register("alice").await;
    let register = |username: String| {
        let server = &server;
        async move {
            server
                .post(
                    REGISTER,
                    None,
                    json!({"username": username, "password": "correct horse", "auth": {"type": "m.login.dummy"}}),
                )
                .await
        }
    };
    assert_error(&register("alice".into()).await, 400, "M_USER_IN_USE");
    for bad in ["Alice", "al ice", "@alice:localhost", "ali:ce", "", "é"] {
        assert_error(&register(bad.into()).await, 400, "M_INVALID_USERNAME");
    }
    // 255 bytes is the limit for the whole user ID (v1.11 counts bytes): "@" + 244 + ":localhost".
    assert_eq!(register("a".repeat(244)).await.0, 200);
    assert_error(&register("b".repeat(245)).await, 400, "M_INVALID_USERNAME");
    assert_error(
        &server
            .post(REGISTER, None, json!({"username": "dave", "password": "short", "auth": {"type": "m.login.dummy"}}))
            .await,
        400,
        "M_WEAK_PASSWORD",
    );
    assert_error(&server.post(REGISTER, None, json!({"username": "dave"})).await, 400, "M_MISSING_PARAM");
    assert_error(&server.post(&format!("{REGISTER}?kind=guest"), None, json!({})).await, 403, "M_FORBIDDEN");

    let available = "/_matrix/client/v3/register/available?username=";
    let (status, body) = server.get(&format!("{available}bob"), None).await;
    assert_eq!((status.as_u16(), &body["available"]), (200, &json!(true)));
    assert_error(&server.get(&format!("{available}alice"), None).await, 400, "M_USER_IN_USE");
    assert_error(&server.get(&format!("{available}Bob"), None).await, 400, "M_INVALID_USERNAME");
}

async fn registration_disabled(backend: Backend) {
    let server = TestServer::start_with(backend, |c| c.registration.enabled = false).await;
    assert_error(
        &server
            .post(
                REGISTER,
                None,
                json!({"username": "a", "password": "correct horse", "auth": {"type": "m.login.dummy"}}),
            )
            .await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(&server.get("/_matrix/client/v3/register/available?username=a", None).await, 403, "M_FORBIDDEN");
}

async fn registration_token_flow(backend: Backend) {
    let server = TestServer::start_with(backend, |c| {
        c.registration.require_token = true;
        c.registration.tokens = vec!["from-config".into()];
    })
    .await;
    let once = server.services().accounts.create_registration_token(Some("once".into()), Some(1), None).await.unwrap();
    assert_eq!(once.token, "once");
    let validity = "/_matrix/client/v1/register/m.login.registration_token/validity?token=";
    for (token, valid) in [("once", true), ("from-config", true), ("nope", false)] {
        assert_eq!(server.get(&format!("{validity}{token}"), None).await.1["valid"], valid, "{token}");
    }
    let (status, challenge) =
        server.post(REGISTER, None, json!({"username": "alice", "password": "correct horse"})).await;
    assert_eq!(status, 401);
    assert_eq!(challenge["flows"], json!([{"stages": ["m.login.registration_token"]}]));
    let session = challenge["session"].as_str().unwrap();
    let attempt = |token: &str, session: &str| {
        json!({"username": "alice", "password": "correct horse",
               "auth": {"type": "m.login.registration_token", "token": token, "session": session}})
    };
    let (status, body) = server.post(REGISTER, None, attempt("wrong", session)).await;
    assert_eq!((status.as_u16(), body["errcode"].as_str()), (401, Some("M_UNAUTHORIZED")), "{body}");
    assert_eq!(body["session"], session);
    // The dummy stage is no way around a required token.
    let (status, body) =
        server.post(REGISTER, None, json!({"username": "alice", "password": "correct horse", "auth": {"type": "m.login.dummy", "session": session}})).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = server.post(REGISTER, None, attempt("once", session)).await;
    assert_eq!(status, 200, "{body}");
    // Used up now.
    assert_eq!(server.get(&format!("{validity}once"), None).await.1["valid"], false);
    let (status, challenge) =
        server.post(REGISTER, None, json!({"username": "bob", "password": "correct horse"})).await;
    assert_eq!(status, 401);
    let bob = |token: &str| {
        json!({"username": "bob", "password": "correct horse",
               "auth": {"type": "m.login.registration_token", "token": token, "session": challenge["session"]}})
    };
    assert_eq!(server.post(REGISTER, None, bob("once")).await.0, 401);
    assert_eq!(server.post(REGISTER, None, bob("from-config")).await.0, 200);
}

async fn terms_flow(backend: Backend) {
    let server = TestServer::start_with(backend, |c| {
        c.registration.terms = vec![myelin_core::config::TermsPolicy {
            id: "privacy_policy".into(),
            version: "1.0".into(),
            name: "Privacy Policy".into(),
            url: "https://example.org/privacy-1.0.html".into(),
            lang: "en".into(),
        }];
    })
    .await;
    let (status, challenge) =
        server.post(REGISTER, None, json!({"username": "alice", "password": "correct horse"})).await;
    assert_eq!(status, 401);
    assert_eq!(challenge["flows"], json!([{"stages": ["m.login.terms"]}]));
    assert_eq!(
        challenge["params"]["m.login.terms"]["policies"]["privacy_policy"],
        json!({"version": "1.0", "en": {"name": "Privacy Policy", "url": "https://example.org/privacy-1.0.html"}})
    );
    // Without accepting the terms there is no account.
    let (status, _) = server
        .post(REGISTER, None, json!({"username": "alice", "password": "correct horse", "auth": {"type": "m.login.dummy", "session": challenge["session"]}}))
        .await;
    assert_eq!(status, 401);
    let (status, body) = server
        .post(REGISTER, None, json!({"username": "alice", "password": "correct horse", "auth": {"type": "m.login.terms", "session": challenge["session"]}}))
        .await;
    assert_eq!(status, 200, "{body}");
}

async fn uia_session_rules(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (status, body) = server
        .post(REGISTER, None, json!({"username": "alice", "password": "correct horse", "auth": {"type": "m.login.dummy", "session": "made-up"}}))
        .await;
    assert_eq!((status.as_u16(), body["errcode"].as_str()), (400, Some("M_UNKNOWN")));
    // A stage that no flow has is refused inside the UIA answer.
    let (status, body) = server
        .post(REGISTER, None, json!({"username": "alice", "password": "correct horse", "auth": {"type": "m.login.recaptcha", "response": "x"}}))
        .await;
    assert_eq!(status, 401);
    assert!(body["errcode"].is_string() && body["flows"].is_array(), "{body}");
}
