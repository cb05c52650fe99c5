//! Room aliases: `/directory/room/{roomAlias}` and `/rooms/{roomId}/aliases`.

use super::RouteRuma;
use crate::{Ruma, Services, ruma_wrapper::ApiResult};
use axum::{Router, extract::State};
use ruma::api::client::{
    alias::{create_alias::v3 as create_alias, delete_alias::v3 as delete_alias, get_alias::v3 as get_alias},
    directory::{
        get_public_rooms::v3 as get_public_rooms, get_public_rooms_filtered::v3 as get_public_rooms_filtered,
        get_room_visibility::v3 as get_room_visibility, set_room_visibility::v3 as set_room_visibility,
    },
    room::{Visibility, aliases::v3 as room_aliases},
};
use std::sync::Arc;

pub(super) fn routes(router: Router<Arc<Services>>) -> Router<Arc<Services>> {
    router
        .ruma::<create_alias::Request, _, _>(create)
        .ruma::<get_alias::Request, _, _>(get)
        .ruma::<delete_alias::Request, _, _>(delete)
        .ruma::<room_aliases::Request, _, _>(aliases)
        .ruma::<get_public_rooms::Request, _, _>(public_rooms)
        .ruma::<get_public_rooms_filtered::Request, _, _>(public_rooms_filtered)
        .ruma::<get_room_visibility::Request, _, _>(visibility)
        .ruma::<set_room_visibility::Request, _, _>(set_visibility)
}

/// Rooms of other servers' directories come with federation.
fn local_directory(services: &Services, server: Option<&ruma::ServerName>) -> Result<(), myelin_core::Error> {
    match server {
        Some(server) if server != services.config.server_name => {
            Err(myelin_core::Error::not_found("the directories of other servers are not reachable yet"))
        }
        _ => Ok(()),
    }
}

fn page_limit(limit: Option<ruma::UInt>) -> Option<usize> {
    limit.map(|l| u64::from(l).min(500) as usize)
}

/// `GET /_matrix/client/v3/publicRooms`
async fn public_rooms(
    State(services): State<Arc<Services>>,
    request: Ruma<get_public_rooms::Request>,
) -> ApiResult<get_public_rooms::Response> {
    let b = &request.body;
    local_directory(&services, b.server.as_deref())?;
    let page = services.rooms.public_rooms(None, &[], b.since.as_deref(), page_limit(b.limit)).await?;
    let mut response = get_public_rooms::Response::new(page.chunk);
    response.next_batch = page.next_batch;
    response.prev_batch = page.prev_batch;
    response.total_room_count_estimate = ruma::UInt::new(page.total);
    Ok(response.into())
}

/// `POST /_matrix/client/v3/publicRooms`
async fn public_rooms_filtered(
    State(services): State<Arc<Services>>,
    request: Ruma<get_public_rooms_filtered::Request>,
) -> ApiResult<get_public_rooms_filtered::Response> {
    request.identity()?;
    let b = &request.body;
    local_directory(&services, b.server.as_deref())?;
    let page = services
        .rooms
        .public_rooms(
            b.filter.generic_search_term.as_deref(),
            &b.filter.room_types,
            b.since.as_deref(),
            page_limit(b.limit),
        )
        .await?;
    let mut response = get_public_rooms_filtered::Response::new();
    response.chunk = page.chunk;
    response.next_batch = page.next_batch;
    response.prev_batch = page.prev_batch;
    response.total_room_count_estimate = ruma::UInt::new(page.total);
    Ok(response.into())
}

/// `GET /_matrix/client/v3/directory/list/room/{roomId}`
async fn visibility(
    State(services): State<Arc<Services>>,
    request: Ruma<get_room_visibility::Request>,
) -> ApiResult<get_room_visibility::Response> {
    let published = services.rooms.is_published(&request.body.room_id).await?;
    let visibility = if published { Visibility::Public } else { Visibility::Private };
    Ok(get_room_visibility::Response::new(visibility).into())
}

/// `PUT /_matrix/client/v3/directory/list/room/{roomId}`
async fn set_visibility(
    State(services): State<Arc<Services>>,
    request: Ruma<set_room_visibility::Request>,
) -> ApiResult<set_room_visibility::Response> {
    let identity = request.identity()?;
    let b = &request.body;
    let published = b.visibility == Visibility::Public;
    services.rooms.set_published(&identity.user_id, identity.is_admin, &b.room_id, published).await?;
    Ok(set_room_visibility::Response::new().into())
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
    let room_id = services.rooms.resolve_alias(&request.body.room_alias).await?;
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
