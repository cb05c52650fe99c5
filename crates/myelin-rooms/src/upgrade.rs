//! `POST /rooms/{roomId}/upgrade`: a new room of another version replaces the old one.

use crate::{create::supported_room_versions, pdu::EventContent, service::RoomInfo, service::RoomService};
use myelin_core::{Error, ErrorKind, Result, util::random_string};
use ruma::{OwnedRoomId, RoomId, RoomVersionId, UserId};
use serde_json::{Value, json};

/// The state that moves to the new room (besides power levels, which go first).
const COPIED_STATE: &[&str] = &[
    "m.room.join_rules",
    "m.room.history_visibility",
    "m.room.guest_access",
    "m.room.name",
    "m.room.topic",
    "m.room.avatar",
    "m.room.encryption",
    "m.room.server_acl",
];

fn state(kind: &str, state_key: &str, content: Value) -> EventContent {
    EventContent { kind: kind.into(), content, state_key: Some(state_key.to_owned()), redacts: None }
}

impl RoomService {
    /// Replaces the room with a new one of `version`: copies its state, bans and aliases, links
    /// the two (`predecessor`, `m.room.tombstone`), and stops ordinary members from talking in
    /// the old one. Needs the power to send `m.room.tombstone`.
    pub async fn upgrade_room(&self, user: &UserId, old_id: &RoomId, version: &RoomVersionId) -> Result<OwnedRoomId> {
        if !supported_room_versions().contains(version) {
            return Err(Error::new(
                http::StatusCode::BAD_REQUEST,
                ErrorKind::UnsupportedRoomVersion,
                format!("this server does not support room version {version}"),
            ));
        }
        let old = self.known_room(old_id).await?;
        let power = self.power_levels(old_id).await?;
        let level = |u: &str| power["users"][u].as_i64().or(power["users_default"].as_i64()).unwrap_or(0);
        let needed = power["events"]["m.room.tombstone"].as_i64().or(power["state_default"].as_i64()).unwrap_or(50);
        if self.membership_of(old_id, user).await?.as_deref() != Some("join") || level(user.as_str()) < needed {
            return Err(Error::forbidden("you lack the power to upgrade this room"));
        }
        let rules = version.rules().ok_or_else(|| Error::internal("no rules for a supported version"))?;
        let new_id =
            RoomId::parse(format!("!{}:{}", random_string(18), self.config.server_name)).map_err(Error::internal)?;
        let new = RoomInfo { room_id: new_id.clone(), version: version.clone(), rules };
        let old_create = self.current_state_event(old_id, "m.room.create", "").await?.map(|p| p.content_value());
        let last_event = self.store.rooms().forward_extremities(old_id.as_str()).await?.into_iter().next();
        {
            let _lock = self.lock(&new_id).await;
            let mut create = json!({
                "room_version": version,
                "predecessor": { "room_id": old_id, "event_id": last_event },
            });
            if !new.rules.authorization.use_room_create_sender {
                create["creator"] = json!(user);
            }
            if let Some(old_create) = &old_create {
                for key in ["type", "m.federate"] {
                    if let Some(value) = old_create.get(key) {
                        create[key] = value.clone();
                    }
                }
            }
            self.append(&new, user, state("m.room.create", "", create), None, true).await?;
            let member = json!({ "membership": "join" });
            self.append(&new, user, state("m.room.member", user.as_str(), member), None, false).await?;
            let mut new_power = power.clone();
            if !new_power.is_object() || new_power.as_object().is_some_and(|o| o.is_empty()) {
                new_power = json!({ "users": { user.as_str(): 100 } });
            }
            self.append(&new, user, state("m.room.power_levels", "", new_power), None, false).await?;
            for kind in COPIED_STATE {
                if let Some(pdu) = self.current_state_event(old_id, kind, "").await? {
                    let copy = state(kind, "", pdu.content_value());
                    if let Err(e) = self.append(&new, user, copy, None, false).await {
                        tracing::warn!(room = %new_id, "not copied on upgrade: {kind}: {e:?}");
                    }
                }
            }
            for member in self.store.rooms().members(old_id.as_str()).await? {
                if member.membership == "ban" {
                    let ban = state("m.room.member", &member.user_id, json!({ "membership": "ban" }));
                    if let Err(e) = self.append(&new, user, ban, None, false).await {
                        tracing::warn!(room = %new_id, "ban not copied on upgrade: {e:?}");
                    }
                }
            }
        }
        // Aliases and the directory follow the room; the canonical alias moves with them.
        let canonical = self.current_state_event(old_id, "m.room.canonical_alias", "").await?;
        self.store.rooms().move_aliases(old_id.as_str(), new_id.as_str()).await?;
        let old_lock = self.lock(old_id).await;
        if let Some(canonical) = canonical {
            let content = canonical.content_value();
            {
                let _new_lock = self.lock(&new_id).await;
                self.append(&new, user, state("m.room.canonical_alias", "", content), None, false).await?;
            }
            self.append(&old, user, state("m.room.canonical_alias", "", json!({})), None, false).await?;
        }
        if self.store.rooms().room(old_id.as_str()).await?.is_some_and(|r| r.published) {
            self.store.rooms().set_published(old_id.as_str(), false).await?;
            self.store.rooms().set_published(new_id.as_str(), true).await?;
        }
        let tombstone = json!({ "body": "This room has been replaced", "replacement_room": new_id });
        self.append(&old, user, state("m.room.tombstone", "", tombstone), None, false).await?;
        // Ordinary members can no longer talk or invite in the old room.
        let mut restricted = power.clone();
        if restricted.is_object() {
            let floor = (power["users_default"].as_i64().unwrap_or(0) + 1).max(50);
            restricted["events_default"] = json!(floor.max(power["events_default"].as_i64().unwrap_or(0)));
            restricted["invite"] = json!(floor.max(power["invite"].as_i64().unwrap_or(0)));
            self.append(&old, user, state("m.room.power_levels", "", restricted), None, false).await?;
        }
        drop(old_lock);
        Ok(new_id)
    }
}
