//! EDUs: typing notifications and read receipts, to and from the other servers in a room;
//! presence; device list and cross-signing key updates, and to-device messages.

use crate::service::RoomService;
use ruma::{EventId, RoomId, ServerName, UserId};
use serde_json::{Value, json};
use std::time::Duration;

/// How long a remote user's typing lasts without a renewal (the spec's suggestion).
const REMOTE_TYPING: Duration = Duration::from_secs(30);

impl RoomService {
    /// Handles the EDUs of a transaction from `origin`; ones about other servers' users, or
    /// of kinds not handled, are ignored.
    pub async fn receive_edus(&self, origin: &ServerName, edus: Vec<Value>) {
        for edu in edus {
            let content = &edu["content"];
            match edu["edu_type"].as_str() {
                Some("m.typing") => self.receive_typing(origin, content).await,
                Some("m.receipt") => self.receive_receipts(origin, content).await,
                Some("m.device_list_update" | "m.signing_key_update" | "org.matrix.signing_key_update") => {
                    self.receive_device_change(origin, content).await
                }
                Some("m.direct_to_device") => self.receive_to_device(origin, content).await,
                Some("m.presence") => self.receive_presence(origin, content).await,
                _ => {}
            }
        }
    }

    async fn receive_typing(&self, origin: &ServerName, content: &Value) {
        let (Some(room_id), Some(user)) = (
            content["room_id"].as_str().and_then(|id| RoomId::parse(id).ok()),
            content["user_id"].as_str().and_then(|id| UserId::parse(id).ok()),
        ) else {
            return;
        };
        if user.server_name() != origin || !self.server_allowed(&room_id, origin).await.unwrap_or(false) {
            return;
        }
        let timeout = (content["typing"] == true).then_some(REMOTE_TYPING);
        if let Err(e) = self.set_typing_inner(&user, &room_id, timeout).await {
            tracing::debug!(%origin, "typing EDU ignored: {e}");
        }
    }

    async fn receive_receipts(&self, origin: &ServerName, content: &Value) {
        let Some(rooms) = content.as_object() else { return };
        for (room_id, by_type) in rooms {
            let Ok(room_id) = RoomId::parse(room_id) else { continue };
            if !self.server_allowed(&room_id, origin).await.unwrap_or(false) {
                continue;
            }
            let Some(users) = by_type["m.read"].as_object() else { continue };
            for (user, receipt) in users {
                let Ok(user) = UserId::parse(user) else { continue };
                if user.server_name() != origin {
                    continue;
                }
                let thread = receipt["data"]["thread_id"].as_str();
                for event_id in receipt["event_ids"].as_array().into_iter().flatten() {
                    let Some(event_id) = event_id.as_str().and_then(|id| EventId::parse(id).ok()) else { continue };
                    if let Err(e) = self.set_receipt_inner(&user, &room_id, "m.read", &event_id, thread).await {
                        tracing::debug!(%origin, "receipt EDU ignored: {e}");
                    }
                }
            }
        }
    }

    /// Tells the other servers in the room that a local user types (or stopped).
    pub(crate) async fn send_typing_edu(&self, user: &UserId, room_id: &RoomId, typing: bool) {
        let edu = json!({
            "edu_type": "m.typing",
            "content": { "room_id": room_id, "user_id": user, "typing": typing },
        });
        self.send_room_edu(room_id, &edu).await;
    }

    /// Tells the other servers in the room of a local user's public read receipt.
    pub(crate) async fn send_receipt_edu(
        &self,
        user: &UserId,
        room_id: &RoomId,
        event_id: &EventId,
        thread: Option<&str>,
        ts: i64,
    ) {
        let mut data = json!({ "ts": ts });
        if let Some(thread) = thread {
            data["thread_id"] = json!(thread);
        }
        let edu = json!({
            "edu_type": "m.receipt",
            "content": { room_id.as_str(): { "m.read": { user.as_str(): { "event_ids": [event_id], "data": data } } } },
        });
        self.send_room_edu(room_id, &edu).await;
    }

