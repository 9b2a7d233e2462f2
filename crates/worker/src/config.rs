//! The worker's configuration tree: the shared sections (`kafka`, `s3`, `retry`, `metrics`,
//! `shutdown`, owned by `autotag_infra`), the model (`model`, owned by `autotag_model`), the
//! GIF codec's limits (`limits`, owned by `gifcodec`) and the worker's own sections (`frames`,
//! `batch`, `pipeline`), each documented where it is declared. Loaded by
//! [`autotag_infra::config::load`]; `config/default.toml` is the reference.

use std::time::Duration;

use autotag_infra::config::{ConfigError, ServiceConfig, millis};
use autotag_infra::kafka::KafkaConfig;
use autotag_infra::retry::RetryConfig;
use autotag_infra::s3::S3Config;
use autotag_infra::shutdown::ShutdownConfig;
use autotag_infra::telemetry::MetricsConfig;
pub use autotag_model::FramesConfig;
use autotag_model::ModelConfig;
use gifcodec::DecodeLimits;

use crate::thread_priority::ThreadPriority;
use serde::{Deserialize, Serialize};

/// The whole worker configuration.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerConfig {
    pub kafka: KafkaConfig,
    pub s3: S3Config,
    pub model: ModelConfig,
    pub frames: FramesConfig,
    pub batch: BatchConfig,
    pub pipeline: PipelineConfig,
    pub lanes: LanesConfig,
    pub limits: DecodeLimits,
    pub retry: RetryConfig,
    pub metrics: MetricsConfig,
    pub shutdown: ShutdownConfig,
}

impl ServiceConfig for WorkerConfig {
    const SECTIONS: &'static [&'static str] =
        &["kafka", "s3", "model", "frames", "batch", "pipeline", "lanes", "limits", "retry", "metrics", "shutdown"];

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(m.to_owned()));
        if self.kafka.brokers.trim().is_empty() {
            return bad("kafka.brokers is empty");
        }
        if self.frames.per_gif == 0 {
            return bad("frames.per_gif must be >= 1");
        }
        if self.model.instances == 0 {
            return bad("model.instances must be >= 1");
        }
        if self.batch.max_batch == 0 {
            return bad("batch.max_batch must be >= 1");
        }
        if self.pipeline.max_in_flight == 0 || self.pipeline.channel_capacity == 0 {
            return bad("pipeline.max_in_flight and pipeline.channel_capacity must be >= 1");
        }
        self.s3.validate().map_err(ConfigError::Invalid)?;
        if !(self.lanes.backfill_share > 0.0 && self.lanes.backfill_share <= 1.0) {
            return bad("lanes.backfill_share must be within (0, 1]");
        }
        if self.lanes.backfill_instances == 0 {
            return bad("lanes.backfill_instances must be at least 1");
        }
        if self.lanes.backfill_enabled && self.lanes.backfill_topic == self.kafka.topics.uploads {
            return bad("lanes.backfill_topic must not be kafka.topics.uploads");
        }
        Ok(())
    }
}

impl WorkerConfig {
    /// Decode threads to use (resolves 0 = all cores).
    pub fn decode_threads(&self) -> usize {
        match self.pipeline.decode_threads {
            0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
            n => n,
        }
    }
}

/// The backfill lane (`[lanes]`, issue 15): historical GIFs replayed by `autotag backfill` fill
/// idle capacity and give way to live uploads. Lanes are decided by topic, not by the event's
/// `source`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LanesConfig {
    /// Consume the backfill topic at all.
    pub backfill_enabled: bool,
    /// The backfill topic; consumed by its own consumer in the group `<kafka.group_id>-backfill`
    /// (its offsets and rebalances never touch the live lane's).
    pub backfill_topic: String,
    /// The backfill lane's share of `pipeline.max_in_flight` (at least one event), on top of
    /// the live lane's own `max_in_flight`; it takes no new event while live work waits.
    /// Small on purpose: the fetch stage, the Kafka clients and the broker serve both lanes at
    /// the same priority. 0.05 (13 events) keeps backfill at ~40 GIFs/s over a 33 GIFs/s live
    /// load on 2 cores (`cargo bench --bench priority`, docs/benchmarks.md); 0.5, when the
    /// lanes still shared threads, raised live p99 to 1.5 s.
    pub backfill_share: f64,
    /// CPU priority of the backfill lane's own decode and model threads
    /// ([`crate::thread_priority`]): `idle` (`SCHED_IDLE`, the default), `low` (nice 19) or
    /// `normal`. The kernel gives live work the CPU first, and backfill what live leaves.
    pub backfill_priority: ThreadPriority,
    /// Model instance threads of the backfill lane's own pool (at least 1), beside the live
    /// lane's `model.instances`; all share the one loaded model. 2 (as many as the live lane):
    /// with no live work backfill has the whole machine; at `idle` priority live p99 stayed
    /// at 1.15× its value without backfill on 2 cores (priority bench, docs/benchmarks.md).
    pub backfill_instances: usize,
}

impl Default for LanesConfig {
    fn default() -> Self {
        Self {
            backfill_enabled: true,
            backfill_topic: "gif-backfill".into(),
            backfill_share: 0.05,
            backfill_priority: ThreadPriority::Idle,
            backfill_instances: 2,
        }
    }
}

