//! Writing feedback records to the topic: produce, then wait for the broker's acknowledgement of
//! every record, within a deadline.
//!
//! **Owns** the service's one producer (built by `autotag_infra::kafka`: idempotent, `acks=all`,
//! `murmur2_random`, the operator's pass-through keys) and its replacement after a fatal error.
//!
//! **Promises**: [`Publisher::publish`] returns `Ok` only once the broker acknowledged every
//! record of the batch (that is what a 202 means). Otherwise it returns
//! [`PublishError::Unavailable`] no later than the deadline: some records may still reach the
//! broker afterwards (those librdkafka had already sent), which is why a retry with the same
//! `event_id`s must be, and is, safe downstream. The producer's `message.timeout.ms` is set no
//! longer than the deadline, so librdkafka gives up on a record about when the caller does and
//! nothing queued outlives a request by much.
//!
//! **Recovery**: the producer is rebuilt (a new producer id, fresh sequence numbers) when
//! librdkafka reported a *fatal* error, and also after a batch failed while the current producer
//! is at least one deadline old: an idempotent producer whose records timed out must bump its
//! epoch before it can send again, and a broker that lost its state (or does not support that
//! bump, like Tansu) leaves it stuck without a fatal error (measured: still refusing 60 s after
//! the broker returned). Records of the old producer were already answered 503, so nothing is
//! lost; at most one rebuild per deadline keeps an outage from churning producers.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use autotag_contract::FeedbackRecord;
use autotag_infra::kafka::{self, KafkaConfig};
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use tokio::time::Instant;

use crate::metrics;

/// Why a batch was not acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The broker did not acknowledge every record in time, or refused one (the first error).
    #[error("the broker did not acknowledge the events: {0}")]
    Unavailable(String),
    /// Record `index` (key and value, `bytes`) is over the producer's `message.max.bytes`
    /// (`max`): no retry can write it. Nothing of the batch was sent.
    #[error("event {index} makes a record of {bytes} bytes; the producer's message.max.bytes is {max}")]
    TooLarge { index: usize, bytes: usize, max: usize },
}

/// The producer of the feedback topic.
pub struct Publisher {
    kafka: KafkaConfig,
    topic: String,
    deadline: Duration,
    producer: RwLock<Arc<FutureProducer>>,
    /// The producer's `message.max.bytes`: a larger record is refused before anything is sent.
    max_message_bytes: usize,
    /// When the current producer was built.
    built: std::sync::Mutex<Instant>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher").field("topic", &self.topic).field("deadline", &self.deadline).finish()
    }
}

impl Publisher {
    /// A producer of `topic` whose batches must be acknowledged within `deadline`.
    ///
    /// # Errors
    /// librdkafka refused the configuration (an unknown pass-through key, named).
    pub fn new(kafka: &KafkaConfig, topic: &str, deadline: Duration) -> Result<Self, KafkaError> {
        let producer = build(kafka, deadline)?;
        Ok(Self {
            kafka: kafka.clone(),
            topic: topic.to_owned(),
            deadline,
            producer: RwLock::new(Arc::new(producer)),
            max_message_bytes: max_message_bytes(kafka, deadline),
            built: std::sync::Mutex::new(Instant::now()),
        })
    }

