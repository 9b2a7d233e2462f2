//! Model work per GIF (issue 16): autotag with frame skipping, autotag doing the full work, and
//! the Python reference worker (`tools/reference_worker.py`, one process per core in one consumer
//! group), in one run, on two GIF mixes, against the real broker, S3 server and model.
//!
//! ```sh
//! cargo bench -p autotag-bench --bench frames                   # 300 events per run
//! cargo bench -p autotag-bench --bench frames -- --events 500 --contenders autotag,python
//! ```
//!
//! Mixes: `corpus` (the valid GIFs of the shared corpus: mostly one photo animated) and
//! `multi_scene` (the two- and three-scene GIFs of the labelled set's evaluation part,
//! `.local/evalset`, `tools/make_eval_set.py`; left out when it is missing). Contenders:
//! `autotag` (the exported model as it is: blank and near-duplicate frames skipped),
//! `autotag_full_work` (a copy of the model directory whose scoring data has no
//! `duplicate_distance`: every content frame inferred) and `python` (the reference worker, bf16,
//! micro-batching 4 GIFs). Each run: a backlog of `--events` upload events on fresh topics, then
//! the contender starts; GIFs/s from ready (autotag: `/readyz`; Python: every process has its
//! partitions) to the last answer's record timestamp. Frames inferred per GIF come from the
//! suggestions' `frames_inferred`. Results merge into `bench-results/latest.json` (key
//! `frames`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
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
    /// Upload events per run.
    #[arg(long, default_value_t = 300)]
    events: usize,
    /// Which contenders run: autotag, autotag_full_work, python.
    #[arg(long, value_delimiter = ',', default_value = "python,autotag_full_work,autotag")]
    contenders: Vec<String>,
    /// Which mixes: corpus, multi_scene.
    #[arg(long, value_delimiter = ',', default_value = "corpus,multi_scene")]
    mixes: Vec<String>,
    /// Python reference processes (default: one per core).
    #[arg(long)]
    python_processes: Option<usize>,
}

fn main() -> anyhow::Result<()> {
    bench::block_on(run(Args::parse()))
}

/// The GIFs of a mix: (S3 key, local path).
fn mix(name: &str) -> anyhow::Result<Option<Vec<(String, PathBuf)>>> {
    match name {
        "corpus" => {
            let corpus = bench::default_corpus();
            let files = bench::valid_files(&corpus)?;
            Ok(Some(files.iter().map(|f| (format!("corpus/{f}"), corpus.join(f))).collect()))
        }
        "multi_scene" => {
            let labels = repo().join(".local/evalset/evaluation/labels.jsonl");
            let Ok(text) = std::fs::read_to_string(&labels) else {
                eprintln!("no {}: the multi_scene mix is left out (tools/make_eval_set.py)", labels.display());
                return Ok(None);
            };
            let dir = labels.parent().map(Path::to_path_buf).unwrap_or_default();
            let mut out = Vec::new();
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let v: Value = serde_json::from_str(line).context("labels line")?;
                let groups: Vec<&str> =
                    v["groups"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
                if groups.iter().any(|g| *g == "multi2" || *g == "multi3") {
                    let gif = v["gif"].as_str().context("labels line without gif")?;
                    out.push((format!("multi/{gif}"), dir.join(gif)));
                }
            }
            Ok(Some(out))
        }
        other => bail!("unknown mix {other:?} (corpus, multi_scene)"),
    }
}

/// A model directory like `model_dir()` whose scoring data infers every content frame.
fn full_work_model(tmp: &Path) -> anyhow::Result<PathBuf> {
    let src = model_dir();
    let dir = tmp.join("model-full-work");
    std::fs::create_dir_all(&dir)?;
    for f in ["model.json", "model.pt", "tags.json"] {
        std::fs::copy(src.join(f), dir.join(f)).with_context(|| format!("copying {f}"))?;
    }
    let mut scoring: Value = serde_json::from_str(&std::fs::read_to_string(src.join("scoring.json"))?)?;
    scoring.as_object_mut().context("scoring.json is not an object")?.remove("duplicate_distance");
    std::fs::write(dir.join("scoring.json"), serde_json::to_vec_pretty(&scoring)?)?;
    Ok(dir)
}

/// A running contender.
enum Running {
    Autotag(Worker),
    Python(Vec<std::process::Child>),
}

