//! Downloads: `GET /_matrix/client/v1/media/download/{serverName}/{mediaId}[/{fileName}]`
//! (authenticated) and the deprecated `/_matrix/media/{r0,v1,v3}/download/…`, which do not
//! serve media uploaded after the freeze.
// Serving the deprecated endpoints is the point here.
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
use myelin_media::Access;
use ruma::{
    ServerName,
    api::client::{
        authenticated_media::{get_content::v1 as download, get_content_as_filename::v1 as download_as},
        media::{get_content::v3 as legacy_download, get_content_as_filename::v3 as legacy_download_as},
    },
};
use std::{sync::Arc, time::Duration};

use super::access;

pub(super) fn routes(router: Router<Arc<Services>>) -> Router<Arc<Services>> {
    router
        .ruma::<download::Request, _, _>(get_download)
        .ruma::<download_as::Request, _, _>(get_download_as)
        .ruma::<legacy_download::Request, _, _>(get_legacy_download)
        .ruma::<legacy_download_as::Request, _, _>(get_legacy_download_as)
        // The v1 paths predate r0 and are still asked for by old clients and bridges.
        .route("/_matrix/media/v1/download/{server_name}/{media_id}", on(MethodFilter::GET, get_legacy_download))
        .route(
            "/_matrix/media/v1/download/{server_name}/{media_id}/{filename}",
            on(MethodFilter::GET, get_legacy_download_as),
        )
}

async fn find_and_serve(
    services: &Services,
    headers: &HeaderMap,
    (server_name, media_id): (&ServerName, &str),
    filename: Option<&str>,
    timeout: Duration,
    access: Access,
) -> Result<Response, ApiError> {
    let row = services.media.find(server_name, media_id, timeout, access).await?;
    serve_file(services.media.blobs(), ServedFile::media(&row, filename)?, headers).await
}

/// `GET /_matrix/client/v1/media/download/{serverName}/{mediaId}`
async fn get_download(
    State(services): State<Arc<Services>>,
    headers: HeaderMap,
    request: Ruma<download::Request>,
) -> Result<Response, ApiError> {
    let r = &request.body;
    find_and_serve(&services, &headers, (&r.server_name, &r.media_id), None, r.timeout_ms, access(&request)).await
}

/// `GET /_matrix/client/v1/media/download/{serverName}/{mediaId}/{fileName}`
async fn get_download_as(
    State(services): State<Arc<Services>>,
    headers: HeaderMap,
    request: Ruma<download_as::Request>,
) -> Result<Response, ApiError> {
    let r = &request.body;
    find_and_serve(
        &services,
        &headers,
        (&r.server_name, &r.media_id),
        Some(&r.filename),
        r.timeout_ms,
        access(&request),
    )
    .await
}

/// `GET /_matrix/media/v3/download/{serverName}/{mediaId}` (deprecated, unauthenticated)
async fn get_legacy_download(
    State(services): State<Arc<Services>>,
    headers: HeaderMap,
    request: Ruma<legacy_download::Request>,
) -> Result<Response, ApiError> {
    let r = &request.body;
    find_and_serve(&services, &headers, (&r.server_name, &r.media_id), None, r.timeout_ms, Access::Unauthenticated)
        .await
}

/// `GET /_matrix/media/v3/download/{serverName}/{mediaId}/{fileName}` (deprecated, unauthenticated)
async fn get_legacy_download_as(
    State(services): State<Arc<Services>>,
    headers: HeaderMap,
    request: Ruma<legacy_download_as::Request>,
) -> Result<Response, ApiError> {
    let r = &request.body;
    find_and_serve(
        &services,
        &headers,
        (&r.server_name, &r.media_id),
        Some(&r.filename),
        r.timeout_ms,
        Access::Unauthenticated,
    )
    .await
}
