//! `autotag relabel export --to s3://bucket/prefix/`: a snapshot of every GIF's current
//! training labels, as a dataset for retraining.
//!
//! **Reads** the labels topic (`relabel.topics.labels`) from the beginning of each partition to
//! the end it sees (librdkafka's partition EOF; Tansu's ListOffsets LATEST is wrong,
//! environment.md), one partition at a time, keeping the latest record per `gif_id` (it does
//! not rely on the topic's compaction).
//!
//! **Writes**, under the destination prefix:
//! - `shards/p<partition>-o<end offset>-<n>.jsonl`: one line per GIF,
//!   `{"gif_id","s3_uri","labels":[{"tag","score","provenance"}],"model_version"}`, sorted by
//!   `gif_id`, at most `--shard-gifs` lines each. The key names the partition and the offset the
//!   snapshot read it to, so the same snapshot always writes the same keys: a re-run after a
//!   crash overwrites instead of duplicating;
//! - `manifest.json`, **last**: the dataset id (a UUID v5 of the source offsets: the same
//!   snapshot, the same id), `created_at`, the source topic and its end offsets, the rule's
//!   thresholds, counts (GIFs, labels, shards), the label distribution (by provenance, by tag),
//!   and the list of shards with their GIF counts. A reader that starts from the manifest never
//!   sees a half dataset.
//!
//! **Limits**: memory holds one partition's latest records at a time (about 300 bytes a GIF);
//! shards of an older snapshot under the same prefix are not deleted (the manifest lists the
//! current ones).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use autotag_contract::{Label, Provenance, TrainingLabels, now_rfc3339};

use rdkafka::consumer::{BaseConsumer, Consumer};

use rdkafka::Offset;
use rdkafka::message::Message;
use serde::Serialize;

use crate::config::RelabelConfig;
use crate::eof::{self, ReaderContext};

/// Tags listed one by one in the manifest's distribution; the rest are summed in `other_tags`.
pub const MAX_TAGS_LISTED: usize = 1_000;

/// One line of a shard.
#[derive(Debug, Serialize)]
struct Line<'a> {
    gif_id: &'a str,
    s3_uri: &'a str,
    labels: &'a [Label],
    model_version: &'a str,
}

/// A shard as the manifest lists it.
#[derive(Debug, Clone, Serialize)]
pub struct Shard {
    pub key: String,
    pub gifs: u64,
}

