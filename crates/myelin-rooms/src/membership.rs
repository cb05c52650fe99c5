//! Membership changes: join, invite, leave, kick, ban, unban, forget. Each is an
//! `m.room.member` event; the auth rules of the room's version decide whether it is allowed.

use crate::{pdu::EventContent, service::RoomService};
use myelin_core::{Error, ErrorKind, Result};
use ruma::{OwnedEventId, OwnedRoomId, OwnedServerName, RoomAliasId, RoomId, RoomOrAliasId, UserId};
use serde_json::{Value, json};

/// What a membership change does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MembershipChange {
    Invite,
    Leave,
    Kick,
    Ban,
    Unban,
}

impl RoomService {
    /// Resolves a room ID or a local alias to a room ID.
    pub async fn resolve_room(&self, room: &RoomOrAliasId) -> Result<OwnedRoomId> {
        match <&RoomId>::try_from(room) {
            Ok(room_id) => Ok(room_id.to_owned()),
            Err(alias) => self.resolve_alias(alias).await,
        }
    }

    pub async fn resolve_alias(&self, alias: &RoomAliasId) -> Result<OwnedRoomId> {
        let (room_id, _) = self
            .store
            .rooms()
            .alias(alias.as_str())
            .await?
            .ok_or_else(|| Error::not_found(format!("no room has the alias {alias}")))?;
        RoomId::parse(room_id).map_err(Error::internal)
    }

    /// A room ID or alias as a room ID, with the servers that may know the room (an alias of
    /// another server is asked there).
    pub async fn resolve_room_and_servers(&self, room: &RoomOrAliasId) -> Result<(OwnedRoomId, Vec<OwnedServerName>)> {
        let alias = match <&RoomId>::try_from(room) {
            Ok(room_id) => return Ok((room_id.to_owned(), Vec::new())),
            Err(alias) => alias,
        };
        if alias.server_name() == self.config.server_name {
            return Ok((self.resolve_alias(alias).await?, Vec::new()));
        }
        let request = ruma::api::federation::query::get_room_information::v1::Request::new(alias.to_owned());
        let answer = self.federation.client.send(alias.server_name(), request).await?;
        Ok((answer.room_id, answer.servers))
    }

    /// The user joins the room (or updates their member event when joined already). A room
    /// this server is not in is joined through `via` (or the server of a pending invite).
    pub async fn join(
        &self,
        user: &UserId,
        room_id: &RoomId,
        reason: Option<&str>,
        via: &[OwnedServerName],
    ) -> Result<OwnedEventId> {
        if !self.is_resident(room_id).await? {
            let mut servers = via.to_vec();
            if let Some(invite) = self.store.federation().remote_invite(room_id.as_str(), user.as_str()).await?
                && let Some(pdu) = self.pdus(std::slice::from_ref(&invite.event_id)).await?.into_values().next()
            {
                servers.push(pdu.sender.server_name().to_owned());
            }
            let remote_room = room_id.server_name().is_some_and(|s| s != self.config.server_name);
            if !servers.is_empty() || remote_room || self.room(room_id).await?.is_none() {
                return self.join_remote(user, room_id, &servers, reason).await;
            }
        }
        let room = self.known_room(room_id).await?;
        let _lock = self.lock(room_id).await;
        let mut content = self.member_content_with_profile(user, "join").await?;
        set_reason(&mut content, reason);
        if let Some(authoriser) = self.restricted_join_authoriser(&room, user).await? {
            content["join_authorised_via_users_server"] = json!(authoriser);
        }
        let event = member_event(user, content);
        Ok(self.append(&room, user, event, None, false).await?.event_id)
    }

