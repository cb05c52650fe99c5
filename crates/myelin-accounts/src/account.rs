//! Changes to a whole account: password and deactivation (both behind UIA) and the admin's
//! equivalents.

use crate::{Accounts, UiaFlows, password};
use myelin_core::{Error, Result};
use ruma::{DeviceId, OwnedUserId, UserId, api::client::uiaa::AuthData};

impl Accounts {
    /// Runs the password UIA for an account change. With an access token the password must be
    /// that user's; without one (allowed in v1.11) the password stage says who the user is.
    async fn authenticate_account_change(
        &self,
        subject: Option<&UserId>,
        auth: Option<&AuthData>,
    ) -> Result<OwnedUserId> {
        let done = self.user_interactive_auth(&UiaFlows::password(), subject, auth).await?;
        done.user_id
            .or_else(|| subject.map(ToOwned::to_owned))
            .ok_or_else(|| Error::internal("password UIA finished without a user"))
    }

    /// `POST /account/password`. `logout_devices` signs out every other device.
    pub async fn change_password(
        &self,
        subject: Option<(&UserId, &DeviceId)>,
        new_password: &str,
        logout_devices: bool,
        auth: Option<&AuthData>,
    ) -> Result<()> {
        self.check_password_strength(new_password)?;
        let user_id = self.authenticate_account_change(subject.map(|(u, _)| u), auth).await?;
        self.set_password(&user_id, new_password).await?;
        if logout_devices {
            let keep = subject.map(|(_, d)| d.as_str());
            self.store.users().delete_all_devices_except(user_id.as_str(), keep).await?;
            self.forget_tokens();
        }
        Ok(())
    }

    /// Sets a password without any check of the old one (admin CLI and after UIA).
    pub async fn set_password(&self, user_id: &UserId, new_password: &str) -> Result<()> {
        let hash = password::hash(new_password).await?;
        if !self.store.users().set_password_hash(user_id.as_str(), &hash).await? {
            return Err(Error::not_found("No such user"));
        }
        Ok(())
    }

    /// `POST /account/deactivate`; returns the user deactivated.
    pub async fn deactivate_with_uia(&self, subject: Option<&UserId>, auth: Option<&AuthData>) -> Result<OwnedUserId> {
        let user_id = self.authenticate_account_change(subject, auth).await?;
        self.deactivate(&user_id).await?;
        Ok(user_id)
    }

    /// Deactivates an account for good: it can no longer log in, all its sessions end, and its
    /// user ID is never handed out again.
    pub async fn deactivate(&self, user_id: &UserId) -> Result<()> {
        let found = self.store.users().deactivate(user_id.as_str()).await?;
        // After the revocation, so no request can cache a token of the account again.
        self.forget_tokens();
        if !found {
            return Err(Error::not_found("No such user"));
        }
        tracing::info!(%user_id, "deactivated");
        Ok(())
    }

    /// Every user, for the admin CLI.
    pub async fn list_users(&self) -> Result<Vec<myelin_store::UserRow>> {
        Ok(self.store.users().list().await?)
    }
}

impl Accounts {
    /// Removes UIA sessions past their lifetime and access tokens past their expiry.
    pub async fn purge_expired(&self) -> Result<()> {
        let now = myelin_core::util::now_ms();
        self.store.uia().purge_older_than(now - crate::uia::SESSION_LIFETIME.as_millis() as i64).await?;
        self.store.tokens().purge_expired(now).await?;
        Ok(())
    }
}
