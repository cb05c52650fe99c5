//! The Server-Server API on the federation listener: version, keys (own and notary), the
//! v1.11 authenticated media endpoints and queries (profiles, aliases, devices and keys, the
//! public room directory). Every endpoint that other servers sign for is
//! verified (X-Matrix) by the `Federated<T>` extractor before its handler runs.

mod auth;
mod keys;
mod media;
mod query;
mod rooms;

pub(crate) use auth::Federated;

use crate::{Services, client::RouteRuma, ruma_wrapper::ApiResult};
use axum::{Router, extract::State};
use ruma::api::federation::discovery::get_server_version::v1 as version;
use std::sync::Arc;

pub fn routes() -> Router<Arc<Services>> {
    let router = Router::new().ruma::<version::Request, _, _>(get_version);
    let router = keys::routes(router);
    let router = media::routes(router);
    let router = query::routes(router);
    rooms::routes(router)
}

/// `GET /_matrix/federation/v1/version`
async fn get_version(_: State<Arc<Services>>, _: Federated<version::Request>) -> ApiResult<version::Response> {
    let mut server = version::Server::new();
    server.name = Some("Myelin".to_owned());
    server.version = Some(env!("CARGO_PKG_VERSION").to_owned());
    let mut response = version::Response::new();
    response.server = Some(server);
    Ok(response.into())
}
