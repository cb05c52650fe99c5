//! Sending events from clients: messages, state and redactions, idempotent per device and
//! transaction ID.

use crate::{
    pdu::EventContent,
    service::{RoomService, Txn},
    txns::{Turn, their_event},
};
use myelin_core::{Error, Result};
use ruma::{EventId, OwnedEventId, RoomId, UserId};
use serde_json::Value;

impl RoomService {
    /// Sends a message-like event; a repeated transaction ID returns the first event's ID.
    pub async fn send_message(
        &self,
        sender: &UserId,
        room_id: &RoomId,
        kind: &str,
        content: Value,
        txn: &Txn,
    ) -> Result<OwnedEventId> {
        crate::relations::check_relation(self, room_id, &content).await?;
        let redacts = if kind == "m.room.redaction" {
            let id = content
                .get("redacts")
                .and_then(Value::as_str)
                .ok_or_else(|| Error::bad_json("an m.room.redaction needs `redacts` in its content; use /redact"))?;
            Some(EventId::parse(id).map_err(|e| Error::bad_json(format!("redacts: {e}")))?)
        } else {
            None
        };
        self.send(sender, room_id, EventContent { kind: kind.into(), content, state_key: None, redacts }, Some(txn))
            .await
    }

    /// Redacts an event; the auth rules of the room's version decide who may.
    pub async fn redact(
        &self,
        sender: &UserId,
        room_id: &RoomId,
        event_id: &EventId,
        reason: Option<&str>,
        txn: &Txn,
    ) -> Result<OwnedEventId> {
        // The auth rules let any member's redaction through (servers check the sender's power
        // when applying it): refuse here what would never apply.
        let target = self.pdu(event_id.as_str()).await?;
        if let Some((row, target)) = &target
            && row.room_id == room_id.as_str()
            && target.sender != sender
        {
            let power = self.power_levels(room_id).await?;
            let level =
                |user: &UserId| power["users"][user.as_str()].as_i64().or(power["users_default"].as_i64()).unwrap_or(0);
            let needed = power["redact"].as_i64().unwrap_or(50);
            if level(sender) < needed {
                return Err(Error::forbidden("you may only redact your own events"));
            }
        }
        let mut content = serde_json::json!({ "redacts": event_id });
        if let Some(reason) = reason {
            content["reason"] = reason.into();
        }
        let event = EventContent {
            kind: "m.room.redaction".into(),
            content,
            state_key: None,
            redacts: Some(event_id.to_owned()),
        };
        self.send(sender, room_id, event, Some(txn)).await
    }

    /// The room's current power levels content (empty when the room has none).
    pub async fn power_levels(&self, room_id: &RoomId) -> Result<Value> {
        Ok(self
            .current_state_event(room_id, "m.room.power_levels", "")
            .await?
            .map(|pdu| pdu.content_value())
            .unwrap_or_else(|| serde_json::json!({})))
    }

    /// Sets a piece of room state.
    pub async fn send_state(
        &self,
        sender: &UserId,
        room_id: &RoomId,
        kind: &str,
        state_key: &str,
        content: Value,
    ) -> Result<OwnedEventId> {
        if kind == "m.room.member" {
            // Membership goes through its own endpoints, which check more than the auth rules.
            let target = UserId::parse(state_key).map_err(|e| Error::bad_json(format!("state_key: {e}")))?;
            if target.as_str() != sender.as_str() && content.get("membership").and_then(Value::as_str) == Some("join") {
                return Err(Error::forbidden("you cannot join someone else to a room"));
            }
        }
        if kind == "m.room.canonical_alias" {
            self.check_canonical_alias(room_id, &content).await?;
        }
        let event = EventContent { kind: kind.into(), content, state_key: Some(state_key.to_owned()), redacts: None };
        self.send(sender, room_id, event, None).await
    }

    async fn send(
        &self,
        sender: &UserId,
        room_id: &RoomId,
        event: EventContent,
        txn: Option<&Txn>,
    ) -> Result<OwnedEventId> {
        let room = self.known_room(room_id).await?;
        if !event.content.is_object() {
            return Err(Error::bad_json("the content must be a JSON object"));
        }
        // A send of the same transaction still under way answers for both (see `txns.rs`).
        let sending = match txn {
            Some(txn) => loop {
                match self.txns.begin(room_id.as_str(), sender.as_str(), &txn.device_id, &txn.txn_id) {
                    Turn::Mine(sending) => break Some(sending),
                    Turn::Theirs(theirs) => {
                        if let Some(event_id) = their_event(theirs).await {
                            return Ok(event_id);
                        }
                    }
                }
            },
            None => None,
        };
        let appended = if event.state_key.is_none() && self.store.backend() == myelin_store::Backend::Sqlite {
            self.append_message(&room, sender, &event, txn).await
        } else {
            let _lock = self.lock(room_id).await;
            self.append(&room, sender, event, txn, false).await
        };
        let event_id = match appended {
            Ok(pdu) => Ok(pdu.event_id),
            // A retried transaction fails on its (room, user, device, txn) key: answer with the
            // event the first attempt made. Looked up only on failure, so a send costs no read.
            Err(e) => match txn {
                Some(txn) => match self
                    .store
                    .rooms()
                    .txn_event(room_id.as_str(), sender.as_str(), &txn.device_id, &txn.txn_id)
                    .await?
                {
                    Some(id) => EventId::parse(id).map_err(Error::internal),
                    None => Err(e),
                },
                None => Err(e),
            },
        }?;
        if let Some(sending) = &sending {
            sending.sent(&event_id);
        }
        Ok(event_id)
    }

    /// `m.room.canonical_alias` may only name aliases that point to this room (local ones are
    /// checked; remote ones need federation).
    async fn check_canonical_alias(&self, room_id: &RoomId, content: &Value) -> Result<()> {
        let mut aliases: Vec<&str> = content.get("alias").and_then(Value::as_str).into_iter().collect();
        if let Some(alt) = content.get("alt_aliases") {
            let list = alt.as_array().ok_or_else(|| Error::bad_json("alt_aliases must be a list"))?;
            for alias in list {
                aliases.push(alias.as_str().ok_or_else(|| Error::bad_json("alt_aliases must hold strings"))?);
            }
        }
        for alias in aliases {
            let parsed = ruma::RoomAliasId::parse(alias).map_err(|e| {
                Error::new(http::StatusCode::BAD_REQUEST, myelin_core::ErrorKind::InvalidParam, format!("{alias}: {e}"))
            })?;
            if parsed.server_name() != self.config.server_name {
                continue;
            }
            let points_here = self.store.rooms().alias(alias).await?.is_some_and(|(id, _)| id == room_id.as_str());
            if !points_here {
                return Err(Error::new(
                    http::StatusCode::BAD_REQUEST,
                    myelin_core::ErrorKind::BadAlias,
                    format!("{alias} does not point to this room"),
                ));
            }
        }
        Ok(())
    }
}
