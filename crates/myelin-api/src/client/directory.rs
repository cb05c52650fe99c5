//! Room aliases: `/directory/room/{roomAlias}` and `/rooms/{roomId}/aliases`.

use super::RouteRuma;
use crate::{Ruma, Services, ruma_wrapper::ApiResult};
use axum::{Router, extract::State};
use ruma::api::client::{
    alias::{create_alias::v3 as create_alias, delete_alias::v3 as delete_alias, get_alias::v3 as get_alias},
    room::aliases::v3 as room_aliases,
};
use std::sync::Arc;

pub(super) fn routes(router: Router<Arc<Services>>) -> Router<Arc<Services>> {
    router
        .ruma::<create_alias::Request, _, _>(create)
        .ruma::<get_alias::Request, _, _>(get)
        .ruma::<delete_alias::Request, _, _>(delete)
        .ruma::<room_aliases::Request, _, _>(aliases)
}

/// `PUT /_matrix/client/v3/directory/room/{roomAlias}`
async fn create(
    State(services): State<Arc<Services>>,
    request: Ruma<create_alias::Request>,
) -> ApiResult<create_alias::Response> {
    let identity = request.identity()?;
    services.rooms.create_alias(&identity.user_id, &request.body.room_alias, &request.body.room_id).await?;
    Ok(create_alias::Response::new().into())
}

/// `GET /_matrix/client/v3/directory/room/{roomAlias}`
async fn get(
    State(services): State<Arc<Services>>,
    request: Ruma<get_alias::Request>,
) -> ApiResult<get_alias::Response> {
    let room_id = services.rooms.alias_target(&request.body.room_alias).await?;
    Ok(get_alias::Response::new(room_id, vec![services.config.server_name.clone()]).into())
}

/// `DELETE /_matrix/client/v3/directory/room/{roomAlias}`
async fn delete(
    State(services): State<Arc<Services>>,
    request: Ruma<delete_alias::Request>,
) -> ApiResult<delete_alias::Response> {
    let identity = request.identity()?;
    services.rooms.delete_alias(&identity.user_id, identity.is_admin, &request.body.room_alias).await?;
    Ok(delete_alias::Response::new().into())
}

/// `GET /_matrix/client/v3/rooms/{roomId}/aliases`
async fn aliases(
    State(services): State<Arc<Services>>,
    request: Ruma<room_aliases::Request>,
) -> ApiResult<room_aliases::Response> {
    let identity = request.identity()?;
    let aliases = services.rooms.room_aliases(&identity.user_id, &request.body.room_id).await?;
    Ok(room_aliases::Response::new(aliases).into())
}
