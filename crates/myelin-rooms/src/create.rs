//! `POST /createRoom`: the events that make a room, in the order the spec gives.

use crate::{
    pdu::EventContent,
    service::{RoomInfo, RoomService},
};
use myelin_core::{Error, ErrorKind, Result, util::random_string};
use ruma::{
    OwnedRoomAliasId, OwnedRoomId, RoomAliasId, RoomId, RoomVersionId, UserId,
    api::client::room::{Visibility, create_room::v3::Request as CreateRoomRequest, create_room::v3::RoomPreset},
};
use serde_json::{Value, json};

/// The room version of new rooms when the client names none (the spec's default since v1.11
/// era servers: "10").
pub const DEFAULT_ROOM_VERSION: RoomVersionId = RoomVersionId::V10;

/// The room versions this server creates and joins: 1 to 11, all stable.
pub fn supported_room_versions() -> Vec<RoomVersionId> {
    use RoomVersionId::*;
    vec![V1, V2, V3, V4, V5, V6, V7, V8, V9, V10, V11]
}

fn state(kind: &str, state_key: &str, content: Value) -> EventContent {
    EventContent { kind: kind.into(), content, state_key: Some(state_key.to_owned()), redacts: None }
}

impl RoomService {
    /// Creates a room as the request asks; returns its ID.
    pub async fn create_room(&self, creator: &UserId, request: &CreateRoomRequest) -> Result<OwnedRoomId> {
        let version = request.room_version.clone().unwrap_or(DEFAULT_ROOM_VERSION);
        if !supported_room_versions().contains(&version) {
            return Err(Error::new(
                http::StatusCode::BAD_REQUEST,
                ErrorKind::UnsupportedRoomVersion,
                format!("this server does not support room version {version}"),
            ));
        }
        let rules = version.rules().ok_or_else(|| Error::internal("no rules for a supported room version"))?;
        let server_name = &self.config.server_name;
        let alias = match &request.room_alias_name {
            Some(name) => Some(self.free_alias(name).await?),
            None => None,
        };
        // Everything the client sent is parsed and checked before the first event is written:
        // a request refused halfway would leave a room half made.
        // Power levels: the defaults, the invitees of a trusted private chat, the override.
        let preset = request.preset.clone().unwrap_or(match request.visibility {
            Visibility::Public => RoomPreset::PublicChat,
            _ => RoomPreset::PrivateChat,
        });
        let mut power_levels = json!({
            "users": { creator.as_str(): 100 },
            "users_default": 0,
            "events": {
                "m.room.name": 50,
                "m.room.power_levels": 100,
                "m.room.history_visibility": 100,
                "m.room.canonical_alias": 50,
                "m.room.avatar": 50,
                "m.room.tombstone": 100,
                "m.room.server_acl": 100,
                "m.room.encryption": 100,
            },
            "events_default": 0,
            "state_default": 50,
            "ban": 50,
            "kick": 50,
            "redact": 50,
            // Members of a private chat may invite others; public rooms need moderators.
            "invite": if preset == RoomPreset::PublicChat { 50 } else { 0 },
            "notifications": { "room": 50 },
        });
        if preset == RoomPreset::TrustedPrivateChat {
            for invitee in &request.invite {
                power_levels["users"][invitee.as_str()] = json!(100);
            }
        }
        if let Some(raw) = &request.power_level_content_override {
            let overrides: Value = serde_json::from_str(raw.json().get())
                .map_err(|e| Error::bad_json(format!("power_level_content_override: {e}")))?;
            let Some(overrides) = overrides.as_object() else {
                return Err(Error::bad_json("power_level_content_override must be an object"));
            };
            for (key, value) in overrides {
                power_levels[key] = value.clone();
            }
            // Refused before anything is written: a room half made would stay behind.
            serde_json::from_value::<ruma::events::room::power_levels::RoomPowerLevelsEventContent>(
                power_levels.clone(),
            )
            .map_err(|e| Error::bad_json(format!("power_level_content_override: {e}")))?;
        }
        let initial: Vec<(String, String, Value)> = request
            .initial_state
            .iter()
            .map(|raw| {
                let event: Value = serde_json::from_str(raw.json().get())
                    .map_err(|e| Error::bad_json(format!("initial_state: {e}")))?;
                let kind =
                    event["type"].as_str().ok_or_else(|| Error::bad_json("initial_state event without a type"))?;
                if kind == "m.room.member" || kind == "m.room.create" {
                    return Err(Error::bad_json(format!("initial_state may not hold {kind} events")));
                }
                if !event["content"].is_object() {
                    return Err(Error::bad_json(format!("initial_state {kind}: the content must be an object")));
                }
                let state_key = event["state_key"].as_str().unwrap_or_default();
                Ok((kind.to_owned(), state_key.to_owned(), event["content"].clone()))
            })
            .collect::<Result<_>>()?;
        let room_id = RoomId::parse(format!("!{}:{server_name}", random_string(18))).map_err(Error::internal)?;
        let room = RoomInfo { room_id: room_id.clone(), version: version.clone(), rules };
        let _lock = self.lock(&room_id).await;

        // 1. The create event, with what the client added to its content.
        let mut create = match &request.creation_content {
            Some(raw) => serde_json::from_str::<Value>(raw.json().get())
                .map_err(|e| Error::bad_json(format!("creation_content: {e}")))?,
            None => json!({}),
        };
        let Some(fields) = create.as_object_mut() else {
            return Err(Error::bad_json("creation_content must be an object"));
        };
        if !room.rules.authorization.use_room_create_sender {
            fields.insert("creator".into(), json!(creator));
        }
        fields.insert("room_version".into(), json!(version));
        self.append(&room, creator, state("m.room.create", "", create), None, true).await?;

        // 2. The creator joins.
        let member = self.member_content_with_profile(creator, "join").await?;
        self.append(&room, creator, state("m.room.member", creator.as_str(), member), None, false).await?;

        // 3. Power levels (computed and checked above).
        self.append(&room, creator, state("m.room.power_levels", "", power_levels), None, false).await?;

        // 4. The canonical alias.
        if let Some(alias) = &alias {
            self.store.rooms().add_alias(alias.as_str(), room_id.as_str(), creator.as_str()).await?;
            self.append(&room, creator, state("m.room.canonical_alias", "", json!({ "alias": alias })), None, false)
                .await?;
        }

        // 5. What the preset says, unless initial_state sets it.
        let overridden = |kind: &str| initial.iter().any(|(k, key, _)| k == kind && key.is_empty());
        let (join_rule, history, guest) = match preset {
            RoomPreset::PublicChat => ("public", "shared", "forbidden"),
            _ => ("invite", "shared", "can_join"),
        };
        for (kind, content) in [
            ("m.room.join_rules", json!({ "join_rule": join_rule })),
            ("m.room.history_visibility", json!({ "history_visibility": history })),
            ("m.room.guest_access", json!({ "guest_access": guest })),
        ] {
            if !overridden(kind) {
                self.append(&room, creator, state(kind, "", content), None, false).await?;
            }
        }

        // 6. initial_state, 7. name and topic.
        for (kind, state_key, content) in initial {
            self.append(&room, creator, state(&kind, &state_key, content), None, false).await?;
        }
        if let Some(name) = &request.name {
            self.append(&room, creator, state("m.room.name", "", json!({ "name": name })), None, false).await?;
        }
        if let Some(topic) = &request.topic {
            let content = json!({ "topic": topic, "m.topic": [{ "body": topic, "mimetype": "text/plain" }] });
            self.append(&room, creator, state("m.room.topic", "", content), None, false).await?;
        }

        // 8. The invites.
        for invitee in &request.invite {
            let mut content = json!({ "membership": "invite" });
            if request.is_direct {
                content["is_direct"] = json!(true);
            }
            self.append(&room, creator, state("m.room.member", invitee.as_str(), content), None, false).await?;
        }
        if request.visibility == Visibility::Public {
            self.store.rooms().set_published(room_id.as_str(), true).await?;
        }
        Ok(room_id)
    }

    /// `#name:server` for a `room_alias_name`, refused when taken or malformed.
    async fn free_alias(&self, name: &str) -> Result<OwnedRoomAliasId> {
        let alias = RoomAliasId::parse(format!("#{name}:{}", self.config.server_name)).map_err(|e| {
            Error::new(http::StatusCode::BAD_REQUEST, ErrorKind::InvalidParam, format!("room_alias_name: {e}"))
        })?;
        if self.store.rooms().alias(alias.as_str()).await?.is_some() {
            return Err(Error::new(http::StatusCode::BAD_REQUEST, ErrorKind::RoomInUse, "the room alias is taken"));
        }
        Ok(alias)
    }
}
