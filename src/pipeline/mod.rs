//! The tagging pipeline: one module per stage, joined by bounded channels.
//!
//! ```text
//!  source ──Job──► fetch ──Fetched──► decode ──Decoded──► batch ──Batch──► infer
//!    │               │                  │                                   │
//!    └──────────────►┴──────────────────┴────────── Outcome ──────────────► publish
//!                                                                          │
//!    source ◄──────────── offset completions (contiguous watermark) ◄──────┘
//! ```
//!
//! Every consumed record travels with a [`Ticket`]. The ticket owns a permit
//! of the in-flight semaphore (the worker's memory bound) and knows the
//! record's partition/offset. Exactly one [`Outcome`] is produced per ticket,
//! a suggestion or a dead letter; `publish` marks the offset done only after
//! the broker acknowledged that outcome, and `source` commits only the
//! contiguous prefix of done offsets. A ticket dropped without an outcome
//! (shutdown, revoked partition) simply never commits: the record is
//! re-delivered.

pub mod batch;
pub mod decode;
pub mod fetch;
pub mod infer;
pub mod publish;
pub mod source;

use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, watch};

use crate::contract::{RecordOrigin, Source, Stage, TagScore, ValidUpload};

/// Identity of a consumed record and what a dead letter needs of it.
#[derive(Debug)]
pub struct Record {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub payload: Option<Vec<u8>>,
}

impl Record {
    pub fn origin(&self) -> RecordOrigin {
        RecordOrigin {
            topic: self.topic.clone(),
            partition: self.partition,
            offset: self.offset,
            key: self.key.clone(),
        }
    }
}

/// A consumed record's passage through the pipeline (see the module docs).
#[derive(Debug)]
pub struct Ticket {
    pub record: Record,
    /// Partition-assignment generation at consumption; completions from an
    /// older generation (the partition was revoked meanwhile) are ignored.
    pub generation: u64,
    pub consumed_at: Instant,
    pub source: Source,
    pub(crate) _permit: Option<OwnedSemaphorePermit>,
}

/// A valid upload on its way to the model.
#[derive(Debug)]
pub struct Job {
    pub ticket: Ticket,
    pub upload: ValidUpload,
}

/// The one result per consumed record.
#[derive(Debug)]
pub enum Outcome {
    Tagged { job: Job, tags: Vec<TagScore>, frames: usize },
    Failed { ticket: Ticket, stage: Stage, reason: &'static str, message: String },
}

impl Outcome {
    pub fn failed(ticket: Ticket, stage: Stage, reason: &'static str, message: impl Into<String>) -> Self {
        Outcome::Failed { ticket, stage, reason, message: message.into() }
    }
}

/// Two-step shutdown shared by all stages.
///
/// `stop`: stop taking new records, finish what is in flight.
/// `abort`: the shutdown deadline passed; abandon retries and waits now
/// (abandoned records are not committed and will be redone).
#[derive(Clone, Debug)]
pub struct Shutdown {
    stop: watch::Receiver<bool>,
    abort: watch::Receiver<bool>,
}

/// The controlling side of [`Shutdown`].
#[derive(Debug)]
pub struct ShutdownController {
    stop: watch::Sender<bool>,
    abort: watch::Sender<bool>,
}

impl ShutdownController {
    pub fn new() -> (Self, Shutdown) {
        let (stop_tx, stop) = watch::channel(false);
        let (abort_tx, abort) = watch::channel(false);
        (Self { stop: stop_tx, abort: abort_tx }, Shutdown { stop, abort })
    }
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
    pub fn abort(&self) {
        let _ = self.stop.send(true);
        let _ = self.abort.send(true);
    }
}

impl Shutdown {
    pub fn is_stopping(&self) -> bool {
        *self.stop.borrow()
    }
    pub fn is_aborted(&self) -> bool {
        *self.abort.borrow()
    }
    /// Resolves when stopping begins.
    pub async fn stopped(&mut self) {
        let _ = self.stop.wait_for(|v| *v).await;
    }
    /// Resolves when in-flight work must be abandoned.
    pub async fn aborted(&mut self) {
        let _ = self.abort.wait_for(|v| *v).await;
    }
    /// Sleep for `d` unless aborted first; returns false when aborted.
    pub async fn sleep(&mut self, d: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => true,
            _ = self.aborted() => false,
        }
    }
}

