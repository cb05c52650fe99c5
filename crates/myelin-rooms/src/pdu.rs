//! PDUs: events as stored and exchanged between servers. Building one in its room version's
//! format (event IDs, reference hashes, content hash, signature), parsing one back, and the
//! client format it is served in.

use myelin_core::{Error, Result, util::random_string};
use myelin_federation::SigningKey;
use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, EventId, MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId,
    OwnedUserId, RoomId, RoomVersionId, ServerName, UInt, UserId,
    events::TimelineEventType,
    room_version_rules::{EventIdFormatVersion, EventsReferenceFormatVersion, RoomVersionRules},
};
use serde_json::value::RawValue as RawJsonValue;

/// A parsed PDU: the fields the auth rules and the APIs read, beside the full JSON.
#[derive(Debug, Clone)]
pub struct Pdu {
    pub event_id: OwnedEventId,
    pub room_id: OwnedRoomId,
    pub sender: OwnedUserId,
    pub origin_server_ts: MilliSecondsSinceUnixEpoch,
    pub kind: TimelineEventType,
    pub content: Box<RawJsonValue>,
    pub state_key: Option<String>,
    pub prev_events: Vec<OwnedEventId>,
    pub auth_events: Vec<OwnedEventId>,
    pub redacts: Option<OwnedEventId>,
    pub depth: i64,
    /// The PDU as signed (without `event_id` in room versions 3 and later).
    pub json: CanonicalJsonObject,
}

impl Pdu {
    /// Parses a stored PDU whose event ID is known.
    pub fn from_json(event_id: OwnedEventId, json: CanonicalJsonObject) -> Result<Pdu> {
        // Read straight from the canonical JSON: no copy of the event is made but its content.
        let bad = |what: &str| Error::internal(format!("stored event {event_id} has a bad `{what}`"));
        fn str_of(value: Option<&CanonicalJsonValue>) -> Option<&str> {
            match value {
                Some(CanonicalJsonValue::String(s)) => Some(s.as_str()),
                _ => None,
            }
        }
        let str_field = |name: &str| str_of(json.get(name));
        let ids = |name: &str| -> Result<Vec<OwnedEventId>> {
            let Some(CanonicalJsonValue::Array(list)) = json.get(name) else {
                return Err(bad(name));
            };
            list.iter()
                .map(|item| {
                    // Room versions 1 and 2 reference events as [event_id, {hashes}].
                    let id = match item {
                        CanonicalJsonValue::Array(pair) => str_of(pair.first()),
                        other => str_of(Some(other)),
                    };
                    id.and_then(|id| EventId::parse(id).ok()).ok_or_else(|| bad(name))
                })
                .collect()
        };
        let content = json.get("content").ok_or_else(|| bad("content"))?;
        let redacts = str_field("redacts")
            .or_else(|| match content {
                CanonicalJsonValue::Object(content) => str_of(content.get("redacts")),
                _ => None,
            })
            .and_then(|id| EventId::parse(id).ok());
        let integer = |name: &str| match json.get(name) {
            Some(CanonicalJsonValue::Integer(n)) => Some(i64::from(*n)),
            _ => None,
        };
        Ok(Pdu {
            room_id: str_field("room_id").and_then(|v| RoomId::parse(v).ok()).ok_or_else(|| bad("room_id"))?,
            sender: str_field("sender").and_then(|v| UserId::parse(v).ok()).ok_or_else(|| bad("sender"))?,
            origin_server_ts: MilliSecondsSinceUnixEpoch(
                integer("origin_server_ts")
                    .and_then(|ts| u64::try_from(ts).ok())
                    .and_then(UInt::new)
                    .ok_or_else(|| bad("ts"))?,
            ),
            kind: str_field("type").ok_or_else(|| bad("type"))?.into(),
            content: serde_json::value::to_raw_value(content).map_err(Error::internal)?,
            state_key: str_field("state_key").map(str::to_owned),
            prev_events: ids("prev_events")?,
            auth_events: ids("auth_events")?,
            redacts,
            depth: integer("depth").ok_or_else(|| bad("depth"))?,
            event_id,
            json,
        })
    }

    pub fn from_stored(event_id: &str, json: &str) -> Result<Pdu> {
        let event_id = EventId::parse(event_id).map_err(Error::internal)?;
        let json: CanonicalJsonObject = serde_json::from_str(json).map_err(Error::internal)?;
        Pdu::from_json(event_id, json)
    }

    pub fn content_value(&self) -> serde_json::Value {
        serde_json::from_str(self.content.get()).unwrap_or_default()
    }

    /// The canonical JSON text stored for this event.
    pub fn canonical_json(&self) -> String {
        // Serializing the map as it is gives the canonical form (sorted keys, no spaces).
        serde_json::to_string(&self.json).unwrap_or_default()
    }
}

impl ruma::state_res::Event for Pdu {
    type Id = OwnedEventId;

