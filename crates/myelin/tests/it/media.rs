//! The content repository: upload, authenticated and legacy download, headers, ranges,
//! limits, deduplication and the v1.11 freeze.

use crate::{backend_tests, common::*};
use myelin_core::config::FreezeSetting;
use reqwest::{Method, header};

backend_tests!(
    upload_and_download,
    response_headers,
    limits_and_quota,
    identical_uploads_are_stored_once,
    freeze,
    malformed_paths,
    content_lost_to_a_power_cut
);

/// Uploads `bytes`; returns the media ID of the mxc:// URI.
pub async fn upload(
    server: &TestServer,
    token: &str,
    bytes: Vec<u8>,
    content_type: Option<&str>,
    filename: Option<&str>,
) -> String {
    let mut url = format!("{}/_matrix/media/v3/upload", server.base);
    if let Some(name) = filename {
        url.push_str(&format!("?filename={}", name.replace(' ', "%20")));
    }
    let mut request = server.http.post(url).bearer_auth(token).body(bytes);
    if let Some(content_type) = content_type {
        request = request.header(header::CONTENT_TYPE, content_type);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    let uri = body["content_uri"].as_str().unwrap();
    let expected = format!("mxc://{}/", server.services().config.server_name);
    let media_id = uri.strip_prefix(&expected).unwrap_or_else(|| panic!("{uri}"));
    assert!(media_id.len() >= 24 && media_id.chars().all(|c| c.is_ascii_alphanumeric()), "{media_id}");
    media_id.to_owned()
}

pub fn download_url(media_id: &str) -> String {
    format!("/_matrix/client/v1/media/download/localhost/{media_id}")
}

async fn upload_and_download(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    let bytes: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let id = upload(&server, &alice.token, bytes.clone(), Some("image/png"), Some("cat.png")).await;

    assert_error(&server.get(&download_url(&id), None).await, 401, "M_MISSING_TOKEN");
    assert_error(&server.get(&download_url(&id), Some("mya_unknown")).await, 401, "M_UNKNOWN_TOKEN");
    let response = server.raw(Method::GET, &download_url(&id), Some(&alice.token), None).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.unwrap().to_vec(), bytes);
    // Another user of the server may download it too.
    let bob = server.register("bob").await;
    let response = server.raw(Method::GET, &format!("{}/other.bin", download_url(&id)), Some(&bob.token), None).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()[header::CONTENT_DISPOSITION], "inline; filename=\"other.bin\"");
    assert_eq!(response.bytes().await.unwrap().len(), bytes.len());

    // Upload needs a token; config says how much may be uploaded.
    let response = server.http.post(format!("{}/_matrix/media/v3/upload", server.base)).body("x").send().await.unwrap();
    assert_eq!(response.status(), 401);
    for path in ["/_matrix/client/v1/media/config", "/_matrix/media/v3/config"] {
        assert_error(&server.get(path, None).await, 401, "M_MISSING_TOKEN");
        let (status, config) = server.get(path, Some(&alice.token)).await;
        assert_eq!((status.as_u16(), config["m.upload.size"].as_u64()), (200, Some(50 * 1024 * 1024)));
    }
    // Unknown media.
    assert_error(
        &server.get(&download_url("NoSuchMediaIdAtAllAnywhere"), Some(&alice.token)).await,
        404,
        "M_NOT_FOUND",
    );
}

