//! Infer: the model instance threads, and per-GIF aggregation of their scores.
//!
//! Every thread shares one loaded model (the `autotag_model::Backend`). Each lane has its own
//! [`Pool`] of threads (`model.instances` live, `lanes.backfill_instances` backfill) taking batches
//! from the lane's queue (issue 15: live batches never queue behind backfill ones; the backfill
//! pool's threads run at a lower CPU priority); each thread runs its own forward passes (on CPU
//! with `model.threads` intra-op threads each). On a small CPU, two single-threaded forwards side
//! by side beat one two-threaded forward, which stalls at every OpenMP barrier whenever another
//! thread (decode, I/O) takes a core (docs/benchmarks.md). Each thread holds its own no-grad guard
//! (grad mode is per thread in libtorch) and warms every batch bucket before the worker reports
//! ready: on CUDA, cuDNN's tuned plans are cached per thread.
//!
//! A GIF's frames may straddle batches that different instances finish out of order, so scores
//! are accumulated per GIF under a lock and the GIF completes when all its frames and its job
//! have arrived. The model, its device and precision, warm-up and scoring are `autotag_model`'s;
//! this stage only runs them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use autotag_contract::Stage;
use autotag_infra::shutdown::Shutdown;
use autotag_model::scoring::{Accumulator, existing_tag_scores};
use autotag_model::warmup::{bucket_for, buckets, warm_up};
use autotag_model::{Backend, ModelError, ModelInfo};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tracing::{error, info, warn};

use super::batch::Batch;
use super::{Job, Outcome};
use crate::telemetry;
use crate::thread_priority::ThreadPriority;

/// Settings of the infer thread.
pub struct InferSettings {
    pub max_batch: usize,
    /// Forward passes per bucket during warm-up.
    pub warmup_runs: usize,
}

/// One pool of model instance threads: its batch queue, the semaphore that tells its batcher an
/// instance is free, and how many threads take batches from it. Each lane has its own pool
/// (issue 15): a live batch never waits for a forward of backfill frames to finish, and the
/// backfill pool's threads run at a lower CPU priority.
pub struct Pool {
    /// Thread names: `<name>-<i>`; the first pool's first thread is `autotag-infer` (at most 15
    /// bytes show in `/proc/<pid>/task/*/comm`).
    pub name: &'static str,
    /// Its lane: the `lane` label of its `autotag_stage_duration_seconds{stage="infer"}`.
    pub lane: autotag_contract::Source,
    pub batches: mpsc::Receiver<Batch>,
    pub ready: Arc<Semaphore>,
    /// Model instance threads sharing the loaded model (at least one).
    pub instances: usize,
    /// CPU priority of its threads ([`crate::thread_priority`]).
    pub priority: ThreadPriority,
}

/// A GIF whose frames are (partly) through the model.
struct Pending {
    acc: Accumulator,
    /// Arrives with the GIF's last part; batches of one GIF may finish out of
    /// order when several instances run.
    job: Option<Job>,
    failed: Option<String>,
}

/// Per-GIF state shared by a pool's model instances.
type Open = std::sync::Mutex<HashMap<u64, Pending>>;

