//! Cross-signing: `/keys/device_signing/upload` (the master, self-signing and user-signing
//! keys) and `/keys/signatures/upload` (signatures of devices and of other users' keys).

use super::{cross_signing_public_key, device_keys::same_key, key_object, signed_by};
use crate::service::RoomService;
use myelin_core::{Error, Result};
use myelin_store::KeySignatureRow;
use ruma::UserId;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The keys of one `/keys/device_signing/upload`, as uploaded JSON.
#[derive(Debug, Default)]
pub struct CrossSigningUpload {
    pub master_key: Option<String>,
    pub self_signing_key: Option<String>,
    pub user_signing_key: Option<String>,
}

/// Why one signature of a `/keys/signatures/upload` was refused: (errcode, message).
#[derive(Debug, Clone)]
pub struct SignatureFailure {
    pub errcode: &'static str,
    pub error: String,
}

impl SignatureFailure {
    fn new(errcode: &'static str, error: impl Into<String>) -> Self {
        SignatureFailure { errcode, error: error.into() }
    }
}

impl RoomService {
    /// Whether an upload of cross-signing keys needs User-Interactive Auth: not the first one
    /// (MSC3967, Matrix v1.11), nor one that repeats the keys already stored (a retried request).
    pub async fn cross_signing_upload_needs_auth(&self, user: &UserId, upload: &CrossSigningUpload) -> Result<bool> {
        let keys = self.store.keys();
        let Some(master) = keys.cross_signing_key(user.as_str(), "master").await? else {
            return Ok(false);
        };
        for (key_type, new) in [
            ("master", &upload.master_key),
            ("self_signing", &upload.self_signing_key),
            ("user_signing", &upload.user_signing_key),
        ] {
            let Some(new) = new else { continue };
            let stored = if key_type == "master" {
                Some(master.clone())
            } else {
                keys.cross_signing_key(user.as_str(), key_type).await?
            };
            let same = match stored {
                Some(stored) => same_key(&key_object(&stored, key_type)?, &key_object(new, key_type)?),
                None => false,
            };
            if !same {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Stores cross-signing keys after checking them: the user's, for their usage, one
    /// ed25519 key each, and the self-signing and user-signing keys signed by the master key.
    pub async fn upload_cross_signing_keys(&self, user: &UserId, upload: &CrossSigningUpload) -> Result<()> {
        let master = match &upload.master_key {
            Some(json) => Some(check_cross_signing_key(user, json, "master")?),
            None => None,
        };
        let master_public = match &master {
            Some(key) => cross_signing_public_key(key),
            None => match self.store.keys().cross_signing_key(user.as_str(), "master").await? {
                Some(json) => cross_signing_public_key(&key_object(&json, "master_key")?),
                None => None,
            },
        };
        let mut keys: Vec<(&str, String)> = Vec::new();
        if let Some(master) = master {
            keys.push(("master", serde_json::to_string(&master).map_err(Error::internal)?));
        }
        for (key_type, json) in [("self_signing", &upload.self_signing_key), ("user_signing", &upload.user_signing_key)]
        {
            let Some(json) = json else { continue };
            let key = check_cross_signing_key(user, json, key_type)?;
            let Some((master_id, master_key)) = &master_public else {
                return Err(Error::invalid_param(format!("a {key_type} key needs a master key to sign it")));
            };
            if !signed_by(&key, user.as_str(), master_id, master_key) {
                return Err(Error::invalid_param(format!("the {key_type} key is not signed by the master key")));
            }
            keys.push((key_type, serde_json::to_string(&key).map_err(Error::internal)?));
        }
        if keys.is_empty() {
            return Ok(());
        }
        self.changes.begin(crate::changes::DEVICE_LISTS_KEY);
        let written = self.store.keys().set_cross_signing_keys(user.as_str(), &keys).await;
        self.changes.finish(crate::changes::DEVICE_LISTS_KEY, written.as_ref().ok().copied());
        let stream = written?;
        self.advance_stream(stream);
        self.announce_device_change(user, None, stream).await;
        Ok(())
    }

    /// `POST /keys/signatures/upload`: stores each valid signature; the others are reported per
    /// user and key ID.
    pub async fn upload_signatures(
        &self,
        signer: &UserId,
        signed: &BTreeMap<String, BTreeMap<String, String>>,
    ) -> Result<BTreeMap<String, BTreeMap<String, SignatureFailure>>> {
        let mut failures: BTreeMap<String, BTreeMap<String, SignatureFailure>> = BTreeMap::new();
        let mut accepted = Vec::new();
        for (target_user, objects) in signed {
            for (key_id, json) in objects {
                match self.check_signature_upload(signer, target_user, key_id, json).await? {
                    Ok(mut rows) => accepted.append(&mut rows),
                    Err(failure) => {
                        failures.entry(target_user.clone()).or_default().insert(key_id.clone(), failure);
                    }
                }
            }
        }
        self.changes.begin(crate::changes::DEVICE_LISTS_KEY);
        let written = self.store.keys().add_signatures(&accepted).await;
        self.changes.finish(crate::changes::DEVICE_LISTS_KEY, written.as_ref().ok().copied().flatten());
        if let Some(stream) = written? {
            self.advance_stream(stream);
        }
        Ok(failures)
    }

    /// The new signatures `signer` made of `target_user`'s key `key_id` (a device ID or a
    /// master public key), or why they are refused.
    async fn check_signature_upload(
        &self,
        signer: &UserId,
        target_user: &str,
        key_id: &str,
        json: &str,
    ) -> Result<std::result::Result<Vec<KeySignatureRow>, SignatureFailure>> {
        let Ok(object) = key_object(json, "signed key") else {
            return Ok(Err(SignatureFailure::new("M_BAD_JSON", "not a JSON object")));
        };
        let keys = self.store.keys();
        // What was signed: one of the target's devices, or its master key.
        let (stored, is_master) = match keys.device_keys(target_user, key_id).await? {
            Some(device) => (device, false),
            None => match keys.cross_signing_key(target_user, "master").await? {
                Some(master)
                    if cross_signing_public_key(&key_object(&master, "master")?).is_some_and(|(_, k)| k == key_id) =>
                {
                    (master, true)
                }
                _ => return Ok(Err(SignatureFailure::new("M_NOT_FOUND", "no such device or master key"))),
            },
        };
        let stored = key_object(&stored, "stored key")?;
        if !same_key(&stored, &object) {
            return Ok(Err(SignatureFailure::new("M_INVALID_PARAM", "the signed object is not the stored key")));
        }
        // Who may sign it with which key: the owner's self-signing key signs their devices, the
        // owner's devices sign their master key, another user's user-signing key signs it too.
        let mut signing_keys: Vec<(String, String)> = Vec::new();
        if signer.as_str() == target_user {
            if is_master {
                for (device_id, device_json) in keys.device_keys_of_user(target_user).await? {
                    let device = key_object(&device_json, "device keys")?;
                    let id = format!("ed25519:{device_id}");
                    if let Some(public) = device.get("keys").and_then(|k| k.get(&id)).and_then(Value::as_str) {
                        signing_keys.push((id, public.to_owned()));
                    }
                }
            } else if let Some(ssk) = keys.cross_signing_key(target_user, "self_signing").await? {
                signing_keys.extend(cross_signing_public_key(&key_object(&ssk, "self_signing")?));
            }
        } else if is_master && let Some(usk) = keys.cross_signing_key(signer.as_str(), "user_signing").await? {
            signing_keys.extend(cross_signing_public_key(&key_object(&usk, "user_signing")?));
        }
        let given = signatures_of(&object, signer.as_str());
        let mut rows = Vec::new();
        for (signer_key_id, signature) in given {
            let Some((_, public)) = signing_keys.iter().find(|(id, _)| *id == signer_key_id) else { continue };
            if !signed_by(&object, signer.as_str(), &signer_key_id, public) {
                return Ok(Err(SignatureFailure::new(
                    "M_INVALID_SIGNATURE",
                    format!("{signer_key_id} does not verify"),
                )));
            }
            rows.push(KeySignatureRow {
                target_user_id: target_user.to_owned(),
                target_key_id: key_id.to_owned(),
                signer_user_id: signer.to_string(),
                signer_key_id,
                signature,
            });
        }
        if rows.is_empty() {
            return Ok(Err(SignatureFailure::new(
                "M_INVALID_SIGNATURE",
                "no signature by a key that may sign this key",
            )));
        }
        Ok(Ok(rows))
    }
}

/// Checks a cross-signing key object: the user's, for `usage`, one ed25519 key.
fn check_cross_signing_key(user: &UserId, json: &str, usage: &str) -> Result<Map<String, Value>> {
    let key = key_object(json, &format!("{usage}_key"))?;
    if key.get("user_id").and_then(Value::as_str) != Some(user.as_str()) {
        return Err(Error::invalid_param(format!("the {usage} key's user_id is not the user of the access token")));
    }
    if !key.get("usage").and_then(Value::as_array).is_some_and(|u| u.iter().any(|u| u.as_str() == Some(usage))) {
        return Err(Error::invalid_param(format!("the {usage} key's usage does not include \"{usage}\"")));
    }
    match cross_signing_public_key(&key) {
        Some((_, public)) => super::check_public_key(&public, &format!("the {usage} key"))?,
        None => {
            return Err(Error::invalid_param(format!(
                "the {usage} key must hold one key, \"ed25519:<public key>\": \"<public key>\""
            )));
        }
    }
    let mut key = key;
    key.remove("unsigned");
    Ok(key)
}

/// (key ID, signature) of `signer`'s signatures on an object.
fn signatures_of(object: &Map<String, Value>, signer: &str) -> Vec<(String, String)> {
    object
        .get("signatures")
        .and_then(|s| s.get(signer))
        .and_then(Value::as_object)
        .map(|s| s.iter().filter_map(|(id, sig)| Some((id.clone(), sig.as_str()?.to_owned()))).collect())
        .unwrap_or_default()
}
