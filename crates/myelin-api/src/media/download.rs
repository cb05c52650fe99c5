//! Downloads: `GET /_matrix/client/v1/media/download/{serverName}/{mediaId}[/{fileName}]`
//! (authenticated) and the deprecated `/_matrix/media/{r0,v1,v3}/download/…`, which do not
//! serve media uploaded after the freeze.
// Serving the deprecated endpoints is the point here.
#![allow(deprecated)]

use super::file_response::{ServedFile, serve_file};
use crate::{ApiError, Ruma, Services, client::RouteRuma, ruma_wrapper::ClientAuth};
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
    api::IncomingRequest,
    api::client::{
        authenticated_media::{get_content::v1 as download, get_content_as_filename::v1 as download_as},
        media::{get_content::v3 as legacy_download, get_content_as_filename::v3 as legacy_download_as},
    },
};
use std::{sync::Arc, time::Duration};

use super::access;

pub(super) fn routes(router: Router<Arc<Services>>) -> Router<Arc<Services>> {
    router
        .ruma::<download::Request, _, _>(get_download::<download::Request>)
        .ruma::<download_as::Request, _, _>(get_download::<download_as::Request>)
        .ruma::<legacy_download::Request, _, _>(get_download::<legacy_download::Request>)
        .ruma::<legacy_download_as::Request, _, _>(get_download::<legacy_download_as::Request>)
        // The v1 paths predate r0 and are still asked for by old clients and bridges.
        .route(
            "/_matrix/media/v1/download/{server_name}/{media_id}",
            on(MethodFilter::GET, get_download::<legacy_download::Request>),
        )
        .route(
            "/_matrix/media/v1/download/{server_name}/{media_id}/{filename}",
            on(MethodFilter::GET, get_download::<legacy_download_as::Request>),
        )
}

/// What every download endpoint asks for, whichever path it came through.
trait DownloadRequest: IncomingRequest<Authentication: ClientAuth> + Send + 'static {
    /// False for the deprecated endpoints, which serve no frozen media.
    const AUTHENTICATED: bool;
    fn target(&self) -> (&ServerName, &str, Option<&str>, Duration);
}

macro_rules! download_request {
    ($($ty:ty => $authenticated:expr, |$r:ident| $filename:expr;)*) => {$(
        impl DownloadRequest for $ty {
            const AUTHENTICATED: bool = $authenticated;
            fn target(&self) -> (&ServerName, &str, Option<&str>, Duration) {
                let $r = self;
                (&$r.server_name, &$r.media_id, $filename, $r.timeout_ms)
            }
        }
    )*};
}

download_request! {
    download::Request => true, |r| None;
    download_as::Request => true, |r| Some(&r.filename);
    legacy_download::Request => false, |r| None;
    legacy_download_as::Request => false, |r| Some(&r.filename);
}

/// `GET /_matrix/client/v1/media/download/{serverName}/{mediaId}[/{fileName}]`, and the
/// deprecated `GET /_matrix/media/{r0,v1,v3}/download/{serverName}/{mediaId}[/{fileName}]`
async fn get_download<T: DownloadRequest>(
    State(services): State<Arc<Services>>,
    headers: HeaderMap,
    request: Ruma<T>,
) -> Result<Response, ApiError> {
    let access = if T::AUTHENTICATED { access(&request) } else { Access::Unauthenticated };
    let (server_name, media_id, filename, timeout) = request.body.target();
    let row = services.media.find(server_name, media_id, timeout, access).await?;
    serve_file(services.media.blobs(), ServedFile::media(&row, filename)?, &headers).await
}
