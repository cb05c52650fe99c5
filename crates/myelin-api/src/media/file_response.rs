//! A media file as an HTTP response: streamed from its blob, with the headers that keep a
//! browser from running it, caching by content hash, and byte ranges for seeking.

use crate::ApiError;
use axum::{
    body::Body,
    response::{IntoResponse, Response},
};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use myelin_core::Error;
use myelin_media::FsBlobStore;
use myelin_store::{MediaRow, ThumbnailRow};

/// The sandbox the spec recommends, plus `media-src 'self'` so audio and video still play.
const CONTENT_SECURITY_POLICY: &str = "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; \
     style-src 'unsafe-inline'; media-src 'self'; object-src 'self';";

/// Types a browser may show inline (the list of spec v1.12); everything else is an attachment.
const INLINE_TYPES: &[&str] = &[
    "text/css",
    "text/plain",
    "text/csv",
    "application/json",
    "application/ld+json",
    "image/jpeg",
    "image/gif",
    "image/png",
    "image/apng",
    "image/webp",
    "image/avif",
    "video/mp4",
    "video/webm",
    "video/ogg",
    "video/quicktime",
    "audio/mp4",
    "audio/webm",
    "audio/aac",
    "audio/mpeg",
    "audio/ogg",
    "audio/wave",
    "audio/wav",
    "audio/x-wav",
    "audio/x-pn-wav",
    "audio/flac",
    "audio/x-flac",
];

/// What a file response is made of: a media item or one of its thumbnails.
pub struct ServedFile<'a> {
    pub sha256: &'a str,
    pub size: i64,
    pub content_type: Option<&'a str>,
    pub filename: Option<&'a str>,
}

impl<'a> ServedFile<'a> {
    pub fn media(row: &'a MediaRow, filename: Option<&'a str>) -> Result<Self, ApiError> {
        let (Some(sha256), Some(size)) = (row.sha256.as_deref(), row.size) else {
            return Err(Error::not_found("Media not found").into());
        };
        Ok(ServedFile {
            sha256,
            size,
            content_type: row.content_type.as_deref(),
            filename: filename.or(row.filename.as_deref()),
        })
    }

    pub fn thumbnail(row: &'a ThumbnailRow) -> Self {
        ServedFile { sha256: &row.sha256, size: row.size, content_type: Some(&row.content_type), filename: None }
    }
}

/// The response for `file`, honouring `If-None-Match` and `Range`.
pub async fn serve_file(
    blobs: &FsBlobStore,
    file: ServedFile<'_>,
    request_headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let sha256 = file.sha256;
    let size = file.size.max(0) as u64;
    let etag = format!("\"{sha256}\"");
    let content_type = file.content_type.unwrap_or("application/octet-stream");
    let filename = file.filename;

    let mut headers = HeaderMap::new();
    let mut set = |name: header::HeaderName, value: &str| {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    };
    set(header::ETAG, &etag);
    set(header::CACHE_CONTROL, "private, max-age=31536000, immutable");
    set(header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY);
    set(header::HeaderName::from_static("cross-origin-resource-policy"), "cross-origin");
    set(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(header::ACCEPT_RANGES, "bytes");
    if if_none_match(request_headers, &etag) {
        return Ok((StatusCode::NOT_MODIFIED, headers).into_response());
    }
    set(header::CONTENT_TYPE, content_type);
    set(header::CONTENT_DISPOSITION, &content_disposition(content_type, filename));

    let range = match request_headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(value) => match parse_range(value, size) {
            Ok(range) => range,
            Err(()) => {
                set(header::CONTENT_RANGE, &format!("bytes */{size}"));
                let error = Error::new(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    myelin_core::ErrorKind::Unknown,
                    "The requested range is not satisfiable",
                );
                let mut response = ApiError(error).into_response();
                response.headers_mut().extend(headers);
                return Ok(response);
            }
        },
        None => None,
    };

    let (status, start, length) = match range {
        Some((start, end)) => {
            set(header::CONTENT_RANGE, &format!("bytes {start}-{end}/{size}"));
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        None => (StatusCode::OK, 0, size),
    };
    let stream = blobs.read_range(sha256, start, length).map_err(|e| blob_open_error(sha256, e))?;
    set(header::CONTENT_LENGTH, &length.to_string());
    let body = Body::from_stream(stream);
    Ok((status, headers, body).into_response())
}

/// A blob that cannot be opened: 404 when it is missing or shorter than its row (content lost
/// to a power cut, `media.sync_uploads`), else a server error.
pub(crate) fn blob_open_error(sha256: &str, e: std::io::Error) -> Error {
    match e.kind() {
        std::io::ErrorKind::NotFound => {
            tracing::error!(sha256, "a media file is missing or cut short: {e}");
            Error::not_found("the content of this media is lost")
        }
        _ => Error::internal(format!("opening blob {sha256}: {e}")),
    }
}

fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers.get_all(header::IF_NONE_MATCH).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(
        |tag| {
            let tag = tag.trim();
            tag == "*" || tag == etag || tag.strip_prefix("W/") == Some(etag)
        },
    )
}

