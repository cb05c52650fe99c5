//! Registration tokens with limited uses and expiry (`m.login.registration_token`).

use crate::{Result, db::Db, db::on_db};

pub struct RegistrationTokens<'a>(pub(crate) &'a Db);

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct RegistrationToken {
    pub token: String,
    /// None: unlimited.
    pub uses_allowed: Option<i64>,
    /// Registrations completed with this token.
    pub completed: i64,
    /// None: never expires.
    pub expiry_ts: Option<i64>,
    pub created_ts: i64,
}

impl RegistrationToken {
    /// Whether a registration could still use the token at `now_ms`.
    pub fn is_usable(&self, now_ms: i64) -> bool {
        self.uses_allowed.is_none_or(|allowed| self.completed < allowed)
            && self.expiry_ts.is_none_or(|expiry| expiry > now_ms)
    }
}

impl RegistrationTokens<'_> {
    pub async fn create(&self, token: &RegistrationToken) -> Result<()> {
        on_db!(self.0, write, |pool| {
            sqlx::query(
                "INSERT INTO registration_tokens (token, uses_allowed, completed, expiry_ts, created_ts)
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&token.token)
            .bind(token.uses_allowed)
            .bind(token.completed)
            .bind(token.expiry_ts)
            .bind(token.created_ts)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    pub async fn get(&self, token: &str) -> Result<Option<RegistrationToken>> {
        Ok(on_db!(self.0, read, |pool| {
            sqlx::query_as("SELECT * FROM registration_tokens WHERE token = $1")
                .bind(token)
                .fetch_optional(pool)
                .await?
        }))
    }

    pub async fn list(&self) -> Result<Vec<RegistrationToken>> {
        Ok(on_db!(self.0, read, |pool| {
            sqlx::query_as("SELECT * FROM registration_tokens ORDER BY created_ts, token").fetch_all(pool).await?
        }))
    }

    /// Returns whether a token was deleted.
    pub async fn delete(&self, token: &str) -> Result<bool> {
        Ok(on_db!(self.0, write, |pool| {
            sqlx::query("DELETE FROM registration_tokens WHERE token = $1")
                .bind(token)
                .execute(pool)
                .await?
                .rows_affected()
                == 1
        }))
    }
}
