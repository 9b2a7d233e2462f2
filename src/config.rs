//! Configuration: one typed tree, documented where it is declared.
//!
//! Loaded from a TOML file (`config/default.toml` is the reference) and then
//! overridden by environment variables named `AUTOTAG__SECTION__KEY`
//! (double underscores separate levels; `AUTOTAG__KAFKA__BROKERS=host:9092`,
//! `AUTOTAG__KAFKA__CONSUMER__SESSION_TIMEOUT_MS=2000`). An override value is
//! parsed as a TOML literal when it is one (`42`, `true`, `["a","b"]`) and taken
//! as a plain string otherwise. Unknown keys are errors: a typo in production
//! config should fail at start, not be silently ignored.
//!
//! S3 credentials, region and endpoint deliberately do *not* live here: they
//! come from the standard AWS environment (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT_URL_S3` /
//! `AWS_ENDPOINT_URL`, profiles, instance roles) so that operators use the
//! tooling they already have.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::pipeline::decode::DecodeLimits;

/// Prefix of environment overrides.
pub const ENV_PREFIX: &str = "AUTOTAG__";

/// Errors while loading configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid config: {0}")]
    Parse(String),
    #[error("invalid environment override {var}: {message}")]
    Env { var: String, message: String },
    #[error("invalid config value: {0}")]
    Invalid(String),
}

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub kafka: KafkaConfig,
    pub s3: S3Config,
    pub model: ModelConfig,
    pub frames: FramesConfig,
    pub batch: BatchConfig,
    pub pipeline: PipelineConfig,
    pub limits: DecodeLimits,
    pub retry: RetryConfig,
    pub metrics: MetricsConfig,
    pub shutdown: ShutdownConfig,
}

/// Kafka connection, topics and librdkafka pass-through settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port[,host:port]`.
    pub brokers: String,
    /// Consumer group of the workers. All replicas of one deployment share it.
    pub group_id: String,
    pub topics: TopicsConfig,
    /// How often the contiguous offset watermark is committed. Commits are
    /// cheap but not free; a crash re-delivers at most this much work.
    pub commit_interval_ms: u64,
    /// Extra librdkafka consumer properties, passed through verbatim
    /// (`session.timeout.ms`, `heartbeat.interval.ms`, `security.protocol`, …).
    /// Keys may use `_` instead of `.` so they can be set from the environment.
    pub consumer: BTreeMap<String, String>,
    /// Extra librdkafka producer properties, passed through verbatim.
    pub producer: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".into(),
            group_id: "autotag-worker".into(),
            topics: TopicsConfig::default(),
            commit_interval_ms: 500,
            consumer: BTreeMap::new(),
            producer: BTreeMap::new(),
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

/// S3 client settings that are not part of the standard AWS environment.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Config {
    /// Path-style addressing (`http://host/bucket/key`). Needed by MinIO,
    /// s3s-fs and most S3-compatible servers; AWS itself prefers virtual-host
    /// style.
    pub force_path_style: bool,
    /// Maximum concurrent GetObject requests. Fetching is I/O-bound, so this
    /// can be much larger than the number of cores.
    pub max_concurrent_fetches: usize,
    /// Largest object the worker will download, checked from the object's
    /// size before the body is read. Bigger objects are dead-lettered as
    /// `too_large`.
    pub max_object_bytes: u64,
    /// Downloaded bytes the pipeline holds at once, from a GetObject
    /// response until that GIF is decoded: the memory bound of fetching,
    /// which `max_concurrent_fetches × max_object_bytes` alone would leave at
    /// gigabytes. A response whose object does not fit waits for room before
    /// its body is read (the wait does not count towards the request
    /// timeout). Must be at least `max_object_bytes`.
    pub max_bytes_in_flight: u64,
    /// Timeout of one GetObject attempt (headers, and the body separately).
    pub request_timeout_ms: u64,
}

impl Default for S3Config {
    fn default() -> Self {
        Self {
            force_path_style: true,
            max_concurrent_fetches: 16,
            max_object_bytes: 32 * 1024 * 1024,
            max_bytes_in_flight: 256 * 1024 * 1024,
            request_timeout_ms: 10_000,
        }
    }
}

