//! Users and their devices. Deleting a device deletes everything that hangs off it (tokens,
//! device and one-time keys, pending to-device messages) in one transaction, and records a
//! device-list change so other users' clients learn it is gone.

use crate::{
    Error, Result,
    db::{BeginWrite, Db, next_counter, on_db},
    tokens::NewAccessToken,
};

pub struct Users<'a>(pub(crate) &'a Db);

/// Deletes the access and refresh tokens of one device inside the transaction `$tx`.
macro_rules! delete_device_tokens {
    ($tx:ident, $user_id:expr, $device_id:expr) => {
        sqlx::query("DELETE FROM access_tokens WHERE user_id = $1 AND device_id = $2")
            .bind($user_id)
            .bind($device_id)
            .execute(&mut *$tx)
            .await?;
        sqlx::query("DELETE FROM refresh_tokens WHERE user_id = $1 AND device_id = $2")
            .bind($user_id)
            .bind($device_id)
            .execute(&mut *$tx)
            .await?;
    };
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    pub user_id: String,
    pub password_hash: Option<String>,
    pub is_admin: bool,
    pub deactivated: bool,
    pub displayname: Option<String>,
    pub avatar_url: Option<String>,
    pub created_ts: i64,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct DeviceRow {
    pub user_id: String,
    pub device_id: String,
    pub display_name: Option<String>,
    pub last_seen_ip: Option<String>,
    pub last_seen_ts: Option<i64>,
    pub created_ts: i64,
}

/// Everything a registration writes, committed together or not at all.
#[derive(Debug, Clone, Default)]
pub struct NewRegistration {
    pub user_id: String,
    pub password_hash: Option<String>,
    pub is_admin: bool,
    pub displayname: Option<String>,
    pub now_ms: i64,
    /// A database registration token to spend; the registration fails with
    /// `Error::TokenNotUsable` if it is used up or expired by now.
    pub registration_token: Option<String>,
    /// The first device and its access token (None when `inhibit_login` or from the CLI).
    pub device: Option<(String, Option<String>)>,
    pub access_token: Option<NewAccessToken>,
}

impl Users<'_> {
    /// Creates the user (and device and token). `Error::Conflict` when the user ID is taken.
    pub async fn register(&self, registration: &NewRegistration) -> Result<()> {
        let r = registration;
        on_db!(self.0, write, |pool| {
            let mut tx = pool.begin_write().await?;
            if let Some(token) = &r.registration_token {
                let spent = sqlx::query(
                    "UPDATE registration_tokens SET completed = completed + 1
                     WHERE token = $1 AND (uses_allowed IS NULL OR completed < uses_allowed)
                       AND (expiry_ts IS NULL OR expiry_ts > $2)",
                )
                .bind(token)
                .bind(r.now_ms)
                .execute(&mut *tx)
                .await?;
                if spent.rows_affected() != 1 {
                    return Err(Error::TokenNotUsable);
                }
            }
            sqlx::query(
                "INSERT INTO users (user_id, password_hash, is_admin, deactivated, displayname, created_ts)
                 VALUES ($1, $2, $3, FALSE, $4, $5)",
            )
            .bind(&r.user_id)
            .bind(&r.password_hash)
            .bind(r.is_admin)
            .bind(&r.displayname)
            .bind(r.now_ms)
            .execute(&mut *tx)
            .await?;
            if let Some((device_id, display_name)) = &r.device {
                sqlx::query(
                    "INSERT INTO devices (user_id, device_id, display_name, created_ts) VALUES ($1, $2, $3, $4)",
                )
                .bind(&r.user_id)
                .bind(device_id)
                .bind(display_name)
                .bind(r.now_ms)
                .execute(&mut *tx)
                .await?;
            }
            if let Some(token) = &r.access_token {
                crate::tokens::insert_access_token!(tx, token);
            }
            tx.commit().await?;
        });
        Ok(())
    }

    pub async fn get(&self, user_id: &str) -> Result<Option<UserRow>> {
        Ok(on_db!(self.0, read, |pool| {
            sqlx::query_as("SELECT * FROM users WHERE user_id = $1").bind(user_id).fetch_optional(pool).await?
        }))
    }

    pub async fn exists(&self, user_id: &str) -> Result<bool> {
        Ok(self.get(user_id).await?.is_some())
    }

    pub async fn list(&self) -> Result<Vec<UserRow>> {
        Ok(on_db!(self.0, read, |pool| {
            sqlx::query_as("SELECT * FROM users ORDER BY user_id").fetch_all(pool).await?
        }))
    }

    /// Returns whether the user exists.
    pub async fn set_password_hash(&self, user_id: &str, hash: &str) -> Result<bool> {
        Ok(on_db!(self.0, write, |pool| {
            sqlx::query("UPDATE users SET password_hash = $2 WHERE user_id = $1")
                .bind(user_id)
                .bind(hash)
                .execute(pool)
                .await?
                .rows_affected()
                == 1
        }))
    }

    pub async fn set_displayname(&self, user_id: &str, displayname: Option<&str>) -> Result<()> {
        on_db!(self.0, write, |pool| {
            sqlx::query("UPDATE users SET displayname = $2 WHERE user_id = $1")
                .bind(user_id)
                .bind(displayname)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    pub async fn set_avatar_url(&self, user_id: &str, avatar_url: Option<&str>) -> Result<()> {
        on_db!(self.0, write, |pool| {
            sqlx::query("UPDATE users SET avatar_url = $2 WHERE user_id = $1")
                .bind(user_id)
                .bind(avatar_url)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Marks the user deactivated, forgets the password and deletes every device and token.
    /// Returns whether the user existed.
    pub async fn deactivate(&self, user_id: &str) -> Result<bool> {
        Ok(on_db!(self.0, write, |pool| {
            let mut tx = pool.begin_write().await?;
            let found = sqlx::query("UPDATE users SET deactivated = TRUE, password_hash = NULL WHERE user_id = $1")
                .bind(user_id)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                == 1;
            for statement in [
                "DELETE FROM access_tokens WHERE user_id = $1",
                "DELETE FROM refresh_tokens WHERE user_id = $1",
                "DELETE FROM devices WHERE user_id = $1",
            ] {
                sqlx::query(statement).bind(user_id).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            found
        }))
    }

    // ---- devices ----

    /// Creates the device if it does not exist and adds the access token, together. A login
    /// that reuses a device ID takes the device over: its earlier tokens stop working.
    pub async fn add_device_with_token(
        &self,
        user_id: &str,
        device_id: &str,
        display_name: Option<&str>,
        token: &NewAccessToken,
        now_ms: i64,
    ) -> Result<()> {
        on_db!(self.0, write, |pool| {
            let mut tx = pool.begin_write().await?;
            sqlx::query(
                "INSERT INTO devices (user_id, device_id, display_name, created_ts) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (user_id, device_id) DO NOTHING",
            )
            .bind(user_id)
            .bind(device_id)
            .bind(display_name)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
            delete_device_tokens!(tx, user_id, device_id);
            crate::tokens::insert_access_token!(tx, token);
            tx.commit().await?;
        });
        Ok(())
    }

    pub async fn device(&self, user_id: &str, device_id: &str) -> Result<Option<DeviceRow>> {
        Ok(on_db!(self.0, read, |pool| {
            sqlx::query_as("SELECT * FROM devices WHERE user_id = $1 AND device_id = $2")
                .bind(user_id)
                .bind(device_id)
                .fetch_optional(pool)
                .await?
        }))
    }

    pub async fn devices(&self, user_id: &str) -> Result<Vec<DeviceRow>> {
        Ok(on_db!(self.0, read, |pool| {
            sqlx::query_as("SELECT * FROM devices WHERE user_id = $1 ORDER BY device_id")
                .bind(user_id)
                .fetch_all(pool)
                .await?
        }))
    }

    /// Returns whether the device exists.
    pub async fn set_device_display_name(
        &self,
        user_id: &str,
        device_id: &str,
        display_name: Option<&str>,
    ) -> Result<bool> {
        Ok(on_db!(self.0, write, |pool| {
            sqlx::query("UPDATE devices SET display_name = $3 WHERE user_id = $1 AND device_id = $2")
                .bind(user_id)
                .bind(device_id)
                .bind(display_name)
                .execute(pool)
                .await?
                .rows_affected()
                == 1
        }))
    }

    pub async fn touch_device(&self, user_id: &str, device_id: &str, ip: &str, now_ms: i64) -> Result<()> {
        on_db!(self.0, write, |pool| {
            sqlx::query(
                "UPDATE devices SET last_seen_ip = $3, last_seen_ts = $4 WHERE user_id = $1 AND device_id = $2",
            )
            .bind(user_id)
            .bind(device_id)
            .bind(ip)
            .bind(now_ms)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Deletes the given devices with their tokens, keys and to-device messages; returns how
    /// many devices existed.
    pub async fn delete_devices(&self, user_id: &str, device_ids: &[String]) -> Result<u64> {
        Ok(on_db!(self.0, write, |pool| {
            let mut tx = pool.begin_write().await?;
            let mut deleted = 0;
            for device_id in device_ids {
                delete_device_tokens!(tx, user_id, device_id);
                for sql in [
                    "DELETE FROM device_keys WHERE user_id = $1 AND device_id = $2",
                    "DELETE FROM one_time_keys WHERE user_id = $1 AND device_id = $2",
                    "DELETE FROM fallback_keys WHERE user_id = $1 AND device_id = $2",
                    "DELETE FROM to_device_messages WHERE user_id = $1 AND device_id = $2",
                    "DELETE FROM key_signatures WHERE target_user_id = $1 AND target_key_id = $2",
                ] {
                    sqlx::query(sql).bind(user_id).bind(device_id).execute(&mut *tx).await?;
                }
                deleted += sqlx::query("DELETE FROM devices WHERE user_id = $1 AND device_id = $2")
                    .bind(user_id)
                    .bind(device_id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            }
            if deleted > 0 {
                let stream = next_counter!(tx, "stream");
                sqlx::query("INSERT INTO device_list_changes (stream_ordering, user_id) VALUES ($1, $2)")
                    .bind(stream)
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            deleted
        }))
    }

    /// Deletes every device of the user but `keep` (None: all of them).
    pub async fn delete_all_devices_except(&self, user_id: &str, keep: Option<&str>) -> Result<u64> {
        let ids: Vec<String> = self
            .devices(user_id)
            .await?
            .into_iter()
            .map(|d| d.device_id)
            .filter(|id| Some(id.as_str()) != keep)
            .collect();
        self.delete_devices(user_id, &ids).await
    }
}
