//! Federation base: two Myelin servers on loopback with TLS (a CA made for the test), server
//! keys and notary answers, signed requests (and refused forged, misdirected and unsigned
//! ones), remote media over the v1.11 federation endpoints, and backoff that survives restarts.

use crate::{backend_tests, common::*, media::upload, media_thumbnails::png};
use myelin_core::Config;
use reqwest::{Method, StatusCode};
use ruma::api::{
    IncomingResponseExt,
    federation::authenticated_media::{
        FileOrLocation, get_content::v1 as fed_download, get_content_thumbnail::v1 as fed_thumbnail,
    },
};
use serde_json::Value;
use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

backend_tests!(
    remote_media,
    remote_media_fallbacks,
    signed_requests,
    server_keys_and_notary,
    keys_through_a_notary,
    backoff_survives_restart,
    certificates_are_verified
);

/// A CA and a leaf certificate for `localhost` and 127.0.0.1 signed by it, as PEM files.
pub struct TestCa {
    pub dir: tempfile::TempDir,
}

impl TestCa {
    pub fn new() -> Self {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
        let dir = tempfile::tempdir().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, "Myelin test CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let mut leaf_params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        leaf_params.distinguished_name.push(DnType::CommonName, "localhost");
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca_cert.pem()).unwrap();
        std::fs::write(dir.path().join("leaf.pem"), leaf.pem()).unwrap();
        std::fs::write(dir.path().join("leaf.key"), leaf_key.serialize_pem()).unwrap();
        TestCa { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// An HTTP client trusting only this CA.
    pub fn client(&self) -> reqwest::Client {
        let pem = std::fs::read(self.path("ca.pem")).unwrap();
        reqwest::Client::builder().tls_certs_only(reqwest::Certificate::from_pem_bundle(&pem).unwrap()).build().unwrap()
    }
}

/// A free loopback port (the federation port is part of the server name, so it is chosen first).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Turns federation on for `config` as server `localhost:<port>` with the test CA.
pub fn federate(config: &mut Config, ca: &TestCa, port: u16) {
    config.server_name = format!("localhost:{port}").try_into().unwrap();
    config.federation.enabled = true;
    config.federation.listen = format!("127.0.0.1:{port}").parse().unwrap();
    config.federation.tls.certificate = Some(ca.path("leaf.pem"));
    config.federation.tls.private_key = Some(ca.path("leaf.key"));
    config.federation.tls.extra_ca_file = Some(ca.path("ca.pem"));
    config.federation.ip_range_allowlist = vec!["127.0.0.0/8".to_owned()];
}

pub async fn federated(backend: Backend, ca: &TestCa, configure: impl FnOnce(&mut Config)) -> (TestServer, String) {
    let port = free_port();
    let server = TestServer::start_with(backend, |config| {
        federate(config, ca, port);
        configure(config);
    })
    .await;
    (server, format!("localhost:{port}"))
}

async fn get_bytes(server: &TestServer, path: &str, token: &str) -> (StatusCode, Vec<u8>, reqwest::header::HeaderMap) {
    let response = server.raw(Method::GET, path, Some(token), None).await;
    let status = response.status();
    let headers = response.headers().clone();
    (status, response.bytes().await.unwrap().to_vec(), headers)
}

async fn remote_media(backend: Backend) {
    let ca = TestCa::new();
    let (a, a_name) = federated(backend, &ca, |_| {}).await;
    let (b, _) = federated(backend, &ca, |c| c.media.max_upload_size = 200_000).await;
    let alice = a.register("alice").await;
    let bob = b.register("bob").await;

    let image = png(300, 200);
    let id = upload(&a, &alice.token, image.clone(), Some("image/png"), Some("cat.png")).await;
    // Many requests at once share one fetch; all get the same bytes.
    let path = format!("/_matrix/client/v1/media/download/{a_name}/{id}");
    let fetches = (0..5).map(|_| get_bytes(&b, &path, &bob.token));
    for (status, bytes, headers) in futures_util::future::join_all(fetches).await {
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
        assert_eq!(bytes, image);
        assert_eq!(headers["content-type"], "image/png");
        assert!(headers["content-disposition"].to_str().unwrap().contains("cat.png"), "{headers:?}");
    }
    let cached = b.services().store.media().get(&a_name, &id).await.unwrap().expect("cached on B");
    assert_eq!(cached.size, Some(image.len() as i64));
    assert!(cached.authenticated_only, "first cached after the freeze: authenticated only");
    // The deprecated endpoints do not serve it (frozen), nor fetch what is not cached.
    let legacy = b.get(&format!("/_matrix/media/v3/download/{a_name}/{id}"), None).await;
    assert_error(&legacy, 404, "M_NOT_FOUND");
    let other = upload(&a, &alice.token, b"x".repeat(10).to_vec(), Some("text/plain"), None).await;
    let legacy = b.get(&format!("/_matrix/media/v3/download/{a_name}/{other}?allow_remote=false"), None).await;
    assert_error(&legacy, 404, "M_NOT_FOUND");
    // Nor, after the freeze, fetch for the unauthenticated endpoints what they could not serve.
    let legacy = b.get(&format!("/_matrix/media/v3/download/{a_name}/{other}"), None).await;
    assert_error(&legacy, 404, "M_NOT_FOUND");
    assert!(b.services().store.media().get(&a_name, &other).await.unwrap().is_none(), "not fetched");

    // Thumbnails of remote media are made from the cached original.
    let thumb = format!("/_matrix/client/v1/media/thumbnail/{a_name}/{id}?width=32&height=32&method=crop");
    let (status, bytes, headers) = get_bytes(&b, &thumb, &bob.token).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "image/png");
    let thumbnail = image::load_from_memory(&bytes).unwrap();
    assert_eq!((thumbnail.width(), thumbnail.height()), (32, 32));

