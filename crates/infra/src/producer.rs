//! The one producer handle of every service: a librdkafka producer that is replaced when it can
//! no longer deliver (issue 24).
//!
//! **Owns** a service's producer and its replacement. **Promises**: callers send through
//! [`ProducerHandle::current`] and report every failed delivery to
//! [`ProducerHandle::recover`]; the handle rebuilds the producer (a new producer id, fresh
//! sequence numbers) when
//! - librdkafka reported a fatal error on it (`Client::fatal_error`, librdkafka's rule for an
//!   idempotent producer: destroy and recreate it), or a delivery failed with an error that
//!   can never succeed on the same producer (`ProducerFenced`, `InvalidProducerEpoch`,
//!   `OutOfOrderSequenceNumber`, `UnknownProducerId`, `Fatal`); measured against Tansu after a
//!   restart: `ProducerFenced` on every send for ~10 minutes without a rebuild;
//! - with [`Policy::rebuild_when_stuck`], any delivery failed while the producer is at least
//!   `min_interval` old: an idempotent producer whose records timed out must bump its epoch
//!   before it can send again, and a broker that lost its state (or lacks the bump, like Tansu)
//!   leaves it stuck without a fatal error (measured: still refusing 60 s after the broker
//!   returned).
//!
//! At most one rebuild per `min_interval` (the producer's `message.timeout.ms`), and only of the
//! producer that failed (a caller holding an older one triggers nothing): an outage never churns
//! producers. Nothing is marked done here: a caller counts a record delivered only when its own
//! send returned the broker's acknowledgement, and re-sends a failed one through the new
//! producer, so records in flight on the old one are re-sent, never lost (duplicates are
//! possible, as everywhere in at-least-once delivery). The old producer is purged, so that its
//! pending deliveries fail at once, and dropped on a blocking thread (dropping one flushes).
//!
//! Metric: `autotag_kafka_producer_rebuilds_total{reason}` (`fatal`, `stuck`).

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, Producer as _, PurgeConfig};
use tracing::{error, info, warn};

/// Producers rebuilt, by `reason` (`fatal`, `stuck`).
pub const PRODUCER_REBUILDS: &str = "autotag_kafka_producer_rebuilds_total";

/// When to rebuild.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// The shortest time between two rebuilds, and the age a producer must reach before a
    /// non-fatal failure rebuilds it: its `message.timeout.ms`.
    pub min_interval: Duration,
    /// Rebuild after any failed delivery once the producer is `min_interval` old (not only
    /// after fatal errors).
    pub rebuild_when_stuck: bool,
}

impl Policy {
    /// The policy for a producer built from `config`: `min_interval` = its `message.timeout.ms`
    /// (librdkafka's default, 300 s, when unset).
    pub fn for_config(config: &ClientConfig, rebuild_when_stuck: bool) -> Self {
        let ms = config.get("message.timeout.ms").and_then(|v| v.parse().ok()).unwrap_or(300_000);
        Self { min_interval: Duration::from_millis(ms), rebuild_when_stuck }
    }
}

/// Whether a delivery error can never succeed on the same producer (see the module doc).
pub fn is_fatal_delivery_error(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::ProducerFenced
                | RDKafkaErrorCode::InvalidProducerEpoch
                | RDKafkaErrorCode::OutOfOrderSequenceNumber
                | RDKafkaErrorCode::UnknownProducerId
                | RDKafkaErrorCode::Fatal
        )
    )
}

/// A producer that is rebuilt when it can no longer deliver; cheap to share (`Arc`).
pub struct ProducerHandle {
    config: ClientConfig,
    policy: Policy,
    current: RwLock<Arc<FutureProducer>>,
    /// When the current producer was built; locked while rebuilding.
    built: Mutex<Instant>,
}

impl std::fmt::Debug for ProducerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProducerHandle").field("policy", &self.policy).finish()
    }
}

impl ProducerHandle {
    /// A producer built from `config`, rebuilt by `policy`.
    ///
    /// # Errors
    /// librdkafka refused the configuration (an unknown or invalid key, named in the error).
    pub fn new(config: ClientConfig, policy: Policy) -> Result<Self, KafkaError> {
        let producer = config.create()?;
        Ok(Self { config, policy, current: RwLock::new(Arc::new(producer)), built: Mutex::new(Instant::now()) })
    }

    /// The producer to send through now.
    pub fn current(&self) -> Arc<FutureProducer> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// A delivery through `failed` failed with `error`: rebuild the producer if the module
    /// doc's rule says so. Returns whether this call rebuilt it. Callable from async code (the
    /// build runs in `block_in_place` on a multi-thread runtime) and from plain threads.
    pub fn recover(&self, failed: &Arc<FutureProducer>, error: &KafkaError) -> bool {
        let fatal = failed.client().fatal_error();
        let reason = if fatal.is_some() || is_fatal_delivery_error(error) {
            "fatal"
        } else if self.policy.rebuild_when_stuck {
            "stuck"
        } else {
            return false;
        };
        // Another caller is rebuilding: it replaces the same producer.
        let Ok(mut built) = self.built.try_lock() else { return false };
        if built.elapsed() < self.policy.min_interval {
            return false;
        }
        if !Arc::ptr_eq(&self.current(), failed) {
            return false;
        }
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        let fresh =
            if multi_thread { tokio::task::block_in_place(|| self.config.create()) } else { self.config.create() };
        let fresh: FutureProducer = match fresh {
            Ok(p) => p,
            Err(e) => {
                error!(error = %e, "cannot rebuild the producer");
                return false;
            }
        };
        let old = {
            let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
            std::mem::replace(&mut *current, Arc::new(fresh))
        };
        *built = Instant::now();
        match &fatal {
            Some((code, why)) => warn!(?code, %why, "the producer hit a fatal error; rebuilt it"),
            None if reason == "fatal" => warn!(%error, "the producer can no longer deliver; rebuilt it"),
            None => info!(%error, "a delivery failed on a producer older than its message timeout; rebuilt it"),
        }
        metrics::counter!(PRODUCER_REBUILDS, "reason" => reason).increment(1);
        // Its pending deliveries fail now (their senders re-send through the new producer).
        old.purge(PurgeConfig::default().queue().inflight());
        let drop_old = move || drop(old);
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::task::spawn_blocking(drop_old);
        } else {
            std::thread::spawn(drop_old);
        }
        true
    }

    /// Wait up to `timeout` for records still queued on the current producer (shutdown).
    pub fn flush(&self, timeout: Duration) {
        let _ = self.current().flush(timeout);
    }
}

