//! The [`Backend`] trait: what turns frames into tag scores, and its error.
//!
//! TorchScript is deprecated upstream in favour of torch.export/AOTInductor; a replacement
//! backend only has to implement this trait. The worker never names a backend's type.

use autotag_contract::Reason;

/// Why the model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("model directory {path}: {message}")]
    Model { path: String, message: String },
    #[error("CUDA requested but not available")]
    NoCuda,
    #[error("forward pass failed: {0}")]
    Forward(String),
}

impl ModelError {
    /// Dead-letter reason of a GIF whose frames could not be run.
    pub fn reason(&self) -> Reason {
        Reason::InferenceFailed
    }
}

/// Turns uint8 NHWC frames into tag scores. Shared by the model instance
/// threads, so `forward` takes `&self`.
pub trait Backend: Send + Sync {
    fn num_tags(&self) -> usize;
    /// `frames`: `n × side × side × 3` bytes. Returns `n × num_tags` scores.
    fn forward(&self, frames: &[u8], n: usize) -> Result<Vec<f32>, ModelError>;
}
