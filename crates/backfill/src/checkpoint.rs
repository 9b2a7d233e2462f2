//! A run's checkpoint: what it enqueues (source, filters, identity rule), how far the listing is
//! acknowledged, and the counts up to there. Created when the run starts, advanced as events are
//! acknowledged (after every listing page, and every `checkpoint_interval` within one), written
//! atomically (temporary file + rename) so a crash leaves the previous one whole.
//!
//! **Promise**: `position` is the listing position up to which *every* object was skipped,
//! counted as failed, or acknowledged by the broker; a resumed run lists from just after it.
//! Objects after it may have been sent already: they are sent again under the same
//! `event_id` (at-least-once, deduplicable by id).
//!
//! Where it lives ([`Location`]): a file (default `<checkpoint_dir>/<run_id>.json`) or an S3
//! object (`--checkpoint s3://bucket/key`: a PUT replaces an object whole, so a reader sees the
//! old or the new checkpoint).

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};

use crate::source::SourceSpec;

/// Counts of a run, up to its checkpoint's position.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Objects the listing returned.
    pub listed: u64,
    /// Events acknowledged by the broker (a dry run: events it would send).
    pub enqueued: u64,
    /// Objects left out by the filters (suffix, modification time).
    pub skipped: u64,
    /// Objects no event could be made for (e.g. an empty gif id), each logged.
    pub failed: u64,
}

/// The checkpoint file's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    pub run_id: String,
    pub source: SourceSpec,
    /// The listing position everything up to which is done (an S3 key, a manifest line
    /// number); `None`: nothing yet.
    pub position: Option<String>,
    pub counts: Counts,
    /// The listing reached its end and every event was acknowledged.
    pub finished: bool,
    /// RFC 3339.
    pub started_at: String,
    pub updated_at: String,
}

impl Checkpoint {
    /// Read a checkpoint.
    ///
    /// # Errors
    /// The file cannot be read or is not a checkpoint.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading checkpoint {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{}: not a backfill checkpoint", path.display()))
    }

    /// Write it atomically to a file.
    ///
    /// # Errors
    /// The directory cannot be created or the file written.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let tmp = path.with_extension(format!("json.tmp{}", std::process::id()));
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
        Ok(())
    }
}

/// Where a checkpoint lives.
#[derive(Debug, Clone)]
pub enum Location {
    File(PathBuf),
    S3 { client: aws_sdk_s3::Client, bucket: String, key: String },
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(p) => write!(f, "{}", p.display()),
            Self::S3 { bucket, key, .. } => write!(f, "s3://{bucket}/{key}"),
        }
    }
}

impl Location {
    /// Where the checkpoint of `run_id` lives: `explicit` (a path or `s3://bucket/key`), else
    /// `<dir>/<run_id>.json`. `client` makes an S3 location.
    ///
    /// # Errors
    /// An `s3://` URI without a key.
    pub async fn of(
        explicit: Option<&str>,
        dir: &Path,
        run_id: &str,
        s3: &autotag_infra::s3::S3Config,
    ) -> anyhow::Result<Self> {
        match explicit {
            Some(p) if p.starts_with("s3://") => {
                let Some((bucket, key)) = autotag_contract::parse_s3_uri(p) else {
                    bail!("--checkpoint {p:?}: expected s3://bucket/key");
                };
                Ok(Self::S3 { client: autotag_infra::s3::create_client(s3).await, bucket, key })
            }
            Some(p) => Ok(Self::File(PathBuf::from(p))),
            None => Ok(Self::File(dir.join(format!("{run_id}.json")))),
        }
    }

    /// Read the checkpoint.
    ///
    /// # Errors
    /// It cannot be read or is not a checkpoint.
    pub async fn load(&self) -> anyhow::Result<Checkpoint> {
        match self {
            Self::File(p) => Checkpoint::load(p),
            Self::S3 { client, bucket, key } => {
                let bytes = autotag_infra::s3::get_object(client, bucket, key, 16 << 20)
                    .await
                    .with_context(|| format!("reading checkpoint {self}"))?;
                serde_json::from_slice(&bytes).with_context(|| format!("{self}: not a backfill checkpoint"))
            }
        }
    }

