//! Profiles of local users: display name and avatar URL.

use crate::Accounts;
use myelin_core::{Error, Result};
use ruma::{OwnedMxcUri, UserId};

/// Spec v1.11 leaves the limit to servers; Synapse allows 256 characters too.
const MAX_DISPLAYNAME_CHARS: usize = 256;

impl Accounts {
    /// The (displayname, avatar_url) of a local user; 404 if unknown or deactivated.
    pub async fn profile(&self, user_id: &UserId) -> Result<(Option<String>, Option<OwnedMxcUri>)> {
        match self.store.users().get(user_id.as_str()).await? {
            Some(user) if !user.deactivated => Ok((user.displayname, user.avatar_url.map(Into::into))),
            _ => Err(Error::not_found("Profile not found")),
        }
    }

    pub async fn set_displayname(&self, user_id: &UserId, displayname: Option<&str>) -> Result<()> {
        if displayname.is_some_and(|n| n.chars().count() > MAX_DISPLAYNAME_CHARS) {
            return Err(Error::invalid_param(format!(
                "The display name is longer than {MAX_DISPLAYNAME_CHARS} characters"
            )));
        }
        Ok(self.store.users().set_displayname(user_id.as_str(), displayname.filter(|n| !n.is_empty())).await?)
    }

    pub async fn set_avatar_url(&self, user_id: &UserId, avatar_url: Option<&str>) -> Result<()> {
        if let Some(url) = avatar_url.filter(|u| !u.is_empty())
            && !<&ruma::MxcUri>::from(url).is_valid()
        {
            return Err(Error::invalid_param("avatar_url must be an mxc:// URI"));
        }
        Ok(self.store.users().set_avatar_url(user_id.as_str(), avatar_url.filter(|u| !u.is_empty())).await?)
    }
}
