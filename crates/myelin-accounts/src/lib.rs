//! Accounts: registration, login and sessions (access and refresh tokens), User-Interactive
//! Auth, devices, profiles and registration tokens.

mod account;
mod authenticate;
mod devices;
mod login;
mod openid;
mod password;
mod profile;
mod register;
mod registration_tokens;
mod uia;
mod user_id;

pub use authenticate::Identity;
pub use login::NewSession;
pub use openid::OPENID_TOKEN_LIFETIME;
pub use register::{Registration, RegistrationOutcome};
pub use uia::{UiaDone, UiaFlows};
pub use user_id::parse_local_user_id;

use myelin_core::Config;
use myelin_store::Store;
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Instant,
};

/// The accounts service. One per server, shared by `Arc`.
pub struct Accounts {
    store: Store,
    config: Arc<Config>,
    /// When each device's last-seen was last written, so a busy client costs one write a minute
    /// rather than one per request.
    last_seen_written: Mutex<HashMap<(String, String), Instant>>,
    /// Recently resolved access tokens by hash (see `authenticate`), emptied by every
    /// revocation this process makes.
    token_cache: Mutex<HashMap<String, (myelin_store::AccessTokenInfo, Instant)>>,
}

impl Accounts {
    pub fn new(store: Store, config: Arc<Config>) -> Self {
        Accounts {
            store,
            config,
            last_seen_written: Mutex::new(HashMap::new()),
            token_cache: Mutex::new(HashMap::new()),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }
}
