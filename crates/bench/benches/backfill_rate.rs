//! `autotag backfill --rate` benchmark (issue 15): the rate a run holds over `--seconds`,
//! measured on the broker's record timestamps, against the real broker (Tansu) and S3 server
//! (s3s-fs).
//!
//! ```sh
//! cargo bench -p autotag-bench --bench backfill_rate                  # --rate 100 for 30 s
//! cargo bench -p autotag-bench --bench backfill_rate -- --rate 500 --seconds 60
//! ```
//!
//! `--rate × --seconds + 1` objects under one prefix (a tiny body each: the run lists and
//! enqueues, it never reads a GIF), a `--dry-run` (the listing alone, timed), then one
//! `autotag backfill --from s3://…/ --rate R` run to the end. The figure (issue 15's bound: within 10 % of `--rate` over 30 s): events over the span
//! from the first record timestamp to the last; beside it, the busiest and the quietest whole
//! second (pacing, not bursts). Results merge into `bench-results/latest.json` (key
//! `backfill_rate`).

use std::process::Command;
use std::time::Instant;

use autotag_bench as bench;
use autotag_test_support::*;
use clap::Parser;
use futures::StreamExt as _;
use serde_json::json;

const TOPIC: &str = "gif-backfill";
const PARTITIONS: i32 = 4;

#[derive(Debug, Parser)]
struct Args {
    #[command(flatten)]
    harness: bench::HarnessArgs,
    /// The `--rate` given to the run, events/s.
    #[arg(long, default_value_t = 100)]
    rate: u32,
    /// Seconds the run should take at that rate.
    #[arg(long, default_value_t = 30)]
    seconds: u32,
}

fn main() -> anyhow::Result<()> {
    bench::block_on(run(Args::parse()))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let broker = Broker::start(PARTITIONS).await;
    broker.create_topics(&[TOPIC], PARTITIONS).await;
    let s3 = S3Server::start();
    s3.create_bucket("media").await;
    let objects = (args.rate * args.seconds + 1) as usize;
    let client = s3.client().await;
    let puts = (0..objects).map(|i| {
        let client = client.clone();
        async move {
            let key = format!("catalogue/{:02}/gif{i:06}.gif", i % 16);
            client.put_object().bucket("media").key(key).body(b"GIF89a".to_vec().into()).send().await
        }
    });
    let put: Vec<_> = futures::stream::iter(puts).buffer_unordered(16).collect().await;
    anyhow::ensure!(put.iter().all(Result::is_ok), "putting the catalogue failed");

    let dir = tempfile::tempdir()?;
    let backfill = |extra: &[&str]| {
        let t = Instant::now();
        let out = Command::new(autotag_bin())
            .args(["--config", &repo().join("config/default.toml").display().to_string(), "backfill"])
            .args(["--from", "s3://media/catalogue/", "--checkpoint"])
            .arg(dir.path().join("cp.json"))
            .args(extra)
            .env("AUTOTAG__KAFKA__BROKERS", broker.brokers())
            .env("RUST_LOG", "warn")
            .envs(s3.aws_env())
            .output()?;
        anyhow::ensure!(out.status.success(), "backfill failed: {}", String::from_utf8_lossy(&out.stderr));
        Ok(t.elapsed().as_secs_f64())
    };
    // Listing alone (a dry run sends nothing): what the store's pagination costs.
    let listing = backfill(&["--dry-run"])?;
    let wall = backfill(&["--rate", &args.rate.to_string()])?;

    let mut ts: Vec<i64> = read_to_end(&broker, TOPIC, PARTITIONS).iter().map(|r| r.timestamp_ms).collect();
    ts.sort_unstable();
    anyhow::ensure!(ts.len() == objects, "{} events for {objects} objects", ts.len());
    let span_s = (ts[ts.len() - 1] - ts[0]) as f64 / 1000.0;
    let rate = (ts.len() - 1) as f64 / span_s.max(1e-3);
    // Events per whole second of the run (the last, partial second left out).
    let mut per_second = vec![0u32; (span_s.floor() as usize).max(1)];
    for &t in &ts {
        if let Some(n) = per_second.get_mut(((t - ts[0]) / 1000) as usize) {
            *n += 1;
        }
    }
    let (busiest, quietest) =
        (per_second.iter().max().copied().unwrap_or(0), per_second.iter().min().copied().unwrap_or(0));
    let within = (rate / f64::from(args.rate) - 1.0).abs() <= 0.10;
    let v = json!({
        "measured_at": bench::now_rfc3339(), "machine": bench::machine_info(), "rate_asked": args.rate,
        "objects": objects, "span_s": span_s, "wall_s": wall, "dry_run_listing_s": listing, "rate": rate, "within_10_percent": within,
        "busiest_second": busiest, "quietest_second": quietest,
    });
    println!("{v}");
    println!(
        "--rate {}: {rate:.2} events/s over {span_s:.1} s of record timestamps ({}; whole seconds {quietest}–{busiest}); listing alone {listing:.1} s",
        args.rate,
        if within { "within 10 %" } else { "MISSED" }
    );
    let path = args.harness.json_path(&repo());
    bench::merge_json(&path, &["backfill_rate"], v)?;
    Ok(())
}
