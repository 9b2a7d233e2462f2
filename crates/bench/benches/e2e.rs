//! End-to-end benchmark: upload events → real Tansu broker → real s3s-fs → the real
//! `autotag worker` process (CPU, the exported model) → suggestions on Kafka.
//!
//! ```sh
//! cargo bench --bench e2e                                  # backlog, steady, memory; 500 events
//! cargo bench --bench e2e -- --modes backlog --events 1000
//! AUTOTAG_BENCH_MEMORY_EVENTS=1000,5000 cargo bench --bench e2e -- --modes memory
//! AUTOTAG__BATCH__MAX_BATCH=32 cargo bench --bench e2e -- --modes backlog   # explore the config
//! ```
//!
//! Modes:
//! * **backlog**: all N events are produced before the worker starts; throughput is measured
//!   from the worker's `/readyz` turning 200 to the last suggestion's Kafka timestamp.
//! * **steady**: the worker is started first, then N events are offered at a fixed rate
//!   (`--load` × the backlog GIFs/s, default 50%, or `--rate`); latency percentiles are the
//!   point of this mode.
//! * **memory**: backlogs of 1 000 and 10 000 events (`--memory-events`) of the small static
//!   GIFs with `frames.per_gif = 1` (to keep it short); peak RSS must not grow with the backlog.
//!
//! Latency is `uploaded_at` (stamped when the event is produced) to the suggestion's Kafka
//! record timestamp (CreateTime, stamped by the worker's producer); the same to `produced_at` is
//! recorded too. Peak RSS is the worker's `VmHWM` read just before it is stopped.
//!
//! The worker runs `config/default.toml` with only the harness's settings overridden (broker,
//! group, S3 endpoint, model dir, metrics port, `device = cpu`, short group timeouts); every
//! `AUTOTAG__…` variable in the environment is passed through, so the config can be explored.
//! Results are merged into `bench-results/latest.json` (key `e2e`).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use autotag_bench::{self as bench, ModelBenchOptions};
use autotag_infra::config::load_with_env;
use autotag_model::{DeviceChoice, ModelConfig, Precision};
use autotag_test_support::*;
use autotag_worker::WorkerConfig as Config;
use clap::Parser;
use rdkafka::consumer::StreamConsumer;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Value, json};

const BUCKET: &str = "gifs";

#[derive(Debug, Parser)]
#[command(about = "autotag end-to-end benchmark")]
struct Args {
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
    /// Upload events in the backlog and steady modes (>= 500 for the reported figures).
    #[arg(long, env = "AUTOTAG_BENCH_EVENTS", default_value_t = 500)]
    events: usize,
    /// Modes to run, in order.
    #[arg(long, env = "AUTOTAG_BENCH_MODES", value_delimiter = ',', default_value = "backlog,steady,memory")]
    modes: Vec<String>,
    /// Backlog sizes of the memory mode.
    #[arg(long, env = "AUTOTAG_BENCH_MEMORY_EVENTS", value_delimiter = ',', default_value = "1000,10000")]
    memory_events: Vec<usize>,
    /// Offered load of the steady mode as a fraction of the backlog throughput.
    #[arg(long, default_value_t = 0.5)]
    load: f64,
    /// Offered rate of the steady mode in GIFs/s (overrides --load).
    #[arg(long)]
    rate: Option<f64>,
    /// Result file (merged; key `e2e`). Default: bench-results/latest.json in the repo.
    #[arg(long, env = "AUTOTAG_BENCH_JSON")]
    json: Option<PathBuf>,
    /// Model-only results (`autotag-bench model --json`) for the ratio. Default: the result
    /// file; when it has no `model` key the model is benchmarked in-process first at the
    /// worker's batch size and thread count.
    #[arg(long)]
    model_json: Option<PathBuf>,
    /// Seconds per configuration (3 runs) of the model-only ceiling measured right before and
    /// right after the backlog run: the model bench's 3 fastest configurations and the
    /// worker's own (0 = skip).
    #[arg(long, env = "AUTOTAG_BENCH_SUSTAINED_S", default_value_t = 12.0)]
    sustained_s: f64,
    /// Partitions of the uploads topic.
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    /// The worker's `model.device` (`cpu`, `cuda`, `auto`); also the device of the model
    /// reference. `model.precision` and the rest come from the config and `AUTOTAG__…` variables.
    #[arg(long, env = "AUTOTAG_BENCH_DEVICE", default_value = "cpu")]
    device: String,
}

fn main() -> anyhow::Result<()> {
    bench::block_on(run(Args::parse()))
}

/// One benchmark run: a fresh broker, S3 server and worker.
struct Run {
    name: String,
    events: usize,
    files: Vec<String>,
    /// `Some(rate)`: steady mode at `rate` GIFs/s; `None`: backlog.
    rate: Option<f64>,
    env: Vec<(String, String)>,
    device: String,
}

