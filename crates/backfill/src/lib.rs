//! `autotag backfill`: enqueue the historical catalogue for tagging (issue 15).
//!
//! **Owns** a run: listing a source ([`source`]: an S3 prefix, an S3 Inventory report or a
//! manifest file), turning each
//! object into an upload event (`"source":"backfill"`, `backfill_run_id`, `event_id` = uuid v5 of
//! (run id, object): [`autotag_contract::ids::backfill_event_id`]) on the backfill topic, at a
//! bounded rate and with a bounded number of unacknowledged events, and the run's checkpoint
//! ([`checkpoint`]).
//!
//! **Promises**: one distinct `event_id` per object per run, however often the run is resumed
//! (a re-send after a crash repeats the id); the checkpoint only ever covers objects whose event
//! the broker acknowledged (or that were skipped or failed, counted); `--dry-run` writes nothing
//! (no event, no checkpoint). The run id is the first line of stdout, `run_id=<uuid>`.
//!
//! **Limits**: no libtorch (checked on the binary). It enumerates the store, never replays topics
//! by time (Tansu ignores record timestamps in `offsets_for_times`:
//! `shared/docs/environment.md`). Memory: one listing page plus
//! `--max-in-flight` events.

pub mod checkpoint;
pub mod config;
pub mod inventory;
mod progress;
pub mod source;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use autotag_contract::{Source, UploadEvent};
use chrono::{SecondsFormat, Utc};
use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use rdkafka::consumer::Consumer as _;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::time::Instant;
use tracing::{info, warn};

pub use config::BackfillConfig;

use checkpoint::{Checkpoint, Counts, Location, Outcome, Watermark};
use source::{Entry, GifIdRule, Lister, SourceSpec};

/// What one run enqueues and how (the command line).
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Enqueue every object under this S3 prefix (`s3://bucket/prefix/`), in key order.
    #[arg(long, value_name = "S3_URI", conflicts_with_all = ["manifest", "inventory", "resume"])]
    pub from: Option<String>,
    /// Enqueue the objects of a JSON-lines file of {"gif_id","s3_uri"[,"uploaded_at"]}.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["inventory", "resume"])]
    pub manifest: Option<PathBuf>,
    /// Enqueue the objects of an S3 Inventory report (CSV): its manifest.json.
    #[arg(long, value_name = "S3_URI", conflicts_with = "resume")]
    pub inventory: Option<String>,
    /// Only objects modified at or after this time (RFC 3339; S3 prefixes only).
    #[arg(long, value_name = "TIME")]
    pub modified_after: Option<String>,
    /// Only objects modified before this time (RFC 3339, exclusive; S3 prefixes only).
    #[arg(long, value_name = "TIME")]
    pub modified_before: Option<String>,
    /// Only keys ending with this (ASCII case-insensitive; "" for every key).
    #[arg(long, default_value = ".gif")]
    pub suffix: String,
    /// How an object's gif_id is made: `stem` (file name without extension), `key`, or
    /// `meta:NAME` (the object's user metadata NAME, a HeadObject per object).
    #[arg(long, default_value = "stem")]
    pub gif_id: GifIdRule,
    /// Events per second (0: as fast as the broker acknowledges).
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Events sent and not yet acknowledged, at most.
    #[arg(long, default_value_t = 1000)]
    pub max_in_flight: usize,
    /// The checkpoint: a file or `s3://bucket/key` (default `<backfill.checkpoint_dir>/<run_id>.json`).
    #[arg(long, value_name = "PATH")]
    pub checkpoint: Option<String>,
    /// Continue the run with this id from its checkpoint (source and filters come from it).
    #[arg(long, value_name = "RUN_ID")]
    pub resume: Option<String>,
    /// List and count only: no event, no checkpoint.
    #[arg(long)]
    pub dry_run: bool,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub run_id: String,
    pub counts: Counts,
    /// The listing reached its end and every event was acknowledged.
    pub finished: bool,
    /// Where the checkpoint is (`None`: a dry run).
    pub checkpoint: Option<String>,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = &self.counts;
        write!(
            f,
            "run_id={} {}: listed {}, enqueued {}, skipped {}, failed {}",
            self.run_id,
            if self.finished { "finished" } else { "stopped" },
            c.listed,
            c.enqueued,
            c.skipped,
            c.failed
        )?;
        if !self.finished
            && let Some(p) = &self.checkpoint
        {
            write!(f, " (resume: autotag backfill --resume {} --checkpoint {p})", self.run_id)?;
        }
        Ok(())
    }
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The run's checkpoint, new or resumed, and where it is kept (`None`: a dry run).
async fn open_run(cfg: &BackfillConfig, args: &RunArgs) -> anyhow::Result<(Checkpoint, Option<Location>)> {
    let dir = &cfg.backfill.checkpoint_dir;
    if let Some(run_id) = &args.resume {
        let at = Location::of(args.checkpoint.as_deref(), dir, run_id, &cfg.s3).await?;
        let cp = at.load().await?;
        if &cp.run_id != run_id {
            bail!("{at} is the checkpoint of run {}, not {run_id}", cp.run_id);
        }
        return Ok((cp, (!args.dry_run).then_some(at)));
    }
    let source = match (&args.from, &args.manifest, &args.inventory) {
        (None, None, Some(manifest)) => SourceSpec::Inventory {
            manifest: manifest.clone(),
            suffix: args.suffix.clone(),
            modified_after: args.modified_after.clone(),
            modified_before: args.modified_before.clone(),
            gif_id: args.gif_id.clone(),
        },
        (Some(uri), None, None) => SourceSpec::S3 {
            uri: uri.clone(),
            suffix: args.suffix.clone(),
            modified_after: args.modified_after.clone(),
            modified_before: args.modified_before.clone(),
            gif_id: args.gif_id.clone(),
        },
        (None, Some(path), None) => {
            if args.modified_after.is_some() || args.modified_before.is_some() {
                bail!("--modified-after/--modified-before filter S3 listings; a manifest lists what it lists");
            }
            SourceSpec::Manifest { path: std::path::absolute(path).unwrap_or_else(|_| path.clone()) }
        }
        _ => bail!(
            "say what to enqueue: --from s3://bucket/prefix/, --inventory s3://…/manifest.json, --manifest FILE, or --resume RUN_ID"
        ),
    };
    let run_id = uuid::Uuid::new_v4().to_string();
    let t = now();
    let cp = Checkpoint {
        run_id: run_id.clone(),
        source,
        position: None,
        counts: Counts::default(),
        finished: false,
        started_at: t.clone(),
        updated_at: t,
    };
    let at =
        if args.dry_run { None } else { Some(Location::of(args.checkpoint.as_deref(), dir, &run_id, &cfg.s3).await?) };
    Ok((cp, at))
}

