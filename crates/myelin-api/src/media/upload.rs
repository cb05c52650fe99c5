//! Uploads: `POST /_matrix/media/v3/upload`, `POST /_matrix/media/v1/create` and
//! `PUT /_matrix/media/v3/upload/{serverName}/{mediaId}`. The bodies are streamed into the blob
//! store, never held in memory.

use crate::{
    ApiError, Ruma, RumaResponse, Services,
    client::RouteRuma,
    ruma_wrapper::{ApiResult, Authenticated, path_arguments},
};
use axum::response::{IntoResponse, Response};
use axum::{
    Router,
    body::Body,
    extract::{Request, State},
};
use http::{HeaderMap, HeaderValue, header};
use myelin_core::Error;
use myelin_media::UploadMeta;
use ruma::{
    MilliSecondsSinceUnixEpoch, OwnedServerName, UInt,
    api::client::media::{
        create_content::v3 as upload, create_content_async::v3 as upload_async, create_mxc_uri::v1 as create,
    },
};
use std::sync::Arc;

pub(super) fn routes(router: Router<Arc<Services>>) -> Router<Arc<Services>> {
    router
        .ruma::<upload::Request, _, _>(post_upload)
        .ruma::<create::Request, _, _>(post_create)
        .ruma::<upload_async::Request, _, _>(put_upload)
}

/// The file name (query), content type and length (headers) of an upload.
fn upload_meta(headers: &HeaderMap, query: Option<&str>) -> Result<UploadMeta, ApiError> {
    let filename = query
        .map(|q| serde_html_form::from_str::<Vec<(String, String)>>(q).unwrap_or_default())
        .unwrap_or_default()
        .into_iter()
        .find_map(|(k, v)| (k == "filename").then_some(v))
        .filter(|f| !f.is_empty());
    if filename.as_ref().is_some_and(|f| f.len() > 1024 || f.chars().any(char::is_control)) {
        return Err(Error::invalid_param("The filename is longer than 1024 bytes or has control characters").into());
    }
    let content_type = match headers.get(header::CONTENT_TYPE) {
        Some(value) => Some(
            value.to_str().map_err(|_| Error::invalid_param("The Content-Type header is not ASCII"))?.trim().to_owned(),
        ),
        None => None,
    };
    let length = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    Ok(UploadMeta { content_type: content_type.filter(|c| !c.is_empty()), filename, declared_length: length })
}

/// An upload refused before its body was read leaves unread bytes on the connection: tell the
/// client not to reuse it, or its next request would race the server closing it.
struct UploadRefused(ApiError);

impl From<ApiError> for UploadRefused {
    fn from(error: ApiError) -> Self {
        UploadRefused(error)
    }
}

impl From<Error> for UploadRefused {
    fn from(error: Error) -> Self {
        UploadRefused(error.into())
    }
}

impl IntoResponse for UploadRefused {
    fn into_response(self) -> Response {
        let mut response = self.0.into_response();
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        response
    }
}

/// `POST /_matrix/media/v3/upload`
async fn post_upload(
    State(services): State<Arc<Services>>,
    auth: Authenticated,
    request: Request,
) -> Result<RumaResponse<upload::Response>, UploadRefused> {
    let (parts, body) = request.into_parts();
    let meta = upload_meta(&parts.headers, parts.uri.query())?;
    let content_uri = services.media.upload(&auth.identity.user_id, meta, Body::into_data_stream(body)).await?;
    Ok(upload::Response::new(content_uri).into())
}

/// `PUT /_matrix/media/v3/upload/{serverName}/{mediaId}`
async fn put_upload(
    State(services): State<Arc<Services>>,
    auth: Authenticated,
    request: Request,
) -> Result<axum::Json<serde_json::Value>, UploadRefused> {
    let (mut parts, body) = request.into_parts();
    let args = path_arguments(&mut parts, &services).await?;
    let [server_name, media_id] = args.as_slice() else {
        return Err(Error::not_found("No such media ID").into());
    };
    let server_name = OwnedServerName::try_from(server_name.as_str())
        .map_err(|_| Error::invalid_param("The server name in the path is malformed"))?;
    let meta = upload_meta(&parts.headers, parts.uri.query())?;
    services
        .media
        .upload_pending(&auth.identity.user_id, &server_name, media_id, meta, Body::into_data_stream(body))
        .await?;
    // ruma's response type for this endpoint has no public constructor; its body is `{}`.
    Ok(axum::Json(serde_json::json!({})))
}

/// `POST /_matrix/media/v1/create`
async fn post_create(
    State(services): State<Arc<Services>>,
    request: Ruma<create::Request>,
) -> ApiResult<create::Response> {
    let identity = request.identity()?;
    let (content_uri, expires) = services.media.create_pending(&identity.user_id).await?;
    let mut response = create::Response::new(content_uri);
    response.unused_expires_at = UInt::try_from(expires).ok().map(MilliSecondsSinceUnixEpoch);
    Ok(response.into())
}
