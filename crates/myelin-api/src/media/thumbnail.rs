//! Thumbnails: `GET /_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}` (authenticated)
//! and the deprecated `/_matrix/media/{r0,v1,v3}/thumbnail/…`, which do not serve frozen media.

// Serving the deprecated endpoints is part of the point here.
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
use myelin_core::{Error, config::ThumbnailMethod};
use myelin_media::Access;
use myelin_media::ThumbnailRequest;
use ruma::{
    ServerName, UInt,
    api::IncomingRequest,
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
        .ruma::<thumbnail::Request, _, _>(get_thumbnail::<thumbnail::Request>)
        .ruma::<legacy_thumbnail::Request, _, _>(get_thumbnail::<legacy_thumbnail::Request>)
        .route(
            "/_matrix/media/v1/thumbnail/{server_name}/{media_id}",
            on(MethodFilter::GET, get_thumbnail::<legacy_thumbnail::Request>),
        )
}

/// What both thumbnail endpoints ask for.
trait ThumbnailEndpoint: IncomingRequest<Authentication: ClientAuth> + Send + 'static {
    /// False for the deprecated endpoint, which serves no frozen media.
    const AUTHENTICATED: bool;
    fn target(&self) -> (&ServerName, &str, Duration);
    fn wanted(&self) -> Result<ThumbnailRequest, ApiError>;
    /// Whether media of other servers may be fetched (the deprecated `allow_remote`).
    fn allow_remote(&self) -> bool;
}

macro_rules! thumbnail_endpoint {
    ($($ty:ty => $authenticated:expr, |$r:ident| $allow_remote:expr;)*) => {$(
        impl ThumbnailEndpoint for $ty {
            const AUTHENTICATED: bool = $authenticated;
            fn target(&self) -> (&ServerName, &str, Duration) {
                (&self.server_name, &self.media_id, self.timeout_ms)
            }
            fn wanted(&self) -> Result<ThumbnailRequest, ApiError> {
                thumbnail_request(self.width, self.height, self.method.as_ref(), self.animated)
            }
            #[allow(unused_variables)]
            fn allow_remote(&self) -> bool {
                let $r = self;
                $allow_remote
            }
        }
    )*};
}

thumbnail_endpoint! {
    // The authenticated endpoint always reaches other servers' media; the deprecated one says.
    thumbnail::Request => true, |r| true;
    legacy_thumbnail::Request => false, |r| r.allow_remote;
}

/// The request's parameters, checked.
pub(crate) fn thumbnail_request(
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

/// `GET /_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}`, and the deprecated
/// `GET /_matrix/media/{r0,v1,v3}/thumbnail/{serverName}/{mediaId}`
async fn get_thumbnail<T: ThumbnailEndpoint>(
    State(services): State<Arc<Services>>,
    headers: HeaderMap,
    request: Ruma<T>,
) -> Result<Response, ApiError> {
    let access = if T::AUTHENTICATED {
        access(&request)
    } else {
        Access::Unauthenticated { allow_remote: request.body.allow_remote() }
    };
    let wanted = request.body.wanted()?;
    let (server_name, media_id, timeout) = request.body.target();
    let row = services.media.thumbnail(server_name, media_id, wanted, timeout, access).await?;
    serve_file(services.media.blobs(), ServedFile::thumbnail(&row), &headers).await
}
