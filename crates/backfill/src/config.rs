//! `autotag backfill`'s configuration: the shared `[kafka]` (brokers, the operator's producer
//! pass-through keys) and `[s3]` (the listing client) sections and its own `[backfill]`,
//! documented here field by field. `config/default.toml` is the reference; every key can be
//! overridden as `AUTOTAG__BACKFILL__KEY`. What a run enqueues (source, filters, rate) are
//! command-line flags ([`crate::RunArgs`]): they belong to the run and are kept in its
//! checkpoint.

use std::path::PathBuf;
use std::time::Duration;

use autotag_infra::config::{ConfigError, ServiceConfig, millis};
use autotag_infra::kafka::KafkaConfig;
use autotag_infra::s3::S3Config;
use serde::{Deserialize, Serialize};

/// Everything `autotag backfill` reads.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackfillConfig {
    pub kafka: KafkaConfig,
    /// The S3 client that lists the catalogue (addressing style; credentials, region and
    /// endpoint come from the standard AWS environment).
    pub s3: S3Config,
    pub backfill: BackfillSection,
}

/// `[backfill]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackfillSection {
    /// The topic backfill events go to; the worker consumes it as its backfill lane.
    pub topic: String,
    /// Where a run's checkpoint lives when `--checkpoint` is not given: `<dir>/<run_id>.json`,
    /// relative to the working directory.
    pub checkpoint_dir: PathBuf,
    /// How often the checkpoint is written while events are acknowledged (it is also written
    /// after every listing page and at the end).
    #[serde(rename = "checkpoint_interval_ms", with = "millis")]
    pub checkpoint_interval: Duration,
    /// How often a progress line is logged when stderr is not a terminal (on a terminal, a
    /// progress bar).
    #[serde(rename = "progress_interval_ms", with = "millis")]
    pub progress_interval: Duration,
    /// Objects per listing page (S3 `MaxKeys`, at most 1000).
    pub page_size: i32,
}

impl Default for BackfillSection {
    fn default() -> Self {
        Self {
            topic: "gif-backfill".into(),
            checkpoint_dir: PathBuf::from(".autotag/backfill"),
            checkpoint_interval: Duration::from_secs(2),
            progress_interval: Duration::from_secs(10),
            page_size: 1000,
        }
    }
}

impl ServiceConfig for BackfillConfig {
    const SECTIONS: &'static [&'static str] = &["kafka", "s3", "backfill"];

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(m.into()));
        if self.kafka.brokers.trim().is_empty() {
            return bad("kafka.brokers is empty");
        }
        let b = &self.backfill;
        if b.topic.trim().is_empty() {
            return bad("backfill.topic is empty");
        }
        if !(1..=1000).contains(&b.page_size) {
            return bad("backfill.page_size must be within 1..=1000");
        }
        if b.checkpoint_interval.is_zero() || b.progress_interval.is_zero() {
            return bad("backfill.checkpoint_interval_ms and progress_interval_ms must be > 0");
        }
        self.s3.validate().map_err(ConfigError::Invalid)
    }
}
