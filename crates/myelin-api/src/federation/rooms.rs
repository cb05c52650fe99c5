//! Rooms over federation: transactions (`/send/{txnId}`), joins (`make_join`, `send_join`
//! v2) and reading the room DAG (`/state`, `/state_ids`, `/event`, `/event_auth`,
//! `/backfill`, `/get_missing_events`). The rooms service does the work.

use super::Federated;
use crate::{Services, client::RouteRuma, ruma_wrapper::ApiResult};
use axum::{Router, extract::State};
use myelin_core::{Error, util::now_ms};
use ruma::{
    CanonicalJsonObject, MilliSecondsSinceUnixEpoch, UInt,
    api::federation::{
        authorization::get_event_authorization::v1 as event_auth,
        backfill::get_backfill::v1 as backfill,
        event::{
            get_event::v1 as get_event, get_missing_events::v1 as missing_events, get_room_state::v1 as room_state,
            get_room_state_ids::v1 as room_state_ids,
        },
        membership::{
            create_invite::v2 as invite, create_join_event::v2 as send_join, create_knock_event::v1 as send_knock,
            create_leave_event::v2 as send_leave, prepare_join_event::v1 as make_join,
            prepare_knock_event::v1 as make_knock, prepare_leave_event::v1 as make_leave,
        },
        transactions::send_transaction_message::v1 as send_transaction,
    },
};
use std::sync::Arc;

pub(super) fn routes(router: Router<Arc<Services>>) -> Router<Arc<Services>> {
    router
        .ruma::<send_transaction::Request, _, _>(put_transaction)
        .ruma::<make_join::Request, _, _>(get_make_join)
        .ruma::<send_join::Request, _, _>(put_send_join)
        .ruma::<invite::Request, _, _>(put_invite)
        .ruma::<make_leave::Request, _, _>(get_make_leave)
        .ruma::<send_leave::Request, _, _>(put_send_leave)
        .ruma::<make_knock::Request, _, _>(get_make_knock)
        .ruma::<send_knock::Request, _, _>(put_send_knock)
        .ruma::<room_state_ids::Request, _, _>(get_state_ids)
        .ruma::<room_state::Request, _, _>(get_state)
        .ruma::<get_event::Request, _, _>(get_one_event)
        .ruma::<event_auth::Request, _, _>(get_event_auth)
        .ruma::<backfill::Request, _, _>(get_backfill)
        .ruma::<missing_events::Request, _, _>(post_missing_events)
}

fn now() -> MilliSecondsSinceUnixEpoch {
    MilliSecondsSinceUnixEpoch(UInt::new(now_ms() as u64).unwrap_or_default())
}

/// `PUT /_matrix/federation/v1/send/{txnId}`
async fn put_transaction(
    State(services): State<Arc<Services>>,
    request: Federated<send_transaction::Request>,
) -> ApiResult<send_transaction::Response> {
    let origin = request.origin()?.clone();
    let body = request.body;
    if body.origin != origin {
        return Err(Error::forbidden("the transaction's origin is not the server that signed it").into());
    }
    if body.pdus.len() > 50 || body.edus.len() > 100 {
        return Err(Error::bad_json("a transaction holds at most 50 PDUs and 100 EDUs").into());
    }
    let pdus: Vec<CanonicalJsonObject> =
        body.pdus.iter().filter_map(|raw| serde_json::from_str(raw.get()).ok()).collect();
    let edus: Vec<serde_json::Value> = body.edus.iter().filter_map(|raw| raw.deserialize_as().ok()).collect();
    let results = services.rooms.receive_transaction(&origin, body.transaction_id.as_str(), pdus, edus).await?;
    Ok(send_transaction::Response::new(results).into())
}

