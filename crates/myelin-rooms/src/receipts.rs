//! Read receipts (`m.read`, `m.read.private`, threaded) and read markers (`m.fully_read`).
//! Receipts take a position in the event stream and reach the room's members through `/sync`
//! as the `m.receipt` ephemeral event; private ones reach only their owner.

use crate::{read::Viewer, service::RoomService};
use myelin_core::{Error, Result, util::now_ms};
use ruma::{EventId, RoomId, UserId};
use serde_json::{Value, json};

impl RoomService {
    /// Records a receipt of `user` for `event_id` (which must be an event of the room they
    /// may see). `thread` is None (unthreaded), "main", or a thread root's event ID.
    pub async fn set_receipt(
        &self,
        user: &UserId,
        room_id: &RoomId,
        receipt_type: &str,
        event_id: &EventId,
        thread: Option<&str>,
    ) -> Result<()> {
        self.set_receipt_inner(user, room_id, receipt_type, event_id, thread).await?;
        if receipt_type == "m.read" {
            self.send_receipt_edu(user, room_id, event_id, thread, now_ms()).await;
        }
        Ok(())
    }

    /// A receipt of any joined user, without telling other servers.
    pub(crate) async fn set_receipt_inner(
        &self,
        user: &UserId,
        room_id: &RoomId,
        receipt_type: &str,
        event_id: &EventId,
        thread: Option<&str>,
    ) -> Result<()> {
        if !matches!(receipt_type, "m.read" | "m.read.private") {
            return Err(Error::invalid_param(format!("unknown receipt type {receipt_type}")));
        }
        if self.membership_of(room_id, user).await?.as_deref() != Some("join") {
            self.known_room(room_id).await?;
            return Err(Error::forbidden("you are not joined to this room"));
        }
        // The event must exist in the room and be visible to the user.
        self.event_for(Viewer { user, device_id: None }, room_id, event_id.as_str()).await?;
        // The user's unread counts of the room change with it (see `unread_cache`).
        let unread = self.unread_cache.writing(room_id.as_str()).receipt_of(user.as_str());
        let room_write = self.changes.receipt_write(room_id.as_str());
        let stream = self
            .store
            .rooms()
            .set_receipt(
                room_id.as_str(),
                user.as_str(),
                receipt_type,
                thread.unwrap_or(""),
                event_id.as_str(),
                now_ms(),
            )
            .await;
        drop(unread);
        room_write.ended(stream.as_ref().ok().copied());
        let stream = stream?;
        self.advance_stream(stream);
        Ok(())
    }

    /// `POST /rooms/{roomId}/read_markers`: the fully-read marker (room account data) and the
    /// public and private read receipts, each optional.
    pub async fn set_read_markers(
        &self,
        user: &UserId,
        room_id: &RoomId,
        fully_read: Option<&EventId>,
        read: Option<&EventId>,
        private_read: Option<&EventId>,
    ) -> Result<()> {
        if let Some(event) = fully_read {
            if self.membership_of(room_id, user).await?.as_deref() != Some("join") {
                self.known_room(room_id).await?;
                return Err(Error::forbidden("you are not joined to this room"));
            }
            self.event_for(Viewer { user, device_id: None }, room_id, event.as_str()).await?;
            self.set_fully_read(user, room_id, event).await?;
        }
        if let Some(event) = read {
            self.set_receipt(user, room_id, "m.read", event, None).await?;
        }
        if let Some(event) = private_read {
            self.set_receipt(user, room_id, "m.read.private", event, None).await?;
        }
        Ok(())
    }
}

/// A receipt as a sync reads it: (user ID, type, thread ID, event ID, ts).
pub(crate) type ReceiptRow = (String, String, String, String, i64);

/// The `m.receipt` ephemeral event of receipt rows, as the viewer may see them (their own
/// private ones only); None when there are none.
pub(crate) fn receipt_event_of(viewer: &UserId, rows: Vec<ReceiptRow>) -> Option<Value> {
    let mut content = serde_json::Map::new();
    for (user, kind, thread, event, ts) in rows {
        if kind == "m.read.private" && user != viewer.as_str() {
            continue;
        }
        let mut receipt = json!({ "ts": ts });
        if !thread.is_empty() {
            receipt["thread_id"] = json!(thread);
        }
        let by_event = content.entry(event).or_insert_with(|| json!({}));
        by_event[&kind][&user] = receipt;
    }
    (!content.is_empty()).then(|| json!({ "type": "m.receipt", "content": content }))
}
