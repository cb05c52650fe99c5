//! Server discovery (spec: Server-Server API, "Resolving server names"): where to connect for a
//! server name and which host name the TLS certificate and `Host` header must carry. Steps:
//! an IP literal or an explicit port is used as is; else `/.well-known/matrix/server` may
//! delegate; else SRV `_matrix-fed._tcp`, then the deprecated `_matrix._tcp`; else port 8448.
//! Results are cached: well-known answers by their cache headers, SRV answers by their TTL.

use futures_util::future::BoxFuture;
use ruma::ServerName;
use std::{
    collections::HashMap,
    net::IpAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

/// The default federation port.
pub const DEFAULT_PORT: u16 = 8448;
/// How long a failed or missing `.well-known` is remembered.
const WELL_KNOWN_ERROR_TTL: Duration = Duration::from_secs(3600);
/// Past this many cached names, expired ones are dropped before another is added.
const MAX_CACHED: usize = 1024;
/// How long a discovery that needed no lookup, or found no SRV record, is remembered.
const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);

/// Where to send requests for a server name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// The host of the request URL: the TLS server name and the `Host` header.
    pub host: String,
    /// The port in the URL, when the `Host` header carries one.
    pub port: Option<u16>,
    /// For SRV results: the target host and port actually connected to (the URL has no port).
    pub connect_to: Option<(String, u16)>,
}

impl Destination {
    /// `https://host[:port]`, IPv6 literals bracketed.
    pub fn base_url(&self) -> String {
        let host = match self.host.parse::<IpAddr>() {
            Ok(IpAddr::V6(v6)) => format!("[{v6}]"),
            _ => self.host.clone(),
        };
        match self.port {
            Some(port) => format!("https://{host}:{port}"),
            None => format!("https://{host}"),
        }
    }

    fn direct(host: &str, port: u16) -> Self {
        Destination { host: host.to_owned(), port: Some(port), connect_to: None }
    }
}

/// The network lookups discovery needs; tests replace them.
pub trait Lookups: Send + Sync {
    /// The `m.server` of `https://host/.well-known/matrix/server` and how long it may be kept,
    /// or None (with how long to remember that) when there is none or it is invalid.
    fn well_known<'a>(&'a self, host: &'a str) -> BoxFuture<'a, (Option<String>, Duration)>;
    /// The best SRV target (host, port) for `name` and its TTL, or None.
    fn srv<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Option<((String, u16), Duration)>>;
}

pub struct Discovery {
    lookups: Box<dyn Lookups>,
    cache: Mutex<HashMap<String, (Destination, Instant)>>,
}

/// A server name's host and port, IPv6 brackets removed.
fn split(name: &str) -> (String, Option<u16>) {
    if let Some(rest) = name.strip_prefix('[')
        && let Some((host, after)) = rest.split_once(']')
    {
        return (host.to_owned(), after.strip_prefix(':').and_then(|p| p.parse().ok()));
    }
    match name.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => (host.to_owned(), port.parse().ok()),
        _ => (name.to_owned(), None),
    }
}

impl Discovery {
    pub fn new(lookups: Box<dyn Lookups>) -> Self {
        Discovery { lookups, cache: Mutex::default() }
    }

    /// The SRV target host (and port) to connect to for URL host `host`, if discovery found one.
    pub fn srv_override(&self, host: &str) -> Option<(String, u16)> {
        let cache = self.cache.lock().expect("discovery cache");
        cache.values().find(|(d, _)| d.host == host && d.port.is_none()).and_then(|(d, _)| d.connect_to.clone())
    }

    pub async fn resolve(&self, server_name: &ServerName) -> Destination {
        if let Some((destination, until)) = self.cache.lock().expect("discovery cache").get(server_name.as_str())
            && *until > Instant::now()
        {
            return destination.clone();
        }
        let (destination, ttl) = self.discover(server_name.as_str()).await;
        tracing::debug!(%server_name, ?destination, "resolved federation destination");
        let mut cache = self.cache.lock().expect("discovery cache");
        // Names come from anyone (a user ID, an X-Matrix origin): expired ones must not pile up.
        if cache.len() >= MAX_CACHED {
            let now = Instant::now();
            cache.retain(|_, (_, until)| *until > now);
        }
        cache.insert(server_name.to_string(), (destination.clone(), Instant::now() + ttl));
        destination
    }

    async fn discover(&self, server_name: &str) -> (Destination, Duration) {
        let (host, port) = split(server_name);
        // 1 and 2: an IP literal, or a host with an explicit port.
        if host.parse::<IpAddr>().is_ok() || port.is_some() {
            return (Destination::direct(&host, port.unwrap_or(DEFAULT_PORT)), DEFAULT_TTL);
        }
        // 3: delegation through .well-known.
        let (delegated, well_known_ttl) = self.lookups.well_known(&host).await;
        if let Some(delegated) = delegated.filter(|d| <&ServerName>::try_from(d.as_str()).is_ok()) {
            let (d_host, d_port) = split(&delegated);
            if d_host.parse::<IpAddr>().is_ok() || d_port.is_some() {
                return (Destination::direct(&d_host, d_port.unwrap_or(DEFAULT_PORT)), well_known_ttl);
            }
            let (destination, srv_ttl) = self.srv_or_default(&d_host).await;
            return (destination, well_known_ttl.min(srv_ttl));
        }
        // 4-6: SRV records of the server name itself, else port 8448.
        let (destination, srv_ttl) = self.srv_or_default(&host).await;
        (destination, srv_ttl.min(well_known_ttl))
    }

