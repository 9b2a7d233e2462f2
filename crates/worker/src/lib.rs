//! The worker: tags every uploaded GIF.
//!
//! **Owns** the pipeline stages and their wiring. Data flows one way through bounded channels:
//!
//! ```text
//! Kafka gif-uploads ─► source ─► fetch (S3) ─► decode (CPU pool) ─► batch ─► infer (model instances)
//!                        ▲                                                        │
//!                        └──── offsets: contiguous watermark ◄── publish ◄────────┘
//!                                                          (gif-tag-suggestions / gif-uploads-dlq)
//! Kafka gif-backfill ─► source ─► fetch ─► decode (idle prio) ─► batch ─► infer (own threads, idle prio)
//! ```
//!
//! The backfill lane (issue 15) has its own consumer group, in-flight cap, decode threads,
//! batches and model threads, at a lower CPU priority ([`thread_priority`]); it shares the
//! fetch stage and publish with the live lane.
//!
//! **Promises**: every consumed upload event ends as exactly one suggestion or one dead letter
//! with a `contract::Reason`; an offset is committed only after that outcome, and those of every
//! earlier record of its partition, were acknowledged by the broker (at least once, with
//! deterministic output ids). Memory is bounded by `pipeline.max_in_flight` events and
//! `s3.max_bytes_in_flight` bytes. See the README's delivery guarantees.
//!
//! **Never imports** another service crate. It builds on `contract`, `gifcodec`, `infra` and
//! `model`; it is the only service that links libtorch (through `model`).

pub mod config;
pub mod pipeline;
pub mod run;
pub mod telemetry;
pub mod thread_priority;

pub use config::WorkerConfig;
pub use run::run;
