//! Myelin's configuration: the structs with their defaults, and loading them from TOML and the
//! environment (`MYELIN_` + the key path in capitals, `__` between levels).

use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use ruma::OwnedServerName;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

/// The whole configuration of a Myelin server.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The server name: the domain part of every user ID (`@alice:SERVER_NAME`) and room alias.
    /// It cannot be changed once users exist.
    #[schemars(with = "String")]
    pub server_name: OwnedServerName,
    /// Directory for the SQLite database, media, the signing key (`signing.key`: back it up;
    /// other servers know this server by it) and other server state. Created if missing.
    pub data_dir: PathBuf,
    /// Address of the client API listener (plain HTTP: put a TLS reverse proxy in front of it).
    pub listen: SocketAddr,
    /// The URL clients reach this server at, e.g. "https://matrix.example.org". Advertised in
    /// `/.well-known/matrix/client`; when unset that endpoint answers 404.
    pub public_baseurl: Option<String>,
    /// Take the client's IP address from the first `X-Forwarded-For` entry (for rate limits and
    /// device last-seen). Turn on only behind a reverse proxy that sets that header.
    pub trust_x_forwarded_for: bool,
    /// Logging.
    pub log: LogConfig,
    /// The database.
    pub database: DatabaseConfig,
    /// Registration of new accounts over the client API.
    pub registration: RegistrationConfig,
    /// Access tokens and sessions.
    pub auth: AuthConfig,
    /// Rate limits (token buckets per user and per IP address).
    pub rate_limits: RateLimitsConfig,
    /// Server discovery through `/.well-known/matrix/server`.
    pub well_known: WellKnownConfig,
    /// Request limits.
    pub limits: LimitsConfig,
    /// The content repository (media).
    pub media: MediaConfig,
    /// The TURN server clients use for VoIP calls (`/voip/turnServer`).
    pub turn: TurnConfig,
    /// Federation: talking to other homeservers.
    pub federation: FederationConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            server_name: "localhost".try_into().expect("a valid server name"),
            data_dir: PathBuf::from("./data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 8008)),
            public_baseurl: None,
            trust_x_forwarded_for: false,
            log: LogConfig::default(),
            database: DatabaseConfig::default(),
            registration: RegistrationConfig::default(),
            auth: AuthConfig::default(),
            rate_limits: RateLimitsConfig::default(),
            well_known: WellKnownConfig::default(),
            limits: LimitsConfig::default(),
            media: MediaConfig::default(),
            turn: TurnConfig::default(),
            federation: FederationConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// Log filter in `tracing` syntax ("info", "myelin=debug,info" …). `RUST_LOG`, when set, wins.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { level: "info".into() }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// "sqlite://PATH" or "postgres://USER@HOST/DB". Unset: SQLite in `data_dir/myelin.db`.
    pub url: Option<String>,
    /// Largest number of pooled connections (PostgreSQL; SQLite uses one writer and a few readers).
    pub max_connections: u32,
    /// SQLite durability. "normal": with WAL, every acknowledged write survives a crash of the
    /// process; a power cut or OS crash may lose the last moments. "full": fsync on every commit.
    pub sqlite_synchronous: SqliteSynchronous,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig { url: None, max_connections: 16, sqlite_synchronous: SqliteSynchronous::Normal }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SqliteSynchronous {
    Normal,
    Full,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RegistrationConfig {
    /// Whether anyone may register an account over the client API. The admin CLI
    /// (`myelin user create`) works either way.
    pub enabled: bool,
    /// Require a registration token (`m.login.registration_token`) to register.
    pub require_token: bool,
    /// Registration tokens that never run out. Tokens with limits are managed with
    /// `myelin registration-token create|list|delete`.
    pub tokens: Vec<String>,
    /// Policies a new user must accept (`m.login.terms`), as
    /// `[[registration.terms]]` tables with `id`, `version`, `name`, `url` and `lang`.
    pub terms: Vec<TermsPolicy>,
}

/// One policy document shown at registration.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TermsPolicy {
    /// Identifier of the policy, e.g. "privacy_policy".
    pub id: String,
    /// Version of the document; a new version must be accepted again.
    pub version: String,
    /// Human-readable name, e.g. "Privacy Policy".
    pub name: String,
    /// Where the document can be read.
    pub url: String,
    /// Language of `name` and `url`.
    #[serde(default = "default_lang")]
    pub lang: String,
}

fn default_lang() -> String {
    "en".into()
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Accept access tokens in the `access_token` query parameter (deprecated in Matrix v1.11;
    /// the `Authorization` header is always accepted).
    pub allow_query_string_token: bool,
    /// Lifetime in seconds of an access token issued with a refresh token.
    pub refreshable_access_token_lifetime_secs: u64,
    /// Shortest password accepted at registration and password change.
    pub password_min_length: usize,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            allow_query_string_token: true,
            refreshable_access_token_lifetime_secs: 300,
            password_min_length: 8,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitsConfig {
    /// Turn every rate limit on or off.
    pub enabled: bool,
    /// Login attempts, per IP address and per user being logged in.
    pub login: RateLimit,
    /// Registration attempts, per IP address.
    pub registration: RateLimit,
}

impl Default for RateLimitsConfig {
    fn default() -> Self {
        RateLimitsConfig {
            enabled: true,
            login: RateLimit { per_second: 0.17, burst: 5 },
            registration: RateLimit { per_second: 0.17, burst: 5 },
        }
    }
}

/// A token bucket: `burst` requests at once, refilled at `per_second`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Sustained requests per second.
    pub per_second: f64,
    /// Requests allowed at once before the sustained rate applies.
    pub burst: u32,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct WellKnownConfig {
    /// Delegated federation address ("matrix.example.org:443") for
    /// `/.well-known/matrix/server`; when unset that endpoint answers 404.
    pub server: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct TurnConfig {
    /// TURN URIs handed to clients, e.g. ["turns:turn.example.org:5349?transport=tcp",
    /// "turn:turn.example.org:3478?transport=udp"]. Empty: no TURN server (`{}` is answered).
    pub uris: Vec<String>,
    /// The secret shared with the TURN server (coturn's `static-auth-secret` with
    /// `use-auth-secret`): each user gets a username "<expiry>:<user ID>" and its HMAC-SHA1 as
    /// password. Takes precedence over `username`/`password`.
    pub shared_secret: Option<String>,
    /// A fixed username for every user (when there is no shared secret).
    pub username: Option<String>,
    /// The password going with `username`.
    pub password: Option<String>,
    /// How long credentials made from the shared secret stay valid, in seconds.
    pub user_lifetime_secs: u64,
}

impl Default for TurnConfig {
    fn default() -> Self {
        TurnConfig {
            uris: Vec::new(),
            shared_secret: None,
            username: None,
            password: None,
            user_lifetime_secs: 24 * 60 * 60,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest JSON request body in bytes; larger ones get 413 M_TOO_LARGE.
    pub max_json_body_size: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig { max_json_body_size: 8 * 1024 * 1024 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct MediaConfig {
    /// Where media files are stored. Unset: `data_dir/media`.
    pub path: Option<PathBuf>,
    /// Largest upload in bytes, reported to clients as `m.upload.size`.
    pub max_upload_size: u64,
    /// Most bytes one user may upload in all (403 M_FORBIDDEN beyond). Unset: no quota.
    pub max_bytes_per_user: Option<u64>,
    /// The freeze of unauthenticated media (Matrix v1.11): media uploaded at or after it is
    /// served only by the authenticated `/_matrix/client/v1/media/*` endpoints. `true`: from the
    /// first start of this server (that instant is stored); `false`: no freeze for new uploads;
    /// or an RFC 3339 instant such as "2024-09-01T00:00:00Z". Media frozen once stays frozen.
    pub freeze_unauthenticated: FreezeSetting,
    /// Seconds an ID from `POST /_matrix/media/v1/create` waits for its upload.
    pub unused_expiry_secs: u64,
    /// Most IDs from `/create` one user may have waiting for an upload (429 beyond).
    pub max_pending_uploads: u32,
    /// Largest image (width × height) a thumbnail is made from; larger ones get 413 M_TOO_LARGE.
    pub max_image_pixels: u64,
    /// The thumbnail sizes made; a request gets the smallest that is at least as large.
    pub thumbnail_sizes: Vec<ThumbnailSize>,
    /// URL previews (`/preview_url`).
    pub url_preview: UrlPreviewConfig,
    /// Server names whose media is never fetched (requests for it answer 404).
    pub prevent_downloads_from: Vec<String>,
    /// Flush each new upload to disk (fdatasync of the file and its directory) before the
    /// upload is answered. Unset: as durable as the database row that points at the file —
    /// flushed with PostgreSQL or `database.sqlite_synchronous = "full"`, which survive a power
    /// cut; not with SQLite's default "normal", which survives a crash of the server (written
    /// files do too) but may lose its last moments to a power cut. `true` or `false` decide.
    pub sync_uploads: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct UrlPreviewConfig {
    /// Fetch web pages for previews. Off by default: the server then makes requests that
    /// users choose; the address ranges below keep those away from private networks.
    pub enabled: bool,
    /// Address ranges (CIDR) never fetched from, checked after DNS resolution, at connect
    /// time and on every redirect. IPv4-mapped IPv6 addresses count as their IPv4 address.
    pub ip_range_denylist: Vec<String>,
    /// Ranges fetched from even when the denylist covers them.
    pub ip_range_allowlist: Vec<String>,
    /// Largest page or image downloaded, in bytes.
    pub max_size: u64,
    /// Seconds a fetch (all redirects included) may take.
    pub timeout_secs: u64,
    /// Seconds a preview is kept and reused.
    pub cache_secs: u64,
}

impl Default for UrlPreviewConfig {
    fn default() -> Self {
        let deny = [
            "0.0.0.0/8",
            "10.0.0.0/8",
            "100.64.0.0/10",
            "127.0.0.0/8",
            "169.254.0.0/16",
            "172.16.0.0/12",
            "192.0.0.0/24",
            "192.0.2.0/24",
            "192.88.99.0/24",
            "192.168.0.0/16",
            "198.18.0.0/15",
            "198.51.100.0/24",
            "203.0.113.0/24",
            "224.0.0.0/4",
            "240.0.0.0/4",
            "255.255.255.255/32",
            "::/128",
            "::1/128",
            "64:ff9b::/96",
            "100::/64",
            "2001:db8::/32",
            "fc00::/7",
            "fe80::/10",
            "ff00::/8",
        ];
        UrlPreviewConfig {
            enabled: false,
            ip_range_denylist: deny.iter().map(|r| (*r).to_owned()).collect(),
            ip_range_allowlist: Vec::new(),
            max_size: 10 * 1024 * 1024,
            timeout_secs: 10,
            cache_secs: 3600,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct FederationConfig {
    /// Open the federation listener and talk to other servers at all.
    pub enabled: bool,
    /// Address of the federation listener (TLS). Other servers reach it at the server name's
    /// port (8448 unless delegated through `/.well-known/matrix/server` or SRV).
    pub listen: SocketAddr,
    /// TLS of the federation listener and of requests to other servers.
    pub tls: FederationTlsConfig,
    /// Notary servers asked for other servers' keys when those cannot be fetched directly.
    /// Empty: keys are only fetched from the servers themselves.
    pub trusted_key_servers: Vec<String>,
    /// When not empty: the only server names this server talks to.
    pub domain_allowlist: Vec<String>,
    /// Server names this server never talks to, inbound or outbound.
    pub domain_denylist: Vec<String>,
    /// Address ranges (CIDR) never connected to, checked on every resolved address.
    /// Default: the private, loopback and link-local ranges (as for URL previews).
    pub ip_range_denylist: Vec<String>,
    /// Ranges connected to even when the denylist covers them, e.g. ["127.0.0.0/8"] for a
    /// test setup on one machine.
    pub ip_range_allowlist: Vec<String>,
    /// Seconds an outbound request (connecting included) may take.
    pub request_timeout_secs: u64,
    /// Seconds the published server keys are valid for (`valid_until_ts`).
    pub key_validity_secs: u64,
}

impl Default for FederationConfig {
    fn default() -> Self {
        FederationConfig {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 8448)),
            tls: FederationTlsConfig::default(),
            trusted_key_servers: Vec::new(),
            domain_allowlist: Vec::new(),
            domain_denylist: Vec::new(),
            ip_range_denylist: UrlPreviewConfig::default().ip_range_denylist,
            ip_range_allowlist: Vec::new(),
            request_timeout_secs: 30,
            key_validity_secs: 7 * 24 * 3600,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct FederationTlsConfig {
    /// PEM certificate chain of the federation listener. With `private_key` unset too, a
    /// self-signed pair is generated in `data_dir` on first start (for development: other
    /// servers do not trust it).
    pub certificate: Option<PathBuf>,
    /// PEM private key of the federation listener.
    pub private_key: Option<PathBuf>,
    /// PEM file of certificate authorities trusted for outbound requests besides the system's.
    pub extra_ca_file: Option<PathBuf>,
    /// INSECURE, for tests only: accept any certificate from other servers.
    pub insecure_accept_any_certificate_for_tests: bool,
}

/// One thumbnail size, as `{ width = 320, height = 240, method = "scale" }`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ThumbnailSize {
    pub width: u32,
    pub height: u32,
    /// "crop" or "scale".
    pub method: ThumbnailMethod,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ThumbnailMethod {
    Crop,
    Scale,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            path: None,
            max_upload_size: 50 * 1024 * 1024,
            max_bytes_per_user: None,
            freeze_unauthenticated: FreezeSetting::Enabled(true),
            unused_expiry_secs: 24 * 3600,
            max_pending_uploads: 5,
            max_image_pixels: 32_000_000,
            // The sizes the spec recommends.
            url_preview: UrlPreviewConfig::default(),
            prevent_downloads_from: Vec::new(),
            sync_uploads: None,
            thumbnail_sizes: vec![
                ThumbnailSize { width: 32, height: 32, method: ThumbnailMethod::Crop },
                ThumbnailSize { width: 96, height: 96, method: ThumbnailMethod::Crop },
                ThumbnailSize { width: 320, height: 240, method: ThumbnailMethod::Scale },
                ThumbnailSize { width: 640, height: 480, method: ThumbnailMethod::Scale },
                ThumbnailSize { width: 800, height: 600, method: ThumbnailMethod::Scale },
            ],
        }
    }
}

/// `true`, `false`, or the RFC 3339 instant the freeze starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum FreezeSetting {
    Enabled(bool),
    Since(String),
}

impl FreezeSetting {
    /// The configured instant in milliseconds, when one is given.
    pub fn instant_ms(&self) -> Option<Result<i64, String>> {
        match self {
            FreezeSetting::Since(text) => Some(
                humantime::parse_rfc3339_weak(text.trim_end_matches('Z'))
                    .map_err(|e| format!("media.freeze_unauthenticated: \"{text}\" is not an RFC 3339 instant: {e}"))
                    .and_then(|t| {
                        t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).map_err(|e| e.to_string())
                    }),
            ),
            FreezeSetting::Enabled(_) => None,
        }
    }
}

impl Config {
    /// The directory of the media blob store.
    pub fn media_path(&self) -> PathBuf {
        self.media.path.clone().unwrap_or_else(|| self.data_dir.join("media"))
    }

    /// Loads the configuration: defaults, then the TOML file at `path` (or `./myelin.toml` when
    /// present), then `MYELIN_…` environment variables. The message of the error says exactly
    /// which key is wrong and where it came from.
    pub fn load(path: Option<&Path>) -> Result<Config, String> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        match path {
            Some(path) => {
                if !path.is_file() {
                    return Err(format!("config file {} does not exist", path.display()));
                }
                figment = figment.merge(Toml::file_exact(path));
            }
            None if Path::new("myelin.toml").is_file() => {
                figment = figment.merge(Toml::file_exact("myelin.toml"));
            }
            None => {}
        }
        figment = figment.merge(env_provider());
        let config: Config =
            figment.extract().map_err(|e| e.into_iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what the types alone cannot.
    pub fn validate(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        if let Some(url) = &self.database.url
            && !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            problems.push(format!("database.url: \"{url}\" is neither a sqlite: nor a postgres:// URL"));
        }
        if self.database.max_connections == 0 {
            problems.push("database.max_connections: must be at least 1".to_owned());
        }
        for (name, limit) in [("login", self.rate_limits.login), ("registration", self.rate_limits.registration)] {
            if !(limit.per_second > 0.0 && limit.per_second.is_finite()) || limit.burst == 0 {
                problems.push(format!("rate_limits.{name}: per_second must be a positive number and burst at least 1"));
            }
        }
        if let Some(url) = &self.public_baseurl
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            problems.push(format!("public_baseurl: \"{url}\" is not an http(s) URL"));
        }
        if let Some(Err(e)) = self.media.freeze_unauthenticated.instant_ms() {
            problems.push(e);
        }
        if self.media.thumbnail_sizes.iter().any(|s| s.width == 0 || s.height == 0 || s.width > 4096 || s.height > 4096)
        {
            problems.push("media.thumbnail_sizes: width and height must be between 1 and 4096".to_owned());
        }
        let preview = &self.media.url_preview;
        for (name, ranges) in
            [("ip_range_denylist", &preview.ip_range_denylist), ("ip_range_allowlist", &preview.ip_range_allowlist)]
        {
            for range in ranges {
                if range.parse::<std::net::IpAddr>().is_err() && !is_cidr(range) {
                    problems.push(format!("media.url_preview.{name}: \"{range}\" is not an address or CIDR range"));
                }
            }
        }
        let federation = &self.federation;
        for (name, ranges) in [
            ("ip_range_denylist", &federation.ip_range_denylist),
            ("ip_range_allowlist", &federation.ip_range_allowlist),
        ] {
            for range in ranges {
                if range.parse::<std::net::IpAddr>().is_err() && !is_cidr(range) {
                    problems.push(format!("federation.{name}: \"{range}\" is not an address or CIDR range"));
                }
            }
        }
        for (name, servers) in [
            ("trusted_key_servers", &federation.trusted_key_servers),
            ("domain_allowlist", &federation.domain_allowlist),
            ("domain_denylist", &federation.domain_denylist),
            ("media.prevent_downloads_from", &self.media.prevent_downloads_from),
        ] {
            for server in servers {
                if <&ruma::ServerName>::try_from(server.as_str()).is_err() {
                    let key = if name.contains('.') { name.to_owned() } else { format!("federation.{name}") };
                    problems.push(format!("{key}: \"{server}\" is not a server name"));
                }
            }
        }
        if federation.tls.certificate.is_some() != federation.tls.private_key.is_some() {
            problems.push("federation.tls: set both certificate and private_key, or neither".to_owned());
        }
        if federation.request_timeout_secs == 0 || federation.key_validity_secs < 3600 {
            problems.push(
                "federation: request_timeout_secs must be at least 1 and key_validity_secs at least 3600".to_owned(),
            );
        }
        if self.media.max_upload_size == 0 {
            problems.push("media.max_upload_size: must be at least 1".to_owned());
        }
        if let Some(server) = &self.well_known.server
            && <&ruma::ServerName>::try_from(server.as_str()).is_err()
        {
            problems.push(format!("well_known.server: \"{server}\" is not a server name (host or host:port)"));
        }
        let mut ids = std::collections::HashSet::new();
        for policy in &self.registration.terms {
            if !ids.insert(&policy.id) {
                problems.push(format!("registration.terms: policy id \"{}\" appears twice", policy.id));
            }
        }
        if problems.is_empty() { Ok(()) } else { Err(problems.join("\n")) }
    }

    /// Whether uploads are flushed to disk before they are answered (`media.sync_uploads`).
    pub fn sync_uploads(&self) -> bool {
        self.media.sync_uploads.unwrap_or_else(|| {
            !self.database_url().starts_with("sqlite:") || self.database.sqlite_synchronous == SqliteSynchronous::Full
        })
    }

    /// The database URL, with the embedded default filled in.
    pub fn database_url(&self) -> String {
        match &self.database.url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.data_dir.join("myelin.db").display()),
        }
    }
}

/// Whether `text` looks like `ADDRESS/PREFIX` with a prefix that fits the address family.
fn is_cidr(text: &str) -> bool {
    let Some((address, prefix)) = text.split_once('/') else { return false };
    match (address.parse::<std::net::IpAddr>(), prefix.parse::<u8>()) {
        (Ok(std::net::IpAddr::V4(_)), Ok(p)) => p <= 32,
        (Ok(std::net::IpAddr::V6(_)), Ok(p)) => p <= 128,
        _ => false,
    }
}

/// `MYELIN_A__B=v` sets `a.b`. Only variables naming a real top-level key are read, so that
/// unrelated variables with the same prefix (`MYELIN_BIN` in a test script) are not errors,
/// while a typo below a known key still is.
fn env_provider() -> Env {
    let top_level: Vec<String> = match serde_json::to_value(Config::default()) {
        Ok(serde_json::Value::Object(map)) => map.keys().cloned().collect(),
        _ => Vec::new(),
    };
    let mut keys = top_level;
    // Optional top-level keys are absent from the serialized defaults.
    keys.push("public_baseurl".into());
    Env::prefixed("MYELIN_").split("__").filter(move |key| {
        // Figment hands the key over as written (upper case); it lower-cases it afterwards.
        let first = key.as_str().split('.').next().unwrap_or_default();
        keys.iter().any(|k| k.eq_ignore_ascii_case(first))
    })
}

#[cfg(test)]
// figment's `Jail` closures return its large error type by design.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use figment::Jail;

    #[test]
    fn defaults_without_a_file() {
        Jail::expect_with(|_jail| {
            let config = Config::load(None).expect("defaults load");
            assert_eq!(config.server_name.as_str(), "localhost");
            assert_eq!(config.listen.to_string(), "127.0.0.1:8008");
            assert_eq!(config.data_dir, PathBuf::from("./data"));
            assert!(!config.registration.enabled);
            assert!(config.rate_limits.enabled);
            assert_eq!(config.database_url(), "sqlite://./data/myelin.db");
            Ok(())
        });
    }

    #[test]
    fn environment_overrides_file() {
        Jail::expect_with(|jail| {
            jail.create_file("myelin.toml", "server_name = \"example.org\"\nlisten = \"127.0.0.1:1\"\n")?;
            jail.set_env("MYELIN_LISTEN", "127.0.0.1:9000");
            jail.set_env("MYELIN_REGISTRATION__ENABLED", "true");
            jail.set_env("MYELIN_BIN", "/unrelated");
            let config = Config::load(None).expect("loads");
            assert_eq!(config.server_name.as_str(), "example.org");
            assert_eq!(config.listen.to_string(), "127.0.0.1:9000");
            assert!(config.registration.enabled);
            Ok(())
        });
    }

    #[test]
    fn errors_name_the_key() {
        Jail::expect_with(|jail| {
            jail.create_file("bad.toml", "listen = \"nowhere\"\n[registration]\nenabeld = true\n")?;
            let err = Config::load(Some(Path::new("bad.toml"))).unwrap_err();
            assert!(err.contains("listen"), "{err}");
            let err2 = {
                jail.create_file("bad2.toml", "[registration]\nenabeld = true\n")?;
                Config::load(Some(Path::new("bad2.toml"))).unwrap_err()
            };
            assert!(err2.contains("enabeld"), "{err2}");
            jail.set_env("MYELIN_DATABASE__URL", "mysql://x");
            let err3 = Config::load(None).unwrap_err();
            assert!(err3.contains("database.url"), "{err3}");
            Ok(())
        });
    }

    #[test]
    fn media_freeze_setting() {
        Jail::expect_with(|jail| {
            assert_eq!(Config::load(None).unwrap().media.freeze_unauthenticated, FreezeSetting::Enabled(true));
            jail.set_env("MYELIN_MEDIA__FREEZE_UNAUTHENTICATED", "false");
            assert_eq!(Config::load(None).unwrap().media.freeze_unauthenticated, FreezeSetting::Enabled(false));
            jail.set_env("MYELIN_MEDIA__FREEZE_UNAUTHENTICATED", "2024-09-01T00:00:00Z");
            let setting = Config::load(None).unwrap().media.freeze_unauthenticated;
            assert_eq!(setting.instant_ms(), Some(Ok(1_725_148_800_000)));
            jail.set_env("MYELIN_MEDIA__FREEZE_UNAUTHENTICATED", "next tuesday");
            assert!(Config::load(None).unwrap_err().contains("media.freeze_unauthenticated"));
            Ok(())
        });
    }

    #[test]
    fn bad_server_name_is_refused() {
        Jail::expect_with(|jail| {
            jail.create_file("myelin.toml", "server_name = \"not a name\"\n")?;
            assert!(Config::load(None).unwrap_err().contains("server_name"));
            Ok(())
        });
    }
}
