//! `/versions`, `/.well-known/matrix/*`, `/capabilities`.

use crate::{backend_tests, common::*};

backend_tests!(versions_lists_v1_1_to_v1_11, well_known_from_config, capabilities);

async fn versions_lists_v1_1_to_v1_11(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (status, body) = server.get("/_matrix/client/versions", None).await;
    assert_eq!(status, 200);
    let versions: Vec<&str> = body["versions"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    for minor in 1..=11 {
        assert!(versions.contains(&format!("v1.{minor}").as_str()), "{versions:?}");
    }
}

async fn well_known_from_config(backend: Backend) {
    let server = TestServer::start(backend).await;
    assert_error(&server.get("/.well-known/matrix/client", None).await, 404, "M_NOT_FOUND");
    assert_error(&server.get("/.well-known/matrix/server", None).await, 404, "M_NOT_FOUND");
    let server = TestServer::start_with(backend, |c| {
        c.public_baseurl = Some("https://matrix.example.org".into());
        c.well_known.server = Some("matrix.example.org:443".into());
    })
    .await;
    let (status, body) = server.get("/.well-known/matrix/client", None).await;
    assert_eq!((status.as_u16(), &body["m.homeserver"]["base_url"]), (200, &"https://matrix.example.org".into()));
    let (status, body) = server.get("/.well-known/matrix/server", None).await;
    assert_eq!((status.as_u16(), &body["m.server"]), (200, &"matrix.example.org:443".into()));
}

async fn capabilities(backend: Backend) {
    let server = TestServer::start(backend).await;
    assert_error(&server.get("/_matrix/client/v3/capabilities", None).await, 401, "M_MISSING_TOKEN");
    let alice = server.register("alice").await;
    let (status, body) = server.get("/_matrix/client/v3/capabilities", Some(&alice.token)).await;
    assert_eq!(status, 200, "{body}");
    let caps = &body["capabilities"];
    // ruma leaves out capabilities at their spec default; absent `m.change_password` means enabled.
    assert!(caps.get("m.change_password").is_none_or(|c| c["enabled"] == true), "{caps}");
    assert_eq!(caps["m.room_versions"]["default"], "10");
    for v in 1..=11 {
        assert_eq!(caps["m.room_versions"]["available"][v.to_string()], "stable", "{caps}");
    }
}
