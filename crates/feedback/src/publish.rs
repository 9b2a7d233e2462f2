//! Writing feedback records to the topic: produce, then wait for the broker's acknowledgement of
//! every record, within a deadline.
//!
//! **Owns** the service's one producer (built by `autotag_infra::kafka`: idempotent, `acks=all`,
//! `murmur2_random`, the operator's pass-through keys), held in the shared
//! `autotag_infra::producer::ProducerHandle` that replaces it when it can no longer deliver.
//!
//! **Promises**: [`Publisher::publish`] returns `Ok` only once the broker acknowledged every
//! record of the batch (that is what a 202 means). Otherwise it returns
//! [`PublishError::Unavailable`] no later than the deadline: some records may still reach the
//! broker afterwards (those librdkafka had already sent), which is why a retry with the same
//! `event_id`s must be, and is, safe downstream. The producer's `message.timeout.ms` is set no
//! longer than the deadline, so librdkafka gives up on a record about when the caller does and
//! nothing queued outlives a request by much.
//!
//! **Recovery** (the handle's rule, `rebuild_when_stuck` on): the producer is rebuilt when
//! librdkafka reported a *fatal* error, and also after a batch failed while the current producer
//! is at least one deadline old (its `message.timeout.ms`); see `autotag_infra::producer`.
//! Records of the old producer were already answered 503, so nothing is lost; at most one
//! rebuild per deadline keeps an outage from churning producers.

use std::sync::Arc;
use std::time::Duration;

use autotag_contract::FeedbackRecord;
use autotag_infra::kafka::{self, KafkaConfig};
use autotag_infra::producer::{Policy, ProducerHandle};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::time::Instant;

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
    topic: String,
    deadline: Duration,
    producer: Arc<ProducerHandle>,
    /// The producer's `message.max.bytes`: a larger record is refused before anything is sent.
    max_message_bytes: usize,
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
        let config = producer_config(kafka, deadline);
        let policy = Policy::for_config(&config, true);
        Ok(Self {
            topic: topic.to_owned(),
            deadline,
            producer: Arc::new(ProducerHandle::new(config, policy)?),
            max_message_bytes: max_message_bytes(kafka, deadline),
        })
    }

    /// The deadline of one batch.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// The current producer (tests and readiness checks use its client).
    pub fn producer(&self) -> Arc<FutureProducer> {
        self.producer.current()
    }

    /// The shared producer handle (the broker probe asks through it).
    pub fn handle(&self) -> Arc<ProducerHandle> {
        self.producer.clone()
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
                    failure = Some(e);
                    break;
                }
            }
        }
        if failure.is_none() {
            match tokio::time::timeout_at(until, futures::future::join_all(deliveries)).await {
                Err(_) => failure = Some(KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut)),
                Ok(results) => {
                    failure = results.into_iter().find_map(|r| match r {
                        Ok(Ok(_)) => None,
                        Ok(Err((e, _))) => Some(e),
                        Err(_) => Some(KafkaError::Canceled),
                    });
                }
            }
        }
        match failure {
            None => Ok(()),
            Some(error) => {
                self.producer.recover(&producer, &error);
                let message = match error {
                    KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut) => {
                        format!("not acknowledged within {:?}", self.deadline)
                    }
                    KafkaError::Canceled => "the producer dropped the record".to_owned(),
                    e => e.to_string(),
                };
                Err(PublishError::Unavailable(message))
            }
        }
    }

    /// Wait up to `timeout` for records still queued (shutdown).
    pub fn flush(&self, timeout: Duration) {
        self.producer.flush(timeout);
    }
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
        assert!(Publisher::new(&KafkaConfig::default(), "t", Duration::from_millis(1500)).is_ok());
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
