//! Device keys, one-time keys and fallback keys: `/keys/upload`, `/keys/query`, `/keys/claim`.

use super::{check_public_key, cross_signing_public_key, key_object, signed_by, unsigned_part};
use crate::service::RoomService;
use myelin_core::{Error, Result};
use myelin_store::{KeySignatureRow, OneTimeKeyRow};
use ruma::{DeviceId, OwnedDeviceId, OwnedServerName, OwnedUserId, UserId};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// A one-time or fallback key of an upload: its `algorithm:key_id` and JSON.
#[derive(Debug, Clone)]
pub struct UploadedKey {
    pub id: String,
    pub json: String,
}

/// What `/keys/query` answers, as JSON values keyed like the response.
#[derive(Debug, Default)]
pub struct KeysQuery {
    pub device_keys: BTreeMap<String, BTreeMap<String, Value>>,
    pub master_keys: BTreeMap<String, Value>,
    pub self_signing_keys: BTreeMap<String, Value>,
    pub user_signing_keys: BTreeMap<String, Value>,
    pub failures: BTreeMap<String, Value>,
}

/// Claimed keys: user → device → `algorithm:key_id` → key.
pub type ClaimedKeys = BTreeMap<String, BTreeMap<String, BTreeMap<String, Value>>>;

/// Algorithms every answer counts, even at zero: clients top up when they see it low.
const COUNTED_ALGORITHMS: &[&str] = &["signed_curve25519"];

impl RoomService {
    /// `POST /keys/upload`: checks and stores a device's keys; returns the one-time key counts.
    pub async fn upload_keys(
        &self,
        user: &UserId,
        device: &DeviceId,
        device_keys: Option<&str>,
        one_time_keys: &[UploadedKey],
        fallback_keys: &[UploadedKey],
    ) -> Result<BTreeMap<String, u64>> {
        let device_keys = device_keys.map(|json| check_device_keys(user, device, json)).transpose()?;
        // One-time keys are signed with the device's ed25519 key: from this upload or stored.
        let ed25519 = match &device_keys {
            Some(keys) => Some(device_ed25519(keys, device)?),
            None => match self.store.keys().device_keys(user.as_str(), device.as_str()).await? {
                Some(json) => Some(device_ed25519(&key_object(&json, "device_keys")?, device)?),
                None => None,
            },
        };
        let check = |keys: &[UploadedKey], what: &str| -> Result<Vec<OneTimeKeyRow>> {
            keys.iter().map(|key| check_one_time_key(user, device, ed25519.as_deref(), key, what)).collect()
        };
        let one_time_keys = check(one_time_keys, "one-time key")?;
        let fallback_keys = check(fallback_keys, "fallback key")?;
        // The same ID with other content is a client bug that would make a claimed key useless.
        let ids: Vec<String> = one_time_keys.iter().map(|k| k.key_id.clone()).collect();
        for (id, stored) in self.store.keys().one_time_keys_stored(user.as_str(), device.as_str(), &ids).await? {
            let new = one_time_keys.iter().find(|k| k.key_id == id).map(|k| k.key_json.as_str());
            if new != Some(stored.as_str()) {
                return Err(Error::invalid_param(format!("One-time key {id} already exists with other content")));
            }
        }
        let device_json = device_keys.map(|keys| serde_json::to_string(&keys)).transpose().map_err(Error::internal)?;
        self.changes.begin(crate::changes::DEVICE_LISTS_KEY);
        let changed = self
            .store
            .keys()
            .upload(user.as_str(), device.as_str(), device_json.as_deref(), &one_time_keys, &fallback_keys)
            .await;
        self.changes.finish(crate::changes::DEVICE_LISTS_KEY, changed.as_ref().ok().copied().flatten());
        self.forget_key_counts(user.as_str(), device.as_str());
        if let Some(stream) = changed? {
            self.advance_stream(stream);
            self.announce_device_change(user, Some(device.as_str()), stream).await;
        }
        self.one_time_key_counts(user, device).await
    }

    /// Unclaimed one-time keys of a device by algorithm.
    pub async fn one_time_key_counts(&self, user: &UserId, device: &DeviceId) -> Result<BTreeMap<String, u64>> {
        let mut counts: BTreeMap<String, u64> = COUNTED_ALGORITHMS.iter().map(|a| (a.to_string(), 0)).collect();
        for (algorithm, count) in self.store.keys().one_time_key_counts(user.as_str(), device.as_str()).await? {
            counts.insert(algorithm, count.max(0) as u64);
        }
        Ok(counts)
    }

    pub async fn unused_fallback_key_types(&self, user: &UserId, device: &DeviceId) -> Result<Vec<String>> {
        Ok(self.store.keys().unused_fallback_key_types(user.as_str(), device.as_str()).await?)
    }

