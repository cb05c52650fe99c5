//! Sessions: login with a password, refresh tokens, logout.

use crate::{Accounts, user_id::parse_local_user_id};
use myelin_core::{
    Error, ErrorKind, Result,
    util::{hash_token, now_ms, random_string},
};
use myelin_store::NewAccessToken;
use ruma::{DeviceId, OwnedDeviceId, OwnedUserId, UserId};
use std::time::Duration;

/// A session handed to a client: its device, access token and maybe a refresh token.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub user_id: OwnedUserId,
    pub device_id: OwnedDeviceId,
    pub access_token: String,
    pub refresh_token: Option<String>,
    /// Set when the access token expires (only for clients that can refresh).
    pub expires_in: Option<Duration>,
}

impl Accounts {
    /// Makes fresh tokens; the stored form has no user or device yet.
    fn fresh_tokens(&self, refreshable: bool) -> (String, Option<String>, Option<Duration>, NewAccessToken) {
        let now = now_ms();
        let access_token = format!("mya_{}", random_string(40));
        let refresh_token = refreshable.then(|| format!("myr_{}", random_string(40)));
        let expires_in =
            refreshable.then(|| Duration::from_secs(self.config.auth.refreshable_access_token_lifetime_secs));
        let stored = NewAccessToken {
            token_hash: hash_token(&access_token),
            expires_ts: expires_in.map(|d| now + d.as_millis() as i64),
            refresh_token_hash: refresh_token.as_deref().map(hash_token),
            now_ms: now,
            ..Default::default()
        };
        (access_token, refresh_token, expires_in, stored)
    }

    /// Makes the tokens of a new session; the caller stores the returned `NewAccessToken`.
    pub(crate) fn new_session(
        &self,
        user_id: &UserId,
        device_id: Option<OwnedDeviceId>,
        refreshable: bool,
    ) -> (NewSession, NewAccessToken) {
        let device_id = device_id.unwrap_or_else(DeviceId::new);
        let (access_token, refresh_token, expires_in, mut stored) = self.fresh_tokens(refreshable);
        stored.user_id = user_id.to_string();
        stored.device_id = device_id.to_string();
        let session = NewSession { user_id: user_id.to_owned(), device_id, access_token, refresh_token, expires_in };
        (session, stored)
    }

    /// `POST /login` with `m.login.password`. A wrong user or password is the same 403, so the
    /// answer does not tell which user IDs exist.
    pub async fn login_with_password(
        &self,
        user: &str,
        password: &str,
        device_id: Option<OwnedDeviceId>,
        initial_device_display_name: Option<&str>,
        refreshable: bool,
    ) -> Result<NewSession> {
        let wrong = || Error::forbidden("Invalid username or password");
        let user_id = parse_local_user_id(user, &self.config.server_name).map_err(|_| wrong())?;
        let Some(row) = self.store.users().get(user_id.as_str()).await? else {
            return Err(wrong());
        };
        if !self.check_password(&user_id, password).await? {
            return Err(if row.deactivated {
                Error::new(http::StatusCode::FORBIDDEN, ErrorKind::UserDeactivated, "This account has been deactivated")
            } else {
                wrong()
            });
        }
        let (session, token) = self.new_session(&user_id, device_id, refreshable);
        self.store
            .users()
            .add_device_with_token(
                user_id.as_str(),
                session.device_id.as_str(),
                initial_device_display_name,
                &token,
                token.now_ms,
            )
            .await?;
        // Logging in with an existing device ID takes the device over: its old tokens die.
        self.forget_tokens();
        tracing::info!(%user_id, device_id = %session.device_id, "logged in");
        Ok(session)
    }

    /// `POST /refresh`: a new access and refresh token for the device of `refresh_token`.
    pub async fn refresh(&self, refresh_token: &str) -> Result<NewSession> {
        let (access_token, refresh_token_new, expires_in, stored) = self.fresh_tokens(true);
        let Some((user_id, device_id)) = self.store.tokens().refresh(&hash_token(refresh_token), &stored).await? else {
            return Err(Error::unknown_token(false, "Unknown refresh token"));
        };
        self.forget_tokens();
        Ok(NewSession {
            user_id: OwnedUserId::try_from(user_id).map_err(Error::internal)?,
            device_id: device_id.into(),
            access_token,
            refresh_token: refresh_token_new,
            expires_in,
        })
    }

    /// `POST /logout`: the device goes, with its tokens.
    pub async fn logout(&self, user_id: &UserId, device_id: &DeviceId) -> Result<()> {
        self.store.users().delete_devices(user_id.as_str(), &[device_id.to_string()]).await?;
        self.forget_tokens();
        Ok(())
    }

    /// `POST /logout/all`: every device of the user goes.
    pub async fn logout_all(&self, user_id: &UserId) -> Result<()> {
        self.store.users().delete_all_devices_except(user_id.as_str(), None).await?;
        self.forget_tokens();
        Ok(())
    }
}