async fn run(args: Args) -> anyhow::Result<()> {
    let json_path = args.json.clone().unwrap_or_else(|| repo().join(bench::DEFAULT_JSON));
    let manifest: Value = serde_json::from_slice(&read(&testdata("manifest.json")))?;
    let entries = manifest.as_array().context("manifest.json is not an array")?;
    let valid: Vec<String> =
        entries.iter().filter(|e| e["kind"] == "valid").filter_map(|e| e["file"].as_str().map(str::to_owned)).collect();
    let statics: Vec<String> = entries
        .iter()
        .filter(|e| e["kind"] == "valid" && e["frames"].as_u64() == Some(1))
        .filter_map(|e| e["file"].as_str().map(str::to_owned))
        .collect();
    if valid.is_empty() || statics.is_empty() {
        bail!("testdata/gifs/manifest.json lists no valid (or no static) GIFs");
    }
    if args.events < 500 {
        eprintln!("note: {} events (< 500): fine for a try, too few for the reported figures", args.events);
    }

    // The worker's effective config (for the record and the model reference).
    let probe_broker = "127.0.0.1:1".to_owned();
    let base_cfg = effective_config(&[
        ("AUTOTAG__KAFKA__BROKERS".into(), probe_broker),
        ("AUTOTAG__MODEL__DEVICE".into(), args.device.clone()),
    ])?;
    let cuda = autotag_model::device::uses_cuda(base_cfg.model.device);
    let device = if cuda { "cuda" } else { "cpu" };
    let precision = autotag_model::device::resolve_precision(base_cfg.model.precision, cuda);
    let max_batch = base_cfg.batch.max_batch;
    let model_threads = if base_cfg.model.threads == 0 { bench::nproc() } else { base_cfg.model.threads };
    // `model.instances` (model threads sharing the loaded model); 1 where the config has none.
    let model_instances = serde_json::to_value(&base_cfg)?["model"]["instances"].as_u64().unwrap_or(1) as usize;
    merge(
        &json_path,
        &["e2e", "resolved"],
        json!({"model_threads": model_threads, "model_instances": model_instances, "decode_threads": base_cfg.decode_threads(),
               "device": device, "precision": precision.as_str()}),
    )?;
    merge(&json_path, &["e2e", "partitions"], json!(args.partitions))?;
    merge(&json_path, &["e2e", "overrides"], json!(overrides(&args.device, &[])))?;

    let model = Reference {
        device: base_cfg.model.device,
        precision,
        max_batch,
        instances: model_instances,
        threads: model_threads,
    };
    // The model bench results (`--model-json`, else the result file), read once.
    let model_json_path = args.model_json.clone().unwrap_or_else(|| json_path.clone());
    let model_bench = model_bench_result(&model_json_path);
    let reference = model_reference(model_bench.as_ref(), &model_json_path, &model)?;
    eprintln!("model reference: {reference}");
    merge(&json_path, &["e2e", "model_reference"], reference.clone())?;
    let best = reference["best_frames_per_s"].as_f64().unwrap_or(f64::NAN);
    let best_worker = reference["best_worker_thread_frames_per_s"].as_f64().unwrap_or(best);

    let mut backlog_gifs_per_s: Option<f64> = None;
    for mode in &args.modes {
        match mode.as_str() {
            "backlog" => {
                // The host's speed drifts by 20-30% over minutes on a shared VM (the same setting
                // measured 259 and 194 frames/s two minutes apart), so the ceiling that decides
                // the ratio is measured around the backlog run, not minutes earlier: the model
                // bench's fastest configurations and the worker's own, right before and right
                // after, and the higher of the two windows counts.
                let cands = ceiling_candidates(model_bench.as_ref(), &model);
                let window = |label: &str| -> anyhow::Result<Option<Value>> {
                    if args.sustained_s <= 0.0 {
                        return Ok(None);
                    }
                    let v = ceiling_window(&cands, &model, args.sustained_s, label)?;
                    merge(&json_path, &["e2e", "model_reference", &format!("ceiling_{label}")], v.clone())?;
                    Ok(Some(v))
                };
                let before = window("before")?;
                let r = Run {
                    name: "backlog".into(),
                    events: args.events,
                    files: valid.clone(),
                    rate: None,
                    env: vec![],
                    device: args.device.clone(),
                };
                let mut v = run_once(&r, args.partitions).await?;
                let after = window("after")?;
                let fps = v["frames_per_s"].as_f64().unwrap_or(0.0);
                let fps_of = |w: &Option<Value>, k: &str| w.as_ref().and_then(|w| w[k]["frames_per_s"].as_f64());
                let ceiling = [fps_of(&before, "best"), fps_of(&after, "best")].into_iter().flatten().reduce(f64::max);
                let worker_setting =
                    [fps_of(&before, "worker"), fps_of(&after, "worker")].into_iter().flatten().reduce(f64::max);
                v["same_window_best_model_frames_per_s"] = json!(ceiling);
                v["ratio_to_same_window_best_model"] = json!(ceiling.map(|c| fps / c));
                v["ratio_to_sustained_worker_config_model"] = json!(worker_setting.map(|s| fps / s));
                v["ratio_to_best_model"] = json!(fps / best);
                v["ratio_to_best_worker_thread_model"] = json!(fps / best_worker);
                backlog_gifs_per_s = v["gifs_per_s"].as_f64();
                print_row(&r.name, &v);
                merge(&json_path, &["e2e", "backlog"], v)?;
            }
            "steady" => {
                let rate = match args.rate {
                    Some(r) => r,
                    None => {
                        let capacity = backlog_gifs_per_s.or_else(|| {
                            let text = std::fs::read_to_string(&json_path).ok()?;
                            serde_json::from_str::<Value>(&text).ok()?["e2e"]["backlog"]["gifs_per_s"].as_f64()
                        });
                        args.load
                            * capacity
                                .context("steady mode needs the backlog throughput: run backlog first or give --rate")?
                    }
                };
                let r = Run {
                    name: "steady".into(),
                    events: args.events,
                    files: valid.clone(),
                    rate: Some(rate),
                    env: vec![],
                    device: args.device.clone(),
                };
                let mut v = run_once(&r, args.partitions).await?;
                v["ratio_to_best_model"] = json!(v["frames_per_s"].as_f64().unwrap_or(0.0) / best);
                v["ratio_to_best_worker_thread_model"] = json!(v["frames_per_s"].as_f64().unwrap_or(0.0) / best_worker);
                v["offered_load"] = json!(args.load);
                print_row(&r.name, &v);
                merge(&json_path, &["e2e", "steady"], v)?;
            }
            "memory" => {
                let mut runs = Vec::new();
                for &n in &args.memory_events {
                    let r = Run {
                        name: format!("memory-{n}"),
                        events: n,
                        files: statics.clone(),
                        rate: None,
                        env: vec![("AUTOTAG__FRAMES__PER_GIF".into(), "1".into())],
                        device: args.device.clone(),
                    };
                    let v = run_once(&r, args.partitions).await?;
                    print_row(&r.name, &v);
                    runs.push(v);
                    merge(
                        &json_path,
                        &["e2e", "memory"],
                        json!({
                            "description": format!(
                                "Backlogs of {} upload events of the static (1-frame) GIFs of testdata/gifs ({}), frames.per_gif = 1 to keep \
                                 the run short; otherwise the same worker config. The in-flight bound \
                                 (pipeline.max_in_flight) should keep peak RSS independent of the backlog.",
                                args.memory_events.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(" and "),
                                statics.join(", ")),
                            "runs": runs,
                        }),
                    )?;
                }
            }
            "s3" => {
                let v = s3_ceiling(&valid, args.events.max(2000), base_cfg.s3.max_concurrent_fetches).await?;
                merge(&json_path, &["e2e", "s3"], v)?;
            }
            other => bail!("unknown mode {other:?} (backlog, steady, memory, s3)"),
        }
    }

    let text = std::fs::read_to_string(&json_path)?;
    let root: Value = serde_json::from_str(&text)?;
    eprintln!("\ntargets:");
    for t in bench::evaluate_targets(&root) {
        let res = match t.pass {
            Some(true) => "pass",
            Some(false) => "FAIL",
            None => "not measured",
        };
        eprintln!("  [{res}] {}: {} (threshold {})", t.name, t.measured, t.threshold);
    }
    eprintln!("results merged into {}", json_path.display());
    Ok(())
}

