//! Errors for bad requests, CORS, OPTIONS, rate limits and access-token transport.

use crate::{backend_tests, common::*};
use reqwest::Method;
use serde_json::json;

backend_tests!(
    unknown_endpoints_and_methods,
    malformed_bodies,
    cors_and_options,
    access_token_transport,
    rate_limits_on_login_and_registration,
);

async fn unknown_endpoints_and_methods(backend: Backend) {
    let server = TestServer::start(backend).await;
    assert_error(&server.get("/_matrix/client/v3/no/such/thing", None).await, 404, "M_UNRECOGNIZED");
    assert_error(&server.get("/", None).await, 404, "M_UNRECOGNIZED");
    assert_error(&server.request(Method::DELETE, "/_matrix/client/v3/login", None, None).await, 405, "M_UNRECOGNIZED");
    assert_error(&server.put("/_matrix/client/versions", None, json!({})).await, 405, "M_UNRECOGNIZED");
}

async fn malformed_bodies(backend: Backend) {
    let server = TestServer::start_with(backend, |c| c.limits.max_json_body_size = 4096).await;
    let send = |body: &'static str| {
        server
            .http
            .post(format!("{}/_matrix/client/v3/login", server.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let response = send("{not json").await.unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(response.json::<serde_json::Value>().await.unwrap()["errcode"], "M_NOT_JSON");
    let response = send(r#"{"type": "m.login.password", "password": 5}"#).await.unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(response.json::<serde_json::Value>().await.unwrap()["errcode"], "M_BAD_JSON");
    let big = json!({"type": "m.login.password", "user": "a", "password": "x".repeat(5000)});
    assert_error(&server.post("/_matrix/client/v3/login", None, big).await, 413, "M_TOO_LARGE");
    // A malformed path parameter is a 400, never a 500.
    assert_error(&server.get("/_matrix/client/v3/profile/not-a-user-id", None).await, 400, "M_INVALID_PARAM");
}

async fn cors_and_options(backend: Backend) {
    let server = TestServer::start(backend).await;
    let response = server
        .http
        .request(Method::OPTIONS, format!("{}/_matrix/client/v3/login", server.base))
        .header("origin", "https://app.element.io")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization, content-type")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers();
    assert_eq!(headers["access-control-allow-origin"], "*");
    let methods = headers["access-control-allow-methods"].to_str().unwrap().to_owned();
    for m in ["GET", "POST", "PUT", "DELETE", "OPTIONS"] {
        assert!(methods.contains(m), "{methods}");
    }
    let allowed = headers["access-control-allow-headers"].to_str().unwrap().to_lowercase();
    for h in ["x-requested-with", "content-type", "authorization"] {
        assert!(allowed.contains(h), "{allowed}");
    }
    // A bare OPTIONS on any path, even an unknown one, succeeds.
    let response = server.raw(Method::OPTIONS, "/_matrix/client/v3/whatever", None, None).await;
    assert_eq!(response.status(), 200);
    // Ordinary responses, errors included, carry the origin header.
    let response = server
        .http
        .get(format!("{}/_matrix/client/v3/nothing", server.base))
        .header("origin", "https://app.element.io")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(response.headers()["access-control-allow-origin"], "*");
}

async fn access_token_transport(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    let whoami = "/_matrix/client/v3/account/whoami";
    assert_error(&server.get(whoami, None).await, 401, "M_MISSING_TOKEN");
    assert_error(&server.get(whoami, Some("mya_nonsense")).await, 401, "M_UNKNOWN_TOKEN");
    let response =
        server.http.get(format!("{}{whoami}", server.base)).header("authorization", "Basic abc").send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.json::<serde_json::Value>().await.unwrap()["errcode"], "M_MISSING_TOKEN");
    // Deprecated in v1.11 but still accepted by default.
    let (status, body) = server.get(&format!("{whoami}?access_token={}", alice.token), None).await;
    assert_eq!((status.as_u16(), body["user_id"].as_str()), (200, Some(alice.user_id.as_str())));
    // The header wins over the query string.
    let (status, _) = server.get(&format!("{whoami}?access_token=garbage"), Some(&alice.token)).await;
    assert_eq!(status, 200);
    let db = server.stop().await;
    let mut config = test_config(&db);
    config.auth.allow_query_string_token = false;
    let server = TestServer::start_config(db, config).await;
    assert_error(&server.get(&format!("{whoami}?access_token={}", alice.token), None).await, 401, "M_MISSING_TOKEN");
    assert_eq!(server.get(whoami, Some(&alice.token)).await.0, 200);
}

async fn rate_limits_on_login_and_registration(backend: Backend) {
    let server = TestServer::start_with(backend, |c| {
        c.rate_limits.enabled = true;
        c.rate_limits.login = myelin_core::config::RateLimit { per_second: 0.1, burst: 2 };
        c.rate_limits.registration = myelin_core::config::RateLimit { per_second: 0.1, burst: 3 };
    })
    .await;
    server.register("alice").await;
    assert_eq!(server.login("alice", "wrong-password", json!({})).await.0, 403);
    assert_eq!(server.login("alice", "wrong-password", json!({})).await.0, 403);
    let response = server
        .http
        .post(format!("{}/_matrix/client/v3/login", server.base))
        .json(&json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"}, "password": "alice-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=11).contains(&retry_after), "{retry_after}");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["errcode"], "M_LIMIT_EXCEEDED");
    assert!(body["retry_after_ms"].as_u64().is_some(), "{body}");
    // Registration has a bucket of its own per IP: 1 used above, 2 left.
    server.register("bob").await;
    server.register("carol").await;
    let (status, body) = server
        .post("/_matrix/client/v3/register", None, json!({"username": "dave", "password": "dave-password"}))
        .await;
    assert_eq!((status.as_u16(), body["errcode"].as_str()), (429, Some("M_LIMIT_EXCEEDED")));
}
