//! Thumbnails of stored media: made on first request, cached as blobs, one render shared by
//! every concurrent request for the same thumbnail.

use crate::{
    Access, MediaService,
    thumbnail::{self, RenderError, Rendered},
};
use bytes::Bytes;
use http::StatusCode;
use myelin_core::{Error, ErrorKind, Result, config::ThumbnailMethod, util::now_ms};
use myelin_store::ThumbnailRow;
use ruma::ServerName;
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::sync::Semaphore;

/// What a client asked for.
#[derive(Debug, Clone, Copy)]
pub struct ThumbnailRequest {
    pub width: u32,
    pub height: u32,
    pub method: ThumbnailMethod,
    pub animated: bool,
}

/// Renders in flight, so concurrent requests for one thumbnail wait for a single render, and
/// how many renders may run at once (decoding is CPU- and memory-heavy).
pub(crate) struct Renders {
    in_flight: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    permits: Semaphore,
}

impl Default for Renders {
    fn default() -> Self {
        let cpus = std::thread::available_parallelism().map_or(2, usize::from);
        Renders { in_flight: Mutex::new(HashMap::new()), permits: Semaphore::new(cpus) }
    }
}

fn method_name(method: ThumbnailMethod) -> &'static str {
    match method {
        ThumbnailMethod::Crop => "crop",
        ThumbnailMethod::Scale => "scale",
    }
}

impl MediaService {
    /// The thumbnail for `request`, made now if it was not made before.
    pub async fn thumbnail(
        &self,
        server_name: &ServerName,
        media_id: &str,
        request: ThumbnailRequest,
        timeout: Duration,
        access: Access,
    ) -> Result<ThumbnailRow> {
        let original = self.find(server_name, media_id, timeout, access).await?;
        let plan = thumbnail::plan(&self.config.media.thumbnail_sizes, request.width, request.height, request.method);
        let method = method_name(plan.method);
        let size = (i64::from(plan.width), i64::from(plan.height));
        let media = self.store.media();
        let cached = || media.thumbnail(&original.origin, &original.media_id, size, method, request.animated);
        if let Some(row) = cached().await? {
            return Ok(row);
        }
        let key =
            format!("{}/{}/{}x{}/{method}/{}", original.origin, original.media_id, size.0, size.1, request.animated);
        let gate =
            self.renders.in_flight.lock().unwrap_or_else(|e| e.into_inner()).entry(key.clone()).or_default().clone();
        let result = async {
            let _turn = gate.lock().await;
            // Whoever held the gate before us may have made it.
            if let Some(row) = cached().await? {
                return Ok(row);
            }
            let (Some(sha256), Some(original_size)) = (original.sha256.clone(), original.size) else {
                return Err(Error::not_found("Media not found"));
            };
            let path =
                self.blobs.path(&sha256).ok_or_else(|| Error::internal("malformed sha256 in the media table"))?;
            let rendered = {
                let _permit = self.renders.permits.acquire().await.map_err(Error::internal)?;
                let max_pixels = self.config.media.max_image_pixels;
                let animated = request.animated;
                tokio::task::spawn_blocking(move || thumbnail::render(&path, &plan, animated, max_pixels))
                    .await
                    .map_err(Error::internal)?
            };
            let mut written = None;
            let (content_type, sha256, size_bytes) = match rendered {
                Ok(Rendered::Original) => (
                    original.content_type.clone().unwrap_or_else(|| "application/octet-stream".into()),
                    sha256,
                    original_size,
                ),
                Ok(Rendered::Image { bytes, content_type }) => {
                    let stream = futures_util::stream::iter([Ok::<_, std::convert::Infallible>(Bytes::from(bytes))]);
                    let blob =
                        self.blobs.write(stream, u64::MAX).await.map_err(|e| Error::internal(format!("{e:?}")))?;
                    let stored = (content_type.to_owned(), blob.sha256.clone(), blob.size as i64);
                    written = Some(blob);
                    stored
                }
                Err(RenderError::NotAnImage) => {
                    return Err(Error::new(StatusCode::BAD_REQUEST, ErrorKind::Unknown, "This media is not an image"));
                }
                Err(RenderError::TooLarge) => {
                    return Err(Error::too_large("The image is too large to make a thumbnail of"));
                }
                Err(RenderError::Failed(why)) => {
                    return Err(Error::new(
                        StatusCode::BAD_REQUEST,
                        ErrorKind::Unknown,
                        format!("No thumbnail: {why}"),
                    ));
                }
            };
            let row = ThumbnailRow {
                origin: original.origin.clone(),
                media_id: original.media_id.clone(),
                width: size.0,
                height: size.1,
                method: method.to_owned(),
                animated: request.animated,
                content_type,
                sha256,
                size: size_bytes,
                created_ts: now_ms(),
            };
            let inserted = media.insert_thumbnail(&row).await;
            if let Some(blob) = &written {
                self.settle(blob).await?;
            }
            inserted?;
            Ok(row)
        }
        .await;
        // The last one out removes the gate.
        let mut in_flight = self.renders.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        if in_flight.get(&key).is_some_and(|g| Arc::strong_count(g) <= 2) {
            in_flight.remove(&key);
        }
        result
    }
}
