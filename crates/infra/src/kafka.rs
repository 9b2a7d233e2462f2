//! Kafka: the shared `[kafka]` section and the one builder of every Kafka client.
//!
//! Every client the project makes — the worker's consumer and producer, `autotag upload`'s
//! producer, `autotag watch`'s reader, and every service's to come — is built by
//! [`client_config`]: `bootstrap.servers`, then our defaults for its role, then the operator's
//! pass-through keys (`kafka.consumer` / `kafka.producer`), so the operator's keys win and reach
//! every client (`security.protocol`, `sasl.*`, `ssl.*`, …). librdkafka refuses an unknown key
//! when the client is created, naming it.
//!
//! Every producer uses the `murmur2_random` partitioner, the Java client's: a `gif_id` lands in
//! the partition the platform's own (Java) producers put it in, which the per-GIF joins of the
//! later services rely on (all topics keyed by `gif_id`, same partition count).

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::FutureProducer;
use serde::{Deserialize, Deserializer, Serialize};

use crate::config::millis;

/// Kafka connection, topics and librdkafka pass-through settings (`[kafka]`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port[,host:port]`.
    pub brokers: String,
    /// Consumer group of the workers. All replicas of one deployment share it.
    pub group_id: String,
    pub topics: TopicsConfig,
    /// How often the contiguous offset watermark is committed (`commit_interval_ms`). Commits
    /// are cheap but not free; a crash re-delivers at most this much finished work.
    #[serde(rename = "commit_interval_ms", with = "millis")]
    pub commit_interval: Duration,
    /// Extra librdkafka consumer properties, passed through verbatim to every consumer
    /// (`session.timeout.ms`, `security.protocol`, `sasl.mechanism`, …). Keys may use `_` for
    /// `.` so that they can be set from the environment.
    pub consumer: Passthrough,
    /// Extra librdkafka producer properties, passed through verbatim to every producer.
    pub producer: Passthrough,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".into(),
            group_id: "autotag-worker".into(),
            topics: TopicsConfig::default(),
            commit_interval: Duration::from_millis(500),
            consumer: Passthrough::default(),
            producer: Passthrough::default(),
        }
    }
}

/// Topic names of the event contract (see `schemas/`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TopicsConfig {
    /// Live upload events (`schemas/upload-event.schema.json`).
    pub uploads: String,
    /// Tag suggestions (`schemas/suggestion.schema.json`).
    pub suggestions: String,
    /// Dead letters (`schemas/dead-letter.schema.json`).
    pub dead_letters: String,
}

impl Default for TopicsConfig {
    fn default() -> Self {
        Self {
            uploads: "gif-uploads".into(),
            suggestions: "gif-tag-suggestions".into(),
            dead_letters: "gif-uploads-dlq".into(),
        }
    }
}

/// librdkafka properties passed through verbatim. Keys are normalised when read: `_` stands for
/// `.` (`SESSION_TIMEOUT_MS` from the environment becomes `session.timeout.ms`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Passthrough(pub BTreeMap<String, String>);

impl<'de> Deserialize<'de> for Passthrough {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = BTreeMap::<String, String>::deserialize(d)?;
        Ok(Passthrough(raw.into_iter().map(|(k, v)| (k.replace('_', "."), v)).collect()))
    }
}

/// Which pass-through map a client takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Consumer,
    Producer,
}

/// Our defaults for every producer: idempotent, acknowledged by all in-sync replicas, the
/// Java-compatible partitioner. `message.timeout.ms` bounds librdkafka's internal retries; a
/// caller's own retry loop takes over after it.
pub const PRODUCER_DEFAULTS: &[(&str, &str)] = &[
    ("enable.idempotence", "true"),
    ("acks", "all"),
    ("linger.ms", "5"),
    ("message.timeout.ms", "30000"),
    ("partitioner", "murmur2_random"),
];

