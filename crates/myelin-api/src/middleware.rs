//! What wraps every route: the request log, CORS, OPTIONS, and Matrix errors for unknown
//! endpoints and methods.

use crate::{ApiError, Services};
use axum::{
    Router,
    extract::Request,
    middleware::{Next, from_fn},
    response::{IntoResponse, Response},
};
use http::{HeaderName, Method, StatusCode, header};
use myelin_core::Error;
use std::{sync::Arc, time::Instant};
use tower_http::cors::{Any, CorsLayer};

pub fn wrap(routes: Router<Arc<Services>>) -> Router<Arc<Services>> {
    routes
        .fallback(unrecognized)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(from_fn(answer_options))
        .layer(cors())
        .layer(from_fn(log_request))
}

/// The CORS headers the spec asks every client endpoint to send.
fn cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE, Method::OPTIONS])
        .allow_headers([HeaderName::from_static("x-requested-with"), header::CONTENT_TYPE, header::AUTHORIZATION])
}

/// `OPTIONS` on any path is a successful empty answer (CORS adds its headers around it).
async fn answer_options(request: Request, next: Next) -> Response {
    if request.method() == Method::OPTIONS {
        return (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], "{}").into_response();
    }
    next.run(request).await
}

async fn unrecognized() -> ApiError {
    Error::unrecognized(StatusCode::NOT_FOUND, "Unrecognized request").into()
}

async fn method_not_allowed() -> ApiError {
    Error::unrecognized(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed for this endpoint").into()
}

/// One log line per request: method, path (secrets in the query redacted), status, latency.
async fn log_request(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = redacted_path(request.uri());
    let response = next.run(request).await;
    let status = response.status().as_u16();
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    if status >= 500 {
        tracing::warn!(target: "myelin::http", %method, %path, status, latency_ms, "request");
    } else {
        tracing::info!(target: "myelin::http", %method, %path, status, latency_ms, "request");
    }
    response
}

/// The path and query with the value of every `*token*` parameter replaced.
fn redacted_path(uri: &http::Uri) -> String {
    let path = uri.path();
    let Some(query) = uri.query() else { return path.to_owned() };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if key.to_ascii_lowercase().contains("token") => format!("{key}=<redacted>"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{path}?{}", query.join("&"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_are_redacted() {
        let uri: http::Uri = "/_matrix/client/v3/sync?since=s1&access_token=secret&timeout=0".parse().unwrap();
        assert_eq!(super::redacted_path(&uri), "/_matrix/client/v3/sync?since=s1&access_token=<redacted>&timeout=0");
    }
}
