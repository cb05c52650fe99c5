//! Rooms and their events: `/createRoom`, sending messages, state and redactions, reading
//! events, state, members and the timeline.

use super::RouteRuma;
use crate::{Ruma, Services, ruma_wrapper::ApiResult};
use axum::{Router, extract::State};
use myelin_accounts::Identity;
use myelin_core::Error;
use myelin_rooms::{EventFilter, Pagination, Txn, Viewer};
use ruma::{
    MilliSecondsSinceUnixEpoch, UInt,
    api::{
        Direction,
        client::{
            context::get_context::v3 as get_context,
            filter::RoomEventFilter,
            membership::{get_member_events::v3 as get_member_events, joined_members::v3 as joined_members},
            message::{get_message_events::v3 as get_message_events, send_message_event::v3 as send_message_event},
            redact::redact_event::v3 as redact_event,
            room::{
                create_room::v3 as create_room, get_event_by_timestamp::v1 as get_event_by_timestamp,
                get_room_event::v3 as get_room_event, upgrade_room::v3 as upgrade_room,
            },
            state::{
                get_state_event_for_key::v3 as get_state_event_for_key, get_state_events::v3 as get_state_events,
                send_state_event::v3 as send_state_event,
            },
        },
    },
    serde::Raw,
};
use serde_json::Value;
use std::sync::Arc;

pub(super) fn routes(mut router: Router<Arc<Services>>) -> Router<Arc<Services>> {
    // The empty state key, with or without the trailing slash (ruma's paths need a segment).
    for path in
        ["/_matrix/client/v3/rooms/{roomId}/state/{eventType}", "/_matrix/client/v3/rooms/{roomId}/state/{eventType}/"]
    {
        router = router.route(path, axum::routing::get(state_event).put(send_state));
    }
    router
        .ruma::<create_room::Request, _, _>(create)
        .ruma::<send_message_event::Request, _, _>(send_message)
        .ruma::<send_state_event::Request, _, _>(send_state)
        .ruma::<redact_event::Request, _, _>(redact)
        .ruma::<get_room_event::Request, _, _>(event)
        .ruma::<get_state_events::Request, _, _>(state)
        .ruma::<get_state_event_for_key::Request, _, _>(state_event)
        .ruma::<get_member_events::Request, _, _>(members)
        .ruma::<joined_members::Request, _, _>(joined)
        .ruma::<get_message_events::Request, _, _>(messages)
        .ruma::<get_event_by_timestamp::Request, _, _>(timestamp_to_event)
        .ruma::<get_context::Request, _, _>(context)
        .ruma::<upgrade_room::Request, _, _>(upgrade)
}

fn viewer(identity: &Identity) -> Viewer<'_> {
    Viewer { user: &identity.user_id, device_id: Some(identity.device_id.as_str()) }
}

/// Turns JSON built by a service into the raw type a ruma response holds.
pub(crate) fn raw<T>(value: &Value) -> Result<Raw<T>, Error> {
    Ok(Raw::from_json(serde_json::value::to_raw_value(value).map_err(Error::internal)?))
}

/// The JSON object a client sent as an event's content.
fn content_of(json: &serde_json::value::RawValue) -> Result<Value, Error> {
    let content: Value = serde_json::from_str(json.get()).map_err(|e| Error::bad_json(e.to_string()))?;
    if !content.is_object() {
        return Err(Error::bad_json("the event content must be a JSON object"));
    }
    Ok(content)
}

/// `POST /_matrix/client/v3/createRoom`
async fn create(
    State(services): State<Arc<Services>>,
    request: Ruma<create_room::Request>,
) -> ApiResult<create_room::Response> {
    let identity = request.identity()?;
    let room_id = services.rooms.create_room(&identity.user_id, &request.body).await?;
    Ok(create_room::Response::new(room_id).into())
}

/// `PUT /_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}`
async fn send_message(
    State(services): State<Arc<Services>>,
    request: Ruma<send_message_event::Request>,
) -> ApiResult<send_message_event::Response> {
    let identity = request.identity()?;
    let body = &request.body;
    let content = content_of(body.body.json())?;
    let txn = Txn { device_id: identity.device_id.to_string(), txn_id: body.txn_id.to_string() };
    let event_id = services
        .rooms
        .send_message(&identity.user_id, &body.room_id, &body.event_type.to_string(), content, &txn)
        .await?;
    Ok(send_message_event::Response::new(event_id).into())
}

