//! The feedback service under test: the real `autotag-feedback` binary against a real Tansu
//! broker, a raw HTTP/1.1 client (hostile requests need byte-level control), and a reader of the
//! feedback topic.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use autotag_test_support::{Broker, Proc, free_port, http_get, repo};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{Value, json};

pub const TOPIC: &str = "gif-tag-feedback";
pub const PARTITIONS: i32 = 3;
/// Tokens of the tokens file: web has two (rotation), ios one.
pub const WEB_TOKEN: &str = "web-secret-token-1";
pub const WEB_TOKEN_NEW: &str = "web-secret-token-2";
pub const IOS_TOKEN: &str = "ios-secret-token";

/// A running `autotag-feedback`.
pub struct Service {
    pub proc: Proc,
    pub port: u16,
    pub metrics_port: u16,
    pub log: PathBuf,
    /// The tokens file the service reads (rewrite it, then [`Service::hangup`]).
    pub tokens: PathBuf,
    _dir: tempfile::TempDir,
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_autotag-feedback"))
}

/// The tokens file of the tests.
pub fn tokens_file(dir: &std::path::Path) -> PathBuf {
    let path = dir.join("tokens");
    let text = format!(
        "# client sha256:<hex>\n{}\n{}\n{}\n",
        autotag_feedback::auth::token_line("web", WEB_TOKEN),
        autotag_feedback::auth::token_line("web", WEB_TOKEN_NEW),
        autotag_feedback::auth::token_line("ios-app", IOS_TOKEN),
    );
    std::fs::write(&path, text).unwrap();
    path
}

