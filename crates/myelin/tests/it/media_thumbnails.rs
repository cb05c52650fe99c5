//! Thumbnails: every size and method, never upscaling, animated vs still, bad images, the
//! freeze, and one render for many concurrent requests.

use crate::{backend_tests, common::*, media::upload};
use image::{AnimationDecoder, DynamicImage, ImageFormat, Rgba, RgbaImage, codecs::gif::GifDecoder};
use myelin_core::config::FreezeSetting;
use reqwest::Method;

backend_tests!(
    sizes_and_methods,
    small_originals_are_served_as_they_are,
    animated_and_still,
    animated_webp_and_apng,
    exif_orientation_and_reduced_jpeg_decoding,
    bad_images,
    freeze_and_sharing
);

pub fn png(width: u32, height: u32) -> Vec<u8> {
    let image = RgbaImage::from_fn(width, height, |x, y| Rgba([(x % 256) as u8, (y % 256) as u8, 128, 255]));
    encode(DynamicImage::ImageRgba8(image), ImageFormat::Png)
}

fn encode(image: DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut bytes = Vec::new();
    image.write_to(&mut std::io::Cursor::new(&mut bytes), format).unwrap();
    bytes
}

fn animated_gif(frames: usize) -> Vec<u8> {
    let mut bytes = Vec::new();
    {
        let mut encoder = image::codecs::gif::GifEncoder::new(&mut bytes);
        encoder.set_repeat(image::codecs::gif::Repeat::Infinite).unwrap();
        let frames = (0..frames).map(|i| {
            let buffer = RgbaImage::from_pixel(200, 100, Rgba([(i * 80) as u8, 0, 0, 255]));
            image::Frame::from_parts(buffer, 0, 0, image::Delay::from_numer_denom_ms(100, 1))
        });
        encoder.encode_frames(frames).unwrap();
    }
    bytes
}

/// An animated PNG (APNG) of `frames` 200×100 frames.
fn animated_png(frames: u32) -> Vec<u8> {
    let mut bytes = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut bytes, 200, 100);
        encoder.set_color(png::ColorType::Rgba);
        encoder.set_animated(frames, 0).unwrap();
        encoder.set_frame_delay(1, 10).unwrap();
        let mut writer = encoder.write_header().unwrap();
        for i in 0..frames {
            let frame = RgbaImage::from_pixel(200, 100, Rgba([0, (i * 80) as u8, 0, 255]));
            writer.write_image_data(frame.as_raw()).unwrap();
        }
        writer.finish().unwrap();
    }
    bytes
}

/// Three 200×100 frames, made by `fixtures/make_fixtures.py` (nothing in Rust encodes one).
const ANIMATED_WEBP: &[u8] = include_bytes!("fixtures/animated.webp");

/// A JPEG whose EXIF orientation says "rotate 90° clockwise to display": the stored image is
/// `width`×`height`, its left half red and its right half blue, so upright it is red on top.
fn sideways_jpeg(width: u32, height: u32) -> Vec<u8> {
    use image::ImageEncoder;
    let image = image::RgbImage::from_fn(width, height, |x, _| {
        if x < width / 2 { image::Rgb([255, 0, 0]) } else { image::Rgb([0, 0, 255]) }
    });
    // A big-endian TIFF header and one IFD entry: Orientation (0x0112), SHORT, 1 value, 6.
    let exif = [b'M', b'M', 0, 42, 0, 0, 0, 8, 0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0];
    let mut bytes = Vec::new();
    let mut encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 90);
    encoder.set_exif_metadata(exif.to_vec()).unwrap();
    encoder.write_image(image.as_raw(), width, height, image::ExtendedColorType::Rgb8).unwrap();
    bytes
}

/// Fetches a thumbnail; returns (status, content type, bytes).
async fn thumbnail(server: &TestServer, token: Option<&str>, path: &str) -> (u16, String, Vec<u8>) {
    let response = server.raw(Method::GET, path, token, None).await;
    let status = response.status().as_u16();
    let content_type =
        response.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    (status, content_type, response.bytes().await.unwrap().to_vec())
}

fn url(media_id: &str, query: &str) -> String {
    format!("/_matrix/client/v1/media/thumbnail/localhost/{media_id}?{query}")
}

