//! What a run enqueues: the objects under an S3 prefix (paginated ListObjectsV2, in key order),
//! the records of an S3 Inventory report ([`crate::inventory`]) or the lines of a manifest file,
//! each turned into an [`Entry`] with its listing position.
//!
//! **Promises**: positions grow in listing order (S3 returns keys in UTF-8 binary order; a
//! manifest's line numbers), so a run resumes by listing after its checkpoint's position
//! (`StartAfter`, or skipping lines). An object the filters leave out is [`Entry::Skipped`]; one
//! no event can be made for is [`Entry::Failed`] with the reason, never dropped silently.
//!
//! **Limits**: A listing request is retried 5 times
//! (0.5 s doubling) before the run stops; its checkpoint stays, so `--resume` continues.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

/// How an S3 object's `gif_id` is derived (`--gif-id`; kept in the checkpoint as that text).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum GifIdRule {
    /// `stem`: the key's file name without its extension (`uploads/2019/abc123.gif` → `abc123`).
    Stem,
    /// `key`: the whole key.
    Key,
    /// `meta:NAME`: the object's user metadata `NAME` (`x-amz-meta-NAME`), read with a
    /// HeadObject per object; an object without it is counted as failed.
    Meta(String),
}

impl std::str::FromStr for GifIdRule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "stem" => Ok(Self::Stem),
            "key" => Ok(Self::Key),
            m if m.starts_with("meta:") && m.len() > 5 => Ok(Self::Meta(m[5..].to_ascii_lowercase())),
            other => Err(format!("--gif-id {other:?}: expected stem, key or meta:NAME")),
        }
    }
}

impl TryFrom<String> for GifIdRule {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<GifIdRule> for String {
    fn from(r: GifIdRule) -> String {
        match r {
            GifIdRule::Stem => "stem".into(),
            GifIdRule::Key => "key".into(),
            GifIdRule::Meta(n) => format!("meta:{n}"),
        }
    }
}

impl GifIdRule {
    /// The gif id of `key`; `None` when it would be empty. A `meta:` rule gives the key here:
    /// the id is read from the object (see [`Item::meta`]).
    pub fn gif_id(&self, key: &str) -> Option<String> {
        let id = match self {
            Self::Key | Self::Meta(_) => key,
            Self::Stem => {
                let name = key.rsplit('/').next().unwrap_or(key);
                match name.rfind('.') {
                    Some(i) if i > 0 => &name[..i],
                    _ => name,
                }
            }
        };
        Some(id.to_owned()).filter(|s| !s.trim().is_empty())
    }
}

/// A run's source and filters, as its checkpoint keeps them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SourceSpec {
    /// Every object under `s3://bucket/prefix` whose key ends with `suffix` (ASCII
    /// case-insensitive; empty: all) and whose LastModified is in `[modified_after,
    /// modified_before)` (RFC 3339, each optional).
    S3 {
        uri: String,
        suffix: String,
        modified_after: Option<String>,
        modified_before: Option<String>,
        gif_id: GifIdRule,
    },
    /// A JSON-lines file of `{"gif_id","s3_uri"}` (optionally `"uploaded_at"`, RFC 3339; else
    /// the run's start time).
    Manifest { path: PathBuf },
    /// The objects of an S3 Inventory report (`manifest.json`'s URI), filtered as `S3`.
    Inventory {
        manifest: String,
        suffix: String,
        modified_after: Option<String>,
        modified_before: Option<String>,
        gif_id: GifIdRule,
    },
}

/// The filters and identity rule of a listing of S3 objects (a prefix or an inventory).
#[derive(Debug, Clone)]
pub struct Filters {
    suffix: String,
    after: Option<DateTime<Utc>>,
    before: Option<DateTime<Utc>>,
    gif_id: GifIdRule,
}

