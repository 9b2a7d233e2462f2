//! Priority benchmark (issue 15): live uploads at a steady share of the worker's capacity, once
//! alone and once over a backlog of backfill events, against the real broker, S3 server, model
//! and `autotag worker` process.
//!
//! ```sh
//! cargo bench -p autotag-bench --bench priority                       # 30 s per phase, 5 000 backfill events
//! cargo bench -p autotag-bench --bench priority -- --seconds 60 --backfill 10000
//! ```
//!
//! Phases, each with a fresh worker and fresh topics: (1) capacity: a backlog of live events of
//! the corpus's valid GIFs, GIFs/s from ready to the last suggestion; (2) live alone at `--load`
//! × capacity for `--seconds`; (3) the same live load with `--backfill` events waiting on the
//! backfill topic before the worker starts; (4) the backfill backlog alone for `--seconds` (the
//! share of the machine the backfill lane takes when no live work wants it). Live latency is
//! `uploaded_at` (stamped at produce) to the suggestion's record timestamp. The bounds (issue
//! 15): live p99 with backfill ≤ 1.25 × live p99 alone + one full batch's model time (a forward
//! in flight is not interrupted; the mean forward of the capacity phase, whose backlog fills
//! every batch, from the worker's metrics), and backfill GIFs/s during the live window ≥ 0.8 ×
//! (capacity − live rate). Results merge into `bench-results/latest.json` (key `priority`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use autotag_bench as bench;
use autotag_test_support::*;
use clap::Parser;
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::message::Message as _;
use rdkafka::producer::FutureRecord;
use serde_json::{Value, json};

const PARTITIONS: i32 = 4;

#[derive(Debug, Parser)]
struct Args {
    #[command(flatten)]
    harness: bench::HarnessArgs,
    /// Seconds of live load per phase.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Backfill events waiting when phase 3 starts.
    #[arg(long, default_value_t = 5000)]
    backfill: usize,
    /// Live rate as a share of the measured capacity.
    #[arg(long, default_value_t = 0.5)]
    load: f64,
    /// Live events of the capacity phase.
    #[arg(long, default_value_t = 300)]
    capacity_events: usize,
}

fn main() -> anyhow::Result<()> {
    bench::block_on(run(Args::parse()))
}

