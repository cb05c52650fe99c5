//! Media of other servers: fetched over the v1.11 federation endpoints
//! (`/_matrix/federation/v1/media/download/{mediaId}`, `multipart/mixed` with the bytes or a
//! `Location` to get them from), falling back to the legacy `/_matrix/media/v3/download` only
//! when the remote answers 404 `M_UNRECOGNIZED`. Bytes stream into the blob store; the item is
//! cached under its origin, frozen if first cached at or after the freeze. Concurrent requests
//! for one item share one fetch and its outcome.

use crate::{MediaService, UploadMeta, blobs::BlobError, service::Access};
use bytes::Bytes;
use futures_util::Stream;
use http::{HeaderMap, StatusCode, header};
use myelin_core::{Error, ErrorKind, Result, util::now_ms};
use myelin_federation::client::{is_unrecognized, read_limited};
use myelin_store::MediaRow;
use reqwest::Method;
use ruma::{ServerName, http_headers::ContentDisposition};
use std::{collections::HashMap, str::FromStr, sync::Arc, time::Duration};

/// Largest error body or JSON part read from a remote server.
const SMALL_BODY: usize = 64 * 1024;

/// Takes a fetch out of the map when its fetcher is done or cancelled (if it is still the
/// one in the map).
struct Forget<'a> {
    fetches: &'a RemoteFetches,
    key: &'a str,
    gate: &'a Arc<tokio::sync::Mutex<Option<Outcome>>>,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        let mut in_flight = self.fetches.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        if in_flight.get(self.key).is_some_and(|current| Arc::ptr_eq(current, self.gate)) {
            in_flight.remove(self.key);
        }
    }
}

/// What a finished fetch left for those who waited on it.
type Outcome = std::result::Result<MediaRow, (StatusCode, ErrorKind, String)>;

/// Fetches in flight, by `origin/media_id`.
#[derive(Default)]
pub(crate) struct RemoteFetches {
    in_flight: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Outcome>>>>>,
}

fn bad_gateway(message: impl Into<String>) -> Error {
    Error::new(StatusCode::BAD_GATEWAY, ErrorKind::Unknown, message)
}

fn too_large_remote(max: u64) -> Error {
    Error::new(StatusCode::BAD_GATEWAY, ErrorKind::TooLarge, format!("The remote media is larger than {max} bytes"))
}

/// The bytes of a remote item and what its headers say about them.
struct Incoming<S> {
    content_type: Option<String>,
    filename: Option<String>,
    body: S,
}

fn describe(headers: &HeaderMap) -> (Option<String>, Option<String>) {
    let text = |name| headers.get(name).and_then(|v: &http::HeaderValue| v.to_str().ok()).map(str::to_owned);
    let filename = text(header::CONTENT_DISPOSITION)
        .and_then(|value| ContentDisposition::from_str(&value).ok())
        .and_then(|disposition| disposition.filename);
    (text(header::CONTENT_TYPE), filename)
}

impl MediaService {
    /// Media of another server: from the cache, else fetched (unless `allow_remote` is off).
    pub(crate) async fn find_remote(
        &self,
        origin: &ServerName,
        media_id: &str,
        timeout: Duration,
        access: Access,
    ) -> Result<MediaRow> {
        let not_found = || Error::not_found("Media not found");
        if self.config.media.prevent_downloads_from.iter().any(|blocked| blocked == origin.as_str()) {
            return Err(not_found());
        }
        let cached = match self.store.media().get(origin.as_str(), media_id).await? {
            Some(row) if row.is_uploaded() => row,
            _ => {
                // The deprecated endpoints could not serve what is cached now (frozen): do not
                // fetch it for them.
                if matches!(access, Access::Unauthenticated { allow_remote: false })
                    || (matches!(access, Access::Unauthenticated { .. }) && self.is_frozen_at(now_ms()))
                {
                    return Err(not_found());
                }
                self.fetch_shared(origin, media_id, timeout).await?
            }
        };
        if self.hidden(&cached, access) { Err(not_found()) } else { Ok(cached) }
    }

