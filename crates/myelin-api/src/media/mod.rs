//! The content repository over HTTP: uploads (`/_matrix/media/*/upload`, `/create`), the
//! authenticated `/_matrix/client/v1/media/*` endpoints and the deprecated `/_matrix/media/*`
//! ones, which serve no media uploaded after the freeze.

mod config;
mod download;
pub(crate) mod file_response;
mod preview;
pub(crate) mod thumbnail;
mod upload;

use crate::Services;
use axum::Router;
use std::sync::Arc;

pub fn routes() -> Router<Arc<Services>> {
    let router = Router::new();
    let router = upload::routes(router);
    let router = download::routes(router);
    let router = thumbnail::routes(router);
    let router = preview::routes(router);
    config::routes(router)
}

/// How an authenticated media request may see media (admins see quarantined media too).
fn access<T>(request: &crate::Ruma<T>) -> myelin_media::Access {
    myelin_media::Access::of_user(request.identity.as_ref().is_some_and(|i| i.is_admin))
}
