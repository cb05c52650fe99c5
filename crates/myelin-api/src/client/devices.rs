//! Devices: `/devices`, `/devices/{deviceId}`, `/delete_devices`.

use super::RouteRuma;
use crate::{Ruma, Services, ruma_wrapper::ApiResult};
use axum::{Router, extract::State};
use myelin_store::DeviceRow;
use ruma::{
    MilliSecondsSinceUnixEpoch, UInt,
    api::client::device::{
        Device, delete_device::v3 as delete_device, delete_devices::v3 as delete_devices, get_device::v3 as get_device,
        get_devices::v3 as get_devices, update_device::v3 as update_device,
    },
};
use std::sync::Arc;

pub(super) fn routes(router: Router<Arc<Services>>) -> Router<Arc<Services>> {
    router
        .ruma::<get_devices::Request, _, _>(list)
        .ruma::<get_device::Request, _, _>(get)
        .ruma::<update_device::Request, _, _>(update)
        .ruma::<delete_device::Request, _, _>(delete)
        .ruma::<delete_devices::Request, _, _>(delete_many)
}

fn to_ruma(row: DeviceRow) -> Device {
    let mut device = Device::new(row.device_id.into());
    device.display_name = row.display_name;
    device.last_seen_ip = row.last_seen_ip;
    device.last_seen_ts = row.last_seen_ts.and_then(|ts| UInt::try_from(ts).ok()).map(MilliSecondsSinceUnixEpoch);
    device
}

/// `GET /_matrix/client/v3/devices`
async fn list(
    State(services): State<Arc<Services>>,
    request: Ruma<get_devices::Request>,
) -> ApiResult<get_devices::Response> {
    let devices = services.accounts.devices(&request.identity()?.user_id).await?;
    Ok(get_devices::Response::new(devices.into_iter().map(to_ruma).collect()).into())
}

/// `GET /_matrix/client/v3/devices/{deviceId}`
async fn get(
    State(services): State<Arc<Services>>,
    request: Ruma<get_device::Request>,
) -> ApiResult<get_device::Response> {
    let device = services.accounts.device(&request.identity()?.user_id, request.body.device_id.as_str()).await?;
    Ok(get_device::Response::new(to_ruma(device)).into())
}

/// `PUT /_matrix/client/v3/devices/{deviceId}`
async fn update(
    State(services): State<Arc<Services>>,
    request: Ruma<update_device::Request>,
) -> ApiResult<update_device::Response> {
    let identity = request.identity()?;
    let body = &request.body;
    services.accounts.rename_device(&identity.user_id, body.device_id.as_str(), body.display_name.as_deref()).await?;
    // Other users' clients show device names from /keys/query.
    services.rooms.device_renamed(&identity.user_id, body.device_id.as_str()).await?;
    Ok(update_device::Response::new().into())
}

/// `DELETE /_matrix/client/v3/devices/{deviceId}` (UIA)
async fn delete(
    State(services): State<Arc<Services>>,
    request: Ruma<delete_device::Request>,
) -> ApiResult<delete_device::Response> {
    let identity = request.identity()?;
    let body = &request.body;
    // 404 for a device that does not exist, before asking for a password.
    services.accounts.device(&identity.user_id, body.device_id.as_str()).await?;
    services.rooms.device_lists_changing();
    let deleted = services
        .accounts
        .delete_devices(&identity.user_id, std::slice::from_ref(&body.device_id), body.auth.as_ref())
        .await;
    services.rooms.wake_syncs().await?;
    deleted?;
    services.rooms.devices_deleted(&identity.user_id, &[body.device_id.to_string()]).await?;
    Ok(delete_device::Response::new().into())
}

/// `POST /_matrix/client/v3/delete_devices` (UIA)
async fn delete_many(
    State(services): State<Arc<Services>>,
    request: Ruma<delete_devices::Request>,
) -> ApiResult<delete_devices::Response> {
    let identity = request.identity()?;
    let body = &request.body;
    services.rooms.device_lists_changing();
    let deleted = services.accounts.delete_devices(&identity.user_id, &body.devices, body.auth.as_ref()).await;
    services.rooms.wake_syncs().await?;
    deleted?;
    let devices: Vec<String> = body.devices.iter().map(ToString::to_string).collect();
    services.rooms.devices_deleted(&identity.user_id, &devices).await?;
    Ok(delete_devices::Response::new().into())
}
