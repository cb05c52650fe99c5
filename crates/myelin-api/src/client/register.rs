//! Registration: `/register`, `/register/available`, registration token validity.

use super::RouteRuma;
use crate::{Ruma, Services, ruma_wrapper::ApiResult};
use axum::{Router, extract::State};
use myelin_accounts::Registration;
use myelin_core::Error;
use ruma::api::client::account::{
    check_registration_token_validity::v1 as token_validity,
    get_username_availability::v3 as available,
    register::{RegistrationKind, v3 as register},
};
use std::sync::Arc;

pub(super) fn routes(router: Router<Arc<Services>>) -> Router<Arc<Services>> {
    router
        .ruma::<register::Request, _, _>(register)
        .ruma::<available::Request, _, _>(username_available)
        .ruma::<token_validity::Request, _, _>(registration_token_validity)
}

/// `POST /_matrix/client/v3/register`
async fn register(
    State(services): State<Arc<Services>>,
    request: Ruma<register::Request>,
) -> ApiResult<register::Response> {
    services.rate_limits.check_registration(&request.client_ip)?;
    let body = request.body;
    if body.kind == RegistrationKind::Guest {
        return Err(Error::forbidden("Guest access is not enabled on this server").into());
    }
    let outcome = services
        .accounts
        .register(Registration {
            username: body.username,
            password: body.password,
            device_id: body.device_id,
            initial_device_display_name: body.initial_device_display_name,
            inhibit_login: body.inhibit_login,
            refresh_token: body.refresh_token,
            auth: body.auth,
        })
        .await?;
    let mut response = register::Response::new(outcome.user_id);
    if let Some(session) = outcome.session {
        response.access_token = Some(session.access_token);
        response.device_id = Some(session.device_id);
        response.refresh_token = session.refresh_token;
        response.expires_in = session.expires_in;
    }
    Ok(response.into())
}

/// `GET /_matrix/client/v3/register/available`
async fn username_available(
    State(services): State<Arc<Services>>,
    request: Ruma<available::Request>,
) -> ApiResult<available::Response> {
    services.rate_limits.check_registration(&request.client_ip)?;
    if !services.config.registration.enabled {
        return Err(Error::forbidden("Registration is disabled on this server").into());
    }
    services.accounts.check_username_available(&request.body.username).await?;
    Ok(available::Response::new(true).into())
}

/// `GET /_matrix/client/v1/register/m.login.registration_token/validity`
async fn registration_token_validity(
    State(services): State<Arc<Services>>,
    request: Ruma<token_validity::Request>,
) -> ApiResult<token_validity::Response> {
    services.rate_limits.check_registration(&request.client_ip)?;
    if !services.config.registration.enabled {
        return Err(Error::forbidden("Registration is disabled on this server").into());
    }
    let valid = services.accounts.registration_token_is_valid(&request.body.token).await?;
    Ok(token_validity::Response::new(valid).into())
}