    // Unknown media on the remote: 404 from B too; larger than B accepts: 502 M_TOO_LARGE.
    let missing =
        b.get(&format!("/_matrix/client/v1/media/download/{a_name}/NoSuchMediaHereAtAll0000"), Some(&bob.token)).await;
    assert_error(&missing, 404, "M_NOT_FOUND");
    let big = upload(&a, &alice.token, vec![7u8; 300_000], Some("application/octet-stream"), None).await;
    let too_large = b.get(&format!("/_matrix/client/v1/media/download/{a_name}/{big}"), Some(&bob.token)).await;
    assert_error(&too_large, 502, "M_TOO_LARGE");
    assert!(b.services().store.media().get(&a_name, &big).await.unwrap().is_none(), "nothing kept");

    // A's media is also reachable for A's own users through A, of course, and B's users
    // cannot reach media of servers B refuses to download from.
    let (c, _) = federated(backend, &ca, |config| config.media.prevent_downloads_from = vec![a_name.clone()]).await;
    let carol = c.register("carol").await;
    let blocked = c.get(&path, Some(&carol.token)).await;
    assert_error(&blocked, 404, "M_NOT_FOUND");
}

/// Signs a GET as `origin` would, with `origin`'s key, for `destination`.
fn x_matrix(server: &TestServer, destination: &str, uri: &str) -> String {
    let services = server.services();
    sign_as(services.config.server_name.as_str(), &services.federation.signing_key(), destination, uri)
}

/// Signs a GET as `origin` with `key`, for `destination`.
fn sign_as(origin: &str, key: &myelin_federation::SigningKey, destination: &str, uri: &str) -> String {
    use ruma::api::federation::authentication::{XMatrix, XMatrixSigningInput};
    let request = http::Request::builder().method("GET").uri(uri).body(Vec::<u8>::new()).unwrap();
    let input = XMatrixSigningInput::new(origin.try_into().unwrap(), destination.try_into().unwrap(), key.pair());
    XMatrix::sign_http_request(&request, input).unwrap().to_string()
}

