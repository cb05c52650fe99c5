//! Presence: set by clients or by `/sync`'s `set_presence` (and sent to the servers sharing a
//! room with the user), or by other servers for theirs; seen by the users who share a room
//! with them (delivered by `/sync`), and read with `GET /presence/…/status`.

use crate::service::RoomService;
use myelin_core::{Error, Result, util::now_ms};
use ruma::UserId;
use serde_json::{Value, json};

/// How long `/sync` keeps someone "online" without writing again: a sync every few seconds
/// must not be a database write every few seconds.
const ACTIVITY_REFRESH_MS: i64 = 60_000;

impl RoomService {
    /// Sets a user's presence (`online`, `unavailable`, `offline`).
    pub async fn set_presence(&self, user: &UserId, state: &str, status_msg: Option<&str>) -> Result<()> {
        if !matches!(state, "online" | "unavailable" | "offline") {
            return Err(Error::invalid_param(format!("unknown presence {state}")));
        }
        let now = now_ms();
        self.write_presence(user, state, status_msg, now).await?;
        self.presence_written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(user.to_owned(), (state.to_owned(), now));
        if user.server_name() == self.config.server_name {
            self.send_presence_edu(user, state, status_msg).await;
        }
        Ok(())
    }

    /// Stores a presence (a local user's, or one another server sent) and wakes syncs.
    pub(crate) async fn write_presence(
        &self,
        user: &UserId,
        state: &str,
        status_msg: Option<&str>,
        active_ts: i64,
    ) -> Result<()> {
        self.changes.begin(crate::changes::PRESENCE_KEY);
        let written = self.store.rooms().set_presence(user.as_str(), state, status_msg, active_ts).await;
        self.changes.finish(crate::changes::PRESENCE_KEY, written.as_ref().ok().copied());
        let stream = written?;
        self.advance_stream(stream);
        Ok(())
    }

    /// What `/sync` does with `set_presence`: records the state when it changes, or refreshes
    /// the last activity of an online user now and then; keeps any status message.
    pub async fn presence_from_sync(&self, user: &UserId, state: &str) -> Result<()> {
        // Written by this process a moment ago: nothing to do, and no need to read it back.
        let fresh = self
            .presence_written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(user)
            .is_some_and(|(written, at)| written == state && now_ms() - at < ACTIVITY_REFRESH_MS);
        if fresh {
            return Ok(());
        }
        let current = self.store.rooms().presence(user.as_str()).await?;
        let unchanged =
            current.as_ref().is_some_and(|(s, _, active)| s == state && now_ms() - active < ACTIVITY_REFRESH_MS);
        if unchanged {
            return Ok(());
        }
        let status = current.and_then(|(_, status, _)| status);
        self.set_presence(user, state, status.as_deref()).await
    }

    /// (presence, status_msg, last_active_ago ms) of a user, for someone who may see it.
    pub async fn presence_of(&self, viewer: &UserId, user: &UserId) -> Result<(String, Option<String>, i64)> {
        if viewer != user && !self.share_a_room(viewer, user).await? {
            return Err(Error::forbidden("you share no room with this user"));
        }
        let (state, status, active) =
            self.store.rooms().presence(user.as_str()).await?.unwrap_or_else(|| ("offline".to_owned(), None, 0));
        Ok((state, status, (now_ms() - active).max(0)))
    }

    async fn share_a_room(&self, a: &UserId, b: &UserId) -> Result<bool> {
        let mine = self.joined_rooms(a).await?;
        let theirs = self.joined_rooms(b).await?;
        Ok(mine.iter().any(|room| theirs.contains(room)))
    }

    /// `m.presence` events of changes the viewer may see, after `since` up to `upto`.
    pub(crate) async fn presence_events(&self, viewer: &UserId, since: Option<i64>, upto: i64) -> Result<Vec<Value>> {
        let rows = self.store.rooms().presence_between(viewer.as_str(), since.unwrap_or(-1), upto).await?;
        let now = now_ms();
        Ok(rows
            .into_iter()
            .map(|(user, state, status, active)| {
                let mut content = json!({
                    "presence": state,
                    "last_active_ago": (now - active).max(0),
                    "currently_active": state == "online",
                });
                if let Some(status) = status {
                    content["status_msg"] = json!(status);
                }
                json!({ "type": "m.presence", "sender": user, "content": content })
            })
            .collect())
    }
}
