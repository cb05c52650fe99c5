//! `/sync`, the filters it takes (`/user/{userId}/filter`) and presence, which it sets.

use super::{
    RouteRuma,
    rooms::{event_filter, raw},
};
use crate::{Ruma, Services, ruma_wrapper::ApiResult};
use axum::{Router, extract::State};
use myelin_core::Error;
use myelin_rooms::{SyncOptions, Viewer};
use ruma::{
    RoomId, UInt,
    api::client::{
        filter::{FilterDefinition, create_filter::v3 as create_filter, get_filter::v3 as get_filter},
        presence::{get_presence::v3 as get_presence, set_presence::v3 as set_presence},
        sync::sync_events::v3 as sync_events,
    },
    presence::PresenceState,
};
use std::sync::Arc;

pub(super) fn routes(router: Router<Arc<Services>>) -> Router<Arc<Services>> {
    router
        .ruma::<sync_events::Request, _, _>(sync)
        .ruma::<create_filter::Request, _, _>(create)
        .ruma::<get_filter::Request, _, _>(get)
        .ruma::<get_presence::Request, _, _>(presence)
        .ruma::<set_presence::Request, _, _>(put_presence)
}

/// `GET /_matrix/client/v3/presence/{userId}/status`
async fn presence(
    State(services): State<Arc<Services>>,
    request: Ruma<get_presence::Request>,
) -> ApiResult<get_presence::Response> {
    let identity = request.identity()?;
    let (state, status, ago) = services.rooms.presence_of(&identity.user_id, &request.body.user_id).await?;
    let mut response = get_presence::Response::new(PresenceState::from(state.as_str()));
    response.status_msg = status;
    response.currently_active = Some(state == "online");
    response.last_active_ago = Some(std::time::Duration::from_millis(ago as u64));
    Ok(response.into())
}

/// `PUT /_matrix/client/v3/presence/{userId}/status`
async fn put_presence(
    State(services): State<Arc<Services>>,
    request: Ruma<set_presence::Request>,
) -> ApiResult<set_presence::Response> {
    let identity = request.identity()?;
    let b = &request.body;
    if b.user_id != identity.user_id {
        return Err(Error::forbidden("you may only set your own presence").into());
    }
    services.rooms.set_presence(&identity.user_id, b.presence.as_str(), b.status_msg.as_deref()).await?;
    Ok(set_presence::Response::new().into())
}

fn own(identity: &myelin_accounts::Identity, user_id: &ruma::UserId) -> Result<(), Error> {
    if identity.user_id != user_id {
        return Err(Error::forbidden("you may only use your own filters"));
    }
    Ok(())
}

/// `POST /_matrix/client/v3/user/{userId}/filter`
async fn create(
    State(services): State<Arc<Services>>,
    request: Ruma<create_filter::Request>,
) -> ApiResult<create_filter::Response> {
    let identity = request.identity()?;
    own(identity, &request.body.user_id)?;
    let json = serde_json::to_string(&request.body.filter).map_err(Error::internal)?;
    let id = services.rooms.create_filter(&identity.user_id, &json).await?;
    Ok(create_filter::Response::new(id).into())
}

/// `GET /_matrix/client/v3/user/{userId}/filter/{filterId}`
async fn get(
    State(services): State<Arc<Services>>,
    request: Ruma<get_filter::Request>,
) -> ApiResult<get_filter::Response> {
    let identity = request.identity()?;
    own(identity, &request.body.user_id)?;
    let json = services.rooms.filter(&identity.user_id, &request.body.filter_id).await?;
    let filter: FilterDefinition = serde_json::from_str(&json).map_err(Error::internal)?;
    Ok(get_filter::Response::new(filter).into())
}

