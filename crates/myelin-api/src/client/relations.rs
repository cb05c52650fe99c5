//! Relations and threads: `/relations/{eventId}[/{relType}[/{eventType}]]` and `/threads`.

use super::{RouteRuma, rooms::raw};
use crate::{Ruma, Services, ruma_wrapper::ApiResult};
use axum::{Router, extract::State};
use myelin_rooms::{RelationsPage, RelationsQuery, Viewer};
use ruma::{
    UInt,
    api::{
        Direction,
        client::{
            relations::{
                get_relating_events::v1 as relating, get_relating_events_with_rel_type::v1 as relating_type,
                get_relating_events_with_rel_type_and_event_type::v1 as relating_type_event,
            },
            threads::get_threads::v1 as get_threads,
        },
    },
};
use std::sync::Arc;

pub(super) fn routes(router: Router<Arc<Services>>) -> Router<Arc<Services>> {
    router
        .ruma::<relating::Request, _, _>(relations)
        .ruma::<relating_type::Request, _, _>(relations_of_type)
        .ruma::<relating_type_event::Request, _, _>(relations_of_type_and_event)
        .ruma::<get_threads::Request, _, _>(threads)
}

fn limit(limit: Option<UInt>) -> usize {
    limit.map_or(50, |l| u64::from(l).min(1000) as usize)
}

/// What the three `/relations` requests share, whichever of rel_type and event type they name.
struct Asked<'a> {
    room_id: &'a ruma::RoomId,
    event_id: &'a ruma::EventId,
    from: Option<&'a str>,
    to: Option<&'a str>,
    dir: Direction,
    limit: Option<UInt>,
    recurse: bool,
}

/// Runs a `/relations` request: (chunk, next_batch, prev_batch, recursion_depth), as all three
/// responses hold them.
#[allow(clippy::type_complexity)]
async fn page<T>(
    services: &Services,
    identity: &myelin_accounts::Identity,
    asked: Asked<'_>,
    rel_type: Option<&str>,
    event_type: Option<&str>,
) -> Result<(Vec<ruma::serde::Raw<T>>, Option<String>, Option<String>, Option<UInt>), myelin_core::Error> {
    let query = RelationsQuery {
        rel_type,
        event_type,
        from: asked.from,
        to: asked.to,
        forwards: asked.dir == Direction::Forward,
        limit: limit(asked.limit),
        recurse: asked.recurse,
    };
    let viewer = Viewer { user: &identity.user_id, device_id: Some(identity.device_id.as_str()) };
    let page: RelationsPage =
        services.rooms.relations_for(viewer, asked.room_id, asked.event_id.as_str(), query).await?;
    let chunk = page.chunk.iter().map(raw).collect::<Result<_, _>>()?;
    Ok((chunk, page.next_batch, page.prev_batch, page.recursion_depth.and_then(UInt::new)))
}

macro_rules! asked {
    ($b:expr) => {
        Asked {
            room_id: &$b.room_id,
            event_id: &$b.event_id,
            from: $b.from.as_deref(),
            to: $b.to.as_deref(),
            dir: $b.dir,
            limit: $b.limit,
            recurse: $b.recurse,
        }
    };
}

/// `GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}`
async fn relations(
    State(services): State<Arc<Services>>,
    request: Ruma<relating::Request>,
) -> ApiResult<relating::Response> {
    let b = &request.body;
    let (chunk, next, prev, depth) = page(&services, request.identity()?, asked!(b), None, None).await?;
    let mut response = relating::Response::new(chunk);
    (response.next_batch, response.prev_batch, response.recursion_depth) = (next, prev, depth);
    Ok(response.into())
}

/// `GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}/{relType}`
async fn relations_of_type(
    State(services): State<Arc<Services>>,
    request: Ruma<relating_type::Request>,
) -> ApiResult<relating_type::Response> {
    let b = &request.body;
    let rel_type = b.rel_type.to_string();
    let (chunk, next, prev, depth) = page(&services, request.identity()?, asked!(b), Some(&rel_type), None).await?;
    let mut response = relating_type::Response::new(chunk);
    (response.next_batch, response.prev_batch, response.recursion_depth) = (next, prev, depth);
    Ok(response.into())
}

/// `GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}/{relType}/{eventType}`
async fn relations_of_type_and_event(
    State(services): State<Arc<Services>>,
    request: Ruma<relating_type_event::Request>,
) -> ApiResult<relating_type_event::Response> {
    let b = &request.body;
    let (rel_type, event_type) = (b.rel_type.to_string(), b.event_type.to_string());
    let (chunk, next, prev, depth) =
        page(&services, request.identity()?, asked!(b), Some(&rel_type), Some(&event_type)).await?;
    let mut response = relating_type_event::Response::new(chunk);
    (response.next_batch, response.prev_batch, response.recursion_depth) = (next, prev, depth);
    Ok(response.into())
}

/// `GET /_matrix/client/v1/rooms/{roomId}/threads`
async fn threads(
    State(services): State<Arc<Services>>,
    request: Ruma<get_threads::Request>,
) -> ApiResult<get_threads::Response> {
    let identity = request.identity()?;
    let b = &request.body;
    let participated = b.include == get_threads::IncludeThreads::Participated;
    let viewer = Viewer { user: &identity.user_id, device_id: Some(identity.device_id.as_str()) };
    let (chunk, next_batch) =
        services.rooms.threads_for(viewer, &b.room_id, participated, b.from.as_deref(), limit(b.limit)).await?;
    let mut response = get_threads::Response::new(chunk.iter().map(raw).collect::<Result<_, _>>()?);
    response.next_batch = next_batch;
    Ok(response.into())
}