/// Sends at most `rate` events per second on average from the start (no burst beyond that).
struct Pacer {
    interval: Option<Duration>,
    next: Instant,
}

impl Pacer {
    fn new(rate: f64) -> Self {
        let interval = (rate > 0.0 && rate.is_finite()).then(|| Duration::from_secs_f64(1.0 / rate));
        Self { interval, next: Instant::now() }
    }

    async fn wait(&mut self) {
        if let Some(i) = self.interval {
            tokio::time::sleep_until(self.next).await;
            self.next = self.next.max(Instant::now() - i) + i;
        }
    }
}

/// One object's event on its way: (listing number, position, how it finished or the broker's
/// refusal).
type Delivery = std::pin::Pin<Box<dyn std::future::Future<Output = (u64, String, Result<Outcome, String>)> + Send>>;

/// The gif id in an object's user metadata `name` (HeadObject).
async fn gif_id_from_metadata(client: &aws_sdk_s3::Client, s3_uri: &str, name: &str) -> Result<String, String> {
    let (bucket, key) = autotag_contract::parse_s3_uri(s3_uri).ok_or_else(|| format!("{s3_uri}: not an S3 URI"))?;
    let mut delay = Duration::from_millis(200);
    for attempt in 1..=5 {
        match client.head_object().bucket(&bucket).key(&key).send().await {
            Ok(h) => {
                return h
                    .metadata()
                    .and_then(|m| {
                        m.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim().to_owned())
                    })
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| format!("{s3_uri}: no user metadata {name:?} (--gif-id meta:{name})"));
            }
            Err(e) if attempt < 5 && e.raw_response().is_none_or(|r| r.status().as_u16() >= 500) => {
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(e) => return Err(format!("{s3_uri}: HeadObject: {}", aws_sdk_s3::error::DisplayErrorContext(&e))),
        }
    }
    Err(format!("{s3_uri}: HeadObject kept failing"))
}

