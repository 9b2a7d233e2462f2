//! Batch: pack frames from many GIFs into one forward pass.
//!
//! A batch is sent when it holds `max_batch` frames, or `max_delay` after its
//! first frame arrived, whichever comes first: full batches under load (the
//! model's throughput), bounded waiting when idle (latency). A GIF's frames
//! may straddle two batches; the GIF's [`Job`] travels with its last part.
//! Several model instances may run a GIF's batches concurrently and finish them
//! out of order, so the infer stage counts a GIF's frames and completes it when
//! all of them (and its job) have arrived.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;
use tracing::debug;

use autotag_infra::shutdown::Shutdown;
use autotag_model::skip::FramePlan;

use super::Job;
use crate::telemetry;

/// A decoded GIF on its way to the batcher.
#[derive(Debug)]
pub struct Decoded {
    pub job: Job,
    /// The frames to infer (`plan.inferred`, in slot order), `side × side × 3` bytes each.
    pub rgb: Vec<u8>,
    /// Which sampled frames these are and which frames reuse their scores.
    pub plan: Arc<FramePlan>,
}

/// The frames of one GIF inside a batch.
#[derive(Debug)]
pub struct BatchPart {
    /// Unique per GIF within this worker's lifetime.
    pub gif: u64,
    /// Frames of this GIF in this batch (consecutive, in batch order).
    pub frames: usize,
    /// Slot of the first of them among the GIF's inferred frames.
    pub first: usize,
    /// The GIF's frame plan (its inferred frames are its frames in all batches).
    pub plan: Arc<FramePlan>,
    /// Set on the GIF's last part.
    pub job: Option<Job>,
}

/// Frames ready for the model: `n` images of `side`×`side`×3 u8, NHWC.
#[derive(Debug)]
pub struct Batch {
    pub data: Vec<u8>,
    pub n: usize,
    pub parts: Vec<BatchPart>,
    /// When the first frame entered the batch (queueing latency metric).
    pub opened_at: Instant,
}

/// Accumulates frames and cuts batches.
#[derive(Debug)]
pub struct Batcher {
    max_batch: usize,
    frame_bytes: usize,
    next_gif: u64,
    current: Option<Batch>,
}

impl Batcher {
    pub fn new(max_batch: usize, side: u32) -> Self {
        Self { max_batch, frame_bytes: (side as usize).pow(2) * 3, next_gif: 0, current: None }
    }

    /// Add a GIF's frames; returns the batches that became full.
    pub fn push(&mut self, d: Decoded) -> Vec<Batch> {
        let mut full = Vec::new();
        let gif = self.next_gif;
        self.next_gif += 1;
        let total = d.plan.inferred.len();
        let mut job = Some(d.job);
        let mut offset = 0;
        if total == 0 {
            // Nothing to infer; cannot happen for a decoded GIF, but don't lose the job.
            let b = self.open();
            b.parts.push(BatchPart { gif, frames: 0, first: 0, plan: d.plan, job: job.take() });
            return full;
        }
        while offset < total {
            let max_batch = self.max_batch;
            let fb = self.frame_bytes;
            let b = self.open();
            let take = (max_batch - b.n).min(total - offset);
            b.data.extend_from_slice(d.rgb.get(offset * fb..(offset + take) * fb).unwrap_or_default());
            b.n += take;
            offset += take;
            let last = offset == total;
            b.parts.push(BatchPart {
                gif,
                frames: take,
                first: offset - take,
                plan: d.plan.clone(),
                job: if last { job.take() } else { None },
            });
            if b.n >= max_batch {
                full.extend(self.current.take());
            }
        }
        full
    }

    fn open(&mut self) -> &mut Batch {
        let cap = self.max_batch * self.frame_bytes;
        self.current.get_or_insert_with(|| Batch {
            data: Vec::with_capacity(cap),
            n: 0,
            parts: Vec::new(),
            opened_at: Instant::now(),
        })
    }