impl Filters {
    /// # Errors
    /// A time that is not RFC 3339.
    pub fn new(
        suffix: &str,
        after: &Option<String>,
        before: &Option<String>,
        gif_id: GifIdRule,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            suffix: suffix.to_ascii_lowercase(),
            after: parse_time("--modified-after", after)?,
            before: parse_time("--modified-before", before)?,
            gif_id,
        })
    }

    /// The entry of object `bucket`/`key`, last modified at `modified`.
    pub fn entry(&self, bucket: &str, key: &str, modified: Option<DateTime<Utc>>) -> Entry {
        if !key.to_ascii_lowercase().ends_with(&self.suffix) {
            return Entry::Skipped;
        }
        if self.after.is_some() || self.before.is_some() {
            let Some(m) = modified else { return Entry::Failed(format!("{key}: no LastModified to filter by")) };
            if self.after.is_some_and(|a| m < a) || self.before.is_some_and(|b| m >= b) {
                return Entry::Skipped;
            }
        }
        let Some(gif_id) = self.gif_id.gif_id(key) else {
            return Entry::Failed(format!("{key}: the gif id would be empty"));
        };
        Entry::Item(Item {
            gif_id,
            meta: match &self.gif_id {
                GifIdRule::Meta(name) => Some(name.clone()),
                _ => None,
            },
            s3_uri: format!("s3://{bucket}/{key}"),
            uploaded_at: rfc3339(modified.unwrap_or_else(Utc::now)),
        })
    }
}

/// One object ready to be enqueued.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub gif_id: String,
    /// The user-metadata name the gif id is to be read from (`--gif-id meta:NAME`); `gif_id` is
    /// then a placeholder.
    pub meta: Option<String>,
    pub s3_uri: String,
    /// RFC 3339, milliseconds, UTC.
    pub uploaded_at: String,
}

/// A listed object.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    Item(Item),
    /// Left out by the filters.
    Skipped,
    /// No event can be made for it; the reason is logged.
    Failed(String),
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn parse_time(flag: &str, v: &Option<String>) -> anyhow::Result<Option<DateTime<Utc>>> {
    v.as_deref()
        .map(|s| {
            DateTime::parse_from_rfc3339(s)
                .map(|t| t.with_timezone(&Utc))
                .with_context(|| format!("{flag} {s:?} is not an RFC 3339 time"))
        })
        .transpose()
}

/// Lists a source page by page.
pub enum Lister {
    S3(S3Lister),
    Manifest(ManifestLister),
    Inventory(Box<crate::inventory::InventoryLister>),
}

impl Lister {
    /// A lister of `spec` starting after `position` (a checkpoint's).
    ///
    /// # Errors
    /// A bad URI or time, an unreadable manifest.
    pub fn new(
        spec: &SourceSpec,
        position: Option<String>,
        client: Option<aws_sdk_s3::Client>,
        page_size: i32,
        run_started: DateTime<Utc>,
    ) -> anyhow::Result<Self> {
        match spec {
            SourceSpec::S3 { uri, suffix, modified_after, modified_before, gif_id } => {
                let Some((bucket, prefix)) = uri.strip_prefix("s3://").map(|r| r.split_once('/').unwrap_or((r, "")))
                else {
                    bail!("--from {uri:?}: expected s3://bucket/prefix/");
                };
                if bucket.is_empty() {
                    bail!("--from {uri:?}: no bucket");
                }
                let client = client.context("no S3 client")?;
                Ok(Self::S3(S3Lister {
                    client,
                    bucket: bucket.to_owned(),
                    prefix: prefix.to_owned(),
                    filters: Filters::new(suffix, modified_after, modified_before, gif_id.clone())?,
                    start_after: position,
                    token: None,
                    page_size,
                    done: false,
                }))
            }
            SourceSpec::Inventory { manifest, suffix, modified_after, modified_before, gif_id } => {
                let filters = Filters::new(suffix, modified_after, modified_before, gif_id.clone())?;
                let client = client.context("no S3 client")?;
                Ok(Self::Inventory(Box::new(crate::inventory::InventoryLister::new(
                    client,
                    manifest,
                    filters,
                    position,
                    page_size as usize,
                )?)))
            }
            SourceSpec::Manifest { path } => {
                let file = std::fs::File::open(path).with_context(|| format!("opening manifest {}", path.display()))?;
                let skip = match position {
                    Some(p) => {
                        p.parse::<u64>().with_context(|| format!("checkpoint position {p:?} is not a line number"))?
                    }
                    None => 0,
                };
                Ok(Self::Manifest(ManifestLister {
                    lines: std::io::BufRead::lines(std::io::BufReader::new(file)),
                    line: 0,
                    skip,
                    page_size: page_size as usize,
                    uploaded_at: rfc3339(run_started),
                }))
            }
        }
    }

