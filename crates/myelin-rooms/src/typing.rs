//! Typing notifications: kept in memory only (they mean nothing after a restart), each with
//! its timeout, and delivered by `/sync` as the `m.typing` ephemeral event of rooms whose
//! typers changed since the token's typing position.

use crate::service::RoomService;
use myelin_core::{Error, Result};
use ruma::{OwnedRoomId, OwnedUserId, RoomId, UserId};
use serde_json::{Value, json};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// The longest a client may claim to type for without renewing.
const MAX_TYPING_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Default)]
struct RoomTyping {
    users: HashMap<OwnedUserId, Instant>,
    /// The typing position of the last change in this room.
    serial: u64,
}

/// Who is typing where, with a position that grows with every change.
pub(crate) struct Typing {
    rooms: Mutex<HashMap<OwnedRoomId, RoomTyping>>,
    pub(crate) changes: tokio::sync::watch::Sender<u64>,
}

impl Typing {
    pub(crate) fn new() -> Arc<Self> {
        let typing = Arc::new(Typing { rooms: Mutex::default(), changes: tokio::sync::watch::Sender::new(0) });
        // Timeouts end typing without a request: look for them once a second. Only while a
        // runtime is there to run it (admin commands build services without serving).
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let weak = Arc::downgrade(&typing);
            runtime.spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tick.tick().await;
                    let Some(typing) = weak.upgrade() else { return };
                    typing.expire();
                }
            });
        }
        typing
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<OwnedRoomId, RoomTyping>> {
        self.rooms.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bump(&self) -> u64 {
        let mut next = 0;
        self.changes.send_modify(|serial| {
            *serial += 1;
            next = *serial;
        });
        next
    }

    fn expire(&self) {
        let now = Instant::now();
        let mut rooms = self.lock();
        let mut changed = Vec::new();
        for (room, typing) in rooms.iter_mut() {
            let before = typing.users.len();
            typing.users.retain(|_, until| *until > now);
            if typing.users.len() != before {
                changed.push(room.clone());
            }
        }
        rooms.retain(|_, typing| !typing.users.is_empty() || typing.serial > 0);
        for room in changed {
            let serial = self.bump();
            if let Some(typing) = rooms.get_mut(&room) {
                typing.serial = serial;
            }
        }
    }

    fn set(&self, room: &RoomId, user: &UserId, until: Option<Instant>) {
        let mut rooms = self.lock();
        let typing = rooms.entry(room.to_owned()).or_default();
        let changed = match until {
            Some(until) => typing.users.insert(user.to_owned(), until).is_none(),
            None => typing.users.remove(user).is_some(),
        };
        if changed {
            typing.serial = self.bump();
        }
    }

    /// The room's `m.typing` event if its typers changed after position `since` (or, with no
    /// `since`, if anyone is typing).
    pub(crate) fn event(&self, room: &RoomId, since: Option<u64>) -> Option<Value> {
        let rooms = self.lock();
        let typing = rooms.get(room)?;
        let now = Instant::now();
        let users: Vec<&OwnedUserId> = typing.users.iter().filter(|(_, until)| **until > now).map(|(u, _)| u).collect();
        let wanted = match since {
            Some(since) => typing.serial > since,
            None => !users.is_empty(),
        };
        wanted.then(|| json!({ "type": "m.typing", "content": { "user_ids": users } }))
    }

    pub(crate) fn position(&self) -> u64 {
        *self.changes.borrow()
    }
}

impl RoomService {
    /// `PUT /rooms/{roomId}/typing/{userId}`: typing for `timeout` (capped), or stopped.
    pub async fn set_typing(&self, user: &UserId, room_id: &RoomId, timeout: Option<Duration>) -> Result<()> {
        self.set_typing_inner(user, room_id, timeout).await?;
        self.send_typing_edu(user, room_id, timeout.is_some()).await;
        Ok(())
    }

    /// Typing of any joined user, without telling other servers.
    pub(crate) async fn set_typing_inner(
        &self,
        user: &UserId,
        room_id: &RoomId,
        timeout: Option<Duration>,
    ) -> Result<()> {
        if self.membership_of(room_id, user).await?.as_deref() != Some("join") {
            self.known_room(room_id).await?;
            return Err(Error::forbidden("you are not joined to this room"));
        }
        let until = timeout.map(|t| Instant::now() + t.min(MAX_TYPING_TIMEOUT));
        self.typing.set(room_id, user, until);
        Ok(())
    }
}
