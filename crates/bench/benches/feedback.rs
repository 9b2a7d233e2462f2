//! Load benchmark of the feedback API: the real `autotag-feedback` binary against a real Tansu
//! broker, driven over keep-alive HTTP/1.1 connections by hyper's client in this process.
//!
//! ```sh
//! cargo bench -p autotag-bench --bench feedback                       # the figures of docs/benchmarks.md
//! cargo bench -p autotag-bench --bench feedback -- --duration-s 5 --batches 1
//! ```
//!
//! Phases, each on the same service process:
//! * **sustained** (batch 1, then batch 100): `--connections` clients (default 32, under the
//!   service's `max_concurrent_requests` = 64, so nothing is shed) each send the next request
//!   as soon as the last one was answered, for `--duration-s` after a warm-up. Reports
//!   requests/s, events/s and the latency percentiles of the 202s. A 202 means the broker
//!   acknowledged every event of the request (idempotent producer, `acks=all`).
//! * **overload** (batch 1, then batch 100): open loop at `--overload` (10) × the sustained
//!   requests/s of the same batch size, each request on a free connection of a pool (a new one
//!   when none is free, up to `--max-connections`). The service serves
//!   `max_concurrent_requests` at once and answers the rest 429 at once; the service's RSS is
//!   sampled every 100 ms (peak per quarter of the phase) and its `VmHWM` read at the end.
//!   When the load generator cannot send that fast on this machine (it shares the cores with
//!   the service and the broker), the rate it did send is reported beside the target.
//!
//! At the end every partition of the topic is read: the records must number at least the events
//! answered 202 (at-least-once; an overloaded request is either 202 and written, or 429 and not).
//! Results are merged into `bench-results/latest.json` (key `feedback`) and the feedback block of
//! `docs/benchmarks.md` is rewritten (`autotag_bench::update_feedback_doc`).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use autotag_bench as bench;
use autotag_test_support::{Broker, Proc, bin, free_port, http_get, repo};
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde_json::{Value, json};
use tokio::sync::Mutex;

const TOPIC: &str = "gif-tag-feedback";
const PARTITIONS: i32 = 3;
const TOKEN: &str = "bench-token";

#[derive(Debug, Parser)]
#[command(about = "autotag feedback API load benchmark")]
struct Args {
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
    /// Events per request of each phase.
    #[arg(long, value_delimiter = ',', default_value = "1,100")]
    batches: Vec<usize>,
    /// Seconds each measured phase lasts.
    #[arg(long, env = "AUTOTAG_BENCH_FEEDBACK_S", default_value_t = 10.0)]
    duration_s: f64,
    /// Seconds of unmeasured load before each sustained phase.
    #[arg(long, default_value_t = 2.0)]
    warmup_s: f64,
    /// Closed-loop clients of the sustained phases.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Offered load of the overload phases, × the sustained requests/s (0 = skip them).
    #[arg(long, default_value_t = 10.0)]
    overload: f64,
    /// Connection pool cap of the overload phases.
    #[arg(long, default_value_t = 2048)]
    max_connections: usize,
    /// Result file (merged; key `feedback`). Default: bench-results/latest.json in the repo.
    #[arg(long, env = "AUTOTAG_BENCH_JSON")]
    json: Option<PathBuf>,
    /// The markdown file whose feedback block is rewritten ("" = none).
    #[arg(long, default_value = "docs/benchmarks.md")]
    doc: String,
}

/// Request bodies, built before the clock starts so the generator spends its time on HTTP.
fn bodies(batch: usize, n: usize) -> Vec<Bytes> {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let tags = ["cat", "dog", "funny", "reaction", "happy", "dance", "love", "sports"];
    let actions = ["seen", "add", "reject"];
    (0..n)
        .map(|r| {
            let events: Vec<Value> = (0..batch)
                .map(|i| {
                    let k = r * batch + i;
                    json!({
                        "schema_version": 1,
                        "event_id": format!("bench-{batch}-{r}-{i}-{}", uuid::Uuid::new_v4()),
                        "gif_id": format!("gif-{}", k % 5000),
                        "tag": tags[k % tags.len()],
                        "action": actions[k % actions.len()],
                        "user_id": format!("user-{}", k % 997),
                        "occurred_at": now,
                        "suggestion_event_id": format!("sugg-{}", k % 5000),
                        "model_version": "efficientnet-lite0@1"
                    })
                })
                .collect();
            let v = if batch == 1 { events.into_iter().next().unwrap_or_default() } else { Value::Array(events) };
            Bytes::from(v.to_string())
        })
        .collect()
}

