//! The upload event (topic `gif-uploads`, key `gif_id`; `schemas/upload-event.schema.json`) and
//! its validation.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{Reason, SCHEMA_VERSION};

/// A GIF upload (topic `gif-uploads`, key `gif_id`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UploadEvent {
    pub schema_version: u32,
    /// Unique per upload event; suggestions and dead letters refer to it.
    pub event_id: String,
    pub gif_id: String,
    /// `s3://bucket/key`.
    pub s3_uri: String,
    /// RFC 3339.
    pub uploaded_at: String,
    /// Tags the uploader gave, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub existing_tags: Option<Vec<String>>,
    /// `backfill` on a replay of the catalogue (topic `gif-backfill`); absent or `live` on a
    /// live upload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<crate::Source>,
    /// The backfill run that enqueued the event (required with `source: backfill`): with the
    /// object, what the event's id is derived from ([`crate::ids::backfill_event_id`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backfill_run_id: Option<String>,
}

/// An upload event that passed validation, with its parsed parts.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidUpload {
    pub event: UploadEvent,
    pub bucket: String,
    pub key: String,
    pub uploaded_at: DateTime<Utc>,
}

/// Why an upload event was rejected. Always dead-lettered as [`Reason::InvalidEvent`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ContractError {
    #[error("payload is not valid JSON for an upload event: {0}")]
    Json(String),
    #[error("unsupported schema_version {0} (this worker reads {SCHEMA_VERSION})")]
    Version(u32),
    #[error("field `{0}` is empty")]
    Empty(&'static str),
    #[error("s3_uri `{0}` is not of the form s3://bucket/key")]
    S3Uri(String),
    #[error("uploaded_at `{0}` is not an RFC 3339 timestamp")]
    Timestamp(String),
    #[error("record has no payload")]
    NoPayload,
}

impl ContractError {
    /// Dead-letter reason.
    pub fn reason(&self) -> Reason {
        Reason::InvalidEvent
    }
}

/// Parse and validate an upload event payload.
///
/// # Errors
/// [`ContractError`] naming what is wrong: not JSON of the event's shape, another
/// `schema_version`, an empty `event_id`/`gif_id`, a malformed `s3_uri` or `uploaded_at`.
pub fn parse_upload(payload: Option<&[u8]>) -> Result<ValidUpload, ContractError> {
    let payload = payload.ok_or(ContractError::NoPayload)?;
    let event: UploadEvent = serde_json::from_slice(payload).map_err(|e| ContractError::Json(e.to_string()))?;
    if event.schema_version != SCHEMA_VERSION {
        return Err(ContractError::Version(event.schema_version));
    }
    if event.event_id.trim().is_empty() {
        return Err(ContractError::Empty("event_id"));
    }
    if event.gif_id.trim().is_empty() {
        return Err(ContractError::Empty("gif_id"));
    }
    let (bucket, key) = parse_s3_uri(&event.s3_uri).ok_or_else(|| ContractError::S3Uri(event.s3_uri.clone()))?;
    let uploaded_at = DateTime::parse_from_rfc3339(&event.uploaded_at)
        .map_err(|_| ContractError::Timestamp(event.uploaded_at.clone()))?
        .with_timezone(&Utc);
    Ok(ValidUpload { bucket, key, uploaded_at, event })
}

/// `s3://bucket/key/with/slashes` → (`bucket`, `key/with/slashes`); `None` when either part is
/// empty or the bucket holds whitespace.
pub fn parse_s3_uri(uri: &str) -> Option<(String, String)> {
    let rest = uri.strip_prefix("s3://")?;
    let (bucket, key) = rest.split_once('/')?;
    if bucket.is_empty() || key.is_empty() || bucket.contains(char::is_whitespace) {
        return None;
    }
    Some((bucket.to_owned(), key.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn good() -> String {
        r#"{"schema_version":1,"event_id":"e1","gif_id":"g1","s3_uri":"s3://b/k/x.gif","uploaded_at":"2026-11-22T10:00:00Z","existing_tags":["a"],"future_field":1}"#.into()
    }

    #[test]
    fn valid_event_parses_and_ignores_unknown_fields() {
        let v = parse_upload(Some(good().as_bytes())).unwrap();
        assert_eq!(v.bucket, "b");
        assert_eq!(v.key, "k/x.gif");
        assert_eq!(v.event.existing_tags, Some(vec!["a".to_owned()]));
    }

    #[test]
    fn invalid_events_are_rejected_with_a_reason() {
        let cases = [
            "not json",
            r#"{"schema_version":2,"event_id":"e","gif_id":"g","s3_uri":"s3://b/k","uploaded_at":"2026-11-22T10:00:00Z"}"#,
            r#"{"schema_version":1,"event_id":"","gif_id":"g","s3_uri":"s3://b/k","uploaded_at":"2026-11-22T10:00:00Z"}"#,
            r#"{"schema_version":1,"event_id":"e","gif_id":"g","s3_uri":"http://b/k","uploaded_at":"2026-11-22T10:00:00Z"}"#,
            r#"{"schema_version":1,"event_id":"e","gif_id":"g","s3_uri":"s3://b/","uploaded_at":"2026-11-22T10:00:00Z"}"#,
            r#"{"schema_version":1,"event_id":"e","gif_id":"g","s3_uri":"s3://b/k","uploaded_at":"yesterday"}"#,
            r#"{"schema_version":1,"event_id":"e","s3_uri":"s3://b/k","uploaded_at":"2026-11-22T10:00:00Z"}"#,
        ];
        for c in cases {
            let e = parse_upload(Some(c.as_bytes())).expect_err(c);
            assert_eq!(e.reason(), Reason::InvalidEvent);
        }
        assert_eq!(parse_upload(None), Err(ContractError::NoPayload));
    }
}