    /// One fetch per item; who waited gets its outcome instead of fetching again. The fetcher
    /// takes the item out of the map when done (also when cancelled), so a later request after
    /// a failure tries again.
    async fn fetch_shared(&self, origin: &ServerName, media_id: &str, timeout: Duration) -> Result<MediaRow> {
        let key = format!("{origin}/{media_id}");
        let gate = self.remote.in_flight.lock().expect("remote fetches").entry(key.clone()).or_default().clone();
        let mut slot = gate.lock().await;
        let outcome = match &*slot {
            Some(outcome) => outcome.clone(),
            None => {
                let _done = Forget { fetches: &self.remote, key: &key, gate: &gate };
                // A fetch that finished just before this one took the gate left the item.
                let outcome = match self.store.media().get(origin.as_str(), media_id).await? {
                    Some(row) if row.is_uploaded() => Ok(row),
                    _ => match self.fetch(origin, media_id, timeout).await {
                        Ok(row) => Ok(row),
                        Err(Error::Matrix { status, kind, message }) => Err((status, kind, message)),
                        Err(other) => Err((StatusCode::INTERNAL_SERVER_ERROR, ErrorKind::Unknown, other.to_string())),
                    },
                };
                *slot = Some(outcome.clone());
                outcome
            }
        };
        drop(slot);
        outcome.map_err(|(status, kind, message)| {
            if status == StatusCode::INTERNAL_SERVER_ERROR {
                Error::internal(message)
            } else {
                Error::new(status, kind, message)
            }
        })
    }

    async fn fetch(&self, origin: &ServerName, media_id: &str, timeout: Duration) -> Result<MediaRow> {
        let timeout_ms = timeout.min(crate::service::MAX_WAIT).as_millis();
        let path = format!("/_matrix/federation/v1/media/download/{media_id}?timeout_ms={timeout_ms}");
        let response = self.federation.request(origin, Method::GET, &path, None, true, true).await?;
        let status = response.status();
        if status.is_success() {
            return self.receive_multipart(origin, media_id, response).await;
        }
        let body = read_limited(response, SMALL_BODY).await.unwrap_or_default();
        if !is_unrecognized(status, &body) {
            return Err(remote_error(origin, status, &body));
        }
        // A server from before v1.11: the legacy endpoint, unsigned, on its federation address.
        let path = format!("/_matrix/media/v3/download/{origin}/{media_id}?allow_remote=false&timeout_ms={timeout_ms}");
        let response = self.federation.request(origin, Method::GET, &path, None, false, true).await?;
        let status = response.status();
        if !status.is_success() {
            let body = read_limited(response, SMALL_BODY).await.unwrap_or_default();
            return Err(remote_error(origin, status, &body));
        }
        let (content_type, filename) = describe(response.headers());
        self.keep(origin, media_id, Incoming { content_type, filename, body: response.bytes_stream() }).await
    }

