//! Real servers for the integration tests and benchmarks of every crate: a Tansu
//! Kafka-protocol broker and an s3s-fs S3 server, each on a free loopback port, plus launchers
//! of the real binaries and the real exported model. `scripts/setup` installs them into
//! `.local/`; a test fails (it does not skip) when they are missing.
//!
//! Never shipped: only `[dev-dependencies]` and the benchmarks use it.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;

pub const UPLOADS: &str = "gif-uploads";
pub const SUGGESTIONS: &str = "gif-tag-suggestions";
pub const DLQ: &str = "gif-uploads-dlq";
/// The worker's backfill lane (`autotag backfill` writes it).
pub const BACKFILL: &str = "gif-backfill";
pub const ACCESS_KEY: &str = "autotag-test-key";
pub const SECRET_KEY: &str = "autotag-test-secret";

/// The checkout: `AUTOTAG_REPO_DIR` when set (a prebuilt bench binary run from another copy of
/// the tree, as on the GPU machine), else where this was compiled.
pub fn repo() -> PathBuf {
    std::env::var_os("AUTOTAG_REPO_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.."))
}

/// A binary of the workspace (`autotag`, `autotag-ops`, …): in `AUTOTAG_BIN_DIR` when set,
/// else beside the running test or bench executable's `deps/` folder, where cargo puts the
/// binaries it built for the same profile.
pub fn bin(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("AUTOTAG_BIN_DIR") {
        return PathBuf::from(dir).join(name);
    }
    let exe = std::env::current_exe().expect("the test executable's path");
    let dir = exe.parent().and_then(Path::parent).expect("target/<profile>/deps/<exe>");
    let p = dir.join(name);
    assert!(p.exists(), "{} is missing: build it first (cargo build --release --bins)", p.display());
    p
}

/// The `autotag` binary: `AUTOTAG_BIN` when set, else [`bin`]`("autotag")`.
pub fn autotag_bin() -> PathBuf {
    std::env::var_os("AUTOTAG_BIN").map(PathBuf::from).unwrap_or_else(|| bin("autotag"))
}

fn local_tool(name: &str) -> PathBuf {
    let p = repo().join(".local").join(name);
    assert!(p.exists(), "{} is missing: run scripts/setup first", p.display());
    p
}

pub fn model_dir() -> PathBuf {
    let p = repo().join(".local/models/efficientnet-lite0");
    assert!(p.join("model.json").exists(), "{} is missing: run scripts/setup first", p.display());
    p
}