fn payload(event_id: &str, gif_id: &str, key: &str, backfill: bool) -> Vec<u8> {
    let mut v = json!({
        "schema_version": 1, "event_id": event_id, "gif_id": gif_id, "s3_uri": format!("s3://gifs/{key}"),
        "uploaded_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    });
    if backfill {
        v["source"] = json!("backfill");
        v["backfill_run_id"] = json!("bench");
    }
    serde_json::to_vec(&v).expect("JSON")
}

/// The topics of one phase.
struct Phase {
    uploads: String,
    backfill: String,
    suggestions: String,
    dlq: String,
}

impl Phase {
    async fn new(broker: &Broker, name: &str) -> Self {
        let p = Phase {
            uploads: format!("{name}-uploads"),
            backfill: format!("{name}-backfill"),
            suggestions: format!("{name}-suggestions"),
            dlq: format!("{name}-dlq"),
        };
        broker.create_topics(&[&p.uploads, &p.backfill, &p.suggestions, &p.dlq], PARTITIONS).await;
        p
    }

    fn worker(&self, broker: &Broker, s3: &S3Server, name: &str) -> Worker {
        let mut env = WorkerEnv::new(broker, s3);
        env.default_tuning();
        env.topics(&self.uploads, &self.suggestions, &self.dlq);
        env.set("AUTOTAG__LANES__BACKFILL_TOPIC", &self.backfill);
        env.set("AUTOTAG_LOG", "warn");
        let mut w = Worker::start(&env, name);
        w.wait_ready(Duration::from_secs(180));
        w
    }

    fn consumer(&self, broker: &Broker) -> anyhow::Result<StreamConsumer> {
        let c: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", broker.brokers())
            .set("group.id", format!("bench-{}", uuid::Uuid::new_v4()))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .create()?;
        c.subscribe(&[&self.suggestions, &self.dlq])?;
        Ok(c)
    }
}

/// (suggestion's upload event id, its source, record timestamp ms).
async fn collect(
    c: &StreamConsumer,
    until: impl Fn(&[(String, String, i64)]) -> bool,
    timeout: Duration,
) -> Vec<(String, String, i64)> {
    let t = Instant::now();
    let mut out = Vec::new();
    while !until(&out) && t.elapsed() < timeout {
        if let Ok(Ok(m)) = tokio::time::timeout(Duration::from_millis(500), c.recv()).await {
            let v: Value = serde_json::from_slice(m.payload().unwrap_or(b"null")).unwrap_or(Value::Null);
            out.push((
                v["upload_event_id"].as_str().unwrap_or_default().to_owned(),
                v["source"].as_str().unwrap_or("dead_letter").to_owned(),
                m.timestamp().to_millis().unwrap_or(0),
            ));
        }
    }
    out
}

/// Mean forward-pass time of a lane's model pool (`live` or `backfill`), from the worker's
/// metrics.
fn infer_mean_s(metrics: &str, lane: &str) -> f64 {
    let lane = format!("lane=\"{lane}\"");
    let get = |name: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(name) && l.contains("stage=\"infer\"") && l.contains(&lane))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let (sum, n) = (get("autotag_stage_duration_seconds_sum"), get("autotag_stage_duration_seconds_count"));
    if n > 0.0 { sum / n } else { 0.0 }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let corpus = bench::default_corpus();
    let files = bench::valid_files(&corpus)?;
    anyhow::ensure!(!files.is_empty(), "no valid GIFs in {}", corpus.display());
    let broker = Broker::start(PARTITIONS).await;
    let s3 = S3Server::start();
    s3.create_bucket("gifs").await;
    for f in &files {
        s3.put("gifs", &format!("corpus/{f}"), std::fs::read(corpus.join(f)).with_context(|| f.clone())?).await;
    }
    let producer = broker.producer();
    let key = |i: usize| format!("corpus/{}", files[i % files.len()]);

    // 1. Capacity: a backlog of live events.
    let p1 = Phase::new(&broker, "capacity").await;
    for i in 0..args.capacity_events {
        let gif = format!("c{i}");
        producer
            .send(
                FutureRecord::to(&p1.uploads).key(&gif).payload(&payload(&format!("ce{i}"), &gif, &key(i), false)),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)?;
    }
    let c1 = p1.consumer(&broker)?;
    let mut w = p1.worker(&broker, &s3, "priority-capacity");
    let ready_ms = chrono::Utc::now().timestamp_millis();
    let n = args.capacity_events;
    let out = collect(&c1, |o| o.len() >= n, Duration::from_secs(600)).await;
    // Ready to the last suggestion's record timestamp (not to when this consumer read it).
    let last_ms = out.iter().map(|x| x.2).max().unwrap_or(ready_ms + 1);
    let capacity = out.len() as f64 / ((last_ms - ready_ms).max(1) as f64 / 1000.0);
    // A backlog keeps every batch full: its mean forward is "one full batch's model time".
    let full_batch_s = infer_mean_s(&w.metrics(), "live");
    w.terminate(Duration::from_secs(20));
    let rate = args.load * capacity;
    println!("capacity {capacity:.1} GIFs/s ({} GIFs); live rate {rate:.1}/s for {} s", out.len(), args.seconds);

    // 2 and 3: live alone, then live over a backfill backlog.
    let mut results = Vec::new();
    // 4: the backfill backlog alone: how much of the machine the backfill lane takes when no
    // live work wants it.
    let phases =
        [("alone", 0usize, true), ("with_backfill", args.backfill, true), ("backfill_alone", args.backfill, false)];
    for (name, backfill, live) in phases {
        let p = Phase::new(&broker, name).await;
        for i in 0..backfill {
            let gif = format!("b{i}");
            producer
                .send(
                    FutureRecord::to(&p.backfill).key(&gif).payload(&payload(&format!("be{i}"), &gif, &key(i), true)),
                    Duration::from_secs(10),
                )
                .await
                .map_err(|(e, _)| e)?;
        }
        let c = p.consumer(&broker)?;
        let mut w = p.worker(&broker, &s3, &format!("priority-{name}"));
        let live_n = if live { (rate * args.seconds as f64).round() as usize } else { 0 };
        let start = Instant::now();
        let start_ms = chrono::Utc::now().timestamp_millis();
        let mut sent_ms: HashMap<String, i64> = HashMap::new();
        let prod = producer.clone();
        let uploads = p.uploads.clone();
        let keys: Vec<String> = (0..live_n).map(key).collect();
        let sender = tokio::spawn(async move {
            let mut sent = Vec::new();
            for (i, k) in keys.iter().enumerate() {
                tokio::time::sleep_until(tokio::time::Instant::from_std(
                    start + Duration::from_secs_f64(i as f64 / rate),
                ))
                .await;
                let (id, gif) = (format!("le{i}"), format!("l{i}"));
                let ms = chrono::Utc::now().timestamp_millis();
                let _ = prod
                    .send(
                        FutureRecord::to(&uploads).key(&gif).payload(&payload(&id, &gif, k, false)),
                        Duration::from_secs(10),
                    )
                    .await;
                sent.push((id, ms));
            }
            sent
        });
        let out = if live {
            collect(
                &c,
                |o| o.iter().filter(|x| x.1 == "live").count() >= live_n,
                Duration::from_secs(args.seconds + 300),
            )
            .await
        } else {
            collect(&c, |_| false, Duration::from_secs(args.seconds + 2)).await
        };
        for (id, ms) in sender.await? {
            sent_ms.insert(id, ms);
        }
        let end_ms = start_ms + (args.seconds * 1000) as i64;
        let mut lat: Vec<f64> = out
            .iter()
            .filter(|x| x.1 == "live")
            .filter_map(|x| sent_ms.get(&x.0).map(|s| (x.2 - s) as f64 / 1000.0))
            .collect();
        lat.sort_by(f64::total_cmp);
        let backfill_done = out.iter().filter(|x| x.1 == "backfill" && x.2 >= start_ms && x.2 <= end_ms).count();
        let metrics = w.metrics();
        let (infer, infer_backfill) = (infer_mean_s(&metrics, "live"), infer_mean_s(&metrics, "backfill"));
        w.terminate(Duration::from_secs(20));
        let r = json!({
            "phase": name, "live_events": live_n, "live_tagged": lat.len(),
            "live_p50_s": bench::percentile(&lat, 50.0), "live_p99_s": bench::percentile(&lat, 99.0),
            "backfill_gifs_per_s": backfill_done as f64 / args.seconds as f64, "infer_batch_mean_s": infer, "infer_backfill_batch_mean_s": infer_backfill,
        });
        println!("{r}");
        results.push(r);
    }
    let (alone, mixed, backfill_alone) = (&results[0], &results[1], &results[2]);
    let backfill_alone_share = backfill_alone["backfill_gifs_per_s"].as_f64().unwrap_or(0.0) / capacity;
    let bound = 1.25 * alone["live_p99_s"].as_f64().unwrap_or(0.0) + full_batch_s;
    let p99 = mixed["live_p99_s"].as_f64().unwrap_or(f64::MAX);
    let want_backfill = 0.8 * (capacity - rate);
    let got_backfill = mixed["backfill_gifs_per_s"].as_f64().unwrap_or(0.0);
    let v = json!({
        "measured_at": bench::now_rfc3339(), "machine": bench::machine_info(), "capacity_gifs_per_s": capacity,
        "live_rate": rate, "full_batch_s": full_batch_s, "seconds": args.seconds, "backfill_backlog": args.backfill, "phases": results,
        "live_p99_bound_s": bound, "live_p99_ok": p99 <= bound,
        "backfill_floor_gifs_per_s": want_backfill, "backfill_ok": got_backfill >= want_backfill,
        "backfill_alone_share_of_capacity": backfill_alone_share,
    });
    println!(
        "live p99 {p99:.3} s with backfill vs bound {bound:.3} s ({}); backfill {got_backfill:.1} GIFs/s vs floor {want_backfill:.1} ({})",
        if p99 <= bound { "ok" } else { "MISSED" },
        if got_backfill >= want_backfill { "ok" } else { "MISSED" }
    );
    println!("backfill alone: {:.2} of the live lane's capacity", backfill_alone_share);
    let path = args.harness.json_path(&repo());
    bench::merge_json(&path, &["priority"], v)?;
    Ok(())
}
