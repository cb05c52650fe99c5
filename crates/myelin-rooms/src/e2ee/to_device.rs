//! To-device messages: `PUT /sendToDevice` queues them per recipient device, `/sync` delivers
//! them, and a sync with a later `since` acknowledges (deletes) them.
//!
//! A sync delivers at most `MAX_PER_SYNC` messages. When more are waiting, its `next_batch`
//! carries a third part, `s<N>_<T>_<D>`, D being the last message delivered: the next sync then
//! acknowledges only up to D instead of up to N, so nothing undelivered is deleted.

use crate::service::RoomService;
use myelin_core::{Error, Result, util::now_ms};
use myelin_store::NewToDevice;
use ruma::{DeviceId, UserId};
use serde_json::{Value, json};

/// The most to-device messages one `/sync` delivers.
const MAX_PER_SYNC: i64 = 100;

/// One recipient of a `/sendToDevice`: a user and a device ID, or `*` for all their devices.
#[derive(Debug, Clone)]
pub struct ToDeviceMessage {
    pub user_id: String,
    pub device_id: String,
    pub content: String,
}

/// The to-device part of a sync.
#[derive(Debug, Default)]
pub struct SyncToDevice {
    pub events: Vec<Value>,
    /// Set when messages were left for the next sync: the last one delivered.
    pub delivered_upto: Option<i64>,
}

impl RoomService {
    /// `PUT /sendToDevice/{eventType}/{txnId}`: queues one message per recipient device;
    /// a repeated transaction ID queues nothing again.
    pub async fn send_to_device(
        &self,
        sender: &UserId,
        sender_device: &DeviceId,
        event_type: &str,
        txn_id: &str,
        messages: &[ToDeviceMessage],
    ) -> Result<()> {
        let mut queued: Vec<NewToDevice> = Vec::new();
        let mut remote: Vec<&ToDeviceMessage> = Vec::new();
        for m in messages {
            let Ok(user) = UserId::parse(m.user_id.as_str()) else {
                return Err(Error::invalid_param(format!("{} is not a user ID", m.user_id)));
            };
            if !matches!(serde_json::from_str::<Value>(&m.content), Ok(Value::Object(_))) {
                return Err(Error::bad_json(format!("the message for {} must be a JSON object", m.user_id)));
            }
            if user.server_name() != self.config.server_name.as_str() {
                // Only local senders' messages go on to other servers (not relayed ones).
                if sender.server_name() == self.config.server_name {
                    remote.push(m);
                }
                continue;
            }
            let devices: Vec<String> = if m.device_id == "*" {
                self.store.users().devices(user.as_str()).await?.into_iter().map(|d| d.device_id).collect()
            } else {
                vec![m.device_id.clone()]
            };
            for device_id in devices {
                if queued.iter().any(|q| q.user_id == m.user_id && q.device_id == device_id) {
                    continue;
                }
                queued.push(NewToDevice { user_id: m.user_id.clone(), device_id, content: m.content.clone() });
            }
        }
        if !remote.is_empty() {
            self.send_remote_to_device(sender, event_type, txn_id, &remote).await;
        }
        let keys: Vec<String> =
            queued.iter().map(|q| crate::changes::to_device_key(&q.user_id, &q.device_id)).collect();
        keys.iter().for_each(|key| self.changes.begin(key));
        let sent = self
            .store
            .to_device()
            .send(sender.as_str(), sender_device.as_str(), txn_id, event_type, &queued, now_ms())
            .await;
        let position = sent.as_ref().ok().copied().flatten();
        keys.iter().for_each(|key| self.changes.finish(key, position));
        if let Some(stream) = sent? {
            self.advance_stream(stream);
        }
        Ok(())
    }

    /// Deletes the device's messages the client acknowledged by syncing with `since` — unless
    /// this process knows there are none left to delete.
    pub(crate) async fn acknowledge_to_device(&self, user: &UserId, device: &str, since: &str) -> Result<()> {
        let Some(rest) = since.strip_prefix('s') else { return Ok(()) };
        let mut parts = rest.split('_');
        let stream = parts.next().and_then(|s| s.parse::<i64>().ok());
        let delivered = parts.nth(1).and_then(|d| d.parse::<i64>().ok());
        let Some(upto) = delivered.or(stream) else { return Ok(()) };
        let key = crate::changes::to_device_key(user.as_str(), device);
        let acked = self.to_device_acked.lock().unwrap_or_else(|e| e.into_inner()).get(&key).copied();
        let queued = self.changes.latest(&key);
        // Deleted up to `acked` since the start, and nothing queued after that: none left.
        let none_left = acked.is_some_and(|acked| queued.is_none_or(|queued| queued <= acked));
        if !none_left {
            self.store.to_device().acknowledge(user.as_str(), device, upto).await?;
            let mut map = self.to_device_acked.lock().unwrap_or_else(|e| e.into_inner());
            let entry = map.entry(key).or_insert(upto);
            *entry = (*entry).max(upto);
        }
        Ok(())
    }

    /// The device's messages up to `upto` for a sync.
    pub(crate) async fn to_device_for_sync(&self, user: &UserId, device: &str, upto: i64) -> Result<SyncToDevice> {
        // Everything up to `acked` is deleted; nothing queued since: nothing to read.
        let key = crate::changes::to_device_key(user.as_str(), device);
        let acked = self.to_device_acked.lock().unwrap_or_else(|e| e.into_inner()).get(&key).copied();
        if acked.is_some_and(|acked| !self.changes.changed_after(&key, acked)) {
            return Ok(SyncToDevice::default());
        }
        let rows = self.store.to_device().pending(user.as_str(), device, upto, MAX_PER_SYNC).await?;
        let full = rows.len() as i64 == MAX_PER_SYNC;
        let delivered_upto = if full { rows.last().map(|r| r.0) } else { None };
        let mut events = Vec::with_capacity(rows.len());
        for (_, sender, event_type, content) in rows {
            let content: Value = serde_json::from_str(&content).map_err(Error::internal)?;
            events.push(json!({"sender": sender, "type": event_type, "content": content}));
        }
        Ok(SyncToDevice { events, delivered_upto })
    }
}
