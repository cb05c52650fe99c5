//! `GET /_matrix/client/v1/media/preview_url` and the deprecated `GET /_matrix/media/v3/preview_url`.

// Serving the deprecated endpoint is part of the point here.
#![allow(deprecated)]

use crate::{Ruma, Services, client::RouteRuma, ruma_wrapper::ApiResult};
use axum::{Router, extract::State};
use myelin_core::Error;
use ruma::api::client::{
    authenticated_media::get_media_preview::v1 as preview, media::get_media_preview::v3 as legacy_preview,
};
use std::sync::Arc;

pub(super) fn routes(router: Router<Arc<Services>>) -> Router<Arc<Services>> {
    router.ruma::<preview::Request, _, _>(get_preview).ruma::<legacy_preview::Request, _, _>(get_legacy_preview)
}

async fn preview_json(services: &Services, url: &str, ts: Option<u64>) -> Result<serde_json::Value, Error> {
    services.media.preview_url(url, ts).await
}

/// `GET /_matrix/client/v1/media/preview_url`
async fn get_preview(
    State(services): State<Arc<Services>>,
    request: Ruma<preview::Request>,
) -> ApiResult<preview::Response> {
    request.identity()?;
    let ts = request.body.ts.map(|ts| u64::from(ts.0));
    let value = preview_json(&services, &request.body.url, ts).await?;
    Ok(preview::Response::from_serialize(&value).map_err(Error::internal)?.into())
}

/// `GET /_matrix/media/v3/preview_url` (deprecated)
async fn get_legacy_preview(
    State(services): State<Arc<Services>>,
    request: Ruma<legacy_preview::Request>,
) -> ApiResult<legacy_preview::Response> {
    request.identity()?;
    let ts = request.body.ts.map(|ts| u64::from(ts.0));
    let value = preview_json(&services, &request.body.url, ts).await?;
    Ok(legacy_preview::Response::from_serialize(&value).map_err(Error::internal)?.into())
}
