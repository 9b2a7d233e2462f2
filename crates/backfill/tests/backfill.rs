//! `autotag-backfill` against the real broker (Tansu) and the real S3 server (s3s-fs): a run
//! killed midway and resumed enqueues every object under one event id; `--dry-run` writes
//! nothing; `--rate` holds; a manifest is a source; a missing topic is refused.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use autotag_test_support::*;
use serde_json::Value;

const TOPIC: &str = "gif-backfill";
const PARTITIONS: i32 = 4;

fn backfill(broker: &Broker, s3: &S3Server, dir: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_autotag-backfill"));
    c.current_dir(dir)
        .env("AUTOTAG__KAFKA__BROKERS", broker.brokers())
        .env("AUTOTAG__BACKFILL__CHECKPOINT_INTERVAL_MS", "200")
        .env("RUST_LOG", "warn")
        .envs(s3.aws_env())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// Run to the end; (stdout lines, the run id).
fn run_to_end(mut c: Command) -> (Vec<String>, String) {
    let out = c.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<String> = stdout.lines().map(str::to_owned).collect();
    let run_id = lines[0].strip_prefix("run_id=").expect("the run id first").to_owned();
    (lines, run_id)
}

async fn catalogue(s3: &S3Server, gifs: usize) {
    s3.create_bucket("media").await;
    let client = s3.client().await;
    let puts = (0..gifs).map(|i| {
        let client = client.clone();
        async move {
            let key = format!("catalogue/{:02}/gif{i:05}.gif", i % 7);
            client.put_object().bucket("media").key(key).body(b"GIF89a".to_vec().into()).send().await.unwrap();
        }
    });
    futures::stream::iter(puts).buffer_unordered(16).collect::<Vec<_>>().await;
    s3.put("media", "catalogue/README.txt", b"not a gif".to_vec()).await;
    s3.put("media", "catalogue/00/UPPER.GIF", b"GIF89a".to_vec()).await;
    s3.put("media", "elsewhere/x.gif", b"GIF89a".to_vec()).await;
}

use futures::StreamExt as _;

fn events(broker: &Broker) -> Vec<Value> {
    read_to_end(broker, TOPIC, PARTITIONS).into_iter().map(|r| r.value).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_run_resumes_and_every_object_gets_one_event_id() {
    let broker = Broker::start(PARTITIONS).await;
    broker.create_topics(&[TOPIC], PARTITIONS).await;
    let s3 = S3Server::start();
    catalogue(&s3, 2000).await;
    let dir = tempfile::tempdir().unwrap();
    let schemas = Schemas::load();

    // Slow enough to be killed midway: 2 001 GIFs at 500/s.
    let mut c = backfill(&broker, &s3, dir.path());
    c.args(["--from", "s3://media/catalogue/", "--rate", "500", "--max-in-flight", "64"]);
    let mut child = c.spawn().unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    let run_id = first.trim().strip_prefix("run_id=").expect("the run id first").to_owned();
    let cp_path = dir.path().join(".autotag/backfill").join(format!("{run_id}.json"));
    let t = Instant::now();
    loop {
        let cp: Value = serde_json::from_slice(&std::fs::read(&cp_path).unwrap_or_default()).unwrap_or(Value::Null);
        if cp["counts"]["enqueued"].as_u64().unwrap_or(0) >= 400 {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(60), "no progress: {cp}");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap(); // SIGKILL midway
    child.wait().unwrap();
    let cp: Value = serde_json::from_slice(&std::fs::read(&cp_path).unwrap()).unwrap();
    let at_kill = cp["counts"]["enqueued"].as_u64().unwrap();
    assert!(cp["finished"] == false && (400..2001).contains(&at_kill), "killed midway: {cp}");
    assert!(cp["position"].as_str().unwrap().starts_with("catalogue/"));

    let mut c = backfill(&broker, &s3, dir.path());
    c.args(["--resume", &run_id, "--max-in-flight", "64"]);
    let (lines, resumed) = run_to_end(c);
    assert_eq!(resumed, run_id);
    let last = lines.last().unwrap();
    assert!(last.contains("finished: listed 2002, enqueued 2001, skipped 1, failed 0"), "{last}");
    let cp: Value = serde_json::from_slice(&std::fs::read(&cp_path).unwrap()).unwrap();
    assert_eq!(cp["finished"], true);

    // Every GIF under the prefix (the upper-case one too), one distinct id each, the
    // deterministic one; nothing else.
    let mut ids: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let all = events(&broker);
    for e in &all {
        schemas.upload.validate(e).unwrap_or_else(|err| panic!("{e}: {err}"));
        assert_eq!(e["source"], "backfill");
        assert_eq!(e["backfill_run_id"], run_id.as_str());
        ids.entry(e["s3_uri"].as_str().unwrap().to_owned())
            .or_default()
            .insert(e["event_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 2001, "every GIF, nothing else");
    for (uri, set) in &ids {
        assert_eq!(set.len(), 1, "{uri}: one event id per run, got {set:?}");
        assert_eq!(set.first().unwrap(), &autotag_contract::ids::backfill_event_id(&run_id, uri));
    }
    assert!(ids.contains_key("s3://media/catalogue/00/UPPER.GIF"));
    let gif_ids: BTreeSet<&str> = all.iter().map(|e| e["gif_id"].as_str().unwrap()).collect();
    assert!(gif_ids.contains("gif00042") && gif_ids.contains("UPPER"), "gif_id is the key's stem");
    // Re-sends after the kill repeat ids; they are few (at most what was in flight).
    assert!(all.len() - 2001 <= 64 + 1000, "{} events", all.len());
    // LastModified is uploaded_at.
    assert!(all.iter().all(|e| e["uploaded_at"].as_str().unwrap().ends_with('Z')));

    // A finished run resumed does nothing.
    let mut c = backfill(&broker, &s3, dir.path());
    c.args(["--resume", &run_id]);
    let (_, _) = run_to_end(c);
    assert_eq!(events(&broker).len(), all.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_writes_nothing_and_a_missing_topic_is_refused() {
    let broker = Broker::start(PARTITIONS).await;
    let s3 = S3Server::start();
    catalogue(&s3, 30).await;
    let dir = tempfile::tempdir().unwrap();

    // No gif-backfill topic yet: refused, naming it.
    let mut c = backfill(&broker, &s3, dir.path());
    c.args(["--from", "s3://media/catalogue/"]);
    let out = c.output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("topic gif-backfill does not exist"));

    broker.create_topics(&[TOPIC], PARTITIONS).await;
    let mut c = backfill(&broker, &s3, dir.path());
    c.args(["--from", "s3://media/catalogue/", "--dry-run", "--modified-after", "2000-01-01T00:00:00Z"]);
    let (lines, _) = run_to_end(c);
    assert!(lines.last().unwrap().contains("finished: listed 32, enqueued 31, skipped 1, failed 0"), "{lines:?}");
    assert!(events(&broker).is_empty(), "a dry run sends nothing");
    assert!(!dir.path().join(".autotag").exists(), "and writes no checkpoint");

    // The time filter: nothing was modified before 2000.
    let mut c = backfill(&broker, &s3, dir.path());
    c.args(["--from", "s3://media/catalogue/", "--dry-run", "--modified-before", "2000-01-01T00:00:00Z"]);
    let (lines, _) = run_to_end(c);
    assert!(lines.last().unwrap().contains("listed 32, enqueued 0, skipped 32"), "{lines:?}");

    // A manifest is a source too; bad lines are counted as failed.
    let manifest = dir.path().join("m.jsonl");
    std::fs::write(&manifest, "{\"gif_id\":\"a\",\"s3_uri\":\"s3://media/a.gif\"}\n{\"gif_id\":\"b\"}\n").unwrap();
    let mut c = backfill(&broker, &s3, dir.path());
    c.arg("--manifest").arg(&manifest);
    let (lines, run_id) = run_to_end(c);
    assert!(lines.last().unwrap().contains("listed 2, enqueued 1, skipped 0, failed 1"), "{lines:?}");
    let ev = events(&broker);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0]["event_id"], autotag_contract::ids::backfill_event_id(&run_id, "s3://media/a.gif").as_str());
}

/// `--rate` over ~10 s of producer timestamps (the 30 s figure is the benchmark's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_is_held() {
    let broker = Broker::start(PARTITIONS).await;
    broker.create_topics(&[TOPIC], PARTITIONS).await;
    let s3 = S3Server::start();
    catalogue(&s3, 500).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = backfill(&broker, &s3, dir.path());
    c.args(["--from", "s3://media/catalogue/", "--rate", "50"]);
    let t = Instant::now();
    run_to_end(c);
    let wall = t.elapsed().as_secs_f64();
    let mut ts: Vec<i64> = read_to_end(&broker, TOPIC, PARTITIONS).iter().map(|r| r.timestamp_ms).collect();
    ts.sort_unstable();
    assert_eq!(ts.len(), 501);
    let rate = (ts.len() - 1) as f64 / ((ts[ts.len() - 1] - ts[0]) as f64 / 1000.0);
    assert!((45.0..=55.0).contains(&rate), "{rate:.1} events/s for --rate 50 (wall {wall:.1} s)");
}

fn gzip(text: &str) -> Vec<u8> {
    use std::io::Write as _;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(text.as_bytes()).unwrap();
    e.finish().unwrap()
}

/// An S3 Inventory report (CSV, gzip, two data files, URL-encoded keys) on the S3 server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inventory_report_is_a_source() {
    let broker = Broker::start(PARTITIONS).await;
    broker.create_topics(&[TOPIC], PARTITIONS).await;
    let s3 = S3Server::start();
    s3.create_bucket("inventory").await;
    let prefix = "media/all-objects/2026-12-06T00-00Z";
    let manifest = serde_json::json!({
        "sourceBucket": "media",
        "destinationBucket": "arn:aws:s3:::inventory",
        "version": "2016-11-30",
        "creationTimestamp": "1796515200000",
        "fileFormat": "CSV",
        "fileSchema": "Bucket, Key, Size, LastModifiedDate",
        "files": [
            {"key": format!("{prefix}/data/a.csv.gz"), "size": 1, "MD5checksum": "x"},
            {"key": format!("{prefix}/data/b.csv.gz"), "size": 1, "MD5checksum": "x"}
        ]
    });
    s3.put("inventory", &format!("{prefix}/manifest.json"), manifest.to_string().into_bytes()).await;
    s3.put(
        "inventory",
        &format!("{prefix}/data/a.csv.gz"),
        gzip(concat!(
            "\"media\",\"uploads/my+cat.gif\",\"10\",\"2021-05-01T10:00:00.000Z\"\n",
            "\"media\",\"uploads/1%2B1.gif\",\"10\",\"2019-01-01T00:00:00.000Z\"\n",
            "\"media\",\"uploads/README.txt\",\"10\",\"2021-05-01T10:00:00.000Z\"\n",
        )),
    )
    .await;
    s3.put(
        "inventory",
        &format!("{prefix}/data/b.csv.gz"),
        gzip("\"media\",\"uploads/caf%C3%A9.gif\",\"10\",\"2022-02-02T02:02:02.000Z\"\n"),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = backfill(&broker, &s3, dir.path());
    c.args([
        "--inventory",
        &format!("s3://inventory/{prefix}/manifest.json"),
        "--modified-after",
        "2020-01-01T00:00:00Z",
    ]);
    let (lines, run_id) = run_to_end(c);
    assert!(lines.last().unwrap().contains("finished: listed 4, enqueued 2, skipped 2, failed 0"), "{lines:?}");
    let mut got: Vec<(String, String, String)> = events(&broker)
        .iter()
        .map(|e| {
            assert_eq!(
                e["event_id"],
                autotag_contract::ids::backfill_event_id(&run_id, e["s3_uri"].as_str().unwrap()).as_str()
            );
            (
                e["s3_uri"].as_str().unwrap().into(),
                e["gif_id"].as_str().unwrap().into(),
                e["uploaded_at"].as_str().unwrap().into(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("s3://media/uploads/café.gif".into(), "café".into(), "2022-02-02T02:02:02.000Z".into()),
            ("s3://media/uploads/my cat.gif".into(), "my cat".into(), "2021-05-01T10:00:00.000Z".into()),
        ],
        "keys decoded (+ is a space), LastModifiedDate is uploaded_at, the 2019 one filtered out"
    );
}

/// `--gif-id meta:NAME` reads the id from each object's user metadata (an object without it is
/// counted as failed), and the checkpoint can be an S3 object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gif_ids_from_metadata_and_a_checkpoint_on_s3() {
    let broker = Broker::start(PARTITIONS).await;
    broker.create_topics(&[TOPIC], PARTITIONS).await;
    let s3 = S3Server::start();
    s3.create_bucket("media").await;
    let client = s3.client().await;
    for (key, id) in [("u/a.gif", Some("G-1")), ("u/b.gif", Some("G-2")), ("u/c.gif", None)] {
        let mut put = client.put_object().bucket("media").key(key).body(b"GIF89a".to_vec().into());
        if let Some(id) = id {
            put = put.metadata("gif-id", id);
        }
        put.send().await.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let mut c = backfill(&broker, &s3, dir.path());
    c.args(["--from", "s3://media/u/", "--gif-id", "meta:gif-id", "--checkpoint", "s3://media/checkpoints/run.json"]);
    let (lines, run_id) = run_to_end(c);
    assert!(lines.last().unwrap().contains("finished: listed 3, enqueued 2, skipped 0, failed 1"), "{lines:?}");
    let mut got: Vec<(String, String)> = events(&broker)
        .iter()
        .map(|e| (e["gif_id"].as_str().unwrap().into(), e["s3_uri"].as_str().unwrap().into()))
        .collect();
    got.sort();
    assert_eq!(got, [("G-1".into(), "s3://media/u/a.gif".into()), ("G-2".into(), "s3://media/u/b.gif".into())]);
    let cp: Value = serde_json::from_slice(&s3.get("media", "checkpoints/run.json").await).unwrap();
    assert_eq!((cp["run_id"].as_str(), &cp["finished"]), (Some(run_id.as_str()), &Value::Bool(true)), "{cp}");
    assert_eq!(cp["source"]["gif_id"], "meta:gif-id");
    assert!(!dir.path().join(".autotag").exists(), "no local checkpoint");
    // Resuming a finished run from its S3 checkpoint sends nothing more.
    let mut c = backfill(&broker, &s3, dir.path());
    c.args(["--resume", &run_id, "--checkpoint", "s3://media/checkpoints/run.json"]);
    run_to_end(c);
    assert_eq!(events(&broker).len(), 2);
}
