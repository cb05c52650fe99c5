//! Membership: joining, inviting, leaving, kicking, banning, unbanning, forgetting, and the
//! list of joined rooms.

use super::RouteRuma;
use crate::{Ruma, Services, ruma_wrapper::ApiResult};
use axum::{Router, extract::State};
use myelin_core::Error;
use myelin_rooms::MembershipChange;
use ruma::api::client::knock::knock_room::v3 as knock_room;
use ruma::api::client::membership::{
    ban_user::v3 as ban_user, forget_room::v3 as forget_room, invite_user::v3 as invite_user,
    join_room_by_id::v3 as join_room_by_id, join_room_by_id_or_alias::v3 as join_room_by_id_or_alias,
    joined_rooms::v3 as joined_rooms, kick_user::v3 as kick_user, leave_room::v3 as leave_room,
    unban_user::v3 as unban_user,
};
use std::sync::Arc;

pub(super) fn routes(router: Router<Arc<Services>>) -> Router<Arc<Services>> {
    router
        .ruma::<joined_rooms::Request, _, _>(joined)
        .ruma::<join_room_by_id::Request, _, _>(join_by_id)
        .ruma::<join_room_by_id_or_alias::Request, _, _>(join_by_id_or_alias)
        .ruma::<invite_user::Request, _, _>(invite)
        .ruma::<leave_room::Request, _, _>(leave)
        .ruma::<kick_user::Request, _, _>(kick)
        .ruma::<ban_user::Request, _, _>(ban)
        .ruma::<unban_user::Request, _, _>(unban)
        .ruma::<forget_room::Request, _, _>(forget)
        .ruma::<knock_room::Request, _, _>(knock)
}

/// `POST /_matrix/client/v3/knock/{roomIdOrAlias}`
async fn knock(
    State(services): State<Arc<Services>>,
    request: Ruma<knock_room::Request>,
) -> ApiResult<knock_room::Response> {
    let identity = request.identity()?;
    let (room_id, mut servers) = services.rooms.resolve_room_and_servers(&request.body.room_id_or_alias).await?;
    servers.extend(request.body.via.iter().cloned());
    services.rooms.knock(&identity.user_id, &room_id, request.body.reason.as_deref(), &servers).await?;
    Ok(knock_room::Response::new(room_id).into())
}

/// `GET /_matrix/client/v3/joined_rooms`
async fn joined(
    State(services): State<Arc<Services>>,
    request: Ruma<joined_rooms::Request>,
) -> ApiResult<joined_rooms::Response> {
    let identity = request.identity()?;
    Ok(joined_rooms::Response::new(services.rooms.joined_rooms(&identity.user_id).await?).into())
}

/// `POST /_matrix/client/v3/rooms/{roomId}/join`
async fn join_by_id(
    State(services): State<Arc<Services>>,
    request: Ruma<join_room_by_id::Request>,
) -> ApiResult<join_room_by_id::Response> {
    let identity = request.identity()?;
    let room_id = &request.body.room_id;
    services.rooms.join(&identity.user_id, room_id, request.body.reason.as_deref(), &[]).await?;
    Ok(join_room_by_id::Response::new(room_id.clone()).into())
}

/// `POST /_matrix/client/v3/join/{roomIdOrAlias}`
async fn join_by_id_or_alias(
    State(services): State<Arc<Services>>,
    request: Ruma<join_room_by_id_or_alias::Request>,
) -> ApiResult<join_room_by_id_or_alias::Response> {
    let identity = request.identity()?;
    let (room_id, mut servers) = services.rooms.resolve_room_and_servers(&request.body.room_id_or_alias).await?;
    servers.extend(request.body.via.iter().cloned());
    services.rooms.join(&identity.user_id, &room_id, request.body.reason.as_deref(), &servers).await?;
    Ok(join_room_by_id_or_alias::Response::new(room_id).into())
}

/// `POST /_matrix/client/v3/rooms/{roomId}/invite`
async fn invite(
    State(services): State<Arc<Services>>,
    request: Ruma<invite_user::Request>,
) -> ApiResult<invite_user::Response> {
    let identity = request.identity()?;
    let invite_user::InvitationRecipient::UserId(recipient) = &request.body.recipient else {
        return Err(Error::new(
            http::StatusCode::BAD_REQUEST,
            myelin_core::ErrorKind::Unrecognized,
            "invites by third-party identifier are not supported",
        )
        .into());
    };
    services
        .rooms
        .change_membership(
            &identity.user_id,
            &request.body.room_id,
            &recipient.user_id,
            MembershipChange::Invite,
            recipient.reason.as_deref(),
        )
        .await?;
    Ok(invite_user::Response::new().into())
}

/// `POST /_matrix/client/v3/rooms/{roomId}/leave`
async fn leave(
    State(services): State<Arc<Services>>,
    request: Ruma<leave_room::Request>,
) -> ApiResult<leave_room::Response> {
    let identity = request.identity()?;
    let user = &identity.user_id;
    services
        .rooms
        .change_membership(user, &request.body.room_id, user, MembershipChange::Leave, request.body.reason.as_deref())
        .await?;
    Ok(leave_room::Response::new().into())
}

/// `POST /_matrix/client/v3/rooms/{roomId}/kick`
async fn kick(
    State(services): State<Arc<Services>>,
    request: Ruma<kick_user::Request>,
) -> ApiResult<kick_user::Response> {
    let identity = request.identity()?;
    let b = &request.body;
    services
        .rooms
        .change_membership(&identity.user_id, &b.room_id, &b.user_id, MembershipChange::Kick, b.reason.as_deref())
        .await?;
    Ok(kick_user::Response::new().into())
}

/// `POST /_matrix/client/v3/rooms/{roomId}/ban`
async fn ban(State(services): State<Arc<Services>>, request: Ruma<ban_user::Request>) -> ApiResult<ban_user::Response> {
    let identity = request.identity()?;
    let b = &request.body;
    services
        .rooms
        .change_membership(&identity.user_id, &b.room_id, &b.user_id, MembershipChange::Ban, b.reason.as_deref())
        .await?;
    Ok(ban_user::Response::new().into())
}

/// `POST /_matrix/client/v3/rooms/{roomId}/unban`
async fn unban(
    State(services): State<Arc<Services>>,
    request: Ruma<unban_user::Request>,
) -> ApiResult<unban_user::Response> {
    let identity = request.identity()?;
    let b = &request.body;
    services
        .rooms
        .change_membership(&identity.user_id, &b.room_id, &b.user_id, MembershipChange::Unban, b.reason.as_deref())
        .await?;
    Ok(unban_user::Response::new().into())
}

/// `POST /_matrix/client/v3/rooms/{roomId}/forget`
async fn forget(
    State(services): State<Arc<Services>>,
    request: Ruma<forget_room::Request>,
) -> ApiResult<forget_room::Response> {
    let identity = request.identity()?;
    services.rooms.forget(&identity.user_id, &request.body.room_id).await?;
    Ok(forget_room::Response::new().into())
}
