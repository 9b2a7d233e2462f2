//! The worker's metrics: every name the worker emits, once, so that dashboards and alerts have
//! one reference. The infrastructure's own (retries, offset commits) are in
//! `autotag_infra::telemetry`; logs, `/metrics`, `/healthz`, `/readyz` are served from there.

pub const EVENTS_CONSUMED: &str = "autotag_events_consumed_total";
pub const SUGGESTIONS_PUBLISHED: &str = "autotag_suggestions_published_total";
pub const DEAD_LETTERS: &str = "autotag_dead_letters_total";
pub const BATCH_SIZE: &str = "autotag_batch_size_frames";
pub const STAGE_SECONDS: &str = "autotag_stage_duration_seconds";
pub const END_TO_END_SECONDS: &str = "autotag_upload_to_suggestion_seconds";
pub const MODEL_LOAD_SECONDS: &str = "autotag_model_load_seconds";
pub const MODEL_WARMUP_SECONDS: &str = "autotag_model_warmup_seconds";
pub const IN_FLIGHT: &str = "autotag_events_in_flight";
pub const CONSUMER_PAUSED: &str = "autotag_consumer_paused";
/// Partitions paused for backpressure now, by lane (issue 24).
pub const PAUSED_PARTITIONS: &str = "autotag_kafka_paused_partitions";
/// Sampled frames not sent to the model, by reason (`blank`, `duplicate`: issue 16).
pub const FRAMES_SKIPPED: &str = "autotag_frames_skipped_total";

/// The readiness condition set once the model is loaded and warmed up.
pub const MODEL_READY: &str = "model_ready";

/// Histogram buckets of the worker's non-seconds histograms (frames per forward pass).
pub const BUCKETS: &[(&str, &[f64])] = &[(BATCH_SIZE, &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0])];

/// Describe the worker's metrics to the installed recorder.
pub fn describe() {
    metrics::describe_counter!(EVENTS_CONSUMED, "Upload events read from Kafka");
    metrics::describe_counter!(SUGGESTIONS_PUBLISHED, "Suggestions acknowledged by the broker");
    metrics::describe_counter!(DEAD_LETTERS, "Dead letters acknowledged, by stage and reason");
    metrics::describe_histogram!(BATCH_SIZE, "Frames per forward pass");
    metrics::describe_histogram!(STAGE_SECONDS, "Time spent per stage, per GIF (per batch for infer)");
    metrics::describe_histogram!(END_TO_END_SECONDS, "uploaded_at to suggestion acknowledged");
    metrics::describe_gauge!(MODEL_LOAD_SECONDS, "Time to load the model");
    metrics::describe_gauge!(MODEL_WARMUP_SECONDS, "Time to warm the model up with every batch shape");
    metrics::describe_gauge!(IN_FLIGHT, "Upload events consumed and not yet finished");
    metrics::describe_gauge!(CONSUMER_PAUSED, "1 while the consumer is paused for backpressure");
    metrics::describe_gauge!(PAUSED_PARTITIONS, "Partitions paused for backpressure now, by lane");
    metrics::describe_counter!(FRAMES_SKIPPED, "Sampled frames not inferred, by reason (blank, duplicate)");
}