    /// Frames in the open batch.
    pub fn open_frames(&self) -> usize {
        self.current.as_ref().map_or(0, |b| b.n)
    }

    /// The partial batch, if any.
    pub fn flush(&mut self) -> Option<Batch> {
        self.current.take()
    }

    /// When the partial batch must be sent.
    pub fn deadline(&self, max_delay: Duration) -> Option<Instant> {
        self.current.as_ref().map(|b| b.opened_at + max_delay)
    }
}

/// The batch stage of one lane.
///
/// A batch is handed to the model only when the model can take it: a model instance of the
/// lane's pool adds a permit to `ready` each time it waits for work. While the pool is busy the
/// open batch keeps filling, so under load every batch is full; when idle, a partial batch goes
/// out `max_delay` after its first frame. (Sending partial batches into a queue while the model
/// is busy would halve throughput: most forwards would run half-empty.)
///
/// Each lane has its own batch stage and model pool (issue 15): live and backfill frames never
/// share a forward pass, and a live batch never waits for a backfill one.
pub struct BatchStage {
    pub batcher: Batcher,
    pub max_delay: Duration,
    pub decoded: mpsc::Receiver<Decoded>,
    pub batches: mpsc::Sender<Batch>,
    pub ready: Arc<Semaphore>,
    pub shutdown: Shutdown,
}

impl BatchStage {
    pub async fn run(mut self) {
        loop {
            let deadline = self.batcher.deadline(self.max_delay);
            let due = deadline.is_some_and(|d| Instant::now() >= d);
            tokio::select! {
                biased;
                // Abandon: dropping the sender lets the infer thread finish.
                _ = self.shutdown.aborted() => return,
                d = self.decoded.recv() => match d {
                    Some(d) => {
                        if !push(&mut self.batcher, &self.ready, &self.batches, d).await {
                            return;
                        }
                    }
                    None => {
                        if let Some(b) = self.batcher.flush() {
                            send(&self.ready, &self.batches, b).await;
                        }
                        debug!("batch stage drained");
                        return;
                    }
                },
                // The model is free and the partial batch is past its deadline.
                p = self.ready.acquire(), if due => {
                    if let Ok(p) = p { p.forget(); }
                    if let Some(b) = self.batcher.flush() && !deliver(&self.batches, b).await {
                        return;
                    }
                }
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() && !due => {}
            }
        }
    }
}

/// Add a GIF; send the batches that became full, each when the model can take it
/// (backpressure reaches decode through the bounded channel meanwhile). False when the model is
/// gone.
async fn push(batcher: &mut Batcher, ready: &Semaphore, batches: &mpsc::Sender<Batch>, d: Decoded) -> bool {
    for b in batcher.push(d) {
        if !send(ready, batches, b).await {
            return false;
        }
    }
    true
}

/// Wait for the model to be ready, then hand it the batch.
async fn send(ready: &Semaphore, batches: &mpsc::Sender<Batch>, b: Batch) -> bool {
    match ready.acquire().await {
        Ok(p) => p.forget(),
        Err(_) => return false,
    }
    deliver(batches, b).await
}