async fn signed_requests(backend: Backend) {
    let ca = TestCa::new();
    let (a, a_name) = federated(backend, &ca, |_| {}).await;
    let (b, b_name) = federated(backend, &ca, |_| {}).await;
    let alice = a.register("alice").await;
    let bytes = b"hello over federation\r\n--not-a-boundary\r\n".to_vec();
    let id = upload(&a, &alice.token, bytes.clone(), Some("text/plain"), Some("hello.txt")).await;
    let uri = format!("/_matrix/federation/v1/media/download/{id}");
    let url = format!("https://{a_name}{uri}");
    let http = ca.client();

    // Signed by B for A: the multipart body, which ruma's parser reads back.
    let response = http.get(&url).header("authorization", x_matrix(&b, &a_name, &uri)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("multipart/mixed; boundary="), "{content_type}");
    let body = response.bytes().await.unwrap().to_vec();
    let parsed = fed_download::Response::try_from_http_response(
        http::Response::builder().status(200).header("content-type", &content_type).body(body.as_slice()).unwrap(),
    )
    .expect("ruma parses the multipart body");
    match parsed.content {
        FileOrLocation::File(file) => {
            assert_eq!(file.file, bytes);
            assert_eq!(file.content_type.as_deref(), Some("text/plain"));
            assert_eq!(file.content_disposition.and_then(|d| d.filename).as_deref(), Some("hello.txt"));
        }
        other => panic!("expected the file, got {other:?}"),
    }
    python_email_parses(&content_type, &body, &bytes);

    // Thumbnails over federation, in the same form.
    let image = upload(&a, &alice.token, png(120, 80), Some("image/png"), None).await;
    let thumb_uri = format!("/_matrix/federation/v1/media/thumbnail/{image}?width=32&height=32&method=crop");
    let response = http
        .get(format!("https://{a_name}{thumb_uri}"))
        .header("authorization", x_matrix(&b, &a_name, &thumb_uri))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    let body = response.bytes().await.unwrap().to_vec();
    let parsed = fed_thumbnail::Response::try_from_http_response(
        http::Response::builder().status(200).header("content-type", &content_type).body(body.as_slice()).unwrap(),
    )
    .expect("ruma parses the thumbnail's multipart body");
    let FileOrLocation::File(file) = parsed.content else { panic!("expected the thumbnail bytes") };
    assert_eq!(file.content_type.as_deref(), Some("image/png"));
    let thumbnail = image::load_from_memory(&file.file).unwrap();
    assert_eq!((thumbnail.width(), thumbnail.height()), (32, 32));

    // Whitespace around the commas of the header is fine (v1.11 clarification).
    let spaced = x_matrix(&b, &a_name, &uri).replace(',', " , ");
    let response = http.get(&url).header("authorization", spaced).send().await.unwrap();
    assert_eq!(response.status(), 200);

    let refused = |response: reqwest::Response| async move {
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        (status, body["errcode"].as_str().unwrap_or_default().to_owned())
    };
    // Unsigned.
    let response = http.get(&url).send().await.unwrap();
    assert_eq!(refused(response).await, (401, "M_UNAUTHORIZED".to_owned()));
    // Signed for another destination (replayed from B's traffic to someone else).
    let response = http.get(&url).header("authorization", x_matrix(&b, &b_name, &uri)).send().await.unwrap();
    assert_eq!(refused(response).await, (401, "M_UNAUTHORIZED".to_owned()));
    // Signed for another URI (a bad signature for this one).
    let other_uri = format!("{uri}x");
    let response = http.get(&url).header("authorization", x_matrix(&b, &a_name, &other_uri)).send().await.unwrap();
    assert_eq!(refused(response).await, (401, "M_UNAUTHORIZED".to_owned()));
    // Forged: B's name, another key.
    let forged = x_matrix(&b, &a_name, &uri);
    let forged = forged.replace(&b.services().federation.signing_key().key_id(), "ed25519:forged");
    let response = http.get(&url).header("authorization", forged).send().await.unwrap();
    assert_eq!(refused(response).await, (401, "M_UNAUTHORIZED".to_owned()));

    // A server that A refuses to talk to: 403 before anything is served.
    let (c, c_name) = federated(backend, &ca, |_| {}).await;
    drop(a);
    let (a2, a2_name) =
        federated(backend, &ca, |config| config.federation.domain_denylist = vec![c_name.clone()]).await;
    let uri2 = "/_matrix/federation/v1/version";
    let response = http
        .get(format!("https://{a2_name}{uri2}"))
        .header("authorization", x_matrix(&c, &a2_name, uri2))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "the version endpoint needs no signature");
    let uri3 = "/_matrix/federation/v1/media/download/abc";
    let response = http
        .get(format!("https://{a2_name}{uri3}"))
        .header("authorization", x_matrix(&c, &a2_name, uri3))
        .send()
        .await
        .unwrap();
    assert_eq!(refused(response).await, (403, "M_FORBIDDEN".to_owned()));
    drop(a2);
}