    /// For a restricted room (versions 8+) that the user is not invited to: a local member who
    /// may invite, vouching for the join, once the user is shown to be in one of the rooms the
    /// join rules allow. None when the room is not restricted (or the user is invited or in it).
    pub(crate) async fn restricted_join_authoriser(
        &self,
        room: &crate::RoomInfo,
        user: &UserId,
    ) -> Result<Option<String>> {
        if !room.rules.authorization.restricted_join_rule {
            return Ok(None);
        }
        let Some(rules) = self.current_state_event(&room.room_id, "m.room.join_rules", "").await? else {
            return Ok(None);
        };
        let rules = rules.content_value();
        if !matches!(rules["join_rule"].as_str(), Some("restricted" | "knock_restricted")) {
            return Ok(None);
        }
        if matches!(self.membership_of(&room.room_id, user).await?.as_deref(), Some("invite" | "join")) {
            return Ok(None);
        }
        // Conditions on rooms this server is not in cannot be checked here (the spec's
        // M_UNABLE_TO_AUTHORISE_JOIN: the joining server tries another).
        let (mut allowed, mut checkable) = (false, false);
        for condition in rules["allow"].as_array().into_iter().flatten() {
            if condition["type"] != "m.room_membership" {
                continue;
            }
            let Some(other) = condition["room_id"].as_str().and_then(|id| RoomId::parse(id).ok()) else { continue };
            if !self.is_resident(&other).await? {
                continue;
            }
            checkable = true;
            if self.membership_of(&other, user).await?.as_deref() == Some("join") {
                allowed = true;
                break;
            }
        }
        if !allowed && !checkable {
            return Err(Error::new(
                http::StatusCode::BAD_REQUEST,
                ErrorKind::UnableToAuthorizeJoin,
                "this server is in none of the rooms whose members may join this one: ask another",
            ));
        }
        if !allowed {
            return Err(Error::forbidden("you are not in any room whose members may join this one"));
        }
        // Someone of this server, joined, with the power to invite.
        let power = self.power_levels(&room.room_id).await?;
        let level = |u: &str| power["users"][u].as_i64().or(power["users_default"].as_i64()).unwrap_or(0);
        let needed = power["invite"].as_i64().unwrap_or(0);
        let members = self.store.rooms().members(room.room_id.as_str()).await?;
        let authoriser = members
            .iter()
            .filter(|m| m.membership == "join" && m.user_id.ends_with(&format!(":{}", self.config.server_name)))
            .filter(|m| level(&m.user_id) >= needed)
            .max_by_key(|m| level(&m.user_id))
            .map(|m| m.user_id.clone());
        // Allowed, but nobody here may vouch for it (M_UNABLE_TO_GRANT_JOIN: ask another server).
        authoriser.map(Some).ok_or_else(|| {
            Error::new(
                http::StatusCode::BAD_REQUEST,
                ErrorKind::UnableToGrantJoin,
                "nobody of this server in the room may authorise your join: ask another server",
            )
        })
    }

    /// Asks to join a room whose join rule is `knock` (room versions 7+).
    pub async fn knock(
        &self,
        user: &UserId,
        room_id: &RoomId,
        reason: Option<&str>,
        via: &[OwnedServerName],
    ) -> Result<OwnedEventId> {
        if !self.is_resident(room_id).await? {
            let mut servers = via.to_vec();
            if let Some(server) = room_id.server_name().filter(|s| *s != self.config.server_name) {
                servers.push(server.to_owned());
            }
            if !servers.is_empty() {
                return self.knock_remote(user, room_id, &servers, reason).await;
            }
        }
        let room = self.known_room(room_id).await?;
        let _lock = self.lock(room_id).await;
        match self.membership_of(room_id, user).await?.as_deref() {
            Some("join") => return Err(Error::forbidden("you are in the room already")),
            Some("invite") => return Err(Error::forbidden("you are invited already: join instead")),
            Some("ban") => return Err(Error::forbidden("you are banned from this room")),
            _ => {}
        }
        let mut content = self.member_content_with_profile(user, "knock").await?;
        set_reason(&mut content, reason);
        Ok(self.append(&room, user, member_event(user, content), None, false).await?.event_id)
    }