/// Which device runs the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// CUDA when available, else CPU.
    Auto,
    Cpu,
    Cuda,
}

/// Numeric precision of the model's weights and activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PrecisionChoice {
    /// The fastest precision the device runs natively: fp16 on CUDA; bf16 on a
    /// CPU with native bfloat16 (AVX512-BF16, which AMX CPUs also have); fp32
    /// elsewhere (emulated bf16 is slower than fp32).
    Auto,
    Fp32,
    /// CUDA only (CPUs have no fast fp16 convolutions): refused with a warning on CPU.
    Fp16,
    /// bfloat16: fp32's range with 8 bits of mantissa. Native on recent x86
    /// (AVX512-BF16/AMX) and on GPUs from Ampere on.
    Bf16,
}

/// The model and how it is run.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// Directory holding `model.pt`, `model.json` and `tags.json`
    /// (written by `tools/export_model.py`).
    pub dir: PathBuf,
    /// `auto`, `cpu` or `cuda`.
    pub device: DeviceChoice,
    /// `auto`, `fp32`, `fp16` or `bf16`. Anything but fp32 casts the module's
    /// parameters, so the export must keep them (the default export does; a
    /// frozen one runs fp32 with a warning). Measured: fp16 is 1.3-1.5x fp32 on
    /// an H100 at batch >= 32; bf16 is ~1.75x fp32 on an AMX Xeon
    /// (docs/benchmarks*.md). Scores move by at most a few hundredths.
    pub precision: PrecisionChoice,
    /// libtorch intra-op threads on CPU. 0 = libtorch's default (all cores).
    /// On small machines leave room for GIF decoding: the two fight for cores.
    pub threads: usize,
    /// Model instance threads sharing the loaded model, each running its own
    /// forward passes (CPU: `threads` each; use instances × threads ≤ cores).
    /// On small CPUs several single-threaded instances keep the cores busier
    /// than one multi-threaded forward, which stalls whenever another thread
    /// (decode, I/O) takes a core.
    pub instances: usize,
    /// At most this many tags per suggestion.
    pub top_k: usize,
    /// Tags scoring below this are not suggested.
    pub threshold: f32,
    /// Verify the sha256 of `model.pt` against `model.json` at load.
    pub verify_sha256: bool,
    /// When the model runs on CPU, keep freed memory for reuse (glibc only;
    /// process-wide): serve allocations
    /// below 32 MiB from the heap and trim it only past 512 MiB free. A forward
    /// pass allocates activation buffers of several MiB; by default glibc maps
    /// and unmaps them each time, so every pass page-faults them in again. On
    /// this 2-core Xeon that cost 25-30% of a batch-4 forward. Not applied on
    /// CUDA (activations live on the GPU there), nor when
    /// `MALLOC_MMAP_THRESHOLD_` or `MALLOC_TRIM_THRESHOLD_` is set.
    pub reuse_freed_memory: bool,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from(".local/models/efficientnet-lite0"),
            device: DeviceChoice::Auto,
            precision: PrecisionChoice::Auto,
            threads: 1,
            instances: 2,
            top_k: 5,
            threshold: 0.2,
            verify_sha256: true,
            reuse_freed_memory: true,
        }
    }
}

/// Frame sampling.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct FramesConfig {
    /// Frames sampled per GIF, spread evenly over the animation.
    pub per_gif: usize,
}

impl Default for FramesConfig {
    fn default() -> Self {
        Self { per_gif: 8 }
    }
}

/// Dynamic batching of frames across GIFs.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct BatchConfig {
    /// Most frames in one forward pass.
    pub max_batch: usize,
    /// Longest a frame waits for its batch to fill before the batch is run
    /// anyway. Bounds latency at low load.
    pub max_delay_ms: u64,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self { max_batch: 4, max_delay_ms: 20 }
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
    /// the partitions (avoids pause/resume flapping, which discards
    /// librdkafka's prefetched messages).
    pub pause_after_ms: u64,
    /// Decode work per GIF is abandoned after this long (dead letter
    /// `timeout`).
    pub decode_timeout_ms: u64,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            max_in_flight: 256,
            channel_capacity: 64,
            decode_threads: 1,
            pause_after_ms: 200,
            decode_timeout_ms: 30_000,
        }
    }
}

