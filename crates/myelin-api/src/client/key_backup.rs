//! Server-side key backup: `/room_keys/version[/{version}]` and
//! `/room_keys/keys[/{roomId}[/{sessionId}]]`.

use super::{RouteRuma, rooms::raw};
use crate::{Ruma, Services, ruma_wrapper::ApiResult};
use axum::{Router, extract::State};
use myelin_core::Error;
use myelin_rooms::e2ee::{BackupKey, BackupVersion};
use ruma::{
    OwnedRoomId, UInt,
    api::client::backup::{
        KeyBackupData, RoomKeyBackup, add_backup_keys::v3 as add_keys, add_backup_keys_for_room::v3 as add_room_keys,
        add_backup_keys_for_session::v3 as add_session_key, create_backup_version::v3 as create_version,
        delete_backup_keys::v3 as delete_keys, delete_backup_keys_for_room::v3 as delete_room_keys,
        delete_backup_keys_for_session::v3 as delete_session_key, delete_backup_version::v3 as delete_version,
        get_backup_info::v3 as get_version, get_backup_keys::v3 as get_keys,
        get_backup_keys_for_room::v3 as get_room_keys, get_backup_keys_for_session::v3 as get_session_key,
        get_latest_backup_info::v3 as get_latest_version, update_backup_version::v3 as update_version,
    },
    serde::Raw,
};
use serde_json::{Value, json};
use std::{collections::BTreeMap, sync::Arc};

pub(super) fn routes(router: Router<Arc<Services>>) -> Router<Arc<Services>> {
    router
        .ruma::<create_version::Request, _, _>(create)
        .ruma::<get_latest_version::Request, _, _>(latest)
        .ruma::<get_version::Request, _, _>(version)
        .ruma::<update_version::Request, _, _>(update)
        .ruma::<delete_version::Request, _, _>(delete)
        .ruma::<add_keys::Request, _, _>(put_keys)
        .ruma::<add_room_keys::Request, _, _>(put_room_keys)
        .ruma::<add_session_key::Request, _, _>(put_session_key)
        .ruma::<get_keys::Request, _, _>(keys)
        .ruma::<get_room_keys::Request, _, _>(room_keys)
        .ruma::<get_session_key::Request, _, _>(session_key)
        .ruma::<delete_keys::Request, _, _>(remove_keys)
        .ruma::<delete_room_keys::Request, _, _>(remove_room_keys)
        .ruma::<delete_session_key::Request, _, _>(remove_session_key)
}

/// The `{"algorithm", "auth_data"}` object of a create or update request.
fn algorithm_object(raw: &Raw<ruma::api::client::backup::BackupAlgorithm>) -> Result<(String, Value), Error> {
    let object: Value = serde_json::from_str(raw.json().get()).map_err(|e| Error::bad_json(e.to_string()))?;
    let Some(algorithm) = object.get("algorithm").and_then(Value::as_str) else {
        return Err(Error::bad_json("algorithm must be a string"));
    };
    if !object.get("auth_data").is_some_and(Value::is_object) {
        return Err(Error::bad_json("auth_data must be an object"));
    }
    Ok((algorithm.to_owned(), object))
}

fn count(n: u64) -> UInt {
    UInt::new_saturating(n)
}

/// `POST /_matrix/client/v3/room_keys/version`
async fn create(
    State(services): State<Arc<Services>>,
    request: Ruma<create_version::Request>,
) -> ApiResult<create_version::Response> {
    let identity = request.identity()?;
    let (algorithm, object) = algorithm_object(&request.body.algorithm)?;
    let version = services.rooms.create_backup(&identity.user_id, &algorithm, &object).await?;
    Ok(create_version::Response::new(version).into())
}

fn info(v: BackupVersion) -> Result<(Raw<ruma::api::client::backup::BackupAlgorithm>, UInt, String, String), Error> {
    Ok((raw(&v.auth_data)?, count(v.count), v.etag, v.version))
}

/// `GET /_matrix/client/v3/room_keys/version`
async fn latest(
    State(services): State<Arc<Services>>,
    request: Ruma<get_latest_version::Request>,
) -> ApiResult<get_latest_version::Response> {
    let identity = request.identity()?;
    let (algorithm, count, etag, version) = info(services.rooms.backup_version(&identity.user_id, None).await?)?;
    Ok(get_latest_version::Response::new(algorithm, count, etag, version).into())
}

