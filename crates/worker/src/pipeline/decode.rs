//! The decode stage: runs [`gifcodec::decode_and_sample`] on a bounded pool of blocking
//! threads, then plans the model work ([`autotag_model::skip`]: blank frames and near-duplicates
//! of an inferred frame are not inferred) and passes on only the frames to infer. The GIF codec
//! itself (limits, compositing, LZW, resize, frame signatures) is the `gifcodec` crate.
//!
//! Decoding is CPU-bound, so it must not run on the async runtime's threads
//! (it would stall Kafka polling and S3 I/O). A semaphore bounds the number
//! of concurrent decodes to `pipeline.decode_threads`; the permit moves into
//! the blocking closure, so even a decode that outlives its timeout keeps
//! its slot until it really ends: the pool never oversubscribes the cores.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, mpsc};
use tracing::{debug, warn};

use autotag_contract::{Reason, Stage};
use autotag_model::scoring::Scoring;
use autotag_model::skip::{FramePlan, SkipReason, plan};
use gifcodec::{DecodeError, DecodeLimits, SampleSpec, SampledFrames, decode_and_sample};

use super::batch::Decoded;
use super::fetch::Fetched;
use super::{Outcome, recv_lane};
use crate::telemetry;

/// The decode stage.
pub struct DecodeStage {
    pub threads: usize,
    pub spec: SampleSpec,
    /// The model's scoring data: what model work may be skipped ([`autotag_model::skip`]).
    pub scoring: Arc<Scoring>,
    pub limits: DecodeLimits,
    pub timeout: Duration,
    pub fetched: mpsc::Receiver<Fetched>,
    /// Fetched backfill GIFs: a free decode thread takes a live GIF first (issue 15).
    pub fetched_backfill: Option<mpsc::Receiver<Fetched>>,
    /// Decoded live GIFs.
    pub decoded: mpsc::Sender<Decoded>,
    /// Decoded backfill GIFs (the batch stage takes them only to fill what live frames leave);
    /// `None`: everything goes to `decoded`.
    pub decoded_backfill: Option<mpsc::Sender<Decoded>>,
    pub outcomes: mpsc::Sender<Outcome>,
}

impl DecodeStage {
    pub async fn run(mut self) {
        let pool = Arc::new(Semaphore::new(self.threads.max(1)));
        let limits = Arc::new(self.limits.clone());
        let mut tasks = tokio::task::JoinSet::new();
        let mut live_open = true;
        loop {
            // A free decode thread first, then the next GIF, live before backfill.
            let Ok(permit) = pool.clone().acquire_owned().await else { break };
            let next = tokio::select! {
                biased;
                f = self.fetched.recv(), if live_open => match f {
                    Some(f) => Some(f),
                    None => {
                        live_open = false;
                        continue;
                    }
                },
                f = recv_lane(self.fetched_backfill.as_mut()), if self.fetched_backfill.is_some() => match f {
                    Some(f) => Some(f),
                    None => {
                        self.fetched_backfill = None;
                        if live_open { continue } else { None }
                    }
                },
                else => None,
            };
            let Some(Fetched { job, bytes, reserved }) = next else { break };
            let (spec, limits, timeout, scoring) = (self.spec, limits.clone(), self.timeout, self.scoring.clone());
            let decoded = match (&self.decoded_backfill, job.ticket.source) {
                (Some(b), autotag_contract::Source::Backfill) => b.clone(),
                _ => self.decoded.clone(),
            };
            let outcomes = self.outcomes.clone();
            tasks.spawn(async move {
                let started = Instant::now();
                let work = tokio::task::spawn_blocking(move || {
                    let _permit = permit;
                    let frames = decode_and_sample(&bytes, spec, &limits);
                    // The download's memory goes back to the fetch stage's budget here.
                    drop(bytes);
                    drop(reserved);
                    frames.map(|f| planned(f, spec.size, &scoring))
                });
                let result = tokio::time::timeout(timeout, work).await;
                metrics::histogram!(telemetry::STAGE_SECONDS, "stage" => "decode")
                    .record(started.elapsed().as_secs_f64());
                let gif_id = job.upload.event.gif_id.clone();
                // Every failure becomes one dead letter: (reason, detail).
                let (reason, detail) = match result {
                    Ok(Ok(Ok((frames, plan)))) => {
                        debug!(%gif_id, frames = frames.count, inferred = plan.inferred.len(),
                               total = frames.total_frames, "decoded");
                        for r in SkipReason::ALL {
                            metrics::counter!(telemetry::FRAMES_SKIPPED, "reason" => r.as_str())
                                .increment(plan.skipped(r) as u64);
                        }
                        let mut job = job;
                        job.warnings.clone_from(&frames.warnings);
                        let _ = decoded.send(Decoded { job, rgb: frames.rgb, plan: Arc::new(plan) }).await;
                        return;
                    }
                    Ok(Ok(Err(e))) => {
                        let reason = reason(&e);
                        warn!(%gif_id, %reason, error = %e, "undecodable GIF");
                        (reason, e.to_string())
                    }
                    Ok(Err(join)) => {
                        // A panic in the decoder is a bug, but one bad file must not stop the worker.
                        warn!(%gif_id, error = %join, "decoder panicked");
                        (Reason::DecodeFailed, format!("decoder panicked: {join}"))
                    }
                    Err(_) => {
                        warn!(%gif_id, ?timeout, "decode timed out");
                        (Reason::Timeout, format!("decode took longer than {} ms", timeout.as_millis()))
                    }
                };
                let _ = outcomes.send(Outcome::failed(job.ticket, Stage::Decode, reason, detail)).await;
            });
            while tasks.try_join_next().is_some() {}
        }
        while tasks.join_next().await.is_some() {}
        debug!("decode stage drained");
    }
}

