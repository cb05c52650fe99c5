//! The media service: uploads, async uploads, lookups (waiting for pending uploads) and the
//! freeze of unauthenticated media.

use crate::{
    blobs::{BlobError, FsBlobStore, StoredBlob},
    waiters::Waiters,
};
use bytes::Bytes;
use futures_util::Stream;
use http::StatusCode;
use myelin_core::{
    Config, Error, ErrorKind, Result,
    config::FreezeSetting,
    util::{now_ms, random_string},
};
use myelin_federation::FederationClient;
use myelin_store::{CompletePending, MediaRow, Store};
use ruma::{OwnedMxcUri, ServerName, UserId};
use std::{sync::Arc, time::Duration};

/// How long a download may wait for a pending upload at most (the spec's `timeout_ms` cap).
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// Meta key under which the instant of a `freeze_unauthenticated = true` freeze is kept.
const FREEZE_META_KEY: &str = "media.freeze_started_ts";

pub struct MediaService {
    pub(crate) store: Store,
    pub(crate) blobs: FsBlobStore,
    pub(crate) config: Arc<Config>,
    /// Uploads at or after this instant (ms) are authenticated-only.
    freeze_ts: Option<i64>,
    waiters: Waiters,
    pub(crate) renders: crate::thumbnails::Renders,
    /// None when URL previews are off.
    pub(crate) previewer: Option<crate::preview::Previewer>,
    /// Requests to other servers (remote media).
    pub(crate) federation: Arc<FederationClient>,
    pub(crate) remote: crate::remote::RemoteFetches,
}

/// What an upload says about itself besides its bytes.
#[derive(Debug, Clone, Default)]
pub struct UploadMeta {
    pub content_type: Option<String>,
    pub filename: Option<String>,
    /// The `Content-Length`, when the client sent one.
    pub declared_length: Option<u64>,
}

/// Who is asking for media, which decides what they may see.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Access {
    /// The deprecated unauthenticated endpoints: no frozen media; other servers' media only
    /// when `allow_remote`.
    Unauthenticated { allow_remote: bool },
    /// A user through the authenticated endpoints.
    User,
    /// A server admin: quarantined media too.
    Admin,
}

impl Access {
    pub fn of_user(is_admin: bool) -> Self {
        if is_admin { Access::Admin } else { Access::User }
    }
}

