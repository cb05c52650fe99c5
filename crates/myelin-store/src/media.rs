//! Media metadata: one row per `mxc://origin/media_id`. Bytes live in the blob store.

use crate::{
    Error, Result,
    db::{BeginWrite, Db, on_db},
};

pub struct Media<'a>(pub(crate) &'a Db);

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct MediaRow {
    pub origin: String,
    pub media_id: String,
    pub uploader: Option<String>,
    pub content_type: Option<String>,
    pub filename: Option<String>,
    pub size: Option<i64>,
    pub sha256: Option<String>,
    pub uploaded_ts: Option<i64>,
    pub created_ts: i64,
    pub unused_expires_ts: Option<i64>,
    pub authenticated_only: bool,
    pub quarantined: bool,
}

impl MediaRow {
    /// Whether the bytes are there (not an async upload still waiting).
    pub fn is_uploaded(&self) -> bool {
        self.sha256.is_some()
    }
}

/// What an upload into a pending media ID found.
#[derive(Debug, PartialEq)]
pub enum CompletePending {
    Done,
    /// No such pending ID (or it expired).
    NotFound,
    /// Someone else created the ID.
    NotCreator,
    /// The bytes were uploaded already.
    AlreadyUploaded,
}

impl Media<'_> {
    /// Stores a complete upload. `Error::Conflict` if the ID exists.
    pub async fn insert(&self, row: &MediaRow) -> Result<()> {
        on_db!(self.0, write, |pool| {
            sqlx::query(
                "INSERT INTO media (origin, media_id, uploader, content_type, filename, size, sha256, uploaded_ts,
                                    created_ts, unused_expires_ts, authenticated_only, quarantined)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            )
            .bind(&row.origin)
            .bind(&row.media_id)
            .bind(&row.uploader)
            .bind(&row.content_type)
            .bind(&row.filename)
            .bind(row.size)
            .bind(&row.sha256)
            .bind(row.uploaded_ts)
            .bind(row.created_ts)
            .bind(row.unused_expires_ts)
            .bind(row.authenticated_only)
            .bind(row.quarantined)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Reserves a pending media ID, unless `uploader` already has `max_pending` unexpired ones
    /// (then `Error::TooManyPending`).
    pub async fn create_pending(&self, row: &MediaRow, now_ms: i64, max_pending: i64) -> Result<()> {
        on_db!(self.0, write, |pool| {
            let mut tx = pool.begin_write().await?;
            let pending: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM media WHERE uploader = $1 AND sha256 IS NULL AND unused_expires_ts > $2",
            )
            .bind(&row.uploader)
            .bind(now_ms)
            .fetch_one(&mut *tx)
            .await?;
            if pending >= max_pending {
                return Err(Error::TooManyPending);
            }
            sqlx::query(
                "INSERT INTO media (origin, media_id, uploader, created_ts, unused_expires_ts, authenticated_only, quarantined)
                 VALUES ($1, $2, $3, $4, $5, FALSE, FALSE)",
            )
            .bind(&row.origin)
            .bind(&row.media_id)
            .bind(&row.uploader)
            .bind(row.created_ts)
            .bind(row.unused_expires_ts)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Fills a pending media ID with its bytes' metadata. Exactly one of concurrent callers
    /// gets `Done`; the others see `AlreadyUploaded`.
    pub async fn complete_pending(&self, row: &MediaRow, now_ms: i64) -> Result<CompletePending> {
        let Some(existing) = self.get(&row.origin, &row.media_id).await? else {
            return Ok(CompletePending::NotFound);
        };
        if existing.uploader != row.uploader {
            return Ok(CompletePending::NotCreator);
        }
        if existing.is_uploaded() {
            return Ok(CompletePending::AlreadyUploaded);
        }
        if existing.unused_expires_ts.is_some_and(|expires| expires <= now_ms) {
            return Ok(CompletePending::NotFound);
        }
        let updated = on_db!(self.0, write, |pool| {
            sqlx::query(
                "UPDATE media SET content_type = $3, filename = $4, size = $5, sha256 = $6, uploaded_ts = $7,
                                  unused_expires_ts = NULL, authenticated_only = $8
                 WHERE origin = $1 AND media_id = $2 AND sha256 IS NULL",
            )
            .bind(&row.origin)
            .bind(&row.media_id)
            .bind(&row.content_type)
            .bind(&row.filename)
            .bind(row.size)
            .bind(&row.sha256)
            .bind(row.uploaded_ts)
            .bind(row.authenticated_only)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(if updated == 1 { CompletePending::Done } else { CompletePending::AlreadyUploaded })
    }

    pub async fn get(&self, origin: &str, media_id: &str) -> Result<Option<MediaRow>> {
        Ok(on_db!(self.0, read, |pool| {
            sqlx::query_as("SELECT * FROM media WHERE origin = $1 AND media_id = $2")
                .bind(origin)
                .bind(media_id)
                .fetch_optional(pool)
                .await?
        }))
    }

    /// Bytes of uploads attributed to `uploader` (duplicates count for each upload).
    pub async fn bytes_uploaded_by(&self, uploader: &str) -> Result<i64> {
        Ok(on_db!(self.0, read, |pool| {
            sqlx::query_scalar::<_, Option<i64>>("SELECT CAST(SUM(size) AS BIGINT) FROM media WHERE uploader = $1")
                .bind(uploader)
                .fetch_one(pool)
                .await?
                .unwrap_or(0)
        }))
    }

    /// Forgets pending IDs whose time ran out; returns how many.
    pub async fn purge_expired_pending(&self, now_ms: i64) -> Result<u64> {
        Ok(on_db!(self.0, write, |pool| {
            sqlx::query("DELETE FROM media WHERE sha256 IS NULL AND unused_expires_ts <= $1")
                .bind(now_ms)
                .execute(pool)
                .await?
                .rows_affected()
        }))
    }
}

/// A thumbnail made of a media item.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ThumbnailRow {
    pub origin: String,
    pub media_id: String,
    pub width: i64,
    pub height: i64,
    pub method: String,
    pub animated: bool,
    pub content_type: String,
    pub sha256: String,
    pub size: i64,
    pub created_ts: i64,
}

impl Media<'_> {
    pub async fn thumbnail(
        &self,
        origin: &str,
        media_id: &str,
        (width, height): (i64, i64),
        method: &str,
        animated: bool,
    ) -> Result<Option<ThumbnailRow>> {
        Ok(on_db!(self.0, read, |pool| {
            sqlx::query_as(
                "SELECT * FROM media_thumbnails
                 WHERE origin = $1 AND media_id = $2 AND width = $3 AND height = $4 AND method = $5 AND animated = $6",
            )
            .bind(origin)
            .bind(media_id)
            .bind(width)
            .bind(height)
            .bind(method)
            .bind(animated)
            .fetch_optional(pool)
            .await?
        }))
    }

    /// Records a thumbnail; a concurrent twin already recorded wins quietly.
    pub async fn insert_thumbnail(&self, row: &ThumbnailRow) -> Result<()> {
        on_db!(self.0, write, |pool| {
            sqlx::query(
                "INSERT INTO media_thumbnails (origin, media_id, width, height, method, animated, content_type, sha256, size, created_ts)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                 ON CONFLICT (origin, media_id, width, height, method, animated) DO NOTHING",
            )
            .bind(&row.origin)
            .bind(&row.media_id)
            .bind(row.width)
            .bind(row.height)
            .bind(&row.method)
            .bind(row.animated)
            .bind(&row.content_type)
            .bind(&row.sha256)
            .bind(row.size)
            .bind(row.created_ts)
            .execute(pool)
            .await?;
        });
        Ok(())
    }
}

/// Which media `list_created_before` lists.
#[derive(Debug, Clone, Copy)]
pub enum MediaScope<'a> {
    All,
    /// Only media whose origin is this server.
    Local(&'a str),
    /// Only media cached from other servers.
    Remote(&'a str),
}

impl Media<'_> {
    /// Returns whether the media exists.
    pub async fn set_quarantined(&self, origin: &str, media_id: &str, quarantined: bool) -> Result<bool> {
        Ok(on_db!(self.0, write, |pool| {
            sqlx::query("UPDATE media SET quarantined = $3 WHERE origin = $1 AND media_id = $2")
                .bind(origin)
                .bind(media_id)
                .bind(quarantined)
                .execute(pool)
                .await?
                .rows_affected()
                == 1
        }))
    }

    pub async fn thumbnail_count(&self, origin: &str, media_id: &str) -> Result<i64> {
        Ok(on_db!(self.0, read, |pool| {
            sqlx::query_scalar("SELECT COUNT(*) FROM media_thumbnails WHERE origin = $1 AND media_id = $2")
                .bind(origin)
                .bind(media_id)
                .fetch_one(pool)
                .await?
        }))
    }

    /// Deletes a media item and its thumbnails; returns the blobs they used (None if there was
    /// no such media).
    pub async fn delete(&self, origin: &str, media_id: &str) -> Result<Option<Vec<String>>> {
        Ok(on_db!(self.0, write, |pool| {
            let mut tx = pool.begin_write().await?;
            let mut blobs: Vec<String> =
                sqlx::query_scalar("SELECT sha256 FROM media_thumbnails WHERE origin = $1 AND media_id = $2")
                    .bind(origin)
                    .bind(media_id)
                    .fetch_all(&mut *tx)
                    .await?;
            let own: Option<Option<String>> =
                sqlx::query_scalar("DELETE FROM media WHERE origin = $1 AND media_id = $2 RETURNING sha256")
                    .bind(origin)
                    .bind(media_id)
                    .fetch_optional(&mut *tx)
                    .await?;
            sqlx::query("DELETE FROM media_thumbnails WHERE origin = $1 AND media_id = $2")
                .bind(origin)
                .bind(media_id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            own.map(|sha256| {
                blobs.extend(sha256);
                blobs
            })
        }))
    }

    /// Media created before `before_ts`, as (origin, media_id).
    pub async fn list_created_before(&self, before_ts: i64, scope: MediaScope<'_>) -> Result<Vec<(String, String)>> {
        let (sql, server) = match scope {
            MediaScope::All => ("SELECT origin, media_id FROM media WHERE created_ts < $1 AND $2 = ''", ""),
            MediaScope::Local(server) => {
                ("SELECT origin, media_id FROM media WHERE created_ts < $1 AND origin = $2", server)
            }
            MediaScope::Remote(server) => {
                ("SELECT origin, media_id FROM media WHERE created_ts < $1 AND origin <> $2", server)
            }
        };
        Ok(on_db!(self.0, read, |pool| { sqlx::query_as(sql).bind(before_ts).bind(server).fetch_all(pool).await? }))
    }

    /// Whether any media or thumbnail still uses the blob.
    pub async fn blob_in_use(&self, sha256: &str) -> Result<bool> {
        Ok(on_db!(self.0, read, |pool| {
            sqlx::query_scalar::<_, i64>(
                "SELECT (SELECT COUNT(*) FROM media WHERE sha256 = $1) + (SELECT COUNT(*) FROM media_thumbnails WHERE sha256 = $1)",
            )
            .bind(sha256)
            .fetch_one(pool)
            .await?
                > 0
        }))
    }
}