/// Run a backfill (module docs). `shutdown` resolving stops the listing; events in flight are
/// awaited and the checkpoint written.
///
/// # Errors
/// A bad source or flags, a missing topic, a listing that keeps failing, an event the broker
/// refused (the checkpoint then stays at the last acknowledged prefix: `--resume` continues).
pub async fn run(
    cfg: &BackfillConfig,
    args: &RunArgs,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<Summary> {
    if args.max_in_flight == 0 {
        bail!("--max-in-flight must be at least 1");
    }
    if !(args.rate >= 0.0 && args.rate.is_finite()) {
        bail!("--rate must be a number >= 0");
    }
    let (mut cp, path) = open_run(cfg, args).await?;
    println!("run_id={}", cp.run_id);
    if cp.finished {
        info!(run_id = %cp.run_id, "the run is already finished");
        return Ok(Summary {
            run_id: cp.run_id.clone(),
            counts: cp.counts,
            finished: true,
            checkpoint: path.map(|p| p.to_string()),
        });
    }
    let topic = cfg.backfill.topic.as_str();
    let producer: Option<FutureProducer> = if args.dry_run {
        None
    } else {
        let p = autotag_infra::kafka::create_producer(&cfg.kafka).context("creating the Kafka producer")?;
        check_topic(&cfg.kafka, topic)?;
        Some(p)
    };
    if let Some(at) = &path {
        at.save(&cp).await?;
    }
    let client = match &cp.source {
        SourceSpec::S3 { .. } | SourceSpec::Inventory { .. } => Some(autotag_infra::s3::create_client(&cfg.s3).await),
        SourceSpec::Manifest { .. } => None,
    };
    let started = chrono::DateTime::parse_from_rfc3339(&cp.started_at)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|_| Utc::now());
    let mut lister = Lister::new(&cp.source, cp.position.clone(), client.clone(), cfg.backfill.page_size, started)?;
    // The next page is listed while this one is sent: otherwise every page's listing (0.25 s per
    // 1 000 keys on s3s-fs) stalls the pace, and `--rate 500` held 418-426 events/s instead of
    // 500 (`cargo bench --bench backfill_rate`, docs/benchmarks.md). One page ahead at most.
    let (page_tx, mut pages) = tokio::sync::mpsc::channel(1);
    let listing = tokio::spawn(async move {
        loop {
            let page = lister.next_page().await;
            let last = !matches!(page, Ok(Some(_)));
            if page_tx.send(page).await.is_err() || last {
                break;
            }
        }
    });
    info!(run_id = %cp.run_id, source = ?cp.source, position = ?cp.position, dry_run = args.dry_run, rate = args.rate, "backfill started");

    let mut mark = Watermark::resume(cp.position.clone(), cp.counts);
    let mut progress = progress::Progress::new(cfg.backfill.progress_interval, cp.counts);
    let mut pacer = Pacer::new(args.rate);
    let mut inflight: FuturesUnordered<Delivery> = FuturesUnordered::new();
    let mut last_save = Instant::now();
    let mut seq = 0u64;
    let mut stopped = false;
    let mut failure: Option<anyhow::Error> = None;
    tokio::pin!(shutdown);

    'listing: loop {
        let page = tokio::select! {
            biased;
            () = &mut shutdown => { stopped = true; break 'listing; }
            // Closed without its last page: the listing task died (never taken for the end).
            page = pages.recv() => page.unwrap_or_else(|| Err(anyhow::anyhow!("the listing task stopped"))),
        };
        let page = match page {
            Ok(Some(p)) => p,
            Ok(None) => break,
            Err(e) => {
                failure = Some(e);
                break;
            }
        };
        for (position, entry) in page {
            let n = seq;
            seq += 1;
            let item = match entry {
                Entry::Skipped => {
                    mark.finish(n, position, Outcome::Skipped);
                    continue;
                }
                Entry::Failed(reason) => {
                    warn!(%reason, "object not enqueued");
                    mark.finish(n, position, Outcome::Failed);
                    continue;
                }
                Entry::Item(item) => item,
            };
            let Some(producer) = &producer else {
                mark.finish(n, position, Outcome::Enqueued);
                continue;
            };
            // Room for one more event, at the pace asked for; acknowledgements keep draining.
            while inflight.len() >= args.max_in_flight {
                if let Some(d) = inflight.next().await
                    && let Err(e) = settle(d, &mut mark)
                {
                    failure = Some(e);
                    break 'listing;
                }
            }
            tokio::select! {
                biased;
                () = &mut shutdown => { stopped = true; break 'listing; }
                () = pacer.wait() => {}
            }
            let meta = item.meta.clone().zip(client.clone());
            let mut event = UploadEvent {
                schema_version: 1,
                event_id: autotag_contract::ids::backfill_event_id(&cp.run_id, &item.s3_uri),
                gif_id: item.gif_id,
                s3_uri: item.s3_uri,
                uploaded_at: item.uploaded_at,
                existing_tags: None,
                source: Some(Source::Backfill),
                backfill_run_id: Some(cp.run_id.clone()),
            };
            let producer = producer.clone();
            let topic = topic.to_owned();
            inflight.push(Box::pin(async move {
                if let Some((name, client)) = meta {
                    match gif_id_from_metadata(&client, &event.s3_uri, &name).await {
                        Ok(id) => event.gif_id = id,
                        Err(reason) => {
                            warn!(%reason, "object not enqueued");
                            return (n, position, Ok(Outcome::Failed));
                        }
                    }
                }
                let payload = match serde_json::to_vec(&event) {
                    Ok(p) => p,
                    Err(e) => return (n, position, Err(e.to_string())),
                };
                let record = FutureRecord::to(&topic).key(&event.gif_id).payload(&payload);
                // Waits for queue room itself; librdkafka retries until message.timeout.ms.
                let r = producer.send(record, Duration::from_secs(60)).await;
                (n, position, r.map(|_| Outcome::Enqueued).map_err(|(e, _)| e.to_string()))
            }));
            while let Some(Some(d)) = futures::FutureExt::now_or_never(inflight.next()) {
                if let Err(e) = settle(d, &mut mark) {
                    failure = Some(e);
                    break 'listing;
                }
            }
            progress.update(mark.counts, mark.pending() + inflight.len());
            if last_save.elapsed() >= cfg.backfill.checkpoint_interval {
                save(&mut cp, &mark, false, path.as_ref()).await?;
                last_save = Instant::now();
            }
        }
        progress.update(mark.counts, mark.pending() + inflight.len());
        save(&mut cp, &mark, false, path.as_ref()).await?;
        last_save = Instant::now();
    }
    listing.abort();
    // Whatever was sent is awaited, so the checkpoint covers it.
    while let Some(d) = inflight.next().await {
        if let Err(e) = settle(d, &mut mark) {
            failure.get_or_insert(e);
        }
    }
    let finished = !stopped && failure.is_none();
    save(&mut cp, &mark, finished, path.as_ref()).await?;
    progress.finish(mark.counts);
    let summary =
        Summary { run_id: cp.run_id.clone(), counts: mark.counts, finished, checkpoint: path.map(|p| p.to_string()) };
    match failure {
        Some(e) => Err(e.context(format!("{summary}"))),
        None => Ok(summary),
    }
}

/// Record one delivery; a refused event stops the run.
fn settle(d: (u64, String, Result<Outcome, String>), mark: &mut Watermark) -> anyhow::Result<()> {
    let (n, position, r) = d;
    match r {
        Ok(outcome) => {
            mark.finish(n, position, outcome);
            Ok(())
        }
        Err(e) => bail!("the broker did not acknowledge the event of {position}: {e}"),
    }
}

async fn save(cp: &mut Checkpoint, mark: &Watermark, finished: bool, at: Option<&Location>) -> anyhow::Result<()> {
    cp.position.clone_from(&mark.position);
    cp.counts = mark.counts;
    cp.finished = finished;
    cp.updated_at = now();
    match at {
        Some(at) => at.save(cp).await,
        None => Ok(()),
    }
}

/// Refuse to start, naming the topic, when the broker does not have it. Asked by a consumer:
/// a producer's metadata request may create the topic (`allow.auto.create.topics`).
fn check_topic(kafka: &autotag_infra::kafka::KafkaConfig, topic: &str) -> anyhow::Result<()> {
    let c: rdkafka::consumer::BaseConsumer = autotag_infra::kafka::reader_config(kafka, "autotag-backfill")
        .create()
        .context("creating a metadata reader")?;
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .with_context(|| format!("reading the metadata of topic {topic}"))?;
    match md.topics().iter().find(|t| t.name() == topic) {
        Some(t) if t.error().is_none() && !t.partitions().is_empty() => Ok(()),
        _ => bail!("topic {topic} does not exist (create it, or set backfill.topic)"),
    }
}
