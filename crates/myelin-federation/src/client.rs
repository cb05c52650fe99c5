//! The outbound federation client: one connection pool for every destination, requests signed
//! with X-Matrix, server discovery, the address and domain policies, and per-destination
//! backoff. Addresses are checked inside the HTTP client's resolver, so the address checked is
//! the address connected to; IP literals are checked before connecting.

use crate::{
    IpPolicy, SigningKey,
    backoff::Backoff,
    discovery::{self, Discovery, Lookups},
};
use bytes::Bytes;
use futures_util::{FutureExt, future::BoxFuture};
use hickory_resolver::{TokioResolver, proto::rr::RData};
use myelin_core::Config;
use reqwest::{
    Client, Method, Response, StatusCode, Url,
    dns::{Addrs, Name, Resolve, Resolving},
    redirect,
};
use ruma::{
    OwnedServerName, ServerName,
    api::{
        IncomingResponseExt, OutgoingRequest, OutgoingRequestExt,
        federation::authentication::{ServerSignatures, XMatrix, XMatrixSigningInput},
        path_builder::SinglePath,
    },
};
use std::{
    net::IpAddr,
    sync::{Arc, OnceLock},
    time::Duration,
};

/// Largest JSON answer read from another server.
const MAX_ANSWER: usize = 16 * 1024 * 1024;
/// Largest `.well-known/matrix/server` answer read.
const WELL_KNOWN_MAX_SIZE: usize = 64 * 1024;

/// Why an outbound request did not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum FederationError {
    #[error("federation is disabled on this server")]
    Disabled,
    #[error("{0}")]
    Forbidden(String),
    // The messages go to clients: they name the server, not what went wrong on the network
    // (which would make this server a port scanner); the details are logged.
    #[error("not retrying {destination} yet: it failed recently")]
    BackingOff { destination: String, retry_after_ts: i64, last_error: String },
    #[error("{destination} could not be reached")]
    Unreachable { destination: String, message: String },
    #[error("{destination} answered {status} {errcode}: {message}")]
    Refused { destination: String, status: u16, errcode: String, message: String },
}

impl From<FederationError> for myelin_core::Error {
    fn from(error: FederationError) -> Self {
        use http::StatusCode;
        use myelin_core::{Error, ErrorKind};
        match error {
            // Nothing of another server can be found here.
            FederationError::Disabled => Error::not_found(error.to_string()),
            FederationError::Forbidden(_) => Error::forbidden(error.to_string()),
            FederationError::Refused { status: 404, .. } => Error::not_found(error.to_string()),
            // The other server's rules said no (a join to a private room): so do we.
            FederationError::Refused { status: 403, .. } => Error::forbidden(error.to_string()),
            FederationError::BackingOff { .. }
            | FederationError::Unreachable { .. }
            | FederationError::Refused { .. } => {
                Error::new(StatusCode::BAD_GATEWAY, ErrorKind::Unknown, error.to_string())
            }
        }
    }
}

