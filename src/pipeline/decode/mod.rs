//! The decode stage: runs [`decode_and_sample`] on a bounded pool of blocking
//! threads. The GIF codec itself (limits, compositing, LZW, resize) is the
//! [`codec`] submodule; its public types are re-exported here.
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

pub mod codec;

pub use codec::{DecodeError, DecodeLimits, SampleSpec, SampledFrames, decode_and_sample};

use super::Outcome;
use super::batch::Decoded;
use super::fetch::Fetched;
use crate::contract::Stage;
use crate::telemetry;

/// The decode stage.
pub struct DecodeStage {
    pub threads: usize,
    pub spec: SampleSpec,
    pub limits: DecodeLimits,
    pub timeout: Duration,
    pub fetched: mpsc::Receiver<Fetched>,
    pub decoded: mpsc::Sender<Decoded>,
    pub outcomes: mpsc::Sender<Outcome>,
}

impl DecodeStage {
    pub async fn run(mut self) {
        let pool = Arc::new(Semaphore::new(self.threads.max(1)));
        let limits = Arc::new(self.limits.clone());
        let mut tasks = tokio::task::JoinSet::new();
        while let Some(Fetched { job, bytes, reserved }) = self.fetched.recv().await {
            let Ok(permit) = pool.clone().acquire_owned().await else { break };
            let (spec, limits, timeout) = (self.spec, limits.clone(), self.timeout);
            let (decoded, outcomes) = (self.decoded.clone(), self.outcomes.clone());
            tasks.spawn(async move {
                let started = Instant::now();
                let work = tokio::task::spawn_blocking(move || {
                    let _permit = permit;
                    let frames = decode_and_sample(&bytes, spec, &limits);
                    // The download's memory goes back to the fetch stage's budget here.
                    drop(bytes);
                    drop(reserved);
                    frames
                });
                let result = tokio::time::timeout(timeout, work).await;
                metrics::histogram!(telemetry::STAGE_SECONDS, "stage" => "decode")
                    .record(started.elapsed().as_secs_f64());
                let gif_id = job.upload.event.gif_id.clone();
                // Every failure becomes one dead letter: (reason, detail).
                let (reason, detail) = match result {
                    Ok(Ok(Ok(frames))) => {
                        debug!(%gif_id, frames = frames.count, total = frames.total_frames, "decoded");
                        let _ = decoded.send(Decoded { job, frames }).await;
                        return;
                    }
                    Ok(Ok(Err(e))) => {
                        warn!(%gif_id, reason = e.reason(), error = %e, "undecodable GIF");
                        (e.reason(), e.to_string())
                    }
                    Ok(Err(join)) => {
                        // A panic in the decoder is a bug, but one bad file must not stop the worker.
                        warn!(%gif_id, error = %join, "decoder panicked");
                        ("decode_failed", format!("decoder panicked: {join}"))
                    }
                    Err(_) => {
                        warn!(%gif_id, ?timeout, "decode timed out");
                        ("timeout", format!("decode took longer than {timeout:?}"))
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