/// A librdkafka client config: `bootstrap.servers`, then `defaults`, then the operator's
/// pass-through keys for `role`, so the operator's keys win.
pub fn client_config(cfg: &KafkaConfig, role: Role, defaults: &[(&str, &str)]) -> ClientConfig {
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", &cfg.brokers);
    for (k, v) in defaults {
        cc.set(*k, *v);
    }
    let passthrough = match role {
        Role::Consumer => &cfg.consumer,
        Role::Producer => &cfg.producer,
    };
    for (k, v) in &passthrough.0 {
        cc.set(k, v);
    }
    cc
}

/// The config of an acked producer ([`PRODUCER_DEFAULTS`] + the operator's keys).
pub fn producer_config(cfg: &KafkaConfig) -> ClientConfig {
    client_config(cfg, Role::Producer, PRODUCER_DEFAULTS)
}

/// An idempotent, `acks=all` producer.
///
/// # Errors
/// librdkafka refused the configuration (an unknown or invalid key, named in the error).
pub fn create_producer(cfg: &KafkaConfig) -> Result<FutureProducer, KafkaError> {
    producer_config(cfg).create()
}

/// The shared producer handle ([`crate::producer`]) of an acked producer, rebuilt after fatal
/// errors, and with `rebuild_when_stuck` also after a failure once it is older than its
/// `message.timeout.ms`.
///
/// # Errors
/// librdkafka refused the configuration (an unknown or invalid key, named in the error).
pub fn create_producer_handle(
    cfg: &KafkaConfig,
    rebuild_when_stuck: bool,
) -> Result<crate::producer::ProducerHandle, KafkaError> {
    let cc = producer_config(cfg);
    let policy = crate::producer::Policy::for_config(&cc, rebuild_when_stuck);
    crate::producer::ProducerHandle::new(cc, policy)
}

/// The config of a throw-away reader: a fresh group of its own, from the earliest offset, never
/// committing (`autotag watch`, tests). The operator's consumer keys apply.
pub fn reader_config(cfg: &KafkaConfig, group: &str) -> ClientConfig {
    let defaults = [
        ("group.id", group),
        ("enable.auto.commit", "false"),
        ("auto.offset.reset", "earliest"),
        ("session.timeout.ms", "6000"),
        ("heartbeat.interval.ms", "500"),
    ];
    client_config(cfg, Role::Consumer, &defaults)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_operator_keys() -> KafkaConfig {
        let mut cfg = KafkaConfig { brokers: "b:9092".into(), ..KafkaConfig::default() };
        for (k, v) in [("security.protocol", "SASL_SSL"), ("sasl.mechanism", "SCRAM-SHA-512"), ("acks", "1")] {
            cfg.consumer.0.insert(k.into(), v.into());
            cfg.producer.0.insert(k.into(), v.into());
        }
        cfg
    }

    #[test]
    fn operator_keys_reach_every_client_and_win() {
        let cfg = with_operator_keys();
        let producer = producer_config(&cfg);
        let reader = reader_config(&cfg, "g");
        for cc in [&producer, &reader] {
            assert_eq!(cc.get("bootstrap.servers"), Some("b:9092"));
            assert_eq!(cc.get("security.protocol"), Some("SASL_SSL"));
            assert_eq!(cc.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        }
        assert_eq!(producer.get("acks"), Some("1"), "the operator's key wins over our default");
        assert_eq!(producer.get("partitioner"), Some("murmur2_random"));
        assert_eq!(producer.get("enable.idempotence"), Some("true"));
        assert_eq!(reader.get("group.id"), Some("g"));
    }

    #[test]
    fn passthrough_keys_are_normalised() {
        let p: Passthrough = toml::from_str("session_timeout_ms = \"2000\"\n\"sasl.mechanism\" = \"PLAIN\"").unwrap();
        assert_eq!(p.0.get("session.timeout.ms").map(String::as_str), Some("2000"));
        assert_eq!(p.0.get("sasl.mechanism").map(String::as_str), Some("PLAIN"));
    }

    #[test]
    fn an_unknown_key_is_refused_naming_it() {
        let mut cfg = KafkaConfig::default();
        cfg.producer.0.insert("not.a.key".into(), "1".into());
        let Err(e) = create_producer(&cfg) else { panic!("librdkafka accepted an unknown key") };
        assert!(e.to_string().contains("not.a.key"), "{e}");
    }
}