fn merge(path: &Path, keys: &[&str], v: Value) -> anyhow::Result<()> {
    bench::merge_json(path, keys, v)
}

fn print_row(name: &str, v: &Value) {
    eprintln!(
        "{name}: {} events in {:.1} s: {:.2} GIFs/s, {:.1} frames/s, latency p50/p95/p99 {:.2}/{:.2}/{:.2} s, peak RSS {:.0} MiB, {} dead letters",
        v["events"],
        v["duration_s"].as_f64().unwrap_or(f64::NAN),
        v["gifs_per_s"].as_f64().unwrap_or(f64::NAN),
        v["frames_per_s"].as_f64().unwrap_or(f64::NAN),
        v["latency_s"]["p50"].as_f64().unwrap_or(f64::NAN),
        v["latency_s"]["p95"].as_f64().unwrap_or(f64::NAN),
        v["latency_s"]["p99"].as_f64().unwrap_or(f64::NAN),
        v["peak_rss_mib"].as_f64().unwrap_or(f64::NAN),
        v["dead_letters"]
    );
}

/// `config/default.toml` + this process's `AUTOTAG__…` environment + `extra` (the harness).
fn effective_config(extra: &[(String, String)]) -> anyhow::Result<Config> {
    let mut env: BTreeMap<String, String> = std::env::vars().collect();
    for (k, v) in extra {
        env.insert(k.clone(), v.clone());
    }
    Ok(load_with_env::<Config>(Some(&repo().join("config/default.toml")), env)?)
}

/// The `AUTOTAG__…` settings that differ from `config/default.toml`, harness plumbing (ports,
/// group ids, paths) left out.
fn overrides(device: &str, extra: &[(String, String)]) -> Vec<String> {
    let plumbing =
        ["AUTOTAG__KAFKA__BROKERS", "AUTOTAG__KAFKA__GROUP_ID", "AUTOTAG__METRICS__LISTEN", "AUTOTAG__MODEL__DIR"];
    let mut env: BTreeMap<String, String> = std::env::vars().filter(|(k, _)| k.starts_with("AUTOTAG__")).collect();
    env.insert("AUTOTAG__KAFKA__COMMIT_INTERVAL_MS".into(), "200".into());
    env.insert("AUTOTAG__KAFKA__CONSUMER__SESSION_TIMEOUT_MS".into(), "2000".into());
    env.insert("AUTOTAG__KAFKA__CONSUMER__HEARTBEAT_INTERVAL_MS".into(), "500".into());
    env.insert("AUTOTAG__MODEL__DEVICE".into(), device.into());
    for (k, v) in extra {
        env.insert(k.clone(), v.clone());
    }
    env.into_iter().filter(|(k, _)| !plumbing.contains(&k.as_str())).map(|(k, v)| format!("{k}={v}")).collect()
}

/// The model setting the worker runs, for the model-only reference figures.
struct Reference {
    device: DeviceChoice,
    /// What the worker's `model.precision` resolves to on this device.
    precision: Precision,
    max_batch: usize,
    instances: usize,
    threads: usize,
}

impl Reference {
    fn bench_options(
        &self,
        batches: Vec<usize>,
        runs: usize,
        min_frames_per_run: usize,
        min_run_s: f64,
    ) -> ModelBenchOptions {
        ModelBenchOptions {
            model: ModelConfig { dir: model_dir(), device: self.device, ..ModelConfig::default() },
            batches,
            runs,
            warmup: 3,
            threads: vec![self.threads],
            instances: vec![self.instances],
            min_frames_per_run,
            min_run_s,
            precisions: vec![self.precision],
            max_foreign_cores: 0.2,
            max_discarded_rounds: 3 * runs,
        }
    }

