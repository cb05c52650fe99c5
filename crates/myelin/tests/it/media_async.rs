//! Async uploads: `POST /_matrix/media/v1/create` then `PUT /_matrix/media/v3/upload/…`.

use crate::{backend_tests, common::*, media::download_url};
use reqwest::Method;
use std::time::{Duration, Instant};

backend_tests!(
    create_then_upload,
    waiting_download_is_released_by_the_upload,
    concurrent_puts_one_wins,
    pending_limit,
    in_flight_requests_finish_on_shutdown,
);

async fn create(server: &TestServer, token: &str) -> String {
    let (status, body) = server.post("/_matrix/media/v1/create", Some(token), serde_json::json!({})).await;
    assert_eq!(status, 200, "{body}");
    let expires = body["unused_expires_at"].as_i64().expect("unused_expires_at");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    assert!((expires - now - 24 * 3600 * 1000).abs() < 60_000, "24 h from now: {expires}");
    body["content_uri"].as_str().unwrap().strip_prefix("mxc://localhost/").unwrap().to_owned()
}

fn put_url(server: &TestServer, media_id: &str) -> String {
    format!("{}/_matrix/media/v3/upload/localhost/{media_id}?filename=late.txt", server.base)
}

async fn create_then_upload(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    assert_error(&server.post("/_matrix/media/v1/create", None, serde_json::json!({})).await, 401, "M_MISSING_TOKEN");
    let id = create(&server, &alice.token).await;
    // Not there yet: a short wait ends in 504.
    let (status, body) = server.get(&format!("{}?timeout_ms=100", download_url(&id)), Some(&alice.token)).await;
    assert_eq!((status.as_u16(), body["errcode"].as_str()), (504, Some("M_NOT_YET_UPLOADED")), "{body}");

    let put = |token: &str, media_id: &str, bytes: &'static [u8]| {
        server
            .http
            .put(put_url(&server, media_id))
            .bearer_auth(token)
            .header("content-type", "text/plain")
            .body(bytes)
            .send()
    };
    let response = put(&bob.token, &id, b"mallory").await.unwrap();
    assert_eq!(response.status(), 403);
    let response = put(&alice.token, &id, b"hello later").await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<serde_json::Value>().await.unwrap(), serde_json::json!({}));
    let response = put(&alice.token, &id, b"again").await.unwrap();
    assert_eq!(response.status(), 409);
    assert_eq!(response.json::<serde_json::Value>().await.unwrap()["errcode"], "M_CANNOT_OVERWRITE_MEDIA");
    let response = put(&alice.token, "NoSuchPendingMediaIdHere", b"x").await.unwrap();
    assert_eq!(response.status(), 404);

    let response = server.raw(Method::GET, &download_url(&id), Some(&bob.token), None).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-disposition"], "inline; filename=\"late.txt\"");
    assert_eq!(response.bytes().await.unwrap().as_ref(), b"hello later");
}

async fn waiting_download_is_released_by_the_upload(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    let id = create(&server, &alice.token).await;
    let url = format!("{}{}?timeout_ms=20000", server.base, download_url(&id));
    let waiting = tokio::spawn(server.http.get(url).bearer_auth(alice.token.clone()).send());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "the download waits for the upload");
    let uploaded_at = Instant::now();
    let response =
        server.http.put(put_url(&server, &id)).bearer_auth(&alice.token).body("finally").send().await.unwrap();
    assert_eq!(response.status(), 200);
    let download = waiting.await.unwrap().unwrap();
    let released_after = uploaded_at.elapsed();
    assert_eq!(download.status(), 200);
    assert_eq!(download.bytes().await.unwrap().as_ref(), b"finally");
    // Woken by the upload, not by a poll or the timeout.
    assert!(released_after < Duration::from_millis(400), "{released_after:?}");
}

async fn concurrent_puts_one_wins(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    for _ in 0..3 {
        let id = create(&server, &alice.token).await;
        let put =
            |bytes: &'static str| server.http.put(put_url(&server, &id)).bearer_auth(&alice.token).body(bytes).send();
        let (a, b) = tokio::join!(put("first contender"), put("second contender"));
        let mut statuses = [a.unwrap().status().as_u16(), b.unwrap().status().as_u16()];
        statuses.sort();
        assert_eq!(statuses, [200, 409]);
        let body = server.raw(Method::GET, &download_url(&id), Some(&alice.token), None).await.bytes().await.unwrap();
        assert!(body.as_ref() == b"first contender" || body.as_ref() == b"second contender");
    }
}

async fn pending_limit(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    for _ in 0..5 {
        create(&server, &alice.token).await;
    }
    let (status, body) = server.post("/_matrix/media/v1/create", Some(&alice.token), serde_json::json!({})).await;
    assert_eq!((status.as_u16(), body["errcode"].as_str()), (429, Some("M_LIMIT_EXCEEDED")), "{body}");
    // Another user is not affected.
    let bob = server.register("bob").await;
    create(&server, &bob.token).await;
}

/// Graceful shutdown: a request still running when the server is told to stop gets its
/// answer; only then does the server close its connections and the database.
async fn in_flight_requests_finish_on_shutdown(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    let id = create(&server, &alice.token).await;
    let url = format!("{}{}?timeout_ms=1500", server.base, download_url(&id));
    let waiting = tokio::spawn(server.http.get(url).bearer_auth(alice.token.clone()).send());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopping = Instant::now();
    let _db = server.stop().await;
    assert!(stopping.elapsed() >= Duration::from_millis(800), "stop waited for the request");
    let response = waiting.await.unwrap().expect("an answer, not a dropped connection");
    assert_eq!(response.status(), 504);
}
