//! The event contract: what autotag reads and writes on Kafka.
//!
//! The JSON Schemas in `schemas/` are the published contract; these types are
//! the code's side of it, and the tests validate the code's own output against
//! those files so the two cannot drift apart.
//!
//! Version rule: `schema_version` is bumped only for incompatible changes.
//! Readers ignore unknown fields (forward compatibility); the worker rejects
//! an upload event whose `schema_version` it does not know rather than guess.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

/// The only schema version this build reads and writes.
pub const SCHEMA_VERSION: u32 = 1;

/// Namespace for deterministic ids (uuid v5), so that a re-emitted output
/// after a crash carries the same `event_id` as the first emission.
const ID_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6a7f_1c2e_8d3b_4e5f_9a0b_1c2d_3e4f_5a6b);

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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub existing_tags: Option<Vec<String>>,
}

/// An upload event that passed validation, with its parsed parts.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidUpload {
    pub event: UploadEvent,
    pub bucket: String,
    pub key: String,
    pub uploaded_at: DateTime<Utc>,
}

/// Why an upload event was rejected. Always dead-lettered as `invalid_event`.
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
    /// Dead-letter reason code.
    pub fn reason(&self) -> &'static str {
        "invalid_event"
    }
}

/// Parse and validate an upload event payload.
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

/// `s3://bucket/key/with/slashes` → (`bucket`, `key/with/slashes`).
pub fn parse_s3_uri(uri: &str) -> Option<(String, String)> {
    let rest = uri.strip_prefix("s3://")?;
    let (bucket, key) = rest.split_once('/')?;
    if bucket.is_empty() || key.is_empty() || bucket.contains(char::is_whitespace) {
        return None;
    }
    Some((bucket.to_owned(), key.to_owned()))
}

/// Model identity inside a suggestion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelRef {
    pub name: String,
    pub version: String,
}

/// One suggested tag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TagScore {
    pub tag: String,
    pub score: f32,
}

/// Where an upload came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Live,
    Backfill,
}

/// Tag suggestions for one GIF (topic `gif-tag-suggestions`, key `gif_id`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Suggestion {
    pub schema_version: u32,
    /// Deterministic: the same upload event and model give the same id, so a
    /// duplicate emitted after a crash is recognisable as such.
    pub event_id: String,
    pub upload_event_id: String,
    pub gif_id: String,
    pub model: ModelRef,
    /// Highest score first.
    pub tags: Vec<TagScore>,
    pub frames_sampled: usize,
    pub source: Source,
    pub produced_at: String,
}

impl Suggestion {
    pub fn new(
        upload: &UploadEvent,
        model: ModelRef,
        tags: Vec<TagScore>,
        frames_sampled: usize,
        source: Source,
    ) -> Self {
        let name = format!("suggestion:{}:{}:{}", upload.event_id, model.name, model.version);
        Self {
            schema_version: SCHEMA_VERSION,
            event_id: uuid::Uuid::new_v5(&ID_NAMESPACE, name.as_bytes()).to_string(),
            upload_event_id: upload.event_id.clone(),
            gif_id: upload.gif_id.clone(),
            model,
            tags,
            frames_sampled,
            source,
            produced_at: now_rfc3339(),
        }
    }
}

/// Where a dead-lettered record was read from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordOrigin {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// The pipeline stage that gave up on an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Source,
    Fetch,
    Decode,
    Infer,
    Publish,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Source => "source",
            Stage::Fetch => "fetch",
            Stage::Decode => "decode",
            Stage::Infer => "infer",
            Stage::Publish => "publish",
        }
    }
}