    /// What every `/sync` reports of the device's keys: one-time key counts and unused
    /// fallback key types; cached until the device uploads or someone claims.
    pub async fn device_key_counts(
        &self,
        user: &UserId,
        device: &DeviceId,
    ) -> Result<(BTreeMap<String, u64>, Vec<String>)> {
        let key = (user.to_string(), device.to_string());
        if let Some(counts) = self.key_counts.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(counts.clone());
        }
        let counts =
            (self.one_time_key_counts(user, device).await?, self.unused_fallback_key_types(user, device).await?);
        let mut cache = self.key_counts.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() > 100_000 {
            cache.clear();
        }
        cache.insert(key, counts.clone());
        Ok(counts)
    }

    fn forget_key_counts(&self, user: &str, device: &str) {
        self.key_counts.lock().unwrap_or_else(|e| e.into_inner()).remove(&(user.to_owned(), device.to_owned()));
    }

    /// `POST /keys/query`: the keys of the requested users' devices (all of them when the list
    /// is empty) and their cross-signing keys, with the signatures `requester` may see. Other
    /// servers' users are asked for over federation. `requester` None is another server
    /// asking (`/_matrix/federation/v1/user/keys/query`): local users only, no user-signing
    /// keys, only the owners' signatures.
    pub async fn query_keys(
        &self,
        requester: Option<&UserId>,
        wanted: &BTreeMap<String, Vec<String>>,
    ) -> Result<KeysQuery> {
        let mut out = KeysQuery::default();
        let mut remote: BTreeMap<OwnedServerName, BTreeMap<OwnedUserId, Vec<OwnedDeviceId>>> = BTreeMap::new();
        for (user_id, devices) in wanted {
            let Ok(user) = UserId::parse(user_id.as_str()) else { continue };
            if user.server_name() != self.config.server_name.as_str() {
                if requester.is_some() {
                    let devices = devices.iter().map(|d| OwnedDeviceId::from(d.as_str())).collect();
                    remote.entry(user.server_name().to_owned()).or_default().insert(user.clone(), devices);
                }
                continue;
            }
            let signatures = self.store.keys().signatures_of(user.as_str()).await?;
            let names: BTreeMap<String, Option<String>> = self
                .store
                .users()
                .devices(user.as_str())
                .await?
                .into_iter()
                .map(|d| (d.device_id, d.display_name))
                .collect();
            let mut user_devices = BTreeMap::new();
            for (device_id, json) in self.store.keys().device_keys_of_user(user.as_str()).await? {
                if !devices.is_empty() && !devices.contains(&device_id) {
                    continue;
                }
                let mut keys = key_object(&json, "device_keys")?;
                add_signatures(&mut keys, &signatures, &device_id, requester, &user);
                if let Some(Some(name)) = names.get(&device_id) {
                    keys.insert("unsigned".into(), json!({"device_display_name": name}));
                }
                user_devices.insert(device_id, Value::Object(keys));
            }
            out.device_keys.insert(user_id.clone(), user_devices);
            for (key_type, map) in [
                ("master", &mut out.master_keys),
                ("self_signing", &mut out.self_signing_keys),
                ("user_signing", &mut out.user_signing_keys),
            ] {
                // A user-signing key is its owner's business only.
                if key_type == "user_signing" && requester != Some(&*user) {
                    continue;
                }
                if let Some(json) = self.store.keys().cross_signing_key(user.as_str(), key_type).await? {
                    let mut key = key_object(&json, key_type)?;
                    if let Some((_, public)) = cross_signing_public_key(&key) {
                        add_signatures(&mut key, &signatures, &public, requester, &user);
                    }
                    map.insert(user_id.clone(), Value::Object(key));
                }
            }
        }
        if !remote.is_empty() {
            self.query_remote_keys(remote, &mut out).await;
        }
        Ok(out)
    }

    /// `POST /keys/claim`: one key per requested device and algorithm; a one-time key goes to
    /// exactly one claimer, the fallback key when none is left. Other servers' users' keys are
    /// claimed over federation when `local_only` is false (a client asking).
    pub async fn claim_keys(
        &self,
        wanted: &BTreeMap<String, BTreeMap<String, String>>,
        local_only: bool,
    ) -> Result<(ClaimedKeys, BTreeMap<String, Value>)> {
        let mut claimed: ClaimedKeys = BTreeMap::new();
        let mut failures = BTreeMap::new();
        let mut remote: BTreeMap<OwnedServerName, BTreeMap<String, BTreeMap<String, String>>> = BTreeMap::new();
        for (user_id, devices) in wanted {
            let Ok(user) = UserId::parse(user_id.as_str()) else { continue };
            if user.server_name() != self.config.server_name.as_str() {
                if !local_only {
                    remote.entry(user.server_name().to_owned()).or_default().insert(user_id.clone(), devices.clone());
                }
                continue;
            }
            for (device_id, algorithm) in devices {
                let claim = self.store.keys().claim(user_id, device_id, algorithm).await;
                self.forget_key_counts(user_id, device_id);
                if let Some((key_id, json)) = claim? {
                    let key: Value = serde_json::from_str(&json).map_err(Error::internal)?;
                    claimed
                        .entry(user_id.clone())
                        .or_default()
                        .entry(device_id.clone())
                        .or_default()
                        .insert(key_id, key);
                }
            }
        }
        if !remote.is_empty() {
            self.claim_remote_keys(remote, &mut claimed, &mut failures).await;
        }
        Ok((claimed, failures))
    }
}