/// Resolves host names for the HTTP client: SRV targets found by discovery first, then the
/// system resolver; only addresses the policy allows are returned.
struct PolicyResolver {
    policy: Arc<IpPolicy>,
    /// Set once the discovery exists (it needs a client for `.well-known`).
    discovery: Arc<OnceLock<Arc<Discovery>>>,
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let target = self.discovery.get().and_then(|d| d.srv_override(name.as_str()));
        let host = name.as_str().to_owned();
        Box::pin(async move {
            // Port 0 is replaced by the URL's port; an SRV port is kept (the URL has none).
            let (lookup, port) = target.unwrap_or((host.clone(), 0));
            let found: Vec<_> = tokio::net::lookup_host((lookup.as_str(), port)).await?.collect();
            let allowed: Vec<_> = found.into_iter().filter(|addr| policy.allows(addr.ip())).collect();
            if allowed.is_empty() {
                return Err(format!("{host} resolves only to addresses this server may not connect to").into());
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// The real network lookups of discovery: `.well-known` over HTTPS, SRV through hickory.
struct NetLookups {
    client: Client,
    policy: Arc<IpPolicy>,
    dns: Option<TokioResolver>,
}

impl Lookups for NetLookups {
    fn well_known<'a>(&'a self, host: &'a str) -> BoxFuture<'a, (Option<String>, Duration)> {
        async move {
            let url = format!("https://{host}/.well-known/matrix/server");
            match Url::parse(&url) {
                Ok(parsed) if !denied_address(&self.policy, &parsed) => {}
                _ => return (None, discovery::well_known_error_ttl()),
            }
            let response = match self.client.get(&url).send().await {
                Ok(response) if response.status().is_success() => response,
                Ok(response) => {
                    tracing::debug!(%url, status = %response.status(), "no .well-known delegation");
                    return (None, discovery::well_known_error_ttl());
                }
                Err(e) => {
                    tracing::debug!(%url, "no .well-known delegation: {e}");
                    return (None, discovery::well_known_error_ttl());
                }
            };
            let ttl = discovery::well_known_ttl(
                response.headers().get(http::header::CACHE_CONTROL).and_then(|v| v.to_str().ok()),
            );
            let body = match read_limited(response, WELL_KNOWN_MAX_SIZE).await {
                Ok(body) => body,
                Err(_) => return (None, discovery::well_known_error_ttl()),
            };
            let server = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("m.server")?.as_str().map(str::to_owned));
            match server {
                Some(server) => (Some(server), ttl),
                None => (None, discovery::well_known_error_ttl()),
            }
        }
        .boxed()
    }

    fn srv<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Option<((String, u16), Duration)>> {
        async move {
            let dns = self.dns.as_ref()?;
            let lookup = dns.srv_lookup(name).await.ok()?;
            let ttl = lookup.valid_until().saturating_duration_since(std::time::Instant::now());
            // Lowest priority first; among equals the heaviest (a simplification of RFC 2782's
            // weighted choice that keeps one target per name, which the cache needs).
            let best = lookup
                .answers()
                .iter()
                .filter_map(|record| match &record.data {
                    RData::SRV(srv) => Some((srv.priority, u16::MAX - srv.weight, srv.target.to_utf8(), srv.port)),
                    _ => None,
                })
                .min()?;
            let target = best.2.trim_end_matches('.').to_owned();
            Some(((target, best.3), ttl.max(Duration::from_secs(60))))
        }
        .boxed()
    }
}

/// Whether the URL's host is an address the policy refuses. The parsed URL is what the client
/// connects to: "127.1" or "2130706433" are host names to a server-name parser but loopback
/// addresses to the URL parser, and addresses skip the resolver where the policy runs.
fn denied_address(policy: &IpPolicy, url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => !policy.allows(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => !policy.allows(IpAddr::V6(ip)),
        _ => false,
    }
}

/// The longest reading a JSON answer may take, however steadily it trickles in: the client's
/// timeout is per read, so without this a peer sending a byte now and then holds the request
/// (and whoever waits on it) for ever.
const BODY_DEADLINE: Duration = Duration::from_secs(60);

/// Reads at most `limit` bytes of a response body, within `BODY_DEADLINE`.
pub async fn read_limited(mut response: Response, limit: usize) -> Result<Bytes, String> {
    let read = async {
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
            if body.len() + chunk.len() > limit {
                return Err(format!("the answer is larger than {limit} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(body))
    };
    tokio::time::timeout(BODY_DEADLINE, read)
        .await
        .unwrap_or_else(|_| Err(format!("the answer took longer than {} s", BODY_DEADLINE.as_secs())))
}

pub struct FederationClient {
    enabled: bool,
    server_name: OwnedServerName,
    key: Arc<SigningKey>,
    /// Signed federation requests (discovery's SRV targets applied, no redirects).
    http: Client,
    /// Plain fetches: `.well-known`, media `Location`s (redirects followed, each checked).
    plain: Client,
    discovery: Arc<Discovery>,
    policy: Arc<IpPolicy>,
    backoff: Backoff,
    allowlist: Vec<String>,
    denylist: Vec<String>,
}

impl FederationClient {
    pub fn new(config: &Config, key: Arc<SigningKey>, backoff: Backoff) -> myelin_core::Result<Self> {
        // Outbound TLS (federation, URL previews) uses ring through rustls: set it once for the
        // process, before the first client is built. Later calls find it set already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let fed = &config.federation;
        let policy = Arc::new(IpPolicy::new(&fed.ip_range_denylist, &fed.ip_range_allowlist));
        let slot = Arc::new(OnceLock::new());
        let timeout = Duration::from_secs(fed.request_timeout_secs);
        let builder = |resolver: PolicyResolver| -> myelin_core::Result<reqwest::ClientBuilder> {
            let mut builder = Client::builder()
                .dns_resolver(Arc::new(resolver))
                .connect_timeout(timeout.min(Duration::from_secs(15)))
                // Per read, not in total: a large media download may take longer than that.
                .read_timeout(timeout)
                .user_agent(concat!("Myelin/", env!("CARGO_PKG_VERSION")))
                .no_proxy()
                .tls_danger_accept_invalid_certs(fed.tls.insecure_accept_any_certificate_for_tests);
            if let Some(path) = &fed.tls.extra_ca_file {
                let pem = std::fs::read(path).map_err(|e| {
                    myelin_core::Error::internal(format!("federation.tls.extra_ca_file {}: {e}", path.display()))
                })?;
                let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                    myelin_core::Error::internal(format!("federation.tls.extra_ca_file {}: {e}", path.display()))
                })?;
                builder = builder.tls_certs_merge(certs);
            }
            Ok(builder)
        };
        let build_error =
            |e: reqwest::Error| myelin_core::Error::internal(format!("building the federation client: {e}"));
        let http = builder(PolicyResolver { policy: policy.clone(), discovery: slot.clone() })?
            .redirect(redirect::Policy::none())
            .build()
            .map_err(build_error)?;
        let redirect_policy = policy.clone();
        let plain = builder(PolicyResolver { policy: policy.clone(), discovery: Arc::new(OnceLock::new()) })?
            .redirect(redirect::Policy::custom(move |attempt| {
                let literal_denied = denied_address(&redirect_policy, attempt.url());
                if attempt.previous().len() >= 5 {
                    attempt.error("too many redirects")
                } else if literal_denied || attempt.url().scheme() != "https" {
                    attempt.error("redirect to an address this server may not connect to")
                } else {
                    attempt.follow()
                }
            }))
            .build()
            .map_err(build_error)?;
        let dns = match TokioResolver::builder_tokio().and_then(|b| b.build()) {
            Ok(dns) => Some(dns),
            Err(e) => {
                tracing::warn!("no DNS resolver for SRV lookups ({e}); federation uses .well-known and port 8448 only");
                None
            }
        };
        let lookups = NetLookups { client: plain.clone(), policy: policy.clone(), dns };
        let discovery = Arc::new(Discovery::new(Box::new(lookups)));
        let _ = slot.set(discovery.clone());
        Ok(FederationClient {
            enabled: fed.enabled,
            server_name: config.server_name.clone(),
            key,
            http,
            plain,
            discovery,
            policy,
            backoff,
            allowlist: fed.domain_allowlist.clone(),
            denylist: fed.domain_denylist.clone(),
        })
    }

    /// `server` just made a signed request to us: it is up, so it is not backed off any more
    /// (as Synapse does; a server back from an outage is caught up at once).
    pub async fn heard_from(&self, server: &ServerName) {
        if self.backoff.retry_after(server.as_str()).is_some() {
            self.backoff.succeeded(server.as_str()).await;
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Housekeeping: forgets destinations that failed long ago and were not asked for since.
    pub async fn purge_stale_backoffs(&self) -> myelin_core::Result<u64> {
        self.backoff.purge_stale().await
    }

    /// Whether this server talks to `server` at all (domain allow- and denylists).
    pub fn may_talk_to(&self, server: &ServerName) -> bool {
        let host = server.host();
        let listed = |list: &[String]| list.iter().any(|entry| entry == server.as_str() || entry == host);
        !listed(&self.denylist) && (self.allowlist.is_empty() || listed(&self.allowlist))
    }

    fn check_destination(&self, destination: &ServerName) -> Result<(), FederationError> {
        if !self.enabled {
            return Err(FederationError::Disabled);
        }
        if destination == self.server_name {
            return Err(FederationError::Forbidden("a federation request to this server itself".into()));
        }
        if !self.may_talk_to(destination) {
            return Err(FederationError::Forbidden(format!("federation with {destination} is not allowed here")));
        }
        Ok(())
    }

    /// Sends a request signed with X-Matrix to `destination` (`path` with its query string).
    /// Any HTTP answer is returned; connection failures and 5xx answers back the destination
    /// off. `respect_backoff` false is for fetching the keys of a server that just contacted us.
    pub async fn request(
        &self,
        destination: &ServerName,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        signed: bool,
        respect_backoff: bool,
    ) -> Result<Response, FederationError> {
        self.check_destination(destination)?;
        if respect_backoff && let Some((retry_after_ts, last_error)) = self.backoff.retry_after(destination.as_str()) {
            return Err(FederationError::BackingOff {
                destination: destination.to_string(),
                retry_after_ts,
                last_error,
            });
        }
        let target = self.discovery.resolve(destination).await;
        let unreachable =
            |message: String| FederationError::Unreachable { destination: destination.to_string(), message };
        let url = Url::parse(&format!("{}{path}", target.base_url())).map_err(|e| unreachable(e.to_string()))?;
        if denied_address(&self.policy, &url) {
            return Err(FederationError::Forbidden(format!(
                "{destination} is an address this server may not connect to"
            )));
        }
        let mut request = self.http.request(method.clone(), url);
        if signed {
            let body_bytes = body.clone().unwrap_or_default();
            let signing = http::Request::builder()
                .method(method)
                .uri(path)
                .body(body_bytes)
                .map_err(|e| unreachable(e.to_string()))?;
            let input = XMatrixSigningInput::new(self.server_name.clone(), destination.to_owned(), self.key.pair());
            let x_matrix = XMatrix::sign_http_request(&signing, input).map_err(|e| unreachable(e.to_string()))?;
            request = request.header(http::header::AUTHORIZATION, http::HeaderValue::from(&x_matrix));
        }
        if let Some(body) = body {
            request = request.header(http::header::CONTENT_TYPE, "application/json").body(body);
        }
        match request.send().await {
            Ok(response) if response.status().is_server_error() => {
                self.backoff.failed(destination.as_str(), &format!("HTTP {}", response.status())).await;
                Ok(response)
            }
            Ok(response) => {
                self.backoff.succeeded(destination.as_str()).await;
                Ok(response)
            }
            Err(e) => {
                let message = error_chain(&e);
                tracing::info!(%destination, "federation request failed: {message}");
                self.backoff.failed(destination.as_str(), &message).await;
                Err(unreachable(message))
            }
        }
    }

    /// Sends a signed Server-Server request built from ruma's type `T` and parses the answer.
    /// An error answer becomes `FederationError::Refused` with the remote's status and errcode.
    pub async fn send<T>(&self, destination: &ServerName, request: T) -> Result<T::IncomingResponse, FederationError>
    where
        T: OutgoingRequest<Authentication = ServerSignatures, PathBuilder = SinglePath>,
    {
        let invalid = |message: String| FederationError::Unreachable { destination: destination.to_string(), message };
        let input = XMatrixSigningInput::new(self.server_name.clone(), destination.to_owned(), self.key.pair());
        let built: http::Request<Vec<u8>> = request
            .try_into_http_request("https://destination.invalid", input, ())
            .map_err(|e| invalid(e.to_string()))?;
        let (parts, body) = built.into_parts();
        let path = parts.uri.path_and_query().map(|pq| pq.as_str().to_owned()).unwrap_or_default();
        let body = (!body.is_empty()).then_some(body);
        let response = self.request(destination, parts.method, &path, body, true, true).await?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = read_limited(response, MAX_ANSWER).await.map_err(invalid)?;
        if !status.is_success() {
            let answer = serde_json::from_slice::<serde_json::Value>(&bytes).unwrap_or_default();
            let text = |key: &str| answer.get(key).and_then(|v| v.as_str()).unwrap_or_default().to_owned();
            return Err(FederationError::Refused {
                destination: destination.to_string(),
                status: status.as_u16(),
                errcode: text("errcode"),
                message: text("error"),
            });
        }
        let mut http_response = http::Response::builder().status(status);
        if let Some(content_type) = headers.get(http::header::CONTENT_TYPE) {
            http_response = http_response.header(http::header::CONTENT_TYPE, content_type);
        }
        let http_response = http_response.body(bytes.as_ref()).map_err(|e| invalid(e.to_string()))?;
        T::IncomingResponse::try_from_http_response(http_response)
            .map_err(|e| invalid(format!("unexpected answer: {e}")))
    }

    /// A plain GET of an https URL another server pointed us to (a media `Location`).
    pub async fn get_url(&self, url: &str) -> Result<Response, FederationError> {
        let parsed = Url::parse(url).map_err(|e| FederationError::Forbidden(format!("bad URL {url}: {e}")))?;
        if parsed.scheme() != "https" && parsed.scheme() != "http" {
            return Err(FederationError::Forbidden(format!("{url} is not an http(s) URL")));
        }
        if denied_address(&self.policy, &parsed) {
            return Err(FederationError::Forbidden(format!("{url} is an address this server may not connect to")));
        }
        self.plain
            .get(parsed)
            .send()
            .await
            .map_err(|e| FederationError::Unreachable { destination: url.to_owned(), message: error_chain(&e) })
    }
}

/// An error with its causes, which reqwest keeps apart ("error sending request" alone says little).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// Whether the answer is the spec's "this endpoint is unknown here" (404/405 `M_UNRECOGNIZED`).
pub fn is_unrecognized(status: StatusCode, body: &[u8]) -> bool {
    matches!(status, StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED)
        && serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .is_some_and(|v| v.get("errcode").and_then(|c| c.as_str()) == Some("M_UNRECOGNIZED"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_in_any_spelling_are_checked() {
        let policy = IpPolicy::new(&myelin_core::config::UrlPreviewConfig::default().ip_range_denylist, &[]);
        for url in
            ["https://127.1:8448/", "https://2130706433/", "https://0x7f.1/", "https://[::1]/", "https://10.1.2.3/"]
        {
            assert!(denied_address(&policy, &Url::parse(url).unwrap()), "{url}");
        }
        assert!(!denied_address(&policy, &Url::parse("https://matrix.org/").unwrap()));
        assert!(!denied_address(&policy, &Url::parse("https://1.1.1.1/").unwrap()));
    }
}
