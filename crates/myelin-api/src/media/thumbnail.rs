//! Thumbnails: `GET /_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}` (authenticated)
//! and the deprecated `/_matrix/media/{r0,v1,v3}/thumbnail/…`, which do not serve frozen media.

// Serving the deprecated endpoints is part of the point here.
#![allow(deprecated)]

use super::file_response::{ServedFile, serve_file};
use crate::{ApiError, Ruma, Services, client::RouteRuma};
use axum::{
    Router,
    extract::State,
    response::Response,
    routing::{MethodFilter, on},
};
use http::HeaderMap;
use myelin_core::{Error, config::ThumbnailMethod};
use myelin_media::Access;
use myelin_media::ThumbnailRequest;
use ruma::{
    ServerName, UInt,
    api::client::{
        authenticated_media::get_content_thumbnail::v1 as thumbnail,
        media::get_content_thumbnail::v3 as legacy_thumbnail,
    },
    media::Method,
};
use std::{sync::Arc, time::Duration};

use super::access;

pub(super) fn routes(router: Router<Arc<Services>>) -> Router<Arc<Services>> {
    router
        .ruma::<thumbnail::Request, _, _>(get_thumbnail)
        .ruma::<legacy_thumbnail::Request, _, _>(get_legacy_thumbnail)
        .route("/_matrix/media/v1/thumbnail/{server_name}/{media_id}", on(MethodFilter::GET, get_legacy_thumbnail))
}

/// The request's parameters, checked.
fn thumbnail_request(
    width: UInt,
    height: UInt,
    method: Option<&Method>,
    animated: Option<bool>,
) -> Result<ThumbnailRequest, ApiError> {
    let method = match method {
        None | Some(Method::Scale) => ThumbnailMethod::Scale,
        Some(Method::Crop) => ThumbnailMethod::Crop,
        Some(other) => return Err(Error::invalid_param(format!("Unknown thumbnail method {}", other.as_str())).into()),
    };
    let dimension = |v: UInt| u32::try_from(u64::from(v)).ok().filter(|v| (1..=10_000).contains(v));
    let (Some(width), Some(height)) = (dimension(width), dimension(height)) else {
        return Err(Error::invalid_param("width and height must be between 1 and 10000").into());
    };
    Ok(ThumbnailRequest { width, height, method, animated: animated.unwrap_or(false) })
}

async fn make_and_serve(
    services: &Services,
    headers: &HeaderMap,
    (server_name, media_id): (&ServerName, &str),
    request: ThumbnailRequest,
    timeout: Duration,
    access: Access,
) -> Result<Response, ApiError> {
    let row = services.media.thumbnail(server_name, media_id, request, timeout, access).await?;
    serve_file(services.media.blobs(), ServedFile::thumbnail(&row), headers).await
}

/// `GET /_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}`
async fn get_thumbnail(
    State(services): State<Arc<Services>>,
    headers: HeaderMap,
    request: Ruma<thumbnail::Request>,
) -> Result<Response, ApiError> {
    let r = &request.body;
    let wanted = thumbnail_request(r.width, r.height, r.method.as_ref(), r.animated)?;
    make_and_serve(&services, &headers, (&r.server_name, &r.media_id), wanted, r.timeout_ms, access(&request)).await
}

/// `GET /_matrix/media/v3/thumbnail/{serverName}/{mediaId}` (deprecated, unauthenticated)
async fn get_legacy_thumbnail(
    State(services): State<Arc<Services>>,
    headers: HeaderMap,
    request: Ruma<legacy_thumbnail::Request>,
) -> Result<Response, ApiError> {
    let r = &request.body;
    let wanted = thumbnail_request(r.width, r.height, r.method.as_ref(), r.animated)?;
    make_and_serve(&services, &headers, (&r.server_name, &r.media_id), wanted, r.timeout_ms, Access::Unauthenticated)
        .await
}
