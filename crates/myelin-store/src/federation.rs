//! The federation transport's state: other servers' signing keys, this server's retired keys,
//! and per-destination backoff.

use crate::{Result, db::Db, db::on_db};

pub struct Federation<'a>(pub(crate) &'a Db);

/// A verify key of another server.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct VerifyKeyRow {
    pub key_id: String,
    pub public_key: String,
    pub valid_until_ts: i64,
    pub expired_ts: Option<i64>,
}

/// A server's latest key document, as received.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct KeyDocumentRow {
    pub server_name: String,
    pub document: String,
    pub valid_until_ts: i64,
    pub fetched_ts: i64,
}

/// One of this server's retired signing keys.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct OldSigningKeyRow {
    pub key_id: String,
    pub public_key: String,
    pub expired_ts: i64,
}

/// Why and until when a destination is not contacted.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct BackoffRow {
    pub destination: String,
    pub failures: i64,
    pub retry_after_ts: i64,
    pub last_error: String,
}

impl Federation<'_> {
    /// Stores a server's key document and its keys in one transaction. A document older than
    /// the stored one (smaller `valid_until_ts`) does not replace it, but its keys are kept.
    pub async fn save_server_keys(&self, document: &KeyDocumentRow, keys: &[VerifyKeyRow]) -> Result<()> {
        on_db!(self.0, write, |pool| {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO server_key_documents (server_name, document, valid_until_ts, fetched_ts)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (server_name) DO UPDATE SET document = excluded.document,
                     valid_until_ts = excluded.valid_until_ts, fetched_ts = excluded.fetched_ts
                 WHERE excluded.valid_until_ts >= server_key_documents.valid_until_ts",
            )
            .bind(&document.server_name)
            .bind(&document.document)
            .bind(document.valid_until_ts)
            .bind(document.fetched_ts)
            .execute(&mut *tx)
            .await?;
            for key in keys {
                // A key keeps the longest validity it was ever published with; once seen as
                // expired it stays expired at the earliest instant reported. A key ID the
                // server now uses for another key (it lost its key) takes the new one.
                sqlx::query(
                    "INSERT INTO server_verify_keys (server_name, key_id, public_key, valid_until_ts, expired_ts)
                     VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (server_name, key_id) DO UPDATE SET
                         public_key = excluded.public_key,
                         valid_until_ts = CASE WHEN server_verify_keys.public_key <> excluded.public_key
                                 OR excluded.valid_until_ts > server_verify_keys.valid_until_ts
                             THEN excluded.valid_until_ts ELSE server_verify_keys.valid_until_ts END,
                         expired_ts = CASE WHEN server_verify_keys.public_key <> excluded.public_key THEN excluded.expired_ts
                             WHEN server_verify_keys.expired_ts IS NULL THEN excluded.expired_ts
                             WHEN excluded.expired_ts IS NULL THEN server_verify_keys.expired_ts
                             WHEN excluded.expired_ts < server_verify_keys.expired_ts THEN excluded.expired_ts
                             ELSE server_verify_keys.expired_ts END",
                )
                .bind(&document.server_name)
                .bind(&key.key_id)
                .bind(&key.public_key)
                .bind(key.valid_until_ts)
                .bind(key.expired_ts)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// Every verify key stored for a server.
    pub async fn verify_keys(&self, server_name: &str) -> Result<Vec<VerifyKeyRow>> {
        Ok(on_db!(self.0, read, |pool| {
            sqlx::query_as(
                "SELECT key_id, public_key, valid_until_ts, expired_ts FROM server_verify_keys
                 WHERE server_name = $1 ORDER BY key_id",
            )
            .bind(server_name)
            .fetch_all(pool)
            .await?
        }))
    }

    pub async fn key_document(&self, server_name: &str) -> Result<Option<KeyDocumentRow>> {
        Ok(on_db!(self.0, read, |pool| {
            sqlx::query_as(
                "SELECT server_name, document, valid_until_ts, fetched_ts FROM server_key_documents
                 WHERE server_name = $1",
            )
            .bind(server_name)
            .fetch_optional(pool)
            .await?
        }))
    }

    /// Records a retired key of this server (idempotent).
    pub async fn add_old_signing_key(&self, key: &OldSigningKeyRow) -> Result<()> {
        on_db!(self.0, write, |pool| {
            sqlx::query(
                "INSERT INTO own_old_signing_keys (key_id, public_key, expired_ts) VALUES ($1, $2, $3)
                 ON CONFLICT (key_id) DO NOTHING",
            )
            .bind(&key.key_id)
            .bind(&key.public_key)
            .bind(key.expired_ts)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    pub async fn old_signing_keys(&self) -> Result<Vec<OldSigningKeyRow>> {
        Ok(on_db!(self.0, read, |pool| {
            sqlx::query_as("SELECT key_id, public_key, expired_ts FROM own_old_signing_keys ORDER BY key_id")
                .fetch_all(pool)
                .await?
        }))
    }

    /// Every destination currently backed off (loaded at start).
    pub async fn backoffs(&self) -> Result<Vec<BackoffRow>> {
        Ok(on_db!(self.0, read, |pool| {
            sqlx::query_as("SELECT destination, failures, retry_after_ts, last_error FROM destination_backoff")
                .fetch_all(pool)
                .await?
        }))
    }

    pub async fn set_backoff(&self, row: &BackoffRow) -> Result<()> {
        on_db!(self.0, write, |pool| {
            sqlx::query(
                "INSERT INTO destination_backoff (destination, failures, retry_after_ts, last_error)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (destination) DO UPDATE SET failures = excluded.failures,
                     retry_after_ts = excluded.retry_after_ts, last_error = excluded.last_error",
            )
            .bind(&row.destination)
            .bind(row.failures)
            .bind(row.retry_after_ts)
            .bind(&row.last_error)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Forgets destinations whose wait ended before `before_ts` (nobody has tried them since).
    pub async fn purge_backoffs(&self, before_ts: i64) -> Result<u64> {
        Ok(on_db!(self.0, write, |pool| {
            sqlx::query("DELETE FROM destination_backoff WHERE retry_after_ts < $1")
                .bind(before_ts)
                .execute(pool)
                .await?
                .rows_affected()
        }))
    }

    /// Forgets a destination's failures (it answered).
    pub async fn clear_backoff(&self, destination: &str) -> Result<()> {
        on_db!(self.0, write, |pool| {
            sqlx::query("DELETE FROM destination_backoff WHERE destination = $1")
                .bind(destination)
                .execute(pool)
                .await?;
        });
        Ok(())
    }
}