/// A record the worker could not turn into a suggestion (topic
/// `gif-uploads-dlq`, key = the original key). Carries the original payload so
/// it can be replayed after a fix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub schema_version: u32,
    /// Deterministic from the origin, so a re-emission is recognisable.
    pub event_id: String,
    /// The upload event's id when the payload was readable enough to have one.
    pub upload_event_id: Option<String>,
    pub gif_id: Option<String>,
    pub origin: RecordOrigin,
    pub stage: Stage,
    /// Stable machine-readable code (`invalid_event`, `object_not_found`,
    /// `too_large`, `not_a_gif`, `truncated`, …).
    pub reason: String,
    /// Human-readable detail.
    pub message: String,
    /// The original payload as text when it is UTF-8.
    pub payload: Option<String>,
    /// The original payload, base64, when it is not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_base64: Option<String>,
    pub failed_at: String,
}

impl DeadLetter {
    pub fn new(origin: RecordOrigin, payload: Option<&[u8]>, stage: Stage, reason: &str, message: String) -> Self {
        use base64::Engine as _;
        let ids: Option<UploadIds> = payload.and_then(|p| serde_json::from_slice(p).ok());
        let (text, b64) = match payload {
            None => (None, None),
            Some(p) => match std::str::from_utf8(p) {
                Ok(s) => (Some(s.to_owned()), None),
                Err(_) => (None, Some(base64::engine::general_purpose::STANDARD.encode(p))),
            },
        };
        let name = format!("dead-letter:{}:{}:{}", origin.topic, origin.partition, origin.offset);
        Self {
            schema_version: SCHEMA_VERSION,
            event_id: uuid::Uuid::new_v5(&ID_NAMESPACE, name.as_bytes()).to_string(),
            upload_event_id: ids.as_ref().and_then(|i| i.event_id.clone()),
            gif_id: ids.and_then(|i| i.gif_id),
            origin,
            stage,
            reason: reason.to_owned(),
            message,
            payload: text,
            payload_base64: b64,
            failed_at: now_rfc3339(),
        }
    }
}

/// Best-effort ids from a payload that may not be a valid event.
#[derive(Deserialize)]
struct UploadIds {
    #[serde(default, deserialize_with = "lenient_string")]
    event_id: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    gif_id: Option<String>,
}

fn lenient_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    Ok(v.as_str().filter(|s| !s.is_empty()).map(str::to_owned))
}

/// Current time, RFC 3339 with milliseconds, UTC.
pub fn now_rfc3339() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> String {
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
            assert_eq!(e.reason(), "invalid_event");
        }
        assert_eq!(parse_upload(None), Err(ContractError::NoPayload));
    }

    #[test]
    fn ids_are_deterministic() {
        let v = parse_upload(Some(good().as_bytes())).unwrap();
        let m = ModelRef { name: "m".into(), version: "1".into() };
        let a = Suggestion::new(&v.event, m.clone(), vec![], 1, Source::Live);
        let b = Suggestion::new(&v.event, m, vec![], 1, Source::Live);
        assert_eq!(a.event_id, b.event_id);
        let o = RecordOrigin { topic: "t".into(), partition: 1, offset: 5, key: None };
        let d1 = DeadLetter::new(o.clone(), Some(b"x"), Stage::Source, "invalid_event", "m".into());
        let d2 = DeadLetter::new(o, Some(b"x"), Stage::Source, "invalid_event", "m".into());
        assert_eq!(d1.event_id, d2.event_id);
    }

    #[test]
    fn dead_letter_keeps_payload_exactly() {
        let o = RecordOrigin { topic: "t".into(), partition: 0, offset: 1, key: Some("k".into()) };
        let d = DeadLetter::new(o.clone(), Some(&[0xff, 0x00, 0x01]), Stage::Source, "invalid_event", "x".into());
        assert_eq!(d.payload, None);
        assert_eq!(d.payload_base64.as_deref(), Some("/wAB"));
        let d = DeadLetter::new(o, Some(good().as_bytes()), Stage::Fetch, "object_not_found", "x".into());
        assert_eq!(d.upload_event_id.as_deref(), Some("e1"));
        assert_eq!(d.gif_id.as_deref(), Some("g1"));
        assert_eq!(d.payload.as_deref(), Some(good().as_str()));
    }
}