    /// The row of a model bench result at this precision and setting.
    fn row<'a>(&self, model: &'a Value) -> Option<&'a Value> {
        bench::model_result(model, self.max_batch, self.instances, self.threads, self.precision.as_str())
    }
}

/// Best model-only frames/s and the time of one full batch, from the model bench JSON when it
/// has the worker's precision, else measured here at the worker's setting. "Best" is over every
/// precision measured (the issue's ceiling is the model's, whatever precision reaches it); the
/// best at the worker's own precision is recorded beside it.
fn model_reference(model: Option<&Value>, path: &Path, m: &Reference) -> anyhow::Result<Value> {
    if let Some(model) =
        model.filter(|model| model["best_by_precision"][m.precision.as_str()]["frames_per_s"].as_f64().is_some())
    {
        let best_row = &model["best"];
        let best = best_row["frames_per_s"].as_f64().unwrap_or(f64::NAN);
        let best_worker =
            bench::fastest(model["results"].as_array().into_iter().flatten().filter(|r| r["thread"] == "worker"))
                .map(|r| r["frames_per_s"].clone());
        let at_worker = m.row(model);
        let full = at_worker
            .and_then(|r| r["ms_per_batch_median"].as_f64())
            .map(|ms| ms / 1000.0)
            .unwrap_or(m.max_batch as f64 / best);
        return Ok(json!({
            "source": format!("model bench results in {}", path.display()),
            "device": model["device"],
            "precision": m.precision.as_str(),
            "best_frames_per_s": best,
            "best": best_row,
            "best_at_worker_precision": model["best_by_precision"][m.precision.as_str()],
            "best_worker_thread_frames_per_s": best_worker,
            "worker_config_frames_per_s": at_worker.map(|r| r["frames_per_s"].clone()),
            "full_batch_seconds": full,
            "max_batch": m.max_batch,
            "instances": m.instances,
            "threads": m.threads,
        }));
    }
    eprintln!(
        "no {} model bench results in {}: measuring the model at batch {}, {} instance(s) x {} thread(s)",
        m.precision.as_str(),
        path.display(),
        m.max_batch,
        m.instances,
        m.threads
    );
    let r = tokio::task::block_in_place(|| bench::model_bench(&m.bench_options(vec![m.max_batch], 5, 32, 2.0)))?;
    let row = m.row(&r).cloned().unwrap_or(Value::Null);
    Ok(json!({
        "source": "in-process model bench at the worker's batch size, instances and threads",
        "device": r["device"],
        "precision": m.precision.as_str(),
        "best_frames_per_s": row["frames_per_s"],
        "best": row,
        "worker_config_frames_per_s": row["frames_per_s"],
        "full_batch_seconds": row["ms_per_batch_median"].as_f64().map(|ms| ms / 1000.0),
        "max_batch": m.max_batch,
        "instances": m.instances,
        "threads": m.threads,
    }))
}

/// The model bench result (key `model`) of `--model-json` or of the result file, if any.
fn model_bench_result(path: &Path) -> Option<Value> {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    v["model"]["results"].is_array().then(|| v["model"].clone())
}

/// Model-only settings measured around the backlog run: one precision, instances and threads,
/// at some batch sizes.
#[derive(Debug, Clone, PartialEq)]
struct Candidate {
    precision: Precision,
    instances: usize,
    threads: usize,
    batches: Vec<usize>,
}

/// The model bench's 3 fastest configurations (any precision, thread and setting) and the
/// worker's own, grouped by (precision, instances, threads).
fn ceiling_candidates(model: Option<&Value>, m: &Reference) -> Vec<Candidate> {
    let mut rows: Vec<&Value> = model.and_then(|v| v["results"].as_array()).into_iter().flatten().collect();
    rows.sort_by(|a, b| bench::frames_per_s(b).total_cmp(&bench::frames_per_s(a)));
    let mut settings: Vec<(Precision, usize, usize, usize)> = rows
        .iter()
        .take(3)
        .filter_map(|r| {
            let p = Precision::parse(r["precision"].as_str().unwrap_or("fp32"))?;
            let k = r["instances"].as_u64().unwrap_or(1) as usize;
            Some((p, k, r["threads"].as_u64()? as usize, r["batch"].as_u64()? as usize))
        })
        .collect();
    settings.push((m.precision, m.instances, m.threads, m.max_batch));
    // CUDA rows carry no thread count (libtorch's CPU threads do not matter there).
    let cuda = autotag_model::device::uses_cuda(m.device);
    let mut out: Vec<Candidate> = Vec::new();
    for (p, k, t, b) in settings {
        let t = if cuda { 0 } else { t };
        match out.iter_mut().find(|c| (c.precision, c.instances, c.threads) == (p, k, t)) {
            Some(c) if !c.batches.contains(&b) => c.batches.push(b),
            Some(_) => {}
            None => out.push(Candidate { precision: p, instances: k, threads: t, batches: vec![b] }),
        }
    }
    out
}

