//! Server-side key backups (`/room_keys`): versions with their auth data, and the encrypted
//! session keys in them. Which of two keys for a session is kept is decided here, in the
//! upsert, so concurrent uploads cannot undo each other.

use crate::{
    Result,
    db::{BeginWrite, Db, on_db},
};

/// Changes a version's etag inside the caller's transaction `$tx`.
macro_rules! bump_etag {
    ($tx:ident, $user_id:expr, $version:expr) => {
        sqlx::query("UPDATE backup_versions SET etag = etag + 1 WHERE user_id = $1 AND version = $2")
            .bind($user_id)
            .bind($version)
            .execute(&mut *$tx)
            .await?;
    };
}

pub struct Backups<'a>(pub(crate) &'a Db);

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BackupVersionRow {
    pub version: i64,
    pub algorithm: String,
    pub auth_data: String,
    pub etag: i64,
    pub count: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BackupKeyRow {
    pub room_id: String,
    pub session_id: String,
    pub first_message_index: i64,
    pub forwarded_count: i64,
    pub is_verified: bool,
    pub session_data: String,
}

const VERSION_COLUMNS: &str = "v.version, v.algorithm, v.auth_data, v.etag,
    (SELECT COUNT(*) FROM backup_keys k WHERE k.user_id = v.user_id AND k.version = v.version) AS count";

impl Backups<'_> {
    /// Creates a backup version (numbers are never reused); returns it.
    pub async fn create(&self, user_id: &str, algorithm: &str, auth_data: &str) -> Result<i64> {
        on_db!(self.0, write, |pool| {
            let mut tx = pool.begin_write().await?;
            let version: i64 =
                sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) + 1 FROM backup_versions WHERE user_id = $1")
                    .bind(user_id)
                    .fetch_one(&mut *tx)
                    .await?;
            sqlx::query("INSERT INTO backup_versions (user_id, version, algorithm, auth_data) VALUES ($1, $2, $3, $4)")
                .bind(user_id)
                .bind(version)
                .bind(algorithm)
                .bind(auth_data)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(version)
        })
    }

    /// A version that is not deleted; the latest when `version` is None.
    pub async fn version(&self, user_id: &str, version: Option<i64>) -> Result<Option<BackupVersionRow>> {
        let sql = match version {
            Some(_) => format!(
                "SELECT {VERSION_COLUMNS} FROM backup_versions v WHERE v.user_id = $1 AND v.version = $2 AND NOT v.deleted"
            ),
            None => format!(
                "SELECT {VERSION_COLUMNS} FROM backup_versions v WHERE v.user_id = $1 AND NOT v.deleted
                 AND $2 = 0 ORDER BY v.version DESC LIMIT 1"
            ),
        };
        Ok(on_db!(self.0, read, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
                .bind(user_id)
                .bind(version.unwrap_or(0))
                .fetch_optional(pool)
                .await?
        }))
    }

    /// Replaces a version's auth data; false when there is no such version.
    pub async fn update(&self, user_id: &str, version: i64, auth_data: &str) -> Result<bool> {
        Ok(on_db!(self.0, write, |pool| {
            sqlx::query("UPDATE backup_versions SET auth_data = $3 WHERE user_id = $1 AND version = $2 AND NOT deleted")
                .bind(user_id)
                .bind(version)
                .bind(auth_data)
                .execute(pool)
                .await?
                .rows_affected()
                > 0
        }))
    }

    /// Deletes a version and its keys; false when there is no such version.
    pub async fn delete(&self, user_id: &str, version: i64) -> Result<bool> {
        on_db!(self.0, write, |pool| {
            let mut tx = pool.begin_write().await?;
            let found = sqlx::query(
                "UPDATE backup_versions SET deleted = TRUE WHERE user_id = $1 AND version = $2 AND NOT deleted",
            )
            .bind(user_id)
            .bind(version)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                > 0;
            sqlx::query("DELETE FROM backup_keys WHERE user_id = $1 AND version = $2")
                .bind(user_id)
                .bind(version)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(found)
        })
    }

    /// Stores session keys in a version, keeping for each session the better key: verified
    /// over unverified, then the lower first message index, then the lower forwarded count.
    /// The version's etag changes when any key did.
    pub async fn put_keys(&self, user_id: &str, version: i64, keys: &[BackupKeyRow]) -> Result<()> {
        on_db!(self.0, write, |pool| {
            let mut tx = pool.begin_write().await?;
            let mut changed = 0;
            for k in keys {
                changed += sqlx::query(
                    "INSERT INTO backup_keys (user_id, version, room_id, session_id, first_message_index,
                       forwarded_count, is_verified, session_data) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                     ON CONFLICT (user_id, version, room_id, session_id) DO UPDATE SET
                       first_message_index = excluded.first_message_index, forwarded_count = excluded.forwarded_count,
                       is_verified = excluded.is_verified, session_data = excluded.session_data
                     WHERE (excluded.is_verified AND NOT backup_keys.is_verified)
                       OR (excluded.is_verified = backup_keys.is_verified
                           AND (excluded.first_message_index < backup_keys.first_message_index
                                OR (excluded.first_message_index = backup_keys.first_message_index
                                    AND excluded.forwarded_count < backup_keys.forwarded_count)))",
                )
                .bind(user_id)
                .bind(version)
                .bind(&k.room_id)
                .bind(&k.session_id)
                .bind(k.first_message_index)
                .bind(k.forwarded_count)
                .bind(k.is_verified)
                .bind(&k.session_data)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            }
            if changed > 0 {
                bump_etag!(tx, user_id, version);
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// Keys of a version, of one room or one session when given.
    pub async fn keys(
        &self,
        user_id: &str,
        version: i64,
        room_id: Option<&str>,
        session_id: Option<&str>,
    ) -> Result<Vec<BackupKeyRow>> {
        Ok(on_db!(self.0, read, |pool| {
            sqlx::query_as(
                "SELECT room_id, session_id, first_message_index, forwarded_count, is_verified, session_data
                 FROM backup_keys WHERE user_id = $1 AND version = $2
                   AND ($3 = '' OR room_id = $3) AND ($4 = '' OR session_id = $4)
                 ORDER BY room_id, session_id",
            )
            .bind(user_id)
            .bind(version)
            .bind(room_id.unwrap_or(""))
            .bind(session_id.unwrap_or(""))
            .fetch_all(pool)
            .await?
        }))
    }

    /// Deletes keys of a version (of one room or one session when given).
    pub async fn delete_keys(
        &self,
        user_id: &str,
        version: i64,
        room_id: Option<&str>,
        session_id: Option<&str>,
    ) -> Result<()> {
        on_db!(self.0, write, |pool| {
            let mut tx = pool.begin_write().await?;
            let deleted = sqlx::query(
                "DELETE FROM backup_keys WHERE user_id = $1 AND version = $2
                   AND ($3 = '' OR room_id = $3) AND ($4 = '' OR session_id = $4)",
            )
            .bind(user_id)
            .bind(version)
            .bind(room_id.unwrap_or(""))
            .bind(session_id.unwrap_or(""))
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if deleted > 0 {
                bump_etag!(tx, user_id, version);
            }
            tx.commit().await?;
            Ok(())
        })
    }
}
