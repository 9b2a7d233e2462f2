//! An S3 Inventory report as a source (`--inventory s3://…/manifest.json`): listing billions of
//! keys is what Inventory exists for. The report's `manifest.json` names its data files (CSV,
//! gzip) and their columns (`fileSchema`); each file is downloaded to a temporary file (memory
//! stays bounded whatever its size), then read record by record. Keys are URL-encoded in the CSV
//! (form encoding: `+` is a space, `%2B` a plus; AWS S3 User Guide, "Amazon S3 Inventory").
//!
//! Positions are `<file index>:<record number>`, zero-padded so they sort in listing order; a
//! resumed run skips what its checkpoint covers.
//!
//! **Limits**: CSV reports only (ORC and Parquet are refused naming the format); the data files
//! are read from the bucket that holds `manifest.json`.

use std::io::Write as _;

use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::source::{Entry, Filters};

/// `manifest.json` of an inventory report (the fields this reader needs).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    source_bucket: String,
    file_format: String,
    file_schema: String,
    files: Vec<DataFile>,
}

#[derive(Debug, Deserialize)]
struct DataFile {
    key: String,
}

/// Column indices of the fields used.
#[derive(Debug, Clone, Copy)]
struct Columns {
    bucket: Option<usize>,
    key: usize,
    last_modified: Option<usize>,
}

/// Reads an inventory report page by page.
pub struct InventoryLister {
    client: aws_sdk_s3::Client,
    manifest_uri: String,
    filters: Filters,
    page_size: usize,
    /// (file index, record number) the checkpoint covers.
    skip: Option<(usize, u64)>,
    state: Option<Open>,
}

struct Open {
    bucket: String,
    source_bucket: String,
    files: Vec<String>,
    columns: Columns,
    file: usize,
    record: u64,
    reader: Option<csv::Reader<flate2::read::GzDecoder<std::fs::File>>>,
    _tmp: Option<tempfile::NamedTempFile>,
}

/// `"000003:000000001234"` → (3, 1234).
fn parse_position(p: &str) -> anyhow::Result<(usize, u64)> {
    let (f, r) = p.split_once(':').with_context(|| format!("checkpoint position {p:?} is not file:record"))?;
    Ok((f.parse()?, r.parse()?))
}

/// A form-URL-encoded key decoded (`+` → space, then `%XX`).
pub fn decode_key(raw: &str) -> Option<String> {
    let plus = raw.replace('+', " ");
    percent_encoding::percent_decode_str(&plus).decode_utf8().ok().map(|s| s.into_owned())
}

impl InventoryLister {
    pub fn new(
        client: aws_sdk_s3::Client,
        manifest_uri: &str,
        filters: Filters,
        position: Option<String>,
        page_size: usize,
    ) -> anyhow::Result<Self> {
        if autotag_contract::parse_s3_uri(manifest_uri).is_none() {
            bail!("--inventory {manifest_uri:?}: expected s3://bucket/…/manifest.json");
        }
        let skip = position.as_deref().map(parse_position).transpose()?;
        Ok(Self { client, manifest_uri: manifest_uri.to_owned(), filters, page_size, skip, state: None })
    }

