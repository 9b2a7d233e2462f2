//! Retries of transient failures (S3 5xx/timeouts, broker produce errors): the shared `[retry]`
//! section, capped exponential backoff with full jitter, and the [`Retrier`] that reports a
//! dependency degraded while it keeps failing.
//!
//! Transient failures are retried without limit: a good event is never dead-lettered because a
//! dependency was down. After `attempts_before_degraded` failures of one request the service
//! reports itself degraded (`/readyz` 503) until that request succeeds or is abandoned.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::millis;
use crate::shutdown::Shutdown;
use crate::telemetry::{self, Health};

/// Retry policy (`[retry]`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// First backoff (`initial_backoff_ms`).
    #[serde(rename = "initial_backoff_ms", with = "millis")]
    pub initial_backoff: Duration,
    /// Cap of the exponential backoff (`max_backoff_ms`).
    #[serde(rename = "max_backoff_ms", with = "millis")]
    pub max_backoff: Duration,
    /// After this many failed attempts of one request the dependency is considered down: the
    /// event is *not* dead-lettered, retrying continues at the capped backoff, and readiness
    /// drops until it recovers.
    pub attempts_before_degraded: u32,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(5_000),
            attempts_before_degraded: 5,
        }
    }
}

/// Retry state of one request to a dependency (S3, the broker).
pub struct Retrier {
    dependency: &'static str,
    cfg: RetryConfig,
    health: Arc<Health>,
    attempt: u32,
    degraded: bool,
}

impl Retrier {
    /// A fresh request to `dependency` (the `dependency` label of `autotag_retries_total`).
    pub fn new(dependency: &'static str, cfg: RetryConfig, health: Arc<Health>) -> Self {
        Self { dependency, cfg, health, attempt: 0, degraded: false }
    }

    /// Record a transient failure and wait before the next attempt. Returns false when the
    /// shutdown deadline abandoned the request.
    pub async fn failed(&mut self, error: String, shutdown: &mut Shutdown) -> bool {
        self.attempt += 1;
        metrics::counter!(telemetry::RETRIES, "dependency" => self.dependency).increment(1);
        if self.attempt >= self.cfg.attempts_before_degraded && !self.degraded {
            self.degraded = true;
            self.health.set_degraded(true);
            tracing::warn!(dependency = self.dependency, attempts = self.attempt, %error,
                "dependency keeps failing; retrying until it recovers");
        } else {
            tracing::debug!(dependency = self.dependency, attempt = self.attempt, %error, "transient failure; retrying");
        }
        let wait = backoff(self.attempt - 1, self.cfg.initial_backoff, self.cfg.max_backoff);
        shutdown.sleep(wait).await
    }

    /// Attempts so far.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

impl Drop for Retrier {
    /// Success, permanent failure or abandonment: either way this request no longer holds the
    /// service degraded.
    fn drop(&mut self) {
        if self.degraded {
            self.health.set_degraded(false);
            tracing::info!(dependency = self.dependency, attempts = self.attempt, "dependency recovered");
        }
    }
}

/// Capped exponential backoff with full jitter: uniform in `[cap/2, cap]` where
/// `cap = min(initial × 2^attempt, max)` (AWS Architecture Blog, "Exponential Backoff And
/// Jitter", 2015; the floor keeps a minimum spacing).
pub fn backoff(attempt: u32, initial: Duration, max: Duration) -> Duration {
    let exp = initial.saturating_mul(1u32.checked_shl(attempt.min(16)).unwrap_or(u32::MAX));
    let cap = exp.min(max);
    let half = cap / 2;
    half + Duration::from_millis(fastrand::u64(0..=u64::try_from(half.as_millis()).unwrap_or(u64::MAX)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let i = Duration::from_millis(100);
        let m = Duration::from_millis(2_000);
        for attempt in 0..40 {
            let d = backoff(attempt, i, m);
            assert!(d <= m, "{attempt}: {d:?}");
            let expected_cap = (i * 2u32.pow(attempt.min(5))).min(m);
            assert!(d >= expected_cap / 2, "{attempt}: {d:?}");
        }
    }
}
