//! `autotag worker`: wire the stages together, run until a signal, shut down
//! cleanly.
//!
//! Start-up order matters for readiness: the model is loaded and warmed up
//! *before* the consumer joins the group, so partitions are never assigned to
//! a worker that cannot serve them yet.
//!
//! Shutdown (SIGTERM/SIGINT): the source stops consuming and drops its
//! senders; each stage drains and closes the next channel; publish finishes
//! its acknowledgements. If that takes longer than `shutdown.deadline_ms`,
//! the remaining work is abandoned (not committed, so it is redone by the
//! next owner). Then the contiguous watermark is committed synchronously (re-sent
//! if it fails) and the consumer leaves the group, both within what is left of
//! the deadline: during a broker outage the worker still exits in time (issue 24).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use autotag_contract::Source;
use autotag_infra::consumer::{self, commit_final};
use autotag_infra::kafka;
use autotag_infra::offsets::Offsets;
use autotag_infra::producer::{LastAck, spawn_broker_probe};
use autotag_infra::s3::{self, ByteBudget};
use autotag_infra::shutdown::{Shutdown, ShutdownController};
use autotag_infra::telemetry::{self as infra_telemetry, BROKER_REACHABLE, CONSUMER_JOINED, Health};
use gifcodec::SampleSpec;
use rdkafka::consumer::Consumer;
use tokio::sync::{Semaphore, mpsc};
use tracing::{info, warn};

use crate::config::WorkerConfig;
use crate::pipeline::batch::{BatchStage, Batcher};
use crate::pipeline::decode::{self, DecodeStage};
use crate::pipeline::fetch::FetchStage;
use crate::pipeline::infer::{self, InferSettings};
use crate::pipeline::lane_channel;
use crate::pipeline::publish::PublishStage;
use crate::pipeline::source::SourceStage;
use crate::telemetry;
use crate::thread_priority::ThreadPriority;

