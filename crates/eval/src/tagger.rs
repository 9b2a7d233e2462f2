//! One GIF's tags, as the worker computes them, without Kafka: the codec's decode and sampling
//! ([`gifcodec::decode_and_sample`]), one forward pass of the sampled frames through the
//! [`Backend`], and the model's scoring data ([`autotag_model::scoring`]: content-free frames
//! dropped, scenes pooled, per-tag thresholds). The worker runs the same functions, batching
//! frames across GIFs.

use std::sync::Arc;

use autotag_contract::TagScore;
use autotag_model::scoring::Accumulator;
use autotag_model::skip::{Work, plan};
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
    /// Distinct frames on screen at the sampled instants.
    pub frames_sampled: usize,
    /// Of those, the frames the model ran on ([`autotag_model::skip`]).
    pub frames_inferred: usize,
    /// Each sampled frame as scoring saw it: what calibration of the scoring reads
    /// (`autotag eval --dump-frames`).
    pub frames: Vec<FrameScores>,
}

/// One sampled frame, as scoring saw it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FrameScores {
    /// Its frame index in the GIF (display order).
    pub index: usize,
    /// How much it shows (`gifcodec::luma_std`, 0–255).
    pub luma_std: f32,
    /// Its share of the sampled display time.
    pub shown: f32,
    /// Signature distance (`gifcodec::FrameSignature::distance`, 0–255) to each earlier sampled
    /// frame, in order: what the duplicate threshold is calibrated on.
    pub distances: Vec<f32>,
    /// Colour histogram distance (`gifcodec::FrameSignature::histogram_distance`, 0–1) to each
    /// earlier sampled frame, in order.
    pub histogram_distances: Vec<f32>,
    /// Its scores (vocabulary order): its own, or those of the inferred frame it repeats; `None`
    /// for a blank frame that was not inferred.
    pub scores: Option<Vec<f32>>,
    /// Whether it went through the model.
    pub inferred: bool,
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
    /// Infer every sampled frame ([`Work::Full`]: the full-work baseline of issue 16's quality
    /// guard, and what calibration dumps); otherwise skip what the scoring data allows.
    pub full_work: bool,
}

impl Tagger {
    /// Tag one GIF's bytes.
    ///
    /// # Errors
    /// The decoder's error (reason: its dead-letter code, e.g. `not_a_gif`, `truncated`), or the
    /// model's (`inference_failed`).
    pub fn tag(&self, bytes: &[u8]) -> Result<Tagged, TagError> {
        let spec = SampleSpec { frames: self.frames_per_gif, size: self.info.side };
        let mut frames = decode_and_sample(bytes, spec, &self.limits)
            .map_err(|e| TagError { reason: e.reason().to_owned(), message: e.to_string() })?;
        let work = if self.full_work { Work::Full } else { self.info.scoring.scoring.work() };
        let luma: Vec<f32> = frames.signatures.iter().map(|s| s.luma_std).collect();
        let sigs = &frames.signatures;
        let scoring = &self.info.scoring.scoring;
        let distance = |a: usize, b: usize| {
            scoring.frame_distance(sigs[a].distance(&sigs[b]), sigs[a].histogram_distance(&sigs[b]))
        };
        let plan = Arc::new(plan(&luma, &frames.shown, distance, work));
        let distances: Vec<Vec<f32>> =
            (0..sigs.len()).map(|i| (0..i).map(|j| sigs[i].distance(&sigs[j])).collect()).collect();
        let histogram_distances: Vec<Vec<f32>> =
            (0..sigs.len()).map(|i| (0..i).map(|j| sigs[i].histogram_distance(&sigs[j])).collect()).collect();
        plan.compact(&mut frames.rgb, (self.info.side as usize).pow(2) * 3);
        let n = self.backend.num_tags();
        let out = if plan.inferred.is_empty() {
            Vec::new()
        } else {
            let _no_grad = autotag_model::torch::no_grad_guard();
            self.backend
                .forward(&frames.rgb, plan.inferred.len())
                .map_err(|e| TagError { reason: e.reason().as_str().to_owned(), message: e.to_string() })?
        };
        let mut acc = Accumulator::new(n, plan.clone());
        for (slot, scores) in out.chunks(n).enumerate() {
            acc.set_frame(slot, scores);
        }
        let per_frame = plan
            .frames
            .iter()
            .zip(distances.into_iter().zip(histogram_distances))
            .zip(&frames.indices)
            .map(|((f, (distances, histogram_distances)), &index)| FrameScores {
                index,
                luma_std: f.luma_std,
                shown: f.shown,
                distances,
                histogram_distances,
                scores: f.scores_from.and_then(|s| out.get(s * n..(s + 1) * n)).map(<[f32]>::to_vec),
                inferred: f.skipped.is_none(),
            })
            .collect();
        let scored = self.info.scoring.apply(&acc, &self.info.tags);
        Ok(Tagged {
            tags: scored.tags,
            scores: scored.scores,
            frames_sampled: plan.frames.len(),
            frames_inferred: plan.inferred.len(),
            frames: per_frame,
        })
    }
}