    /// The deadline of one batch.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// The current producer (tests and readiness checks use its client).
    pub fn producer(&self) -> Arc<FutureProducer> {
        self.producer.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Produce `records` (key `gif_id`) and wait until the broker acknowledged all of them.
    ///
    /// # Errors
    /// [`PublishError::Unavailable`] when one was refused, or not all were acknowledged within
    /// the deadline; returned by the deadline at the latest.
    pub async fn publish(&self, records: &[FeedbackRecord]) -> Result<(), PublishError> {
        let until = Instant::now() + self.deadline;
        // Every record's size is checked before anything is sent, so that a record that can
        // never be written leaves nothing of its batch on the topic.
        let mut payloads = Vec::with_capacity(records.len());
        for (index, r) in records.iter().enumerate() {
            let payload = serde_json::to_vec(r).map_err(|e| PublishError::Unavailable(e.to_string()))?;
            let bytes = payload.len() + r.event.gif_id.len();
            if bytes > self.max_message_bytes {
                return Err(PublishError::TooLarge { index, bytes, max: self.max_message_bytes });
            }
            payloads.push(payload);
        }
        let producer = self.producer();
        let mut deliveries = Vec::with_capacity(records.len());
        let mut failure = None;
        for (r, payload) in records.iter().zip(&payloads) {
            let record = FutureRecord::to(&self.topic).key(&r.event.gif_id).payload(payload);
            match producer.send_result(record) {
                Ok(d) => deliveries.push(d),
                Err((e, _)) => {
                    failure = Some(e.to_string());
                    break;
                }
            }
        }
        if failure.is_none() {
            match tokio::time::timeout_at(until, futures::future::join_all(deliveries)).await {
                Err(_) => failure = Some(format!("not acknowledged within {:?}", self.deadline)),
                Ok(results) => {
                    failure = results.into_iter().find_map(|r| match r {
                        Ok(Ok(_)) => None,
                        Ok(Err((e, _))) => Some(e.to_string()),
                        Err(_) => Some("the producer dropped the record".to_owned()),
                    });
                }
            }
        }
        match failure {
            None => Ok(()),
            Some(error) => {
                self.recover(&producer);
                Err(PublishError::Unavailable(error))
            }
        }
    }

    /// After a failed batch: replace `failed` by a new producer if librdkafka reported a fatal
    /// error on it, or if it is at least one deadline old (see the module doc), unless another
    /// request replaced it already or is rebuilding it now. The new producer is built without
    /// holding the lock every request reads the producer through, and off the async workers'
    /// schedule (`block_in_place`); the old one is dropped on a blocking thread (dropping one
    /// purges and flushes for up to 500 ms).
    fn recover(&self, failed: &Arc<FutureProducer>) {
        let fatal = failed.client().fatal_error();
        // Another request rebuilding: it replaces the same producer.
        let Ok(mut built) = self.built.try_lock() else { return };
        if fatal.is_none() && built.elapsed() < self.deadline {
            return;
        }
        if !Arc::ptr_eq(&self.producer(), failed) {
            return;
        }
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        let fresh = if multi_thread {
            tokio::task::block_in_place(|| build(&self.kafka, self.deadline))
        } else {
            build(&self.kafka, self.deadline)
        };
        match fresh {
            Ok(p) => {
                let mut current = self.producer.write().unwrap_or_else(|p| p.into_inner());
                match &fatal {
                    Some((code, reason)) => {
                        tracing::warn!(?code, %reason, "the producer hit a fatal error; rebuilt it")
                    }
                    None => tracing::info!("a batch failed; rebuilt the producer"),
                }
                ::metrics::counter!(metrics::PRODUCER_REBUILDS).increment(1);
                let old = std::mem::replace(&mut *current, Arc::new(p));
                *built = Instant::now();
                tokio::task::spawn_blocking(move || drop(old));
            }
            Err(e) => tracing::error!(error = %e, "cannot rebuild the producer"),
        }
    }

    /// Wait up to `timeout` for records still queued (shutdown).
    pub fn flush(&self, timeout: Duration) {
        let _ = self.producer().flush(timeout);
    }
}

fn build(kafka: &KafkaConfig, deadline: Duration) -> Result<FutureProducer, KafkaError> {
    producer_config(kafka, deadline).create()
}

/// The producer's `message.max.bytes` (librdkafka's default, 1 000 000, unless the operator set
/// it).
pub fn max_message_bytes(kafka: &KafkaConfig, deadline: Duration) -> usize {
    producer_config(kafka, deadline).get("message.max.bytes").and_then(|v| v.parse().ok()).unwrap_or(1_000_000)
}

/// The shared producer config with `message.timeout.ms` capped at `deadline`.
pub fn producer_config(kafka: &KafkaConfig, deadline: Duration) -> rdkafka::ClientConfig {
    let mut cc = kafka::producer_config(kafka);
    let cap = u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX).max(1);
    let configured = cc.get("message.timeout.ms").and_then(|v| v.parse::<u64>().ok()).unwrap_or(u64::MAX);
    let timeout = configured.min(cap);
    cc.set("message.timeout.ms", timeout.to_string());
    // librdkafka refuses a linger longer than the message timeout.
    if cc.get("linger.ms").and_then(|v| v.parse::<u64>().ok()).is_some_and(|l| l >= timeout) {
        cc.set("linger.ms", "0");
    }
    cc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_timeout_is_capped_by_the_deadline_but_an_operator_may_go_lower() {
        let cc = producer_config(&KafkaConfig::default(), Duration::from_millis(1500));
        assert_eq!(cc.get("message.timeout.ms"), Some("1500"));
        assert_eq!(cc.get("enable.idempotence"), Some("true"));
        assert_eq!(cc.get("acks"), Some("all"));
        let mut low = KafkaConfig::default();
        low.producer.0.insert("message.timeout.ms".into(), "700".into());
        assert_eq!(producer_config(&low, Duration::from_millis(1500)).get("message.timeout.ms"), Some("700"));
        let cc = producer_config(&KafkaConfig::default(), Duration::from_millis(3));
        assert_eq!(cc.get("linger.ms"), Some("0"), "linger must stay below the message timeout");
        assert!(build(&KafkaConfig::default(), Duration::from_millis(1500)).is_ok());
    }

    /// A record over `message.max.bytes` is refused before anything is sent (no broker needed:
    /// nothing is sent at all).
    #[tokio::test(flavor = "multi_thread")]
    async fn a_record_over_message_max_bytes_is_refused_before_sending() {
        let mut kafka = KafkaConfig::default();
        kafka.producer.0.insert("message.max.bytes".into(), "1000".into());
        let p = Publisher::new(&kafka, "t", Duration::from_millis(500)).unwrap();
        let record = |user: &str| FeedbackRecord {
            event: autotag_contract::FeedbackEvent {
                schema_version: 1,
                event_id: "e".into(),
                gif_id: "g".into(),
                tag: "cat".into(),
                action: autotag_contract::FeedbackAction::Add,
                user_id: user.into(),
                occurred_at: "2026-12-06T10:00:00Z".into(),
                suggestion_event_id: None,
                model_version: None,
            },
            client: "web".into(),
            received_at: "2026-12-06T10:00:00.000Z".into(),
        };
        let err = p.publish(&[record("u"), record(&"u".repeat(1000))]).await.unwrap_err();
        assert!(matches!(err, PublishError::TooLarge { index: 1, max: 1000, .. }), "{err:?}");
    }
}