/// The model alone, sustained (3 runs of about `seconds` / 3 per configuration, interleaved in
/// rounds), for every candidate. Returns every row, the best one and the worker's setting.
fn ceiling_window(cands: &[Candidate], m: &Reference, seconds: f64, label: &str) -> anyhow::Result<Value> {
    tokio::task::block_in_place(|| {
        bench::wait_for_quiet("the model-only ceiling");
        let per_run = seconds / 3.0;
        let mut rows: Vec<Value> = Vec::new();
        for c in cands {
            eprintln!(
                "model ceiling ({label} the backlog): 3 runs of >= {per_run:.0} s, {} {} instance(s){}, batch {:?}",
                c.precision.as_str(),
                c.instances,
                if c.threads > 0 { format!(" x {} thread(s)", c.threads) } else { String::new() },
                c.batches
            );
            let mut o = m.bench_options(c.batches.clone(), 3, 32, per_run);
            o.precisions = vec![c.precision];
            o.instances = vec![c.instances];
            o.threads = vec![c.threads];
            let r = bench::model_bench(&o)?;
            rows.extend(r["results"].as_array().into_iter().flatten().cloned());
        }
        let best = bench::fastest(&rows).cloned().unwrap_or(Value::Null);
        let worker = m.row(&json!({ "results": rows })).cloned().unwrap_or(Value::Null);
        eprintln!(
            "model ceiling ({label} the backlog): best {:.1} frames/s, worker's setting {:.1}",
            best["frames_per_s"].as_f64().unwrap_or(f64::NAN),
            worker["frames_per_s"].as_f64().unwrap_or(f64::NAN)
        );
        Ok(
            json!({ "date": bench::now_rfc3339(), "seconds_per_run": per_run, "best": best, "worker": worker, "rows": rows }),
        )
    })
}

/// What the S3 server alone delivers: `n` GetObject calls over the backlog's object mix, with
/// the worker's own `get_object` and the worker's fetch concurrency, on a runtime with one
/// thread per core. The ceiling of any e2e run through this server.
async fn s3_ceiling(files: &[String], n: usize, concurrency: usize) -> anyhow::Result<Value> {
    use futures::StreamExt as _;
    let s3 = S3Server::start();
    s3.create_bucket(BUCKET).await;
    let mut sizes = Vec::new();
    for f in files {
        let body = read(&testdata(f));
        sizes.push(body.len());
        s3.put(BUCKET, &format!("bench/{f}"), body).await;
    }
    let keys: Vec<String> = (0..n).map(|i| format!("bench/{}", files[i % files.len()])).collect();
    let endpoint = s3.endpoint();
    let v = tokio::task::block_in_place(|| -> anyhow::Result<Value> {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(bench::nproc()).enable_all().build()?;
        rt.block_on(async {
            let client = s3.client().await;
            // Warm the connection pool.
            for k in keys.iter().take(concurrency.min(64)) {
                autotag_infra::s3::get_object(&client, BUCKET, k, u64::MAX).await?;
            }
            let watch = bench::CpuWatch::start();
            let t = Instant::now();
            let mut bytes = 0usize;
            let mut results = futures::stream::iter(keys.iter())
                .map(|k| autotag_infra::s3::get_object(&client, BUCKET, k, u64::MAX))
                .buffer_unordered(concurrency.max(1));
            while let Some(r) = results.next().await {
                bytes += r?.len();
            }
            let secs = t.elapsed().as_secs_f64();
            eprintln!(
                "s3 ceiling: {n} GETs at concurrency {concurrency} in {secs:.2} s: {:.0} objects/s, {:.0} MB/s ({endpoint})",
                n as f64 / secs,
                bytes as f64 / secs / 1e6
            );
            Ok::<_, anyhow::Error>(json!({
                "gets": n, "concurrency": concurrency, "seconds": secs, "objects_per_s": n as f64 / secs,
                "mb_per_s": bytes as f64 / secs / 1e6, "mean_object_bytes": bytes as f64 / n as f64,
                "cpu_load": watch.finish(), "client_threads": bench::nproc(), "date": bench::now_rfc3339(),
                "what": "GetObject through s3s-fs with the worker's get_object, no decode/model/Kafka",
            }))
        })
    })?;
    Ok(v)
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn upload_payload(event_id: &str, gif_id: &str, key: &str, uploaded_ms: i64) -> Vec<u8> {
    let at = chrono::DateTime::from_timestamp_millis(uploaded_ms).expect("valid timestamp");
    serde_json::to_vec(&json!({
        "schema_version": 1,
        "event_id": event_id,
        "gif_id": gif_id,
        "s3_uri": format!("s3://{BUCKET}/{key}"),
        "uploaded_at": at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    }))
    .expect("JSON")
}

/// One output record with its Kafka timestamp.
struct Out {
    topic: String,
    ts_ms: i64,
    value: Value,
}

async fn collect(consumer: StreamConsumer, expect: usize, timeout: Duration) -> Vec<Out> {
    let t = Instant::now();
    let mut out = Vec::with_capacity(expect);
    while out.len() < expect {
        let left = timeout.saturating_sub(t.elapsed());
        if left.is_zero() {
            break;
        }
        if let Ok(Ok(m)) = tokio::time::timeout(left.min(Duration::from_millis(500)), consumer.recv()).await {
            let value: Value = serde_json::from_slice(m.payload().unwrap_or(b"null")).unwrap_or(Value::Null);
            out.push(Out {
                topic: m.topic().to_owned(),
                ts_ms: m.timestamp().to_millis().unwrap_or_else(now_ms),
                value,
            });
        }
    }
    out
}

/// Samples the worker's VmRSS every 250 ms until stopped: (seconds since start, kB).
struct RssSampler {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<Vec<(f64, u64)>>,
}

impl RssSampler {
    fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle = std::thread::spawn(move || {
            let t = Instant::now();
            let mut samples = Vec::new();
            while !s.load(Ordering::Relaxed) {
                if let Some(kb) = proc_status_kb(pid, "VmRSS") {
                    samples.push((t.elapsed().as_secs_f64(), kb));
                }
                std::thread::sleep(Duration::from_millis(250));
            }
            samples
        });
        RssSampler { stop, handle }
    }

    fn stop(self) -> Vec<(f64, u64)> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or_default()
    }
}

