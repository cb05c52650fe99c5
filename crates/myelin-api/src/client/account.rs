//! Account changes: `/account/password`, `/account/deactivate` (access token optional, v1.11),
//! and OpenID tokens (`/user/{userId}/openid/request_token`).

use super::RouteRuma;
use crate::{Ruma, Services, ruma_wrapper::ApiResult};
use axum::{Router, extract::State};
use myelin_core::Error;
use ruma::api::client::account::{
    ThirdPartyIdRemovalStatus, change_password::v3 as change_password, deactivate::v3 as deactivate,
    request_openid_token::v3 as openid_token,
};
use std::sync::Arc;

pub(super) fn routes(router: Router<Arc<Services>>) -> Router<Arc<Services>> {
    router
        .ruma::<change_password::Request, _, _>(post_password)
        .ruma::<deactivate::Request, _, _>(post_deactivate)
        .ruma::<openid_token::Request, _, _>(post_openid_token)
}

/// `POST /_matrix/client/v3/user/{userId}/openid/request_token`
async fn post_openid_token(
    State(services): State<Arc<Services>>,
    request: Ruma<openid_token::Request>,
) -> ApiResult<openid_token::Response> {
    let identity = request.identity()?;
    if identity.user_id != request.body.user_id {
        return Err(Error::forbidden("An OpenID token can only be requested for yourself").into());
    }
    let token = services.accounts.request_openid_token(&identity.user_id).await?;
    Ok(openid_token::Response::new(
        token,
        ruma::authentication::TokenType::Bearer,
        services.config.server_name.clone(),
        myelin_accounts::OPENID_TOKEN_LIFETIME,
    )
    .into())
}

/// `POST /_matrix/client/v3/account/password`
async fn post_password(
    State(services): State<Arc<Services>>,
    request: Ruma<change_password::Request>,
) -> ApiResult<change_password::Response> {
    let subject = request.identity.as_ref().map(|i| (&*i.user_id, &*i.device_id));
    let body = &request.body;
    services.rooms.device_lists_changing();
    let changed =
        services.accounts.change_password(subject, &body.new_password, body.logout_devices, body.auth.as_ref()).await;
    services.rooms.wake_syncs().await?;
    changed?;
    Ok(change_password::Response::new().into())
}

/// `POST /_matrix/client/v3/account/deactivate`
async fn post_deactivate(
    State(services): State<Arc<Services>>,
    request: Ruma<deactivate::Request>,
) -> ApiResult<deactivate::Response> {
    let subject = request.identity.as_ref().map(|i| &*i.user_id);
    services.accounts.deactivate_with_uia(subject, request.body.auth.as_ref()).await?;
    // No identity server binding is ever made, so there is nothing to unbind.
    Ok(deactivate::Response::new(ThirdPartyIdRemovalStatus::NoSupport).into())
}