impl Service {
    /// Start against `broker` with the reference config file plus `extra` overrides, and wait
    /// until /readyz says ready.
    pub fn start(broker: &Broker, extra: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let metrics_port = free_port();
        let log = dir.path().join("service.log");
        let tokens = tokens_file(dir.path());
        let mut cmd = Command::new(bin());
        cmd.arg("--config")
            .arg(repo().join("config/default.toml"))
            .env("AUTOTAG__KAFKA__BROKERS", broker.brokers())
            .env("AUTOTAG__FEEDBACK__LISTEN", format!("127.0.0.1:{port}"))
            .env("AUTOTAG__FEEDBACK__METRICS_LISTEN", format!("127.0.0.1:{metrics_port}"))
            .env("AUTOTAG__FEEDBACK__TOKENS_FILE", &tokens)
            .env("AUTOTAG__FEEDBACK__BROKER_TIMEOUT_MS", "2000")
            .env("AUTOTAG__SHUTDOWN__DEADLINE_MS", "2000")
            .env("AUTOTAG_LOG", "info,autotag_feedback=debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let proc = Proc(cmd.spawn().expect("starting autotag-feedback"));
        let mut s = Service { proc, port, metrics_port, log, tokens, _dir: dir };
        s.wait_ready(Duration::from_secs(20));
        s
    }

    pub fn wait_ready(&mut self, timeout: Duration) {
        let t = Instant::now();
        loop {
            if let Some(status) = self.proc.0.try_wait().unwrap() {
                panic!("service exited ({status}); log:\n{}", self.log_text());
            }
            if http_get(self.metrics_port, "/readyz").is_some_and(|(c, _)| c == 200) {
                return;
            }
            assert!(t.elapsed() < timeout, "not ready within {timeout:?}; log:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Send SIGHUP (reload the tokens file).
    pub fn hangup(&self) {
        self.signal("HUP");
    }

    /// Send a signal by name (`HUP`, `TERM`).
    pub fn signal(&self, name: &str) {
        let ok =
            Command::new("kill").args([&format!("-{name}"), &self.proc.0.id().to_string()]).status().unwrap().success();
        assert!(ok, "kill -{name}");
    }

    /// Wait until `/metrics` holds the line `line`.
    pub fn wait_metric(&self, line: &str, timeout: Duration) {
        let t = Instant::now();
        loop {
            let text = http_get(self.metrics_port, "/metrics").map(|(_, b)| b).unwrap_or_default();
            if text.lines().any(|l| l == line) {
                return;
            }
            assert!(t.elapsed() < timeout, "no `{line}` on /metrics within {timeout:?}:\n{text}\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Alive: the process runs and /healthz answers.
    pub fn assert_alive(&mut self) {
        assert!(self.proc.0.try_wait().unwrap().is_none(), "the service died; log:\n{}", self.log_text());
        assert_eq!(http_get(self.metrics_port, "/healthz").map(|(c, _)| c), Some(200));
    }

    /// (VmRSS, VmHWM) in KiB.
    pub fn rss_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.proc.0.id())).unwrap();
        let field = |name: &str| -> u64 {
            let line = status.lines().find(|l| l.starts_with(name)).unwrap();
            line.split_whitespace().nth(1).unwrap().parse().unwrap()
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// POST `body` to /v1/feedback.
    pub fn post(&self, token: Option<&str>, content_type: Option<&str>, body: &[u8]) -> Response {
        let mut head = String::from("POST /v1/feedback HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
        if let Some(t) = token {
            head.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        if let Some(ct) = content_type {
            head.push_str(&format!("Content-Type: {ct}\r\n"));
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        let mut raw = head.into_bytes();
        raw.extend_from_slice(body);
        self.send(&raw)
    }

    pub fn post_json(&self, token: &str, body: &Value) -> Response {
        self.post(Some(token), Some("application/json"), body.to_string().as_bytes())
    }

    /// Send raw bytes, read the answer until the server closes.
    pub fn send(&self, raw: &[u8]) -> Response {
        let mut s = self.connect();
        // The server may answer and close before reading everything (a 413 on Content-Length).
        let _ = s.write_all(raw);
        read_response(&mut s)
    }

    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s
    }
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
    /// (index, field) of each error of a 400.
    pub fn error_fields(&self) -> Vec<(Option<u64>, String)> {
        self.json()["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["index"].as_u64(), e["field"].as_str().unwrap().to_owned()))
            .collect()
    }
}

/// The head of a raw `POST /v1/feedback` with `token` and `framing` (`Content-Length: N` or
/// `Transfer-Encoding: chunked`), asking the service to close after its answer when `close`.
pub fn raw_head(token: &str, framing: &str, close: bool) -> String {
    let connection = if close { "Connection: close\r\n" } else { "" };
    format!(
        "POST /v1/feedback HTTP/1.1\r\nHost: x\r\n{connection}Authorization: Bearer {token}\r\nContent-Type: application/json\r\n{framing}\r\n\r\n"
    )
}

/// Read one response until EOF (requests say `Connection: close`); status 0 when the server
/// closed without answering.
pub fn read_response(s: &mut TcpStream) -> Response {
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return Response { status: 0, headers: vec![], body: text };
    };
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|c| c.parse().ok()).unwrap_or(0);
    let headers =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned())).collect();
    Response { status, headers, body: body.to_owned() }
}

/// A valid event.
pub fn event(id: &str, gif: &str, tag: &str) -> Value {
    json!({
        "schema_version": 1,
        "event_id": id,
        "gif_id": gif,
        "tag": tag,
        "action": "add",
        "user_id": "user-1",
        "occurred_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "suggestion_event_id": "sugg-1",
        "model_version": "efficientnet-lite0@1"
    })
}

/// A batch of `n` valid events with ids `<prefix>-<i>`.
pub fn batch(prefix: &str, n: usize) -> Vec<Value> {
    (0..n).map(|i| event(&format!("{prefix}-{i}"), &format!("gif-{}", i % 4), "Cat")).collect()
}

pub async fn create_topic(broker: &Broker) {
    broker.create_topics(&[TOPIC], PARTITIONS).await;
}

/// A record of the feedback topic.
#[derive(Debug, Clone)]
pub struct Record {
    pub key: Option<String>,
    pub value: Value,
}

/// Read the feedback topic from the start until `done` holds or `timeout` passes; then go on
/// reading for `settle` to catch anything written after.
pub fn read_topic(
    broker: &Broker,
    timeout: Duration,
    settle: Duration,
    done: impl Fn(&[Record]) -> bool,
) -> Vec<Record> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.brokers())
        .set("group.id", format!("feedback-test-{}", uuid::Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(TOPIC, p, Offset::Beginning).unwrap();
    }
    c.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let t = Instant::now();
    let mut settle_from: Option<Instant> = None;
    loop {
        if settle_from.is_none() && done(&out) {
            settle_from = Some(Instant::now());
        }
        if settle_from.is_some_and(|s| s.elapsed() >= settle) || t.elapsed() > timeout {
            return out;
        }
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            let value = serde_json::from_slice(m.payload().unwrap_or(b"null")).expect("records are JSON");
            out.push(Record { key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()), value });
        }
    }
}

/// The record schema, compiled.
pub fn record_schema() -> jsonschema::Validator {
    let text = std::fs::read_to_string(repo().join("schemas/feedback-record.schema.json")).unwrap();
    jsonschema::validator_for(&serde_json::from_str(&text).unwrap()).unwrap()
}