/// RSS over the run: the largest sample, the timeline (at most ~60 points, MiB) and the peak in
/// each quarter of the measured window (from `ready_s`): flat quarters mean memory does not
/// grow while the backlog drains.
fn rss_summary(samples: &[(f64, u64)], ready_s: f64) -> Value {
    let mib = |kb: u64| kb as f64 / 1024.0;
    let max = samples.iter().map(|s| s.1).max().unwrap_or(0);
    let step = samples.len().div_ceil(60).max(1);
    let timeline: Vec<Value> =
        samples.iter().step_by(step).map(|&(t, kb)| json!([(t * 10.0).round() / 10.0, mib(kb).round()])).collect();
    let window: Vec<&(f64, u64)> = samples.iter().filter(|s| s.0 >= ready_s).collect();
    let quarters: Vec<Value> = if window.len() >= 4 {
        window
            .chunks(window.len().div_ceil(4))
            .map(|c| json!(mib(c.iter().map(|s| s.1).max().unwrap_or(0)).round()))
            .collect()
    } else {
        vec![]
    };
    let at_ready = window.first().map(|s| mib(s.1));
    json!({"max_mib": mib(max), "at_ready_mib": at_ready, "quarter_peaks_mib": quarters, "timeline_s_mib": timeline})
}

fn proc_status_kb(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// (utime + stime) seconds from a `/proc/…/stat` line.
fn stat_cpu_seconds(stat: &str, tick: f64) -> Option<(String, f64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat[open + 1..close].to_owned();
    let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
    // Fields after the comm start at field 3 (state); utime is field 14, stime 15.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((comm, (utime + stime) / tick))
}

/// CPU seconds (user + system) a process has used so far.
fn process_cpu_s(pid: u32, tick: f64) -> Option<f64> {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().and_then(|s| stat_cpu_seconds(&s, tick)).map(|x| x.1)
}

/// CPU seconds of the harness's own processes: the broker, the S3 server and this benchmark
/// (its producer and the consumer that collects the outputs).
fn harness_cpu(broker: &Broker, s3: &S3Server) -> [Option<f64>; 3] {
    let tick = clock_ticks();
    [
        process_cpu_s(broker.pid(), tick),
        s3.pid().and_then(|p| process_cpu_s(p, tick)),
        process_cpu_s(std::process::id(), tick),
    ]
}

/// CPU seconds of the worker: the whole process, and its live threads grouped by name
/// (`autotag-infer` is the model thread and the libtorch threads it spawned; decode runs on
/// tokio's blocking threads, `tokio-runtime-w`; `rdk:*` are librdkafka's).
fn cpu_usage(pid: u32) -> Value {
    let tick = clock_ticks();
    let process = process_cpu_s(pid, tick);
    let mut by_name: BTreeMap<String, f64> = BTreeMap::new();
    let mut count: BTreeMap<String, u64> = BTreeMap::new();
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for e in dir.flatten() {
            if let Some((comm, s)) =
                std::fs::read_to_string(e.path().join("stat")).ok().and_then(|s| stat_cpu_seconds(&s, tick))
            {
                let key = if comm.starts_with("rdk:") { "rdk:*".to_owned() } else { comm };
                *by_name.entry(key.clone()).or_default() += s;
                *count.entry(key).or_default() += 1;
            }
        }
    }
    // The model threads (`autotag-infer`, `autotag-infer-N`) and the libtorch threads they
    // started (which inherit the name).
    let infer: f64 = by_name.iter().filter(|(k, _)| k.starts_with("autotag-infer")).map(|(_, v)| v).sum();
    let other = process.map(|p| p - infer);
    json!({"process_s": process, "infer_thread_s": infer, "other_threads_s": other, "live_threads_by_name_s": by_name,
           "live_threads_by_name_count": count})
}

/// `after - before` of two [`cpu_usage`] snapshots: the worker's CPU seconds over the measured
/// window only (model load and warm-up excluded). Threads that ended meanwhile are missing from
/// the per-name map but counted in `process_s`.
fn cpu_delta(before: &Value, after: &Value) -> Value {
    let d = |k: &str| after[k].as_f64().map(|a| a - before[k].as_f64().unwrap_or(0.0));
    let mut by_name = serde_json::Map::new();
    if let Some(m) = after["live_threads_by_name_s"].as_object() {
        for (k, v) in m {
            let b = before["live_threads_by_name_s"][k].as_f64().unwrap_or(0.0);
            by_name.insert(k.clone(), json!(v.as_f64().unwrap_or(0.0) - b));
        }
    }
    json!({
        "window": "worker ready -> last output",
        "process_s": d("process_s"), "infer_thread_s": d("infer_thread_s"), "other_threads_s": d("other_threads_s"),
        "live_threads_by_name_s": by_name, "live_threads_by_name_count": after["live_threads_by_name_count"],
    })
}

/// Value of a Prometheus series `name{…label…}` (or `name` without labels).
fn prom(text: &str, name: &str, label: Option<&str>) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (series, value) = l.rsplit_once(' ')?;
        let (n, labels) = match series.find('{') {
            Some(i) => (&series[..i], &series[i..]),
            None => (series, ""),
        };
        if n != name {
            return None;
        }
        if let Some(lbl) = label
            && !labels.contains(lbl)
        {
            return None;
        }
        value.trim().parse().ok()
    })
}

