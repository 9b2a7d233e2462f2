//! Operator commands around the worker: upload GIFs and announce them
//! (`autotag upload`), and watch the outputs (`autotag watch`). The demo uses
//! both; so can anyone poking at a running deployment.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::config::Config;
use crate::contract::{DeadLetter, SCHEMA_VERSION, Suggestion, UploadEvent, now_rfc3339};
use crate::pipeline::fetch;

/// Upload `files` to `s3://bucket/prefix<name>` and produce one upload event
/// for each. Returns the events sent.
pub async fn upload(
    cfg: &Config,
    bucket: &str,
    prefix: &str,
    files: &[PathBuf],
    create_bucket: bool,
) -> anyhow::Result<Vec<UploadEvent>> {
    let s3 = fetch::create_client(&cfg.s3).await;
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
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &cfg.kafka.brokers)
        .set("enable.idempotence", "true")
        .create()
        .context("creating producer")?;
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
pub async fn watch(cfg: &Config, expect: usize, timeout: Duration) -> anyhow::Result<bool> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &cfg.kafka.brokers)
        .set("group.id", format!("autotag-watch-{}", uuid::Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .create()
        .context("creating consumer")?;
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
