//! Room aliases (`/directory/room/{roomAlias}`, `/rooms/{roomId}/aliases`) and the public room
//! directory (`/publicRooms`, this server's or another's over federation).

use super::RouteRuma;
use crate::{Ruma, Services, ruma_wrapper::ApiResult};
use axum::{Router, extract::State};
use myelin_rooms::DirectoryPage;
use ruma::api::client::{
    alias::{create_alias::v3 as create_alias, delete_alias::v3 as delete_alias, get_alias::v3 as get_alias},
    directory::{
        get_public_rooms::v3 as get_public_rooms, get_public_rooms_filtered::v3 as get_public_rooms_filtered,
        get_room_visibility::v3 as get_room_visibility, set_room_visibility::v3 as set_room_visibility,
    },
    room::{Visibility, aliases::v3 as room_aliases},
};
use ruma::{
    api::federation::{
        directory::get_public_rooms_filtered::v1 as remote_public_rooms,
        query::get_room_information::v1 as remote_alias,
    },
    directory::RoomTypeFilter,
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

/// A page of this server's directory, or of `server`'s over federation
/// (`POST /_matrix/federation/v1/publicRooms`).
async fn directory_page(
    services: &Services,
    server: Option<&ruma::ServerName>,
    search: Option<&str>,
    room_types: &[RoomTypeFilter],
    since: Option<&str>,
    limit: Option<ruma::UInt>,
) -> Result<DirectoryPage, myelin_core::Error> {
    let limit_rooms = limit.map(|l| u64::from(l).min(500) as usize);
    match server {
        Some(server) if server != services.config.server_name => {
            let mut request = remote_public_rooms::Request::new();
            request.limit = limit;
            request.since = since.map(str::to_owned);
            request.filter.generic_search_term = search.map(str::to_owned);
            request.filter.room_types = room_types.to_vec();
            let answer = services.federation.client.send(server, request).await?;
            Ok(DirectoryPage {
                chunk: answer.chunk,
                next_batch: answer.next_batch,
                prev_batch: answer.prev_batch,
                total: answer.total_room_count_estimate.map_or(0, u64::from),
            })
        }
        _ => services.rooms.public_rooms(search, room_types, since, limit_rooms).await,
    }
}

/// `GET /_matrix/client/v3/publicRooms`
async fn public_rooms(
    State(services): State<Arc<Services>>,
    request: Ruma<get_public_rooms::Request>,
) -> ApiResult<get_public_rooms::Response> {
    let b = &request.body;
    let page = directory_page(&services, b.server.as_deref(), None, &[], b.since.as_deref(), b.limit).await?;
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
    let search = b.filter.generic_search_term.as_deref();
    let page =
        directory_page(&services, b.server.as_deref(), search, &b.filter.room_types, b.since.as_deref(), b.limit)
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
    let alias = &request.body.room_alias;
    if alias.server_name() != services.config.server_name {
        let request = remote_alias::Request::new(alias.clone());
        let answer = services.federation.client.send(alias.server_name(), request).await?;
        return Ok(get_alias::Response::new(answer.room_id, answer.servers).into());
    }
    let room_id = services.rooms.resolve_alias(alias).await?;
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