/// Python's standard `email` parser (strict about CRLF and boundaries) finds the two parts.
fn python_email_parses(content_type: &str, body: &[u8], file: &[u8]) {
    let script = r#"
import email, email.policy, sys
data = sys.stdin.buffer.read()
head = ("Content-Type: " + sys.argv[1] + "\r\n\r\n").encode()
message = email.message_from_bytes(head + data, policy=email.policy.HTTP)
parts = list(message.iter_parts())
assert message.is_multipart() and len(parts) == 2, parts
assert parts[0].get_content_type() == "application/json", parts[0]
assert parts[0].get_payload(decode=True).strip() == b"{}", parts[0].get_payload()
sys.stdout.buffer.write(parts[1].get_payload(decode=True))
"#;
    use std::io::Write;
    let mut child = match std::process::Command::new("python3")
        .args(["-c", script, content_type])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => panic!("python3 is needed for this test: {e}"),
    };
    child.stdin.take().unwrap().write_all(body).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "python's email parser refused the body");
    assert_eq!(output.stdout, file, "python's email parser reads the file part back byte-exact");
}

async fn server_keys_and_notary(backend: Backend) {
    use myelin_federation::server_keys::verify_signed_by;
    let ca = TestCa::new();
    let (a, a_name) = federated(backend, &ca, |_| {}).await;
    let (b, b_name) = federated(backend, &ca, |_| {}).await;
    let http = ca.client();
    let own: Value =
        http.get(format!("https://{a_name}/_matrix/key/v2/server")).send().await.unwrap().json().await.unwrap();
    assert_eq!(own["server_name"], a_name);
    let key_id = a.services().federation.signing_key().key_id();
    assert!(own["verify_keys"][&key_id]["key"].is_string(), "{own}");
    assert!(own["valid_until_ts"].as_i64().unwrap() > myelin_core::util::now_ms() + 3_600_000);
    let keys = |server: &TestServer| {
        let key = server.services().federation.signing_key();
        std::collections::BTreeMap::from([(key.key_id(), ruma::serde::Base64::parse(key.public_key_base64()).unwrap())])
    };
    let object: ruma::CanonicalJsonObject = serde_json::from_value(own).unwrap();
    verify_signed_by(&object, &a_name, &keys(&a)).expect("self-signed");

    // B as a notary for A: fetches A's keys, answers with A's document signed by both.
    for answer in [
        http.get(format!("https://{b_name}/_matrix/key/v2/query/{a_name}")).send().await.unwrap(),
        http.post(format!("https://{b_name}/_matrix/key/v2/query"))
            .json(&serde_json::json!({"server_keys": {&a_name: {}}}))
            .send()
            .await
            .unwrap(),
    ] {
        let answer: Value = answer.json().await.unwrap();
        let documents = answer["server_keys"].as_array().unwrap();
        assert_eq!(documents.len(), 1, "{answer}");
        let object: ruma::CanonicalJsonObject = serde_json::from_value(documents[0].clone()).unwrap();
        verify_signed_by(&object, &a_name, &keys(&a)).expect("signed by A");
        verify_signed_by(&object, &b_name, &keys(&b)).expect("signed by the notary B");
    }
    // Kept in B's store: a restart of A's connection is not needed to verify A again.
    assert_eq!(b.services().store.federation().verify_keys(&a_name).await.unwrap().len(), 1);

    // Rotation: the next start publishes the old key as an old verify key.
    let old_key = key_id.clone();
    let config = a.services().config.as_ref().clone();
    let db = a.stop().await;
    let store = myelin::server::open_store(&config).await.unwrap();
    myelin_federation::rotate_signing_key(&store, &config).await.unwrap();
    store.close().await;
    let a = TestServer::start_config(db, config).await;
    let own: Value =
        http.get(format!("https://{a_name}/_matrix/key/v2/server")).send().await.unwrap().json().await.unwrap();
    assert!(own["old_verify_keys"][&old_key]["expired_ts"].is_i64(), "{own}");
    assert!(own["verify_keys"].get(&old_key).is_none(), "{own}");
    drop(a);
}

