//! The content repository: uploads streamed into a content-addressed blob store, metadata in
//! the store, async uploads (`/create`), the v1.11 freeze of unauthenticated media.

mod admin;
mod blobs;
mod preview;
mod remote;
mod service;
mod thumbnail;
mod thumbnails;
mod waiters;

pub use admin::PurgeScope;
pub use blobs::{BlobError, FsBlobStore, StoredBlob};
pub use service::{Access, MediaService, UploadMeta, is_valid_media_id};
pub use thumbnails::ThumbnailRequest;
