//! Room aliases of this server: `#name:server` → room ID.

use crate::service::RoomService;
use myelin_core::{Error, ErrorKind, Result};
use ruma::{OwnedRoomAliasId, RoomAliasId, RoomId, UserId};

impl RoomService {
    fn local_alias(&self, alias: &RoomAliasId) -> Result<()> {
        if alias.server_name() != self.config.server_name {
            return Err(Error::new(
                http::StatusCode::BAD_REQUEST,
                ErrorKind::InvalidParam,
                "aliases of other servers are managed there",
            ));
        }
        Ok(())
    }

    /// Points a new alias of this server at a room.
    pub async fn create_alias(&self, user: &UserId, alias: &RoomAliasId, room_id: &RoomId) -> Result<()> {
        self.local_alias(alias)?;
        self.known_room(room_id).await?;
        if !self.store.rooms().add_alias(alias.as_str(), room_id.as_str(), user.as_str()).await? {
            return Err(Error::new(http::StatusCode::CONFLICT, ErrorKind::Unknown, "the room alias exists already"));
        }
        Ok(())
    }

    /// Removes an alias: its creator may, and server admins.
    pub async fn delete_alias(&self, user: &UserId, is_admin: bool, alias: &RoomAliasId) -> Result<()> {
        self.local_alias(alias)?;
        let Some((_, creator)) = self.store.rooms().alias(alias.as_str()).await? else {
            return Err(Error::not_found(format!("there is no alias {alias}")));
        };
        if creator != user.as_str() && !is_admin {
            return Err(Error::forbidden("only the alias's creator or a server admin may delete it"));
        }
        self.store.rooms().remove_alias(alias.as_str()).await?;
        Ok(())
    }

    /// The local aliases of a room; for its members (or anyone, in a world-readable room).
    pub async fn room_aliases(&self, user: &UserId, room_id: &RoomId) -> Result<Vec<OwnedRoomAliasId>> {
        self.known_room(room_id).await?;
        if self.membership_of(room_id, user).await?.as_deref() != Some("join") {
            let visibility = self.current_state_event(room_id, "m.room.history_visibility", "").await?;
            if !visibility.is_some_and(|p| p.content_value()["history_visibility"] == "world_readable") {
                return Err(Error::forbidden("you are not joined to this room"));
            }
        }
        let aliases = self.store.rooms().aliases_of_room(room_id.as_str()).await?;
        aliases.into_iter().map(|a| RoomAliasId::parse(a).map_err(Error::internal)).collect()
    }
}
