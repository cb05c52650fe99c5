//! EDUs: typing notifications and read receipts, to and from the other servers in a room.
//! (Presence, device list updates and to-device messages over federation are not yet here.)

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
