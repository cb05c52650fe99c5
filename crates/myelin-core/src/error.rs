//! The one error type of Myelin: a Matrix error for the client, a UIA challenge, or an internal failure.

use http::StatusCode;
pub use ruma::api::error::ErrorKind;
use ruma::api::{
    client::uiaa::UiaaInfo,
    error::{LimitExceededErrorData, RetryAfter, UnknownTokenErrorData},
};
use std::time::Duration;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug)]
pub enum Error {
    /// An error the client caused or must know about: status, errcode and message go on the wire.
    Matrix { status: StatusCode, kind: ErrorKind, message: String },
    /// User-Interactive Authentication must continue: 401 with the flows and the session.
    Uiaa(Box<UiaaInfo>),
    /// A bug or an infrastructure failure. Logged with its context; the client only sees a 500.
    Internal(String),
}

impl Error {
    pub fn new(status: StatusCode, kind: ErrorKind, message: impl Into<String>) -> Self {
        Error::Matrix { status, kind, message: message.into() }
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, ErrorKind::Forbidden, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorKind::NotFound, message)
    }

    pub fn bad_json(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorKind::BadJson, message)
    }

    pub fn invalid_param(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorKind::InvalidParam, message)
    }

    pub fn unrecognized(status: StatusCode, message: impl Into<String>) -> Self {
        Self::new(status, ErrorKind::Unrecognized, message)
    }

    pub fn missing_token() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, ErrorKind::MissingToken, "Missing access token")
    }

    /// `soft_logout` tells the client its session expired rather than was revoked.
    pub fn unknown_token(soft_logout: bool, message: impl Into<String>) -> Self {
        let mut data = UnknownTokenErrorData::new();
        data.soft_logout = soft_logout;
        Self::new(StatusCode::UNAUTHORIZED, ErrorKind::UnknownToken(data), message)
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, ErrorKind::TooLarge, message)
    }

    pub fn limit_exceeded(retry_after: Duration) -> Self {
        // Round up: a client retrying after the advertised time must be let through.
        let retry_after = Duration::from_secs(retry_after.as_secs() + 1);
        let mut data = LimitExceededErrorData::new();
        data.retry_after = Some(RetryAfter::Delay(retry_after));
        Self::new(StatusCode::TOO_MANY_REQUESTS, ErrorKind::LimitExceeded(data), "Too many requests")
    }

    /// An internal failure; `context` is logged, never sent to the client.
    pub fn internal(context: impl std::fmt::Display) -> Self {
        Error::Internal(context.to_string())
    }

    /// The errcode kind, for tests and logs.
    pub fn kind(&self) -> Option<&ErrorKind> {
        match self {
            Error::Matrix { kind, .. } => Some(kind),
            _ => None,
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Matrix { status, kind, message } => {
                write!(f, "{} {}: {message}", status.as_u16(), kind.errcode())
            }
            Error::Uiaa(_) => write!(f, "401 user-interactive authentication required"),
            Error::Internal(context) => write!(f, "internal error: {context}"),
        }
    }
}

impl std::error::Error for Error {}