    /// The next page of `(position, entry)`; `None` at the end.
    ///
    /// # Errors
    /// A listing request that failed 5 times; a manifest that cannot be read.
    pub async fn next_page(&mut self) -> anyhow::Result<Option<Vec<(String, Entry)>>> {
        match self {
            Self::S3(l) => l.next_page().await,
            Self::Manifest(l) => l.next_page(),
            Self::Inventory(l) => l.next_page().await,
        }
    }
}

/// An S3 prefix, paginated.
pub struct S3Lister {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
    filters: Filters,
    start_after: Option<String>,
    token: Option<String>,
    page_size: i32,
    done: bool,
}

impl S3Lister {
    async fn next_page(&mut self) -> anyhow::Result<Option<Vec<(String, Entry)>>> {
        if self.done {
            return Ok(None);
        }
        let mut delay = Duration::from_millis(500);
        let mut attempt = 0;
        let out = loop {
            attempt += 1;
            let req = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(&self.prefix)
                .max_keys(self.page_size)
                .set_continuation_token(self.token.clone())
                .set_start_after(if self.token.is_none() { self.start_after.clone() } else { None });
            match req.send().await {
                Ok(out) => break out,
                Err(e) if attempt < 5 => {
                    tracing::warn!(error = %aws_sdk_s3::error::DisplayErrorContext(&e), attempt, "listing failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(e) => {
                    return Err(anyhow::anyhow!("{}", aws_sdk_s3::error::DisplayErrorContext(&e)))
                        .with_context(|| format!("listing s3://{}/{}", self.bucket, self.prefix));
                }
            }
        };
        self.token = out.next_continuation_token().map(str::to_owned);
        self.done = !out.is_truncated().unwrap_or(false) || self.token.is_none();
        let page = out
            .contents()
            .iter()
            .filter_map(|o| {
                let key = o.key()?.to_owned();
                let modified = o.last_modified().and_then(|t| DateTime::from_timestamp(t.secs(), t.subsec_nanos()));
                Some((key.clone(), self.filters.entry(&self.bucket, &key, modified)))
            })
            .collect();
        Ok(Some(page))
    }
}

/// A manifest file's lines.
pub struct ManifestLister {
    lines: std::io::Lines<std::io::BufReader<std::fs::File>>,
    line: u64,
    skip: u64,
    page_size: usize,
    uploaded_at: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestLine {
    gif_id: String,
    s3_uri: String,
    #[serde(default)]
    uploaded_at: Option<String>,
}

impl ManifestLister {
    fn next_page(&mut self) -> anyhow::Result<Option<Vec<(String, Entry)>>> {
        let mut page = Vec::new();
        while let Some(line) = self.lines.next() {
            let line = line.context("reading the manifest")?;
            self.line += 1;
            if self.line <= self.skip {
                continue;
            }
            page.push((self.line.to_string(), self.entry(&line)));
            if page.len() >= self.page_size {
                break;
            }
        }
        Ok(if page.is_empty() { None } else { Some(page) })
    }

