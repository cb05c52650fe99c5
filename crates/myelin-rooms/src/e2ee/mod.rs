//! End-to-end encryption support: device, one-time, fallback and cross-signing keys
//! (`/keys/*`), device-list tracking, to-device messages and server-side key backups. The
//! server never sees a secret: it checks what clients sign, stores it, and hands it out.

mod backup;
mod cross_signing;
mod device_keys;
mod device_lists;
mod remote_keys;
mod to_device;

pub use backup::{BackupKey, BackupVersion};
pub use cross_signing::{CrossSigningUpload, SignatureFailure};
pub use device_keys::{ClaimedKeys, KeysQuery, UploadedKey};
pub use remote_keys::{FederationDevice, FederationDevices};
pub use to_device::{SyncToDevice, ToDeviceMessage};

use myelin_core::{Error, Result};
use ruma::{CanonicalJsonValue, SigningKeyAlgorithm, serde::Base64};
use serde_json::{Map, Value};

/// A key object a client uploaded, as a JSON object.
pub(crate) fn key_object(json: &str, what: &str) -> Result<Map<String, Value>> {
    match serde_json::from_str::<Value>(json) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(Error::bad_json(format!("{what} must be a JSON object"))),
        Err(e) => Err(Error::bad_json(format!("{what}: {e}"))),
    }
}

/// Whether `object` carries a valid ed25519 signature of `signer` with key `key_id`
/// (`ed25519:<id>`) by the public key `public_key` (unpadded base64).
pub(crate) fn signed_by(object: &Map<String, Value>, signer: &str, key_id: &str, public_key: &str) -> bool {
    let Some(signature) = object.get("signatures").and_then(|s| s.get(signer)).and_then(|s| s.get(key_id)) else {
        return false;
    };
    let (Some(signature), Ok(public_key)) =
        (signature.as_str(), Base64::<ruma::serde::base64::Standard>::parse(public_key))
    else {
        return false;
    };
    let Ok(signature) = Base64::<ruma::serde::base64::Standard>::parse(signature) else {
        return false;
    };
    let Ok(CanonicalJsonValue::Object(canonical)) = CanonicalJsonValue::try_from(Value::Object(object.clone())) else {
        return false;
    };
    let Ok(signed) = ruma::signatures::to_canonical_json_string_for_signing(&canonical) else {
        return false;
    };
    ruma::signatures::verify_canonical_json_bytes(
        &SigningKeyAlgorithm::Ed25519,
        public_key.as_bytes(),
        signature.as_bytes(),
        signed.as_bytes(),
    )
    .is_ok()
}

/// Checks that `key` is an unpadded base64 Curve25519 or Ed25519 public key (32 bytes).
pub(crate) fn check_public_key(key: &str, what: &str) -> Result<()> {
    match Base64::<ruma::serde::base64::Standard>::parse(key) {
        Ok(bytes) if bytes.as_bytes().len() == 32 => Ok(()),
        Ok(_) => Err(Error::invalid_param(format!("{what} is not a 32-byte key"))),
        Err(_) => Err(Error::invalid_param(format!("{what} is not unpadded base64"))),
    }
}

/// `object` without `signatures` and `unsigned`: two uploads of one key compare equal on it.
pub(crate) fn unsigned_part(object: &Map<String, Value>) -> Map<String, Value> {
    let mut object = object.clone();
    object.remove("signatures");
    object.remove("unsigned");
    object
}

/// The one `ed25519:<id>` key of a cross-signing key object: (`ed25519:<id>`, public key).
pub(crate) fn cross_signing_public_key(object: &Map<String, Value>) -> Option<(String, String)> {
    let keys = object.get("keys")?.as_object()?;
    if keys.len() != 1 {
        return None;
    }
    let (key_id, key) = keys.iter().next()?;
    let id = key_id.strip_prefix("ed25519:")?;
    let key = key.as_str()?;
    (id == key).then(|| (key_id.clone(), key.to_owned()))
}