/// Checks a device's keys: theirs, naming both identity keys, self-signed.
fn check_device_keys(user: &UserId, device: &DeviceId, json: &str) -> Result<Map<String, Value>> {
    let keys = key_object(json, "device_keys")?;
    if keys.get("user_id").and_then(Value::as_str) != Some(user.as_str()) {
        return Err(Error::invalid_param("device_keys.user_id is not the user of the access token"));
    }
    if keys.get("device_id").and_then(Value::as_str) != Some(device.as_str()) {
        return Err(Error::invalid_param("device_keys.device_id is not the device of the access token"));
    }
    if !keys.get("algorithms").is_some_and(|a| a.as_array().is_some_and(|a| a.iter().all(Value::is_string))) {
        return Err(Error::bad_json("device_keys.algorithms must be a list of strings"));
    }
    let Some(map) = keys.get("keys").and_then(Value::as_object) else {
        return Err(Error::bad_json("device_keys.keys must be an object"));
    };
    for (key_id, key) in map {
        let Some(key) = key.as_str() else {
            return Err(Error::bad_json(format!("device key {key_id} must be a string")));
        };
        if key_id.starts_with("ed25519:") || key_id.starts_with("curve25519:") {
            check_public_key(key, &format!("device key {key_id}"))?;
        }
    }
    let ed25519 = device_ed25519(&keys, device)?;
    if !signed_by(&keys, user.as_str(), &format!("ed25519:{device}"), &ed25519) {
        return Err(Error::invalid_param("device_keys are not signed by the device's ed25519 key"));
    }
    let mut keys = keys;
    keys.remove("unsigned");
    Ok(keys)
}

/// The device's ed25519 public key from its keys object.
fn device_ed25519(keys: &Map<String, Value>, device: &DeviceId) -> Result<String> {
    keys.get("keys")
        .and_then(|k| k.get(format!("ed25519:{device}")))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| Error::invalid_param(format!("device_keys has no ed25519:{device} key")))
}

/// Checks one uploaded one-time or fallback key: signed keys must carry the device's signature.
fn check_one_time_key(
    user: &UserId,
    device: &DeviceId,
    ed25519: Option<&str>,
    key: &UploadedKey,
    what: &str,
) -> Result<OneTimeKeyRow> {
    let Some((algorithm, _)) = key.id.split_once(':') else {
        return Err(Error::invalid_param(format!("{what} ID {} is not algorithm:id", key.id)));
    };
    let value: Value =
        serde_json::from_str(&key.json).map_err(|e| Error::bad_json(format!("{what} {}: {e}", key.id)))?;
    match &value {
        // Unsigned keys (plain `curve25519`) are the key itself.
        Value::String(public) if !algorithm.starts_with("signed_") => {
            check_public_key(public, &format!("{what} {}", key.id))?;
        }
        Value::Object(object) => {
            let Some(public) = object.get("key").and_then(Value::as_str) else {
                return Err(Error::bad_json(format!("{what} {} has no key", key.id)));
            };
            check_public_key(public, &format!("{what} {}", key.id))?;
            let Some(ed25519) = ed25519 else {
                return Err(Error::invalid_param(format!(
                    "upload the device's keys before or with its {what}s: {} cannot be checked",
                    key.id
                )));
            };
            if !signed_by(object, user.as_str(), &format!("ed25519:{device}"), ed25519) {
                return Err(Error::invalid_param(format!("{what} {} is not signed by the device", key.id)));
            }
        }
        _ => return Err(Error::bad_json(format!("{what} {} must be a signed key object", key.id))),
    }
    let json = serde_json::to_string(&value).map_err(Error::internal)?;
    Ok(OneTimeKeyRow { key_id: key.id.clone(), algorithm: algorithm.to_owned(), key_json: json })
}

/// Merges uploaded signatures of the key `target_key_id` of `owner` into `key`: the owner's
/// own signatures for everyone, another user's only for that user.
fn add_signatures(
    key: &mut Map<String, Value>,
    signatures: &[KeySignatureRow],
    target_key_id: &str,
    requester: Option<&UserId>,
    owner: &UserId,
) {
    for s in signatures.iter().filter(|s| s.target_key_id == target_key_id) {
        if s.signer_user_id != owner.as_str() && requester.is_none_or(|r| s.signer_user_id != r.as_str()) {
            continue;
        }
        let all = key.entry("signatures").or_insert_with(|| json!({}));
        if let Some(all) = all.as_object_mut() {
            let by_signer = all.entry(s.signer_user_id.clone()).or_insert_with(|| json!({}));
            if let Some(by_signer) = by_signer.as_object_mut() {
                by_signer.insert(s.signer_key_id.clone(), Value::String(s.signature.clone()));
            }
        }
    }
}

/// Whether two key objects are the same key, whatever their signatures.
pub(crate) fn same_key(a: &Map<String, Value>, b: &Map<String, Value>) -> bool {
    unsigned_part(a) == unsigned_part(b)
}
