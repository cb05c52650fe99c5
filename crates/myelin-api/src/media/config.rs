//! `GET /_matrix/client/v1/media/config` and the deprecated `GET /_matrix/media/v3/config`.
// Serving the deprecated endpoints is the point here.
#![allow(deprecated)]

use crate::{Ruma, Services, client::RouteRuma, ruma_wrapper::ApiResult};
use axum::{Router, extract::State};
use ruma::{
    UInt,
    api::client::{authenticated_media::get_media_config::v1 as config, media::get_media_config::v3 as legacy_config},
};
use std::sync::Arc;

pub(super) fn routes(router: Router<Arc<Services>>) -> Router<Arc<Services>> {
    router.ruma::<config::Request, _, _>(get_config).ruma::<legacy_config::Request, _, _>(get_legacy_config)
}

fn upload_size(services: &Services) -> UInt {
    UInt::try_from(services.media.max_upload_size()).unwrap_or(UInt::MAX)
}

/// `GET /_matrix/client/v1/media/config`
async fn get_config(State(services): State<Arc<Services>>, _: Ruma<config::Request>) -> ApiResult<config::Response> {
    Ok(config::Response::new(upload_size(&services)).into())
}

/// `GET /_matrix/media/v3/config` (deprecated)
async fn get_legacy_config(
    State(services): State<Arc<Services>>,
    _: Ruma<legacy_config::Request>,
) -> ApiResult<legacy_config::Response> {
    Ok(legacy_config::Response::new(upload_size(&services)).into())
}