/// Retries of transient failures (S3 5xx/timeouts, broker produce errors).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// First backoff.
    pub initial_backoff_ms: u64,
    /// Cap of the exponential backoff.
    pub max_backoff_ms: u64,
    /// After this many failed attempts of one request the dependency is
    /// considered down: the event is *not* dead-lettered, the worker keeps
    /// retrying at the capped backoff and stops taking new work until it
    /// recovers.
    pub attempts_before_degraded: u32,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self { initial_backoff_ms: 100, max_backoff_ms: 5_000, attempts_before_degraded: 5 }
    }
}

/// HTTP endpoint for `/metrics`, `/healthz`, `/readyz`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Listen address; empty disables the endpoint.
    pub listen: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self { listen: "127.0.0.1:9464".into() }
    }
}

/// Graceful shutdown.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownConfig {
    /// After SIGTERM/SIGINT, in-flight work has this long to finish before it
    /// is abandoned (uncommitted, so it is redone by the next owner).
    pub deadline_ms: u64,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self { deadline_ms: 10_000 }
    }
}

impl Config {
    /// Load `path` (if given) and apply `AUTOTAG__…` overrides from the process
    /// environment.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_with_env(path, std::env::vars())
    }

    /// As [`Config::load`] with an explicit environment (testable).
    pub fn load_with_env(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut root = match path {
            Some(p) => {
                let text =
                    std::fs::read_to_string(p).map_err(|source| ConfigError::Read { path: p.to_owned(), source })?;
                text.parse::<toml::Table>().map_err(|e| ConfigError::Parse(e.to_string()))?
            }
            None => toml::Table::new(),
        };
        let mut vars: Vec<(String, String)> = env.into_iter().filter(|(k, _)| k.starts_with(ENV_PREFIX)).collect();
        vars.sort();
        for (var, value) in vars {
            apply_override(&mut root, &var, &value)?;
        }
        let mut cfg: Config =
            toml::Value::Table(root).try_into().map_err(|e: toml::de::Error| ConfigError::Parse(e.to_string()))?;
        cfg.normalise();
        cfg.validate()?;
        Ok(cfg)
    }

    /// librdkafka keys may be written with `_` (env-friendly); normalise to `.`.
    fn normalise(&mut self) {
        for map in [&mut self.kafka.consumer, &mut self.kafka.producer] {
            *map = std::mem::take(map).into_iter().map(|(k, v)| (k.replace('_', "."), v)).collect();
        }
    }

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
        if self.s3.max_concurrent_fetches == 0 {
            return bad("s3.max_concurrent_fetches must be >= 1");
        }
        if self.s3.max_bytes_in_flight < self.s3.max_object_bytes {
            return bad("s3.max_bytes_in_flight must be >= s3.max_object_bytes (else a large object could never fit)");
        }
        if self.s3.max_bytes_in_flight / 1024 > u64::from(u32::MAX) {
            return bad("s3.max_bytes_in_flight must be below 4 TiB");
        }
        if !(0.0..=1.0).contains(&self.model.threshold) {
            return bad("model.threshold must be within [0, 1]");
        }
        Ok(())
    }

    /// Decode threads to use (resolves 0 = all cores).
    pub fn decode_threads(&self) -> usize {
        match self.pipeline.decode_threads {
            0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
            n => n,
        }
    }
}

