//! The relabel job's configuration: the shared `[kafka]` (brokers, the operator's consumer and
//! producer pass-through keys), `[s3]` (the export's client) and `[shutdown]` sections, and its
//! own `[relabel]` section,
//! documented here field by field. `config/default.toml` is the reference; every key can be
//! overridden as `AUTOTAG__RELABEL__KEY` (`AUTOTAG__RELABEL__TOPICS__FEEDBACK=…`).
//!
//! The job has its own consumer group (`relabel.group_id`, not `kafka.group_id`, which is the
//! worker's) and its own metrics address (default port 9466), so that it can share one config
//! file and one host with the worker and the feedback API.

use std::path::PathBuf;
use std::time::Duration;

use autotag_infra::config::{ConfigError, ServiceConfig, millis};
use autotag_infra::kafka::KafkaConfig;
use autotag_infra::s3::S3Config;
use autotag_infra::shutdown::ShutdownConfig;
use serde::{Deserialize, Serialize};

use crate::rule::Thresholds;

/// Everything `autotag relabel` reads.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelabelConfig {
    pub kafka: KafkaConfig,
    pub relabel: RelabelSection,
    /// The S3 client of `autotag relabel export` (addressing style; credentials, region and
    /// endpoint come from the standard AWS environment).
    pub s3: S3Config,
    pub shutdown: ShutdownConfig,
}

impl ServiceConfig for RelabelConfig {
    const SECTIONS: &'static [&'static str] = &["kafka", "relabel", "s3", "shutdown"];

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        let r = &self.relabel;
        if self.kafka.brokers.trim().is_empty() {
            return bad("kafka.brokers is empty".into());
        }
        for (key, v) in [("keep_threshold", r.keep_threshold), ("add_threshold", r.add_threshold)] {
            if !(0.0..=1.0).contains(&v) {
                return bad(format!("relabel.{key} = {v} is not in [0, 1]"));
            }
        }
        if r.group_id.trim().is_empty() {
            return bad("relabel.group_id is empty".into());
        }
        if r.state_dir.as_os_str().is_empty() {
            return bad("relabel.state_dir is empty".into());
        }
        if r.store_cache_mib == 0 {
            return bad("relabel.store_cache_mib must be >= 1".into());
        }
        if r.commit_interval.is_zero() {
            return bad("relabel.commit_interval_ms must be > 0".into());
        }
        let t = &r.topics;
        let named = [
            ("uploads", &t.uploads),
            ("backfill", &t.backfill),
            ("suggestions", &t.suggestions),
            ("feedback", &t.feedback),
            ("labels", &t.labels),
            ("changelog", &t.changelog),
        ];
        for (i, (key, name)) in named.iter().enumerate() {
            if name.trim().is_empty() {
                return bad(format!("relabel.topics.{key} is empty"));
            }
            if let Some((other, _)) = named[..i].iter().find(|(_, n)| n == name) {
                return bad(format!("relabel.topics.{key} and relabel.topics.{other} are both `{name}`"));
            }
        }
        Ok(())
    }
}

/// The relabel job (`[relabel]`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelabelSection {
    /// An original label whose model score is at least this stays at 1.0 (`kept`), else it is
    /// halved to 0.5; in `[0, 1]`, inclusive.
    pub keep_threshold: f64,
    /// A suggested tag scored at least this is added at its score (`model_added`); in `[0, 1]`,
    /// inclusive.
    pub add_threshold: f64,
    /// The consumer group of the job's instances (all replicas share it).
    pub group_id: String,
    /// Where the state store (`relabel.redb`: every owned GIF's folded inputs and the input
    /// offsets they reflect) lives. One directory per instance; it is a cache of the changelog
    /// topic, so a lost directory costs a restore, not data.
    pub state_dir: PathBuf,
    /// The state store's page cache, in MiB (`store_cache_mib`): the bound of the store's share
    /// of the job's memory; more keeps more GIFs' states in memory between their inputs.
    pub store_cache_mib: usize,
    /// How often the job writes its outputs, its changelog and then one state transaction with
    /// the input offsets (`commit_interval_ms`). A crash redoes at most this much input.
    #[serde(rename = "commit_interval_ms", with = "millis")]
    pub commit_interval: Duration,
    /// Listen address of `/metrics`, `/healthz`, `/readyz`; empty disables them.
    pub metrics_listen: String,
    pub topics: RelabelTopics,
}