/// One keep-alive connection.
struct Conn(SendRequest<Full<Bytes>>);

impl Conn {
    async fn open(port: u16) -> anyhow::Result<Conn> {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Conn(sender))
    }

    /// POST one body; the status, or an error when the connection broke (the caller reopens).
    async fn post(&mut self, body: Bytes) -> anyhow::Result<u16> {
        self.0.ready().await?;
        let req = hyper::Request::post("/v1/feedback")
            .header("host", "127.0.0.1")
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("content-type", "application/json")
            .body(Full::new(body))?;
        let resp = tokio::time::timeout(Duration::from_secs(30), self.0.send_request(req)).await??;
        let status = resp.status().as_u16();
        resp.into_body().collect().await?;
        Ok(status)
    }
}

/// What one phase saw.
#[derive(Default)]
struct Tally {
    /// (status, latency s) of every answered request.
    answers: Vec<(u16, f64)>,
    /// Requests that got no answer (connection error or client timeout).
    failed: u64,
    /// Requests the overload generator could not start: no free connection under the cap.
    not_sent: u64,
    /// Requests whose pooled connection the service had closed, sent again on a fresh one.
    retried_on_closed: u64,
    /// Connections the overload generator opened (the service closes a connection whose
    /// request it answered 429 without reading the body, so shed requests cost a connection).
    connections_opened: u64,
    /// The most requests the overload generator had open at once (each on its own connection).
    peak_requests_in_flight: u64,
}

impl Tally {
    fn merge(&mut self, o: Tally) {
        self.answers.extend(o.answers);
        self.failed += o.failed;
        self.not_sent += o.not_sent;
        self.retried_on_closed += o.retried_on_closed;
    }

    fn count(&self, status: u16) -> usize {
        self.answers.iter().filter(|a| a.0 == status).count()
    }

    fn latency(&self, status: u16) -> Value {
        let mut l: Vec<f64> = self.answers.iter().filter(|a| a.0 == status).map(|a| a.1 * 1000.0).collect();
        if l.is_empty() {
            return Value::Null;
        }
        l.sort_by(f64::total_cmp);
        json!({
            "p50": bench::percentile(&l, 50.0),
            "p90": bench::percentile(&l, 90.0),
            "p99": bench::percentile(&l, 99.0),
            "max": l[l.len() - 1],
        })
    }

    fn statuses(&self) -> Value {
        let mut m = std::collections::BTreeMap::<String, u64>::new();
        for a in &self.answers {
            *m.entry(a.0.to_string()).or_default() += 1;
        }
        json!(m)
    }
}

/// The service's VmRSS sampled every 100 ms while a phase runs.
struct RssSampler {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<Vec<f64>>,
}

fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find(|l| l.starts_with(field))?.split_whitespace().nth(1)?.parse().ok()
}

impl RssSampler {
    fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut v = Vec::new();
            while !s.load(Ordering::Relaxed) {
                if let Some(k) = status_kib(pid, "VmRSS:") {
                    v.push(k as f64 / 1024.0);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            v
        });
        RssSampler { stop, handle }
    }

    /// Peak per quarter and overall, MiB.
    fn finish(self) -> Value {
        self.stop.store(true, Ordering::Relaxed);
        let v = self.handle.join().unwrap_or_default();
        let q = v.len().div_ceil(4).max(1);
        let quarters: Vec<f64> = v.chunks(q).map(|c| c.iter().copied().fold(0.0, f64::max)).collect();
        json!({
            "samples": v.len(),
            "first_mib": v.first(),
            "peak_mib": v.iter().copied().fold(0.0, f64::max),
            "quarter_peaks_mib": quarters,
        })
    }
}