    fn event_id(&self) -> &Self::Id {
        &self.event_id
    }
    fn room_id(&self) -> Option<&RoomId> {
        Some(&self.room_id)
    }
    fn sender(&self) -> &UserId {
        &self.sender
    }
    fn origin_server_ts(&self) -> MilliSecondsSinceUnixEpoch {
        self.origin_server_ts
    }
    fn event_type(&self) -> &TimelineEventType {
        &self.kind
    }
    fn content(&self) -> &RawJsonValue {
        &self.content
    }
    fn state_key(&self) -> Option<&str> {
        self.state_key.as_deref()
    }
    fn prev_events(&self) -> Box<dyn DoubleEndedIterator<Item = &Self::Id> + '_> {
        Box::new(self.prev_events.iter())
    }
    fn auth_events(&self) -> Box<dyn DoubleEndedIterator<Item = &Self::Id> + '_> {
        Box::new(self.auth_events.iter())
    }
    fn redacts(&self) -> Option<&Self::Id> {
        self.redacts.as_ref()
    }
    fn rejected(&self) -> bool {
        false
    }
}

/// What a new event says, before it is placed in the room's DAG.
#[derive(Debug, Clone)]
pub struct EventContent {
    pub kind: TimelineEventType,
    pub content: serde_json::Value,
    pub state_key: Option<String>,
    /// For `m.room.redaction`: the event redacted.
    pub redacts: Option<OwnedEventId>,
}

/// Everything needed to place and sign a new event.
pub struct BuildArgs<'a> {
    pub room_id: &'a RoomId,
    pub version: &'a RoomVersionId,
    pub rules: &'a RoomVersionRules,
    pub sender: &'a UserId,
    pub content: &'a EventContent,
    /// The events it follows, with their reference hashes (needed by room versions 1 and 2).
    pub prev_events: &'a [(OwnedEventId, String)],
    pub auth_events: &'a [(OwnedEventId, String)],
    pub depth: i64,
    pub origin_server_ts: MilliSecondsSinceUnixEpoch,
    pub server_name: &'a ServerName,
    pub key: &'a SigningKey,
}

/// Builds, hashes and signs a new event in the format of its room version.
pub fn build(args: BuildArgs<'_>) -> Result<Pdu> {
    let a = args;
    let references = |events: &[(OwnedEventId, String)]| -> CanonicalJsonValue {
        CanonicalJsonValue::Array(
            events
                .iter()
                .map(|(id, hash)| match a.rules.events_reference_format {
                    EventsReferenceFormatVersion::V1 => CanonicalJsonValue::Array(vec![
                        CanonicalJsonValue::String(id.to_string()),
                        CanonicalJsonValue::Object(
                            [("sha256".to_owned(), CanonicalJsonValue::String(hash.clone()))].into(),
                        ),
                    ]),
                    _ => CanonicalJsonValue::String(id.to_string()),
                })
                .collect(),
        )
    };
    let content: CanonicalJsonValue = serde_json::from_value(a.content.content.clone())
        .map_err(|e| Error::bad_json(format!("the content is not canonical JSON: {e}")))?;
    let mut object = CanonicalJsonObject::new();
    object.insert("auth_events".into(), references(a.auth_events));
    object.insert("content".into(), content);
    object.insert("depth".into(), CanonicalJsonValue::Integer(ruma::Int::new_saturating(a.depth)));
    object.insert("origin_server_ts".into(), CanonicalJsonValue::Integer(a.origin_server_ts.0.into()));
    object.insert("prev_events".into(), references(a.prev_events));
    object.insert("room_id".into(), CanonicalJsonValue::String(a.room_id.to_string()));
    object.insert("sender".into(), CanonicalJsonValue::String(a.sender.to_string()));
    object.insert("type".into(), CanonicalJsonValue::String(a.content.kind.to_string()));
    if let Some(state_key) = &a.content.state_key {
        object.insert("state_key".into(), CanonicalJsonValue::String(state_key.clone()));
    }
    // Room version 11 moved `redacts` into the content (the client puts it there); earlier
    // versions keep it at the top level.
    if let Some(redacts) = &a.content.redacts
        && !a.rules.redaction.content_field_redacts
    {
        object.insert("redacts".into(), CanonicalJsonValue::String(redacts.to_string()));
    }
    let v1_event_id = match a.rules.event_id_format {
        EventIdFormatVersion::V1 => {
            let id = format!("${}:{}", random_string(18), a.server_name);
            object.insert("event_id".into(), CanonicalJsonValue::String(id.clone()));
            Some(EventId::parse(id).map_err(Error::internal)?)
        }
        _ => None,
    };
    ruma::signatures::hash_and_sign_event(a.server_name.as_str(), a.key.pair(), &mut object, &a.rules.redaction)
        .map_err(|e| match e {
            ruma::signatures::JsonError::PduTooLarge => Error::too_large("the event is over 64 KiB"),
            other => Error::internal(other),
        })?;
    let event_id = match v1_event_id {
        Some(id) => id,
        None => {
            let hash = ruma::signatures::reference_hash(&object, a.rules).map_err(Error::internal)?;
            EventId::parse(format!("${hash}")).map_err(Error::internal)?
        }
    };
    Pdu::from_json(event_id, object)
}

