//! Operator tools around the services: upload GIFs and announce them (`upload`), watch the
//! outputs (`watch`), print the effective configuration (`config`). The demo uses them; so can
//! anyone poking at a running deployment.
//!
//! **Owns** the `autotag-ops` binary (torch-free: `scripts/test` checks that it needs no
//! libtorch) and the commands the `autotag` CLI fronts as `autotag upload|watch`.
//!
//! **Never imports** a service crate or the model. Every Kafka client here is built by
//! `autotag_infra::kafka`, so the operator's pass-through keys (SASL/TLS, …) reach it.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use autotag_contract::{DeadLetter, SCHEMA_VERSION, Suggestion, UploadEvent, now_rfc3339};
use autotag_infra::config::ServiceConfig;
use autotag_infra::kafka::{self, KafkaConfig};
use autotag_infra::s3::{self, S3Config};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::{Deserialize, Serialize};

/// What the operator tools read: the shared `kafka` and `s3` sections.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpsConfig {
    pub kafka: KafkaConfig,
    pub s3: S3Config,
}

impl ServiceConfig for OpsConfig {
    const SECTIONS: &'static [&'static str] = &["kafka", "s3"];
}

/// The operator commands (`autotag-ops …`, also `autotag …`).
#[derive(Debug, clap::Subcommand)]
pub enum OpsCommand {
    /// Upload GIF files to S3 and produce an upload event for each.
    Upload {
        /// Target bucket.
        #[arg(long)]
        bucket: String,
        /// Key prefix.
        #[arg(long, default_value = "")]
        prefix: String,
        /// Create the bucket first if it does not exist.
        #[arg(long)]
        create_bucket: bool,
        /// GIF files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print suggestions and dead letters until N uploads were answered.
    Watch {
        /// Number of distinct upload events to wait for.
        #[arg(long)]
        expect: usize,
        /// Give up after this many seconds (exit code 1).
        #[arg(long, default_value_t = 120)]
        timeout_secs: u64,
    },
}

/// Run an operator command; `Ok(false)` when `watch` timed out.
///
/// # Errors
/// A Kafka client the configuration does not allow (an unknown pass-through key, named), an
/// unreadable file, S3 or the broker refusing a request.
pub async fn run(cfg: &OpsConfig, cmd: OpsCommand) -> anyhow::Result<bool> {
    match cmd {
        OpsCommand::Upload { bucket, prefix, create_bucket, files } => {
            for e in upload(cfg, &bucket, &prefix, &files, create_bucket).await? {
                println!("{}", serde_json::to_string(&e)?);
            }
            Ok(true)
        }
        OpsCommand::Watch { expect, timeout_secs } => watch(cfg, expect, Duration::from_secs(timeout_secs)).await,
    }
}

/// Upload `files` to `s3://bucket/prefix<name>` and produce one upload event
/// for each. Returns the events sent.
///
/// # Errors
/// As [`run`].
pub async fn upload(
    cfg: &OpsConfig,
    bucket: &str,
    prefix: &str,
    files: &[PathBuf],
    create_bucket: bool,
) -> anyhow::Result<Vec<UploadEvent>> {
    // The producer first: a configuration it refuses fails before anything is uploaded.
    let producer: FutureProducer = kafka::create_producer(&cfg.kafka).context("creating the Kafka producer")?;
    let s3 = s3::create_client(&cfg.s3).await;
    if create_bucket {
        match s3.create_bucket().bucket(bucket).send().await {
            Ok(_) => {}
            Err(e) => {
                let text = aws_sdk_s3::error::DisplayErrorContext(&e).to_string();
                if !text.contains("BucketAlready") {
                    bail!("creating bucket {bucket}: {text}");
                }
            }
        }
    }
    let mut events = Vec::new();
    for f in files {
        let name = f.file_name().and_then(|n| n.to_str()).with_context(|| format!("bad file name {}", f.display()))?;
        let body = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
        let key = format!("{prefix}{name}");
        s3.put_object()
            .bucket(bucket)
            .key(&key)
            .content_type("image/gif")
            .body(body.into())
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("{}", aws_sdk_s3::error::DisplayErrorContext(&e)))
            .with_context(|| format!("uploading s3://{bucket}/{key}"))?;
        let gif_id = name.trim_end_matches(".gif").to_owned();
        let ev = UploadEvent {
            schema_version: SCHEMA_VERSION,
            event_id: uuid::Uuid::new_v4().to_string(),
            gif_id,
            s3_uri: format!("s3://{bucket}/{key}"),
            uploaded_at: now_rfc3339(),
            existing_tags: None,
            source: None,
            backfill_run_id: None,
        };
        let payload = serde_json::to_vec(&ev)?;
        producer
            .send(
                FutureRecord::to(&cfg.kafka.topics.uploads).key(&ev.gif_id).payload(&payload),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| anyhow::anyhow!("producing upload event: {e}"))?;
        events.push(ev);
    }
    Ok(events)
}

/// Print suggestions and dead letters as they arrive, until `expect`
/// distinct upload events were answered or `timeout` passed.
///
/// # Errors
/// As [`run`].
pub async fn watch(cfg: &OpsConfig, expect: usize, timeout: Duration) -> anyhow::Result<bool> {
    let group = format!("autotag-watch-{}", uuid::Uuid::new_v4());
    let consumer: StreamConsumer =
        kafka::reader_config(&cfg.kafka, &group).create().context("creating the Kafka consumer")?;
    consumer.subscribe(&[&cfg.kafka.topics.suggestions, &cfg.kafka.topics.dead_letters])?;
    let started = Instant::now();
    let mut seen = HashSet::new();
    println!("{:<36}  {:<8}  {:>6}  suggestions / reason", "gif", "outcome", "frames");
    println!("{}", "-".repeat(100));
    while seen.len() < expect {
        let left = timeout.saturating_sub(started.elapsed());
        if left.is_zero() {
            eprintln!("timed out after {timeout:?}: {} of {expect} answered", seen.len());
            return Ok(false);
        }
        let msg = match tokio::time::timeout(left, consumer.recv()).await {
            Ok(Ok(m)) => m,
            Ok(Err(e)) => {
                eprintln!("consumer error: {e}");
                continue;
            }
            Err(_) => continue,
        };
        let Some(payload) = msg.payload() else { continue };
        if msg.topic() == cfg.kafka.topics.suggestions {
            let s: Suggestion = serde_json::from_slice(payload)?;
            if !seen.insert(s.upload_event_id.clone()) {
                continue;
            }
            let tags: Vec<String> = s.tags.iter().map(|t| format!("{} ({:.2})", t.tag, t.score)).collect();
            let tags = if tags.is_empty() { "(no tag above threshold)".to_owned() } else { tags.join(", ") };
            println!("{:<36}  {:<8}  {:>6}  {}", s.gif_id, "tagged", s.frames_sampled, tags);
        } else {
            let d: DeadLetter = serde_json::from_slice(payload)?;
            let id = d.upload_event_id.clone().unwrap_or_else(|| format!("{}@{}", d.origin.partition, d.origin.offset));
            if !seen.insert(id) {
                continue;
            }
            let gif = d.gif_id.clone().unwrap_or_else(|| "(unreadable event)".into());
            println!("{:<36}  {:<8}  {:>6}  {}: {}", gif, "dead", "-", d.reason, d.message);
        }
    }
    Ok(true)
}
