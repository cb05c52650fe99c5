//! Server-side key backup (`/room_keys/version` and `/room_keys/keys`): the server keeps
//! encrypted session keys for the user's other devices, in versions; keys may only be written
//! to the current (latest) version.

use crate::service::RoomService;
use myelin_core::{Error, ErrorKind, Result};
use myelin_store::{BackupKeyRow, BackupVersionRow};
use ruma::UserId;
use serde_json::Value;

/// A backup version as `/room_keys/version` shows it.
#[derive(Debug, Clone)]
pub struct BackupVersion {
    pub version: String,
    pub algorithm: String,
    /// The full `{"algorithm", "auth_data"}` object the client uploaded.
    pub auth_data: Value,
    pub etag: String,
    pub count: u64,
}

/// One session's backed-up key.
#[derive(Debug, Clone)]
pub struct BackupKey {
    pub room_id: String,
    pub session_id: String,
    pub first_message_index: u64,
    pub forwarded_count: u64,
    pub is_verified: bool,
    /// The encrypted `session_data` object.
    pub session_data: Value,
}

fn parse_version(version: &str) -> Option<i64> {
    version.parse::<i64>().ok().filter(|v| *v > 0)
}

fn no_version(version: &str) -> Error {
    Error::not_found(format!("Unknown backup version {version}"))
}

impl From<BackupVersionRow> for BackupVersion {
    fn from(row: BackupVersionRow) -> Self {
        BackupVersion {
            version: row.version.to_string(),
            algorithm: row.algorithm,
            auth_data: serde_json::from_str(&row.auth_data).unwrap_or(Value::Null),
            etag: row.etag.to_string(),
            count: row.count.max(0) as u64,
        }
    }
}

impl RoomService {
    /// `POST /room_keys/version`: a new version, which becomes the current one.
    pub async fn create_backup(&self, user: &UserId, algorithm: &str, auth_data: &Value) -> Result<String> {
        if !auth_data.is_object() {
            return Err(Error::bad_json("auth_data must be an object"));
        }
        let auth = serde_json::to_string(auth_data).map_err(Error::internal)?;
        Ok(self.store.backups().create(user.as_str(), algorithm, &auth).await?.to_string())
    }

    /// `GET /room_keys/version[/{version}]`: the latest version when `version` is None.
    pub async fn backup_version(&self, user: &UserId, version: Option<&str>) -> Result<BackupVersion> {
        let wanted = match version {
            Some(v) => Some(parse_version(v).ok_or_else(|| no_version(v))?),
            None => None,
        };
        match self.store.backups().version(user.as_str(), wanted).await? {
            Some(row) => Ok(row.into()),
            None => Err(no_version(version.unwrap_or("(none)"))),
        }
    }

    /// `PUT /room_keys/version/{version}`: new auth data; the algorithm may not change.
    pub async fn update_backup(&self, user: &UserId, version: &str, algorithm: &str, auth_data: &Value) -> Result<()> {
        let current = self.backup_version(user, Some(version)).await?;
        if current.algorithm != algorithm {
            return Err(Error::invalid_param("The algorithm of a backup version cannot change"));
        }
        let auth = serde_json::to_string(auth_data).map_err(Error::internal)?;
        let v = parse_version(version).ok_or_else(|| no_version(version))?;
        if !self.store.backups().update(user.as_str(), v, &auth).await? {
            return Err(no_version(version));
        }
        Ok(())
    }

    /// `DELETE /room_keys/version/{version}`, with its keys.
    pub async fn delete_backup(&self, user: &UserId, version: &str) -> Result<()> {
        let v = parse_version(version).ok_or_else(|| no_version(version))?;
        if !self.store.backups().delete(user.as_str(), v).await? {
            return Err(no_version(version));
        }
        Ok(())
    }

    /// `PUT /room_keys/keys[…]`: only into the current version (else 403
    /// `M_WRONG_ROOM_KEYS_VERSION` naming it); returns the version's new (etag, count).
    pub async fn put_backup_keys(&self, user: &UserId, version: &str, keys: &[BackupKey]) -> Result<(String, u64)> {
        let current = self.store.backups().version(user.as_str(), None).await?;
        let Some(current) = current else { return Err(no_version(version)) };
        if current.version.to_string() != version {
            return Err(Error::new(
                http::StatusCode::FORBIDDEN,
                ErrorKind::WrongRoomKeysVersion(ruma::api::error::WrongRoomKeysVersionErrorData::new(
                    current.version.to_string(),
                )),
                "Wrong backup version.",
            ));
        }
        let mut rows = Vec::with_capacity(keys.len());
        for k in keys {
            rows.push(BackupKeyRow {
                room_id: k.room_id.clone(),
                session_id: k.session_id.clone(),
                first_message_index: i64::try_from(k.first_message_index).unwrap_or(i64::MAX),
                forwarded_count: i64::try_from(k.forwarded_count).unwrap_or(i64::MAX),
                is_verified: k.is_verified,
                session_data: serde_json::to_string(&k.session_data).map_err(Error::internal)?,
            });
        }
        self.store.backups().put_keys(user.as_str(), current.version, &rows).await?;
        let after = self.backup_version(user, Some(version)).await?;
        Ok((after.etag, after.count))
    }

    /// `GET /room_keys/keys[…]`.
    pub async fn backup_keys(
        &self,
        user: &UserId,
        version: &str,
        room_id: Option<&str>,
        session_id: Option<&str>,
    ) -> Result<Vec<BackupKey>> {
        let v = self.backup_version(user, Some(version)).await?;
        let v: i64 = v.version.parse().map_err(Error::internal)?;
        let rows = self.store.backups().keys(user.as_str(), v, room_id, session_id).await?;
        rows.into_iter()
            .map(|r| {
                Ok(BackupKey {
                    room_id: r.room_id,
                    session_id: r.session_id,
                    first_message_index: r.first_message_index.max(0) as u64,
                    forwarded_count: r.forwarded_count.max(0) as u64,
                    is_verified: r.is_verified,
                    session_data: serde_json::from_str(&r.session_data).map_err(Error::internal)?,
                })
            })
            .collect()
    }

    /// `DELETE /room_keys/keys[…]`; returns the version's new (etag, count).
    pub async fn delete_backup_keys(
        &self,
        user: &UserId,
        version: &str,
        room_id: Option<&str>,
        session_id: Option<&str>,
    ) -> Result<(String, u64)> {
        let v = self.backup_version(user, Some(version)).await?;
        let n: i64 = v.version.parse().map_err(Error::internal)?;
        self.store.backups().delete_keys(user.as_str(), n, room_id, session_id).await?;
        let after = self.backup_version(user, Some(version)).await?;
        Ok((after.etag, after.count))
    }
}
