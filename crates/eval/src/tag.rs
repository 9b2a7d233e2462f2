//! `autotag tag FILE_OR_S3_URI...`: tags local GIFs or `s3://` objects with the worker's
//! decoder, sampling, model and scoring ([`crate::tagger`]), without Kafka. The quickest way to
//! try the product.
//!
//! Prints a table, or with `--json` one line per input:
//! `{"input":"…","tags":[{"tag":"cat","score":0.93}],"frames_sampled":8,"frames_inferred":2}` or
//! `{"input":"…","error":{"reason":"<dead-letter reason>","message":"…"}}`. Every input gets
//! its line: an unreadable or undecodable GIF is an `error` line (reason `object_not_found`,
//! `not_a_gif`, …), and the command still succeeds; a model that cannot load or a bad S3
//! setup is an error of the command.

use std::io::Write as _;

use anyhow::Context as _;
use autotag_infra::s3::{self, FetchError};
use serde::Serialize;

use crate::config::EvalConfig;
use crate::tagger::{TagError, Tagged, Tagger};

/// Load the model of `cfg` into a [`Tagger`].
///
/// # Errors
/// The model cannot be loaded (missing files, checksum, device).
pub fn tagger(cfg: &EvalConfig, full_work: bool) -> anyhow::Result<Tagger> {
    let (backend, info) = autotag_model::load_torch(&cfg.model).context("loading the model")?;
    Ok(Tagger { backend, info, frames_per_gif: cfg.frames.per_gif, limits: cfg.limits.clone(), full_work })
}

/// The bytes of a local path or an `s3://bucket/key` object; a missing or unreadable input is
/// a [`TagError`] (its line), not an error of the command.
pub async fn read_input(input: &str, client: Option<&aws_sdk_s3::Client>, max_bytes: u64) -> Result<Vec<u8>, TagError> {
    if let Some((bucket, key)) = autotag_contract::parse_s3_uri(input) {
        let Some(client) = client else {
            return Err(TagError { reason: "fetch_failed".into(), message: "no S3 client".into() });
        };
        return s3::get_object(client, &bucket, &key, max_bytes).await.map_err(|e| {
            let reason = match &e {
                FetchError::NotFound { .. } => "object_not_found".to_owned(),
                other => other.reason().map_or("fetch_failed".to_owned(), |r| r.as_str().to_owned()),
            };
            TagError { reason, message: e.to_string() }
        });
    }
    let meta = std::fs::metadata(input)
        .map_err(|e| TagError { reason: "object_not_found".into(), message: format!("{input}: {e}") })?;
    if meta.len() > max_bytes {
        return Err(TagError {
            reason: "too_large".into(),
            message: format!("{input}: {} bytes > {max_bytes}", meta.len()),
        });
    }
    std::fs::read(input).map_err(|e| TagError { reason: "object_not_found".into(), message: format!("{input}: {e}") })
}

/// A tagged line of `--json`.
#[derive(Serialize)]
struct TaggedLine<'a> {
    input: &'a str,
    tags: &'a [autotag_contract::TagScore],
    frames_sampled: usize,
    frames_inferred: usize,
}

/// An error line of `--json`.
#[derive(Serialize)]
struct ErrorLine<'a> {
    input: &'a str,
    error: ErrorBody<'a>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    reason: &'a str,
    message: &'a str,
}

/// One output line of `--json`. Serialized from the types (not through a `Value`), so scores
/// print as the suggestions print them (`0.3464`, the f32's shortest form).
pub fn json_line(input: &str, result: &Result<Tagged, TagError>) -> String {
    let line = match result {
        Ok(t) => serde_json::to_string(&TaggedLine {
            input,
            tags: &t.tags,
            frames_sampled: t.frames_sampled,
            frames_inferred: t.frames_inferred,
        }),
        Err(e) => {
            serde_json::to_string(&ErrorLine { input, error: ErrorBody { reason: &e.reason, message: &e.message } })
        }
    };
    line.unwrap_or_default()
}

/// Run `autotag tag` over `inputs`, printing to stdout. Returns whether every input was tagged
/// (the command exits 0 either way once every input has its line).
///
/// # Errors
/// The model cannot be loaded; stdout is closed.
pub async fn run(cfg: &EvalConfig, inputs: &[String], as_json: bool) -> anyhow::Result<bool> {
    let tagger = tagger(cfg, false)?;
    let client =
        if inputs.iter().any(|i| i.starts_with("s3://")) { Some(s3::create_client(&cfg.s3).await) } else { None };
    let mut out = std::io::stdout().lock();
    if !as_json {
        writeln!(out, "{:<40} {:>6} {:>8}  tags", "input", "frames", "inferred")?;
    }
    let mut all = true;
    for input in inputs {
        let result = match read_input(input, client.as_ref(), cfg.s3.max_object_bytes).await {
            Ok(bytes) => tagger.tag(&bytes),
            Err(e) => Err(e),
        };
        all &= result.is_ok();
        if as_json {
            writeln!(out, "{}", json_line(input, &result))?;
        } else {
            match &result {
                Ok(t) => {
                    let tags: Vec<String> = t.tags.iter().map(|s| format!("{} {:.2}", s.tag, s.score)).collect();
                    let tags = if tags.is_empty() { "(none above the threshold)".to_owned() } else { tags.join(", ") };
                    writeln!(out, "{:<40} {:>6} {:>8}  {tags}", input, t.frames_sampled, t.frames_inferred)?;
                }
                Err(e) => writeln!(out, "{:<40} {:>6} {:>8}  error {}: {}", input, "-", "-", e.reason, e.message)?,
            }
        }
    }
    Ok(all)
}
