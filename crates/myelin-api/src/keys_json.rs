//! Key maps between the rooms service's JSON and ruma's typed maps, shared by the client
//! (`/keys/query`, `/keys/claim`) and federation (`/user/keys/query`, `/user/keys/claim`)
//! endpoints, whose shapes are the same.

use crate::client::rooms::raw;
use myelin_core::Error;
use myelin_rooms::e2ee::ClaimedKeys;
use ruma::{OwnedDeviceId, OwnedOneTimeKeyId, OwnedUserId, serde::Raw};
use serde_json::Value;
use std::collections::BTreeMap;

type ByUser<T> = BTreeMap<OwnedUserId, T>;
/// One-time keys per device and key ID.
type ByDeviceAndKey<T> = BTreeMap<OwnedDeviceId, BTreeMap<OwnedOneTimeKeyId, Raw<T>>>;

fn user_id(user: &str) -> Result<OwnedUserId, Error> {
    OwnedUserId::try_from(user).map_err(Error::internal)
}

/// The devices asked for per user, as the service takes them.
pub(crate) fn wanted_devices(wanted: &ByUser<Vec<OwnedDeviceId>>) -> BTreeMap<String, Vec<String>> {
    wanted.iter().map(|(user, devices)| (user.to_string(), devices.iter().map(ToString::to_string).collect())).collect()
}

/// The algorithm asked for per user and device, as the service takes them.
pub(crate) fn wanted_claims<A: ToString>(
    wanted: &ByUser<BTreeMap<OwnedDeviceId, A>>,
) -> BTreeMap<String, BTreeMap<String, String>> {
    wanted
        .iter()
        .map(|(user, devices)| {
            (user.to_string(), devices.iter().map(|(d, a)| (d.to_string(), a.to_string())).collect())
        })
        .collect()
}

/// Device keys per user and device.
pub(crate) fn device_keys<T>(
    keys: BTreeMap<String, BTreeMap<String, Value>>,
) -> Result<ByUser<BTreeMap<OwnedDeviceId, Raw<T>>>, Error> {
    keys.into_iter()
        .map(|(user, devices)| {
            let devices = devices
                .iter()
                .map(|(device, json)| Ok((OwnedDeviceId::from(device.as_str()), raw(json)?)))
                .collect::<Result<_, Error>>()?;
            Ok((user_id(&user)?, devices))
        })
        .collect()
}

/// One key per user (master, self-signing, user-signing).
pub(crate) fn user_keys<T>(keys: BTreeMap<String, Value>) -> Result<ByUser<Raw<T>>, Error> {
    keys.iter().map(|(user, json)| Ok((user_id(user)?, raw(json)?))).collect()
}

/// Claimed one-time keys per user, device and key ID.
pub(crate) fn claimed<T>(claimed: ClaimedKeys) -> Result<ByUser<ByDeviceAndKey<T>>, Error> {
    claimed
        .into_iter()
        .map(|(user, devices)| {
            let devices = devices
                .into_iter()
                .map(|(device, keys)| {
                    let keys = keys
                        .iter()
                        .map(|(id, json)| {
                            Ok((OwnedOneTimeKeyId::try_from(id.as_str()).map_err(Error::internal)?, raw(json)?))
                        })
                        .collect::<Result<_, Error>>()?;
                    Ok((OwnedDeviceId::from(device), keys))
                })
                .collect::<Result<_, Error>>()?;
            Ok((user_id(&user)?, devices))
        })
        .collect()
}