async fn sizes_and_methods(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    let id = upload(&server, &alice.token, png(2000, 1000), Some("image/png"), None).await;
    assert_error(&server.get(&url(&id, "width=32&height=32"), None).await, 401, "M_MISSING_TOKEN");
    for (query, expected) in [
        ("width=32&height=32&method=crop", (32, 32)),
        ("width=96&height=96&method=crop", (96, 96)),
        ("width=50&height=50&method=crop", (96, 96)),
        ("width=100&height=50&method=crop", (320, 160)),
        ("width=320&height=240&method=scale", (320, 160)),
        ("width=640&height=480&method=scale", (640, 320)),
        ("width=800&height=600&method=scale", (800, 400)),
        ("width=700&height=500", (800, 400)),
        ("width=3000&height=3000&method=scale", (800, 400)),
    ] {
        let (status, content_type, bytes) = thumbnail(&server, Some(&alice.token), &url(&id, query)).await;
        assert_eq!((status, content_type.as_str()), (200, "image/png"), "{query}");
        let image = image::load_from_memory(&bytes).unwrap();
        assert_eq!((image.width(), image.height()), expected, "{query}");
    }
    // JPEG in, JPEG out.
    let jpeg = encode(
        DynamicImage::ImageRgb8(DynamicImage::ImageRgba8(RgbaImage::new(1200, 900)).to_rgb8()),
        ImageFormat::Jpeg,
    );
    let id = upload(&server, &alice.token, jpeg, Some("image/jpeg"), None).await;
    let (status, content_type, bytes) = thumbnail(&server, Some(&alice.token), &url(&id, "width=320&height=240")).await;
    assert_eq!((status, content_type.as_str()), (200, "image/jpeg"));
    let image = image::load_from_memory(&bytes).unwrap();
    assert_eq!((image.width(), image.height()), (320, 240));
    // Bad parameters.
    for query in ["width=0&height=10", "width=10&height=10&method=stretch", "height=10"] {
        let (status, _, _) = thumbnail(&server, Some(&alice.token), &url(&id, query)).await;
        assert_eq!(status, 400, "{query}");
    }
}

async fn small_originals_are_served_as_they_are(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    let original = png(20, 10);
    let id = upload(&server, &alice.token, original.clone(), Some("image/png"), None).await;
    for query in ["width=32&height=32&method=crop", "width=320&height=240&method=scale"] {
        let (status, _, bytes) = thumbnail(&server, Some(&alice.token), &url(&id, query)).await;
        assert_eq!((status, bytes == original), (200, true), "{query}");
    }
    // Wide but short: the crop is not blown up either.
    let id = upload(&server, &alice.token, png(300, 40), Some("image/png"), None).await;
    let (_, _, bytes) = thumbnail(&server, Some(&alice.token), &url(&id, "width=96&height=96&method=crop")).await;
    let image = image::load_from_memory(&bytes).unwrap();
    assert_eq!((image.width(), image.height()), (40, 40));
}

async fn animated_and_still(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    let id = upload(&server, &alice.token, animated_gif(3), Some("image/gif"), None).await;
    let frames = |bytes: &[u8]| GifDecoder::new(std::io::Cursor::new(bytes)).unwrap().into_frames().count();

    let (status, content_type, bytes) =
        thumbnail(&server, Some(&alice.token), &url(&id, "width=32&height=32&method=crop&animated=true")).await;
    assert_eq!((status, content_type.as_str()), (200, "image/gif"));
    assert_eq!(frames(&bytes), 3);
    let image = image::load_from_memory(&bytes).unwrap();
    assert_eq!((image.width(), image.height()), (32, 32));
    for query in ["width=32&height=32&method=crop&animated=false", "width=32&height=32&method=crop"] {
        let (status, content_type, bytes) = thumbnail(&server, Some(&alice.token), &url(&id, query)).await;
        assert_eq!((status, content_type.as_str()), (200, "image/png"), "{query}");
        assert_eq!(image::guess_format(&bytes).unwrap(), ImageFormat::Png);
    }
    // A still source asked for an animation gets a still.
    let still = upload(&server, &alice.token, png(400, 400), Some("image/png"), None).await;
    let (_, content_type, _) =
        thumbnail(&server, Some(&alice.token), &url(&still, "width=96&height=96&method=crop&animated=true")).await;
    assert_eq!(content_type, "image/png");
    let single = upload(&server, &alice.token, animated_gif(1), Some("image/gif"), None).await;
    let (_, content_type, _) =
        thumbnail(&server, Some(&alice.token), &url(&single, "width=32&height=32&method=crop&animated=true")).await;
    assert_eq!(content_type, "image/png");
}

async fn animated_webp_and_apng(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    let frames = |bytes: &[u8]| GifDecoder::new(std::io::Cursor::new(bytes)).unwrap().into_frames().count();
    for (source, content_type) in [(ANIMATED_WEBP.to_vec(), "image/webp"), (animated_png(3), "image/png")] {
        let id = upload(&server, &alice.token, source, Some(content_type), None).await;
        let (status, got, bytes) =
            thumbnail(&server, Some(&alice.token), &url(&id, "width=96&height=96&method=crop&animated=true")).await;
        assert_eq!((status, got.as_str()), (200, "image/gif"), "{content_type}");
        assert_eq!(frames(&bytes), 3, "{content_type}");
        let image = image::load_from_memory(&bytes).unwrap();
        assert_eq!((image.width(), image.height()), (96, 96), "{content_type}");
        // Still when not asked for an animation.
        let (status, got, bytes) =
            thumbnail(&server, Some(&alice.token), &url(&id, "width=96&height=96&method=crop")).await;
        assert_eq!((status, got.as_str()), (200, "image/png"), "{content_type}");
        let image = image::load_from_memory(&bytes).unwrap();
        assert_eq!((image.width(), image.height()), (96, 96), "{content_type}");
    }
    // A one-frame APNG is not an animation.
    let id = upload(&server, &alice.token, animated_png(1), Some("image/png"), None).await;
    let (_, got, _) =
        thumbnail(&server, Some(&alice.token), &url(&id, "width=96&height=96&method=crop&animated=true")).await;
    assert_eq!(got, "image/png");
}