/// One `bytes=` range as inclusive (start, end); `Ok(None)` for a header we ignore (other
/// units, several ranges), `Err` for a range outside the file.
fn parse_range(value: &str, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = value.trim().strip_prefix("bytes=") else { return Ok(None) };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((first, last)) = spec.trim().split_once('-') else { return Ok(None) };
    let (first, last) = (first.trim(), last.trim());
    let range = match (first.parse::<u64>(), last.parse::<u64>()) {
        (Ok(start), Ok(end)) if start <= end => (start, end.min(size.saturating_sub(1))),
        (Ok(start), Err(_)) if last.is_empty() => (start, size.saturating_sub(1)),
        (Err(_), Ok(suffix)) if first.is_empty() && suffix > 0 => (size.saturating_sub(suffix), size.saturating_sub(1)),
        _ => return Ok(None),
    };
    if size == 0 || range.0 >= size {
        return Err(());
    }
    Ok(Some(range))
}

/// RFC 6266: `inline` only for types a browser shows safely, the name quoted when it is plain
/// ASCII and as `filename*=utf-8''…` otherwise.
pub(crate) fn content_disposition(content_type: &str, filename: Option<&str>) -> String {
    let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    let kind = if INLINE_TYPES.contains(&essence.as_str()) { "inline" } else { "attachment" };
    let Some(name) = filename else { return kind.to_owned() };
    if name.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\') {
        return format!("{kind}; filename=\"{name}\"");
    }
    let mut encoded = String::new();
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    format!("{kind}; filename*=utf-8''{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Ok(Some((0, 9))));
        assert_eq!(parse_range("bytes=90-", 100), Ok(Some((90, 99))));
        assert_eq!(parse_range("bytes=-10", 100), Ok(Some((90, 99))));
        assert_eq!(parse_range("bytes=50-500", 100), Ok(Some((50, 99))));
        assert_eq!(parse_range("bytes=100-", 100), Err(()));
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Ok(None));
        assert_eq!(parse_range("items=0-1", 100), Ok(None));
        assert_eq!(parse_range("bytes=5-1", 100), Ok(None));
    }

    #[test]
    fn dispositions() {
        assert_eq!(content_disposition("image/png", Some("cat.png")), "inline; filename=\"cat.png\"");
        assert_eq!(content_disposition("text/html; charset=utf-8", Some("x.html")), "attachment; filename=\"x.html\"");
        assert_eq!(content_disposition("image/svg+xml", None), "attachment");
        assert_eq!(
            content_disposition("text/plain", Some("naïve \"q\".txt")),
            "inline; filename*=utf-8''na%C3%AFve%20%22q%22.txt"
        );
    }
}
