//! Send-to-device messaging: `PUT /sendToDevice/{eventType}/{txnId}`.

use super::RouteRuma;
use crate::{Ruma, Services, ruma_wrapper::ApiResult};
use axum::{Router, extract::State};
use myelin_rooms::e2ee::ToDeviceMessage;
use ruma::{api::client::to_device::send_event_to_device::v3 as send_to_device, to_device::DeviceIdOrAllDevices};
use std::sync::Arc;

pub(super) fn routes(router: Router<Arc<Services>>) -> Router<Arc<Services>> {
    router.ruma::<send_to_device::Request, _, _>(send)
}

/// `PUT /_matrix/client/v3/sendToDevice/{eventType}/{txnId}`
async fn send(
    State(services): State<Arc<Services>>,
    request: Ruma<send_to_device::Request>,
) -> ApiResult<send_to_device::Response> {
    let identity = request.identity()?;
    let b = &request.body;
    let mut messages = Vec::new();
    for (user, devices) in &b.messages {
        for (device, content) in devices {
            let device_id = match device {
                DeviceIdOrAllDevices::DeviceId(id) => id.to_string(),
                DeviceIdOrAllDevices::AllDevices => "*".to_owned(),
            };
            messages.push(ToDeviceMessage {
                user_id: user.to_string(),
                device_id,
                content: content.json().get().to_owned(),
            });
        }
    }
    services
        .rooms
        .send_to_device(&identity.user_id, &identity.device_id, &b.event_type.to_string(), b.txn_id.as_str(), &messages)
        .await?;
    Ok(send_to_device::Response::new().into())
}