/// A media ID as this server hands them out and accepts them: `[A-Za-z0-9_-]`, 1–255 bytes.
pub fn is_valid_media_id(media_id: &str) -> bool {
    !media_id.is_empty()
        && media_id.len() <= 255
        && media_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl MediaService {
    /// Opens the blob store and settles when the freeze starts (stored on first start).
    pub async fn new(store: Store, config: Arc<Config>, federation: Arc<FederationClient>) -> Result<Self> {
        let blobs = FsBlobStore::open(&config.media_path(), config.sync_uploads())
            .map_err(|e| Error::internal(format!("media store at {}: {e}", config.media_path().display())))?;
        let freeze_ts = match &config.media.freeze_unauthenticated {
            FreezeSetting::Enabled(false) => None,
            FreezeSetting::Enabled(true) => {
                let stored = store.meta().get_or_insert(FREEZE_META_KEY, &now_ms().to_string()).await?;
                Some(stored.parse().map_err(|e| Error::internal(format!("stored freeze instant: {e}")))?)
            }
            setting @ FreezeSetting::Since(_) => setting.instant_ms().transpose().map_err(Error::internal)?,
        };
        if let Some(ts) = freeze_ts {
            tracing::info!(freeze_ts = ts, "unauthenticated media is frozen for uploads from this instant on");
        }
        let previewer = crate::preview::Previewer::new(&config)?;
        Ok(MediaService {
            store,
            blobs,
            config,
            freeze_ts,
            waiters: Waiters::default(),
            renders: Default::default(),
            previewer,
            federation,
            remote: Default::default(),
        })
    }

    pub fn blobs(&self) -> &FsBlobStore {
        &self.blobs
    }

    pub fn max_upload_size(&self) -> u64 {
        self.config.media.max_upload_size
    }

    pub(crate) fn is_frozen_at(&self, ts: i64) -> bool {
        self.freeze_ts.is_some_and(|freeze| ts >= freeze)
    }

    /// Streams an upload into the blob store and records it; returns its `mxc://` URI.
    pub async fn upload<S, E>(&self, uploader: &UserId, meta: UploadMeta, body: S) -> Result<OwnedMxcUri>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: std::fmt::Display,
    {
        self.store_media(Some(uploader), meta, body).await
    }

    /// Stores new local media; `uploader` None is media the server made itself (previews).
    pub(crate) async fn store_media<S, E>(
        &self,
        uploader: Option<&UserId>,
        meta: UploadMeta,
        body: S,
    ) -> Result<OwnedMxcUri>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: std::fmt::Display,
    {
        let blob = self.receive(uploader, meta.declared_length, body).await?;
        let media_id = random_string(32);
        let row = self.stored_row(self.config.server_name.as_str(), &media_id, uploader, meta, &blob);
        let inserted = self.store.media().insert(&row).await;
        self.settle(&blob).await?;
        inserted?;
        Ok(OwnedMxcUri::from(format!("mxc://{}/{media_id}", self.config.server_name)))
    }

    /// The row of an item stored now in `blob`: frozen if stored at or after the freeze (for
    /// remote media, "stored" is first cached).
    pub(crate) fn stored_row(
        &self,
        origin: &str,
        media_id: &str,
        uploader: Option<&UserId>,
        meta: UploadMeta,
        blob: &StoredBlob,
    ) -> MediaRow {
        let now = now_ms();
        MediaRow {
            origin: origin.to_owned(),
            media_id: media_id.to_owned(),
            uploader: uploader.map(ToString::to_string),
            content_type: meta.content_type,
            filename: meta.filename,
            size: Some(blob.size as i64),
            sha256: Some(blob.sha256.clone()),
            uploaded_ts: Some(now),
            created_ts: now,
            unused_expires_ts: None,
            authenticated_only: self.is_frozen_at(now),
            quarantined: false,
        }
    }

    /// Checks the size limit and the quota, then writes the blob (durable before returning).
    async fn receive<S, E>(
        &self,
        uploader: Option<&UserId>,
        declared_length: Option<u64>,
        body: S,
    ) -> Result<StoredBlob>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: std::fmt::Display,
    {
        let max = self.config.media.max_upload_size;
        let too_large = || Error::too_large(format!("The upload is larger than the limit of {max} bytes"));
        if declared_length.is_some_and(|len| len > max) {
            return Err(too_large());
        }
        let quota_left = match (self.config.media.max_bytes_per_user, uploader) {
            (Some(quota), Some(uploader)) => {
                let used = self.store.media().bytes_uploaded_by(uploader.as_str()).await?.max(0) as u64;
                let left = quota.saturating_sub(used);
                if declared_length.is_some_and(|len| len > left) || left == 0 {
                    return Err(quota_exceeded(quota));
                }
                Some((quota, left))
            }
            _ => None,
        };
        let limit = quota_left.map_or(max, |(_, left)| left.min(max));
        match self.blobs.write(body, limit).await {
            Ok(blob) => Ok(blob),
            Err(BlobError::TooLarge) => match quota_left {
                Some((quota, left)) if left < max => Err(quota_exceeded(quota)),
                _ => Err(too_large()),
            },
            Err(BlobError::Body(e)) => Err(Error::bad_json(format!("The upload broke off: {e}"))),
            Err(BlobError::Io(e)) => Err(Error::internal(format!("writing a blob: {e}"))),
        }
    }

    /// After the row using a blob is written (or not): see `FsBlobStore::settle`.
    pub(crate) async fn settle(&self, blob: &StoredBlob) -> Result<()> {
        self.blobs.settle(blob).await.map_err(|e| Error::internal(format!("settling blob {}: {e}", blob.sha256)))
    }

    /// `POST /_matrix/media/v1/create`: reserves an ID to upload into later.
    pub async fn create_pending(&self, uploader: &UserId) -> Result<(OwnedMxcUri, i64)> {
        let media_id = random_string(32);
        let now = now_ms();
        let expires = now + (self.config.media.unused_expiry_secs as i64) * 1000;
        let row = MediaRow {
            origin: self.config.server_name.to_string(),
            media_id: media_id.clone(),
            uploader: Some(uploader.to_string()),
            content_type: None,
            filename: None,
            size: None,
            sha256: None,
            uploaded_ts: None,
            created_ts: now,
            unused_expires_ts: Some(expires),
            authenticated_only: false,
            quarantined: false,
        };
        match self.store.media().create_pending(&row, now, self.config.media.max_pending_uploads as i64).await {
            Ok(()) => Ok((OwnedMxcUri::from(format!("mxc://{}/{media_id}", self.config.server_name)), expires)),
            Err(myelin_store::Error::TooManyPending) => Err(Error::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorKind::LimitExceeded(Default::default()),
                "Too many media IDs are waiting for their upload; upload to them or wait for them to expire",
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// `PUT /_matrix/media/v3/upload/{serverName}/{mediaId}`: the bytes of a reserved ID.
    pub async fn upload_pending<S, E>(
        &self,
        uploader: &UserId,
        server_name: &ServerName,
        media_id: &str,
        meta: UploadMeta,
        body: S,
    ) -> Result<()>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: std::fmt::Display,
    {
        if server_name != self.config.server_name || !is_valid_media_id(media_id) {
            return Err(Error::not_found("No such media ID"));
        }
        // Refuse early what would be refused after the transfer.
        let Some(existing) = self.store.media().get(server_name.as_str(), media_id).await? else {
            return Err(Error::not_found("No such media ID"));
        };
        if existing.uploader.as_deref() != Some(uploader.as_str()) {
            return Err(Error::forbidden("Only the creator of this media ID may upload to it"));
        }
        if existing.is_uploaded() {
            return Err(cannot_overwrite());
        }
        let blob = self.receive(Some(uploader), meta.declared_length, body).await?;
        let now = now_ms();
        let row = MediaRow {
            content_type: meta.content_type,
            filename: meta.filename,
            size: Some(blob.size as i64),
            sha256: Some(blob.sha256.clone()),
            uploaded_ts: Some(now),
            authenticated_only: self.is_frozen_at(now),
            ..existing
        };
        let completed = self.store.media().complete_pending(&row, now).await;
        self.settle(&blob).await?;
        match completed? {
            CompletePending::Done => {
                self.waiters.wake(&waiter_key(server_name.as_str(), media_id));
                Ok(())
            }
            CompletePending::AlreadyUploaded => Err(cannot_overwrite()),
            CompletePending::NotCreator => Err(Error::forbidden("Only the creator of this media ID may upload to it")),
            CompletePending::NotFound => Err(Error::not_found("No such media ID")),
        }
    }

    /// The metadata of uploaded media, waiting up to `timeout` (capped at 60 s) for a pending
    /// upload. Frozen media is not found through the unauthenticated endpoints, quarantined
    /// media by anyone but admins.
    pub async fn find(
        &self,
        server_name: &ServerName,
        media_id: &str,
        timeout: Duration,
        access: Access,
    ) -> Result<MediaRow> {
        let not_found = || Error::not_found("Media not found");
        if !is_valid_media_id(media_id) {
            return Err(not_found());
        }
        if server_name != self.config.server_name {
            return self.find_remote(server_name, media_id, timeout, access).await;
        }
        self.waiters.forget_idle();
        let deadline = tokio::time::Instant::now() + timeout.min(MAX_WAIT);
        let key = waiter_key(server_name.as_str(), media_id);
        loop {
            let notify = self.waiters.get(&key);
            let notified = notify.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the check, so an upload landing in between still wakes us.
            notified.as_mut().enable();
            let row = self.store.media().get(server_name.as_str(), media_id).await?.ok_or_else(not_found)?;
            if self.hidden(&row, access) {
                return Err(not_found());
            }
            if row.is_uploaded() {
                return Ok(row);
            }
            if row.unused_expires_ts.is_some_and(|expires| expires <= now_ms()) {
                return Err(not_found());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    ErrorKind::NotYetUploaded,
                    "The media has not been uploaded yet",
                ));
            }
            // Another process may complete the upload: look again now and then as well.
            let poll = deadline.min(tokio::time::Instant::now() + Duration::from_millis(500));
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(poll) => {}
            }
        }
    }

    /// Whether `access` may not see the item: frozen media through the unauthenticated
    /// endpoints, quarantined media for anyone but admins.
    pub(crate) fn hidden(&self, row: &MediaRow, access: Access) -> bool {
        match access {
            Access::Unauthenticated { .. } => row.quarantined || row.authenticated_only,
            Access::User => row.quarantined,
            Access::Admin => false,
        }
    }

    /// Forgets pending IDs nobody uploaded to in time.
    pub async fn purge_expired_pending(&self) -> Result<u64> {
        Ok(self.store.media().purge_expired_pending(now_ms()).await?)
    }
}

fn waiter_key(origin: &str, media_id: &str) -> String {
    format!("{origin}/{media_id}")
}

fn quota_exceeded(quota: u64) -> Error {
    Error::forbidden(format!("This upload would take you past your media quota of {quota} bytes"))
}

fn cannot_overwrite() -> Error {
    Error::new(StatusCode::CONFLICT, ErrorKind::CannotOverwriteMedia, "This media ID has been uploaded to already")
}
