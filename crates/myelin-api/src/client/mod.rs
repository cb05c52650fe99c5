//! The Client-Server API, one file per endpoint group.

mod account;
mod account_data;
mod devices;
mod directory;
mod discovery;
mod key_backup;
mod keys;
mod membership;
mod notifications;
mod profile;
mod push_rules;
mod receipts;
mod register;
mod relations;
pub(crate) mod rooms;
mod session;
mod startup;
mod sync;
mod to_device;

use crate::Services;
use axum::{
    Router,
    handler::Handler,
    routing::{MethodFilter, on},
};
use ruma::api::Metadata;
use std::sync::Arc;

pub fn routes() -> Router<Arc<Services>> {
    let router = Router::new();
    let router = discovery::routes(router);
    let router = register::routes(router);
    let router = session::routes(router);
    let router = account::routes(router);
    let router = devices::routes(router);
    let router = rooms::routes(router);
    let router = membership::routes(router);
    let router = directory::routes(router);
    let router = relations::routes(router);
    let router = sync::routes(router);
    let router = account_data::routes(router);
    let router = receipts::routes(router);
    let router = push_rules::routes(router);
    let router = startup::routes(router);
    let router = keys::routes(router);
    let router = key_backup::routes(router);
    let router = to_device::routes(router);
    let router = notifications::routes(router);
    profile::routes(router)
}

/// Mounts a handler on every path and the method of ruma endpoint `T`.
pub(crate) trait RouteRuma {
    fn ruma<T: Metadata, H: Handler<X, Arc<Services>>, X: 'static>(self, handler: H) -> Self;
}

impl RouteRuma for Router<Arc<Services>> {
    fn ruma<T: Metadata, H: Handler<X, Arc<Services>>, X: 'static>(mut self, handler: H) -> Self {
        use ruma::api::path_builder::PathBuilder;
        let Ok(filter) = MethodFilter::try_from(T::METHOD) else {
            panic!("ruma endpoint with method {} has no axum filter", T::METHOD)
        };
        for path in T::PATH_BUILDER.all_paths() {
            self = self.route(path, on(filter, handler.clone()));
        }
        self
    }
}
