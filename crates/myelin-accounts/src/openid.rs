//! OpenID tokens: a user proves who they are to a third party (an integration manager, a
//! widget), which checks the token with this server over federation
//! (`/_matrix/federation/v1/openid/userinfo`).

use crate::Accounts;
use myelin_core::{
    Error, Result,
    util::{hash_token, now_ms, random_string},
};
use ruma::{OwnedUserId, UserId};
use std::time::Duration;

/// How long an OpenID token is valid (Synapse: one hour too).
pub const OPENID_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

impl Accounts {
    /// A new OpenID token for `user`.
    pub async fn request_openid_token(&self, user: &UserId) -> Result<String> {
        let token = random_string(32);
        let expires = now_ms() + OPENID_TOKEN_LIFETIME.as_millis() as i64;
        self.store.tokens().add_openid_token(&hash_token(&token), user.as_str(), expires).await?;
        Ok(token)
    }

    /// The user an OpenID token was issued to, if it is valid.
    pub async fn openid_user(&self, token: &str) -> Result<OwnedUserId> {
        let user = self.store.tokens().openid_user(&hash_token(token), now_ms()).await?;
        let unknown = || Error::unknown_token(false, "Unknown or expired OpenID token");
        OwnedUserId::try_from(user.ok_or_else(unknown)?).map_err(Error::internal)
    }
}