    async fn srv_or_default(&self, host: &str) -> (Destination, Duration) {
        for prefix in ["_matrix-fed._tcp", "_matrix._tcp"] {
            if let Some((target, ttl)) = self.lookups.srv(&format!("{prefix}.{host}")).await {
                return (Destination { host: host.to_owned(), port: None, connect_to: Some(target) }, ttl);
            }
        }
        (Destination::direct(host, DEFAULT_PORT), DEFAULT_TTL)
    }
}

/// The lifetime of a `.well-known` answer from its `Cache-Control` (spec: 24 h when absent,
/// never more than 48 h).
pub fn well_known_ttl(cache_control: Option<&str>) -> Duration {
    let max_age = cache_control.and_then(|value| {
        value.split(',').find_map(|directive| directive.trim().strip_prefix("max-age=")?.parse::<u64>().ok())
    });
    match max_age {
        Some(secs) => Duration::from_secs(secs.clamp(60, 48 * 3600)),
        None => DEFAULT_TTL,
    }
}

pub fn well_known_error_ttl() -> Duration {
    WELL_KNOWN_ERROR_TTL
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    #[derive(Default)]
    struct Fake {
        well_known: HashMap<String, String>,
        srv: HashMap<String, (String, u16)>,
        calls: std::sync::Arc<Mutex<Vec<String>>>,
    }

    impl Lookups for Fake {
        fn well_known<'a>(&'a self, host: &'a str) -> BoxFuture<'a, (Option<String>, Duration)> {
            self.calls.lock().unwrap().push(format!("wk {host}"));
            let found = self.well_known.get(host).cloned();
            async move { (found, Duration::from_secs(600)) }.boxed()
        }
        fn srv<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Option<((String, u16), Duration)>> {
            self.calls.lock().unwrap().push(format!("srv {name}"));
            let found = self.srv.get(name).cloned();
            async move { found.map(|t| (t, Duration::from_secs(300))) }.boxed()
        }
    }

    fn name(s: &str) -> &ServerName {
        s.try_into().unwrap()
    }

    #[tokio::test]
    async fn literals_and_explicit_ports_need_no_lookup() {
        let discovery = Discovery::new(Box::new(Fake::default()));
        let d = discovery.resolve(name("1.2.3.4")).await;
        assert_eq!(d.base_url(), "https://1.2.3.4:8448");
        let d = discovery.resolve(name("[::1]:9000")).await;
        assert_eq!(d.base_url(), "https://[::1]:9000");
        let d = discovery.resolve(name("localhost:8449")).await;
        assert_eq!((d.base_url(), d.connect_to), ("https://localhost:8449".to_owned(), None));
    }

    #[tokio::test]
    async fn well_known_delegation_then_srv_then_default() {
        let mut fake = Fake::default();
        fake.well_known.insert("example.org".into(), "matrix.example.org:443".into());
        fake.well_known.insert("srv.example".into(), "fed.srv.example".into());
        fake.srv.insert("_matrix-fed._tcp.fed.srv.example".into(), ("box.srv.example".into(), 8000));
        fake.srv.insert("_matrix._tcp.old.example".into(), ("legacy.old.example".into(), 8001));
        let discovery = Discovery::new(Box::new(fake));

        let d = discovery.resolve(name("example.org")).await;
        assert_eq!(d, Destination::direct("matrix.example.org", 443));

        // Delegated without a port: SRV of the delegated name; the certificate is the
        // delegated name's, the connection goes to the SRV target.
        let d = discovery.resolve(name("srv.example")).await;
        assert_eq!(d.base_url(), "https://fed.srv.example");
        assert_eq!(d.connect_to, Some(("box.srv.example".into(), 8000)));
        assert_eq!(discovery.srv_override("fed.srv.example"), Some(("box.srv.example".into(), 8000)));

        // No well-known: the deprecated SRV name is still honoured.
        let d = discovery.resolve(name("old.example")).await;
        assert_eq!(d.base_url(), "https://old.example");
        assert_eq!(d.connect_to, Some(("legacy.old.example".into(), 8001)));

        let d = discovery.resolve(name("plain.example")).await;
        assert_eq!(d, Destination::direct("plain.example", 8448));
    }

    #[tokio::test]
    async fn results_are_cached() {
        let fake = Fake::default();
        let calls = fake.calls.clone();
        let discovery = Discovery::new(Box::new(fake));
        discovery.resolve(name("plain.example")).await;
        let first = calls.lock().unwrap().clone();
        assert_eq!(first, ["wk plain.example", "srv _matrix-fed._tcp.plain.example", "srv _matrix._tcp.plain.example"]);
        discovery.resolve(name("plain.example")).await;
        assert_eq!(calls.lock().unwrap().len(), first.len(), "the second resolution is answered from the cache");
    }

    #[test]
    fn cache_control() {
        assert_eq!(well_known_ttl(None), Duration::from_secs(86400));
        assert_eq!(well_known_ttl(Some("public, max-age=3600")), Duration::from_secs(3600));
        assert_eq!(well_known_ttl(Some("max-age=999999")), Duration::from_secs(172800));
    }
}