async fn response_headers(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    let bytes: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
    let png = upload(&server, &alice.token, bytes.clone(), Some("image/png"), Some("cat.png")).await;
    let response = server.raw(Method::GET, &download_url(&png), Some(&alice.token), None).await;
    let h = response.headers().clone();
    assert_eq!(h[header::CONTENT_TYPE], "image/png");
    assert_eq!(h[header::CONTENT_LENGTH], "1000");
    assert_eq!(h[header::CONTENT_DISPOSITION], "inline; filename=\"cat.png\"");
    assert!(
        h[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .starts_with("sandbox; default-src 'none'; script-src 'none';")
    );
    assert_eq!(h["cross-origin-resource-policy"], "cross-origin");
    assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    let cache = h[header::CACHE_CONTROL].to_str().unwrap();
    assert!(cache.contains("private") && cache.contains("immutable"), "{cache}");
    let etag = h[header::ETAG].to_str().unwrap().to_owned();

    let revalidate = server
        .http
        .get(format!("{}{}", server.base, download_url(&png)))
        .bearer_auth(&alice.token)
        .header(header::IF_NONE_MATCH, &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(revalidate.status(), 304);
    assert!(revalidate.bytes().await.unwrap().is_empty());

    let head = server.raw(Method::HEAD, &download_url(&png), Some(&alice.token), None).await;
    assert_eq!(
        (head.status().as_u16(), &head.headers()[header::CONTENT_LENGTH]),
        (200, &header::HeaderValue::from(1000))
    );
    assert!(head.bytes().await.unwrap().is_empty());

    let ranged = |range: &'static str| {
        server
            .http
            .get(format!("{}{}", server.base, download_url(&png)))
            .bearer_auth(&alice.token)
            .header(header::RANGE, range)
            .send()
    };
    let part = ranged("bytes=100-199").await.unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(part.headers()[header::CONTENT_RANGE], "bytes 100-199/1000");
    assert_eq!(part.bytes().await.unwrap().to_vec(), bytes[100..200].to_vec());
    let tail = ranged("bytes=-10").await.unwrap();
    assert_eq!(tail.bytes().await.unwrap().to_vec(), bytes[990..].to_vec());
    let beyond = ranged("bytes=5000-").await.unwrap();
    assert_eq!(beyond.status(), 416);
    assert_eq!(beyond.headers()[header::CONTENT_RANGE], "bytes */1000");

    // Dangerous types are attachments; unknown types are octet streams; names are RFC 6266.
    let html =
        upload(&server, &alice.token, b"<script>alert(1)</script>".to_vec(), Some("text/html"), Some("x.html")).await;
    let response = server.raw(Method::GET, &download_url(&html), Some(&alice.token), None).await;
    assert_eq!(response.headers()[header::CONTENT_DISPOSITION], "attachment; filename=\"x.html\"");
    let svg = upload(&server, &alice.token, b"<svg/>".to_vec(), Some("image/svg+xml"), None).await;
    let response = server.raw(Method::GET, &download_url(&svg), Some(&alice.token), None).await;
    assert_eq!(response.headers()[header::CONTENT_DISPOSITION], "attachment");
    let plain = upload(&server, &alice.token, b"?".to_vec(), None, Some("résumé final.txt")).await;
    let response = server.raw(Method::GET, &download_url(&plain), Some(&alice.token), None).await;
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/octet-stream");
    assert_eq!(
        response.headers()[header::CONTENT_DISPOSITION],
        "attachment; filename*=utf-8''r%C3%A9sum%C3%A9%20final.txt"
    );
}

async fn limits_and_quota(backend: Backend) {
    let server = TestServer::start_with(backend, |c| {
        c.media.max_upload_size = 1000;
        c.media.max_bytes_per_user = Some(1500);
    })
    .await;
    let alice = server.register("alice").await;
    let post = |body: reqwest::Body| {
        server.http.post(format!("{}/_matrix/media/v3/upload", server.base)).bearer_auth(&alice.token).body(body).send()
    };
    // Declared too large: refused before reading.
    let response = post(vec![0u8; 1001].into()).await.unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(response.json::<serde_json::Value>().await.unwrap()["errcode"], "M_TOO_LARGE");
    // Streamed without a length: refused while streaming, nothing kept.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..20).map(|_| Ok(vec![1u8; 100])).collect();
    let response = post(reqwest::Body::wrap_stream(futures_util::stream::iter(chunks))).await.unwrap();
    assert_eq!(response.status(), 413);
    let media_dir = server.db.dir.path().join("data/media");
    assert_eq!(std::fs::read_dir(media_dir.join("tmp")).unwrap().count(), 0);
    // The 256 fan-out directories exist from the start; none holds a blob.
    let blobs: usize = std::fs::read_dir(media_dir.join("blobs"))
        .unwrap()
        .map(|dir| std::fs::read_dir(dir.unwrap().path()).unwrap().count())
        .sum();
    assert_eq!(blobs, 0);

    upload(&server, &alice.token, vec![2u8; 1000], None, None).await;
    let response = post(vec![3u8; 600].into()).await.unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(response.json::<serde_json::Value>().await.unwrap()["errcode"], "M_FORBIDDEN");
    upload(&server, &alice.token, vec![4u8; 500], None, None).await;
    // Another user has a quota of their own.
    let bob = server.register("bob").await;
    upload(&server, &bob.token, vec![5u8; 1000], None, None).await;
}

async fn identical_uploads_are_stored_once(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let a = upload(&server, &alice.token, b"same bytes".to_vec(), Some("text/plain"), Some("a.txt")).await;
    let b = upload(&server, &bob.token, b"same bytes".to_vec(), Some("application/pdf"), Some("b.pdf")).await;
    assert_ne!(a, b);
    let blobs = server.db.dir.path().join("data/media/blobs");
    let files: usize =
        std::fs::read_dir(&blobs).unwrap().map(|d| std::fs::read_dir(d.unwrap().path()).unwrap().count()).sum();
    assert_eq!(files, 1);
    // Each keeps its own metadata.
    let response = server.raw(Method::GET, &download_url(&b), Some(&alice.token), None).await;
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/pdf");
    assert_eq!(response.bytes().await.unwrap().as_ref(), b"same bytes");
}

/// Without `media.sync_uploads` (SQLite's default) a power cut can leave a row whose file never
/// reached the disk: such media answers 404, never a truncated body.
async fn content_lost_to_a_power_cut(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    let media_id = upload(&server, &alice.token, vec![7u8; 4096], Some("application/octet-stream"), None).await;
    let blobs = server.db.dir.path().join("data/media/blobs");
    let file = std::fs::read_dir(&blobs)
        .unwrap()
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
        .map(|f| f.unwrap().path())
        .next()
        .unwrap();
    std::fs::OpenOptions::new().write(true).open(&file).unwrap().set_len(100).unwrap();
    let (status, body) = server.get(&download_url(&media_id), Some(&alice.token)).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["errcode"], "M_NOT_FOUND");
}

