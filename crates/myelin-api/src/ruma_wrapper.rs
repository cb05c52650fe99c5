//! `Ruma<T>`: turns an HTTP request into ruma's request type `T` and the identity behind it,
//! and `RumaResponse<T>`: turns ruma's response type back into HTTP.

use crate::{ApiError, Services};
use axum::{
    body::Body,
    extract::{ConnectInfo, FromRequest, Path, Request},
    response::{IntoResponse, Response},
};
use bytes::BytesMut;
use http::{StatusCode, request::Parts};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use myelin_accounts::Identity;
use myelin_core::{Error, ErrorKind};
use ruma::api::{
    IncomingRequest, IncomingRequestExt, OutgoingResponse, OutgoingResponseExt,
    auth_scheme::{AccessToken, AccessTokenOptional, AppserviceTokenOptional, NoAccessToken, NoAuthentication},
    error::{DeserializationError, FromHttpRequestError},
};
use std::{net::SocketAddr, sync::Arc};

/// Whether an endpoint needs an access token, from its ruma authentication scheme.
pub trait ClientAuth {
    const REQUIRED: bool;
    const ACCEPTED: bool;
}

macro_rules! client_auth {
    ($($scheme:ty => $required:expr, $accepted:expr;)*) => {
        $(impl ClientAuth for $scheme { const REQUIRED: bool = $required; const ACCEPTED: bool = $accepted; })*
    };
}

client_auth! {
    AccessToken => true, true;
    AccessTokenOptional => false, true;
    // Application services are not supported yet: their token is treated as absent.
    AppserviceTokenOptional => false, false;
    NoAccessToken => false, false;
    NoAuthentication => false, false;
}

/// A parsed, authenticated request.
pub struct Ruma<T> {
    pub body: T,
    /// The user and device behind the access token, when the endpoint takes one and it was sent.
    pub identity: Option<Identity>,
    pub client_ip: String,
}

impl<T> Ruma<T> {
    /// The identity of an endpoint that requires authentication.
    pub fn identity(&self) -> Result<&Identity, ApiError> {
        self.identity.as_ref().ok_or_else(|| ApiError(Error::missing_token()))
    }
}

impl<T> FromRequest<Arc<Services>> for Ruma<T>
where
    T: IncomingRequest + Send,
    T::Authentication: ClientAuth,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, services: &Arc<Services>) -> Result<Self, ApiError> {
        let (mut parts, body) = request.into_parts();
        let path_args = path_arguments(&mut parts, services).await?;
        let (identity, client_ip) =
            authenticate(&parts, services, T::Authentication::REQUIRED, T::Authentication::ACCEPTED).await?;

        let bytes = read_json_body(body, services).await?;
        // An empty body on POST/PUT reads as `{}`: clients (matrix-nio's join, for one) leave it
        // out where every field is optional, and Synapse accepts that. Endpoints that need
        // fields still refuse `{}` with M_BAD_JSON.
        let bytes = if bytes.is_empty() && matches!(parts.method, http::Method::POST | http::Method::PUT) {
            bytes::Bytes::from_static(b"{}")
        } else {
            bytes
        };
        let http_request = http::Request::from_parts(parts, bytes.as_ref());
        let args: Vec<&str> = path_args.iter().map(String::as_str).collect();
        let body = T::try_from_http_request(http_request, &args).map_err(|e| parse_error(e, &bytes))?;
        Ok(Ruma { body, identity, client_ip })
    }
}

/// A JSON request body, at most `limits.max_json_body_size` bytes.
pub(crate) async fn read_json_body(body: Body, services: &Services) -> Result<bytes::Bytes, ApiError> {
    let limit = services.config.limits.max_json_body_size;
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => {
            Err(Error::too_large(format!("The request body is larger than {limit} bytes")).into())
        }
        Err(e) => Err(Error::bad_json(format!("Reading the request body failed: {e}")).into()),
    }
}

/// The identity behind a request's access token and the client's IP address. `required`: no
/// token is 401; `accepted`: a token, when sent, must be valid (else it is ignored).
pub(crate) async fn authenticate(
    parts: &Parts,
    services: &Services,
    required: bool,
    accepted: bool,
) -> Result<(Option<Identity>, String), ApiError> {
    let client_ip = client_ip(parts, services);
    let identity = match access_token(parts, services)? {
        Some(token) if accepted => Some(services.accounts.authenticate(&token, &client_ip).await?),
        _ if required => return Err(Error::missing_token().into()),
        _ => None,
    };
    Ok((identity, client_ip))
}

/// For handlers that stream their body: the authenticated user, by the rules of `Ruma<T>`.
pub struct Authenticated {
    pub identity: Identity,
}

