//! The HTTP face of Myelin: axum routers per API, the `Ruma<T>` extractor, error mapping and
//! middleware (request log, CORS, fallbacks).

pub(crate) mod client;
mod error;
mod federation;
mod keys_json;
mod media;
mod middleware;
mod rate_limit;
mod ruma_wrapper;
mod wellknown;

pub use error::ApiError;
pub use rate_limit::RateLimits;
pub use ruma_wrapper::{Ruma, RumaResponse};

use axum::Router;
use myelin_accounts::Accounts;
use myelin_core::Config;
use myelin_federation::Federation;
use myelin_media::MediaService;
use myelin_rooms::RoomService;
use myelin_store::Store;
use std::sync::Arc;

/// Every service of the server, shared by the handlers.
pub struct Services {
    pub config: Arc<Config>,
    pub store: Store,
    pub accounts: Accounts,
    pub media: MediaService,
    pub rooms: RoomService,
    pub federation: Arc<Federation>,
    pub rate_limits: RateLimits,
}

impl Services {
    pub async fn new(config: Arc<Config>, store: Store) -> myelin_core::Result<Arc<Self>> {
        let federation = Arc::new(Federation::new(store.clone(), &config).await?);
        let rooms = RoomService::new(store.clone(), config.clone(), federation.signing_key(), federation.clone())?;
        rooms.start().await?;
        federation.sender.start().await?;
        Ok(Arc::new(Services {
            accounts: Accounts::new(store.clone(), config.clone()),
            media: MediaService::new(store.clone(), config.clone(), federation.client.clone()).await?,
            rooms,
            federation,
            rate_limits: RateLimits::new(&config.rate_limits),
            config,
            store,
        }))
    }
}

/// The router of the client-facing listener: client API, well-known, fallbacks, middleware.
pub fn router(services: Arc<Services>) -> Router {
    let routes = client::routes().merge(media::routes()).merge(wellknown::routes());
    middleware::wrap(routes).with_state(services)
}

/// The router of the federation listener: the Server-Server API and the key endpoints.
pub fn federation_router(services: Arc<Services>) -> Router {
    middleware::wrap(federation::routes()).with_state(services)
}