fn legacy_paths(media_id: &str) -> Vec<String> {
    ["r0", "v1", "v3"]
        .iter()
        .flat_map(|v| {
            [
                format!("/_matrix/media/{v}/download/localhost/{media_id}"),
                format!("/_matrix/media/{v}/download/localhost/{media_id}/name.bin"),
            ]
        })
        .collect()
}

async fn assert_legacy(server: &TestServer, media_id: &str, reachable: bool) {
    for path in legacy_paths(media_id) {
        let (status, body) = server.get(&path, None).await;
        if reachable {
            assert_eq!(status, 200, "{path}: {body}");
        } else {
            assert_error(&(status, body), 404, "M_NOT_FOUND");
        }
    }
}

async fn freeze(backend: Backend) {
    // No freeze: the legacy endpoints serve new uploads.
    let server =
        TestServer::start_with(backend, |c| c.media.freeze_unauthenticated = FreezeSetting::Enabled(false)).await;
    let alice = server.register("alice").await;
    let before = upload(&server, &alice.token, b"before".to_vec(), None, None).await;
    assert_legacy(&server, &before, true).await;

    // The freeze starts: older media stays reachable, new media is authenticated-only.
    let db = server.stop().await;
    let config = test_config(&db);
    assert_eq!(config.media.freeze_unauthenticated, FreezeSetting::Enabled(true), "the default");
    let server = TestServer::start_config(db, config).await;
    let frozen = upload(&server, &alice.token, b"frozen".to_vec(), None, None).await;
    assert_legacy(&server, &before, true).await;
    assert_legacy(&server, &frozen, false).await;
    assert_eq!(server.get(&download_url(&frozen), Some(&alice.token)).await.0, 200);

    // Turning the freeze off again does not expose frozen media.
    let db = server.stop().await;
    let mut config = test_config(&db);
    config.media.freeze_unauthenticated = FreezeSetting::Enabled(false);
    let server = TestServer::start_config(db, config).await;
    let after = upload(&server, &alice.token, b"after".to_vec(), None, None).await;
    assert_legacy(&server, &frozen, false).await;
    assert_legacy(&server, &after, true).await;

    // A configured instant: in the future nothing is frozen yet, in the past everything new is.
    let db = server.stop().await;
    let mut config = test_config(&db);
    config.media.freeze_unauthenticated = FreezeSetting::Since("2999-01-01T00:00:00Z".into());
    let server = TestServer::start_config(db, config).await;
    let early = upload(&server, &alice.token, b"early".to_vec(), None, None).await;
    assert_legacy(&server, &early, true).await;
    let db = server.stop().await;
    let mut config = test_config(&db);
    config.media.freeze_unauthenticated = FreezeSetting::Since("2024-09-01T00:00:00Z".into());
    let server = TestServer::start_config(db, config).await;
    let late = upload(&server, &alice.token, b"late".to_vec(), None, None).await;
    assert_legacy(&server, &late, false).await;
    assert_legacy(&server, &early, true).await;
}

async fn malformed_paths(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    let token = Some(alice.token.as_str());
    for path in [
        "/_matrix/client/v1/media/download/localhost/..%2F..%2Fetc%2Fpasswd",
        "/_matrix/client/v1/media/download/localhost/.%2E",
        "/_matrix/media/v3/download/localhost/..%2Fmedia",
        "/_matrix/client/v1/media/download/other.example/SomeMediaIdThatIsLongEnough",
    ] {
        // The HTTP client may resolve a dot segment itself, leaving a path no route matches.
        let (status, body) = server.get(path, token).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert!(body["errcode"] == "M_NOT_FOUND" || body["errcode"] == "M_UNRECOGNIZED", "{path}: {body}");
    }
    let long = format!("/_matrix/client/v1/media/download/localhost/{}", "a".repeat(300));
    assert_error(&server.get(&long, token).await, 404, "M_NOT_FOUND");
    let (status, body) = server.get("/_matrix/client/v1/media/download/bad%20server/abc", token).await;
    assert_eq!(status, 400, "{body}");
}
