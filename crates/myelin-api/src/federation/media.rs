//! `GET /_matrix/federation/v1/media/download/{mediaId}` and `…/thumbnail/{mediaId}` (v1.11):
//! this server's media for other servers, as `multipart/mixed` — a JSON part (`{}`), then the
//! bytes with their `Content-Type` and `Content-Disposition` — streamed from the blob, never
//! held in memory. Every boundary is preceded by CRLF, and the body ends with the close
//! delimiter, as strict multipart parsers expect.

use super::Federated;
use crate::{
    ApiError, Services,
    client::RouteRuma,
    media::{file_response::content_disposition, thumbnail::thumbnail_request},
};
use axum::{
    Router,
    body::Body,
    extract::State,
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use futures_util::{StreamExt, stream};
use http::{HeaderValue, StatusCode, header};
use myelin_core::{Error, util::random_string};
use myelin_media::Access;
use ruma::api::federation::authenticated_media::{get_content::v1 as download, get_content_thumbnail::v1 as thumbnail};
use std::sync::Arc;

pub(super) fn routes(router: Router<Arc<Services>>) -> Router<Arc<Services>> {
    router.ruma::<download::Request, _, _>(get_download).ruma::<thumbnail::Request, _, _>(get_thumbnail)
}

/// `GET /_matrix/federation/v1/media/download/{mediaId}`
async fn get_download(
    State(services): State<Arc<Services>>,
    request: Federated<download::Request>,
) -> Result<Response, ApiError> {
    let origin = request.origin()?;
    let server_name = &services.config.server_name;
    // Only this server's own media: other servers' media is theirs to serve.
    let row = services.media.find(server_name, &request.body.media_id, request.body.timeout_ms, Access::User).await?;
    tracing::debug!(%origin, media_id = %row.media_id, "serving media over federation");
    let (Some(sha256), Some(size)) = (row.sha256.as_deref(), row.size) else {
        return Err(Error::not_found("Media not found").into());
    };
    multipart(&services, sha256, size, row.content_type.as_deref(), row.filename.as_deref())
}

/// `GET /_matrix/federation/v1/media/thumbnail/{mediaId}`
async fn get_thumbnail(
    State(services): State<Arc<Services>>,
    request: Federated<thumbnail::Request>,
) -> Result<Response, ApiError> {
    request.origin()?;
    let body = &request.body;
    let wanted = thumbnail_request(body.width, body.height, body.method.as_ref(), body.animated)?;
    let server_name = &services.config.server_name;
    let row = services.media.thumbnail(server_name, &body.media_id, wanted, body.timeout_ms, Access::User).await?;
    multipart(&services, &row.sha256, row.size, Some(&row.content_type), None)
}

/// The `multipart/mixed` response for one blob.
fn multipart(
    services: &Services,
    sha256: &str,
    size: i64,
    content_type: Option<&str>,
    filename: Option<&str>,
) -> Result<Response, ApiError> {
    let size = size.max(0) as u64;
    let content_type = content_type.unwrap_or("application/octet-stream");
    // Header values must stay one line: a stored type with a line break is served as bytes.
    let content_type =
        if content_type.bytes().all(|b| (0x20..0x7f).contains(&b)) { content_type } else { "application/octet-stream" };
    let boundary = random_string(32);
    let head = format!(
        "\r\n--{boundary}\r\nContent-Type: application/json\r\n\r\n{{}}\r\n--{boundary}\r\n\
         Content-Type: {content_type}\r\nContent-Disposition: {}\r\n\r\n",
        content_disposition(content_type, filename)
    );
    let tail = format!("\r\n--{boundary}--\r\n");
    let length = head.len() as u64 + size + tail.len() as u64;
    let file = services
        .media
        .blobs()
        .read_range(sha256, 0, size)
        .map_err(|e| crate::media::file_response::blob_open_error(sha256, e))?;
    let body = stream::once(async move { Ok(Bytes::from(head)) })
        .chain(file)
        .chain(stream::once(async move { Ok(Bytes::from(tail)) }));
    let content_type = HeaderValue::from_str(&format!("multipart/mixed; boundary={boundary}"))
        .map_err(|e| Error::internal(format!("multipart content type: {e}")))?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, content_type), (header::CONTENT_LENGTH, HeaderValue::from(length))],
        Body::from_stream(body),
    )
        .into_response())
}
