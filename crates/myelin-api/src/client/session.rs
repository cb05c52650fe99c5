//! Sessions: `/login`, `/refresh`, `/logout`, `/logout/all`, `/account/whoami`.

use super::RouteRuma;
use crate::{Ruma, Services, ruma_wrapper::ApiResult};
use axum::{Router, extract::State};
use http::StatusCode;
use myelin_core::{Error, ErrorKind};
use ruma::api::client::{
    account::whoami::v3 as whoami,
    session::{
        get_login_types::v3 as login_types,
        get_login_types::v3::{LoginType, PasswordLoginType},
        login::v3 as login,
        login::v3::LoginInfo,
        logout::v3 as logout,
        logout_all::v3 as logout_all,
        refresh_token::v3 as refresh,
    },
    uiaa::UserIdentifier,
};
use std::sync::Arc;

pub(super) fn routes(router: Router<Arc<Services>>) -> Router<Arc<Services>> {
    router
        .ruma::<login_types::Request, _, _>(get_login_types)
        .ruma::<login::Request, _, _>(post_login)
        .ruma::<refresh::Request, _, _>(post_refresh)
        .ruma::<logout::Request, _, _>(post_logout)
        .ruma::<logout_all::Request, _, _>(post_logout_all)
        .ruma::<whoami::Request, _, _>(get_whoami)
}

/// `GET /_matrix/client/v3/login`
async fn get_login_types(_: Ruma<login_types::Request>) -> ApiResult<login_types::Response> {
    Ok(login_types::Response::new(vec![LoginType::Password(PasswordLoginType::new())]).into())
}

/// `POST /_matrix/client/v3/login`: only the types `GET /login` lists are accepted (v1.11).
async fn post_login(
    State(services): State<Arc<Services>>,
    request: Ruma<login::Request>,
) -> ApiResult<login::Response> {
    let body = request.body;
    let LoginInfo::Password(password) = &body.login_info else {
        return Err(Error::new(
            StatusCode::BAD_REQUEST,
            ErrorKind::Unknown,
            format!("Unsupported login type {}; see GET /login", body.login_info.login_type()),
        )
        .into());
    };
    #[allow(deprecated)]
    let user = match (&password.identifier, &password.user) {
        (Some(UserIdentifier::Matrix(id)), _) => id.user.clone(),
        (Some(other), _) => {
            return Err(Error::new(
                StatusCode::BAD_REQUEST,
                ErrorKind::Unknown,
                format!("Unsupported identifier type {}", other.identifier_type()),
            )
            .into());
        }
        (None, Some(user)) => user.clone(),
        (None, None) => {
            return Err(Error::new(StatusCode::BAD_REQUEST, ErrorKind::MissingParam, "No user identifier given").into());
        }
    };
    services.rate_limits.check_login(&request.client_ip, Some(&user))?;
    let session = services
        .accounts
        .login_with_password(
            &user,
            &password.password,
            body.device_id,
            body.initial_device_display_name.as_deref(),
            body.refresh_token,
        )
        .await?;
    let mut response = login::Response::new(session.user_id, session.access_token, session.device_id);
    response.refresh_token = session.refresh_token;
    response.expires_in = session.expires_in;
    Ok(response.into())
}

/// `POST /_matrix/client/v3/refresh`
async fn post_refresh(
    State(services): State<Arc<Services>>,
    request: Ruma<refresh::Request>,
) -> ApiResult<refresh::Response> {
    let session = services.accounts.refresh(&request.body.refresh_token).await?;
    let mut response = refresh::Response::new(session.access_token);
    response.refresh_token = session.refresh_token;
    response.expires_in_ms = session.expires_in;
    Ok(response.into())
}

/// `POST /_matrix/client/v3/logout`
async fn post_logout(
    State(services): State<Arc<Services>>,
    request: Ruma<logout::Request>,
) -> ApiResult<logout::Response> {
    let identity = request.identity()?;
    services.rooms.device_lists_changing();
    let done = services.accounts.logout(&identity.user_id, &identity.device_id).await;
    services.rooms.wake_syncs().await?;
    done?;
    services.rooms.devices_deleted(&identity.user_id, &[identity.device_id.to_string()]).await?;
    Ok(logout::Response::new().into())
}

/// `POST /_matrix/client/v3/logout/all`
async fn post_logout_all(
    State(services): State<Arc<Services>>,
    request: Ruma<logout_all::Request>,
) -> ApiResult<logout_all::Response> {
    let identity = request.identity()?;
    services.rooms.device_lists_changing();
    let done = services.accounts.logout_all(&identity.user_id).await;
    services.rooms.wake_syncs().await?;
    done?;
    Ok(logout_all::Response::new().into())
}

/// `GET /_matrix/client/v3/account/whoami`
async fn get_whoami(request: Ruma<whoami::Request>) -> ApiResult<whoami::Response> {
    let identity = request.identity()?;
    let mut response = whoami::Response::new(identity.user_id.clone(), false);
    response.device_id = Some(identity.device_id.clone());
    Ok(response.into())
}