/// Dynamic batching of frames across GIFs.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct BatchConfig {
    /// Most frames in one forward pass.
    pub max_batch: usize,
    /// Longest a frame waits for its batch to fill before the batch is run
    /// anyway (`max_delay_ms`). Bounds latency at low load.
    #[serde(rename = "max_delay_ms", with = "millis")]
    pub max_delay: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self { max_batch: 4, max_delay: Duration::from_millis(20) }
    }
}

/// Concurrency and buffering of the pipeline.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PipelineConfig {
    /// Upload events in flight (consumed, not yet committed-ready). This is
    /// the memory bound of the worker: when it is reached the consumer
    /// pauses its partitions.
    pub max_in_flight: usize,
    /// Capacity of each bounded channel between stages.
    pub channel_capacity: usize,
    /// GIF decode threads. 0 = number of cores.
    pub decode_threads: usize,
    /// How long the source waits for in-flight capacity before it pauses
    /// the partitions (`pause_after_ms`; avoids pause/resume flapping, which
    /// discards librdkafka's prefetched messages).
    #[serde(rename = "pause_after_ms", with = "millis")]
    pub pause_after: Duration,
    /// Decode work per GIF is abandoned after this long (`decode_timeout_ms`;
    /// dead letter `timeout`).
    #[serde(rename = "decode_timeout_ms", with = "millis")]
    pub decode_timeout: Duration,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            max_in_flight: 256,
            channel_capacity: 64,
            decode_threads: 1,
            pause_after: Duration::from_millis(200),
            decode_timeout: Duration::from_millis(30_000),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use autotag_infra::config::load_with_env;
    use autotag_model::{DeviceChoice, PrecisionChoice};
    use std::path::Path;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn default_file_loads_and_matches_code_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/default.toml");
        let cfg = load_with_env::<WorkerConfig>(Some(&path), env(&[])).expect("default.toml loads");
        assert_eq!(cfg.kafka.topics.uploads, "gif-uploads");
        assert_eq!(cfg.kafka.topics.suggestions, "gif-tag-suggestions");
        assert_eq!(cfg.kafka.topics.dead_letters, "gif-uploads-dlq");
        assert!(cfg.frames.per_gif >= 1);
    }

    #[test]
    fn env_overrides_every_level() {
        let cfg = load_with_env::<WorkerConfig>(
            None,
            env(&[
                ("AUTOTAG__KAFKA__BROKERS", "10.0.0.1:9092"),
                ("AUTOTAG__KAFKA__GROUP_ID", "g2"),
                ("AUTOTAG__KAFKA__TOPICS__UPLOADS", "up"),
                ("AUTOTAG__KAFKA__CONSUMER__SESSION_TIMEOUT_MS", "2000"),
                ("AUTOTAG__BATCH__MAX_BATCH", "7"),
                ("AUTOTAG__MODEL__INSTANCES", "3"),
                ("AUTOTAG__MODEL__DEVICE", "cpu"),
                ("AUTOTAG__S3__FORCE_PATH_STYLE", "false"),
                ("AUTOTAG__LIMITS__MAX_FRAMES", "10"),
                ("OTHER__IGNORED", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(cfg.kafka.brokers, "10.0.0.1:9092");
        assert_eq!(cfg.kafka.group_id, "g2");
        assert_eq!(cfg.kafka.topics.uploads, "up");
        assert_eq!(cfg.kafka.consumer.0.get("session.timeout.ms").map(String::as_str), Some("2000"));
        assert_eq!(cfg.batch.max_batch, 7);
        assert_eq!(cfg.model.instances, 3);
        assert_eq!(cfg.model.device, DeviceChoice::Cpu);
        assert!(!cfg.s3.force_path_style);
        assert_eq!(cfg.limits.max_frames, 10);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        assert!(load_with_env::<WorkerConfig>(None, env(&[("AUTOTAG__KAFKA__BROKER", "x")])).is_err());
        assert!(load_with_env::<WorkerConfig>(None, env(&[("AUTOTAG__BATCH__MAX_BATCH", "0")])).is_err());
        assert!(load_with_env::<WorkerConfig>(None, env(&[("AUTOTAG__BATCH__MAX_BATCH", "lots")])).is_err());
        assert!(load_with_env::<WorkerConfig>(None, env(&[("AUTOTAG__KAFKA__BROKERS__X", "1")])).is_err());
        // The download budget must hold the largest accepted object.
        assert!(load_with_env::<WorkerConfig>(None, env(&[("AUTOTAG__S3__MAX_BYTES_IN_FLIGHT", "1048576")])).is_err());
        // `model.fp16` became `model.precision`: the old key is refused, not silently ignored.
        assert!(load_with_env::<WorkerConfig>(None, env(&[("AUTOTAG__MODEL__FP16", "true")])).is_err());
        assert!(load_with_env::<WorkerConfig>(None, env(&[("AUTOTAG__MODEL__PRECISION", "fp8")])).is_err());
    }

    #[test]
    fn precision_is_named() {
        for (v, want) in [
            ("auto", PrecisionChoice::Auto),
            ("fp32", PrecisionChoice::Fp32),
            ("fp16", PrecisionChoice::Fp16),
            ("bf16", PrecisionChoice::Bf16),
        ] {
            let cfg = load_with_env::<WorkerConfig>(None, env(&[("AUTOTAG__MODEL__PRECISION", v)])).expect(v);
            assert_eq!(cfg.model.precision, want);
        }
    }
}