impl RelabelSection {
    /// The rule's thresholds.
    pub fn thresholds(&self) -> Thresholds {
        Thresholds { keep: self.keep_threshold, add: self.add_threshold }
    }
}

impl Default for RelabelSection {
    fn default() -> Self {
        let t = Thresholds::default();
        Self {
            keep_threshold: t.keep,
            add_threshold: t.add,
            group_id: "autotag-relabel".into(),
            state_dir: PathBuf::from("relabel-state"),
            store_cache_mib: 64,
            commit_interval: Duration::from_millis(1_000),
            metrics_listen: "127.0.0.1:9466".into(),
            topics: RelabelTopics::default(),
        }
    }
}

/// The job's topics. The four inputs and the changelog must have the same partition count
/// (the job refuses to start otherwise, naming them): all are keyed by `gif_id`, so partition
/// `p` of every input holds the same GIFs, and one instance owns partition `p` of all of them.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelabelTopics {
    /// Live upload events (input; `schemas/upload-event.schema.json`).
    pub uploads: String,
    /// Backfill upload events (input; the upload schema).
    pub backfill: String,
    /// The worker's suggestions (input; `schemas/suggestion.schema.json`).
    pub suggestions: String,
    /// Feedback records of the feedback API (input; `schemas/feedback-record.schema.json`).
    pub feedback: String,
    /// The output: each GIF's current training labels, key `gif_id`, the latest record per key
    /// is the truth (create it compacted; `schemas/training-labels.schema.json`).
    pub labels: String,
    /// The job's own state log: each changed GIF state and, per commit, the input offsets it
    /// reflects, written to the input's partition (create it compacted, same partition count).
    pub changelog: String,
}

impl Default for RelabelTopics {
    fn default() -> Self {
        Self {
            uploads: "gif-uploads".into(),
            backfill: "gif-backfill".into(),
            suggestions: "gif-tag-suggestions".into(),
            feedback: "gif-tag-feedback".into(),
            labels: "gif-training-labels".into(),
            changelog: "gif-relabel-changelog".into(),
        }
    }
}

impl RelabelTopics {
    /// The input topics, in a fixed order.
    pub fn inputs(&self) -> [&str; 4] {
        [&self.uploads, &self.backfill, &self.suggestions, &self.feedback]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use autotag_infra::config::load_with_env;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_overrides_and_refusals() {
        let cfg: RelabelConfig = load_with_env(None, env(&[])).unwrap();
        assert_eq!(cfg.relabel.thresholds(), Thresholds { keep: 0.3, add: 0.7 });
        assert_eq!(
            cfg.relabel.topics.inputs(),
            ["gif-uploads", "gif-backfill", "gif-tag-suggestions", "gif-tag-feedback"]
        );
        let cfg: RelabelConfig = load_with_env(
            None,
            env(&[
                ("AUTOTAG__RELABEL__KEEP_THRESHOLD", "0.25"),
                ("AUTOTAG__RELABEL__COMMIT_INTERVAL_MS", "200"),
                ("AUTOTAG__RELABEL__TOPICS__FEEDBACK", "fb"),
                ("AUTOTAG__FEEDBACK__LISTEN", "ignored: the feedback API's section"),
            ]),
        )
        .unwrap();
        assert_eq!(cfg.relabel.keep_threshold, 0.25);
        assert_eq!(cfg.relabel.commit_interval, Duration::from_millis(200));
        assert_eq!(cfg.relabel.topics.feedback, "fb");
        for (var, value, says) in [
            ("AUTOTAG__RELABEL__ADD_THRESHOLD", "1.5", "relabel.add_threshold"),
            ("AUTOTAG__RELABEL__COMMIT_INTERVAL_MS", "0", "commit_interval_ms"),
            ("AUTOTAG__RELABEL__TOPICS__LABELS", "gif-uploads", "relabel.topics.labels and relabel.topics.uploads"),
            ("AUTOTAG__RELABEL__STATE_DIR", "", "relabel.state_dir"),
            ("AUTOTAG__RELABEL__NOPE", "1", "nope"),
        ] {
            let e = load_with_env::<RelabelConfig>(None, env(&[(var, value)])).expect_err(var);
            assert!(e.to_string().contains(says), "{var}: {e}");
        }
    }
}
