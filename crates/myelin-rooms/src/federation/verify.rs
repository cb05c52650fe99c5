//! The checks on received PDUs that need no I/O: format, the signatures of the servers that
//! must sign them, content hashes (a mismatch means the event is used redacted), their room.
//!
//! One PDU goes through ruma's `verify_event`. Many at once (a join's 5,000 state events, a
//! backfill batch) go through `check_pdus`, which does the same checks with less work per
//! event: the redacted canonical form is serialized once and serves both as the event ID's
//! reference hash and as the signed bytes (ruma serializes it twice), and the ed25519
//! signatures of the batch are verified together (`ed25519_dalek::verify_batch`, about twice
//! as fast as one by one). When a batch does not verify, each event is checked again alone
//! with ruma, so the error names the bad event and the answer is ruma's.
//!
//! Batch verification accepts exactly the valid signatures; the one difference from checking
//! one by one is that a signer could grind a signature with a small-order component that a
//! batch accepts and a single check refuses. Only the signer can make such a signature, and a
//! signer can already send different events to different servers, so this opens nothing new.

use super::event_id_of;
use crate::{pdu::Pdu, service::RoomInfo};
use ed25519_dalek::{Signature, VerifyingKey};
use myelin_core::{Error, Result};
use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, OwnedEventId,
    canonical_json::RedactingSerializer,
    room_version_rules::EventIdFormatVersion,
    serde::{
        Base64,
        base64::{Standard, UrlSafe},
    },
    signatures::{PublicKeyMap, Verified},
};
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// Checks one PDU with ruma.
pub(crate) fn check_pdu(room: &RoomInfo, mut json: CanonicalJsonObject, keys: &PublicKeyMap) -> Result<Pdu> {
    json.remove("unsigned");
    ruma::state_res::check_pdu_format(&json, &room.rules.event_format).map_err(Error::bad_json)?;
    let event_id = event_id_of(&json, room)?;
    match ruma::signatures::verify_event(keys, &json, &room.rules) {
        Ok(Verified::All) => {}
        Ok(Verified::Signatures) => json = redacted(room, json, &event_id)?,
        Err(e) => return Err(Error::forbidden(format!("{event_id}: bad signature: {e}"))),
    }
    parsed(room, event_id, json)
}

/// Checks many PDUs as `check_pdu` does each, verifying their signatures as one batch. Any
/// bad event fails the whole batch.
pub(crate) fn check_pdus(room: &RoomInfo, jsons: Vec<CanonicalJsonObject>, keys: &PublicKeyMap) -> Result<Vec<Pdu>> {
    let mut verifying_keys = KeyCache::new(keys);
    let mut signed: Vec<Signed> = Vec::with_capacity(jsons.len());
    for mut json in jsons {
        json.remove("unsigned");
        ruma::state_res::check_pdu_format(&json, &room.rules.event_format).map_err(Error::bad_json)?;
        // The redacted form without signatures: the reference hash's input and the signed bytes.
        let bytes = RedactingSerializer::new()
            .rules(&room.rules.redaction)
            .custom_redacted_root_fields(&["signatures", "unsigned"])
            .serialize(&json)
            .map_err(|e| Error::bad_json(format!("an event cannot be serialized: {e}")))?;
        let event_id = match room.rules.event_id_format {
            EventIdFormatVersion::V1 => event_id_of(&json, room)?,
            format => reference_event_id(format, bytes.as_bytes())?,
        };
        let signatures = signatures_to_check(room, &json, &event_id, &mut verifying_keys)?;
        signed.push(Signed { event_id, json, bytes, signatures });
    }

    let mut messages: Vec<&[u8]> = Vec::new();
    let mut signatures = Vec::new();
    let mut public_keys = Vec::new();
    for event in &signed {
        for (signature, key) in &event.signatures {
            messages.push(event.bytes.as_bytes());
            signatures.push(*signature);
            public_keys.push(*key);
        }
    }
    if ed25519_dalek::verify_batch(&messages, &signatures, &public_keys).is_err() {
        // Find the culprit the exact way, one by one.
        for event in signed {
            check_pdu(room, event.json, keys)?;
        }
        return Err(Error::forbidden("an event of the batch has a bad signature"));
    }

    signed
        .into_iter()
        .map(|Signed { event_id, json, .. }| {
            let json = if content_hash_matches(&json)? { json } else { redacted(room, json, &event_id)? };
            parsed(room, event_id, json)
        })
        .collect()
}