/// Plan the model work of decoded frames ([`autotag_model::skip::plan`] over the decoder's
/// signatures) and keep only the frames to infer in `frames.rgb`.
pub fn planned(mut frames: SampledFrames, side: u32, scoring: &Scoring) -> (SampledFrames, FramePlan) {
    let luma: Vec<f32> = frames.signatures.iter().map(|s| s.luma_std).collect();
    let sigs = &frames.signatures;
    let distance =
        |a: usize, b: usize| scoring.frame_distance(sigs[a].distance(&sigs[b]), sigs[a].histogram_distance(&sigs[b]));
    let p = plan(&luma, &frames.shown, distance, scoring.work());
    p.compact(&mut frames.rgb, (side as usize).pow(2) * 3);
    (frames, p)
}

/// The dead-letter reason of a decode error. Exhaustive: a new [`DecodeError`] variant does not
/// compile until it has a reason here (and, if new, in `contract::Reason` and the schema).
pub fn reason(e: &DecodeError) -> Reason {
    match e {
        DecodeError::Empty => Reason::EmptyObject,
        DecodeError::NotGif => Reason::NotAGif,
        DecodeError::Truncated => Reason::Truncated,
        // Nothing to show: a GIF without frames, or without pixels.
        DecodeError::NoFrames | DecodeError::EmptyImage => Reason::NoFrames,
        DecodeError::CorruptData(_) => Reason::CorruptImageData,
        DecodeError::LzwCodeSize { .. } => Reason::InvalidLzwCodeSize,
        DecodeError::InvalidBlock { .. } => Reason::InvalidBlock,
        DecodeError::TooLarge { .. } => Reason::TooLarge,
        // Not the input's fault (configuration or a bug): the generic decode code.
        DecodeError::InvalidSpec(_) | DecodeError::Resize(_) => Reason::DecodeFailed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The codec's own codes (kept for its standalone users) agree with the contract's.
    #[test]
    fn codec_codes_match_the_contract() {
        let errors = [
            DecodeError::Empty,
            DecodeError::NotGif,
            DecodeError::Truncated,
            DecodeError::NoFrames,
            DecodeError::EmptyImage,
            DecodeError::CorruptData(String::new()),
            DecodeError::TooLarge { what: "frames", value: 2, limit: 1 },
            DecodeError::LzwCodeSize { frame: 0, size: 12 },
            DecodeError::InvalidBlock { offset: 13, byte: 0 },
            DecodeError::InvalidSpec(""),
            DecodeError::Resize(String::new()),
        ];
        for e in &errors {
            assert_eq!(reason(e).as_str(), e.reason(), "{e}");
        }
    }
}
