//! Queries other servers make about this one's users and rooms: profiles, room aliases, a
//! user's devices, device keys and one-time keys (`/_matrix/federation/v1/query/*`,
//! `/user/devices/{userId}`, `/user/keys/query`, `/user/keys/claim`) and the public room
//! directory (`/_matrix/federation/v1/publicRooms`), and who an OpenID token belongs to
//! (`/_matrix/federation/v1/openid/userinfo`).

use super::Federated;
use crate::{ApiError, Services, client::RouteRuma, client::rooms::raw, keys_json, ruma_wrapper::ApiResult};
use axum::{Router, extract::State};
use myelin_core::Error;
use ruma::{
    OwnedDeviceId, UInt, UserId,
    api::federation::{
        device::get_devices::v1 as devices,
        directory::{get_public_rooms::v1 as public_rooms, get_public_rooms_filtered::v1 as public_rooms_filtered},
        keys::{claim_keys::v1 as claim_keys, get_keys::v1 as query_keys},
        openid::get_openid_userinfo::v1 as openid_userinfo,
        query::{get_profile_information::v1 as profile, get_room_information::v1 as room_alias},
    },
    profile::{ProfileFieldName, UserProfile},
};
use std::sync::Arc;

pub(super) fn routes(router: Router<Arc<Services>>) -> Router<Arc<Services>> {
    router
        .ruma::<profile::Request, _, _>(get_profile)
        .ruma::<room_alias::Request, _, _>(get_room_alias)
        .ruma::<devices::Request, _, _>(get_devices)
        .ruma::<query_keys::Request, _, _>(post_query_keys)
        .ruma::<claim_keys::Request, _, _>(post_claim_keys)
        .ruma::<public_rooms::Request, _, _>(get_public_rooms)
        .ruma::<public_rooms_filtered::Request, _, _>(post_public_rooms)
        .ruma::<openid_userinfo::Request, _, _>(get_openid_userinfo)
}

/// `GET /_matrix/federation/v1/openid/userinfo` (unsigned: the token is the credential)
async fn get_openid_userinfo(
    State(services): State<Arc<Services>>,
    request: Federated<openid_userinfo::Request>,
) -> ApiResult<openid_userinfo::Response> {
    let user = services.accounts.openid_user(&request.body.access_token).await?;
    Ok(openid_userinfo::Response::new(user).into())
}

fn local_user(services: &Services, user: &UserId) -> Result<(), ApiError> {
    if user.server_name() != services.config.server_name {
        return Err(Error::not_found(format!("{user} is not a user of this server")).into());
    }
    Ok(())
}

/// `GET /_matrix/federation/v1/query/profile`
async fn get_profile(
    State(services): State<Arc<Services>>,
    request: Federated<profile::Request>,
) -> ApiResult<profile::Response> {
    let user = &request.body.user_id;
    local_user(&services, user)?;
    let (displayname, avatar_url) = services.accounts.profile(user).await?;
    let wanted = |field: ProfileFieldName| request.body.field.as_ref().is_none_or(|f| *f == field);
    let mut data = UserProfile::new();
    if let Some(name) = displayname.filter(|_| wanted(ProfileFieldName::DisplayName)) {
        data.set("displayname".into(), name.into());
    }
    if let Some(url) = avatar_url.filter(|_| wanted(ProfileFieldName::AvatarUrl)) {
        data.set("avatar_url".into(), url.to_string().into());
    }
    let mut response = profile::Response::new();
    response.data = data;
    Ok(response.into())
}

/// `GET /_matrix/federation/v1/query/directory`
async fn get_room_alias(
    State(services): State<Arc<Services>>,
    request: Federated<room_alias::Request>,
) -> ApiResult<room_alias::Response> {
    let alias = &request.body.room_alias;
    if alias.server_name() != services.config.server_name {
        return Err(Error::not_found(format!("{alias} is not an alias of this server")).into());
    }
    let room_id = services.rooms.resolve_alias(alias).await?;
    Ok(room_alias::Response::new(room_id, vec![services.config.server_name.clone()]).into())
}

/// `GET /_matrix/federation/v1/user/devices/{userId}`
async fn get_devices(
    State(services): State<Arc<Services>>,
    request: Federated<devices::Request>,
) -> ApiResult<devices::Response> {
    let user = &request.body.user_id;
    local_user(&services, user)?;
    let found = services.rooms.devices_for_federation(user).await?;
    let mut list = Vec::new();
    for device in found.devices {
        let mut entry = devices::UserDevice::new(OwnedDeviceId::from(device.device_id), raw(&device.keys)?);
        entry.device_display_name = device.display_name;
        list.push(entry);
    }
    let mut response = devices::Response::new(user.clone(), UInt::new_saturating(found.stream_id));
    response.devices = list;
    response.master_key = found.master_key.as_ref().map(raw).transpose()?;
    response.self_signing_key = found.self_signing_key.as_ref().map(raw).transpose()?;
    Ok(response.into())
}

/// `POST /_matrix/federation/v1/user/keys/query`
async fn post_query_keys(
    State(services): State<Arc<Services>>,
    request: Federated<query_keys::Request>,
) -> ApiResult<query_keys::Response> {
    let keys = services.rooms.query_keys(None, &keys_json::wanted_devices(&request.body.device_keys)).await?;
    let mut response = query_keys::Response::new(keys_json::device_keys(keys.device_keys)?);
    response.master_keys = keys_json::user_keys(keys.master_keys)?;
    response.self_signing_keys = keys_json::user_keys(keys.self_signing_keys)?;
    Ok(response.into())
}

/// `POST /_matrix/federation/v1/user/keys/claim`
async fn post_claim_keys(
    State(services): State<Arc<Services>>,
    request: Federated<claim_keys::Request>,
) -> ApiResult<claim_keys::Response> {
    let (claimed, _) = services.rooms.claim_keys(&keys_json::wanted_claims(&request.body.one_time_keys), true).await?;
    Ok(claim_keys::Response::new(keys_json::claimed(claimed)?).into())
}

fn page_limit(limit: Option<UInt>) -> Option<usize> {
    limit.map(|l| u64::from(l).min(500) as usize)
}

/// `GET /_matrix/federation/v1/publicRooms`
async fn get_public_rooms(
    State(services): State<Arc<Services>>,
    request: Federated<public_rooms::Request>,
) -> ApiResult<public_rooms::Response> {
    let b = &request.body;
    let page = services.rooms.public_rooms(None, &[], b.since.as_deref(), page_limit(b.limit)).await?;
    let mut response = public_rooms::Response::new();
    response.chunk = page.chunk;
    response.next_batch = page.next_batch;
    response.prev_batch = page.prev_batch;
    response.total_room_count_estimate = UInt::new(page.total);
    Ok(response.into())
}

/// `POST /_matrix/federation/v1/publicRooms`
async fn post_public_rooms(
    State(services): State<Arc<Services>>,
    request: Federated<public_rooms_filtered::Request>,
) -> ApiResult<public_rooms_filtered::Response> {
    let b = &request.body;
    let page = services
        .rooms
        .public_rooms(
            b.filter.generic_search_term.as_deref(),
            &b.filter.room_types,
            b.since.as_deref(),
            page_limit(b.limit),
        )
        .await?;
    let mut response = public_rooms_filtered::Response::new();
    response.chunk = page.chunk;
    response.next_batch = page.next_batch;
    response.prev_batch = page.prev_batch;
    response.total_room_count_estimate = UInt::new(page.total);
    Ok(response.into())
}
