//! Invites across servers (`PUT /_matrix/federation/v2/invite`): a local user invited to a
//! room elsewhere (the event countersigned, kept with the room's stripped state for /sync),
//! and a remote user invited here (their server countersigns before the event is stored).

use crate::{pdu::Pdu, service::RoomInfo, service::RoomService};
use myelin_core::{Error, ErrorKind, Result};
use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, EventId, OwnedEventId, OwnedServerName, RoomId, RoomVersionId, ServerName,
    UserId,
    api::federation::membership::{
        RawStrippedState, create_invite::v2 as create_invite, create_leave_event::v2 as send_leave,
        prepare_leave_event::v1 as make_leave,
    },
    serde::Raw,
};
use serde_json::{Value, json, value::RawValue};

impl RoomService {
    /// Another server invites one of our users: the event is checked, signed by this server
    /// and kept as the user's pending invite. Answers the signed event.
    pub async fn receive_invite(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        event_id: &EventId,
        version: &RoomVersionId,
        json: CanonicalJsonObject,
        stripped: &[RawStrippedState],
    ) -> Result<CanonicalJsonObject> {
        if !crate::supported_room_versions().contains(version) {
            return Err(Error::new(
                http::StatusCode::BAD_REQUEST,
                ErrorKind::IncompatibleRoomVersion(ruma::api::error::IncompatibleRoomVersionErrorData::new(
                    version.clone(),
                )),
                format!("room version {version} is not supported here"),
            ));
        }
        let rules = version.rules().ok_or_else(|| Error::internal("a supported version without rules"))?;
        let room = RoomInfo { room_id: room_id.to_owned(), version: version.clone(), rules };
        let mut json = json;
        json.remove("unsigned");
        let pdu = self.verify_pdu(&room, json.clone()).await?;
        if pdu.event_id != event_id {
            return Err(Error::bad_json("the event ID does not match the event"));
        }
        let invitee = pdu.state_key.as_deref().and_then(|k| UserId::parse(k).ok());
        let Some(invitee) = invitee.filter(|u| u.server_name() == self.config.server_name) else {
            return Err(Error::bad_json("the invite is not for a user of this server"));
        };
        if pdu.kind.to_string() != "m.room.member" || pdu.content_value()["membership"] != "invite" {
            return Err(Error::bad_json("the event is not an invite"));
        }
        if pdu.sender.server_name() != origin {
            return Err(Error::forbidden("the inviter is not a user of the requesting server"));
        }
        if self.store.users().get(invitee.as_str()).await?.is_none() {
            return Err(Error::not_found(format!("{invitee} does not exist")));
        }
        if self.ignored_users(&invitee).await?.contains(pdu.sender.as_str()) {
            return Err(Error::forbidden("the invitee ignores the inviter"));
        }
        // A room this server is in: the invite must pass its rules now, and the membership
        // changes when the event arrives in a transaction, like any other.
        let resident = self.is_resident(room_id).await?;
        if resident {
            self.check_server_acl(room_id, origin).await?;
            let known = self.known_room(room_id).await?;
            let state = self.head(&known).await?.state;
            self.check_against_state(&known, &pdu, &state).await.map_err(Error::forbidden)?;
        } else if matches!(self.membership_of(room_id, &invitee).await?.as_deref(), Some("join" | "ban")) {
            return Err(Error::forbidden(format!("{invitee} is joined to or banned from the room")));
        }
        ruma::signatures::hash_and_sign_event(
            self.config.server_name.as_str(),
            self.key.pair(),
            &mut json,
            &room.rules.redaction,
        )
        .map_err(|e| Error::bad_json(format!("the invite cannot be signed: {e}")))?;
        let signed = Pdu::from_json(pdu.event_id.clone(), json.clone())?;
        if resident {
            return Ok(json);
        }
        let stripped: Vec<Value> = stripped.iter().filter_map(stripped_event).collect();
        let invite = myelin_store::RemoteInviteRow {
            room_id: room_id.to_string(),
            user_id: invitee.to_string(),
            event_id: event_id.to_string(),
            room_version: version.to_string(),
            stripped: Value::from(stripped).to_string(),
        };
        // Memberships change where unread counts start: the room's are counted again.
        let unread = self.unread_cache.writing(room_id.as_str());
        let stream = self.store.federation().save_remote_invite(&invite, "invite", &signed.canonical_json()).await?;
        drop(unread);
        self.advance_stream(stream);
        Ok(json)
    }

