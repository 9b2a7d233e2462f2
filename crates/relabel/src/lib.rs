//! The relabel job: joins each GIF's upload (or backfill) event, the model's suggestions and
//! its users' feedback into the GIF's current training labels (topic `gif-training-labels`),
//! for the retraining that follows (issue 13).
//!
//! **Owns** the rule ([`rule`]: GIPHY's semi-supervised cleaning plus user votes, a pure
//! function of a GIF's folded inputs) and the conversion of the three streams' records into
//! the rule's facts ([`input`]).
//!
//! **Promises**: the labels of a GIF depend only on the multiset of its inputs, never on the
//! order they arrive in or on how often one is delivered (the folds are commutative and
//! idempotent; feedback counts once per (`client`, `event_id`)); a record that cannot be an
//! input is refused with a stable reason ([`input::InputError::reason`]).
//!
//! The service (`autotag relabel`, also the torch-free `autotag-relabel` binary): [`config`]
//! (`[relabel]`), [`store`] (redb: states with the input offsets they reflect, one
//! transaction), [`changelog`] (the state replicated through a topic, restored when a
//! partition moves), [`job`] (the consume → fold → flush loop, its delivery guarantee).
//!
//! [`export`] writes a dataset snapshot of the labels topic to S3 (`autotag relabel export`).
//!
//! **Limits**: a GIF's feedback ids are kept for [`rule::FEEDBACK_ID_WINDOW_SECS`] before its
//! newest feedback (bounded state; an event first delivered later than that is not counted);
//! the state of a partition is restored from the whole changelog by an instance that never
//! owned it (measured: 1 million GIFs in ~55 s on 2 cores, `docs/benchmarks.md`).

pub mod changelog;
pub mod config;
pub mod eof;
pub mod export;
pub mod input;
pub mod job;
pub mod metrics;
pub mod partitioner;
pub mod rule;
pub mod store;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use autotag_infra::telemetry::{self, Health};

pub use config::RelabelConfig;
pub use input::{Fact, FactKind, InputError, OrderKey};
pub use job::JobError;
pub use rule::{GifState, Outcome, Thresholds};

/// The job's tools (`autotag relabel <tool>`, `autotag-relabel <tool>`).
#[derive(Debug, Clone, clap::Subcommand)]
pub enum RelabelTool {
    /// Write a dataset snapshot of every GIF's current training labels to S3: JSONL shards, then
    /// `manifest.json` (README "Relabel job").
    Export {
        /// Destination, `s3://bucket/prefix/`.
        #[arg(long)]
        to: String,
        /// Most GIFs per shard.
        #[arg(long, default_value_t = 100_000)]
        shard_gifs: usize,
    },
}

/// Run `tool`; prints what it did.
///
/// # Errors
/// As the tool ([`export::export`]).
pub async fn run_tool(cfg: &RelabelConfig, tool: RelabelTool) -> anyhow::Result<()> {
    match tool {
        RelabelTool::Export { to, shard_gifs } => {
            let m = export::export(cfg, &to, shard_gifs).await?;
            println!(
                "dataset {} written to {to}: {} GIFs, {} labels, {} shards (manifest.json last)",
                m.dataset_id, m.counts.gifs, m.counts.labels, m.counts.shards
            );
            Ok(())
        }
    }
}

/// Run the job until `stop` resolves (a signal in production), then flush and leave the
/// group. The job runs on its own thread (its Kafka client is synchronous, see [`job`]); if it
/// has not finished `shutdown.deadline_ms` after `stop`, this returns anyway: what it did not
/// commit is redone by the next owner.
///
/// # Errors
/// The metrics address cannot be bound; the job's start-up checks or its store failed.
pub async fn run(cfg: RelabelConfig, stop: impl Future<Output = ()>) -> anyhow::Result<()> {
    let health = Arc::new(Health::new(&[metrics::RUNNING]));
    if !cfg.relabel.metrics_listen.is_empty() {
        let handle = telemetry::install_metrics(&[])?;
        metrics::describe();
        let addr = telemetry::serve_http(&cfg.relabel.metrics_listen, handle, health.clone()).await?;
        tracing::info!(%addr, "serving /metrics, /healthz, /readyz");
    }
    let flag = Arc::new(AtomicBool::new(false));
    let deadline = cfg.shutdown.deadline;
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let job_flag = flag.clone();
    std::thread::Builder::new().name("relabel-job".into()).spawn(move || {
        let _ = done_tx.send(job::run(cfg, job_flag, health));
    })?;
    tokio::pin!(done_rx);
    tokio::select! {
        r = &mut done_rx => return Ok(r??),
        () = stop => {}
    }
    tracing::info!("stopping: flushing and leaving the group");
    flag.store(true, Ordering::SeqCst);
    match tokio::time::timeout(deadline, done_rx).await {
        Ok(r) => Ok(r??),
        Err(_) => {
            tracing::warn!(
                ?deadline,
                "the job did not stop within the shutdown deadline; its uncommitted inputs are redone"
            );
            Ok(())
        }
    }
}
