//! Read receipts, read markers and typing notifications.

use super::RouteRuma;
use crate::{Ruma, Services, ruma_wrapper::ApiResult};
use axum::{Router, extract::State};
use ruma::{
    api::client::{
        read_marker::set_read_marker::v3 as set_read_marker,
        receipt::create_receipt::v3::{self as create_receipt, ReceiptType},
        typing::create_typing_event::v3 as create_typing_event,
    },
    events::receipt::ReceiptThread,
};
use std::sync::Arc;

pub(super) fn routes(router: Router<Arc<Services>>) -> Router<Arc<Services>> {
    router
        .ruma::<create_receipt::Request, _, _>(receipt)
        .ruma::<set_read_marker::Request, _, _>(read_markers)
        .ruma::<create_typing_event::Request, _, _>(typing)
}

/// `PUT /_matrix/client/v3/rooms/{roomId}/typing/{userId}`
async fn typing(
    State(services): State<Arc<Services>>,
    request: Ruma<create_typing_event::Request>,
) -> ApiResult<create_typing_event::Response> {
    let identity = request.identity()?;
    let b = &request.body;
    if b.user_id != identity.user_id {
        return Err(myelin_core::Error::forbidden("you may only say that you are typing").into());
    }
    let timeout = match &b.state {
        create_typing_event::Typing::Yes(info) => Some(info.timeout),
        _ => None,
    };
    services.rooms.set_typing(&identity.user_id, &b.room_id, timeout).await?;
    Ok(create_typing_event::Response::new().into())
}

/// `POST /_matrix/client/v3/rooms/{roomId}/receipt/{receiptType}/{eventId}`
async fn receipt(
    State(services): State<Arc<Services>>,
    request: Ruma<create_receipt::Request>,
) -> ApiResult<create_receipt::Response> {
    let identity = request.identity()?;
    let b = &request.body;
    let user = &identity.user_id;
    if b.receipt_type == ReceiptType::FullyRead {
        // Allowed here since v1.4: the same as the fully-read marker of /read_markers.
        services.rooms.set_read_markers(user, &b.room_id, Some(&b.event_id), None, None).await?;
        return Ok(create_receipt::Response::new().into());
    }
    let thread = match &b.thread {
        ReceiptThread::Unthreaded => None,
        ReceiptThread::Main => Some("main".to_owned()),
        ReceiptThread::Thread(root) => Some(root.to_string()),
        other => Some(other.as_str().unwrap_or_default().to_owned()),
    };
    services.rooms.set_receipt(user, &b.room_id, b.receipt_type.as_ref(), &b.event_id, thread.as_deref()).await?;
    Ok(create_receipt::Response::new().into())
}

/// `POST /_matrix/client/v3/rooms/{roomId}/read_markers`
async fn read_markers(
    State(services): State<Arc<Services>>,
    request: Ruma<set_read_marker::Request>,
) -> ApiResult<set_read_marker::Response> {
    let identity = request.identity()?;
    let b = &request.body;
    services
        .rooms
        .set_read_markers(
            &identity.user_id,
            &b.room_id,
            b.fully_read.as_deref(),
            b.read_receipt.as_deref(),
            b.private_read_receipt.as_deref(),
        )
        .await?;
    Ok(set_read_marker::Response::new().into())
}
