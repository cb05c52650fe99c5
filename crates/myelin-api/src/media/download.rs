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
    /// Whether media of other servers may be fetched (the deprecated `allow_remote`).
    fn allow_remote(&self) -> bool;
}

macro_rules! download_request {
    ($ty:ty, $authenticated:expr, |$r:ident| $filename:expr, $allow_remote:expr) => {
        impl DownloadRequest for $ty {
            const AUTHENTICATED: bool = $authenticated;
            fn target(&self) -> (&ServerName, &str, Option<&str>, Duration) {
                let $r = self;
                (&$r.server_name, &$r.media_id, $filename, $r.timeout_ms)
            }
            #[allow(unused_variables)]
            fn allow_remote(&self) -> bool {
                let $r = self;
                $allow_remote
            }
        }
    };
}

// The authenticated endpoints always reach other servers' media; the deprecated ones say.
download_request!(download::Request, true, |r| None, true);
download_request!(download_as::Request, true, |r| Some(&r.filename), true);
download_request!(legacy_download::Request, false, |r| None, r.allow_remote);
download_request!(legacy_download_as::Request, false, |r| Some(&r.filename), r.allow_remote);

/// `GET /_matrix/client/v1/media/download/{serverName}/{mediaId}[/{fileName}]`, and the
/// deprecated `GET /_matrix/media/{r0,v1,v3}/download/{serverName}/{mediaId}[/{fileName}]`
async fn get_download<T: DownloadRequest>(
    State(services): State<Arc<Services>>,
    headers: HeaderMap,
    request: Ruma<T>,
) -> Result<Response, ApiError> {
    let access = if T::AUTHENTICATED {
        access(&request)
    } else {
        Access::Unauthenticated { allow_remote: request.body.allow_remote() }
    };
    let (server_name, media_id, filename, timeout) = request.body.target();
    let row = services.media.find(server_name, media_id, timeout, access).await?;
    serve_file(services.media.blobs(), ServedFile::media(&row, filename)?, &headers).await
}
