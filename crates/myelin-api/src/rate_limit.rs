//! Token-bucket rate limits (governor's GCRA) per IP address and per user, on login and
//! registration.

use governor::{
    DefaultKeyedRateLimiter, Quota,
    clock::{Clock, DefaultClock},
};
use myelin_core::{
    Error,
    config::{RateLimit, RateLimitsConfig},
};
use std::{
    num::NonZeroU32,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

pub struct RateLimits {
    enabled: bool,
    login_by_ip: DefaultKeyedRateLimiter<String>,
    login_by_user: DefaultKeyedRateLimiter<String>,
    registration_by_ip: DefaultKeyedRateLimiter<String>,
    checks: AtomicU64,
}

fn limiter(limit: RateLimit) -> DefaultKeyedRateLimiter<String> {
    // Config validation guarantees a positive rate and burst; fall back to 1/s if not.
    let period = Duration::from_secs_f64(1.0 / limit.per_second.max(f64::MIN_POSITIVE)).max(Duration::from_nanos(1));
    let quota = Quota::with_period(period)
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(NonZeroU32::new(limit.burst).unwrap_or(NonZeroU32::MIN));
    DefaultKeyedRateLimiter::keyed(quota)
}

impl RateLimits {
    pub fn new(config: &RateLimitsConfig) -> Self {
        RateLimits {
            enabled: config.enabled,
            login_by_ip: limiter(config.login),
            login_by_user: limiter(config.login),
            registration_by_ip: limiter(config.registration),
            checks: AtomicU64::new(0),
        }
    }

    /// A login attempt from `ip`, for `user` when the request names one.
    pub fn check_login(&self, ip: &str, user: Option<&str>) -> Result<(), Error> {
        self.check(&self.login_by_ip, ip)?;
        match user {
            Some(user) => self.check(&self.login_by_user, &user.to_lowercase()),
            None => Ok(()),
        }
    }

    pub fn check_registration(&self, ip: &str) -> Result<(), Error> {
        self.check(&self.registration_by_ip, ip)
    }

    fn check(&self, limiter: &DefaultKeyedRateLimiter<String>, key: &str) -> Result<(), Error> {
        if !self.enabled {
            return Ok(());
        }
        // Forget idle keys now and then, so memory follows the active clients only.
        if self.checks.fetch_add(1, Ordering::Relaxed) % 1024 == 1023 {
            for l in [&self.login_by_ip, &self.login_by_user, &self.registration_by_ip] {
                l.retain_recent();
            }
        }
        limiter
            .check_key(&key.to_owned())
            .map_err(|not_until| Error::limit_exceeded(not_until.wait_time_from(DefaultClock::default().now())))
    }
}
