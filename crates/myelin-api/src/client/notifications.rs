//! `GET /notifications` and pushers (`GET /pushers`, `POST /pushers/set`). Pushers are stored
//! and listed; delivering to push gateways is later work.

use super::{RouteRuma, rooms::raw};
use crate::{Ruma, Services, ruma_wrapper::ApiResult};
use axum::{Router, extract::State};
use myelin_core::Error;
use ruma::{
    MilliSecondsSinceUnixEpoch, OwnedRoomId, UInt,
    api::client::push::{
        Pusher, get_notifications::v3 as get_notifications, get_pushers::v3 as get_pushers,
        set_pusher::v3 as set_pusher,
    },
};
use std::sync::Arc;

pub(super) fn routes(router: Router<Arc<Services>>) -> Router<Arc<Services>> {
    router
        .ruma::<get_notifications::Request, _, _>(notifications)
        .ruma::<get_pushers::Request, _, _>(pushers)
        .ruma::<set_pusher::Request, _, _>(set)
}

/// `GET /_matrix/client/v3/notifications`
async fn notifications(
    State(services): State<Arc<Services>>,
    request: Ruma<get_notifications::Request>,
) -> ApiResult<get_notifications::Response> {
    let identity = request.identity()?;
    let b = &request.body;
    let limit = b.limit.map_or(20, |l| u64::from(l).min(100) as usize);
    let highlights_only = b.only.as_deref() == Some("highlight");
    let (found, next) =
        services.rooms.notifications(&identity.user_id, b.from.as_deref(), limit, highlights_only).await?;
    let mut out = Vec::with_capacity(found.len());
    for n in found {
        let actions = serde_json::from_value(n.actions).map_err(Error::internal)?;
        let room_id = OwnedRoomId::try_from(n.room_id.as_str()).map_err(Error::internal)?;
        let ts = MilliSecondsSinceUnixEpoch(UInt::new_saturating(n.ts.max(0) as u64));
        out.push(get_notifications::Notification::new(actions, raw(&n.event)?, n.read, room_id, ts));
    }
    let mut response = get_notifications::Response::new(out);
    response.next_token = next;
    Ok(response.into())
}

/// `GET /_matrix/client/v3/pushers`
async fn pushers(
    State(services): State<Arc<Services>>,
    request: Ruma<get_pushers::Request>,
) -> ApiResult<get_pushers::Response> {
    let identity = request.identity()?;
    let mut out: Vec<Pusher> = Vec::new();
    for json in services.rooms.pushers(&identity.user_id).await? {
        out.push(serde_json::from_str(&json).map_err(Error::internal)?);
    }
    Ok(get_pushers::Response::new(out).into())
}

/// `POST /_matrix/client/v3/pushers/set`: adds, replaces or (kind `null`) deletes a pusher.
async fn set(
    State(services): State<Arc<Services>>,
    request: Ruma<set_pusher::Request>,
) -> ApiResult<set_pusher::Response> {
    let identity = request.identity()?;
    match &request.body.action {
        set_pusher::PusherAction::Post(data) => {
            let p = &data.pusher;
            if p.ids.app_id.is_empty() || p.ids.app_id.len() > 64 {
                return Err(Error::invalid_param("app_id must be 1 to 64 characters").into());
            }
            if p.ids.pushkey.is_empty() || p.ids.pushkey.len() > 512 {
                return Err(Error::invalid_param("pushkey must be 1 to 512 bytes").into());
            }
            let json = serde_json::to_string(p).map_err(Error::internal)?;
            services.rooms.set_pusher(&identity.user_id, &p.ids.app_id, &p.ids.pushkey, &json, data.append).await?;
        }
        set_pusher::PusherAction::Delete(ids) => {
            services.rooms.delete_pusher(&identity.user_id, &ids.app_id, &ids.pushkey).await?;
        }
        _ => return Err(Error::invalid_param("unknown pusher action").into()),
    }
    Ok(set_pusher::Response::new().into())
}