/// `GET /_matrix/client/v3/sync`
async fn sync(
    State(services): State<Arc<Services>>,
    request: Ruma<sync_events::Request>,
) -> ApiResult<sync_events::Response> {
    let identity = request.identity()?;
    let b = &request.body;
    let filter = match &b.filter {
        None => FilterDefinition::default(),
        Some(sync_events::Filter::FilterDefinition(filter)) => filter.clone(),
        Some(sync_events::Filter::FilterId(id)) => {
            let json = services.rooms.filter(&identity.user_id, id).await?;
            serde_json::from_str(&json).map_err(Error::internal)?
        }
        Some(_) => FilterDefinition::default(),
    };
    let room = &filter.room;
    let options = SyncOptions {
        timeout: b.timeout.unwrap_or_default(),
        full_state: b.full_state,
        timeline_limit: room.timeline.limit.map_or(10, |l| u64::from(l) as usize),
        timeline: event_filter(&room.timeline),
        lazy_load_members: !room.state.lazy_load_options.is_disabled(),
        include_leave: room.include_leave,
        rooms: room.rooms.as_ref().map(|rooms| rooms.iter().map(ToString::to_string).collect()),
        not_rooms: room.not_rooms.iter().map(ToString::to_string).collect(),
        unread_thread_notifications: room.timeline.unread_thread_notifications,
    };
    let viewer = Viewer { user: &identity.user_id, device_id: Some(identity.device_id.as_str()) };
    // Syncing marks the user online (or unavailable), unless the client says offline.
    match b.set_presence {
        PresenceState::Offline => {}
        ref state => services.rooms.presence_from_sync(&identity.user_id, state.as_str()).await?,
    }
    let rooms = services.rooms.sync_rooms(viewer, b.since.as_deref(), &options).await?;

    let mut response = sync_events::Response::new(rooms.next_batch);
    response.to_device.events = rooms.to_device.iter().map(raw).collect::<Result<_, _>>()?;
    let users = |ids: &[String]| ids.iter().filter_map(|u| ruma::UserId::parse(u).ok()).collect::<Vec<_>>();
    response.device_lists.changed = users(&rooms.device_lists_changed);
    response.device_lists.left = users(&rooms.device_lists_left);
    let (counts, fallback) = services.rooms.device_key_counts(&identity.user_id, &identity.device_id).await?;
    response.device_one_time_keys_count = counts
        .into_iter()
        .map(|(algorithm, n)| (ruma::OneTimeKeyAlgorithm::from(algorithm.as_str()), UInt::new_saturating(n)))
        .collect();
    response.device_unused_fallback_key_types =
        Some(fallback.iter().map(|a| ruma::OneTimeKeyAlgorithm::from(a.as_str())).collect());
    response.account_data.events = rooms.account_data.iter().map(raw).collect::<Result<_, _>>()?;
    response.presence.events = rooms.presence.iter().map(raw).collect::<Result<_, _>>()?;
    let room_id = |id: &str| RoomId::parse(id).map_err(Error::internal);
    for update in rooms.join {
        let mut joined = sync_events::JoinedRoom::new();
        fill_timeline(&mut joined.timeline, &update)?;
        joined.state = sync_events::State::Before(update.state.iter().map(raw).collect::<Result<Vec<_>, _>>()?.into());
        if let Some((heroes, joined_count, invited_count)) = &update.summary {
            joined.summary.heroes = heroes.iter().filter_map(|h| ruma::UserId::parse(h).ok()).collect();
            joined.summary.joined_member_count = UInt::new(*joined_count);
            joined.summary.invited_member_count = UInt::new(*invited_count);
        }
        joined.account_data.events = update.account_data.iter().map(raw).collect::<Result<_, _>>()?;
        joined.ephemeral.events = update.ephemeral.iter().map(raw).collect::<Result<_, _>>()?;
        if let Some(unread) = &update.unread {
            joined.unread_notifications.notification_count = Some(UInt::new_saturating(unread.notification_count));
            joined.unread_notifications.highlight_count = Some(UInt::new_saturating(unread.highlight_count));
            for (thread, (notify, highlight)) in &unread.threads {
                let Ok(thread) = ruma::OwnedEventId::try_from(thread.as_str()) else { continue };
                let mut counts = ruma::api::client::sync::sync_events::UnreadNotificationsCount::new();
                counts.notification_count = Some(UInt::new_saturating(*notify));
                counts.highlight_count = Some(UInt::new_saturating(*highlight));
                joined.unread_thread_notifications.insert(thread, counts);
            }
        }
        response.rooms.join.insert(room_id(&update.room_id)?, joined);
    }
    for update in rooms.leave {
        let mut left = sync_events::LeftRoom::new();
        fill_timeline(&mut left.timeline, &update)?;
        left.state = sync_events::State::Before(update.state.iter().map(raw).collect::<Result<Vec<_>, _>>()?.into());
        response.rooms.leave.insert(room_id(&update.room_id)?, left);
    }
    for invited in rooms.invite {
        let state: sync_events::InviteState = invited.events.iter().map(raw).collect::<Result<Vec<_>, _>>()?.into();
        response.rooms.invite.insert(room_id(&invited.room_id)?, state.into());
    }
    for knocked in rooms.knock {
        let mut state = sync_events::KnockState::new();
        state.events = knocked.events.iter().map(raw).collect::<Result<_, _>>()?;
        response.rooms.knock.insert(room_id(&knocked.room_id)?, state.into());
    }
    Ok(response.into())
}

fn fill_timeline(timeline: &mut sync_events::Timeline, update: &myelin_rooms::RoomUpdate) -> Result<(), Error> {
    timeline.limited = update.limited;
    timeline.prev_batch = update.prev_batch.clone();
    timeline.events = update.timeline.iter().map(raw).collect::<Result<_, _>>()?;
    Ok(())
}