async fn exif_orientation_and_reduced_jpeg_decoding(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice").await;
    let red_on_top = |bytes: &[u8]| {
        let image = image::load_from_memory(bytes).unwrap().to_rgb8();
        let (top, bottom) =
            (image.get_pixel(image.width() / 2, 2), image.get_pixel(image.width() / 2, image.height() - 3));
        top[0] > 200 && top[2] < 60 && bottom[2] > 200 && bottom[0] < 60
    };
    // Small enough to be decoded in full, and large enough for a reduced-scale decode: both
    // paths must apply the orientation.
    for (width, height, query, expected) in [
        (400, 200, "width=320&height=240&method=scale", (120, 240)),
        (2000, 1000, "width=320&height=240&method=scale", (120, 240)),
        (2000, 1000, "width=32&height=32&method=crop", (32, 32)),
        (2000, 1000, "width=96&height=96&method=crop", (96, 96)),
    ] {
        let id = upload(&server, &alice.token, sideways_jpeg(width, height), Some("image/jpeg"), None).await;
        let (status, content_type, bytes) = thumbnail(&server, Some(&alice.token), &url(&id, query)).await;
        assert_eq!((status, content_type.as_str()), (200, "image/jpeg"), "{width}x{height} {query}");
        let image = image::load_from_memory(&bytes).unwrap();
        assert_eq!((image.width(), image.height()), expected, "{width}x{height} {query}");
        assert!(red_on_top(&bytes), "{width}x{height} {query}: not turned upright");
    }
}

async fn bad_images(backend: Backend) {
    let server = TestServer::start_with(backend, |c| c.media.max_image_pixels = 1_000_000).await;
    let alice = server.register("alice").await;
    let text = upload(&server, &alice.token, b"not an image at all".to_vec(), Some("text/plain"), None).await;
    assert_error(&server.get(&url(&text, "width=32&height=32"), Some(&alice.token)).await, 400, "M_UNKNOWN");
    let big = upload(&server, &alice.token, png(1001, 1000), Some("image/png"), None).await;
    assert_error(&server.get(&url(&big, "width=32&height=32"), Some(&alice.token)).await, 413, "M_TOO_LARGE");
    let mut truncated = png(500, 500);
    truncated.truncate(truncated.len() / 2);
    let broken = upload(&server, &alice.token, truncated, Some("image/png"), None).await;
    let (status, body) = server.get(&url(&broken, "width=32&height=32"), Some(&alice.token)).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["errcode"].is_string());
    // A decompression bomb: tiny file, huge declared size.
    let bomb = png(5000, 5000);
    assert!(bomb.len() < 1_000_000);
    let bomb = upload(&server, &alice.token, bomb, Some("image/png"), None).await;
    assert_error(&server.get(&url(&bomb, "width=32&height=32"), Some(&alice.token)).await, 413, "M_TOO_LARGE");
    // The server is fine afterwards.
    assert_eq!(server.get("/_matrix/client/versions", None).await.0, 200);
}

async fn freeze_and_sharing(backend: Backend) {
    let server =
        TestServer::start_with(backend, |c| c.media.freeze_unauthenticated = FreezeSetting::Enabled(false)).await;
    let alice = server.register("alice").await;
    let old = upload(&server, &alice.token, png(500, 500), Some("image/png"), None).await;
    let db = server.stop().await;
    let config = test_config(&db);
    let server = TestServer::start_config(db, config).await;
    let new = upload(&server, &alice.token, png(500, 500), Some("image/png"), None).await;
    for version in ["r0", "v1", "v3"] {
        let legacy =
            |id: &str| format!("/_matrix/media/{version}/thumbnail/localhost/{id}?width=32&height=32&method=crop");
        assert_eq!(thumbnail(&server, None, &legacy(&old)).await.0, 200, "{version}");
        assert_error(&server.get(&legacy(&new), None).await, 404, "M_NOT_FOUND");
    }
    assert_eq!(thumbnail(&server, Some(&alice.token), &url(&new, "width=32&height=32")).await.0, 200);

    // Eight requests at once for a new thumbnail: one render, the same bytes for all.
    let path = url(&new, "width=640&height=480");
    let fetches = (0..8).map(|_| thumbnail(&server, Some(&alice.token), &path));
    let results = futures_util::future::join_all(fetches).await;
    assert!(results.iter().all(|(status, _, bytes)| *status == 200 && *bytes == results[0].2));
}