/// `clients` closed-loop clients for `secs`: each sends the next body when the last was answered.
async fn closed_loop(port: u16, bodies: Arc<Vec<Bytes>>, clients: usize, secs: f64) -> anyhow::Result<(Tally, f64)> {
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (bodies, next) = (bodies.clone(), next.clone());
        let mut conn = Conn::open(port).await?;
        tasks.push(tokio::spawn(async move {
            let mut t = Tally::default();
            while Instant::now() < end {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize % bodies.len();
                let sent = Instant::now();
                match conn.post(bodies[i].clone()).await {
                    Ok(s) => t.answers.push((s, sent.elapsed().as_secs_f64())),
                    Err(_) => {
                        t.failed += 1;
                        match Conn::open(port).await {
                            Ok(c) => conn = c,
                            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                        }
                    }
                }
            }
            t
        }));
    }
    let mut all = Tally::default();
    for t in tasks {
        all.merge(t.await?);
    }
    Ok((all, start.elapsed().as_secs_f64()))
}

/// Open loop at `rate` requests/s for `secs`, each request on a pooled connection.
async fn open_loop(
    port: u16,
    bodies: Arc<Vec<Bytes>>,
    rate: f64,
    secs: f64,
    max_connections: usize,
) -> anyhow::Result<(Tally, f64, u64)> {
    let pool: Arc<Mutex<Vec<Conn>>> = Arc::new(Mutex::new(Vec::new()));
    let open = Arc::new(tokio::sync::Semaphore::new(max_connections));
    let tally = Arc::new(std::sync::Mutex::new(Tally::default()));
    let start = Instant::now();
    let mut sent: u64 = 0;
    let mut tasks = tokio::task::JoinSet::new();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let opened = Arc::new(AtomicU64::new(0));
    let mut peak_in_flight = 0;
    while start.elapsed().as_secs_f64() < secs {
        tick.tick().await;
        peak_in_flight = peak_in_flight.max(max_connections - open.available_permits());
        // Catch up to the schedule: the requests due by now.
        let due = (start.elapsed().as_secs_f64() * rate) as u64;
        while sent < due {
            let body = bodies[sent as usize % bodies.len()].clone();
            sent += 1;
            let Ok(permit) = open.clone().try_acquire_owned() else {
                tally.lock().map_err(|_| anyhow::anyhow!("tally poisoned"))?.not_sent += 1;
                continue;
            };
            let (pool, tally, opened) = (pool.clone(), tally.clone(), opened.clone());
            tasks.spawn(async move {
                let _permit = permit;
                let t0 = Instant::now();
                // A pooled connection may have been closed by the service while it sat idle
                // (its header read timeout cuts idle keep-alive connections): like any HTTP
                // client's pool, retry once on a fresh connection (safe: a retried request
                // carries the same event_ids). Only a fresh connection's failure counts.
                let reused = pool.lock().await.pop();
                let mut outcome = None;
                let mut retried = false;
                if let Some(mut c) = reused {
                    match c.post(body.clone()).await {
                        Ok(s) => {
                            pool.lock().await.push(c);
                            outcome = Some(s);
                        }
                        Err(_) => retried = true,
                    }
                }
                if outcome.is_none() {
                    opened.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut c) = Conn::open(port).await
                        && let Ok(s) = c.post(body).await
                    {
                        pool.lock().await.push(c);
                        outcome = Some(s);
                    }
                }
                if let Ok(mut t) = tally.lock() {
                    t.retried_on_closed += u64::from(retried);
                    match outcome {
                        Some(s) => t.answers.push((s, t0.elapsed().as_secs_f64())),
                        None => t.failed += 1,
                    }
                }
            });
        }
        while tasks.try_join_next().is_some() {}
    }
    let offered_s = start.elapsed().as_secs_f64();
    while tasks.join_next().await.is_some() {}
    let mut t = std::mem::take(&mut *tally.lock().map_err(|_| anyhow::anyhow!("tally poisoned"))?);
    t.connections_opened = opened.load(Ordering::Relaxed);
    t.peak_requests_in_flight = peak_in_flight as u64;
    Ok((t, offered_s, sent))
}

