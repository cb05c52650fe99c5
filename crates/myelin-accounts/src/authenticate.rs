//! Turning an access token into the identity behind it.

use crate::Accounts;
use myelin_core::{
    Error, Result,
    util::{hash_token, now_ms},
};
use ruma::{OwnedDeviceId, OwnedUserId};
use std::time::{Duration, Instant};

/// Who made a request: a user, through one of their devices.
#[derive(Debug, Clone)]
pub struct Identity {
    pub user_id: OwnedUserId,
    pub device_id: OwnedDeviceId,
    pub is_admin: bool,
}

/// How long a resolved access token is trusted without asking the database again. Revocations
/// by this process empty the cache at once; one made by another process (the admin CLI, a
/// second server on the same PostgreSQL) takes effect within this time.
const TOKEN_CACHE_TTL: Duration = Duration::from_secs(2);
const TOKEN_CACHE_ENTRIES: usize = 10_000;

/// How often a device's last-seen IP and time are written at most.
const LAST_SEEN_INTERVAL: Duration = Duration::from_secs(60);

impl Accounts {
    /// Resolves an access token. Unknown → 401 `M_UNKNOWN_TOKEN`; expired → the same with
    /// `soft_logout: true`, so the client refreshes instead of logging out.
    pub async fn authenticate(&self, access_token: &str, client_ip: &str) -> Result<Identity> {
        let token_hash = hash_token(access_token);
        let cached = {
            let cache = self.token_cache.lock().unwrap_or_else(|e| e.into_inner());
            cache.get(&token_hash).filter(|(_, at)| at.elapsed() < TOKEN_CACHE_TTL).map(|(info, _)| info.clone())
        };
        let info = match cached {
            Some(info) => info,
            None => self
                .store
                .tokens()
                .lookup(&token_hash)
                .await?
                .ok_or_else(|| Error::unknown_token(false, "Unknown access token"))?,
        };
        if info.expires_ts.is_some_and(|expires| expires <= now_ms()) {
            return Err(Error::unknown_token(true, "Access token has expired"));
        }
        let mut info = info;
        if !info.used && info.refresh_token_hash.is_some() {
            self.store.tokens().mark_used(&token_hash, info.refresh_token_hash.as_deref()).await?;
            // Its predecessor in the refresh chain is gone now.
            self.forget_tokens();
            info.used = true;
        }
        {
            let mut cache = self.token_cache.lock().unwrap_or_else(|e| e.into_inner());
            if cache.len() >= TOKEN_CACHE_ENTRIES {
                cache.retain(|_, (_, at)| at.elapsed() < TOKEN_CACHE_TTL);
                if cache.len() >= TOKEN_CACHE_ENTRIES {
                    cache.clear();
                }
            }
            // Replaces an expired entry too: keeping its old time made every later request
            // with that token a database read.
            cache.insert(token_hash, (info.clone(), Instant::now()));
        }
        self.note_last_seen(&info.user_id, &info.device_id, client_ip).await;
        Ok(Identity {
            user_id: OwnedUserId::try_from(info.user_id).map_err(Error::internal)?,
            device_id: info.device_id.into(),
            is_admin: info.is_admin,
        })
    }

    /// Drops every cached token: called by whatever revokes tokens.
    pub(crate) fn forget_tokens(&self) {
        self.token_cache.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    async fn note_last_seen(&self, user_id: &str, device_id: &str, client_ip: &str) {
        let key = (user_id.to_owned(), device_id.to_owned());
        {
            let Ok(mut written) = self.last_seen_written.lock() else { return };
            let now = Instant::now();
            if written.get(&key).is_some_and(|at| now.duration_since(*at) < LAST_SEEN_INTERVAL) {
                return;
            }
            // Entries older than the interval carry no information: drop them now and then so
            // the map holds only recently active devices.
            if written.len() >= 1024 && written.len().is_power_of_two() {
                written.retain(|_, at| now.duration_since(*at) < LAST_SEEN_INTERVAL);
            }
            written.insert(key, now);
        }
        // Best effort: a failed last-seen write must not fail the request it rides on.
        if let Err(e) = self.store.users().touch_device(user_id, device_id, client_ip, now_ms()).await {
            tracing::warn!("recording last seen of {user_id}/{device_id}: {e}");
        }
    }
}