/// `manifest.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    pub schema_version: u32,
    pub dataset_id: String,
    pub created_at: String,
    pub source: Source,
    pub thresholds: Thresholds,
    pub counts: Counts,
    pub label_distribution: Distribution,
    pub shards: Vec<Shard>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Source {
    pub topic: String,
    /// Partition → the offset the snapshot read to (exclusive).
    pub offsets: BTreeMap<i32, i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Thresholds {
    pub keep: f64,
    pub add: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    pub gifs: u64,
    pub labels: u64,
    pub shards: u64,
    /// Records of the topic that are not training labels (skipped).
    pub unreadable_records: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Distribution {
    /// Labels per provenance (every provenance listed, zeros included).
    pub by_provenance: BTreeMap<String, u64>,
    /// Labels per tag, the [`MAX_TAGS_LISTED`] most frequent.
    pub by_tag: BTreeMap<String, u64>,
    /// Labels of the tags beyond those.
    pub other_tags: u64,
}

/// `s3://bucket/prefix/` → (bucket, prefix ending in `/` or empty).
///
/// # Errors
/// Not an `s3://bucket[/prefix]` URI.
pub fn parse_destination(to: &str) -> anyhow::Result<(String, String)> {
    let rest = to.strip_prefix("s3://").with_context(|| format!("--to {to:?} is not an s3:// URI"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() || bucket.contains(char::is_whitespace) {
        bail!("--to {to:?} names no bucket");
    }
    let prefix = if prefix.is_empty() || prefix.ends_with('/') { prefix.to_owned() } else { format!("{prefix}/") };
    Ok((bucket.to_owned(), prefix))
}

/// The dataset id of a snapshot: a UUID v5 of the topic and its end offsets.
pub fn dataset_id(topic: &str, offsets: &BTreeMap<i32, i64>) -> String {
    let text: Vec<String> = offsets.iter().map(|(p, o)| format!("{p}:{o}")).collect();
    uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_URL,
        format!("autotag-relabel-export/{topic}/{}", text.join(",")).as_bytes(),
    )
    .to_string()
}

/// Export the labels topic to `to` (module docs). Returns the manifest written.
///
/// # Errors
/// The destination, the broker (the topic missing, no end within 60 s of silence), S3.
pub async fn export(cfg: &RelabelConfig, to: &str, shard_gifs: usize) -> anyhow::Result<Manifest> {
    let (bucket, prefix) = parse_destination(to)?;
    let shard_gifs = shard_gifs.max(1);
    let topic = cfg.relabel.topics.labels.clone();
    let reader = eof::reader(&cfg.kafka, &format!("{}-export", cfg.relabel.group_id))?;
    let md = reader.fetch_metadata(Some(&topic), Duration::from_secs(10))?;
    let partitions = md
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map_or(0, |t| t.partitions().len() as i32);
    if partitions == 0 {
        bail!("topic `{topic}` does not exist");
    }
    let s3 = autotag_infra::s3::create_client(&cfg.s3).await;
    let mut offsets = BTreeMap::new();
    let mut shards = Vec::new();
    let mut counts = Counts::default();
    let mut by_provenance: BTreeMap<String, u64> = Provenance::ALL.iter().map(|p| (provenance_name(*p), 0)).collect();
    let mut by_tag: BTreeMap<String, u64> = BTreeMap::new();
    let started = Instant::now();
    for p in 0..partitions {
        let (latest, end, unreadable) = read_partition(&reader, &topic, p)?;
        offsets.insert(p, end);
        counts.unreadable_records += unreadable;
        let gifs: Vec<&TrainingLabels> = latest.values().collect();
        for (i, chunk) in gifs.chunks(shard_gifs).enumerate() {
            let mut body = Vec::new();
            for r in chunk {
                let line =
                    Line { gif_id: &r.gif_id, s3_uri: &r.s3_uri, labels: &r.labels, model_version: &r.model_version };
                serde_json::to_writer(&mut body, &line)?;
                body.push(b'\n');
                counts.labels += r.labels.len() as u64;
                for l in &r.labels {
                    *by_provenance.entry(provenance_name(l.provenance)).or_default() += 1;
                    *by_tag.entry(l.tag.clone()).or_default() += 1;
                }
            }
            let key = format!("{prefix}shards/p{p:05}-o{end:012}-{i:05}.jsonl");
            put(&s3, &bucket, &key, body, "application/x-ndjson").await?;
            shards.push(Shard { key, gifs: chunk.len() as u64 });
        }
        counts.gifs += gifs.len() as u64;
        tracing::info!(partition = p, end, gifs = gifs.len(), "partition exported");
    }
    counts.shards = shards.len() as u64;
    let mut tags: Vec<(String, u64)> = by_tag.into_iter().collect();
    tags.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let other_tags = tags.iter().skip(MAX_TAGS_LISTED).map(|(_, n)| n).sum();
    tags.truncate(MAX_TAGS_LISTED);
    let manifest = Manifest {
        schema_version: 1,
        dataset_id: dataset_id(&topic, &offsets),
        created_at: now_rfc3339(),
        source: Source { topic, offsets },
        thresholds: Thresholds { keep: cfg.relabel.keep_threshold, add: cfg.relabel.add_threshold },
        counts,
        label_distribution: Distribution { by_provenance, by_tag: tags.into_iter().collect(), other_tags },
        shards,
    };
    let body = serde_json::to_vec_pretty(&manifest)?;
    put(&s3, &bucket, &format!("{prefix}manifest.json"), body, "application/json").await?;
    tracing::info!(
        dataset_id = %manifest.dataset_id, gifs = manifest.counts.gifs, shards = manifest.counts.shards,
        elapsed_ms = started.elapsed().as_millis() as u64, "export written"
    );
    Ok(manifest)
}

fn provenance_name(p: Provenance) -> String {
    serde_json::to_value(p).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

/// The latest record per GIF of `topic`'s partition `p` up to the end seen, that end, and the
/// count of records that are not training labels.
fn read_partition(
    reader: &BaseConsumer<ReaderContext>,
    topic: &str,
    p: i32,
) -> anyhow::Result<(BTreeMap<String, TrainingLabels>, i64, u64)> {
    let mut latest = BTreeMap::new();
    let mut end = 0;
    let mut unreadable = 0;
    eof::read_to_end(reader, topic, &[(p, Offset::Beginning)], Duration::from_secs(60), |m| {
        end = m.offset() + 1;
        match serde_json::from_slice::<TrainingLabels>(m.payload().unwrap_or_default()) {
            Ok(r) => {
                latest.insert(r.gif_id.clone(), r);
            }
            Err(e) => {
                unreadable += 1;
                tracing::warn!(partition = p, offset = m.offset(), error = %e, "not a training-labels record; skipped");
            }
        }
        anyhow::Ok(())
    })?;
    Ok((latest, end, unreadable))
}

async fn put(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    body: Vec<u8>,
    content_type: &str,
) -> anyhow::Result<()> {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .content_type(content_type)
        .body(body.into())
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{}", aws_sdk_s3::error::DisplayErrorContext(&e)))
        .with_context(|| format!("writing s3://{bucket}/{key}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_and_ids() {
        assert_eq!(parse_destination("s3://b/ds/v1").unwrap(), ("b".into(), "ds/v1/".into()));
        assert_eq!(parse_destination("s3://b/ds/").unwrap(), ("b".into(), "ds/".into()));
        assert_eq!(parse_destination("s3://b").unwrap(), ("b".into(), String::new()));
        assert!(parse_destination("/tmp/x").is_err());
        assert!(parse_destination("s3:///x").is_err());
        let a = BTreeMap::from([(0, 10), (1, 0)]);
        assert_eq!(dataset_id("t", &a), dataset_id("t", &a.clone()), "the same snapshot, the same id");
        assert_ne!(dataset_id("t", &a), dataset_id("t", &BTreeMap::from([(0, 11), (1, 0)])));
    }
}
