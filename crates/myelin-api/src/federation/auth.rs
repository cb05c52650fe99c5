//! `Federated<T>`: a Server-Server request parsed into ruma's type `T`, its X-Matrix signature
//! verified against the origin's keys first when the endpoint is signed.

use crate::{
    ApiError, Services,
    ruma_wrapper::{parse_error, path_arguments, read_json_body},
};
use axum::extract::{FromRequest, Request};
use myelin_core::Error;
use ruma::{
    OwnedServerName,
    api::{
        IncomingRequest, IncomingRequestExt, auth_scheme::NoAuthentication,
        federation::authentication::ServerSignatures,
    },
};
use std::sync::Arc;

/// Whether an endpoint's ruma authentication scheme is X-Matrix.
pub trait ServerAuth {
    const SIGNED: bool;
}

impl ServerAuth for ServerSignatures {
    const SIGNED: bool = true;
}

impl ServerAuth for NoAuthentication {
    const SIGNED: bool = false;
}

pub struct Federated<T> {
    pub body: T,
    /// The server that signed the request (None for the unsigned key endpoints).
    pub origin: Option<OwnedServerName>,
}

impl<T> Federated<T> {
    /// The origin of a signed endpoint's request.
    pub fn origin(&self) -> Result<&OwnedServerName, ApiError> {
        self.origin.as_ref().ok_or_else(|| Error::forbidden("This endpoint needs a signed request").into())
    }
}

impl<T> FromRequest<Arc<Services>> for Federated<T>
where
    T: IncomingRequest + Send,
    T::Authentication: ServerAuth,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, services: &Arc<Services>) -> Result<Self, ApiError> {
        let (mut parts, body) = request.into_parts();
        let path_args = path_arguments(&mut parts, services).await?;
        let bytes = read_json_body(body, services).await?;
        let origin = if T::Authentication::SIGNED {
            let uri =
                parts.uri.path_and_query().map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned());
            let origin = services.federation.keys.verify_request(&parts.method, &uri, &parts.headers, &bytes).await?;
            // It is up: anything queued for it goes now.
            services.federation.client.heard_from(&origin).await;
            if services.federation.sender.knows(&origin) {
                services.federation.sender.wake(&origin);
            }
            Some(origin)
        } else {
            None
        };
        let http_request = http::Request::from_parts(parts, bytes.as_ref());
        let args: Vec<&str> = path_args.iter().map(String::as_str).collect();
        let body = T::try_from_http_request(http_request, &args).map_err(|e| parse_error(e, &bytes))?;
        Ok(Federated { body, origin })
    }
}