async fn backoff_survives_restart(backend: Backend) {
    let ca = TestCa::new();
    let (a, a_name) = federated(backend, &ca, |_| {}).await;
    let (b, _) = federated(backend, &ca, |_| {}).await;
    let bob = b.register("bob").await;
    a.stop().await;
    let path = format!("/_matrix/client/v1/media/download/{a_name}/SomeMediaIdOfTwentyFourCh");
    let failed = b.get(&path, Some(&bob.token)).await;
    assert_error(&failed, 502, "M_UNKNOWN");
    let stored = b.services().store.federation().backoffs().await.unwrap();
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0].destination, a_name);

    let config = b.services().config.as_ref().clone();
    let db = b.stop().await;
    let b = TestServer::start_config(db, config).await;
    let bob = b.login("bob", &bob.password, serde_json::json!({})).await.1["access_token"].as_str().unwrap().to_owned();
    let again = b.get(&path, Some(&bob)).await;
    assert_error(&again, 502, "M_UNKNOWN");
    assert!(again.1["error"].as_str().unwrap().contains("not retrying"), "{}", again.1);
}

/// A stand-in remote server on TLS: one that predates the federation media endpoints (404
/// `M_UNRECOGNIZED`, then the legacy endpoint), one that answers with a `Location`, and a
/// slow one that counts how often it is asked.
async fn fake_remote(ca: &TestCa, port: u16, hits: Arc<AtomicUsize>) -> tokio::task::JoinHandle<()> {
    use axum::{Router, extract::Path, response::IntoResponse, routing::get};
    let name = format!("localhost:{port}");
    let multipart = |part: String| {
        (
            [("content-type", "multipart/mixed; boundary=xyz")],
            format!("--xyz\r\nContent-Type: application/json\r\n\r\n{{}}\r\n--xyz\r\n{part}\r\n--xyz--\r\n"),
        )
    };
    let location = format!("https://{name}/files/loc");
    let app = Router::new()
        .route(
            "/_matrix/federation/v1/media/download/{id}",
            get(move |Path(id): Path<String>| {
                let hits = hits.clone();
                let location = location.clone();
                async move {
                    match id.as_str() {
                        "old" => (
                            StatusCode::NOT_FOUND,
                            axum::Json(serde_json::json!({"errcode": "M_UNRECOGNIZED", "error": "?"})),
                        )
                            .into_response(),
                        "loc" => multipart(format!("Location: {location}\r\n")).into_response(),
                        _ => {
                            hits.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                            multipart("Content-Type: text/plain\r\n\r\nslow bytes".to_owned()).into_response()
                        }
                    }
                }
            }),
        )
        .route(
            "/_matrix/media/v3/download/{server}/{id}",
            get(|| async {
                (
                    [("content-type", "text/plain"), ("content-disposition", "inline; filename=\"old.txt\"")],
                    "legacy bytes",
                )
            }),
        )
        .route("/files/loc", get(|| async { ([("content-type", "text/plain")], "located bytes") }));
    let tls = {
        let mut config = Config { server_name: name.as_str().try_into().unwrap(), ..Default::default() };
        config.federation.tls.certificate = Some(ca.path("leaf.pem"));
        config.federation.tls.private_key = Some(ca.path("leaf.key"));
        myelin_federation::tls::server_config(&config).unwrap()
    };
    let tcp = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let listener = myelin::tls_listener::TlsListener::new(tcp, tls).unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    })
}