/// `GET /_matrix/client/v3/room_keys/version/{version}`
async fn version(
    State(services): State<Arc<Services>>,
    request: Ruma<get_version::Request>,
) -> ApiResult<get_version::Response> {
    let identity = request.identity()?;
    let v = services.rooms.backup_version(&identity.user_id, Some(&request.body.version)).await?;
    let (algorithm, count, etag, version) = info(v)?;
    Ok(get_version::Response::new(algorithm, count, etag, version).into())
}

/// `PUT /_matrix/client/v3/room_keys/version/{version}`
async fn update(
    State(services): State<Arc<Services>>,
    request: Ruma<update_version::Request>,
) -> ApiResult<update_version::Response> {
    let identity = request.identity()?;
    let b = &request.body;
    let (algorithm, object) = algorithm_object(&b.algorithm)?;
    // The body may repeat the version; it must then be this one.
    if let Some(v) = object.get("version").and_then(Value::as_str)
        && v != b.version
    {
        return Err(Error::invalid_param("the version in the body does not match the path").into());
    }
    services.rooms.update_backup(&identity.user_id, &b.version, &algorithm, &object).await?;
    Ok(update_version::Response::new().into())
}

/// `DELETE /_matrix/client/v3/room_keys/version/{version}`
async fn delete(
    State(services): State<Arc<Services>>,
    request: Ruma<delete_version::Request>,
) -> ApiResult<delete_version::Response> {
    let identity = request.identity()?;
    services.rooms.delete_backup(&identity.user_id, &request.body.version).await?;
    Ok(delete_version::Response::new().into())
}

/// A session's key data from the request.
fn backup_key(room_id: &OwnedRoomId, session_id: &str, data: &Raw<KeyBackupData>) -> Result<BackupKey, Error> {
    let parsed: KeyBackupData =
        data.deserialize().map_err(|e| Error::bad_json(format!("key data of session {session_id}: {e}")))?;
    let object: Value = serde_json::from_str(data.json().get()).map_err(|e| Error::bad_json(e.to_string()))?;
    Ok(BackupKey {
        room_id: room_id.to_string(),
        session_id: session_id.to_owned(),
        first_message_index: parsed.first_message_index.into(),
        forwarded_count: parsed.forwarded_count.into(),
        is_verified: parsed.is_verified,
        session_data: object.get("session_data").cloned().unwrap_or(Value::Null),
    })
}

fn key_data(key: &BackupKey) -> Result<Raw<KeyBackupData>, Error> {
    raw(&json!({
        "first_message_index": key.first_message_index,
        "forwarded_count": key.forwarded_count,
        "is_verified": key.is_verified,
        "session_data": key.session_data,
    }))
}

/// `PUT /_matrix/client/v3/room_keys/keys`
async fn put_keys(
    State(services): State<Arc<Services>>,
    request: Ruma<add_keys::Request>,
) -> ApiResult<add_keys::Response> {
    let identity = request.identity()?;
    let b = &request.body;
    let mut keys = Vec::new();
    for (room_id, room) in &b.rooms {
        for (session_id, data) in &room.sessions {
            keys.push(backup_key(room_id, session_id, data)?);
        }
    }
    let (etag, n) = services.rooms.put_backup_keys(&identity.user_id, &b.version, &keys).await?;
    Ok(add_keys::Response::new(etag, count(n)).into())
}

/// `PUT /_matrix/client/v3/room_keys/keys/{roomId}`
async fn put_room_keys(
    State(services): State<Arc<Services>>,
    request: Ruma<add_room_keys::Request>,
) -> ApiResult<add_room_keys::Response> {
    let identity = request.identity()?;
    let b = &request.body;
    let keys = b
        .sessions
        .iter()
        .map(|(session, data)| backup_key(&b.room_id, session, data))
        .collect::<Result<Vec<_>, _>>()?;
    let (etag, n) = services.rooms.put_backup_keys(&identity.user_id, &b.version, &keys).await?;
    Ok(add_room_keys::Response::new(etag, count(n)).into())
}

