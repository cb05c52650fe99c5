//! Registration tokens: from the config (unlimited) or the database (limited uses, expiry).

use crate::Accounts;
use myelin_core::{
    Error, Result,
    util::{now_ms, random_string},
};
use myelin_store::RegistrationToken;

impl Accounts {
    /// `Some(false)`: a config token; `Some(true)`: a usable database token; `None`: invalid.
    pub(crate) async fn registration_token_kind(&self, token: &str) -> Result<Option<bool>> {
        if self.config.registration.tokens.iter().any(|t| t == token) {
            return Ok(Some(false));
        }
        let usable = self.store.registration_tokens().get(token).await?.is_some_and(|t| t.is_usable(now_ms()));
        Ok(usable.then_some(true))
    }

    /// `GET /register/m.login.registration_token/validity`.
    pub async fn registration_token_is_valid(&self, token: &str) -> Result<bool> {
        Ok(self.registration_token_kind(token).await?.is_some())
    }

    /// Creates a database token; a random one when `token` is None.
    pub async fn create_registration_token(
        &self,
        token: Option<String>,
        uses_allowed: Option<i64>,
        expiry_ts: Option<i64>,
    ) -> Result<RegistrationToken> {
        let token = token.unwrap_or_else(|| random_string(16));
        if token.is_empty()
            || token.len() > 64
            || !token.chars().all(|c| c.is_ascii_alphanumeric() || "._~-".contains(c))
        {
            return Err(Error::invalid_param("A token is 1-64 characters of A-Z, a-z, 0-9, '.', '_', '~' or '-'"));
        }
        if uses_allowed.is_some_and(|n| n < 0) {
            return Err(Error::invalid_param("uses_allowed cannot be negative"));
        }
        let row = RegistrationToken { token, uses_allowed, completed: 0, expiry_ts, created_ts: now_ms() };
        match self.store.registration_tokens().create(&row).await {
            Err(myelin_store::Error::Conflict) => Err(Error::invalid_param("That token exists already")),
            other => other.map(|()| row).map_err(Into::into),
        }
    }

    pub async fn list_registration_tokens(&self) -> Result<Vec<RegistrationToken>> {
        Ok(self.store.registration_tokens().list().await?)
    }

    /// Returns whether the token existed.
    pub async fn delete_registration_token(&self, token: &str) -> Result<bool> {
        Ok(self.store.registration_tokens().delete(token).await?)
    }
}