fn stage_stats(metrics: &str, duration_s: f64) -> Value {
    let mut v = serde_json::Map::new();
    for stage in ["fetch", "decode", "infer", "pipeline"] {
        let lbl = format!("stage=\"{stage}\"");
        let sum = prom(metrics, "autotag_stage_duration_seconds_sum", Some(&lbl));
        let count = prom(metrics, "autotag_stage_duration_seconds_count", Some(&lbl));
        let mean_ms = match (sum, count) {
            (Some(s), Some(c)) if c > 0.0 => Some(s / c * 1e3),
            _ => None,
        };
        let busy = sum.map(|s| s / duration_s * 100.0);
        v.insert(stage.into(), json!({"count": count, "sum_s": sum, "mean_ms": mean_ms, "busy_pct": busy}));
    }
    let bs = prom(metrics, "autotag_batch_size_frames_sum", None);
    let bc = prom(metrics, "autotag_batch_size_frames_count", None);
    let buckets: Vec<Value> = metrics
        .lines()
        .filter(|l| l.starts_with("autotag_batch_size_frames_bucket"))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let n: f64 = l.rsplit_once(' ')?.1.trim().parse().ok()?;
            Some(json!({"le": le, "cumulative": n}))
        })
        .collect();
    v.insert(
        "batch_size".into(),
        json!({"batches": bc, "frames": bs, "mean": match (bs, bc) { (Some(s), Some(c)) if c > 0.0 => Some(s / c), _ => None }, "buckets": buckets}),
    );
    let e2e_sum = prom(metrics, "autotag_upload_to_suggestion_seconds_sum", None);
    let e2e_count = prom(metrics, "autotag_upload_to_suggestion_seconds_count", None);
    v.insert(
        "upload_to_suggestion_mean_s".into(),
        json!(match (e2e_sum, e2e_count) {
            (Some(s), Some(c)) if c > 0.0 => Some(s / c),
            _ => None,
        }),
    );
    Value::Object(v)
}