/// `PUT /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}`
async fn send_state(
    State(services): State<Arc<Services>>,
    request: Ruma<send_state_event::Request>,
) -> ApiResult<send_state_event::Response> {
    let identity = request.identity()?;
    let body = &request.body;
    let content = content_of(body.body.json())?;
    let event_id = services
        .rooms
        .send_state(&identity.user_id, &body.room_id, &body.event_type.to_string(), &body.state_key, content)
        .await?;
    Ok(send_state_event::Response::new(event_id).into())
}

/// `PUT /_matrix/client/v3/rooms/{roomId}/redact/{eventId}/{txnId}`
async fn redact(
    State(services): State<Arc<Services>>,
    request: Ruma<redact_event::Request>,
) -> ApiResult<redact_event::Response> {
    let identity = request.identity()?;
    let body = &request.body;
    let txn = Txn { device_id: identity.device_id.to_string(), txn_id: body.txn_id.to_string() };
    let event_id =
        services.rooms.redact(&identity.user_id, &body.room_id, &body.event_id, body.reason.as_deref(), &txn).await?;
    Ok(redact_event::Response::new(event_id).into())
}

/// `GET /_matrix/client/v3/rooms/{roomId}/event/{eventId}`
async fn event(
    State(services): State<Arc<Services>>,
    request: Ruma<get_room_event::Request>,
) -> ApiResult<get_room_event::Response> {
    let identity = request.identity()?;
    let body = &request.body;
    let event = services.rooms.event_for(viewer(identity), &body.room_id, body.event_id.as_str()).await?;
    Ok(get_room_event::Response::new(raw(&event)?).into())
}

/// `GET /_matrix/client/v3/rooms/{roomId}/state`
async fn state(
    State(services): State<Arc<Services>>,
    request: Ruma<get_state_events::Request>,
) -> ApiResult<get_state_events::Response> {
    let identity = request.identity()?;
    let events = services.rooms.state_for(viewer(identity), &request.body.room_id).await?;
    let events = events.iter().map(raw).collect::<Result<_, _>>()?;
    Ok(get_state_events::Response::new(events).into())
}

/// `GET /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}`
async fn state_event(
    State(services): State<Arc<Services>>,
    request: Ruma<get_state_event_for_key::Request>,
) -> ApiResult<get_state_event_for_key::Response> {
    let identity = request.identity()?;
    let body = &request.body;
    let event = services
        .rooms
        .state_event_for(viewer(identity), &body.room_id, &body.event_type.to_string(), &body.state_key)
        .await?;
    let answer = match body.format {
        get_state_event_for_key::StateEventFormat::Event => event,
        _ => event["content"].clone(),
    };
    Ok(get_state_event_for_key::Response::new(serde_json::value::to_raw_value(&answer).map_err(Error::internal)?)
        .into())
}

/// `GET /_matrix/client/v3/rooms/{roomId}/members`
async fn members(
    State(services): State<Arc<Services>>,
    request: Ruma<get_member_events::Request>,
) -> ApiResult<get_member_events::Response> {
    let identity = request.identity()?;
    let body = &request.body;
    let membership = body.membership.as_ref().map(ToString::to_string);
    let not_membership = body.not_membership.as_ref().map(ToString::to_string);
    let events = services
        .rooms
        .members_for(
            viewer(identity),
            &body.room_id,
            body.at.as_deref(),
            membership.as_deref(),
            not_membership.as_deref(),
        )
        .await?;
    let events = events.iter().map(raw).collect::<Result<_, _>>()?;
    Ok(get_member_events::Response::new(events).into())
}