/// Every record on the topic, counted by reading each partition to its end.
fn topic_records(broker: &Broker) -> anyhow::Result<u64> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.brokers())
        .set("group.id", format!("feedback-bench-{}", uuid::Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest")
        .create()?;
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(TOPIC, p, rdkafka::Offset::Beginning)?;
    }
    c.assign(&tpl)?;
    let (mut n, mut eof) = (0u64, std::collections::HashSet::new());
    let t = Instant::now();
    while eof.len() < PARTITIONS as usize {
        if t.elapsed() > Duration::from_secs(300) {
            bail!("reading the topic took over 300 s ({n} records so far)");
        }
        match c.poll(Duration::from_millis(500)) {
            Some(Ok(_)) => n += 1,
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                eof.insert(p);
            }
            Some(Err(e)) => bail!("reading the topic: {e}"),
            None => {}
        }
    }
    Ok(n)
}

fn phase_json(t: &Tally, secs: f64, batch: usize) -> Value {
    let ok = t.count(202) as f64;
    json!({
        "batch": batch,
        "duration_s": secs,
        "requests": t.answers.len(),
        "statuses": t.statuses(),
        "failed": t.failed,
        "requests_per_s": t.answers.len() as f64 / secs,
        "accepted_requests_per_s": ok / secs,
        "accepted_events_per_s": ok * batch as f64 / secs,
        "latency_ms_202": t.latency(202),
        "latency_ms_429": t.latency(429),
    })
}