impl Running {
    fn stop(self) {
        match self {
            Running::Autotag(mut w) => {
                w.terminate(Duration::from_secs(20));
            }
            Running::Python(children) => {
                for c in &children {
                    let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
                }
                for mut c in children {
                    let t = Instant::now();
                    while c.try_wait().ok().flatten().is_none() && t.elapsed() < Duration::from_secs(10) {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    let _ = c.kill();
                    let _ = c.wait();
                }
            }
        }
    }
}

struct Topics {
    uploads: String,
    suggestions: String,
    dlq: String,
}

/// Start `contender` on `topics` and wait until it is ready.
fn start(
    contender: &str,
    topics: &Topics,
    broker: &Broker,
    s3: &S3Server,
    full_work_dir: &Path,
    processes: usize,
    tmp: &Path,
) -> anyhow::Result<Running> {
    if contender == "python" {
        let python = repo().join(".local/venv/bin/python");
        let group = format!("ref-{}", uuid::Uuid::new_v4());
        let mut children = Vec::new();
        let mut ready = Vec::new();
        for i in 0..processes {
            let ready_file = tmp.join(format!("{group}-{i}.ready"));
            let log = std::fs::File::create(tmp.join(format!("{group}-{i}.log")))?;
            let child = Command::new(&python)
                .arg(repo().join("tools/reference_worker.py"))
                .args(["--brokers", &broker.brokers(), "--group", &group])
                .args(["--uploads", &topics.uploads, "--suggestions", &topics.suggestions])
                .args(["--dead-letters", &topics.dlq])
                .arg("--model-dir")
                .arg(model_dir())
                .arg("--ready-file")
                .arg(&ready_file)
                .envs(s3.aws_env())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .context("starting tools/reference_worker.py (scripts/bench installs its packages)")?;
            children.push(child);
            ready.push(ready_file);
        }
        let t = Instant::now();
        while !ready.iter().all(|f| f.exists()) {
            for c in &mut children {
                if let Some(status) = c.try_wait()? {
                    bail!("reference worker exited early ({status}); logs in {}", tmp.display());
                }
            }
            if t.elapsed() > Duration::from_secs(180) {
                bail!("reference workers not ready in 180 s; logs in {}", tmp.display());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        return Ok(Running::Python(children));
    }
    let mut env = WorkerEnv::new(broker, s3);
    env.default_tuning();
    env.topics(&topics.uploads, &topics.suggestions, &topics.dlq);
    env.set("AUTOTAG__LANES__BACKFILL_ENABLED", "false");
    env.set("AUTOTAG_LOG", "warn");
    match contender {
        "autotag" => {}
        "autotag_full_work" => {
            env.set("AUTOTAG__MODEL__DIR", &full_work_dir.display().to_string());
            env.set("AUTOTAG__MODEL__VERIFY_SHA256", "false");
        }
        other => bail!("unknown contender {other:?} (autotag, autotag_full_work, python)"),
    }
    let mut w = Worker::start(&env, &format!("frames-{contender}"));
    w.wait_ready(Duration::from_secs(180));
    Ok(Running::Autotag(w))
}

/// Answers until `n` arrived or `timeout`: (record timestamp ms, value).
async fn collect(c: &StreamConsumer, n: usize, timeout: Duration) -> Vec<(i64, Value)> {
    let t = Instant::now();
    let mut out = Vec::new();
    while out.len() < n && t.elapsed() < timeout {
        if let Ok(Ok(m)) = tokio::time::timeout(Duration::from_millis(500), c.recv()).await {
            let v: Value = serde_json::from_slice(m.payload().unwrap_or(b"null")).unwrap_or(Value::Null);
            out.push((m.timestamp().to_millis().unwrap_or(0), v));
        }
    }
    out
}

async fn run(args: Args) -> anyhow::Result<()> {
    let processes = args.python_processes.unwrap_or_else(bench::nproc).max(1);
    let tmp = tempfile::tempdir()?;
    let full_work_dir = full_work_model(tmp.path())?;
    let broker = Broker::start(PARTITIONS).await;
    let s3 = S3Server::start();
    s3.create_bucket("gifs").await;
    let producer = broker.producer();
    let mut rows = Vec::new();
    for mix_name in &args.mixes {
        let Some(files) = mix(mix_name)? else { continue };
        anyhow::ensure!(!files.is_empty(), "the {mix_name} mix has no GIFs");
        for (key, path) in &files {
            s3.put("gifs", key, std::fs::read(path).with_context(|| path.display().to_string())?).await;
        }
        for contender in &args.contenders {
            bench::wait_for_quiet(&format!("{contender} on {mix_name}"));
            let name = format!("{mix_name}-{contender}");
            let topics = Topics {
                uploads: format!("{name}-uploads"),
                suggestions: format!("{name}-suggestions"),
                dlq: format!("{name}-dlq"),
            };
            broker.create_topics(&[&topics.uploads, &topics.suggestions, &topics.dlq], PARTITIONS).await;
            for i in 0..args.events {
                let (gif, key) = (format!("g{i}"), &files[i % files.len()].0);
                let payload = serde_json::to_vec(&json!({
                    "schema_version": 1, "event_id": format!("{name}-{i}"), "gif_id": gif,
                    "s3_uri": format!("s3://gifs/{key}"),
                    "uploaded_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                }))?;
                producer
                    .send(FutureRecord::to(&topics.uploads).key(&gif).payload(&payload), Duration::from_secs(10))
                    .await
                    .map_err(|(e, _)| e)?;
            }
            let consumer: StreamConsumer = ClientConfig::new()
                .set("bootstrap.servers", broker.brokers())
                .set("group.id", format!("bench-{}", uuid::Uuid::new_v4()))
                .set("auto.offset.reset", "earliest")
                .set("enable.auto.commit", "false")
                .create()?;
            consumer.subscribe(&[&topics.suggestions, &topics.dlq])?;
            let running = tokio::task::block_in_place(|| {
                start(contender, &topics, &broker, &s3, &full_work_dir, processes, tmp.path())
            })?;
            let ready_ms = chrono::Utc::now().timestamp_millis();
            let out = collect(&consumer, args.events, Duration::from_secs(900)).await;
            tokio::task::block_in_place(|| running.stop());
            let last_ms = out.iter().map(|o| o.0).max().unwrap_or(ready_ms + 1);
            let secs = (last_ms - ready_ms).max(1) as f64 / 1000.0;
            let suggestions: Vec<&Value> = out.iter().map(|o| &o.1).filter(|v| v["frames_sampled"].is_u64()).collect();
            let sum = |k: &str| -> u64 { suggestions.iter().filter_map(|v| v[k].as_u64()).sum() };
            let per_gif = |n: u64| n as f64 / suggestions.len().max(1) as f64;
            let row = json!({
                "mix": mix_name, "contender": contender, "gifs": files.len(), "events": args.events,
                "answered": out.len(), "suggestions": suggestions.len(), "seconds": secs,
                "gifs_per_s": out.len() as f64 / secs,
                "frames_sampled_per_gif": per_gif(sum("frames_sampled")),
                "frames_inferred_per_gif": per_gif(sum("frames_inferred")),
                "processes": if contender == "python" { processes } else { 1 },
            });
            eprintln!(
                "{mix_name:<12} {contender:<18} {:>4}/{} answered in {secs:6.1} s: {:6.2} GIFs/s, {:.2} of {:.2} frames inferred per GIF",
                out.len(),
                args.events,
                row["gifs_per_s"].as_f64().unwrap_or(0.0),
                row["frames_inferred_per_gif"].as_f64().unwrap_or(0.0),
                row["frames_sampled_per_gif"].as_f64().unwrap_or(0.0)
            );
            rows.push(row);
        }
    }
    // Ratios within each mix, to the Python reference.
    let mut ratios = Vec::new();
    for r in &rows {
        let py = rows.iter().find(|p| p["mix"] == r["mix"] && p["contender"] == "python");
        if let (Some(py), Some(g)) = (py, r["gifs_per_s"].as_f64()) {
            let ratio = g / py["gifs_per_s"].as_f64().unwrap_or(f64::NAN);
            println!(
                "{:<12} {:<18} {:6.2} GIFs/s = {ratio:.2} x the Python reference",
                r["mix"].as_str().unwrap_or(""),
                r["contender"].as_str().unwrap_or(""),
                g
            );
            ratios.push(json!({"mix": r["mix"], "contender": r["contender"], "ratio_to_python": ratio}));
        }
    }
    let v = json!({
        "measured_at": bench::now_rfc3339(), "machine": bench::machine_info(), "runs": rows, "ratios": ratios,
        "python_reference": "tools/reference_worker.py: confluent-kafka + boto3 + Pillow + torch, bf16, 4 GIFs per forward, one process per core, one consumer group",
    });
    let path = args.harness.json_path(&repo());
    bench::merge_json(&path, &["frames"], v)?;
    Ok(())
}
