//! URL previews (`/preview_url`): fetch a page safely, read its OpenGraph, keep its image in the
//! media repository, cache the result.

mod fetch;
mod html;

use crate::{MediaService, UploadMeta};
use fetch::{FetchError, Fetcher};
use http::StatusCode;
use myelin_core::{Config, Error, ErrorKind, Result};
use serde_json::{Map, Value};
use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

/// Previews kept at most; the oldest go first.
const CACHE_ENTRIES: usize = 10_000;

pub(crate) struct Previewer {
    fetcher: Fetcher,
    cache: Mutex<HashMap<String, (Instant, Value)>>,
    cache_for: Duration,
}

impl Previewer {
    pub(crate) fn new(config: &Config) -> Result<Option<Self>> {
        let preview = &config.media.url_preview;
        if !preview.enabled {
            return Ok(None);
        }
        // reqwest is built without a TLS crypto provider of its own: ring is the process's one.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let policy = myelin_federation::IpPolicy::new(&preview.ip_range_denylist, &preview.ip_range_allowlist);
        let fetcher = Fetcher::new(policy, Duration::from_secs(preview.timeout_secs), preview.max_size)
            .map_err(Error::internal)?;
        Ok(Some(Previewer {
            fetcher,
            cache: Mutex::new(HashMap::new()),
            cache_for: Duration::from_secs(preview.cache_secs),
        }))
    }
}

impl MediaService {
    /// The OpenGraph preview of `url`. 404 `M_UNRECOGNIZED` when previews are off.
    pub async fn preview_url(&self, url: &str, ts: Option<u64>) -> Result<Value> {
        let Some(previewer) = &self.previewer else {
            return Err(Error::unrecognized(StatusCode::NOT_FOUND, "URL previews are disabled on this server"));
        };
        let key = format!("{}\n{url}", ts.unwrap_or(0));
        if let Some((at, value)) = previewer.cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key)
            && at.elapsed() < previewer.cache_for
        {
            return Ok(value.clone());
        }
        let value = self.make_preview(previewer, url).await?;
        let mut cache = previewer.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_ENTRIES {
            let cache_for = previewer.cache_for;
            cache.retain(|_, (at, _)| at.elapsed() < cache_for);
            if cache.len() >= CACHE_ENTRIES {
                cache.clear();
            }
        }
        cache.insert(key, (Instant::now(), value.clone()));
        Ok(value)
    }

    async fn make_preview(&self, previewer: &Previewer, url: &str) -> Result<Value> {
        let page = previewer.fetcher.get(url).await.map_err(fetch_error)?;
        let content_type = page.content_type.as_deref().unwrap_or_default().to_ascii_lowercase();
        let mut og = Map::new();
        if content_type.starts_with("image/") {
            self.attach_image(&mut og, page.body, &content_type).await?;
            og.insert("og:url".into(), Value::String(page.url.to_string()));
            return Ok(Value::Object(og));
        }
        if !content_type.starts_with("text/html") && !content_type.starts_with("application/xhtml") {
            return Ok(Value::Object(og));
        }
        og = html::open_graph(&String::from_utf8_lossy(&page.body));
        og.entry("og:url").or_insert_with(|| Value::String(page.url.to_string()));
        if let Some(Value::String(image)) = og.get("og:image").cloned() {
            // The image lives in our media repository: clients never fetch from the page's host.
            og.remove("og:image");
            if let Ok(image_url) = page.url.join(&image)
                && let Ok(fetched) = previewer.fetcher.get(image_url.as_str()).await
            {
                let image_type = fetched.content_type.clone().unwrap_or_default();
                if image_type.starts_with("image/") {
                    self.attach_image(&mut og, fetched.body, &image_type).await?;
                }
            }
        }
        Ok(Value::Object(og))
    }

    /// Stores image bytes as server-owned media and describes them as `og:image`.
    async fn attach_image(&self, og: &mut Map<String, Value>, bytes: bytes::Bytes, content_type: &str) -> Result<()> {
        let size = bytes.len();
        let dimensions = image::ImageReader::new(std::io::Cursor::new(&bytes))
            .with_guessed_format()
            .ok()
            .and_then(|r| r.into_dimensions().ok());
        let meta = UploadMeta {
            content_type: Some(content_type.to_owned()),
            filename: None,
            declared_length: Some(size as u64),
        };
        let stream = futures_util::stream::iter([Ok::<_, std::convert::Infallible>(bytes)]);
        let mxc = self.store_media(None, meta, stream).await?;
        og.insert("og:image".into(), Value::String(mxc.to_string()));
        og.insert("og:image:type".into(), Value::String(content_type.to_owned()));
        og.insert("matrix:image:size".into(), Value::from(size));
        if let Some((width, height)) = dimensions {
            og.insert("og:image:width".into(), Value::from(width));
            og.insert("og:image:height".into(), Value::from(height));
        }
        Ok(())
    }
}

fn fetch_error(error: FetchError) -> Error {
    match error {
        FetchError::Forbidden(why) => Error::forbidden(why),
        FetchError::BadUrl(why) => Error::invalid_param(why),
        FetchError::TooLarge => Error::too_large("The page is larger than the preview limit"),
        FetchError::Upstream(why) => Error::new(StatusCode::BAD_GATEWAY, ErrorKind::Unknown, why),
    }
}
