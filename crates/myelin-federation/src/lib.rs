//! The federation transport of Myelin: this server's signing key and its publication, other
//! servers' keys, X-Matrix request signing and verification, server discovery, TLS and the
//! outbound client with its address policy and per-destination backoff. The rooms and media
//! services send through it; the api crate's federation routes verify through it.

pub mod backoff;
pub mod client;
pub mod discovery;
mod ip_policy;
pub mod sender;
pub mod server_keys;
pub mod signing_key;
pub mod tls;

pub use client::{FederationClient, FederationError};
pub use ip_policy::IpPolicy;
pub use sender::Sender;
pub use server_keys::ServerKeys;
pub use signing_key::SigningKey;

use myelin_core::{Config, Result};
use myelin_store::Store;
use std::{sync::Arc, time::Duration};

pub struct Federation {
    pub client: Arc<FederationClient>,
    pub keys: ServerKeys,
    /// The outbound queue of PDUs and EDUs.
    pub sender: Arc<Sender>,
    key: Arc<SigningKey>,
}

impl Federation {
    /// Loads (or generates) the signing key and the persisted backoff; builds the client.
    pub async fn new(store: Store, config: &Config) -> Result<Self> {
        let key = Arc::new(SigningKey::load_or_generate(&config.data_dir)?);
        let backoff = backoff::Backoff::load(store.clone()).await?;
        let client = Arc::new(FederationClient::new(config, key.clone(), backoff)?);
        let trusted = config
            .federation
            .trusted_key_servers
            .iter()
            .filter_map(|s| ruma::OwnedServerName::try_from(s.as_str()).ok())
            .collect();
        let keys = ServerKeys::new(
            store.clone(),
            config.server_name.clone(),
            key.clone(),
            Duration::from_secs(config.federation.key_validity_secs),
            trusted,
            client.clone(),
        )
        .await?;
        let sender = Sender::new(store.clone(), client.clone(), config.server_name.clone());
        Ok(Federation { client, keys, sender, key })
    }

    pub fn signing_key(&self) -> Arc<SigningKey> {
        self.key.clone()
    }
}

/// `myelin keys rotate`: a new signing key in `data_dir`; the old one is kept in the database
/// and published as an old verify key, so what it signed stays verifiable.
pub async fn rotate_signing_key(store: &Store, config: &Config) -> Result<(String, String)> {
    // Recorded before it is replaced: a failure then leaves the current key in place.
    let old = SigningKey::load_or_generate(&config.data_dir)?;
    store
        .federation()
        .add_old_signing_key(&myelin_store::OldSigningKeyRow {
            key_id: old.key_id(),
            public_key: old.public_key_base64(),
            expired_ts: myelin_core::util::now_ms(),
        })
        .await?;
    SigningKey::rotate(&config.data_dir)?;
    let new = SigningKey::load_or_generate(&config.data_dir)?;
    Ok((old.key_id(), new.key_id()))
}