/// The reference hash of a stored event (what room versions 1 and 2 put beside its ID).
pub fn reference_hash(pdu: &Pdu, rules: &RoomVersionRules) -> Result<String> {
    ruma::signatures::reference_hash(&pdu.json, rules).map_err(Error::internal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ruma::serde::{Base64, base64::Standard};
    use serde_json::json;

    /// The spec's test key (appendices, "Cryptographic Test Vectors"): seed, server `domain`,
    /// key `ed25519:1`.
    fn spec_key() -> SigningKey {
        let seed = Base64::<Standard, Vec<u8>>::parse("YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1").unwrap();
        // A PKCS#8 v1 document around the 32-byte seed.
        let mut der =
            vec![0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
        der.extend_from_slice(seed.as_bytes());
        SigningKey::from_der(&der, "1").unwrap()
    }

    fn sign(event: serde_json::Value) -> serde_json::Value {
        let key = spec_key();
        let mut object: CanonicalJsonObject = serde_json::from_value(event).unwrap();
        let rules = RoomVersionId::V1.rules().unwrap();
        ruma::signatures::hash_and_sign_event("domain", key.pair(), &mut object, &rules.redaction).unwrap();
        serde_json::to_value(object).unwrap()
    }

    #[test]
    fn spec_vector_minimal_event() {
        let signed = sign(json!({
            "room_id": "!x:domain", "sender": "@a:domain", "origin": "domain", "origin_server_ts": 1000000,
            "signatures": {}, "hashes": {}, "type": "X", "content": {}, "prev_events": [], "auth_events": [],
            "depth": 3, "unsigned": { "age_ts": 1000000 }
        }));
        assert_eq!(signed["hashes"]["sha256"], "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos");
        assert_eq!(
            signed["signatures"]["domain"]["ed25519:1"],
            "KxwGjPSDEtvnFgU00fwFz+l6d2pJM6XBIaMEn81SXPTRl16AqLAYqfIReFGZlHi5KLjAWbOoMszkwsQma+lYAg"
        );
    }

    #[test]
    fn spec_vector_redactable_event() {
        let signed = sign(json!({
            "content": { "body": "Here is the message content" }, "event_id": "$0:domain", "origin": "domain",
            "origin_server_ts": 1000000, "type": "m.room.message", "room_id": "!r:domain", "sender": "@u:domain",
            "signatures": {}, "unsigned": { "age_ts": 1000000 }
        }));
        assert_eq!(signed["hashes"]["sha256"], "onLKD1bGljeBWQhWZ1kaP9SorVmRQNdN5aM2JYU2n/g");
        assert_eq!(
            signed["signatures"]["domain"]["ed25519:1"],
            "Wm+VzmOUOz08Ds+0NTWb1d4CZrVsJSikkeRxh6aCcUwu6pNC78FunoD7KNWzqFn241eYHYMGCA5McEiVPdhzBA"
        );
    }

    #[test]
    fn built_events_verify_and_reparse() {
        let key = spec_key();
        for version in crate::supported_room_versions() {
            let rules = version.rules().unwrap();
            let room_id = RoomId::parse("!r:domain").unwrap();
            let sender = UserId::parse("@u:domain").unwrap();
            let content = EventContent {
                kind: "m.room.message".into(),
                content: json!({ "body": "hi" }),
                state_key: None,
                redacts: None,
            };
            let server = ServerName::parse("domain").unwrap();
            let pdu = build(BuildArgs {
                room_id: &room_id,
                version: &version,
                rules: &rules,
                sender: &sender,
                content: &content,
                prev_events: &[(EventId::parse("$prev:domain").unwrap(), "aGFzaA".into())],
                auth_events: &[],
                depth: 2,
                origin_server_ts: MilliSecondsSinceUnixEpoch(UInt::new(1000).unwrap()),
                server_name: &server,
                key: &key,
            })
            .unwrap();
            // Our own signature verifies under the room version's rules.
            let public_key = Base64::<Standard, Vec<u8>>::new(key.pair().public_key().to_vec());
            let public = [("domain".to_owned(), [("ed25519:1".to_owned(), public_key)].into())].into();
            ruma::signatures::verify_event(&public, &pdu.json, &rules).unwrap();
            // The event ID scheme of the version, and the stored JSON parses back the same.
            let id = pdu.event_id.as_str();
            match rules.event_id_format {
                EventIdFormatVersion::V1 => assert!(id.ends_with(":domain"), "{version}: {id}"),
                _ => assert!(!id.contains(':') && id.len() == 44, "{version}: {id}"),
            }
            let again = Pdu::from_stored(id, &pdu.canonical_json()).unwrap();
            assert_eq!(again.prev_events, pdu.prev_events);
            assert_eq!(again.depth, 2);
        }
    }
}