    /// Invites, kicks, bans or unbans `target` as `sender`, or makes `sender` leave.
    pub async fn change_membership(
        &self,
        sender: &UserId,
        room_id: &RoomId,
        target: &UserId,
        change: MembershipChange,
        reason: Option<&str>,
    ) -> Result<OwnedEventId> {
        // Declining an invite to a room this server is not in: through the inviting server.
        if change == MembershipChange::Leave
            && sender == target
            && !self.is_resident(room_id).await?
            && let Some(event_id) = self.reject_remote_invite(sender, room_id).await?
        {
            return Ok(event_id);
        }
        let room = self.known_room(room_id).await?;
        let _lock = self.lock(room_id).await;
        let current = self.store.rooms().membership(room_id.as_str(), target.as_str()).await?;
        let current = current.as_ref().map(|m| m.membership.as_str());
        let membership = match change {
            MembershipChange::Invite => {
                if current == Some("join") {
                    return Err(Error::forbidden(format!("{target} is in the room already")));
                }
                if current == Some("ban") {
                    return Err(Error::forbidden(format!("{target} is banned from the room")));
                }
                "invite"
            }
            MembershipChange::Leave | MembershipChange::Kick => {
                if current.is_none()
                    || current == Some("leave")
                    || (change == MembershipChange::Leave && current == Some("ban"))
                {
                    return Err(Error::forbidden(format!("{target} is not in the room")));
                }
                "leave"
            }
            MembershipChange::Ban => "ban",
            MembershipChange::Unban => {
                if current != Some("ban") {
                    return Err(Error::forbidden(format!("{target} is not banned")));
                }
                "leave"
            }
        };
        let mut content = json!({ "membership": membership });
        set_reason(&mut content, reason);
        Ok(self.append(&room, sender, member_event(target, content), None, false).await?.event_id)
    }

    /// `m.room.member` content for the user's own membership, with their display name and
    /// avatar as the profile has them.
    pub(crate) async fn member_content_with_profile(&self, user: &UserId, membership: &str) -> Result<Value> {
        let mut content = json!({ "membership": membership });
        if let Some(profile) = self.store.users().get(user.as_str()).await? {
            if let Some(name) = profile.displayname {
                content["displayname"] = json!(name);
            }
            if let Some(avatar) = profile.avatar_url {
                content["avatar_url"] = json!(avatar);
            }
        }
        Ok(content)
    }

    /// Forgets a room the user has left: it no longer shows for them.
    pub async fn forget(&self, user: &UserId, room_id: &RoomId) -> Result<()> {
        let membership = self.store.rooms().membership(room_id.as_str(), user.as_str()).await?;
        match membership.as_ref().map(|m| m.membership.as_str()) {
            None => Err(Error::not_found("you have no membership in this room")),
            Some("leave" | "ban") => {
                self.store.rooms().forget(room_id.as_str(), user.as_str()).await?;
                Ok(())
            }
            Some(_) => Err(Error::bad_json("leave the room before forgetting it")),
        }
    }

    /// The rooms the user is joined to.
    pub async fn joined_rooms(&self, user: &UserId) -> Result<Vec<OwnedRoomId>> {
        let rooms = self.store.rooms().rooms_of_user(user.as_str(), "join").await?;
        rooms.into_iter().map(|id| RoomId::parse(id).map_err(Error::internal)).collect()
    }

    /// The user's current membership of the room ("join", "leave", …), if any.
    pub async fn membership_of(&self, room_id: &RoomId, user: &UserId) -> Result<Option<String>> {
        Ok(self.store.rooms().membership(room_id.as_str(), user.as_str()).await?.map(|m| m.membership))
    }
}

fn member_event(target: &UserId, content: Value) -> EventContent {
    EventContent { kind: "m.room.member".into(), content, state_key: Some(target.to_string()), redacts: None }
}

fn set_reason(content: &mut Value, reason: Option<&str>) {
    if let Some(reason) = reason {
        content["reason"] = json!(reason);
    }
}
