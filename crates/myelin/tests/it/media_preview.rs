//! URL previews: OpenGraph with the image kept in the media repository, fallbacks, and the
//! refusals that keep the previewer away from private addresses (SSRF).

use crate::{backend_tests, common::*, media::download_url};
use axum::{Router, response::IntoResponse, routing::get};
use reqwest::Method;
use std::net::SocketAddr;

backend_tests!(disabled_by_default, open_graph_and_image, refusals);

const PREVIEW: &str = "/_matrix/client/v1/media/preview_url?url=";

fn tiny_png() -> Vec<u8> {
    let mut bytes = Vec::new();
    image::DynamicImage::ImageRgba8(image::RgbaImage::new(64, 48))
        .write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)
        .unwrap();
    bytes
}

/// A small website on 127.0.0.2 (loopback, but not 127.0.0.1) for the previewer to fetch.
async fn website() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.2:0").await.expect("127.0.0.2 is loopback on Linux");
    let addr = listener.local_addr().unwrap();
    let port = addr.port();
    let html = |body: String| ([("content-type", "text/html; charset=utf-8")], body).into_response();
    let redirect = |to: String| (axum::http::StatusCode::FOUND, [("location", to)]).into_response();
    let app = Router::new()
        .route(
            "/page",
            get(move || async move {
                html(r#"<html><head><title>Ignored</title>
                    <meta property="og:title" content="The &amp; Page"><meta property="og:description" content="About it">
                    <meta property="og:image" content="/img.png"></head><body>hi</body></html>"#
                    .to_owned())
            }),
        )
        .route("/img.png", get(|| async { ([("content-type", "image/png")], tiny_png()).into_response() }))
        .route("/plain", get(move || async move { html("<title>Plain title</title><meta name=\"description\" content=\"Plain words\">".into()) }))
        .route("/big", get(move || async move { html("x".repeat(200_000)) }))
        .route("/loop", get(|| async { (axum::http::StatusCode::FOUND, [("location", "/loop")]).into_response() }))
        .route("/to-loopback", get(move || async move { redirect(format!("http://127.0.0.1:{port}/page")) }))
        .route("/to-localhost", get(move || async move { redirect(format!("http://localhost:{port}/page")) }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn enable(config: &mut myelin_core::Config) {
    config.media.url_preview.enabled = true;
    config.media.url_preview.ip_range_allowlist = vec!["127.0.0.2/32".into()];
    config.media.url_preview.max_size = 100_000;
}

async fn disabled_by_default(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    assert_error(&server.get(&format!("{PREVIEW}https://example.org"), None).await, 401, "M_MISSING_TOKEN");
    for path in [PREVIEW, "/_matrix/media/v3/preview_url?url="] {
        assert_error(
            &server.get(&format!("{path}https://example.org"), Some(&alice.token)).await,
            404,
            "M_UNRECOGNIZED",
        );
    }
}

async fn open_graph_and_image(backend: Backend) {
    let site = website().await;
    let server = TestServer::start_with(backend, enable).await;
    let alice = server.register("alice").await;
    let (status, og) = server.get(&format!("{PREVIEW}http://{site}/page"), Some(&alice.token)).await;
    assert_eq!(status, 200, "{og}");
    assert_eq!(og["og:title"], "The & Page");
    assert_eq!(og["og:description"], "About it");
    assert_eq!((og["og:image:width"].as_u64(), og["og:image:height"].as_u64()), (Some(64), Some(48)));
    assert_eq!(og["matrix:image:size"].as_u64(), Some(tiny_png().len() as u64));
    let mxc = og["og:image"].as_str().expect("og:image");
    let media_id = mxc.strip_prefix("mxc://localhost/").expect("kept in our media repository");
    let image = server.raw(Method::GET, &download_url(media_id), Some(&alice.token), None).await;
    assert_eq!(image.bytes().await.unwrap().to_vec(), tiny_png());

    let (_, og) = server.get(&format!("{PREVIEW}http://{site}/plain"), Some(&alice.token)).await;
    assert_eq!((og["og:title"].as_str(), og["og:description"].as_str()), (Some("Plain title"), Some("Plain words")));
    // The deprecated path answers the same (and is cached).
    let (status, legacy) =
        server.get(&format!("/_matrix/media/v3/preview_url?url=http://{site}/plain"), Some(&alice.token)).await;
    assert_eq!((status.as_u16(), &legacy["og:title"]), (200, &og["og:title"]));
    // A bare image.
    let (_, og) = server.get(&format!("{PREVIEW}http://{site}/img.png"), Some(&alice.token)).await;
    assert!(og["og:image"].as_str().unwrap().starts_with("mxc://localhost/"), "{og}");
}

async fn refusals(backend: Backend) {
    let site = website().await;
    let port = site.port();
    let server = TestServer::start_with(backend, enable).await;
    let alice = server.register("alice").await;
    let preview = |url: String| {
        let server = &server;
        let token = alice.token.clone();
        async move { server.get(&format!("{PREVIEW}{}", url.replace('&', "%26")), Some(&token)).await }
    };
    for url in [
        // A literal private address, a name resolving to one, redirects to both, IPv4-mapped IPv6.
        format!("http://127.0.0.1:{port}/page"),
        format!("http://localhost:{port}/page"),
        format!("http://{site}/to-loopback"),
        format!("http://{site}/to-localhost"),
        format!("http://[::ffff:127.0.0.1]:{port}/page"),
        format!("http://[::1]:{port}/page"),
        "http://10.0.0.1/".to_owned(),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
    ] {
        assert_error(&preview(url.clone()).await, 403, "M_FORBIDDEN");
    }
    assert_eq!(preview("ftp://example.org/file".into()).await.0, 400);
    assert_eq!(preview("not a url".into()).await.0, 400);
    assert_error(&preview(format!("http://{site}/big")).await, 413, "M_TOO_LARGE");
    assert_eq!(preview(format!("http://{site}/loop")).await.0, 502);
}
