//! The model: what turns sampled frames into tag scores, and scores into suggestions.
//!
//! **Owns** the model directory's manifest and its sha256 check ([`manifest`]), the device and
//! precision policy ([`device`]), allocator tuning for a CPU model ([`allocator`]), the
//! [`Backend`] trait and its TorchScript implementation ([`torch`]), warm-up and batch buckets
//! ([`warmup`]), which sampled frames the model runs on ([`skip`]) and the scoring data that
//! turns frame scores into a GIF's tags ([`scoring`]).
//!
//! **Promises**: a loaded model was checked against its manifest (shape, vocabulary, sha256);
//! every batch shape a caller will run can be warmed up before it reports ready.
//!
//! **Limits**: this is the only crate of ours that links libtorch. A service that needs no
//! model must not depend on it (`scripts/test` checks the built binaries).
//!
//! **Never imports** a service crate, the GIF codec (except in its tests) or Kafka/S3.

pub mod allocator;
pub mod backend;
pub mod config;
pub mod device;
pub mod manifest;
pub mod scoring;
pub mod skip;
pub mod torch;
pub mod warmup;

pub use backend::{Backend, ModelError};
pub use config::{FramesConfig, ModelConfig};
pub use device::{DeviceChoice, Precision, PrecisionChoice};
pub use torch::{TorchBackend, load_torch};

use autotag_contract::ModelRef;

/// What a service needs to know about the loaded model.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub model: ModelRef,
    /// Input side in pixels: frames are `side × side × 3` u8.
    pub side: u32,
    /// The vocabulary: score `i` of a frame belongs to `tags[i]`.
    pub tags: Vec<String>,
    /// How frame scores become suggestions: the model directory's scoring data, checked
    /// against `tags` ([`scoring`]).
    pub scoring: std::sync::Arc<scoring::ScoringRules>,
    /// For logs: `cpu (1 threads) bf16`, `Cuda(0) fp16`, ….
    pub device: String,
    /// "fp32", "fp16" or "bf16": what the weights are after loading
    /// (`model.precision = "fp16"` is refused on CPU, and anything but fp32
    /// for a model without parameters).
    pub precision: &'static str,
}

#[cfg(test)]
pub(crate) mod tests_support {
    use std::path::PathBuf;

    /// The checkout (this crate lives in `crates/model`).
    pub fn repo() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    /// The exported default model (`scripts/setup`).
    pub fn model_dir() -> PathBuf {
        repo().join(".local/models/efficientnet-lite0")
    }
}
