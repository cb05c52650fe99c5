//! Profiles: `/profile/{userId}` and its `displayname` and `avatar_url` fields.

use super::RouteRuma;
use crate::{Ruma, Services, ruma_wrapper::ApiResult};
use axum::{Router, extract::State};
use myelin_core::Error;
use ruma::{
    UserId,
    api::client::profile::{
        get_avatar_url::v3 as get_avatar_url, get_display_name::v3 as get_display_name, get_profile::v3 as get_profile,
        set_avatar_url::v3 as set_avatar_url, set_display_name::v3 as set_display_name,
    },
    profile::UserProfile,
};
use std::sync::Arc;

pub(super) fn routes(router: Router<Arc<Services>>) -> Router<Arc<Services>> {
    router
        .ruma::<get_profile::Request, _, _>(profile)
        .ruma::<get_display_name::Request, _, _>(displayname)
        .ruma::<set_display_name::Request, _, _>(set_displayname)
        .ruma::<get_avatar_url::Request, _, _>(avatar_url)
        .ruma::<set_avatar_url::Request, _, _>(set_avatar)
}

/// Profiles of other servers' users come with federation; until then they are not found.
fn local(services: &Services, user_id: &UserId) -> Result<(), Error> {
    if user_id.server_name() != services.config.server_name {
        return Err(Error::not_found("Profile not found"));
    }
    Ok(())
}

/// `GET /_matrix/client/v3/profile/{userId}`
async fn profile(
    State(services): State<Arc<Services>>,
    request: Ruma<get_profile::Request>,
) -> ApiResult<get_profile::Response> {
    let user_id = &request.body.user_id;
    local(&services, user_id)?;
    let (displayname, avatar_url) = services.accounts.profile(user_id).await?;
    let mut data = UserProfile::new();
    if let Some(name) = displayname {
        data.set("displayname".into(), name.into());
    }
    if let Some(url) = avatar_url {
        data.set("avatar_url".into(), url.to_string().into());
    }
    Ok(get_profile::Response::from(data).into())
}

/// `GET /_matrix/client/v3/profile/{userId}/displayname`
async fn displayname(
    State(services): State<Arc<Services>>,
    request: Ruma<get_display_name::Request>,
) -> ApiResult<get_display_name::Response> {
    local(&services, &request.body.user_id)?;
    let (displayname, _) = services.accounts.profile(&request.body.user_id).await?;
    Ok(get_display_name::Response::new(displayname).into())
}

/// `PUT /_matrix/client/v3/profile/{userId}/displayname`
async fn set_displayname(
    State(services): State<Arc<Services>>,
    request: Ruma<set_display_name::Request>,
) -> ApiResult<set_display_name::Response> {
    own(&request.identity()?.user_id, &request.body.user_id)?;
    services.accounts.set_displayname(&request.body.user_id, request.body.displayname.as_deref()).await?;
    Ok(set_display_name::Response::new().into())
}

/// `GET /_matrix/client/v3/profile/{userId}/avatar_url`
async fn avatar_url(
    State(services): State<Arc<Services>>,
    request: Ruma<get_avatar_url::Request>,
) -> ApiResult<get_avatar_url::Response> {
    local(&services, &request.body.user_id)?;
    let (_, avatar_url) = services.accounts.profile(&request.body.user_id).await?;
    Ok(get_avatar_url::Response::new(avatar_url).into())
}

/// `PUT /_matrix/client/v3/profile/{userId}/avatar_url`
async fn set_avatar(
    State(services): State<Arc<Services>>,
    request: Ruma<set_avatar_url::Request>,
) -> ApiResult<set_avatar_url::Response> {
    own(&request.identity()?.user_id, &request.body.user_id)?;
    let url = request.body.avatar_url.as_ref().map(|u| u.as_str());
    services.accounts.set_avatar_url(&request.body.user_id, url).await?;
    Ok(set_avatar_url::Response::new().into())
}

fn own(requester: &UserId, target: &UserId) -> Result<(), Error> {
    if requester != target {
        return Err(Error::forbidden("You cannot change another user's profile"));
    }
    Ok(())
}