/// An event whose signatures are to be verified.
struct Signed {
    event_id: OwnedEventId,
    json: CanonicalJsonObject,
    /// The signed bytes.
    bytes: String,
    signatures: Vec<(Signature, VerifyingKey)>,
}

/// The public keys of `PublicKeyMap`, decoded once per batch.
struct KeyCache<'a> {
    keys: &'a PublicKeyMap,
    decoded: HashMap<(String, String), Option<VerifyingKey>>,
}

impl<'a> KeyCache<'a> {
    fn new(keys: &'a PublicKeyMap) -> KeyCache<'a> {
        KeyCache { keys, decoded: HashMap::new() }
    }

    /// The server's key of that ID, if known and well-formed.
    fn get(&mut self, server: &str, key_id: &str) -> Option<VerifyingKey> {
        let keys = self.keys;
        *self.decoded.entry((server.to_owned(), key_id.to_owned())).or_insert_with(|| {
            let bytes = keys.get(server)?.get(key_id)?.as_bytes();
            VerifyingKey::try_from(bytes).ok()
        })
    }
}

/// The signatures of an event to verify: for each server that must sign it, every signature
/// with an ed25519 key we know (as ruma's `verify_event`: other algorithms and unknown keys
/// are skipped; a server with none left fails the event).
fn signatures_to_check(
    room: &RoomInfo,
    json: &CanonicalJsonObject,
    event_id: &OwnedEventId,
    keys: &mut KeyCache<'_>,
) -> Result<Vec<(Signature, VerifyingKey)>> {
    let bad = |what: String| Error::forbidden(format!("{event_id}: bad signature: {what}"));
    let servers = ruma::signatures::required_server_signatures_to_verify_event(json, &room.rules.signatures)
        .map_err(|e| bad(e.to_string()))?;
    let Some(CanonicalJsonValue::Object(all)) = json.get("signatures") else {
        return Err(bad("no signatures".to_owned()));
    };
    let mut found = Vec::new();
    for server in servers {
        let Some(CanonicalJsonValue::Object(set)) = all.get(server.as_str()) else {
            return Err(bad(format!("none of {server}")));
        };
        let before = found.len();
        for (key_id, signature) in set {
            if !key_id.starts_with("ed25519:") {
                continue;
            }
            let Some(key) = keys.get(server.as_str(), key_id) else { continue };
            let CanonicalJsonValue::String(signature) = signature else {
                return Err(bad(format!("signatures.{server}.{key_id} is not a string")));
            };
            let signature = Base64::<Standard, [u8; 64]>::parse(signature)
                .map_err(|e| bad(format!("signatures.{server}.{key_id}: {e}")))?;
            found.push((Signature::from_bytes(&signature.into_inner()), key));
        }
        if found.len() == before {
            return Err(bad(format!("no signature of {server} with a known key")));
        }
    }
    Ok(found)
}

/// The event ID of room versions 3+: the reference hash of the redacted form.
fn reference_event_id(format: EventIdFormatVersion, redacted_bytes: &[u8]) -> Result<OwnedEventId> {
    let hash: [u8; 32] = Sha256::digest(redacted_bytes).into();
    let encoded = match format {
        EventIdFormatVersion::V2 => Base64::<Standard, _>::new(hash).encode(),
        _ => Base64::<UrlSafe, _>::new(hash).encode(),
    };
    OwnedEventId::try_from(format!("${encoded}")).map_err(Error::internal)
}

/// Whether the event's `hashes.sha256` is the hash of its content.
fn content_hash_matches(json: &CanonicalJsonObject) -> Result<bool> {
    let computed = ruma::signatures::content_hash(json).map_err(|e| Error::bad_json(e.to_string()))?;
    let claimed = match json.get("hashes") {
        Some(CanonicalJsonValue::Object(hashes)) => match hashes.get("sha256") {
            Some(CanonicalJsonValue::String(hash)) => hash,
            _ => return Err(Error::bad_json("the event has no hashes.sha256")),
        },
        _ => return Err(Error::bad_json("the event has no hashes")),
    };
    Ok(Base64::<Standard>::parse(claimed).is_ok_and(|hash| hash.as_bytes() == computed.as_bytes()))
}

fn redacted(room: &RoomInfo, json: CanonicalJsonObject, event_id: &OwnedEventId) -> Result<CanonicalJsonObject> {
    ruma::canonical_json::redact(json, &room.rules.redaction, None)
        .map_err(|e| Error::bad_json(format!("{event_id}: {e}")))
}

fn parsed(room: &RoomInfo, event_id: OwnedEventId, json: CanonicalJsonObject) -> Result<Pdu> {
    let pdu = Pdu::from_json(event_id, json).map_err(|e| Error::bad_json(e.to_string()))?;
    if pdu.room_id != room.room_id {
        return Err(Error::bad_json(format!("{} is not an event of {}", pdu.event_id, room.room_id)));
    }
    Ok(pdu)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ruma::{RoomId, RoomVersionId, signatures::Ed25519KeyPair};
    use serde_json::json;

    fn signed_messages(pair: &Ed25519KeyPair, count: usize) -> Vec<CanonicalJsonObject> {
        let rules = RoomVersionId::V10.rules().unwrap();
        (0..count)
            .map(|i| {
                let mut object: CanonicalJsonObject = serde_json::from_value(json!({
                    "room_id": "!r:example.org", "sender": "@u:example.org", "origin_server_ts": 1000 + i,
                    "type": "m.room.message", "content": { "body": format!("message {i}") },
                    "prev_events": [], "auth_events": [], "depth": i + 1,
                }))
                .unwrap();
                ruma::signatures::hash_and_sign_event("example.org", pair, &mut object, &rules.redaction).unwrap();
                object
            })
            .collect()
    }

    fn setup() -> (RoomInfo, Ed25519KeyPair, PublicKeyMap) {
        let room = RoomInfo::remote(&RoomId::parse("!r:example.org").unwrap(), RoomVersionId::V10).unwrap();
        let pair = Ed25519KeyPair::from_der(&Ed25519KeyPair::generate(), "1".to_owned()).unwrap();
        let mut keys = PublicKeyMap::new();
        let public = Base64::new(pair.public_key().to_vec());
        keys.insert("example.org".to_owned(), [("ed25519:1".to_owned(), public)].into_iter().collect());
        (room, pair, keys)
    }

    #[test]
    fn a_batch_checks_as_one_by_one() {
        let (room, pair, keys) = setup();
        let events = signed_messages(&pair, 5);
        let batch = check_pdus(&room, events.clone(), &keys).unwrap();
        for (event, pdu) in events.into_iter().zip(&batch) {
            let single = check_pdu(&room, event.clone(), &keys).unwrap();
            assert_eq!(pdu.event_id, single.event_id);
            let hash = ruma::signatures::reference_hash(&event, &room.rules).unwrap();
            assert_eq!(pdu.event_id.as_str(), format!("${hash}"));
            assert_eq!(pdu.json, single.json);
        }
    }

    #[test]
    fn a_changed_content_is_used_redacted() {
        let (room, pair, keys) = setup();
        let mut events = signed_messages(&pair, 3);
        let Some(CanonicalJsonValue::Object(content)) = events[1].get_mut("content") else { panic!() };
        content.insert("body".to_owned(), CanonicalJsonValue::String("forged".to_owned()));
        let pdus = check_pdus(&room, events, &keys).unwrap();
        assert_eq!(pdus[1].content.get(), "{}");
        assert_eq!(pdus[0].content_value()["body"], "message 0");
    }

    #[test]
    fn a_bad_or_missing_signature_fails_the_batch() {
        let (room, pair, keys) = setup();
        // A signature of another event.
        let mut events = signed_messages(&pair, 4);
        let other = events[0]["signatures"].clone();
        events[2].insert("signatures".to_owned(), other);
        let error = check_pdus(&room, events, &keys).unwrap_err();
        assert!(error.to_string().contains("bad signature"), "{error}");
        // No signature of the sender's server with a known key.
        let mut events = signed_messages(&pair, 2);
        events[1].insert("signatures".to_owned(), CanonicalJsonValue::Object(Default::default()));
        assert!(check_pdus(&room, events, &keys).is_err());
        // An unknown key.
        let (_, other_pair, _) = setup();
        let mut events = signed_messages(&pair, 2);
        events.extend(signed_messages(&other_pair, 1));
        assert!(check_pdus(&room, events, &keys).is_err());
    }
}