/// Retry state of one request to a dependency (S3, the broker).
///
/// Transient failures are retried without limit with capped exponential
/// backoff: a good event is never dead-lettered because a dependency was
/// down. After `attempts_before_degraded` failures the worker reports itself
/// degraded (`/readyz` 503) until the same request succeeds.
pub struct Retrier {
    dependency: &'static str,
    cfg: crate::config::RetryConfig,
    health: std::sync::Arc<crate::telemetry::Health>,
    attempt: u32,
    degraded: bool,
}

impl Retrier {
    pub fn new(
        dependency: &'static str,
        cfg: crate::config::RetryConfig,
        health: std::sync::Arc<crate::telemetry::Health>,
    ) -> Self {
        Self { dependency, cfg, health, attempt: 0, degraded: false }
    }

    /// Record a transient failure and wait before the next attempt. Returns
    /// false when the shutdown deadline abandoned the request.
    pub async fn failed(&mut self, error: String, shutdown: &mut Shutdown) -> bool {
        self.attempt += 1;
        metrics::counter!(crate::telemetry::RETRIES, "dependency" => self.dependency).increment(1);
        if self.attempt >= self.cfg.attempts_before_degraded && !self.degraded {
            self.degraded = true;
            self.health.set_degraded(true);
            tracing::warn!(dependency = self.dependency, attempts = self.attempt, %error,
                "dependency keeps failing; retrying until it recovers");
        } else {
            tracing::debug!(dependency = self.dependency, attempt = self.attempt, %error, "transient failure; retrying");
        }
        let wait = backoff(
            self.attempt - 1,
            Duration::from_millis(self.cfg.initial_backoff_ms),
            Duration::from_millis(self.cfg.max_backoff_ms),
        );
        shutdown.sleep(wait).await
    }

    /// Attempts so far.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

impl Drop for Retrier {
    /// Success, permanent failure or abandonment: either way this request no
    /// longer holds the worker degraded.
    fn drop(&mut self) {
        if self.degraded {
            self.health.set_degraded(false);
            tracing::info!(dependency = self.dependency, attempts = self.attempt, "dependency recovered");
        }
    }
}

/// A librdkafka client config: `bootstrap.servers`, then our `defaults`, then the operator's
/// pass-through map (`kafka.consumer` / `kafka.producer`), so the operator's keys win.
pub fn kafka_client_config(
    brokers: &str,
    defaults: &[(&str, &str)],
    passthrough: &std::collections::BTreeMap<String, String>,
) -> rdkafka::ClientConfig {
    let mut cc = rdkafka::ClientConfig::new();
    cc.set("bootstrap.servers", brokers);
    for (k, v) in defaults {
        cc.set(*k, *v);
    }
    for (k, v) in passthrough {
        cc.set(k, v);
    }
    cc
}

/// Capped exponential backoff with full jitter.
pub fn backoff(attempt: u32, initial: Duration, max: Duration) -> Duration {
    let exp = initial.saturating_mul(1u32.checked_shl(attempt.min(16)).unwrap_or(u32::MAX));
    let cap = exp.min(max);
    // Full jitter in [cap/2, cap]: avoids thundering herds, keeps a floor.
    let half = cap / 2;
    half + Duration::from_millis(fastrand::u64(0..=half.as_millis() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_kafka_keys_override_ours() {
        let passthrough = [("acks".to_owned(), "1".to_owned()), ("client.id".to_owned(), "x".to_owned())].into();
        let cc = kafka_client_config("b:9092", &[("acks", "all"), ("linger.ms", "5")], &passthrough);
        assert_eq!(cc.get("bootstrap.servers"), Some("b:9092"));
        assert_eq!(cc.get("acks"), Some("1"));
        assert_eq!(cc.get("linger.ms"), Some("5"));
        assert_eq!(cc.get("client.id"), Some("x"));
    }

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