/// `GET /_matrix/federation/v1/make_join/{roomId}/{userId}`
async fn get_make_join(
    State(services): State<Arc<Services>>,
    request: Federated<make_join::Request>,
) -> ApiResult<make_join::Response> {
    let origin = request.origin()?.clone();
    let body = &request.body;
    // Without `ver` the asking server supports room version 1 only.
    let versions = if body.ver.is_empty() { vec![ruma::RoomVersionId::V1] } else { body.ver.clone() };
    let template = services.rooms.make_join(&origin, &body.room_id, &body.user_id, &versions).await?;
    let event = serde_json::value::to_raw_value(&template.event).map_err(Error::internal)?;
    let mut response = make_join::Response::new(event);
    response.room_version = Some(template.room_version);
    Ok(response.into())
}

/// `PUT /_matrix/federation/v2/send_join/{roomId}/{eventId}`
async fn put_send_join(
    State(services): State<Arc<Services>>,
    request: Federated<send_join::Request>,
) -> ApiResult<send_join::Response> {
    let origin = request.origin()?.clone();
    let body = request.body;
    let json: CanonicalJsonObject =
        serde_json::from_str(body.pdu.get()).map_err(|e| Error::bad_json(format!("the event: {e}")))?;
    let answer = services.rooms.send_join(&origin, &body.room_id, &body.event_id, json).await?;
    let mut state = send_join::RoomState::new();
    state.state = answer.state;
    state.auth_chain = answer.auth_chain;
    state.event = answer.event;
    state.servers_in_room = Some(answer.servers_in_room);
    Ok(send_join::Response::new(state).into())
}

/// `GET /_matrix/federation/v1/state_ids/{roomId}?event_id=`
async fn get_state_ids(
    State(services): State<Arc<Services>>,
    request: Federated<room_state_ids::Request>,
) -> ApiResult<room_state_ids::Response> {
    let origin = request.origin()?.clone();
    let (pdus, chain) =
        services.rooms.state_ids_for_server(&origin, &request.body.room_id, &request.body.event_id).await?;
    Ok(room_state_ids::Response::new(chain, pdus).into())
}

/// `GET /_matrix/federation/v1/state/{roomId}?event_id=`
async fn get_state(
    State(services): State<Arc<Services>>,
    request: Federated<room_state::Request>,
) -> ApiResult<room_state::Response> {
    let origin = request.origin()?.clone();
    let (pdus, chain) = services.rooms.state_for_server(&origin, &request.body.room_id, &request.body.event_id).await?;
    Ok(room_state::Response::new(chain, pdus).into())
}

/// `GET /_matrix/federation/v1/event/{eventId}`
async fn get_one_event(
    State(services): State<Arc<Services>>,
    request: Federated<get_event::Request>,
) -> ApiResult<get_event::Response> {
    let origin = request.origin()?.clone();
    let pdu = services.rooms.pdu_for_server(&origin, &request.body.event_id).await?;
    Ok(get_event::Response::new(services.config.server_name.clone(), now(), pdu).into())
}

/// `GET /_matrix/federation/v1/event_auth/{roomId}/{eventId}`
async fn get_event_auth(
    State(services): State<Arc<Services>>,
    request: Federated<event_auth::Request>,
) -> ApiResult<event_auth::Response> {
    let origin = request.origin()?.clone();
    let chain = services.rooms.event_auth_for(&origin, &request.body.room_id, &request.body.event_id).await?;
    Ok(event_auth::Response::new(chain).into())
}

/// `GET /_matrix/federation/v1/backfill/{roomId}?v=&limit=`
async fn get_backfill(
    State(services): State<Arc<Services>>,
    request: Federated<backfill::Request>,
) -> ApiResult<backfill::Response> {
    let origin = request.origin()?.clone();
    let body = &request.body;
    let limit = usize::try_from(u64::from(body.limit)).unwrap_or(usize::MAX);
    let pdus = services.rooms.backfill_for(&origin, &body.room_id, &body.v, limit).await?;
    Ok(backfill::Response::new(services.config.server_name.clone(), now(), pdus).into())
}

