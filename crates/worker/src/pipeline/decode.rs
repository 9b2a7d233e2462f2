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

use super::Outcome;
use super::batch::Decoded;
use super::fetch::Fetched;
use crate::telemetry;
use crate::thread_priority::ThreadPriority;

/// The decode stage.
pub struct DecodeStage {
    pub threads: usize,
    pub spec: SampleSpec,
    /// The model's scoring data: what model work may be skipped ([`autotag_model::skip`]).
    pub scoring: Arc<Scoring>,
    pub limits: DecodeLimits,
    pub timeout: Duration,
    pub fetched: mpsc::Receiver<Fetched>,
    pub decoded: mpsc::Sender<Decoded>,
    pub outcomes: mpsc::Sender<Outcome>,
    /// Where decodes run: the runtime's blocking threads, or (the backfill lane, issue 15) a
    /// pool of low-priority threads of its own ([`low_priority_pool`]).
    pub pool: Option<Arc<rayon::ThreadPool>>,
}

/// A pool of `threads` decode threads named `<name>-<i>`, each at `priority`
/// ([`crate::thread_priority`]): the backfill lane decodes on it, so its decodes take only the
/// CPU that live work leaves. A thread whose priority cannot be lowered logs it and decodes at
/// the normal priority.
pub fn low_priority_pool(
    name: &'static str,
    threads: usize,
    priority: ThreadPriority,
) -> std::io::Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .thread_name(move |i| format!("{name}-{i}"))
        .start_handler(move |_| {
            if let Err(e) = crate::thread_priority::set_current_thread(priority) {
                warn!(error = %e, ?priority, "cannot lower a decode thread's priority");
            }
        })
        .build()
        .map_err(std::io::Error::other)
}

impl DecodeStage {
    pub async fn run(mut self) {
        let slots = Arc::new(Semaphore::new(self.threads.max(1)));
        let limits = Arc::new(self.limits.clone());
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            // A free decode thread first, then the next GIF.
            let Ok(permit) = slots.clone().acquire_owned().await else { break };
            let Some(Fetched { job, bytes, reserved }) = self.fetched.recv().await else { break };
            let (spec, limits, timeout, scoring) = (self.spec, limits.clone(), self.timeout, self.scoring.clone());
            let decoded = self.decoded.clone();
            let threads = self.pool.clone();
            let outcomes = self.outcomes.clone();
            tasks.spawn(async move {
                let started = Instant::now();
                let work = move || {
                    let _permit = permit;
                    let frames = decode_and_sample(&bytes, spec, &limits);
                    // The download's memory goes back to the fetch stage's budget here.
                    drop(bytes);
                    drop(reserved);
                    frames.map(|f| planned(f, spec.size, &scoring))
                };
                let result = tokio::time::timeout(timeout, run_on(threads, work)).await;
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
                    Ok(Err(panic)) => {
                        // A panic in the decoder is a bug, but one bad file must not stop the worker.
                        warn!(%gif_id, error = %panic, "decoder panicked");
                        (Reason::DecodeFailed, format!("decoder panicked: {panic}"))
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

/// Run `work` on `pool` (or the runtime's blocking threads); `Err` if it panicked.
async fn run_on<T: Send + 'static>(
    pool: Option<Arc<rayon::ThreadPool>>,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    match pool {
        None => tokio::task::spawn_blocking(work).await.map_err(|e| e.to_string()),
        Some(pool) => {
            let (tx, rx) = tokio::sync::oneshot::channel();
            pool.spawn(move || {
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
                let _ = tx.send(r.map_err(|p| panic_message(p.as_ref())));
            });
            rx.await.unwrap_or_else(|_| Err("decode thread gone".into()))
        }
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned()).unwrap_or_default()
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

    /// The backfill lane's decodes run on the pool's low-priority threads; a panic there is an
    /// error for that GIF, not a lost task.
    #[tokio::test]
    async fn low_priority_pool_runs_work_at_its_priority() {
        let pool = Some(Arc::new(low_priority_pool("test-decode", 1, ThreadPriority::Idle).expect("pool")));
        let (name, priority) = run_on(pool.clone(), || {
            (std::thread::current().name().map(str::to_owned), crate::thread_priority::current())
        })
        .await
        .expect("ran");
        assert_eq!((name.as_deref(), priority), (Some("test-decode-0"), ThreadPriority::Idle));
        let panicked = run_on(pool, || -> u8 { panic!("bad GIF") }).await;
        assert_eq!(panicked, Err("bad GIF".to_owned()));
        // Without a pool: the runtime's blocking threads, priority unchanged.
        let priority = run_on(None, crate::thread_priority::current).await.expect("ran");
        assert_eq!(priority, crate::thread_priority::current());
    }

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