async fn deliver(batches: &mpsc::Sender<Batch>, b: Batch) -> bool {
    metrics::histogram!(telemetry::BATCH_SIZE).record(b.n as f64);
    batches.send(b).await.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::{Record, Ticket};
    use autotag_contract::{Source, parse_upload};
    use autotag_infra::shutdown::ShutdownController;

    fn decoded(frames: usize, side: u32, fill: u8) -> Decoded {
        let payload = br#"{"schema_version":1,"event_id":"e","gif_id":"g","s3_uri":"s3://b/k","uploaded_at":"2026-11-22T10:00:00Z"}"#;
        let ticket = Ticket {
            record: Record { topic: "t".into(), partition: 0, offset: 0, key: None, payload: None },
            generation: 1,
            consumed_at: std::time::Instant::now(),
            source: Source::Live,
            offsets: autotag_infra::offsets::Offsets::default(),
            _permit: None,
        };
        let plan = FramePlan { inferred: (0..frames).collect(), ..FramePlan::default() };
        Decoded {
            job: Job { ticket, upload: parse_upload(Some(payload)).unwrap(), warnings: Vec::new() },
            rgb: vec![fill; frames * (side as usize).pow(2) * 3],
            plan: Arc::new(plan),
        }
    }

    #[tokio::test]
    async fn frames_straddle_batches_and_job_rides_the_last_part() {
        let mut b = Batcher::new(4, 2);
        assert!(b.push(decoded(3, 2, 1)).is_empty());
        let full = b.push(decoded(3, 2, 2));
        assert_eq!(full.len(), 1);
        let first = &full[0];
        assert_eq!(first.n, 4);
        assert_eq!(first.data.len(), 4 * 12);
        assert_eq!(&first.data[36..48], &[2u8; 12]);
        assert_eq!(first.parts.len(), 2);
        assert!(first.parts[0].job.is_some(), "gif 0 complete in batch 1");
        assert!(first.parts[1].job.is_none(), "gif 1 continues in the next batch");
        assert_eq!((first.parts[1].first, first.parts[1].frames), (0, 1));
        let rest = b.flush().unwrap();
        assert_eq!(rest.n, 2);
        assert_eq!(rest.parts[0].gif, 1);
        assert!(rest.parts[0].job.is_some());
        assert_eq!((rest.parts[0].first, rest.parts[0].frames), (1, 2), "frames 1 and 2 of gif 1");
        assert!(b.flush().is_none());
    }

    #[tokio::test]
    async fn a_gif_larger_than_a_batch_fills_several() {
        let mut b = Batcher::new(4, 1);
        let full = b.push(decoded(9, 1, 7));
        assert_eq!(full.iter().map(|x| x.n).collect::<Vec<_>>(), [4, 4]);
        assert_eq!(b.flush().unwrap().n, 1);
    }

    #[tokio::test]
    async fn partial_batch_is_sent_after_max_delay() {
        let (dtx, drx) = mpsc::channel(4);
        let (btx, mut brx) = mpsc::channel(4);
        let (_ctl, shutdown) = ShutdownController::new();
        let ready = Arc::new(Semaphore::new(1));
        let stage = BatchStage {
            batcher: Batcher::new(8, 1),
            max_delay: Duration::from_millis(50),
            decoded: drx,
            batches: btx,
            ready,
            shutdown,
        };
        let h = tokio::spawn(stage.run());
        let t0 = Instant::now();
        dtx.send(decoded(2, 1, 0)).await.unwrap();
        let b = brx.recv().await.unwrap();
        assert_eq!(b.n, 2);
        let waited = t0.elapsed();
        // Not before max_delay; the upper bound is loose because CI machines are noisy.
        assert!(waited >= Duration::from_millis(50) && waited < Duration::from_secs(2), "{waited:?}");
        drop(dtx);
        h.await.unwrap();
    }

    /// While the model is busy (no ready permit), frames keep joining the open
    /// batch instead of being sent as a partial batch at the deadline.
    #[tokio::test]
    async fn batch_keeps_filling_while_the_model_is_busy() {
        let (dtx, drx) = mpsc::channel(16);
        let (btx, mut brx) = mpsc::channel(4);
        let (_ctl, shutdown) = ShutdownController::new();
        let ready = Arc::new(Semaphore::new(0));
        let stage = BatchStage {
            batcher: Batcher::new(8, 1),
            max_delay: Duration::from_millis(10),
            decoded: drx,
            batches: btx,
            ready: ready.clone(),
            shutdown,
        };
        let h = tokio::spawn(stage.run());
        dtx.send(decoded(2, 1, 0)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(brx.try_recv().is_err(), "nothing is sent while the model is busy");
        dtx.send(decoded(3, 1, 0)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        ready.add_permits(1);
        let b = brx.recv().await.unwrap();
        assert_eq!(b.n, 5, "the late frames joined the waiting batch");
        drop(dtx);
        h.await.unwrap();
    }
}
