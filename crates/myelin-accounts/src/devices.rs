//! A user's devices: list, rename, delete (deleting behind UIA).

use crate::{Accounts, UiaFlows};
use myelin_core::{Error, Result};
use myelin_store::DeviceRow;
use ruma::{OwnedDeviceId, UserId, api::client::uiaa::AuthData};

impl Accounts {
    pub async fn devices(&self, user_id: &UserId) -> Result<Vec<DeviceRow>> {
        Ok(self.store.users().devices(user_id.as_str()).await?)
    }

    pub async fn device(&self, user_id: &UserId, device_id: &str) -> Result<DeviceRow> {
        self.store.users().device(user_id.as_str(), device_id).await?.ok_or_else(|| Error::not_found("No such device"))
    }

    pub async fn rename_device(&self, user_id: &UserId, device_id: &str, display_name: Option<&str>) -> Result<()> {
        if display_name.is_some_and(|n| n.len() > 1024) {
            return Err(Error::invalid_param("The display name is longer than 1024 bytes"));
        }
        if !self.store.users().set_device_display_name(user_id.as_str(), device_id, display_name).await? {
            return Err(Error::not_found("No such device"));
        }
        Ok(())
    }

    /// `DELETE /devices/{deviceId}` and `POST /delete_devices`, after password UIA. Devices that
    /// do not exist are skipped, as the spec allows.
    pub async fn delete_devices(
        &self,
        user_id: &UserId,
        device_ids: &[OwnedDeviceId],
        auth: Option<&AuthData>,
    ) -> Result<()> {
        self.user_interactive_auth(&UiaFlows::password(), Some(user_id), auth).await?;
        let ids: Vec<String> = device_ids.iter().map(ToString::to_string).collect();
        self.store.users().delete_devices(user_id.as_str(), &ids).await?;
        self.forget_tokens();
        Ok(())
    }
}
