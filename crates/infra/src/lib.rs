//! Shared infrastructure of autotag's services.
//!
//! **Owns** what every service needs and none should write twice:
//! - [`config`]: loading one typed tree per service from `config/default.toml` plus
//!   `AUTOTAG__SECTION__KEY` environment overrides, generic over the service's config type;
//! - [`kafka`]: the one builder of every Kafka client (bootstrap, our defaults, the operator's
//!   pass-through keys, including SASL/TLS), the acked producer's settings;
//! - [`offsets`] and [`consumer`]: the contiguous offset watermark, and the group consumer
//!   that commits it and records a commit only once the broker confirmed it;
//! - [`producer`]: the producer handle every service sends through, rebuilt when librdkafka
//!   says it can no longer deliver;
//! - [`s3`]: the S3 client, size-checked GETs with error classification, the byte budget;
//! - [`retry`]: capped exponential backoff with jitter, and the retrier that marks a
//!   dependency degraded;
//! - [`shutdown`]: two-step shutdown (stop, then abort at the deadline) and the signals;
//! - [`telemetry`]: logs, the Prometheus recorder, health and the `/metrics` `/healthz`
//!   `/readyz` server.
//!
//! **Promises**: no unbounded buffering and no hidden retries (the S3 SDK's own retries are off
//! so that every attempt is counted in `autotag_retries_total`).
//!
//! **Never imports** a model, libtorch or any service crate: it depends on `contract` only, so a
//! torch-free service links nothing heavier than librdkafka and the AWS SDK.

pub mod config;
pub mod consumer;
pub mod kafka;
pub mod offsets;
pub mod producer;
pub mod retry;
pub mod s3;
pub mod shutdown;
pub mod telemetry;