/// `PUT /_matrix/client/v3/room_keys/keys/{roomId}/{sessionId}`
async fn put_session_key(
    State(services): State<Arc<Services>>,
    request: Ruma<add_session_key::Request>,
) -> ApiResult<add_session_key::Response> {
    let identity = request.identity()?;
    let b = &request.body;
    let key = backup_key(&b.room_id, &b.session_id, &b.session_data)?;
    let (etag, n) = services.rooms.put_backup_keys(&identity.user_id, &b.version, &[key]).await?;
    Ok(add_session_key::Response::new(etag, count(n)).into())
}

/// Keys grouped by room and session, as the responses hold them.
fn by_room(keys: &[BackupKey]) -> Result<BTreeMap<OwnedRoomId, BTreeMap<String, Raw<KeyBackupData>>>, Error> {
    let mut rooms: BTreeMap<OwnedRoomId, BTreeMap<String, Raw<KeyBackupData>>> = BTreeMap::new();
    for key in keys {
        let room_id = OwnedRoomId::try_from(key.room_id.as_str()).map_err(Error::internal)?;
        rooms.entry(room_id).or_default().insert(key.session_id.clone(), key_data(key)?);
    }
    Ok(rooms)
}

/// `GET /_matrix/client/v3/room_keys/keys`
async fn keys(
    State(services): State<Arc<Services>>,
    request: Ruma<get_keys::Request>,
) -> ApiResult<get_keys::Response> {
    let identity = request.identity()?;
    let keys = services.rooms.backup_keys(&identity.user_id, &request.body.version, None, None).await?;
    let rooms = by_room(&keys)?.into_iter().map(|(room, sessions)| (room, RoomKeyBackup::new(sessions))).collect();
    Ok(get_keys::Response::new(rooms).into())
}

/// `GET /_matrix/client/v3/room_keys/keys/{roomId}`
async fn room_keys(
    State(services): State<Arc<Services>>,
    request: Ruma<get_room_keys::Request>,
) -> ApiResult<get_room_keys::Response> {
    let identity = request.identity()?;
    let b = &request.body;
    let keys = services.rooms.backup_keys(&identity.user_id, &b.version, Some(b.room_id.as_str()), None).await?;
    let sessions = by_room(&keys)?.remove(&b.room_id).unwrap_or_default();
    Ok(get_room_keys::Response::new(sessions).into())
}

/// `GET /_matrix/client/v3/room_keys/keys/{roomId}/{sessionId}`
async fn session_key(
    State(services): State<Arc<Services>>,
    request: Ruma<get_session_key::Request>,
) -> ApiResult<get_session_key::Response> {
    let identity = request.identity()?;
    let b = &request.body;
    let keys = services
        .rooms
        .backup_keys(&identity.user_id, &b.version, Some(b.room_id.as_str()), Some(&b.session_id))
        .await?;
    let Some(key) = keys.first() else {
        return Err(Error::not_found("No backed-up key for this session").into());
    };
    Ok(get_session_key::Response::new(key_data(key)?).into())
}

/// `DELETE /_matrix/client/v3/room_keys/keys`
async fn remove_keys(
    State(services): State<Arc<Services>>,
    request: Ruma<delete_keys::Request>,
) -> ApiResult<delete_keys::Response> {
    let identity = request.identity()?;
    let (etag, n) = services.rooms.delete_backup_keys(&identity.user_id, &request.body.version, None, None).await?;
    Ok(delete_keys::Response::new(etag, count(n)).into())
}

/// `DELETE /_matrix/client/v3/room_keys/keys/{roomId}`
async fn remove_room_keys(
    State(services): State<Arc<Services>>,
    request: Ruma<delete_room_keys::Request>,
) -> ApiResult<delete_room_keys::Response> {
    let identity = request.identity()?;
    let b = &request.body;
    let (etag, n) =
        services.rooms.delete_backup_keys(&identity.user_id, &b.version, Some(b.room_id.as_str()), None).await?;
    Ok(delete_room_keys::Response::new(etag, count(n)).into())
}

/// `DELETE /_matrix/client/v3/room_keys/keys/{roomId}/{sessionId}`
async fn remove_session_key(
    State(services): State<Arc<Services>>,
    request: Ruma<delete_session_key::Request>,
) -> ApiResult<delete_session_key::Response> {
    let identity = request.identity()?;
    let b = &request.body;
    let (etag, n) = services
        .rooms
        .delete_backup_keys(&identity.user_id, &b.version, Some(b.room_id.as_str()), Some(&b.session_id))
        .await?;
    Ok(delete_session_key::Response::new(etag, count(n)).into())
}