    fn entry(&self, line: &str) -> Entry {
        manifest_entry(line, self.line, &self.uploaded_at)
    }
}

/// One manifest line (number `n`) as an entry; `default_time` when it carries no `uploaded_at`.
fn manifest_entry(line: &str, n: u64, default_time: &str) -> Entry {
    if line.trim().is_empty() {
        return Entry::Skipped;
    }
    let l: ManifestLine = match serde_json::from_str(line) {
        Ok(l) => l,
        Err(e) => return Entry::Failed(format!("manifest line {n}: {e}")),
    };
    if l.gif_id.trim().is_empty() || autotag_contract::parse_s3_uri(&l.s3_uri).is_none() {
        return Entry::Failed(format!("manifest line {n}: empty gif_id or not an s3://bucket/key URI"));
    }
    let uploaded_at = match l.uploaded_at {
        None => default_time.to_owned(),
        Some(t) => match DateTime::parse_from_rfc3339(&t) {
            Ok(t) => rfc3339(t.with_timezone(&Utc)),
            Err(e) => return Entry::Failed(format!("manifest line {n}: uploaded_at {t:?}: {e}")),
        },
    };
    Entry::Item(Item { gif_id: l.gif_id, meta: None, s3_uri: l.s3_uri, uploaded_at })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gif_id_rules() {
        assert_eq!(GifIdRule::Stem.gif_id("uploads/2019/abc123.gif").as_deref(), Some("abc123"));
        assert_eq!(GifIdRule::Stem.gif_id("x/a.b.gif").as_deref(), Some("a.b"));
        assert_eq!(GifIdRule::Stem.gif_id("x/.hidden").as_deref(), Some(".hidden"));
        assert_eq!(GifIdRule::Stem.gif_id("x/").as_deref(), None);
        assert_eq!(GifIdRule::Key.gif_id("x/a.gif").as_deref(), Some("x/a.gif"));
        assert_eq!(
            "meta:Gif-Id".parse::<GifIdRule>(),
            Ok(GifIdRule::Meta("gif-id".into())),
            "S3 lower-cases metadata names"
        );
        assert_eq!(String::from(GifIdRule::Meta("gif-id".into())), "meta:gif-id");
        assert!("meta:".parse::<GifIdRule>().is_err());
        assert!("name".parse::<GifIdRule>().is_err());
    }

    #[test]
    fn a_manifest_resumes_after_its_line_and_reports_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.jsonl");
        std::fs::write(
            &p,
            "{\"gif_id\":\"a\",\"s3_uri\":\"s3://b/a.gif\"}\n\n{\"gif_id\":\"c\",\"s3_uri\":\"nope\"}\n{\"gif_id\":\"d\",\"s3_uri\":\"s3://b/d.gif\",\"uploaded_at\":\"2020-01-02T03:04:05+01:00\"}\n",
        )
        .unwrap();
        let spec = SourceSpec::Manifest { path: p };
        let t = DateTime::parse_from_rfc3339("2026-12-06T10:00:00Z").unwrap().with_timezone(&Utc);
        let mut l = Lister::new(&spec, None, None, 2, t).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let p1 = rt.block_on(l.next_page()).unwrap().unwrap();
        assert_eq!(p1.len(), 2);
        assert_eq!(p1[0].0, "1");
        assert_eq!(
            p1[0].1,
            Entry::Item(Item {
                gif_id: "a".into(),
                meta: None,
                s3_uri: "s3://b/a.gif".into(),
                uploaded_at: "2026-12-06T10:00:00.000Z".into()
            })
        );
        assert_eq!(p1[1].1, Entry::Skipped, "a blank line");
        let p2 = rt.block_on(l.next_page()).unwrap().unwrap();
        assert!(matches!(&p2[0].1, Entry::Failed(m) if m.contains("line 3")), "{p2:?}");
        assert!(matches!(&p2[1].1, Entry::Item(i) if i.uploaded_at == "2020-01-02T02:04:05.000Z"));
        assert!(rt.block_on(l.next_page()).unwrap().is_none());
        let mut resumed = Lister::new(&spec, Some("3".into()), None, 10, t).unwrap();
        let p = rt.block_on(resumed.next_page()).unwrap().unwrap();
        assert_eq!(p.iter().map(|e| e.0.as_str()).collect::<Vec<_>>(), ["4"]);
    }
}