impl axum::extract::FromRequestParts<Arc<Services>> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, services: &Arc<Services>) -> Result<Self, ApiError> {
        match authenticate(parts, services, true, true).await? {
            (Some(identity), _) => Ok(Authenticated { identity }),
            (None, _) => Err(Error::missing_token().into()),
        }
    }
}

/// The percent-decoded path parameters, in order.
pub(crate) async fn path_arguments(parts: &mut Parts, services: &Arc<Services>) -> Result<Vec<String>, ApiError> {
    use axum::extract::FromRequestParts;
    match Path::<Vec<String>>::from_request_parts(parts, services).await {
        Ok(Path(mut args)) => {
            // `/state/{eventType}` and `/state/{eventType}/` address the empty state key,
            // which a path parameter cannot match: supply it.
            if let Some(path) = parts.extensions.get::<axum::extract::MatchedPath>()
                && (path.as_str().ends_with("/{eventType}") || path.as_str().ends_with("/{eventType}/"))
                && path.as_str().contains("/state/")
            {
                args.push(String::new());
            }
            Ok(args)
        }
        Err(e) => Err(Error::invalid_param(format!("Invalid path parameter: {e}")).into()),
    }
}

/// The peer address, or the first `X-Forwarded-For` entry behind a trusted reverse proxy.
fn client_ip(parts: &Parts, services: &Services) -> String {
    if services.config.trust_x_forwarded_for
        && let Some(forwarded) = parts.headers.get("x-forwarded-for").and_then(|v| v.to_str().ok())
        && let Some(first) = forwarded.split(',').next()
    {
        return first.trim().to_owned();
    }
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// The access token from `Authorization: Bearer`, or (deprecated, if allowed) `?access_token=`.
fn access_token(parts: &Parts, services: &Services) -> Result<Option<String>, ApiError> {
    if let Some(value) = parts.headers.get(http::header::AUTHORIZATION) {
        let value = value.to_str().unwrap_or_default();
        return match value.strip_prefix("Bearer ") {
            Some(token) if !token.trim().is_empty() => Ok(Some(token.trim().to_owned())),
            _ => Err(Error::new(
                StatusCode::UNAUTHORIZED,
                ErrorKind::MissingToken,
                "The Authorization header must be \"Bearer <access token>\"",
            )
            .into()),
        };
    }
    let Some(query) = parts.uri.query() else { return Ok(None) };
    let token = serde_html_form::from_str::<Vec<(String, String)>>(query)
        .unwrap_or_default()
        .into_iter()
        .find_map(|(key, value)| (key == "access_token").then_some(value));
    match token {
        Some(_) if !services.config.auth.allow_query_string_token => Err(Error::new(
            StatusCode::UNAUTHORIZED,
            ErrorKind::MissingToken,
            "Access tokens in the query string are disabled on this server; use the Authorization header",
        )
        .into()),
        other => Ok(other),
    }
}

/// Malformed JSON is `M_NOT_JSON`; JSON of the wrong shape is `M_BAD_JSON`; a bad path or
/// query parameter is `M_INVALID_PARAM`.
pub(crate) fn parse_error(error: FromHttpRequestError, body: &[u8]) -> ApiError {
    let error = match error {
        FromHttpRequestError::Deserialization(DeserializationError::Json(e)) => {
            if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_err() {
                Error::new(StatusCode::BAD_REQUEST, ErrorKind::NotJson, format!("The body is not valid JSON: {e}"))
            } else {
                Error::bad_json(format!("The JSON body does not match the endpoint: {e}"))
            }
        }
        FromHttpRequestError::Deserialization(e) => Error::invalid_param(format!("Invalid request: {e}")),
        FromHttpRequestError::MethodMismatch { .. } => {
            Error::unrecognized(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed for this endpoint")
        }
        _ => Error::bad_json("Invalid request"),
    };
    ApiError(error)
}

/// A ruma response on its way out.
pub struct RumaResponse<T>(pub T);

impl<T: OutgoingResponse> From<T> for RumaResponse<T> {
    fn from(response: T) -> Self {
        RumaResponse(response)
    }
}

impl<T: OutgoingResponse> IntoResponse for RumaResponse<T> {
    fn into_response(self) -> Response {
        match self.0.try_into_http_response::<BytesMut>() {
            Ok(response) => response.map(|body| Body::from(body.freeze())).into_response(),
            Err(e) => ApiError(Error::internal(format!("serializing a response: {e}"))).into_response(),
        }
    }
}

/// What a handler returns.
pub type ApiResult<T> = Result<RumaResponse<T>, ApiError>;