    async fn send_room_edu(&self, room_id: &RoomId, edu: &Value) {
        match self.servers_in_room(room_id).await {
            Ok(servers) if !servers.is_empty() => {
                if let Err(e) = self.federation.sender.send_edu(&servers, edu).await {
                    tracing::warn!(%room_id, "queueing an EDU: {e}");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(%room_id, "servers of the room: {e}"),
        }
    }
}

impl RoomService {
    /// A local user's devices or cross-signing keys changed: the servers sharing a room with
    /// them are told, and refetch (an empty `prev_id` asks for that).
    pub(crate) async fn announce_device_change(&self, user: &UserId, device_id: Option<&str>, stream: i64) {
        let servers = match self.servers_sharing_with(user).await {
            Ok(servers) if !servers.is_empty() => servers,
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(%user, "servers sharing a room: {e}");
                return;
            }
        };
        let edu = match device_id {
            Some(device_id) => json!({
                "edu_type": "m.device_list_update",
                "content": { "user_id": user, "device_id": device_id, "stream_id": stream, "prev_id": [] },
            }),
            None => {
                let mut content = json!({ "user_id": user });
                for (field, key_type) in [("master_key", "master"), ("self_signing_key", "self_signing")] {
                    if let Ok(Some(key)) = self.store.keys().cross_signing_key(user.as_str(), key_type).await {
                        content[field] = serde_json::from_str(&key).unwrap_or_default();
                    }
                }
                json!({ "edu_type": "m.signing_key_update", "content": content })
            }
        };
        if let Err(e) = self.federation.sender.send_edu(&servers, &edu).await {
            tracing::warn!(%user, "queueing a device list update: {e}");
        }
    }

    /// Other servers with a user in a room `user` is joined to.
    async fn servers_sharing_with(&self, user: &UserId) -> myelin_core::Result<Vec<ruma::OwnedServerName>> {
        let mut servers: Vec<ruma::OwnedServerName> = Vec::new();
        for room_id in self.joined_rooms(user).await? {
            for server in self.servers_in_room(&room_id).await?.iter() {
                if !servers.contains(server) {
                    servers.push(server.clone());
                }
            }
        }
        Ok(servers)
    }

    /// Another server's user's devices or keys changed: local users sharing a room with them
    /// see them in `device_lists.changed` and fetch their keys again.
    async fn receive_device_change(&self, origin: &ServerName, content: &Value) {
        let Some(user) = content["user_id"].as_str().and_then(|id| UserId::parse(id).ok()) else { return };
        if user.server_name() != origin {
            return;
        }
        if let Err(e) = self.device_list_changed(&user).await {
            tracing::warn!(%origin, "device list update not recorded: {e}");
        }
    }

    /// To-device messages from another server's user for ours.
    async fn receive_to_device(&self, origin: &ServerName, content: &Value) {
        let (Some(sender), Some(kind), Some(message_id)) = (
            content["sender"].as_str().and_then(|id| UserId::parse(id).ok()),
            content["type"].as_str(),
            content["message_id"].as_str(),
        ) else {
            return;
        };
        if sender.server_name() != origin {
            return;
        }
        let mut messages = Vec::new();
        for (user, devices) in content["messages"].as_object().into_iter().flatten() {
            let Ok(user_id) = UserId::parse(user) else { continue };
            if user_id.server_name() != self.config.server_name {
                continue;
            }
            for (device, message) in devices.as_object().into_iter().flatten() {
                messages.push(crate::e2ee::ToDeviceMessage {
                    user_id: user.clone(),
                    device_id: device.clone(),
                    content: message.to_string(),
                });
            }
        }
        // The message ID is unique per sender: a retried EDU is queued once.
        let device: &ruma::DeviceId = origin.as_str().into();
        if let Err(e) = self.send_to_device(&sender, device, kind, message_id, &messages).await {
            tracing::info!(%origin, "to-device EDU not delivered: {e}");
        }
    }

    /// To-device messages of a local user for users of other servers: one EDU per server.
    pub(crate) async fn send_remote_to_device(
        &self,
        sender: &UserId,
        event_type: &str,
        txn_id: &str,
        messages: &[&crate::e2ee::ToDeviceMessage],
    ) {
        let mut by_server: std::collections::BTreeMap<ruma::OwnedServerName, serde_json::Map<String, Value>> =
            Default::default();
        for m in messages {
            let Ok(user) = UserId::parse(m.user_id.as_str()) else { continue };
            let content: Value = serde_json::from_str(&m.content).unwrap_or_default();
            let users = by_server.entry(user.server_name().to_owned()).or_default();
            let devices = users.entry(m.user_id.clone()).or_insert_with(|| json!({}));
            devices[m.device_id.as_str()] = content;
        }
        for (server, users) in by_server {
            let edu = json!({
                "edu_type": "m.direct_to_device",
                "content": {
                    "sender": sender, "type": event_type,
                    "message_id": format!("{sender}/{txn_id}"),
                    "messages": users,
                },
            });
            if let Err(e) = self.federation.sender.send_edu(std::slice::from_ref(&server), &edu).await {
                tracing::warn!(%server, "queueing to-device messages: {e}");
            }
        }
    }

    /// A local user's presence, for the servers sharing a room with them.
    pub(crate) async fn send_presence_edu(&self, user: &UserId, state: &str, status_msg: Option<&str>) {
        let servers = match self.servers_sharing_with(user).await {
            Ok(servers) if !servers.is_empty() => servers,
            _ => return,
        };
        let mut update = json!({
            "user_id": user, "presence": state, "last_active_ago": 0, "currently_active": state == "online",
        });
        if let Some(status) = status_msg {
            update["status_msg"] = json!(status);
        }
        let edu = json!({ "edu_type": "m.presence", "content": { "push": [update] } });
        if let Err(e) = self.federation.sender.send_edu(&servers, &edu).await {
            tracing::warn!(%user, "queueing a presence update: {e}");
        }
    }

    /// Presence of another server's users.
    async fn receive_presence(&self, origin: &ServerName, content: &Value) {
        for update in content["push"].as_array().into_iter().flatten() {
            let Some(user) = update["user_id"].as_str().and_then(|id| UserId::parse(id).ok()) else { continue };
            let Some(state) = update["presence"].as_str() else { continue };
            if user.server_name() != origin || !matches!(state, "online" | "unavailable" | "offline") {
                continue;
            }
            let ago = update["last_active_ago"].as_i64().unwrap_or(0).max(0);
            let active = myelin_core::util::now_ms() - ago;
            if let Err(e) = self.write_presence(&user, state, update["status_msg"].as_str(), active).await {
                tracing::debug!(%origin, "presence EDU ignored: {e}");
            }
        }
    }
}
