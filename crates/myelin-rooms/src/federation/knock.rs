//! Knocking across servers (room versions 7+): a local user knocks on a room elsewhere
//! (`make_knock`, sign, `send_knock`; the stripped state answered is shown in /sync), and
//! other servers' users knock on ours.

use crate::{
    federation::invites::stripped_event,
    service::{RoomInfo, RoomService},
};
use myelin_core::{Error, ErrorKind, Result};
use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, EventId, OwnedEventId, OwnedServerName, RoomId, RoomVersionId, ServerName,
    UserId,
    api::federation::membership::{create_knock_event::v1 as send_knock, prepare_knock_event::v1 as make_knock},
};
use serde_json::{Value, json};

impl RoomService {
    /// A knock event for a user of `origin`, if the room's version and rules allow knocking.
    pub async fn make_knock(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        user: &UserId,
        versions: &[RoomVersionId],
    ) -> Result<super::JoinTemplate> {
        if user.server_name() != origin {
            return Err(Error::forbidden(format!("{origin} cannot knock for {user}")));
        }
        let room = self.known_room(room_id).await?;
        self.check_server_acl(room_id, origin).await?;
        if !versions.contains(&room.version) || !room.rules.authorization.knocking {
            return Err(Error::new(
                http::StatusCode::BAD_REQUEST,
                ErrorKind::IncompatibleRoomVersion(ruma::api::error::IncompatibleRoomVersionErrorData::new(
                    room.version.clone(),
                )),
                format!("knocking on a room of version {} is not possible for your server", room.version),
            ));
        }
        let template = self.member_template(&room, origin, user, json!({ "membership": "knock" })).await?;
        Ok(super::JoinTemplate { room_version: room.version, event: template })
    }

    /// A knock signed by `origin`'s server, checked and persisted; answers the room's stripped
    /// state for the knocker.
    pub async fn send_knock(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        event_id: &EventId,
        json: CanonicalJsonObject,
    ) -> Result<Vec<Value>> {
        let pdu = self.receive_own_membership(origin, room_id, event_id, json, "knock").await?;
        if self.membership_of(room_id, &pdu.sender).await?.as_deref() != Some("knock") {
            return Err(Error::forbidden("the knock is not allowed by the room's current state"));
        }
        let state = self.head(&self.known_room(room_id).await?).await?.state;
        self.stripped_of(&state).await
    }

    /// Knocks on a room this server is not in, through the first of `servers` that answers.
    pub(crate) async fn knock_remote(
        &self,
        user: &UserId,
        room_id: &RoomId,
        servers: &[OwnedServerName],
        reason: Option<&str>,
    ) -> Result<OwnedEventId> {
        self.through_first("knock", room_id, servers, |server| async move {
            self.knock_through(user, room_id, &server, reason).await
        })
        .await
    }

    async fn knock_through(
        &self,
        user: &UserId,
        room_id: &RoomId,
        server: &ServerName,
        reason: Option<&str>,
    ) -> Result<OwnedEventId> {
        let mut request = make_knock::Request::new(room_id.to_owned(), user.to_owned());
        request.ver = crate::supported_room_versions();
        let template = self.federation.client.send(server, request).await?;
        let room = RoomInfo::remote(room_id, template.room_version)?;
        let mut content = self.member_content_with_profile(user, "knock").await?;
        if let Some(reason) = reason {
            content["reason"] = reason.into();
        }
        let super::join::SignedTemplate { event, event_id, raw } =
            self.sign_template(&room, template.event.get(), content)?;
        let answer = self
            .federation
            .client
            .send(server, send_knock::Request::new(room_id.to_owned(), event_id.clone(), raw))
            .await?;
        let stripped: Vec<Value> = answer.knock_room_state.iter().filter_map(stripped_event).collect();
        let knock = myelin_store::RemoteInviteRow {
            room_id: room_id.to_string(),
            user_id: user.to_string(),
            event_id: event_id.to_string(),
            room_version: room.version.to_string(),
            stripped: Value::from(stripped).to_string(),
        };
        let json = CanonicalJsonValue::Object(event).to_string();
        let unread = self.unread_cache.writing(room_id.as_str());
        let stream = self.store.federation().save_remote_invite(&knock, "knock", &json).await?;
        drop(unread);
        self.advance_stream(stream);
        Ok(event_id)
    }
}
