//! Account data (`/user/{userId}/account_data/…`, global and per room) and room tags.

use super::{RouteRuma, rooms::raw};
use crate::{Ruma, Services, ruma_wrapper::ApiResult};
use axum::{Router, extract::State};
use myelin_core::Error;
use ruma::api::client::{
    config::{
        get_global_account_data::v3 as get_global, get_room_account_data::v3 as get_room,
        set_global_account_data::v3 as set_global, set_room_account_data::v3 as set_room,
    },
    tag::{create_tag::v3 as create_tag, delete_tag::v3 as delete_tag, get_tags::v3 as get_tags},
};
use serde_json::Value;
use std::sync::Arc;

pub(super) fn routes(router: Router<Arc<Services>>) -> Router<Arc<Services>> {
    router
        .ruma::<set_global::Request, _, _>(put_global)
        .ruma::<get_global::Request, _, _>(get_global_data)
        .ruma::<set_room::Request, _, _>(put_room)
        .ruma::<get_room::Request, _, _>(get_room_data)
        .ruma::<get_tags::Request, _, _>(tags)
        .ruma::<create_tag::Request, _, _>(put_tag)
        .ruma::<delete_tag::Request, _, _>(remove_tag)
}

fn own(identity: &myelin_accounts::Identity, user_id: &ruma::UserId) -> Result<(), Error> {
    if identity.user_id != user_id {
        return Err(Error::forbidden("you may only use your own account data"));
    }
    Ok(())
}

fn object(json: &serde_json::value::RawValue) -> Result<Value, Error> {
    let value: Value = serde_json::from_str(json.get()).map_err(|e| Error::bad_json(e.to_string()))?;
    if !value.is_object() {
        return Err(Error::bad_json("account data must be a JSON object"));
    }
    Ok(value)
}

/// `PUT /_matrix/client/v3/user/{userId}/account_data/{type}`
async fn put_global(
    State(services): State<Arc<Services>>,
    request: Ruma<set_global::Request>,
) -> ApiResult<set_global::Response> {
    let identity = request.identity()?;
    let b = &request.body;
    own(identity, &b.user_id)?;
    services.rooms.set_account_data(&b.user_id, None, &b.event_type.to_string(), &object(b.data.json())?).await?;
    Ok(set_global::Response::new().into())
}

/// `GET /_matrix/client/v3/user/{userId}/account_data/{type}`
async fn get_global_data(
    State(services): State<Arc<Services>>,
    request: Ruma<get_global::Request>,
) -> ApiResult<get_global::Response> {
    let identity = request.identity()?;
    let b = &request.body;
    own(identity, &b.user_id)?;
    let content = services.rooms.account_data(&b.user_id, None, &b.event_type.to_string()).await?;
    Ok(get_global::Response::new(raw(&content)?).into())
}

/// `PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}`
async fn put_room(
    State(services): State<Arc<Services>>,
    request: Ruma<set_room::Request>,
) -> ApiResult<set_room::Response> {
    let identity = request.identity()?;
    let b = &request.body;
    own(identity, &b.user_id)?;
    let content = object(b.data.json())?;
    services.rooms.set_account_data(&b.user_id, Some(&b.room_id), &b.event_type.to_string(), &content).await?;
    Ok(set_room::Response::new().into())
}

/// `GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}`
async fn get_room_data(
    State(services): State<Arc<Services>>,
    request: Ruma<get_room::Request>,
) -> ApiResult<get_room::Response> {
    let identity = request.identity()?;
    let b = &request.body;
    own(identity, &b.user_id)?;
    let content = services.rooms.account_data(&b.user_id, Some(&b.room_id), &b.event_type.to_string()).await?;
    Ok(get_room::Response::new(raw(&content)?).into())
}

/// `GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags`
async fn tags(
    State(services): State<Arc<Services>>,
    request: Ruma<get_tags::Request>,
) -> ApiResult<get_tags::Response> {
    let identity = request.identity()?;
    let b = &request.body;
    own(identity, &b.user_id)?;
    let tags = services.rooms.tags(&b.user_id, &b.room_id).await?;
    let tags = serde_json::from_value(tags["tags"].clone()).map_err(Error::internal)?;
    Ok(get_tags::Response::new(tags).into())
}

/// `PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}`
async fn put_tag(
    State(services): State<Arc<Services>>,
    request: Ruma<create_tag::Request>,
) -> ApiResult<create_tag::Response> {
    let identity = request.identity()?;
    let b = &request.body;
    own(identity, &b.user_id)?;
    let info = serde_json::to_value(&b.tag_info).map_err(Error::internal)?;
    services.rooms.set_tag(&b.user_id, &b.room_id, &b.tag, Some(info)).await?;
    Ok(create_tag::Response::new().into())
}

/// `DELETE /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}`
async fn remove_tag(
    State(services): State<Arc<Services>>,
    request: Ruma<delete_tag::Request>,
) -> ApiResult<delete_tag::Response> {
    let identity = request.identity()?;
    let b = &request.body;
    own(identity, &b.user_id)?;
    services.rooms.set_tag(&b.user_id, &b.room_id, &b.tag, None).await?;
    Ok(delete_tag::Response::new().into())
}