async fn remote_media_fallbacks(backend: Backend) {
    let ca = TestCa::new();
    let port = free_port();
    let hits = Arc::new(AtomicUsize::new(0));
    let fake = fake_remote(&ca, port, hits.clone()).await;
    let remote = format!("localhost:{port}");
    let (b, _) = federated(backend, &ca, |_| {}).await;
    let bob = b.register("bob").await;
    let download = |id: &str| format!("/_matrix/client/v1/media/download/{remote}/{id}");

    let (status, bytes, headers) = get_bytes(&b, &download("old"), &bob.token).await;
    assert_eq!((status, bytes.as_slice()), (StatusCode::OK, b"legacy bytes".as_slice()));
    assert!(headers["content-disposition"].to_str().unwrap().contains("old.txt"), "{headers:?}");

    let (status, bytes, _) = get_bytes(&b, &download("loc"), &bob.token).await;
    assert_eq!((status, bytes.as_slice()), (StatusCode::OK, b"located bytes".as_slice()));

    let slow = download("slow");
    let fetches = (0..5).map(|_| get_bytes(&b, &slow, &bob.token));
    for (status, bytes, _) in futures_util::future::join_all(fetches).await {
        assert_eq!((status, bytes.as_slice()), (StatusCode::OK, b"slow bytes".as_slice()));
    }
    assert_eq!(hits.load(Ordering::SeqCst), 1, "five concurrent requests, one fetch");
    fake.abort();
}

/// A server that cannot reach the origin of a request gets the origin's keys from its trusted
/// notary, checked against both signatures.
async fn keys_through_a_notary(backend: Backend) {
    let ca = TestCa::new();
    let (a, a_name) = federated(backend, &ca, |_| {}).await;
    let (_notary, b_name) = federated(backend, &ca, |_| {}).await;
    let http = ca.client();
    // B learns A's keys (as a notary would), then A goes away.
    let answer = http.get(format!("https://{b_name}/_matrix/key/v2/query/{a_name}")).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    let a_key = a.services().federation.signing_key();
    a.stop().await;

    let (c, c_name) =
        federated(backend, &ca, |config| config.federation.trusted_key_servers = vec![b_name.clone()]).await;
    let uri = "/_matrix/federation/v1/media/download/NoSuchMediaAnywhere00000";
    let response = http
        .get(format!("https://{c_name}{uri}"))
        .header("authorization", sign_as(&a_name, &a_key, &c_name, uri))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    // Past authentication: the media is simply not there.
    assert_eq!((status.as_u16(), body["errcode"].as_str()), (404, Some("M_NOT_FOUND")), "{body}");
    assert_eq!(c.services().store.federation().verify_keys(&a_name).await.unwrap().len(), 1);

    // Without a notary, the same request cannot be checked: 401.
    let (d, d_name) = federated(backend, &ca, |_| {}).await;
    let response = http
        .get(format!("https://{d_name}{uri}"))
        .header("authorization", sign_as(&a_name, &a_key, &d_name, uri))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    drop(d);
}

/// Outbound TLS trusts the system roots plus `extra_ca_file`, nothing else, unless the
/// insecure option for tests says otherwise.
async fn certificates_are_verified(backend: Backend) {
    let ca = TestCa::new();
    let (a, a_name) = federated(backend, &ca, |_| {}).await;
    let alice = a.register("alice").await;
    let id = upload(&a, &alice.token, b"trust me".to_vec(), Some("text/plain"), None).await;
    let path = format!("/_matrix/client/v1/media/download/{a_name}/{id}");

    let (untrusting, _) = federated(backend, &ca, |config| config.federation.tls.extra_ca_file = None).await;
    let user = untrusting.register("user").await;
    let refused = untrusting.get(&path, Some(&user.token)).await;
    assert_error(&refused, 502, "M_UNKNOWN");

    let (insecure, _) = federated(backend, &ca, |config| {
        config.federation.tls.extra_ca_file = None;
        config.federation.tls.insecure_accept_any_certificate_for_tests = true;
    })
    .await;
    let user = insecure.register("user").await;
    let (status, bytes, _) = get_bytes(&insecure, &path, &user.token).await;
    assert_eq!((status, bytes.as_slice()), (StatusCode::OK, b"trust me".as_slice()));
}