    /// Rejects an invite to a room this server is not in, through the inviting server, or
    /// withdraws a knock on one, through a server of the room (the room ID's, those of the
    /// stripped state's senders): `make_leave`, sign, `send_leave`.
    pub(crate) async fn reject_remote_invite(&self, user: &UserId, room_id: &RoomId) -> Result<Option<OwnedEventId>> {
        let Some(invite) = self.store.federation().remote_invite(room_id.as_str(), user.as_str()).await? else {
            return Ok(None);
        };
        let Some(invite_pdu) = self.pdus(std::slice::from_ref(&invite.event_id)).await?.into_values().next() else {
            return Ok(None);
        };
        let mut servers: Vec<OwnedServerName> = vec![invite_pdu.sender.server_name().to_owned()];
        if invite_pdu.sender.server_name() == self.config.server_name {
            // Our own knock: any server of the room can take the leave.
            servers.clear();
            servers.extend(room_id.server_name().map(ToOwned::to_owned));
            let stripped: Vec<Value> = serde_json::from_str(&invite.stripped).unwrap_or_default();
            for event in &stripped {
                if let Some(sender) = event.get("sender").and_then(Value::as_str).and_then(|s| UserId::parse(s).ok())
                    && !servers.iter().any(|s| s == sender.server_name())
                {
                    servers.push(sender.server_name().to_owned());
                }
            }
        }
        let version = invite.room_version.as_str();
        let (event, event_id) = self
            .through_first("leave", room_id, &servers, |server| async move {
                self.leave_through(&server, room_id, user, version).await
            })
            .await?;
        let json = CanonicalJsonValue::Object(event).to_string();
        let unread = self.unread_cache.writing(room_id.as_str());
        let stream = self
            .store
            .federation()
            .reject_remote_invite(room_id.as_str(), user.as_str(), event_id.as_str(), &json)
            .await?;
        drop(unread);
        self.advance_stream(stream);
        Ok(Some(event_id))
    }

    /// `make_leave`, sign, `send_leave` through `server`: the leave event sent and its ID.
    async fn leave_through(
        &self,
        server: &ServerName,
        room_id: &RoomId,
        user: &UserId,
        known_version: &str,
    ) -> Result<(CanonicalJsonObject, OwnedEventId)> {
        let template =
            self.federation.client.send(server, make_leave::Request::new(room_id.to_owned(), user.to_owned())).await?;
        let version = match template.room_version {
            Some(version) => version,
            None => RoomVersionId::try_from(known_version).map_err(Error::internal)?,
        };
        let room = RoomInfo::remote(room_id, version)?;
        let super::join::SignedTemplate { event, event_id, raw } =
            self.sign_template(&room, template.event.get(), serde_json::json!({ "membership": "leave" }))?;
        self.federation
            .client
            .send(server, send_leave::Request::new(room_id.to_owned(), event_id.clone(), raw))
            .await?;
        Ok((event, event_id))
    }

    /// The stripped state invitees and knockers see of a room state (the spec's list).
    pub(crate) async fn stripped_of(&self, state: &myelin_store::StateMap) -> Result<Vec<Value>> {
        let ids: Vec<String> = crate::sync::STRIPPED_STATE
            .iter()
            .filter_map(|kind| state.get(&((*kind).to_owned(), String::new())).cloned())
            .collect();
        let events = self.cached_pdus(&ids).await?;
        Ok(events
            .values()
            .map(|p| {
                json!({
                    "type": p.kind.to_string(), "state_key": p.state_key, "content": p.content_value(), "sender": p.sender,
                })
            })
            .collect())
    }