/// Apply one `AUTOTAG__A__B__C=value` override to the TOML tree.
fn apply_override(root: &mut toml::Table, var: &str, value: &str) -> Result<(), ConfigError> {
    let err = |message: String| ConfigError::Env { var: var.to_owned(), message };
    let path: Vec<String> = var[ENV_PREFIX.len()..].split("__").map(|s| s.to_ascii_lowercase()).collect();
    if path.iter().any(|p| p.is_empty()) {
        return Err(err("empty path segment".into()));
    }
    let (last, parents) = path.split_last().ok_or_else(|| err("no key".into()))?;
    let mut table = root;
    for p in parents {
        let entry = table.entry(p.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = entry.as_table_mut().ok_or_else(|| err(format!("`{p}` is not a section")))?;
    }
    // librdkafka pass-through maps hold strings; everything else gets a typed literal.
    let passthrough = matches!(parents.last().map(String::as_str), Some("consumer" | "producer"));
    let parsed = if passthrough { toml::Value::String(value.to_owned()) } else { parse_literal(value) };
    table.insert(last.clone(), parsed);
    Ok(())
}

/// `42` → integer, `true` → bool, `["a"]` → array, anything else → string.
fn parse_literal(value: &str) -> toml::Value {
    let doc = format!("v = {value}");
    match doc.parse::<toml::Table>() {
        Ok(mut t) => t.remove("v").unwrap_or_else(|| toml::Value::String(value.to_owned())),
        Err(_) => toml::Value::String(value.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn default_file_loads_and_matches_code_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/default.toml");
        let cfg = Config::load_with_env(Some(&path), env(&[])).expect("default.toml loads");
        assert_eq!(cfg.kafka.topics.uploads, "gif-uploads");
        assert_eq!(cfg.kafka.topics.suggestions, "gif-tag-suggestions");
        assert_eq!(cfg.kafka.topics.dead_letters, "gif-uploads-dlq");
        assert!(cfg.frames.per_gif >= 1);
    }

    #[test]
    fn env_overrides_every_level() {
        let cfg = Config::load_with_env(
            None,
            env(&[
                ("AUTOTAG__KAFKA__BROKERS", "10.0.0.1:9092"),
                ("AUTOTAG__KAFKA__GROUP_ID", "g2"),
                ("AUTOTAG__KAFKA__TOPICS__UPLOADS", "up"),
                ("AUTOTAG__KAFKA__CONSUMER__SESSION_TIMEOUT_MS", "2000"),
                ("AUTOTAG__BATCH__MAX_BATCH", "7"),
                ("AUTOTAG__MODEL__THRESHOLD", "0.25"),
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
        assert_eq!(cfg.kafka.consumer.get("session.timeout.ms").map(String::as_str), Some("2000"));
        assert_eq!(cfg.batch.max_batch, 7);
        assert!((cfg.model.threshold - 0.25).abs() < 1e-6);
        assert_eq!(cfg.model.device, DeviceChoice::Cpu);
        assert!(!cfg.s3.force_path_style);
        assert_eq!(cfg.limits.max_frames, 10);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        assert!(Config::load_with_env(None, env(&[("AUTOTAG__KAFKA__BROKER", "x")])).is_err());
        assert!(Config::load_with_env(None, env(&[("AUTOTAG__BATCH__MAX_BATCH", "0")])).is_err());
        assert!(Config::load_with_env(None, env(&[("AUTOTAG__BATCH__MAX_BATCH", "lots")])).is_err());
        assert!(Config::load_with_env(None, env(&[("AUTOTAG__KAFKA__BROKERS__X", "1")])).is_err());
        // The download budget must hold the largest accepted object.
        assert!(Config::load_with_env(None, env(&[("AUTOTAG__S3__MAX_BYTES_IN_FLIGHT", "1048576")])).is_err());
        // `model.fp16` became `model.precision`: the old key is refused, not silently ignored.
        assert!(Config::load_with_env(None, env(&[("AUTOTAG__MODEL__FP16", "true")])).is_err());
        assert!(Config::load_with_env(None, env(&[("AUTOTAG__MODEL__PRECISION", "fp8")])).is_err());
    }

    #[test]
    fn precision_is_named() {
        for (v, want) in [
            ("auto", PrecisionChoice::Auto),
            ("fp32", PrecisionChoice::Fp32),
            ("fp16", PrecisionChoice::Fp16),
            ("bf16", PrecisionChoice::Bf16),
        ] {
            let cfg = Config::load_with_env(None, env(&[("AUTOTAG__MODEL__PRECISION", v)])).expect(v);
            assert_eq!(cfg.model.precision, want);
        }
    }
}