    async fn receive_multipart(
        &self,
        origin: &ServerName,
        media_id: &str,
        response: reqwest::Response,
    ) -> Result<MediaRow> {
        let content_type =
            response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
        let boundary = multipart_boundary(content_type)
            .ok_or_else(|| bad_gateway(format!("{origin} answered without a multipart body ({content_type})")))?;
        let mut parts = multer::Multipart::new(response.bytes_stream(), boundary);
        let broken = |e: multer::Error| bad_gateway(format!("{origin} sent a broken multipart body: {e}"));
        let metadata = parts.next_field().await.map_err(broken)?.ok_or_else(|| bad_gateway("no metadata part"))?;
        let metadata = metadata.bytes().await.map_err(broken)?;
        if metadata.len() > SMALL_BODY
            || serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&metadata).is_err()
        {
            return Err(bad_gateway(format!("{origin} sent metadata that is not a JSON object")));
        }
        let file = parts.next_field().await.map_err(broken)?.ok_or_else(|| bad_gateway("no file part"))?;
        if let Some(location) = file.headers().get(header::LOCATION).and_then(|v| v.to_str().ok()).map(str::to_owned) {
            drop(file);
            let response = self.federation.get_url(&location).await?;
            if !response.status().is_success() {
                return Err(bad_gateway(format!("{location} answered {}", response.status())));
            }
            let (content_type, filename) = describe(response.headers());
            return self
                .keep(origin, media_id, Incoming { content_type, filename, body: response.bytes_stream() })
                .await;
        }
        let (content_type, filename) = describe(file.headers());
        self.keep(origin, media_id, Incoming { content_type, filename, body: file }).await
    }

    /// Streams the bytes into the blob store and records the item under its origin.
    async fn keep<S, E>(&self, origin: &ServerName, media_id: &str, incoming: Incoming<S>) -> Result<MediaRow>
    where
        S: Stream<Item = std::result::Result<Bytes, E>>,
        E: std::fmt::Display,
    {
        let max = self.config.media.max_upload_size;
        let blob = match self.blobs.write(incoming.body, max).await {
            Ok(blob) => blob,
            Err(BlobError::TooLarge) => return Err(too_large_remote(max)),
            Err(BlobError::Body(e)) => return Err(bad_gateway(format!("the download from {origin} broke off: {e}"))),
            Err(BlobError::Io(e)) => return Err(Error::internal(format!("writing a blob: {e}"))),
        };
        let meta =
            UploadMeta { content_type: incoming.content_type, filename: incoming.filename, declared_length: None };
        let row = self.stored_row(origin.as_str(), media_id, None, meta, &blob);
        let inserted = self.store.media().insert(&row).await;
        self.settle(&blob).await?;
        if let Err(e) = inserted {
            // Another process cached it first: theirs is as good.
            return match self.store.media().get(origin.as_str(), media_id).await? {
                Some(existing) if existing.is_uploaded() => Ok(existing),
                _ => Err(e.into()),
            };
        }
        tracing::info!(%origin, %media_id, size = blob.size, "cached remote media");
        Ok(row)
    }
}

/// The boundary of a `multipart/*` content type (multer's own parser accepts only form-data).
fn multipart_boundary(content_type: &str) -> Option<String> {
    let mut params = content_type.split(';');
    let essence = params.next()?.trim().to_ascii_lowercase();
    if !essence.starts_with("multipart/") {
        return None;
    }
    params
        .find_map(|param| {
            let (name, value) = param.split_once('=')?;
            name.trim().eq_ignore_ascii_case("boundary").then(|| value.trim().trim_matches('"').to_owned())
        })
        .filter(|boundary| !boundary.is_empty())
}

/// The error for a client when the remote server refused or failed.
fn remote_error(origin: &ServerName, status: StatusCode, body: &[u8]) -> Error {
    let errcode = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("errcode").and_then(|c| c.as_str()).map(str::to_owned))
        .unwrap_or_default();
    match (status, errcode.as_str()) {
        (StatusCode::NOT_FOUND, _) => Error::not_found("Media not found"),
        (StatusCode::GATEWAY_TIMEOUT, "M_NOT_YET_UPLOADED") => {
            Error::new(StatusCode::GATEWAY_TIMEOUT, ErrorKind::NotYetUploaded, "The media has not been uploaded yet")
        }
        (StatusCode::PAYLOAD_TOO_LARGE, _) | (_, "M_TOO_LARGE") => Error::new(
            StatusCode::BAD_GATEWAY,
            ErrorKind::TooLarge,
            format!("{origin} refuses to send media this large"),
        ),
        _ => bad_gateway(format!("{origin} answered {status} {errcode}")),
    }
}

#[cfg(test)]
mod tests {
    use super::multipart_boundary;

    #[test]
    fn boundaries() {
        assert_eq!(multipart_boundary("multipart/mixed; boundary=abc").as_deref(), Some("abc"));
        assert_eq!(multipart_boundary("Multipart/Mixed;Boundary=\"a b\"").as_deref(), Some("a b"));
        assert_eq!(multipart_boundary("multipart/mixed"), None);
        assert_eq!(multipart_boundary("application/json; boundary=x"), None);
        assert_eq!(multipart_boundary("multipart/mixed; boundary="), None);
    }
}