    /// Write the checkpoint whole (file: temporary + rename; S3: one PUT).
    ///
    /// # Errors
    /// The write failed.
    pub async fn save(&self, cp: &Checkpoint) -> anyhow::Result<()> {
        match self {
            Self::File(p) => cp.save(p),
            Self::S3 { client, bucket, key } => {
                client
                    .put_object()
                    .bucket(bucket)
                    .key(key)
                    .content_type("application/json")
                    .body(serde_json::to_vec_pretty(cp)?.into())
                    .send()
                    .await
                    .map_err(|e| anyhow::anyhow!("{}", aws_sdk_s3::error::DisplayErrorContext(&e)))
                    .with_context(|| format!("writing checkpoint {self}"))?;
                Ok(())
            }
        }
    }
}

/// The contiguous acknowledged prefix of a listing: objects are numbered in listing order and
/// finish (acknowledged, skipped, failed) in any order; the checkpoint may only advance over a
/// prefix that is entirely finished.
#[derive(Debug, Default)]
pub struct Watermark {
    next: u64,
    done: std::collections::BTreeMap<u64, (String, Outcome)>,
    /// The position and counts of the finished prefix.
    pub position: Option<String>,
    pub counts: Counts,
}

/// How one listed object finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Enqueued,
    Skipped,
    Failed,
}

impl Watermark {
    /// Continue from a checkpoint's position and counts.
    pub fn resume(position: Option<String>, counts: Counts) -> Self {
        Self { position, counts, ..Self::default() }
    }

    /// Object number `seq` (0-based in this process's listing order) at `position` finished.
    pub fn finish(&mut self, seq: u64, position: String, outcome: Outcome) {
        self.done.insert(seq, (position, outcome));
        while let Some((pos, outcome)) = self.done.remove(&self.next) {
            self.next += 1;
            self.position = Some(pos);
            self.counts.listed += 1;
            match outcome {
                Outcome::Enqueued => self.counts.enqueued += 1,
                Outcome::Skipped => self.counts.skipped += 1,
                Outcome::Failed => self.counts.failed += 1,
            }
        }
    }

    /// Objects finished beyond the prefix (waiting for an earlier one).
    pub fn pending(&self) -> usize {
        self.done.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watermark_advances_over_the_finished_prefix_only() {
        let mut w = Watermark::resume(Some("a".into()), Counts { listed: 1, enqueued: 1, ..Counts::default() });
        w.finish(1, "c".into(), Outcome::Enqueued);
        w.finish(2, "d".into(), Outcome::Skipped);
        assert_eq!(w.position.as_deref(), Some("a"), "object 0 is still in flight");
        assert_eq!(w.pending(), 2);
        w.finish(0, "b".into(), Outcome::Failed);
        assert_eq!(w.position.as_deref(), Some("d"));
        assert_eq!(w.counts, Counts { listed: 4, enqueued: 2, skipped: 1, failed: 1 });
        assert_eq!(w.pending(), 0);
    }

    #[test]
    fn a_checkpoint_round_trips_and_is_written_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cp").join("run-1.json");
        let c = Checkpoint {
            run_id: "run-1".into(),
            source: SourceSpec::S3 {
                uri: "s3://b/p/".into(),
                suffix: ".gif".into(),
                modified_after: None,
                modified_before: None,
                gif_id: crate::source::GifIdRule::Stem,
            },
            position: Some("p/x.gif".into()),
            counts: Counts { listed: 3, enqueued: 2, skipped: 1, failed: 0 },
            finished: false,
            started_at: "2026-12-06T00:00:00Z".into(),
            updated_at: "2026-12-06T00:00:01Z".into(),
        };
        c.save(&p).unwrap();
        assert_eq!(Checkpoint::load(&p).unwrap(), c);
        assert_eq!(std::fs::read_dir(p.parent().unwrap()).unwrap().count(), 1, "no temporary left");
    }
}