pub fn testdata(name: &str) -> PathBuf {
    repo().join("testdata/gifs").join(name)
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_for_port(port: u16, timeout: Duration) {
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(t.elapsed() < timeout, "port {port} did not open within {timeout:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A child process killed on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A Tansu broker on a free loopback port: in-memory storage ([`Broker::start`]) or, for fault
/// tests, storage in a bucket of an S3 server ([`Broker::start_durable`]), which survives
/// [`Broker::kill`] + [`Broker::restart`] (docs: environment, "Broker restarts that keep the
/// data").
pub struct Broker {
    pub port: u16,
    /// `--storage-engine` and the environment it needs.
    storage: String,
    env: Vec<(String, String)>,
    proc: Option<Proc>,
}

impl Broker {
    /// An in-memory broker with the worker's three topics of `partitions` partitions.
    pub async fn start(partitions: i32) -> Self {
        let b = Self::launch("memory://tansu/".into(), Vec::new());
        b.create_topics(&[UPLOADS, SUGGESTIONS, DLQ], partitions).await;
        b
    }

    /// A broker whose topics, records and committed offsets live in `bucket` on `s3` (created
    /// here), with the worker's three topics. Tansu's S3 store writes producer state, then the
    /// high watermark, then the batch: a SIGKILL between them can drop a record it acknowledged,
    /// so a loss test checks acknowledged ids against the topic (docs: environment).
    pub async fn start_durable(partitions: i32, s3: &S3Server, bucket: &str) -> Self {
        s3.create_bucket(bucket).await;
        let env = [
            ("AWS_ENDPOINT", s3.endpoint()),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
            ("AWS_DEFAULT_REGION", "us-east-1".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let b = Self::launch(format!("s3://{bucket}/"), env);
        b.create_topics(&[UPLOADS, SUGGESTIONS, DLQ], partitions).await;
        b
    }

    fn launch(storage: String, env: Vec<(String, String)>) -> Self {
        let mut b = Broker { port: free_port(), storage, env, proc: None };
        b.restart();
        b
    }

    /// Kill the broker with SIGKILL (an outage). In-memory storage is lost with it; durable
    /// storage is not.
    pub fn kill(&mut self) {
        self.proc = None;
    }

    /// Kill the broker (an outage); see [`Broker::kill`].
    pub fn stop(&mut self) {
        self.kill();
    }

    /// Start it again on the same port and storage. An in-memory broker comes back empty (the
    /// caller re-creates the topics it needs); a durable one with everything it had.
    pub fn restart(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let child = Command::new(local_tool("tansu"))
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", &self.storage])
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting tansu");
        let proc = Proc(child);
        wait_for_port(self.port, Duration::from_secs(10));
        self.proc = Some(proc);
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The broker's process id (the benchmark charges its CPU time to the harness).
    ///
    /// # Panics
    /// When the broker is stopped.
    pub fn pid(&self) -> u32 {
        self.proc.as_ref().expect("the broker is running").0.id()
    }

    pub async fn create_topics(&self, names: &[&str], partitions: i32) {
        let admin: AdminClient<DefaultClientContext> =
            ClientConfig::new().set("bootstrap.servers", self.brokers()).create().unwrap();
        let topics: Vec<NewTopic> =
            names.iter().map(|n| NewTopic::new(n, partitions, TopicReplication::Fixed(1))).collect();
        let res = admin.create_topics(&topics, &AdminOptions::new()).await.expect("create topics");
        for r in res {
            r.expect("topic created");
        }
    }

    pub fn producer(&self) -> FutureProducer {
        producer_for(&self.brokers())
    }

    pub async fn produce(&self, topic: &str, key: &str, payload: &[u8]) -> (i32, i64) {
        let d = self
            .producer()
            .send(FutureRecord::to(topic).key(key).payload(payload), Duration::from_secs(10))
            .await
            .expect("produce");
        (d.partition, d.offset)
    }

    /// Produce many records with one producer; returns (partition, offset) of each.
    pub async fn produce_all(&self, topic: &str, records: &[(String, Vec<u8>)]) -> Vec<(i32, i64)> {
        let p = self.producer();
        let sends =
            records.iter().map(|(k, v)| p.send(FutureRecord::to(topic).key(k).payload(v), Duration::from_secs(30)));
        futures::future::join_all(sends)
            .await
            .into_iter()
            .map(|r| {
                let d = r.expect("produce");
                (d.partition, d.offset)
            })
            .collect()
    }

    /// A consumer of the output topics in a fresh group, from the start.
    pub fn output_consumer(&self) -> StreamConsumer {
        let c: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.brokers())
            .set("group.id", format!("test-reader-{}", uuid::Uuid::new_v4()))
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "2000")
            .set("heartbeat.interval.ms", "500")
            .create()
            .unwrap();
        c.subscribe(&[SUGGESTIONS, DLQ]).unwrap();
        c
    }

    /// Committed offsets of `group` on the uploads topic, per partition.
    pub fn committed(&self, group: &str, partitions: i32) -> HashMap<i32, i64> {
        self.committed_on(group, UPLOADS, partitions)
    }

    /// The committed offsets of `group` on `topic`, by partition.
    pub fn committed_on(&self, group: &str, topic: &str, partitions: i32) -> HashMap<i32, i64> {
        let c: StreamConsumer =
            ClientConfig::new().set("bootstrap.servers", self.brokers()).set("group.id", group).create().unwrap();
        let mut tpl = rdkafka::TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition(topic, p);
        }
        let got = c.committed_offsets(tpl, Duration::from_secs(5)).expect("committed offsets");
        got.elements()
            .iter()
            .filter_map(|e| match e.offset() {
                rdkafka::Offset::Offset(o) => Some((e.partition(), o)),
                _ => None,
            })
            .collect()
    }
}

/// An idempotent producer to `brokers` (for a task that cannot borrow the [`Broker`]), with the
/// partitioner of every producer of ours and of the platform's Java clients (`murmur2_random`),
/// so that a GIF's records of every topic land in one partition number as the partitioning
/// contract says (README "Event contract").
pub fn producer_for(brokers: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("partitioner", "murmur2_random")
        .create()
        .unwrap()
}

/// The upload event an output answers: `upload_event_id`, or the origin
/// record for a dead letter whose payload had no readable id.
pub fn answered_event(r: &OutputRecord) -> String {
    match r.value["upload_event_id"].as_str() {
        Some(id) => id.to_owned(),
        None => format!("{}@{}", r.value["origin"]["partition"], r.value["origin"]["offset"]),
    }
}

/// One output record.
#[derive(Debug, Clone)]
pub struct OutputRecord {
    pub topic: String,
    pub key: Option<String>,
    pub value: Value,
    /// The record's timestamp (the producer's create time), ms since the epoch.
    pub timestamp_ms: i64,
    pub partition: i32,
    pub offset: i64,
}

impl OutputRecord {
    /// The record `m` with its parsed `value`.
    fn of(m: &impl Message, value: Value) -> Self {
        OutputRecord {
            topic: m.topic().to_owned(),
            key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            value,
            timestamp_ms: m.timestamp().to_millis().unwrap_or(0),
            partition: m.partition(),
            offset: m.offset(),
        }
    }
}

/// Collects outputs until `done` says so or `timeout` passes.
pub async fn collect_outputs(
    c: &StreamConsumer,
    out: &mut Vec<OutputRecord>,
    timeout: Duration,
    done: impl Fn(&[OutputRecord]) -> bool,
) -> bool {
    let t = Instant::now();
    while !done(out) {
        let left = timeout.saturating_sub(t.elapsed());
        if left.is_zero() {
            return false;
        }
        if let Ok(Ok(m)) = tokio::time::timeout(left.min(Duration::from_millis(500)), c.recv()).await {
            let value: Value = serde_json::from_slice(m.payload().unwrap_or(b"null")).expect("outputs are JSON");
            out.push(OutputRecord::of(&m, value));
        }
    }
    true
}

/// An s3s-fs server over a temporary directory.
pub struct S3Server {
    pub port: u16,
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    proc: Option<Proc>,
}

impl S3Server {
    pub fn start() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_owned();
        let mut s = S3Server { port: free_port(), dir, _tmp: Some(tmp), proc: None };
        s.restart();
        s
    }

    /// (Re)start on the same port and directory.
    pub fn restart(&mut self) {
        let child = Command::new(local_tool("s3s-fs"))
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting s3s-fs");
        self.proc = Some(Proc(child));
        wait_for_port(self.port, Duration::from_secs(10));
    }

    pub fn stop(&mut self) {
        self.proc = None;
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The server's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(|p| p.0.id())
    }

    pub async fn client(&self) -> aws_sdk_s3::Client {
        let creds = aws_sdk_s3::config::Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test");
        let conf = aws_sdk_s3::config::Builder::new()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .endpoint_url(self.endpoint())
            .credentials_provider(creds)
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    pub async fn create_bucket(&self, bucket: &str) {
        self.client().await.create_bucket().bucket(bucket).send().await.expect("create bucket");
    }

    /// Create `bucket` and put the test GIFs `files` (names under `testdata/gifs`) in it, each
    /// under its own name.
    pub async fn put_testdata(&self, bucket: &str, files: &[&str]) {
        self.create_bucket(bucket).await;
        for f in files {
            self.put(bucket, f, read(&testdata(f))).await;
        }
    }

    pub async fn put(&self, bucket: &str, key: &str, body: Vec<u8>) {
        self.client().await.put_object().bucket(bucket).key(key).body(body.into()).send().await.expect("put object");
    }

    /// The keys under `prefix`, sorted (every page).
    pub async fn list(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let client = self.client().await;
        let mut keys = Vec::new();
        let mut pages = client.list_objects_v2().bucket(bucket).prefix(prefix).into_paginator().send();
        while let Some(page) = pages.next().await {
            keys.extend(page.expect("list objects").contents().iter().filter_map(|o| o.key().map(str::to_owned)));
        }
        keys.sort();
        keys
    }

    pub async fn get(&self, bucket: &str, key: &str) -> Vec<u8> {
        let out = self.client().await.get_object().bucket(bucket).key(key).send().await.expect("get object");
        out.body.collect().await.expect("object body").into_bytes().to_vec()
    }

    /// The standard AWS environment of a service that talks to this server.
    pub fn aws_env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_owned()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_owned()),
            ("AWS_REGION", "us-east-1".to_owned()),
            ("AWS_ENDPOINT_URL_S3", self.endpoint()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
}

/// `autotag --config config/default.toml ARGS…` with the exported model on one libtorch thread:
/// the CLI commands (`tag`, `eval`) as the tests run them.
pub fn autotag_cli(args: &[&str]) -> Command {
    let mut c = Command::new(autotag_bin());
    c.arg("--config")
        .arg(repo().join("config/default.toml"))
        .args(args)
        .env("AUTOTAG__MODEL__DIR", model_dir())
        .env("AUTOTAG__MODEL__THREADS", "1");
    c
}

/// Settings for a worker process.
pub struct WorkerEnv {
    pub vars: Vec<(String, String)>,
    pub metrics_port: u16,
    pub group: String,
}

impl WorkerEnv {
    pub fn new(broker: &Broker, s3: &S3Server) -> Self {
        let metrics_port = free_port();
        let group = format!("autotag-test-{}", uuid::Uuid::new_v4());
        let vars = [
            ("AUTOTAG__KAFKA__BROKERS", broker.brokers()),
            ("AUTOTAG__KAFKA__GROUP_ID", group.clone()),
            ("AUTOTAG__KAFKA__COMMIT_INTERVAL_MS", "200".into()),
            ("AUTOTAG__KAFKA__CONSUMER__SESSION_TIMEOUT_MS", "2000".into()),
            ("AUTOTAG__KAFKA__CONSUMER__HEARTBEAT_INTERVAL_MS", "500".into()),
            ("AUTOTAG__MODEL__DIR", model_dir().display().to_string()),
            ("AUTOTAG__MODEL__DEVICE", "cpu".into()),
            ("AUTOTAG__MODEL__THREADS", "1".into()),
            ("AUTOTAG__PIPELINE__DECODE_THREADS", "1".into()),
            ("AUTOTAG__BATCH__MAX_BATCH", "8".into()),
            ("AUTOTAG__METRICS__LISTEN", format!("127.0.0.1:{metrics_port}")),
            ("AUTOTAG_LOG", "info,autotag=debug".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .chain(s3.aws_env())
        .collect();
        WorkerEnv { vars, metrics_port, group }
    }

    pub fn set(&mut self, k: &str, v: &str) {
        self.vars.retain(|(key, _)| key != k);
        self.vars.push((k.to_owned(), v.to_owned()));
    }

    /// Drop the tuning the tests pin (one model thread, one decode thread, batches of 8), so the
    /// worker runs `config/default.toml`'s (or the caller's `AUTOTAG__…` environment's): what a
    /// benchmark measures.
    pub fn default_tuning(&mut self) {
        self.vars.retain(|(k, _)| !TEST_TUNING.contains(&k.as_str()));
    }

    /// Point the worker at other topics (uploads, suggestions, dead letters).
    pub fn topics(&mut self, uploads: &str, suggestions: &str, dead_letters: &str) {
        self.set("AUTOTAG__KAFKA__TOPICS__UPLOADS", uploads);
        self.set("AUTOTAG__KAFKA__TOPICS__SUGGESTIONS", suggestions);
        self.set("AUTOTAG__KAFKA__TOPICS__DEAD_LETTERS", dead_letters);
    }
}

/// The settings [`WorkerEnv::new`] pins for tests and [`WorkerEnv::default_tuning`] drops.
pub const TEST_TUNING: &[&str] =
    &["AUTOTAG__MODEL__THREADS", "AUTOTAG__PIPELINE__DECODE_THREADS", "AUTOTAG__BATCH__MAX_BATCH"];

/// A running service binary of the workspace (the worker, the relabel job), its stderr in a
/// log file.
pub struct Service {
    pub proc: Proc,
    pub metrics_port: u16,
    pub log: PathBuf,
}

/// A running `autotag worker`.
pub type Worker = Service;

impl Service {
    /// `autotag worker` with `env`'s settings and the reference config.
    pub fn start(env: &WorkerEnv, log_name: &str) -> Self {
        let config = repo().join("config/default.toml");
        let args = [std::ffi::OsStr::new("worker"), "--config".as_ref(), config.as_os_str()];
        Self::spawn(&autotag_bin(), &args, &env.vars, env.metrics_port, log_name)
    }

    /// `binary args…` with `vars` set, serving its metrics on `metrics_port`.
    pub fn spawn(
        binary: &Path,
        args: &[&std::ffi::OsStr],
        vars: &[(String, String)],
        metrics_port: u16,
        log_name: &str,
    ) -> Self {
        let log = std::env::temp_dir().join(format!("autotag-{log_name}-{}.log", std::process::id()));
        let log_file = std::fs::File::create(&log).unwrap();
        let child = Command::new(binary)
            .args(args)
            .envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        Service { proc: Proc(child), metrics_port, log }
    }

    /// Wait until /readyz says ready (the worker: model warmed up, group joined).
    pub fn wait_ready(&mut self, timeout: Duration) {
        let t = Instant::now();
        loop {
            if let Some(status) = self.proc.0.try_wait().unwrap() {
                panic!("service exited early ({status}); log:\n{}", self.log_text());
            }
            if http_get(self.metrics_port, "/readyz").is_some_and(|(code, _)| code == 200) {
                return;
            }
            assert!(t.elapsed() < timeout, "service not ready within {timeout:?}; log:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn metrics(&self) -> String {
        http_get(self.metrics_port, "/metrics").map(|(_, b)| b).unwrap_or_default()
    }

    /// Peak resident set size of the worker so far (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.proc.0.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// The process's threads now: (name as `/proc` shows it, at most 15 bytes; nice value;
    /// scheduling policy, 0 normal, 5 `SCHED_IDLE`).
    pub fn threads(&self) -> Vec<(String, i32, u32)> {
        let Ok(dir) = std::fs::read_dir(format!("/proc/{}/task", self.proc.0.id())) else { return Vec::new() };
        dir.flatten()
            .filter_map(|e| {
                let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
                let (open, close) = (stat.find('(')?, stat.rfind(')')?);
                // After the name: field 3 (state) onwards; nice is field 19, policy 41 (`man 5 proc`).
                let fields: Vec<&str> = stat.get(close + 2..)?.split_whitespace().collect();
                let (nice, policy) = (fields.get(16)?.parse().ok()?, fields.get(38)?.parse().ok()?);
                Some((stat[open + 1..close].to_owned(), nice, policy))
            })
            .collect()
    }

    pub fn kill9(&mut self) {
        let _ = self.proc.0.kill();
        let _ = self.proc.0.wait();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill").args([sig, &self.proc.0.id().to_string()]).status().unwrap();
        assert!(status.success());
    }

    /// SIGTERM and wait; returns (exit code, time taken).
    pub fn terminate(&mut self, timeout: Duration) -> (Option<i32>, Duration) {
        let t = Instant::now();
        self.signal("-TERM");
        loop {
            if let Some(s) = self.proc.0.try_wait().unwrap() {
                return (s.code(), t.elapsed());
            }
            if t.elapsed() > timeout {
                return (None, t.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Minimal HTTP/1.0 GET on loopback: (status, body).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let code = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Some((code, body))
}

/// An upload event JSON for `s3://bucket/key`.
pub fn upload_event(event_id: &str, gif_id: &str, bucket: &str, key: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schema_version": 1,
        "event_id": event_id,
        "gif_id": gif_id,
        "s3_uri": format!("s3://{bucket}/{key}"),
        "uploaded_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    }))
    .unwrap()
}

/// Compiled JSON Schema validators of the contract.
pub struct Schemas {
    pub upload: jsonschema::Validator,
    pub suggestion: jsonschema::Validator,
    pub dead_letter: jsonschema::Validator,
    pub training_labels: jsonschema::Validator,
}

impl Schemas {
    pub fn load() -> Self {
        let load = |name: &str| {
            let text = std::fs::read_to_string(repo().join("schemas").join(name)).unwrap();
            let v: Value = serde_json::from_str(&text).unwrap();
            jsonschema::validator_for(&v).unwrap_or_else(|e| panic!("{name}: {e}"))
        };
        Schemas {
            upload: load("upload-event.schema.json"),
            suggestion: load("suggestion.schema.json"),
            dead_letter: load("dead-letter.schema.json"),
            training_labels: load("training-labels.schema.json"),
        }
    }

    pub fn check(&self, r: &OutputRecord) {
        let v = match r.topic.as_str() {
            SUGGESTIONS => &self.suggestion,
            DLQ => &self.dead_letter,
            "gif-training-labels" => &self.training_labels,
            other => panic!("no schema for topic {other}"),
        };
        let errors: Vec<String> = v.iter_errors(&r.value).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{} record violates its schema: {errors:?}\n{}", r.topic, r.value);
    }
}

/// The labels of a training-labels record as (tag, score, provenance), in the record's order
/// (sorted by tag).
pub fn label_triples(v: &Value) -> Vec<(String, f64, String)> {
    v["labels"]
        .as_array()
        .expect("a training-labels record has labels")
        .iter()
        .map(|l| {
            let s = |k: &str| l[k].as_str().unwrap_or_default().to_owned();
            (s("tag"), l["score"].as_f64().unwrap_or(f64::NAN), s("provenance"))
        })
        .collect()
}

pub fn sorted_tags(s: &Value) -> Vec<String> {
    s["tags"]
        .as_array()
        .map(|a| a.iter().filter_map(|t| t["tag"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

pub fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Run an operator binary (`autotag`, `autotag-ops`) with `args` and the environment variable
/// `var=1`, against a broker and S3 endpoint where nothing listens: the run must fail on its
/// configuration, not on the network. Returns (exit status success, stderr).
pub fn run_with_env_var(binary: &Path, args: &[&str], var: &str) -> (bool, String) {
    let out = Command::new(binary)
        .args(args)
        .env("AUTOTAG__KAFKA__BROKERS", "127.0.0.1:9")
        .env(var, "1")
        .env("AWS_ACCESS_KEY_ID", "x")
        .env("AWS_SECRET_ACCESS_KEY", "x")
        .env("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")
        .output()
        .expect("running the binary");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The pass-through check of one operator binary: a librdkafka key that does not exist makes
/// `upload` (producer keys) and `watch` (consumer keys) fail with an error naming it, so the
/// operator's keys demonstrably reach every client the binary builds.
pub fn assert_unknown_passthrough_keys_are_refused(binary: &Path) {
    let gif = testdata("chelsea_static.gif");
    let gif = gif.to_str().expect("utf-8 path");
    let name = binary.display();
    let (ok, err) = run_with_env_var(binary, &["upload", "--bucket", "b", gif], "AUTOTAG__KAFKA__PRODUCER__NOT_A_KEY");
    assert!(!ok, "{name} upload accepted an unknown producer key");
    assert!(err.contains("not.a.key"), "{name} upload: the error does not name the key:\n{err}");
    let watch = ["watch", "--expect", "1", "--timeout-secs", "5"];
    let (ok, err) = run_with_env_var(binary, &watch, "AUTOTAG__KAFKA__CONSUMER__NOT_A_KEY");
    assert!(!ok, "{name} watch accepted an unknown consumer key");
    assert!(err.contains("not.a.key"), "{name} watch: the error does not name the key:\n{err}");
}

/// The relabel job's topics (its defaults): the four inputs, the labels, the changelog.
pub const RELABEL_TOPICS: [&str; 6] =
    [UPLOADS, "gif-backfill", SUGGESTIONS, "gif-tag-feedback", "gif-training-labels", "gif-relabel-changelog"];

/// Settings of an `autotag-relabel` process: `(vars, metrics port)`. Fast group joins,
/// `commit_interval_ms` 200.
pub fn relabel_env(broker: &Broker, group: &str, state_dir: &Path) -> (Vec<(String, String)>, u16) {
    let port = free_port();
    let vars = [
        ("AUTOTAG__KAFKA__BROKERS", broker.brokers()),
        ("AUTOTAG__KAFKA__CONSUMER__SESSION_TIMEOUT_MS", "2000".into()),
        ("AUTOTAG__KAFKA__CONSUMER__HEARTBEAT_INTERVAL_MS", "500".into()),
        ("AUTOTAG__RELABEL__GROUP_ID", group.into()),
        ("AUTOTAG__RELABEL__STATE_DIR", state_dir.display().to_string()),
        ("AUTOTAG__RELABEL__COMMIT_INTERVAL_MS", "200".into()),
        ("AUTOTAG__RELABEL__METRICS_LISTEN", format!("127.0.0.1:{port}")),
        ("AUTOTAG_LOG", "info".into()),
    ];
    (vars.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(), port)
}

/// Every record of `topic` from the beginning to the end seen now (librdkafka's partition
/// EOF on each of its `partitions`), in partition order.
pub fn read_to_end(broker: &Broker, topic: &str, partitions: i32) -> Vec<OutputRecord> {
    use rdkafka::consumer::BaseConsumer;
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.brokers())
        .set("group.id", format!("test-read-{}", uuid::Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, rdkafka::Offset::Beginning).unwrap();
    }
    c.assign(&tpl).unwrap();
    let mut ended = std::collections::HashSet::new();
    let mut out = Vec::new();
    let t = Instant::now();
    while ended.len() < partitions as usize {
        assert!(t.elapsed() < Duration::from_secs(60), "{topic}: no end within 60 s");
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let value = serde_json::from_slice(m.payload().unwrap_or(b"null")).unwrap_or(Value::Null);
                out.push(OutputRecord::of(&m, value));
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                ended.insert(p);
            }
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None => {}
        }
    }
    out
}