    async fn open(&mut self) -> anyhow::Result<()> {
        let (bucket, key) = autotag_contract::parse_s3_uri(&self.manifest_uri).context("inventory URI")?;
        let bytes = self
            .client
            .get_object()
            .bucket(&bucket)
            .key(&key)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("{}", aws_sdk_s3::error::DisplayErrorContext(&e)))
            .with_context(|| format!("reading {}", self.manifest_uri))?
            .body
            .collect()
            .await
            .with_context(|| format!("reading {}", self.manifest_uri))?
            .into_bytes();
        let m: Manifest = serde_json::from_slice(&bytes)
            .with_context(|| format!("{}: not an S3 Inventory manifest", self.manifest_uri))?;
        if !m.file_format.eq_ignore_ascii_case("CSV") {
            bail!("{}: inventory format {} is not supported (CSV only)", self.manifest_uri, m.file_format);
        }
        let names: Vec<String> = m.file_schema.split(',').map(|c| c.trim().to_ascii_lowercase()).collect();
        let find = |n: &str| names.iter().position(|c| c == n);
        let columns = Columns {
            bucket: find("bucket"),
            key: find("key").with_context(|| format!("{}: fileSchema has no Key column", self.manifest_uri))?,
            last_modified: find("lastmodifieddate"),
        };
        let file = self.skip.map_or(0, |(f, _)| f);
        self.state = Some(Open {
            bucket,
            source_bucket: m.source_bucket,
            files: m.files.into_iter().map(|f| f.key).collect(),
            columns,
            file,
            record: 0,
            reader: None,
            _tmp: None,
        });
        Ok(())
    }

    /// The next page of `(position, entry)`; `None` at the end.
    ///
    /// # Errors
    /// The manifest or a data file cannot be read.
    pub async fn next_page(&mut self) -> anyhow::Result<Option<Vec<(String, Entry)>>> {
        if self.state.is_none() {
            self.open().await?;
        }
        let client = self.client.clone();
        let skip = self.skip;
        let st = self.state.as_mut().context("inventory state")?;
        let mut page = Vec::new();
        while page.len() < self.page_size {
            if st.file >= st.files.len() {
                break;
            }
            if st.reader.is_none() {
                let key = &st.files[st.file];
                let mut tmp = tempfile::NamedTempFile::new().context("a temporary file for an inventory data file")?;
                let mut body = client
                    .get_object()
                    .bucket(&st.bucket)
                    .key(key)
                    .send()
                    .await
                    .map_err(|e| anyhow::anyhow!("{}", aws_sdk_s3::error::DisplayErrorContext(&e)))
                    .with_context(|| format!("reading s3://{}/{key}", st.bucket))?
                    .body;
                while let Some(chunk) =
                    body.try_next().await.with_context(|| format!("reading s3://{}/{key}", st.bucket))?
                {
                    tmp.write_all(&chunk)?;
                }
                tmp.flush()?;
                let f = tmp.reopen()?;
                st.reader = Some(
                    csv::ReaderBuilder::new()
                        .has_headers(false)
                        .flexible(true)
                        .from_reader(flate2::read::GzDecoder::new(f)),
                );
                st._tmp = Some(tmp);
                st.record = 0;
            }
            let reader = st.reader.as_mut().context("reader")?;
            let mut rec = csv::StringRecord::new();
            let more = reader.read_record(&mut rec).with_context(|| format!("reading {}", st.files[st.file]))?;
            if !more {
                st.file += 1;
                st.reader = None;
                st._tmp = None;
                continue;
            }
            st.record += 1;
            // Records the checkpoint covers were counted before.
            if skip.is_some_and(|(f, r)| st.file == f && st.record <= r) {
                continue;
            }
            let position = format!("{:06}:{:012}", st.file, st.record);
            page.push((position, entry(&rec, st.columns, &st.source_bucket, &self.filters)));
        }
        Ok(if page.is_empty() { None } else { Some(page) })
    }
}

fn entry(rec: &csv::StringRecord, c: Columns, source_bucket: &str, filters: &Filters) -> Entry {
    let Some(raw) = rec.get(c.key) else { return Entry::Failed(format!("inventory record without a key: {rec:?}")) };
    let Some(key) = decode_key(raw) else {
        return Entry::Failed(format!("inventory key {raw:?} is not URL-encoded UTF-8"));
    };
    let bucket = c.bucket.and_then(|i| rec.get(i)).filter(|b| !b.is_empty()).unwrap_or(source_bucket);
    let modified = c
        .last_modified
        .and_then(|i| rec.get(i))
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc));
    filters.entry(bucket, &key, modified)
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_are_form_decoded() {
        assert_eq!(super::decode_key("a/b+c%2Bd.gif").as_deref(), Some("a/b c+d.gif"));
        assert_eq!(super::decode_key("caf%C3%A9.gif").as_deref(), Some("café.gif"));
        assert_eq!(super::decode_key("bad%FF.gif"), None);
        assert_eq!(super::parse_position("000003:000000001234").unwrap(), (3, 1234));
    }
}
