//! What clients ask for while starting up, answered as the spec says rather than with 404s:
//! TURN servers, third-party protocols, 3PIDs, and the user directory.

use super::RouteRuma;
use crate::{Ruma, Services, ruma_wrapper::ApiResult, ruma_wrapper::Authenticated};
use axum::{Json, Router, extract::State, routing::get};
use ruma::api::client::{
    thirdparty::get_protocols::v3 as get_protocols, user_directory::search_users::v3 as search_users,
};
use std::sync::Arc;

pub(super) fn routes(router: Router<Arc<Services>>) -> Router<Arc<Services>> {
    router
        .route("/_matrix/client/v3/voip/turnServer", get(turn_server))
        .route("/_matrix/client/r0/voip/turnServer", get(turn_server))
        .ruma::<get_protocols::Request, _, _>(protocols)
        .route("/_matrix/client/v3/account/3pid", get(threepids))
        .route("/_matrix/client/r0/account/3pid", get(threepids))
        .ruma::<search_users::Request, _, _>(user_directory)
}

/// `GET /_matrix/client/v3/voip/turnServer`: no TURN server is configured, which the spec's
/// clients understand as an empty object (ruma's response type requires the fields).
async fn turn_server(_: Authenticated) -> Json<serde_json::Value> {
    Json(serde_json::json!({}))
}

/// `GET /_matrix/client/v3/thirdparty/protocols`: no bridges, no protocols.
async fn protocols(request: Ruma<get_protocols::Request>) -> ApiResult<get_protocols::Response> {
    request.identity()?;
    Ok(get_protocols::Response::new(Default::default()).into())
}

/// `GET /_matrix/client/v3/account/3pid`: third-party identifiers are not supported yet. The
/// empty list is spelled out (ruma would leave it out), as Synapse does and clients expect.
async fn threepids(_: Authenticated) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "threepids": [] }))
}

/// `POST /_matrix/client/v3/user_directory/search`
async fn user_directory(
    State(services): State<Arc<Services>>,
    request: Ruma<search_users::Request>,
) -> ApiResult<search_users::Response> {
    let identity = request.identity()?;
    let b = &request.body;
    let limit = u64::from(b.limit) as usize;
    let (users, limited) = services.rooms.search_users(&identity.user_id, &b.search_term, limit).await?;
    let results = users
        .into_iter()
        .filter_map(|(user_id, name, avatar)| {
            let mut user = search_users::User::new(ruma::UserId::parse(user_id).ok()?);
            user.display_name = name;
            user.avatar_url = avatar.map(Into::into);
            Some(user)
        })
        .collect();
    Ok(search_users::Response::new(results, limited).into())
}
