//! Access and refresh tokens, stored as hashes. A refresh token that has been used stays valid
//! until its successor is used, as the spec asks, so a client that lost the refresh response can
//! retry.

use crate::{
    Result,
    db::{BeginWrite, Db, on_db},
    sqlite_reads::read_all,
};

pub struct Tokens<'a>(pub(crate) &'a Db);

/// An access token to store, with the refresh token issued alongside it, if any.
#[derive(Debug, Clone, Default)]
pub struct NewAccessToken {
    pub token_hash: String,
    pub user_id: String,
    pub device_id: String,
    pub expires_ts: Option<i64>,
    pub refresh_token_hash: Option<String>,
    pub now_ms: i64,
}

/// What an access token authenticates.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AccessTokenInfo {
    pub user_id: String,
    pub device_id: String,
    pub expires_ts: Option<i64>,
    pub refresh_token_hash: Option<String>,
    /// Whether the token has been used since it was issued.
    pub used: bool,
    pub is_admin: bool,
}

/// Inserts a `NewAccessToken` (and its refresh token) inside the transaction `$tx`.
macro_rules! insert_access_token {
    ($tx:ident, $token:expr) => {{
        let t: &$crate::tokens::NewAccessToken = $token;
        sqlx::query(
            "INSERT INTO access_tokens (token_hash, user_id, device_id, expires_ts, refresh_token_hash, used, created_ts)
             VALUES ($1, $2, $3, $4, $5, FALSE, $6)",
        )
        .bind(&t.token_hash)
        .bind(&t.user_id)
        .bind(&t.device_id)
        .bind(t.expires_ts)
        .bind(&t.refresh_token_hash)
        .bind(t.now_ms)
        .execute(&mut *$tx)
        .await?;
        if let Some(refresh) = &t.refresh_token_hash {
            sqlx::query(
                "INSERT INTO refresh_tokens (token_hash, user_id, device_id, created_ts) VALUES ($1, $2, $3, $4)",
            )
            .bind(refresh)
            .bind(&t.user_id)
            .bind(&t.device_id)
            .bind(t.now_ms)
            .execute(&mut *$tx)
            .await?;
        }
    }};
}
pub(crate) use insert_access_token;

impl Tokens<'_> {
    pub async fn lookup(&self, token_hash: &str) -> Result<Option<AccessTokenInfo>> {
        // Every request whose token is not in the accounts' short-lived cache asks: on the
        // calling thread on SQLite (see `sqlite_reads`).
        let rows = read_all!(
            self.0,
            AccessTokenInfo,
            "SELECT a.user_id, a.device_id, a.expires_ts, a.refresh_token_hash, a.used, u.is_admin
             FROM access_tokens a JOIN users u ON u.user_id = a.user_id
             WHERE a.token_hash = $1 AND NOT u.deactivated",
            token_hash
        );
        Ok(rows.into_iter().next())
    }

    /// Records the first use of a refreshed access token: the refresh token it replaced is
    /// revoked now.
    pub async fn mark_used(&self, token_hash: &str, refresh_token_hash: Option<&str>) -> Result<()> {
        on_db!(self.0, write, |pool| {
            let mut tx = pool.begin_write().await?;
            sqlx::query("UPDATE access_tokens SET used = TRUE WHERE token_hash = $1")
                .bind(token_hash)
                .execute(&mut *tx)
                .await?;
            if let Some(refresh) = refresh_token_hash {
                sqlx::query("DELETE FROM refresh_tokens WHERE next_token_hash = $1")
                    .bind(refresh)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Spends the refresh token `old_hash` for `new` (whose user and device are taken from the
    /// old token). Returns the (user, device) or None when the refresh token is unknown.
    pub async fn refresh(&self, old_hash: &str, new: &NewAccessToken) -> Result<Option<(String, String)>> {
        Ok(on_db!(self.0, write, |pool| {
            let mut tx = pool.begin_write().await?;
            let old: Option<(String, String, Option<String>)> =
                sqlx::query_as("SELECT user_id, device_id, next_token_hash FROM refresh_tokens WHERE token_hash = $1")
                    .bind(old_hash)
                    .fetch_optional(&mut *tx)
                    .await?;
            let Some((user_id, device_id, previous_successor)) = old else {
                return Ok(None);
            };
            // A retry: the successor issued last time never reached the client.
            if let Some(successor) = previous_successor {
                sqlx::query("DELETE FROM access_tokens WHERE refresh_token_hash = $1")
                    .bind(&successor)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM refresh_tokens WHERE token_hash = $1")
                    .bind(&successor)
                    .execute(&mut *tx)
                    .await?;
            }
            // Using this token proves the client has it: its predecessor is done with.
            sqlx::query("DELETE FROM refresh_tokens WHERE next_token_hash = $1")
                .bind(old_hash)
                .execute(&mut *tx)
                .await?;
            let new = NewAccessToken { user_id: user_id.clone(), device_id: device_id.clone(), ..new.clone() };
            insert_access_token!(tx, &new);
            sqlx::query("UPDATE refresh_tokens SET next_token_hash = $2 WHERE token_hash = $1")
                .bind(old_hash)
                .bind(&new.refresh_token_hash)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Some((user_id, device_id))
        }))
    }

    /// Removes expired access and OpenID tokens; returns how many.
    pub async fn purge_expired(&self, now_ms: i64) -> Result<u64> {
        Ok(on_db!(self.0, write, |pool| {
            let access = sqlx::query("DELETE FROM access_tokens WHERE expires_ts IS NOT NULL AND expires_ts < $1")
                .bind(now_ms)
                .execute(pool)
                .await?
                .rows_affected();
            let openid = sqlx::query("DELETE FROM openid_tokens WHERE expires_ts < $1")
                .bind(now_ms)
                .execute(pool)
                .await?
                .rows_affected();
            access + openid
        }))
    }

    pub async fn add_openid_token(&self, token_hash: &str, user_id: &str, expires_ts: i64) -> Result<()> {
        on_db!(self.0, write, |pool| {
            sqlx::query("INSERT INTO openid_tokens (token_hash, user_id, expires_ts) VALUES ($1, $2, $3)")
                .bind(token_hash)
                .bind(user_id)
                .bind(expires_ts)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// The user of an OpenID token that has not expired at `now_ms`.
    pub async fn openid_user(&self, token_hash: &str, now_ms: i64) -> Result<Option<String>> {
        Ok(on_db!(self.0, read, |pool| {
            sqlx::query_scalar("SELECT user_id FROM openid_tokens WHERE token_hash = $1 AND expires_ts > $2")
                .bind(token_hash)
                .bind(now_ms)
                .fetch_optional(pool)
                .await?
        }))
    }
}
