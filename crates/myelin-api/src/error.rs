//! How a Myelin error becomes an HTTP response.

use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use http::StatusCode;
use myelin_core::{Error, ErrorKind};
use ruma::api::{
    OutgoingResponse, OutgoingResponseExt,
    client::uiaa::UiaaResponse,
    error::{ErrorBody, StandardErrorBody},
};

/// A `myelin_core::Error` on its way out as a response.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        ApiError(error)
    }
}

impl From<myelin_store::Error> for ApiError {
    fn from(error: myelin_store::Error) -> Self {
        ApiError(error.into())
    }
}

impl From<myelin_federation::FederationError> for ApiError {
    fn from(error: myelin_federation::FederationError) -> Self {
        ApiError(error.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind, message) = match self.0 {
            Error::Matrix { status, kind, message } => (status, kind, message),
            Error::Uiaa(info) => return serialize(UiaaResponse::AuthResponse(*info)),
            Error::Internal(context) => {
                tracing::error!("internal error: {context}");
                (StatusCode::INTERNAL_SERVER_ERROR, ErrorKind::Unknown, "Internal server error".to_owned())
            }
        };
        let body = ErrorBody::Standard(StandardErrorBody::new(kind, message));
        serialize(ruma::api::error::Error::new(status, body))
    }
}

fn serialize(response: impl OutgoingResponse) -> Response {
    match response.try_into_http_response::<BytesMut>() {
        Ok(response) => response.map(|body| axum::body::Body::from(body.freeze())).into_response(),
        Err(e) => {
            tracing::error!("serializing an error response: {e}");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}