async fn run_once(r: &Run, partitions: i32) -> anyhow::Result<Value> {
    let waited = tokio::task::block_in_place(|| bench::wait_for_quiet(&format!("the {} run", r.name)));
    eprintln!(
        "== {}: {} events{} ==",
        r.name,
        r.events,
        r.rate.map(|x| format!(" at {x:.2} GIFs/s")).unwrap_or_default()
    );
    let broker = Broker::start(partitions).await;
    let s3 = S3Server::start();
    s3.create_bucket(BUCKET).await;
    for f in &r.files {
        s3.put(BUCKET, &format!("bench/{f}"), read(&testdata(f))).await;
    }
    let mut env = WorkerEnv::new(&broker, &s3);
    env.default_tuning();
    env.set("AUTOTAG_LOG", "info");
    env.set("AUTOTAG__MODEL__DEVICE", &r.device);
    for (k, v) in &r.env {
        env.set(k, v);
    }
    let cfg = effective_config(&env.vars)?;

    let n = r.events;
    let key_of = |i: usize| format!("bench/{}", r.files[i % r.files.len()]);
    let gif_of = |i: usize| format!("g-{}-{i}", r.name);
    let event_of = |i: usize| format!("e-{}-{i}", r.name);
    let mut uploaded: HashMap<String, i64> = HashMap::with_capacity(n);
    let producer: FutureProducer = broker.producer();
    let consumer = broker.output_consumer();
    let timeout = Duration::from_secs(180)
        + Duration::from_secs_f64(n as f64 * 0.25 + r.rate.map(|x| n as f64 / x).unwrap_or(0.0));
    let collector = tokio::spawn(collect(consumer, n, timeout));

    if r.rate.is_none() {
        let t = Instant::now();
        for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
            let recs: Vec<(String, Vec<u8>)> = chunk
                .iter()
                .map(|&i| {
                    let ms = now_ms();
                    uploaded.insert(event_of(i), ms);
                    (gif_of(i), upload_payload(&event_of(i), &gif_of(i), &key_of(i), ms))
                })
                .collect();
            let sends = recs
                .iter()
                .map(|(k, p)| producer.send(FutureRecord::to(UPLOADS).key(k).payload(p), Duration::from_secs(30)));
            for res in futures::future::join_all(sends).await {
                res.map_err(|(e, _)| anyhow!("producing an upload event: {e}"))?;
            }
        }
        eprintln!("produced {n} events in {:.1} s", t.elapsed().as_secs_f64());
    }

    let mut worker = Worker::start(&env, &format!("bench-{}", r.name));
    let pid = worker.proc.0.id();
    let sampler = RssSampler::start(pid);
    let t_start = Instant::now();
    tokio::task::block_in_place(|| worker.wait_ready(Duration::from_secs(180)));
    let ready_ms = now_ms();
    let watch = bench::CpuWatch::start();
    let cpu_at_ready = cpu_usage(pid);
    let harness_at_ready = harness_cpu(&broker, &s3);
    let startup_s = t_start.elapsed().as_secs_f64();
    eprintln!("worker ready after {startup_s:.1} s");

    let mut first_upload_ms = None;
    if let Some(rate) = r.rate {
        let start = tokio::time::Instant::now();
        let mut sends = Vec::with_capacity(n);
        for i in 0..n {
            tokio::time::sleep_until(start + Duration::from_secs_f64(i as f64 / rate)).await;
            let ms = now_ms();
            first_upload_ms.get_or_insert(ms);
            uploaded.insert(event_of(i), ms);
            let (p, key, payload) =
                (producer.clone(), gif_of(i), upload_payload(&event_of(i), &gif_of(i), &key_of(i), ms));
            sends.push(tokio::spawn(async move {
                p.send(FutureRecord::to(UPLOADS).key(&key).payload(&payload), Duration::from_secs(30))
                    .await
                    .map(|_| ())
                    .map_err(|(e, _)| e)
            }));
        }
        for s in sends {
            s.await?.map_err(|e| anyhow!("producing an upload event: {e}"))?;
        }
        eprintln!("offered {n} events over {:.1} s", start.elapsed().as_secs_f64());
    }

    let outs = collector.await?;
    let cpu_load = watch.finish();
    let peak_kb = proc_status_kb(pid, "VmHWM");
    let rss_end_kb = proc_status_kb(pid, "VmRSS");
    let metrics = worker.metrics();
    let cpu = cpu_delta(&cpu_at_ready, &cpu_usage(pid));
    let harness_s: Vec<Option<f64>> =
        harness_cpu(&broker, &s3).iter().zip(harness_at_ready).map(|(a, b)| Some(a.as_ref()? - b?)).collect();
    let log = worker.log_text();
    let rss_samples = sampler.stop();
    let (code, stop_took) = tokio::task::block_in_place(|| worker.terminate(Duration::from_secs(30)));
    let incomplete = outs.len() < n;
    if incomplete {
        eprintln!("WARNING: only {} of {n} outputs arrived; worker log tail:\n{}", outs.len(), tail(&log, 40));
    }

    let suggestions: Vec<&Out> = outs.iter().filter(|o| o.topic == SUGGESTIONS).collect();
    let dead = outs.iter().filter(|o| o.topic == DLQ).count();
    // Frames the model ran (issue 16: repeated and blank frames are sampled but not inferred), the
    // measure of how well the pipeline keeps the model busy; sampled frames beside it.
    let frames: u64 = suggestions
        .iter()
        .filter_map(|o| o.value["frames_inferred"].as_u64().or_else(|| o.value["frames_sampled"].as_u64()))
        .sum();
    let frames_sampled: u64 = suggestions.iter().filter_map(|o| o.value["frames_sampled"].as_u64()).sum();
    let last_ms = outs.iter().map(|o| o.ts_ms).max().unwrap_or(ready_ms);
    let first_out_ms = outs.iter().map(|o| o.ts_ms).min().unwrap_or(ready_ms);
    let start_ms = first_upload_ms.unwrap_or(ready_ms);
    let duration_s = (last_ms - start_ms) as f64 / 1000.0;
    let mut lat: Vec<f64> = Vec::with_capacity(suggestions.len());
    let mut lat_produced: Vec<f64> = Vec::with_capacity(suggestions.len());
    for o in &suggestions {
        let Some(up) = o.value["upload_event_id"].as_str().and_then(|id| uploaded.get(id)) else { continue };
        lat.push((o.ts_ms - up) as f64 / 1000.0);
        if let Some(p) = o.value["produced_at"].as_str().and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok()) {
            lat_produced.push((p.timestamp_millis() - up) as f64 / 1000.0);
        }
    }
    lat.sort_by(f64::total_cmp);
    lat_produced.sort_by(f64::total_cmp);
    let pct = |v: &[f64]| {
        json!({
            "p50": bench::percentile(v, 50.0), "p95": bench::percentile(v, 95.0), "p99": bench::percentile(v, 99.0),
            "max": v.last(), "mean": if v.is_empty() { None } else { Some(v.iter().sum::<f64>() / v.len() as f64) },
        })
    };
    let model_threads_log =
        log.split("cpu (").nth(1).and_then(|s| s.split(" threads)").next()).and_then(|s| s.trim().parse::<u64>().ok());
    let mib = |kb: Option<u64>| kb.map(|k| k as f64 / 1024.0);

    Ok(json!({
        "date": bench::now_rfc3339(),
        "mode": if r.rate.is_some() { "steady" } else { "backlog" },
        "events": n,
        "outputs": outs.len(),
        "incomplete": incomplete,
        "suggestions": suggestions.len(),
        "dead_letters": dead,
        "frames": frames, "frames_sampled": frames_sampled,
        "files": r.files,
        "offered_rate_gifs_per_s": r.rate,
        "duration_s": duration_s,
        "duration_from": if r.rate.is_some() { "first upload produced" } else { "worker /readyz = 200" },
        "first_to_last_output_s": (last_ms - first_out_ms) as f64 / 1000.0,
        "gifs_per_s": suggestions.len() as f64 / duration_s,
        "frames_per_s": frames as f64 / duration_s,
        "latency_s": pct(&lat),
        "latency_to_produced_at_s": pct(&lat_produced),
        "startup_s": startup_s,
        "peak_rss_mib": mib(peak_kb),
        "max_sampled_rss_mib": mib(rss_samples.iter().map(|s| s.1).max()),
        "rss": rss_summary(&rss_samples, startup_s),
        "rss_at_end_mib": mib(rss_end_kb),
        "harness_cores": cpu_load["benchmark_cores"].as_f64().zip(cpu["process_s"].as_f64()).map(|(b, w)| b - w / cpu_load["wall_s"].as_f64().unwrap_or(f64::NAN)),
        "harness_cpu_s": {"broker": harness_s[0], "s3_server": harness_s[1], "bench": harness_s[2],
                          "window": "worker ready -> last output"},
        "worker_cores": cpu["process_s"].as_f64().map(|w| w / cpu_load["wall_s"].as_f64().unwrap_or(f64::NAN)),
        "cpu": cpu,
        "cpu_load": cpu_load,
        "waited_for_quiet_s": waited,
        "stages": stage_stats(&metrics, duration_s),
        "model_threads_in_log": model_threads_log,
        "worker_exit": {"code": code, "seconds": stop_took.as_secs_f64()},
        "overrides": overrides(&r.device, &r.env),
        "config": serde_json::to_value(&cfg)?,
    }))
}

fn tail(s: &str, lines: usize) -> String {
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}