    /// A local event inviting a user of another server: that server signs it too (and may
    /// refuse). Returns the event with both signatures.
    pub(crate) async fn countersign_invite(
        &self,
        room: &RoomInfo,
        pdu: Pdu,
        state: &myelin_store::StateMap,
    ) -> Result<Pdu> {
        let Some(invitee) = pdu.state_key.as_deref().and_then(|k| UserId::parse(k).ok()) else { return Ok(pdu) };
        if invitee.server_name() == self.config.server_name
            || pdu.kind.to_string() != "m.room.member"
            || pdu.content_value()["membership"] != "invite"
        {
            return Ok(pdu);
        }
        #[allow(deprecated)]
        let stripped: Vec<RawStrippedState> = self
            .stripped_of(state)
            .await?
            .iter()
            .filter_map(|value| {
                Some(RawStrippedState::Stripped(Raw::from_json(serde_json::value::to_raw_value(value).ok()?)))
            })
            .collect();
        let event = RawValue::from_string(pdu.canonical_json()).map_err(Error::internal)?;
        let request = create_invite::Request::new(
            room.room_id.clone(),
            pdu.event_id.clone(),
            room.version.clone(),
            event,
            stripped,
        );
        let answer = self.federation.client.send(invitee.server_name(), request).await?;
        let mut signed: CanonicalJsonObject = serde_json::from_str(answer.event.get())
            .map_err(|e| Error::bad_json(format!("{} sent back a bad invite: {e}", invitee.server_name())))?;
        signed.remove("unsigned");
        let checked = self.verify_pdu(room, signed.clone()).await?;
        if checked.event_id != pdu.event_id {
            return Err(Error::bad_json(format!("{} sent back another event", invitee.server_name())));
        }
        // Its own signature, over the redacted event as events are signed.
        let rows = self.federation.keys.verify_keys(invitee.server_name(), myelin_core::util::now_ms()).await?;
        let keys: ruma::signatures::PublicKeySet = rows
            .into_iter()
            .filter_map(|row| Some((row.key_id, ruma::serde::Base64::parse(&row.public_key).ok()?)))
            .collect();
        let redacted = ruma::canonical_json::redact(signed.clone(), &room.rules.redaction, None)
            .map_err(|e| Error::bad_json(e.to_string()))?;
        myelin_federation::server_keys::verify_signed_by(&redacted, invitee.server_name().as_str(), &keys)
            .map_err(|e| Error::forbidden(format!("{} did not sign the invite: {e}", invitee.server_name())))?;
        // Keep our event, with the invitee server's signature added.
        let mut json = pdu.json.clone();
        if let (Some(CanonicalJsonValue::Object(theirs)), Some(CanonicalJsonValue::Object(ours))) =
            (signed.get("signatures"), json.get_mut("signatures"))
            && let Some(by_them) = theirs.get(invitee.server_name().as_str())
        {
            ours.insert(invitee.server_name().to_string(), by_them.clone());
        }
        Pdu::from_json(pdu.event_id, json)
    }
}

/// An invite's stripped state event, from either form (stripped, or a full PDU since v1.16).
pub(crate) fn stripped_event(state: &RawStrippedState) -> Option<Value> {
    #[allow(deprecated)]
    let raw = match state {
        RawStrippedState::Stripped(raw) => raw.json().get(),
        RawStrippedState::Pdu(raw) => raw.get(),
        _ => return None,
    };
    let value: Value = serde_json::from_str(raw).ok()?;
    Some(json!({
        "type": value.get("type")?, "state_key": value.get("state_key")?,
        "content": value.get("content")?, "sender": value.get("sender")?,
    }))
}
