//! Profiles: `/profile/{userId}` and its `displayname` and `avatar_url` fields.

use super::RouteRuma;
use crate::{Ruma, Services, ruma_wrapper::ApiResult};
use axum::{Router, extract::State};
use myelin_core::Error;
use ruma::{
    OwnedMxcUri, UserId,
    api::client::profile::{
        get_avatar_url::v3 as get_avatar_url, get_display_name::v3 as get_display_name, get_profile::v3 as get_profile,
        set_avatar_url::v3 as set_avatar_url, set_display_name::v3 as set_display_name,
    },
    api::federation::query::get_profile_information::v1 as remote_profile,
    profile::{ProfileFieldName, UserProfile},
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

/// The (displayname, avatar_url) of any user: local ones from the store, other servers' over
/// federation (`/_matrix/federation/v1/query/profile`).
async fn any_profile(
    services: &Services,
    user_id: &UserId,
    field: Option<ProfileFieldName>,
) -> Result<(Option<String>, Option<OwnedMxcUri>), Error> {
    if user_id.server_name() == services.config.server_name {
        return services.accounts.profile(user_id).await;
    }
    let mut request = remote_profile::Request::new(user_id.to_owned());
    request.field = field;
    let answer = services.federation.client.send(user_id.server_name(), request).await?;
    let text = |name: &str| answer.get(name).and_then(|v| v.as_str()).map(str::to_owned);
    Ok((text("displayname"), text("avatar_url").map(OwnedMxcUri::from)))
}

/// `GET /_matrix/client/v3/profile/{userId}`
async fn profile(
    State(services): State<Arc<Services>>,
    request: Ruma<get_profile::Request>,
) -> ApiResult<get_profile::Response> {
    let (displayname, avatar_url) = any_profile(&services, &request.body.user_id, None).await?;
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
    let (displayname, _) = any_profile(&services, &request.body.user_id, Some(ProfileFieldName::DisplayName)).await?;
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
    let (_, avatar_url) = any_profile(&services, &request.body.user_id, Some(ProfileFieldName::AvatarUrl)).await?;
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
