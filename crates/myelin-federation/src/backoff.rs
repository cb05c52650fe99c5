//! Per-destination backoff: after a failure a destination is left alone for a while, longer
//! after each further failure. Kept in the database, so a restart does not hammer a server
//! that is down.

use myelin_core::util::now_ms;
use myelin_store::{BackoffRow, Store};
use std::{collections::HashMap, sync::Mutex};

/// The wait after the first failure; it doubles with each further one.
const FIRST_WAIT_MS: i64 = 10_000;
/// The longest wait between attempts.
const MAX_WAIT_MS: i64 = 3_600_000;
/// A destination whose wait ended this long ago is forgotten.
const STALE_AFTER_MS: i64 = 24 * 3_600_000;

pub struct Backoff {
    store: Store,
    state: Mutex<HashMap<String, BackoffRow>>,
}

/// How long to wait after `failures` failures in a row.
pub fn wait_after(failures: i64) -> i64 {
    let doublings = (failures - 1).clamp(0, 30) as u32;
    FIRST_WAIT_MS.saturating_mul(1_i64 << doublings).min(MAX_WAIT_MS)
}

impl Backoff {
    pub async fn load(store: Store) -> myelin_core::Result<Self> {
        let rows = store.federation().backoffs().await?;
        let state = rows.into_iter().map(|row| (row.destination.clone(), row)).collect();
        Ok(Backoff { store, state: Mutex::new(state) })
    }

    /// When the destination may be tried again, if not now.
    pub fn retry_after(&self, destination: &str) -> Option<(i64, String)> {
        let state = self.state.lock().expect("backoff lock");
        state
            .get(destination)
            .filter(|row| row.retry_after_ts > now_ms())
            .map(|row| (row.retry_after_ts, row.last_error.clone()))
    }

    pub async fn failed(&self, destination: &str, error: &str) {
        let row = {
            let mut state = self.state.lock().expect("backoff lock");
            // Failures of requests that were already under way count once per wait: a burst
            // of parallel requests hitting one outage must not jump to the longest wait.
            if state.get(destination).is_some_and(|row| row.retry_after_ts > now_ms()) {
                return;
            }
            let failures = state.get(destination).map_or(0, |row| row.failures) + 1;
            let row = BackoffRow {
                destination: destination.to_owned(),
                failures,
                retry_after_ts: now_ms() + wait_after(failures),
                last_error: error.chars().take(500).collect(),
            };
            state.insert(destination.to_owned(), row.clone());
            row
        };
        tracing::info!(%destination, failures = row.failures, retry_in_ms = row.retry_after_ts - now_ms(), %error, "federation destination failed; backing off");
        if let Err(e) = self.store.federation().set_backoff(&row).await {
            tracing::warn!("storing the backoff of {destination}: {e}");
        }
    }

    /// Forgets destinations whose wait ended over a day ago: a server name that failed once and
    /// was never asked for again (a typo, a name made up by someone probing) is not kept.
    pub async fn purge_stale(&self) -> myelin_core::Result<u64> {
        let before = now_ms() - STALE_AFTER_MS;
        self.state.lock().expect("backoff lock").retain(|_, row| row.retry_after_ts >= before);
        Ok(self.store.federation().purge_backoffs(before).await?)
    }

    pub async fn succeeded(&self, destination: &str) {
        let was_failing = self.state.lock().expect("backoff lock").remove(destination).is_some();
        if was_failing {
            tracing::info!(%destination, "federation destination answers again");
            if let Err(e) = self.store.federation().clear_backoff(destination).await {
                tracing::warn!("clearing the backoff of {destination}: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::wait_after;

    #[test]
    fn waits_double_up_to_an_hour() {
        assert_eq!(wait_after(1), 10_000);
        assert_eq!(wait_after(2), 20_000);
        assert_eq!(wait_after(4), 80_000);
        assert_eq!(wait_after(12), 3_600_000);
        assert_eq!(wait_after(1000), 3_600_000);
    }
}