/// Start the model threads. `make_backend` runs on the first thread of the first pool (so the
/// model is created where it is used); the returned receiver yields the model's info once every
/// thread of every pool has warmed up, or the error that stopped it. All threads share the one
/// loaded model; a pool's threads take batches from its queue. On a small CPU, two
/// single-threaded forwards side by side beat one two-threaded forward, which stalls at every
/// OpenMP barrier when any other thread takes a core.
pub fn spawn<F>(
    make_backend: F,
    settings: InferSettings,
    pools: Vec<Pool>,
    outcomes: mpsc::Sender<Outcome>,
    shutdown: Shutdown,
) -> (std::thread::JoinHandle<()>, oneshot::Receiver<Result<ModelInfo, ModelError>>)
where
    F: FnOnce() -> Result<(Box<dyn Backend>, ModelInfo), ModelError> + Send + 'static,
{
    let (ready_tx, ready_rx) = oneshot::channel();
    let handle = std::thread::Builder::new()
        .name("autotag-infer".into())
        .spawn(move || {
            let _no_grad = autotag_model::torch::no_grad_guard();
            let t = Instant::now();
            let (backend, info) = match make_backend() {
                Ok(x) => x,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let load_s = t.elapsed().as_secs_f64();
            metrics::gauge!(telemetry::MODEL_LOAD_SECONDS).set(load_s);
            let buckets = buckets(settings.max_batch);
            if let Err(e) = warm_up(backend.as_ref(), info.side, &buckets, settings.warmup_runs) {
                let _ = ready_tx.send(Err(e));
                return;
            }
            let backend: Arc<dyn Backend> = Arc::from(backend);
            let shared = Arc::new(Shared { backend, info, settings, buckets, outcomes, shutdown });
            let pools: Vec<Arc<PoolQueue>> = pools
                .into_iter()
                .map(|p| {
                    Arc::new(PoolQueue {
                        name: p.name,
                        lane: p.lane,
                        batches: std::sync::Mutex::new(p.batches),
                        ready: p.ready,
                        instances: p.instances.max(1),
                        priority: p.priority,
                        open: Open::default(),
                    })
                })
                .collect();
            // Every instance thread warms every bucket before the worker reports ready: on
            // CUDA, cuDNN's autotuned plans are cached per thread, and a thread's first pass
            // of a shape costs seconds (measured on an H100), which would otherwise land on
            // live traffic. This thread is the first pool's first instance.
            let (warmed_tx, warmed_rx) = std::sync::mpsc::channel::<()>();
            let mut threads = Vec::new();
            for (k, pool) in pools.iter().enumerate() {
                for i in usize::from(k == 0)..pool.instances {
                    let (shared, pool, warmed) = (shared.clone(), pool.clone(), warmed_tx.clone());
                    let spawned = std::thread::Builder::new()
                        .name(format!("{}-{i}", pool.name))
                        .spawn(move || {
                            let _no_grad = autotag_model::torch::no_grad_guard();
                            let sh = &shared;
                            if let Err(e) =
                                warm_up(sh.backend.as_ref(), sh.info.side, &sh.buckets, sh.settings.warmup_runs)
                            {
                                warn!(error = %e, pool = pool.name, instance = i, "warm-up failed on a model instance thread");
                            }
                            if let Err(e) = crate::thread_priority::set_current_thread(pool.priority) {
                                warn!(error = %e, pool = pool.name, priority = ?pool.priority, "cannot lower a model thread's priority");
                            }
                            let _ = warmed.send(());
                            run_loop(sh, &pool);
                        })
                        .inspect_err(|e| error!(error = %e, "cannot start a model instance thread"));
                    threads.extend(spawned.ok());
                }
            }
            drop(warmed_tx);
            for _ in 0..threads.len() {
                let _ = warmed_rx.recv();
            }
            let warm_s = t.elapsed().as_secs_f64() - load_s;
            metrics::gauge!(telemetry::MODEL_WARMUP_SECONDS).set(warm_s);
            let instances: Vec<_> = pools.iter().map(|p| (p.name, p.instances, p.priority)).collect();
            info!(model = %shared.info.model.name, version = %shared.info.model.version, device = %shared.info.device,
                  ?instances, load_s, warm_s, buckets = ?shared.buckets, "model ready");
            let _ = ready_tx.send(Ok(shared.info.clone()));
            if let Some(first) = pools.first() {
                if let Err(e) = crate::thread_priority::set_current_thread(first.priority) {
                    warn!(error = %e, pool = first.name, "cannot lower a model thread's priority");
                }
                run_loop(&shared, first);
            }
            for h in threads {
                let _ = h.join();
            }
            info!("infer threads drained");
        })
        .expect("spawning the infer thread");
    (handle, ready_rx)
}

/// What every model instance thread shares.
struct Shared {
    backend: Arc<dyn Backend>,
    info: ModelInfo,
    settings: InferSettings,
    buckets: Vec<usize>,
    outcomes: mpsc::Sender<Outcome>,
    shutdown: Shutdown,
}

/// What a pool's threads share.
struct PoolQueue {
    name: &'static str,
    lane: autotag_contract::Source,
    batches: std::sync::Mutex<mpsc::Receiver<Batch>>,
    ready: Arc<Semaphore>,
    instances: usize,
    priority: ThreadPriority,
    open: Open,
}

fn run_loop(sh: &Shared, pool: &PoolQueue) {
    let frame = (sh.info.side as usize).pow(2) * 3;
    let num_tags = sh.backend.num_tags();
    loop {
        // Tell the batcher a model instance is free: it sends the open batch now.
        pool.ready.add_permits(1);
        let next = pool.batches.lock().unwrap_or_else(|p| p.into_inner()).blocking_recv();
        let Some(mut batch) = next else { break };
        if sh.shutdown.is_aborted() {
            // Abandoned: these records are not committed and will be redone.
            // Stopping here (not mid-forward) lets the process exit cleanly.
            break;
        }
        let t = Instant::now();
        let padded = bucket_for(&sh.buckets, batch.n);
        batch.data.resize(padded * frame, 0);
        // One retry: a transient device error should not dead-letter a batch. A batch of GIFs
        // whose every frame was skipped (blank GIFs) needs no forward.
        let result = if batch.n == 0 {
            Ok(Vec::new())
        } else {
            sh.backend.forward(&batch.data, padded).or_else(|e| {
                warn!(error = %e, "forward failed; retrying once");
                sh.backend.forward(&batch.data, padded)
            })
        };
        metrics::histogram!(telemetry::STAGE_SECONDS, "stage" => "infer", "lane" => pool.lane.as_str())
            .record(t.elapsed().as_secs_f64());
        let mut done = Vec::new();
        {
            let mut open = pool.open.lock().unwrap_or_else(|p| p.into_inner());
            let mut row = 0;
            for part in batch.parts {
                let p = open.entry(part.gif).or_insert_with(|| Pending {
                    acc: Accumulator::new(num_tags, part.plan.clone()),
                    job: None,
                    failed: None,
                });
                match &result {
                    Ok(scores) => {
                        for (k, r) in (row..row + part.frames).enumerate() {
                            p.acc.set_frame(part.first + k, &scores[r * num_tags..(r + 1) * num_tags]);
                        }
                    }
                    Err(e) => {
                        // Count the frames anyway so the GIF completes (as a failure).
                        for k in 0..part.frames {
                            p.acc.set_frame(part.first + k, &[]);
                        }
                        p.failed = Some(e.to_string());
                    }
                }
                row += part.frames;
                if part.job.is_some() {
                    p.job = part.job;
                }
                if p.job.is_some() && p.acc.is_complete() {
                    done.extend(open.remove(&part.gif));
                }
            }
        }
        for p in done {
            let Some(job) = p.job else { continue };
            let outcome = match p.failed {
                None => finish(job, &p.acc, &sh.info),
                Some(e) => {
                    error!(error = %e, gif_id = %job.upload.event.gif_id, "inference failed");
                    Outcome::failed(job.ticket, Stage::Infer, autotag_contract::Reason::InferenceFailed, e)
                }
            };
            if sh.outcomes.blocking_send(outcome).is_err() {
                return;
            }
        }
    }
}

fn finish(job: Job, acc: &Accumulator, info: &ModelInfo) -> Outcome {
    let scored = info.scoring.apply(acc, &info.tags);
    let existing_tag_scores =
        existing_tag_scores(&scored.scores, &info.tags, job.upload.event.existing_tags.as_deref());
    Outcome::Tagged { job, tags: scored.tags, existing_tag_scores, frames: acc.frames(), inferred: acc.inferred() }
}
