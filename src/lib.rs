//! autotag: a streaming worker that suggests tags for uploaded GIFs.
//!
//! Data flows one way through bounded channels:
//!
//! ```text
//! Kafka gif-uploads ─► source ─► fetch (S3) ─► decode (CPU pool) ─► batch ─► infer (model thread)
//!                        ▲                                                        │
//!                        └──── offsets: contiguous watermark ◄── publish ◄────────┘
//!                                                          (gif-tag-suggestions / gif-uploads-dlq)
//! ```
//!
//! See `README.md` for the architecture and the delivery guarantees.

pub mod bench;
pub mod config;
pub mod contract;
pub mod ops;
pub mod pipeline;
pub mod tags;
pub mod telemetry;
pub mod worker;