/// Run the worker until `stop` resolves (a signal in production).
pub async fn run(cfg: WorkerConfig, stop: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
    let health = Arc::new(Health::new(&[telemetry::MODEL_READY, CONSUMER_JOINED, BROKER_REACHABLE]));
    if !cfg.metrics.listen.is_empty() {
        let handle = infra_telemetry::install_metrics(telemetry::BUCKETS).context("installing the metrics recorder")?;
        telemetry::describe();
        let addr = infra_telemetry::serve_http(&cfg.metrics.listen, handle, health.clone())
            .await
            .with_context(|| format!("binding the metrics endpoint {}", cfg.metrics.listen))?;
        info!(%addr, "serving /metrics, /healthz, /readyz");
    }
    let (ctl, shutdown) = ShutdownController::new();
    let cap = cfg.pipeline.channel_capacity;
    let decode_threads = cfg.decode_threads();

    // Model first: readiness requires it, and it tells us the input size.
    // One batch in each channel at most: a lane's batcher sends only when one of its model
    // instances is free (`ready`), so the open batch fills while they are busy. Each lane has
    // its own pool of instances; the backfill pool's threads run at a lower CPU priority.
    let (batch_tx, batch_rx) = mpsc::channel(1);
    let model_free = Arc::new(Semaphore::new(0));
    let mut pools = vec![infer::Pool {
        name: "autotag-infer",
        lane: Source::Live,
        batches: batch_rx,
        ready: model_free.clone(),
        instances: cfg.model.instances,
        priority: ThreadPriority::Normal,
    }];
    let backfill_batches = if cfg.lanes.backfill_enabled {
        let (tx, rx) = mpsc::channel(1);
        let ready = Arc::new(Semaphore::new(0));
        pools.push(infer::Pool {
            name: "bf-infer",
            lane: Source::Backfill,
            batches: rx,
            ready: ready.clone(),
            instances: cfg.lanes.backfill_instances,
            priority: cfg.lanes.backfill_priority,
        });
        Some((tx, ready))
    } else {
        None
    };
    let (outcome_tx, outcome_rx) = mpsc::channel(cap);
    let model_cfg = cfg.model.clone();
    let (infer_thread, ready) = infer::spawn(
        move || autotag_model::load_torch(&model_cfg),
        InferSettings { max_batch: cfg.batch.max_batch, warmup_runs: 3 },
        pools,
        outcome_tx.clone(),
        shutdown.clone(),
    );
    let info = ready.await.context("infer thread died")?.context("loading the model")?;
    health.set(telemetry::MODEL_READY, true);

    let s3 = s3::create_client(&cfg.s3).await;
    // Rebuilt when it can no longer deliver, also when stuck past its message timeout (an
    // idempotent producer whose records timed out cannot send again on Tansu: issue 24).
    let producer = Arc::new(kafka::create_producer_handle(&cfg.kafka, true).context("creating the Kafka producer")?);
    // Not ready while the broker does not answer (issue 24), also when there is nothing to send.
    let probe = spawn_broker_probe(producer.clone(), cfg.kafka.topics.suggestions.clone(), health.clone());
    let last_ack = Arc::new(LastAck::default());
    let offsets = Offsets::default();
    let consumer = consumer::create_consumer(&cfg.kafka, &cfg.kafka.group_id, offsets.clone(), health.clone())
        .context("creating the Kafka consumer")?;
    consumer::subscribe(&consumer, &[&cfg.kafka.topics.uploads]).context("subscribing")?;
    info!(topic = %cfg.kafka.topics.uploads, group = %cfg.kafka.group_id, "consuming");
    let backfill_consumer = if cfg.lanes.backfill_enabled {
        let offsets = Offsets::default();
        let group = format!("{}-backfill", cfg.kafka.group_id);
        let c =
            consumer::create_consumer(&cfg.kafka, &group, offsets.clone(), Arc::new(Health::new(&[CONSUMER_JOINED])))
                .context("creating the backfill consumer")?;
        consumer::subscribe(&c, &[&cfg.lanes.backfill_topic]).context("subscribing to the backfill topic")?;
        info!(topic = %cfg.lanes.backfill_topic, %group, share = cfg.lanes.backfill_share, "consuming the backfill lane");
        Some((c, offsets))
    } else {
        None
    };

    let (job_tx, job_rx) = mpsc::channel(cap);
    let (fetched_tx, fetched_rx) = mpsc::channel(decode_threads * 2);
    let (backfill_fetched_tx, backfill_fetched_rx) = lane_channel(cfg.lanes.backfill_enabled, decode_threads * 2);
    let (decoded_tx, decoded_rx) = mpsc::channel(decode_threads * 2);
    let (backfill_decoded_tx, backfill_decoded_rx) = lane_channel(cfg.lanes.backfill_enabled, decode_threads * 2);

    let publish = tokio::spawn(
        PublishStage {
            producer,
            suggestions_topic: cfg.kafka.topics.suggestions.clone(),
            dead_letter_topic: cfg.kafka.topics.dead_letters.clone(),
            model: info.model.clone(),
            retry: cfg.retry.clone(),
            health: health.clone(),
            outcomes: outcome_rx,
            max_pending: cfg.pipeline.max_in_flight,
            last_ack: last_ack.clone(),
            shutdown: shutdown.clone(),
        }
        .run(),
    );
    tokio::spawn(
        BatchStage {
            batcher: Batcher::new(cfg.batch.max_batch, info.side),
            max_delay: cfg.batch.max_delay,
            decoded: decoded_rx,
            batches: batch_tx,
            ready: model_free,
            shutdown: shutdown.clone(),
        }
        .run(),
    );
    let decode = |fetched, decoded, pool| DecodeStage {
        threads: decode_threads,
        spec: SampleSpec { frames: cfg.frames.per_gif, size: info.side },
        scoring: Arc::new(info.scoring.scoring.clone()),
        limits: cfg.limits.clone(),
        timeout: cfg.pipeline.decode_timeout,
        fetched,
        decoded,
        outcomes: outcome_tx.clone(),
        pool,
    };
    tokio::spawn(decode(fetched_rx, decoded_tx, None).run());
    // The backfill lane decodes and batches on its own (issue 15), on low-priority threads.
    if let (Some(fetched), Some(decoded), Some(decoded_rx), Some((batches, ready))) =
        (backfill_fetched_rx, backfill_decoded_tx, backfill_decoded_rx, backfill_batches)
    {
        let pool = decode::low_priority_pool("bf-decode", decode_threads, cfg.lanes.backfill_priority)
            .context("starting the backfill lane's decode threads")?;
        tokio::spawn(decode(fetched, decoded, Some(Arc::new(pool))).run());
        tokio::spawn(
            BatchStage {
                batcher: Batcher::new(cfg.batch.max_batch, info.side),
                max_delay: cfg.batch.max_delay,
                decoded: decoded_rx,
                batches,
                ready,
                shutdown: shutdown.clone(),
            }
            .run(),
        );
    }
    tokio::spawn(
        FetchStage {
            client: s3,
            s3: cfg.s3.clone(),
            retry: cfg.retry.clone(),
            health: health.clone(),
            jobs: job_rx,
            fetched: fetched_tx,
            fetched_backfill: backfill_fetched_tx,
            outcomes: outcome_tx.clone(),
            shutdown: shutdown.clone(),
            budget: ByteBudget::new(cfg.s3.max_bytes_in_flight),
        }
        .run(),
    );
    let in_flight = Arc::new(Semaphore::new(cfg.pipeline.max_in_flight));
    let live_waiting = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let source_task = tokio::spawn(
        SourceStage {
            consumer: consumer.clone(),
            offsets: offsets.clone(),
            committer: consumer::Committer::new(consumer.clone(), offsets.clone()),
            in_flight: in_flight.clone(),
            resume_at: (cfg.pipeline.max_in_flight / 2).max(1),
            pause_after: cfg.pipeline.pause_after,
            commit_interval: cfg.kafka.commit_interval,
            source: Source::Live,
            waiting: Some(live_waiting.clone()),
            yield_to: None,
            jobs: job_tx.clone(),
            outcomes: outcome_tx.clone(),
            shutdown: shutdown.clone(),
        }
        .run(),
    );
    // The backfill lane: its own consumer group, offsets and capacity; it gives way to live work.
    let backfill = match &backfill_consumer {
        Some((consumer, offsets)) => {
            let cap = ((cfg.pipeline.max_in_flight as f64 * cfg.lanes.backfill_share).ceil() as usize).max(1);
            Some(tokio::spawn(
                SourceStage {
                    consumer: consumer.clone(),
                    offsets: offsets.clone(),
                    committer: consumer::Committer::new(consumer.clone(), offsets.clone()),
                    in_flight: Arc::new(Semaphore::new(cap)),
                    resume_at: (cap / 2).max(1),
                    pause_after: cfg.pipeline.pause_after,
                    commit_interval: cfg.kafka.commit_interval,
                    source: Source::Backfill,
                    waiting: None,
                    yield_to: Some(live_waiting.clone()),
                    jobs: job_tx.clone(),
                    outcomes: outcome_tx.clone(),
                    shutdown: shutdown.clone(),
                }
                .run(),
            ))
        }
        None => None,
    };
    // The sources hold the last senders: when they stop, the pipeline drains.
    drop(job_tx);
    drop(outcome_tx);
    let gauge = {
        let in_flight = in_flight.clone();
        let max = cfg.pipeline.max_in_flight;
        let last_ack = last_ack.clone();
        tokio::spawn(async move {
            loop {
                metrics::gauge!(telemetry::IN_FLIGHT).set((max - in_flight.available_permits()) as f64);
                metrics::gauge!(infra_telemetry::SECONDS_SINCE_LAST_ACK).set(last_ack.seconds());
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };

    tokio::select! {
        _ = stop => info!("shutdown requested"),
        r = source_task => warn!(result = ?r, "source stopped on its own"),
    }
    // The backfill source stops on the same signal (below); it is not awaited separately: the
    // pipeline drains once both sources have dropped their senders.
    drop(backfill);
    let started = Instant::now();
    ctl.stop();
    let deadline = cfg.shutdown.deadline;
    drain(publish, deadline, &ctl, shutdown).await;
    gauge.abort();
    probe.abort();
    // The final commits and leaving the groups, bounded by what is left of the deadline (drain
    // leaves ~1.5 s): with the broker unreachable both can block for long.
    let mut pending = offsets.lock().pending();
    let mut members = vec![(consumer, offsets)];
    if let Some((c, o)) = backfill_consumer {
        pending += o.lock().pending();
        members.push((c, o));
    }
    let left = deadline.saturating_sub(started.elapsed()).max(Duration::from_secs(1));
    if leave_groups(members, left).await {
        info!("final offsets committed; left the consumer groups");
    } else {
        warn!(
            ?left,
            "the broker did not answer the final commit or the group leave in time; \
            uncommitted records are redone by the next owner"
        );
    }
    // Let the infer thread finish its current forward pass: exiting the
    // process while libtorch is mid-forward crashes in its static
    // destructors. One batch takes well under a second.
    let waited = Instant::now();
    while !infer_thread.is_finished() && waited.elapsed() < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if infer_thread.is_finished() {
        let _ = infer_thread.join();
    } else {
        warn!("infer thread still busy at exit");
    }
    info!(elapsed = ?started.elapsed(), abandoned = pending, "worker stopped");
    Ok(())
}

/// The final commit of each consumer (re-sent while it fails: [`commit_final`]) and leaving its
/// group, on a thread of their own, waited for at most `within`. With the broker unreachable
/// both can block for long (librdkafka #3740: the close hangs on the coordinator); the shutdown
/// deadline wins, and what is not committed is redone by the next owner (nothing unfinished is
/// ever committed: `autotag_infra::offsets`). Returns whether they finished in time.
async fn leave_groups(members: Vec<(Arc<consumer::GroupConsumer>, Offsets)>, within: Duration) -> bool {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new().name("leave-groups".into()).spawn(move || {
        for (c, o) in &members {
            commit_final(c, o, 3, Duration::from_millis(200));
        }
        for (c, _) in &members {
            c.unsubscribe();
        }
        // Dropping the last handle closes the consumer (it leaves the group now instead of
        // after the session timeout).
        drop(members);
        let _ = tx.send(());
    });
    spawned.is_ok() && tokio::time::timeout(within, rx).await.is_ok_and(|r| r.is_ok())
}

/// Wait for the publish stage to finish, abandoning in-flight work at the
/// deadline. Leaves a little of the deadline for the final commit.
async fn drain(
    publish: tokio::task::JoinHandle<()>,
    deadline: Duration,
    ctl: &ShutdownController,
    _shutdown: Shutdown,
) {
    let grace = deadline.saturating_sub(Duration::from_millis(1500)).max(Duration::from_millis(100));
    let mut publish = publish;
    match tokio::time::timeout(grace, &mut publish).await {
        Ok(_) => info!("pipeline drained"),
        Err(_) => {
            warn!(?grace, "shutdown deadline reached; abandoning in-flight work (it will be redone)");
            ctl.abort();
            let _ = tokio::time::timeout(Duration::from_millis(500), publish).await;
        }
    }
}
