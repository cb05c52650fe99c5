//! Account data, global and per room, and room tags (the `m.tag` room account data). Changes
//! take a position in the event stream, so `/sync` delivers them with the same token.

use crate::service::RoomService;
use myelin_core::{Error, ErrorKind, Result};
use ruma::{RoomId, UserId};
use serde_json::{Value, json};

/// Types the server manages itself: clients may not set them through the account data API.
const SERVER_MANAGED: &[&str] = &["m.fully_read", "m.push_rules"];

impl RoomService {
    /// Sets account data (`room` None for global) and wakes the user's syncs.
    pub async fn set_account_data(
        &self,
        user: &UserId,
        room: Option<&RoomId>,
        data_type: &str,
        content: &Value,
    ) -> Result<()> {
        if SERVER_MANAGED.contains(&data_type) {
            return Err(Error::new(
                http::StatusCode::METHOD_NOT_ALLOWED,
                ErrorKind::BadJson,
                format!("Cannot set {data_type} through this API."),
            ));
        }
        self.store_account_data(user, room, data_type, content).await
    }

    async fn store_account_data(
        &self,
        user: &UserId,
        room: Option<&RoomId>,
        data_type: &str,
        content: &Value,
    ) -> Result<()> {
        if !content.is_object() {
            return Err(Error::bad_json("account data must be a JSON object"));
        }
        if let Some(room) = room {
            self.known_room(room).await?;
        }
        let room = room.map_or("", |r| r.as_str());
        let text = serde_json::to_string(content).map_err(Error::internal)?;
        let key = crate::changes::account_data_key(user.as_str());
        self.changes.begin(&key);
        let written = self.store.rooms().set_account_data(user.as_str(), room, data_type, &text).await;
        self.changes.finish(&key, written.as_ref().ok().copied());
        let stream = written?;
        if data_type == "m.ignored_user_list" {
            self.ignored_cache.lock().unwrap_or_else(|e| e.into_inner()).remove(user);
        }
        self.advance_stream(stream);
        Ok(())
    }

    /// Global account data of a type only the server writes (`m.push_rules`).
    pub(crate) async fn store_server_account_data(
        &self,
        user: &UserId,
        data_type: &str,
        content: &Value,
    ) -> Result<()> {
        self.store_account_data(user, None, data_type, content).await
    }

    /// The users in the viewer's `m.ignored_user_list`.
    pub(crate) async fn ignored_users(
        &self,
        user: &UserId,
    ) -> Result<std::sync::Arc<std::collections::HashSet<String>>> {
        if let Some(ignored) = self.ignored_cache.lock().unwrap_or_else(|e| e.into_inner()).get(user) {
            return Ok(ignored.clone());
        }
        let ignored: std::collections::HashSet<String> =
            match self.store.rooms().account_data(user.as_str(), "", "m.ignored_user_list").await? {
                Some(text) => {
                    let value: Value = serde_json::from_str(&text).map_err(Error::internal)?;
                    value["ignored_users"].as_object().map(|users| users.keys().cloned().collect()).unwrap_or_default()
                }
                None => Default::default(),
            };
        let ignored = std::sync::Arc::new(ignored);
        let mut cache = self.ignored_cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert(user.to_owned(), ignored.clone());
        Ok(ignored)
    }

    /// The fully-read marker: room account data only the server writes.
    pub(crate) async fn set_fully_read(&self, user: &UserId, room: &RoomId, event: &ruma::EventId) -> Result<()> {
        self.store_account_data(user, Some(room), "m.fully_read", &json!({ "event_id": event })).await
    }

    pub async fn account_data(&self, user: &UserId, room: Option<&RoomId>, data_type: &str) -> Result<Value> {
        let room = room.map_or("", |r| r.as_str());
        let text = self
            .store
            .rooms()
            .account_data(user.as_str(), room, data_type)
            .await?
            .ok_or_else(|| Error::not_found("no account data of that type"))?;
        serde_json::from_str(&text).map_err(Error::internal)
    }

    /// The room's tags for the user (`{"tags": {…}}`, empty when none).
    pub async fn tags(&self, user: &UserId, room: &RoomId) -> Result<Value> {
        let text = self.store.rooms().account_data(user.as_str(), room.as_str(), "m.tag").await?;
        let mut tags: Value = match text {
            Some(text) => serde_json::from_str(&text).map_err(Error::internal)?,
            None => json!({ "tags": {} }),
        };
        if !tags["tags"].is_object() {
            tags["tags"] = json!({});
        }
        Ok(tags)
    }

    /// Adds or replaces a tag; `info` None removes it.
    pub async fn set_tag(&self, user: &UserId, room: &RoomId, tag: &str, info: Option<Value>) -> Result<()> {
        if tag.is_empty() || tag.len() > 255 {
            return Err(Error::invalid_param("a tag is 1 to 255 bytes"));
        }
        let mut tags = self.tags(user, room).await?;
        match info {
            Some(info) => tags["tags"][tag] = info,
            None => {
                if let Some(map) = tags["tags"].as_object_mut() {
                    map.remove(tag);
                }
            }
        }
        self.store_account_data(user, Some(room), "m.tag", &tags).await
    }

    /// (room ID or "" for global, type, content) changed after `since` up to `upto`. A first
    /// sync also gets the default push rules of a user who never changed them: clients read
    /// their rules from there.
    pub(crate) async fn account_data_changes(
        &self,
        user: &UserId,
        since: Option<i64>,
        upto: i64,
    ) -> Result<Vec<(String, Value)>> {
        let rows = self.store.rooms().account_data_between(user.as_str(), since.unwrap_or(-1), upto).await?;
        let mut out: Vec<(String, Value)> = rows
            .into_iter()
            .filter_map(|(room, kind, content)| {
                let content: Value = serde_json::from_str(&content).ok()?;
                Some((room, json!({ "type": kind, "content": content })))
            })
            .collect();
        if since.is_none() && !out.iter().any(|(room, data)| room.is_empty() && data["type"] == "m.push_rules") {
            let rules = self.push_rules(user).await?;
            out.push((String::new(), json!({ "type": "m.push_rules", "content": { "global": rules } })));
        }
        Ok(out)
    }
}
