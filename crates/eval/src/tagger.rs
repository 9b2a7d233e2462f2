//! One GIF's tags, as the worker computes them, without Kafka: the codec's decode and sampling
//! ([`gifcodec::decode_and_sample`]), one forward pass of the sampled frames through the
//! [`Backend`], and the model's scoring data ([`autotag_model::scoring`]: content-free frames
//! dropped, scenes pooled, per-tag thresholds). The worker runs the same functions, batching
//! frames across GIFs.

use autotag_contract::TagScore;
use autotag_model::scoring::{Accumulator, frame_lumas};
use autotag_model::{Backend, ModelInfo};
use gifcodec::{DecodeLimits, SampleSpec, decode_and_sample};

/// What the model says of one GIF.
#[derive(Debug, Clone)]
pub struct Tagged {
    /// The suggestions, best first (what the worker would publish).
    pub tags: Vec<TagScore>,
    /// The GIF's score of every vocabulary tag (its best scene's mean), in vocabulary order:
    /// `eval` ranks the whole vocabulary by it.
    pub scores: Vec<f32>,
    pub frames_sampled: usize,
    /// Each sampled frame's scores (vocabulary order) and its luma std ([`frame_lumas`]): what calibration of
    /// the scoring reads (`autotag eval --dump-frames`).
    pub frames: Vec<FrameScores>,
}

/// One sampled frame, as the model saw it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FrameScores {
    pub luma_std: f32,
    pub scores: Vec<f32>,
}

/// Why a GIF got no tags: the dead-letter reason the worker would give, and a message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct TagError {
    pub reason: String,
    pub message: String,
}

/// A loaded model with the worker's sampling and scoring settings.
pub struct Tagger {
    pub backend: Box<dyn Backend>,
    pub info: ModelInfo,
    pub frames_per_gif: usize,
    pub limits: DecodeLimits,
}

impl Tagger {
    /// Tag one GIF's bytes.
    ///
    /// # Errors
    /// The decoder's error (reason: its dead-letter code, e.g. `not_a_gif`, `truncated`), or the
    /// model's (`inference_failed`).
    pub fn tag(&self, bytes: &[u8]) -> Result<Tagged, TagError> {
        let spec = SampleSpec { frames: self.frames_per_gif, size: self.info.side };
        let frames = decode_and_sample(bytes, spec, &self.limits)
            .map_err(|e| TagError { reason: e.reason().to_owned(), message: e.to_string() })?;
        let _no_grad = autotag_model::torch::no_grad_guard();
        let out = self
            .backend
            .forward(&frames.rgb, frames.count)
            .map_err(|e| TagError { reason: e.reason().as_str().to_owned(), message: e.to_string() })?;
        let n = self.backend.num_tags();
        let mut acc = Accumulator::new(n, frames.count);
        let mut per_frame = Vec::with_capacity(frames.count);
        for (i, (frame, luma)) in out.chunks(n).zip(frame_lumas(&frames.rgb, self.info.side)).enumerate() {
            acc.set_frame(i, frame, luma);
            per_frame.push(FrameScores { luma_std: luma, scores: frame.to_vec() });
        }
        let scored = self.info.scoring.apply(&acc, &self.info.tags);
        Ok(Tagged { tags: scored.tags, scores: scored.scores, frames_sampled: frames.count, frames: per_frame })
    }
}
