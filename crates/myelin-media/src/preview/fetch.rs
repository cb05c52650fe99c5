//! Fetching for previews. DNS answers are filtered through the address policy inside the HTTP
//! client's resolver, so the address checked is the address connected to; literal addresses
//! are checked before connecting; redirects are followed by hand, each hop checked again.

use bytes::Bytes;
use futures_util::StreamExt;
use myelin_federation::IpPolicy;
use reqwest::{
    Client, Url,
    dns::{Addrs, Name, Resolve, Resolving},
    redirect,
};
use std::{net::IpAddr, sync::Arc, time::Duration};

/// At most this many redirects are followed.
const MAX_REDIRECTS: usize = 5;

#[derive(Debug)]
pub enum FetchError {
    /// The URL or a redirect leads to an address the policy refuses.
    Forbidden(String),
    /// Not an http(s) URL, or a broken one.
    BadUrl(String),
    TooLarge,
    /// The remote end failed, timed out, or answered with an error.
    Upstream(String),
}

pub struct Fetched {
    pub url: Url,
    pub content_type: Option<String>,
    pub body: Bytes,
}

struct PolicyResolver(Arc<IpPolicy>);

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.0.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<_> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<_> = found.into_iter().filter(|addr| policy.allows(addr.ip())).collect();
            if allowed.is_empty() {
                return Err(format!("{host} resolves only to addresses that may not be fetched from").into());
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

pub struct Fetcher {
    client: Client,
    policy: Arc<IpPolicy>,
    max_size: u64,
}

impl Fetcher {
    pub fn new(policy: IpPolicy, timeout: Duration, max_size: u64) -> Result<Self, String> {
        let policy = Arc::new(policy);
        let client = Client::builder()
            .dns_resolver(Arc::new(PolicyResolver(policy.clone())))
            .redirect(redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("Myelin/", env!("CARGO_PKG_VERSION"), " (URL preview)"))
            .no_proxy()
            .build()
            .map_err(|e| format!("building the URL preview client: {e}"))?;
        Ok(Fetcher { client, policy, max_size })
    }

    pub async fn get(&self, url: &str) -> Result<Fetched, FetchError> {
        let mut url = Url::parse(url).map_err(|e| FetchError::BadUrl(e.to_string()))?;
        for _ in 0..=MAX_REDIRECTS {
            self.check_url(&url)?;
            let response = self.client.get(url.clone()).send().await.map_err(|e| {
                if is_refused_by_policy(&e) {
                    FetchError::Forbidden(format!("{url} leads to an address that may not be fetched from"))
                } else {
                    FetchError::Upstream(format!("fetching {url}: {e}"))
                }
            })?;
            if response.status().is_redirection() {
                let location = response
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .ok_or_else(|| FetchError::Upstream(format!("{url} redirects without a Location")))?;
                url = url.join(location).map_err(|e| FetchError::BadUrl(format!("redirect to {location}: {e}")))?;
                continue;
            }
            if !response.status().is_success() {
                return Err(FetchError::Upstream(format!("{url} answered {}", response.status())));
            }
            if response.content_length().is_some_and(|len| len > self.max_size) {
                return Err(FetchError::TooLarge);
            }
            let content_type =
                response.headers().get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
            let mut body = Vec::new();
            let mut stream = response.bytes_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| FetchError::Upstream(format!("reading {url}: {e}")))?;
                if (body.len() + chunk.len()) as u64 > self.max_size {
                    return Err(FetchError::TooLarge);
                }
                body.extend_from_slice(&chunk);
            }
            return Ok(Fetched { url, content_type, body: body.into() });
        }
        Err(FetchError::Upstream(format!("more than {MAX_REDIRECTS} redirects")))
    }

    /// http(s) only; a literal address must pass the policy (the resolver never sees it).
    fn check_url(&self, url: &Url) -> Result<(), FetchError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(FetchError::BadUrl(format!("only http and https URLs can be previewed, not {}", url.scheme())));
        }
        let literal = match url.host() {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            Some(url::Host::Domain(_)) => None,
            None => return Err(FetchError::BadUrl("the URL has no host".into())),
        };
        if literal.is_some_and(|ip| !self.policy.allows(ip)) {
            return Err(FetchError::Forbidden(format!("{url} is an address that may not be fetched from")));
        }
        Ok(())
    }
}

/// Whether a client error came from our resolver refusing every address.
fn is_refused_by_policy(error: &reqwest::Error) -> bool {
    let mut source: Option<&dyn std::error::Error> = Some(error);
    while let Some(e) = source {
        if e.to_string().contains("may not be fetched from") {
            return true;
        }
        source = e.source();
    }
    false
}