/// `POST /_matrix/federation/v1/get_missing_events/{roomId}`
async fn post_missing_events(
    State(services): State<Arc<Services>>,
    request: Federated<missing_events::Request>,
) -> ApiResult<missing_events::Response> {
    let origin = request.origin()?.clone();
    let body = &request.body;
    let limit = usize::try_from(u64::from(body.limit)).unwrap_or(usize::MAX);
    let min_depth = i64::try_from(u64::from(body.min_depth)).unwrap_or(i64::MAX);
    let events = services
        .rooms
        .missing_events_for(&origin, &body.room_id, &body.earliest_events, &body.latest_events, limit, min_depth)
        .await?;
    Ok(missing_events::Response::new(events).into())
}

/// `PUT /_matrix/federation/v2/invite/{roomId}/{eventId}`
async fn put_invite(
    State(services): State<Arc<Services>>,
    request: Federated<invite::Request>,
) -> ApiResult<invite::Response> {
    let origin = request.origin()?.clone();
    let body = &request.body;
    let json: CanonicalJsonObject =
        serde_json::from_str(body.event.get()).map_err(|e| Error::bad_json(format!("the event: {e}")))?;
    let signed = services
        .rooms
        .receive_invite(&origin, &body.room_id, &body.event_id, &body.room_version, json, &body.invite_room_state)
        .await?;
    let event = serde_json::value::to_raw_value(&signed).map_err(Error::internal)?;
    Ok(invite::Response::new(event).into())
}

/// `GET /_matrix/federation/v1/make_leave/{roomId}/{userId}`
async fn get_make_leave(
    State(services): State<Arc<Services>>,
    request: Federated<make_leave::Request>,
) -> ApiResult<make_leave::Response> {
    let origin = request.origin()?.clone();
    let template = services.rooms.make_leave(&origin, &request.body.room_id, &request.body.user_id).await?;
    let event = serde_json::value::to_raw_value(&template.event).map_err(Error::internal)?;
    Ok(make_leave::Response::new(Some(template.room_version), event).into())
}

/// `PUT /_matrix/federation/v2/send_leave/{roomId}/{eventId}`
async fn put_send_leave(
    State(services): State<Arc<Services>>,
    request: Federated<send_leave::Request>,
) -> ApiResult<send_leave::Response> {
    let origin = request.origin()?.clone();
    let body = request.body;
    let json: CanonicalJsonObject =
        serde_json::from_str(body.pdu.get()).map_err(|e| Error::bad_json(format!("the event: {e}")))?;
    services.rooms.send_leave(&origin, &body.room_id, &body.event_id, json).await?;
    Ok(send_leave::Response::new().into())
}

/// `GET /_matrix/federation/v1/make_knock/{roomId}/{userId}`
async fn get_make_knock(
    State(services): State<Arc<Services>>,
    request: Federated<make_knock::Request>,
) -> ApiResult<make_knock::Response> {
    let origin = request.origin()?.clone();
    let body = &request.body;
    let template = services.rooms.make_knock(&origin, &body.room_id, &body.user_id, &body.ver).await?;
    let event = serde_json::value::to_raw_value(&template.event).map_err(Error::internal)?;
    Ok(make_knock::Response::new(template.room_version, event).into())
}

/// `PUT /_matrix/federation/v1/send_knock/{roomId}/{eventId}`
async fn put_send_knock(
    State(services): State<Arc<Services>>,
    request: Federated<send_knock::Request>,
) -> ApiResult<send_knock::Response> {
    let origin = request.origin()?.clone();
    let body = request.body;
    let json: CanonicalJsonObject =
        serde_json::from_str(body.pdu.get()).map_err(|e| Error::bad_json(format!("the event: {e}")))?;
    let stripped = services.rooms.send_knock(&origin, &body.room_id, &body.event_id, json).await?;
    #[allow(deprecated)]
    let state = stripped
        .iter()
        .filter_map(|value| serde_json::value::to_raw_value(value).ok())
        .map(|raw| ruma::api::federation::membership::RawStrippedState::Stripped(ruma::serde::Raw::from_json(raw)))
        .collect();
    Ok(send_knock::Response::new(state).into())
}