/// `GET /_matrix/client/v3/rooms/{roomId}/joined_members`
async fn joined(
    State(services): State<Arc<Services>>,
    request: Ruma<joined_members::Request>,
) -> ApiResult<joined_members::Response> {
    let identity = request.identity()?;
    let members = services.rooms.joined_members_for(&identity.user_id, &request.body.room_id).await?;
    let mut joined = std::collections::BTreeMap::new();
    for (user_id, content) in members {
        let Ok(user_id) = ruma::UserId::parse(user_id) else { continue };
        let mut member = joined_members::RoomMember::new();
        member.display_name = content["displayname"].as_str().map(str::to_owned);
        member.avatar_url = content["avatar_url"].as_str().map(Into::into);
        joined.insert(user_id, member);
    }
    Ok(joined_members::Response::new(joined).into())
}

/// The event filter of the rooms service from a client's `RoomEventFilter`.
pub(crate) fn event_filter(f: &RoomEventFilter) -> EventFilter {
    EventFilter {
        types: f.types.clone(),
        not_types: f.not_types.clone(),
        senders: f.senders.as_ref().map(|s| s.iter().map(ToString::to_string).collect()),
        not_senders: f.not_senders.iter().map(ToString::to_string).collect(),
        lazy_load_members: !f.lazy_load_options.is_disabled(),
    }
}

/// `GET /_matrix/client/v3/rooms/{roomId}/context/{eventId}`
async fn context(
    State(services): State<Arc<Services>>,
    request: Ruma<get_context::Request>,
) -> ApiResult<get_context::Response> {
    let identity = request.identity()?;
    let b = &request.body;
    let limit = u64::from(b.filter.limit.unwrap_or(b.limit)).min(100) as usize;
    let context = services
        .rooms
        .context(viewer(identity), &b.room_id, b.event_id.as_str(), limit, &event_filter(&b.filter))
        .await?;
    let mut response = get_context::Response::new();
    response.start = Some(context.start);
    response.end = Some(context.end);
    response.event = Some(raw(&context.event)?);
    response.events_before = context.events_before.iter().map(raw).collect::<Result<_, _>>()?;
    response.events_after = context.events_after.iter().map(raw).collect::<Result<_, _>>()?;
    response.state = context.state.iter().map(raw).collect::<Result<_, _>>()?;
    Ok(response.into())
}

/// `POST /_matrix/client/v3/rooms/{roomId}/upgrade`
async fn upgrade(
    State(services): State<Arc<Services>>,
    request: Ruma<upgrade_room::Request>,
) -> ApiResult<upgrade_room::Response> {
    let identity = request.identity()?;
    let b = &request.body;
    let replacement = services.rooms.upgrade_room(&identity.user_id, &b.room_id, &b.new_version).await?;
    Ok(upgrade_room::Response::new(replacement).into())
}

/// `GET /_matrix/client/v3/rooms/{roomId}/messages`
async fn messages(
    State(services): State<Arc<Services>>,
    request: Ruma<get_message_events::Request>,
) -> ApiResult<get_message_events::Response> {
    let identity = request.identity()?;
    let body = &request.body;
    let f = &body.filter;
    let filter = event_filter(f);
    let limit = f.limit.unwrap_or(body.limit).min(UInt::from(1000u32));
    let paging = Pagination {
        from: body.from.as_deref(),
        to: body.to.as_deref(),
        forwards: body.dir == Direction::Forward,
        limit: u64::from(limit) as usize,
    };
    let page = services.rooms.messages(viewer(identity), &body.room_id, paging, &filter).await?;
    let mut response = get_message_events::Response::new();
    response.start = page.start;
    response.end = page.end;
    response.chunk = page.chunk.iter().map(raw).collect::<Result<_, _>>()?;
    response.state = page.state.iter().map(raw).collect::<Result<_, _>>()?;
    Ok(response.into())
}

/// `GET /_matrix/client/v1/rooms/{roomId}/timestamp_to_event`
async fn timestamp_to_event(
    State(services): State<Arc<Services>>,
    request: Ruma<get_event_by_timestamp::Request>,
) -> ApiResult<get_event_by_timestamp::Response> {
    let identity = request.identity()?;
    let body = &request.body;
    let (event_id, ts) = services
        .rooms
        .event_near_ts(viewer(identity), &body.room_id, i64::from(body.ts.0), body.dir == Direction::Forward)
        .await?;
    let ts = MilliSecondsSinceUnixEpoch(UInt::new(ts.max(0) as u64).unwrap_or_default());
    Ok(get_event_by_timestamp::Response::new(event_id, ts).into())
}
