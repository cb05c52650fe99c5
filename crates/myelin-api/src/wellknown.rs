//! `/.well-known/matrix/client` and `/.well-known/matrix/server`, from the config.

use crate::{Ruma, Services, client::RouteRuma, ruma_wrapper::ApiResult};
use axum::{Router, extract::State};
use myelin_core::Error;
use ruma::api::{
    client::discovery::discover_homeserver::{self as client_wellknown, HomeserverInfo},
    federation::discovery::discover_homeserver as server_wellknown,
};
use std::sync::Arc;

pub fn routes() -> Router<Arc<Services>> {
    Router::new().ruma::<client_wellknown::Request, _, _>(client).ruma::<server_wellknown::Request, _, _>(server)
}

/// `GET /.well-known/matrix/client`
async fn client(
    State(services): State<Arc<Services>>,
    _: Ruma<client_wellknown::Request>,
) -> ApiResult<client_wellknown::Response> {
    let Some(base_url) = &services.config.public_baseurl else {
        return Err(Error::not_found("No client discovery information is configured").into());
    };
    Ok(client_wellknown::Response::new(HomeserverInfo::new(base_url.clone())).into())
}

/// `GET /.well-known/matrix/server`
async fn server(
    State(services): State<Arc<Services>>,
    _: Ruma<server_wellknown::Request>,
) -> ApiResult<server_wellknown::Response> {
    let Some(server) = &services.config.well_known.server else {
        return Err(Error::not_found("No server delegation is configured").into());
    };
    let server = server
        .as_str()
        .try_into()
        .map_err(|e| Error::internal(format!("well_known.server is not a server name: {e}")))?;
    Ok(server_wellknown::Response::new(server).into())
}