/// How often [`spawn_broker_probe`] asks while the broker answers (every second while not).
pub const BROKER_PROBE_INTERVAL: Duration = Duration::from_secs(5);

/// Readiness that follows the broker with or without traffic: keeps
/// [`crate::telemetry::BROKER_REACHABLE`] true while the broker answers a metadata request
/// for `topic` (and the topic exists) through the handle's current producer, asked every
/// second while it does not and every [`BROKER_PROBE_INTERVAL`] while it does. So `/readyz` is
/// 503 during an outage also when there is nothing to send, and 200 again within a second or
/// two of the broker's return; a service may also set the condition false at once when a send
/// fails (the feedback API does). Runs until the runtime stops.
pub fn spawn_broker_probe(
    handle: Arc<ProducerHandle>,
    topic: String,
    health: Arc<crate::telemetry::Health>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut was = None;
        loop {
            let producer = handle.current();
            let t = topic.clone();
            let found = tokio::task::spawn_blocking(move || {
                producer.client().fetch_metadata(Some(&t), Duration::from_secs(2)).map(|m| {
                    m.topics().iter().any(|x| x.name() == t && x.error().is_none() && !x.partitions().is_empty())
                })
            })
            .await;
            let answered = matches!(found, Ok(Ok(true)));
            if was != Some(answered) {
                match found {
                    Ok(Ok(true)) => info!(%topic, "the broker answers"),
                    Ok(Ok(false)) => warn!(%topic, "the topic does not exist; not ready"),
                    Ok(Err(e)) => warn!(error = %e, "the broker does not answer; not ready until it does"),
                    Err(_) => return,
                }
                was = Some(answered);
            }
            health.set(crate::telemetry::BROKER_REACHABLE, answered);
            tokio::time::sleep(if answered { BROKER_PROBE_INTERVAL } else { Duration::from_secs(1) }).await;
        }
    })
}

/// When the broker last acknowledged an output: feeds
/// [`crate::telemetry::SECONDS_SINCE_LAST_ACK`].
#[derive(Debug, Default)]
pub struct LastAck(Mutex<Option<Instant>>);

impl LastAck {
    /// The broker acknowledged an output now.
    pub fn record(&self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    }

    /// Seconds since the last acknowledgement; 0 before the first.
    pub fn seconds(&self) -> f64 {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).map_or(0.0, |t| t.elapsed().as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle(min_interval_ms: u64, stuck: bool) -> ProducerHandle {
        let mut cc = ClientConfig::new();
        cc.set("bootstrap.servers", "127.0.0.1:9").set("message.timeout.ms", min_interval_ms.to_string());
        let policy = Policy::for_config(&cc, stuck);
        ProducerHandle::new(cc, policy).unwrap()
    }

    fn timed_out() -> KafkaError {
        KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut)
    }

    fn fenced() -> KafkaError {
        KafkaError::MessageProduction(RDKafkaErrorCode::ProducerFenced)
    }

    #[test]
    fn fatal_delivery_errors_are_told_from_transient_ones() {
        assert!(is_fatal_delivery_error(&fenced()));
        assert!(is_fatal_delivery_error(&KafkaError::MessageProduction(RDKafkaErrorCode::OutOfOrderSequenceNumber)));
        assert!(!is_fatal_delivery_error(&timed_out()));
        assert!(!is_fatal_delivery_error(&KafkaError::MessageProduction(RDKafkaErrorCode::AllBrokersDown)));
    }

    #[test]
    fn at_most_one_rebuild_per_interval_and_only_of_the_failed_producer() {
        let h = handle(1, false);
        std::thread::sleep(Duration::from_millis(5));
        let first = h.current();
        assert!(!h.recover(&first, &timed_out()), "a transient error rebuilds nothing without the stuck rule");
        assert!(h.recover(&first, &fenced()));
        assert!(!Arc::ptr_eq(&first, &h.current()));
        std::thread::sleep(Duration::from_millis(5));
        assert!(!h.recover(&first, &fenced()), "the old producer's failures rebuild nothing");
        let h = handle(60_000, false);
        assert!(!h.recover(&h.current(), &fenced()), "not twice within the interval (the first build counts)");
    }

    #[test]
    fn a_stuck_producer_is_rebuilt_once_it_is_old_enough() {
        let h = handle(1, true);
        std::thread::sleep(Duration::from_millis(5));
        assert!(h.recover(&h.current(), &timed_out()));
        assert_eq!(Policy::for_config(&ClientConfig::new(), true).min_interval, Duration::from_secs(300));
    }
}