async fn run(args: Args) -> anyhow::Result<Value> {
    let broker = Broker::start(1).await;
    broker.create_topics(&[TOPIC], PARTITIONS).await;
    let dir = tempfile::tempdir()?;
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("{}\n", autotag_feedback::auth::token_line("bench", TOKEN)))?;
    let (port, metrics_port) = (free_port(), free_port());
    let log = dir.path().join("service.log");
    let mut cmd = std::process::Command::new(bin("autotag-feedback"));
    cmd.arg("--config")
        .arg(repo().join("config/default.toml"))
        .env("AUTOTAG__KAFKA__BROKERS", broker.brokers())
        .env("AUTOTAG__FEEDBACK__LISTEN", format!("127.0.0.1:{port}"))
        .env("AUTOTAG__FEEDBACK__METRICS_LISTEN", format!("127.0.0.1:{metrics_port}"))
        .env("AUTOTAG__FEEDBACK__TOKENS_FILE", &tokens)
        // One client drives all the load: give it every slot, so that the figures are the
        // service's, not the per-client fairness policy's (default 16 of 64).
        .env("AUTOTAG__FEEDBACK__MAX_REQUESTS_PER_CLIENT", "64")
        .env("AUTOTAG_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log)?);
    let mut service = Proc(cmd.spawn().context("starting autotag-feedback")?);
    let pid = service.0.id();
    let t = Instant::now();
    while http_get(metrics_port, "/readyz").is_none_or(|(c, _)| c != 200) {
        if service.0.try_wait()?.is_some() || t.elapsed() > Duration::from_secs(30) {
            bail!("the service did not get ready; log:\n{}", std::fs::read_to_string(&log).unwrap_or_default());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rss_at_ready = status_kib(pid, "VmRSS:").unwrap_or(0) as f64 / 1024.0;
    eprintln!("[feedback bench] service ready, RSS {rss_at_ready:.1} MiB");

    let cpu = bench::CpuWatch::start();
    let mut sustained = Vec::new();
    let mut overload = Vec::new();
    let mut acked_events = 0u64;
    for &batch in &args.batches {
        let bodies = Arc::new(bodies(batch, if batch == 1 { 20_000 } else { 400 }));
        let (warm, _) = closed_loop(port, bodies.clone(), args.connections, args.warmup_s).await?;
        acked_events += (warm.count(202) * batch) as u64;
        let rss = RssSampler::start(pid);
        let (t, secs) = closed_loop(port, bodies.clone(), args.connections, args.duration_s).await?;
        acked_events += (t.count(202) * batch) as u64;
        let mut row = phase_json(&t, secs, batch);
        row["connections"] = json!(args.connections);
        row["rss"] = rss.finish();
        eprintln!(
            "[feedback bench] sustained batch {batch}: {:.0} req/s, {:.0} events/s, p50 {} ms, p99 {} ms, statuses {}",
            row["accepted_requests_per_s"].as_f64().unwrap_or(0.0),
            row["accepted_events_per_s"].as_f64().unwrap_or(0.0),
            row["latency_ms_202"]["p50"],
            row["latency_ms_202"]["p99"],
            row["statuses"]
        );
        let capacity = row["accepted_requests_per_s"].as_f64().unwrap_or(0.0);
        sustained.push(row);

        if args.overload > 0.0 && capacity > 0.0 {
            let target = args.overload * capacity;
            let rss = RssSampler::start(pid);
            let (t, secs, sent) = open_loop(port, bodies, target, args.duration_s, args.max_connections).await?;
            acked_events += (t.count(202) * batch) as u64;
            let mut row = phase_json(&t, secs, batch);
            row["sustained_requests_per_s"] = json!(capacity);
            row["target_requests_per_s"] = json!(target);
            row["offered_requests_per_s"] = json!(sent as f64 / secs);
            row["offered_x_sustained"] = json!(sent as f64 / secs / capacity);
            row["not_sent"] = json!(t.not_sent);
            row["retried_on_closed"] = json!(t.retried_on_closed);
            row["connections_opened"] = json!(t.connections_opened);
            row["peak_requests_in_flight"] = json!(t.peak_requests_in_flight);
            row["rss"] = rss.finish();
            eprintln!(
                "[feedback bench] overload batch {batch}: offered {:.0} req/s ({:.1}x), 202 {:.0} req/s, statuses {}, RSS peak {:.1} MiB",
                row["offered_requests_per_s"].as_f64().unwrap_or(0.0),
                row["offered_x_sustained"].as_f64().unwrap_or(0.0),
                row["accepted_requests_per_s"].as_f64().unwrap_or(0.0),
                row["statuses"],
                row["rss"]["peak_mib"].as_f64().unwrap_or(0.0),
            );
            overload.push(row);
        }
    }
    let load = cpu.finish();
    let peak = status_kib(pid, "VmHWM:").unwrap_or(0) as f64 / 1024.0;
    let service_cpu_s = bench::tree_cpu_seconds(pid);
    let broker_cpu_s = bench::tree_cpu_seconds(broker.pid());
    let records = topic_records(&broker)?;
    drop(service);
    if records < acked_events {
        bail!("{records} records on the topic, fewer than the {acked_events} events answered 202");
    }
    Ok(json!({
        "updated_at": bench::now_rfc3339(),
        "machine": bench::machine_info(),
        "description": "the real autotag-feedback binary (config/default.toml: max_concurrent_requests 64, max_connections 512, max_requests_per_client raised to 64 for the one bench client; idempotent producer, acks=all) and a Tansu broker (memory storage, 3 partitions) on this machine; load from hyper's HTTP/1.1 client in the bench process, keep-alive connections",
        "rss_at_ready_mib": rss_at_ready,
        "peak_rss_mib": peak,
        "sustained": sustained,
        "overload": overload,
        "acked_events": acked_events,
        "topic_records": records,
        "cpu_s": {"service": service_cpu_s, "broker": broker_cpu_s},
        "cpu_load": load,
    }))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let json_path = args.json.clone().unwrap_or_else(|| repo().join(bench::DEFAULT_JSON));
    let doc = (!args.doc.is_empty()).then(|| repo().join(&args.doc));
    bench::wait_for_quiet("the feedback bench");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let v = rt.block_on(run(args))?;
    eprint!("{}", bench::feedback_report(&v));
    bench::merge_json(&json_path, &["feedback"], v.clone())?;
    eprintln!("merged into {} (key `feedback`)", json_path.display());
    if let Some(doc) = doc {
        bench::update_feedback_doc(&doc, &v)?;
        eprintln!("wrote {}", doc.display());
    }
    Ok(())
}
