//! The dead letter (topic `gif-uploads-dlq`, key = the original record's key;
//! `schemas/dead-letter.schema.json`), its [`Reason`] codes and the [`Stage`] that gave up.

use serde::{Deserialize, Serialize};

use crate::{SCHEMA_VERSION, ids, now_rfc3339};

/// Why a record was dead-lettered: one stable, machine-readable code per kind of permanent
/// failure. Every stage of every service uses this one enum; the dead-letter schema's `reason`
/// enum and the README's list hold exactly these codes (tests compare them).
///
/// Transient failures (S3 or broker down) have no code: they are retried, never dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The record is not a valid upload event (not JSON, wrong `schema_version`, empty ids,
    /// malformed `s3_uri` or `uploaded_at`, no payload).
    InvalidEvent,
    /// S3 says the object does not exist (404 / NoSuchKey).
    ObjectNotFound,
    /// S3 refused the request for this object with a 4xx other than 404, 401, 403, 408, 429.
    FetchRejected,
    /// Over a limit: the object's bytes, or the GIF's screen size, canvas pixels, frame count,
    /// decoded pixels or the decoder's memory limit.
    TooLarge,
    /// The object has zero bytes.
    EmptyObject,
    /// The object does not start with a GIF signature.
    NotAGif,
    /// The data ends before the GIF is complete.
    Truncated,
    /// A GIF with no frame (or no pixel) to show.
    NoFrames,
    /// Invalid LZW codes in a frame's image data.
    CorruptImageData,
    /// A frame's LZW minimum code size is outside 1..=11.
    InvalidLzwCodeSize,
    /// Before the first frame, a byte that starts no GIF block.
    InvalidBlock,
    /// A frame lies entirely outside the logical screen. No longer produced by the decoder
    /// (frames are clipped and the screen grows to the first frame, as in browsers); kept
    /// so that earlier dead letters still parse.
    FrameOutOfBounds,
    /// The decoder failed for a reason that is not the input's (it panicked: a bug).
    DecodeFailed,
    /// Decoding took longer than `pipeline.decode_timeout_ms`.
    Timeout,
    /// The forward pass failed twice.
    InferenceFailed,
}

impl Reason {
    /// Every code, in the order the schema and the README list them.
    pub const ALL: [Reason; 15] = [
        Reason::InvalidEvent,
        Reason::ObjectNotFound,
        Reason::FetchRejected,
        Reason::TooLarge,
        Reason::EmptyObject,
        Reason::NotAGif,
        Reason::Truncated,
        Reason::NoFrames,
        Reason::CorruptImageData,
        Reason::InvalidLzwCodeSize,
        Reason::InvalidBlock,
        Reason::FrameOutOfBounds,
        Reason::DecodeFailed,
        Reason::Timeout,
        Reason::InferenceFailed,
    ];

    /// The wire code (snake_case).
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::InvalidEvent => "invalid_event",
            Reason::ObjectNotFound => "object_not_found",
            Reason::FetchRejected => "fetch_rejected",
            Reason::TooLarge => "too_large",
            Reason::EmptyObject => "empty_object",
            Reason::NotAGif => "not_a_gif",
            Reason::Truncated => "truncated",
            Reason::NoFrames => "no_frames",
            Reason::CorruptImageData => "corrupt_image_data",
            Reason::InvalidLzwCodeSize => "invalid_lzw_code_size",
            Reason::InvalidBlock => "invalid_block",
            Reason::FrameOutOfBounds => "frame_out_of_bounds",
            Reason::DecodeFailed => "decode_failed",
            Reason::Timeout => "timeout",
            Reason::InferenceFailed => "inference_failed",
        }
    }

    /// The reason with wire code `code`, if it is one.
    pub fn from_code(code: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == code)
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The pipeline stage that gave up on an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Source,
    Fetch,
    Decode,
    Infer,
}

impl Stage {
    /// Every stage that emits dead letters, in pipeline order.
    pub const ALL: [Stage; 4] = [Stage::Source, Stage::Fetch, Stage::Decode, Stage::Infer];

    /// The wire code.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Source => "source",
            Stage::Fetch => "fetch",
            Stage::Decode => "decode",
            Stage::Infer => "infer",
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

/// A record the worker could not turn into a suggestion. Carries the original payload so it can
/// be replayed after a fix.
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
    /// A [`Reason`] code. Kept as text when read, so that a reader built before a new code
    /// was added still reads the record (the evolution rule in the crate docs).
    pub reason: String,
    /// Human-readable detail.
    pub message: String,
    /// The original payload as text when it is UTF-8.
    pub payload: Option<String>,
    /// The original payload, base64, when it is not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_base64: Option<String>,
    /// RFC 3339.
    pub failed_at: String,
    /// The backfill run of the upload event, when its payload names one (issue 15). Added
    /// without a schema version bump.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backfill_run_id: Option<String>,
}

impl DeadLetter {
    /// The dead letter for the record at `origin`; `event_id` is the uuid v5 of the origin.
    pub fn new(origin: RecordOrigin, payload: Option<&[u8]>, stage: Stage, reason: Reason, message: String) -> Self {
        use base64::Engine as _;
        let upload_ids: Option<UploadIds> = payload.and_then(|p| serde_json::from_slice(p).ok());
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
            event_id: ids::deterministic_id(&name),
            upload_event_id: upload_ids.as_ref().and_then(|i| i.event_id.clone()),
            gif_id: upload_ids.as_ref().and_then(|i| i.gif_id.clone()),
            backfill_run_id: upload_ids.and_then(|i| i.backfill_run_id),
            origin,
            stage,
            reason: reason.as_str().to_owned(),
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
    #[serde(default, deserialize_with = "lenient_string")]
    backfill_run_id: Option<String>,
}

fn lenient_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    Ok(v.as_str().filter(|s| !s.is_empty()).map(str::to_owned))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"schema_version":1,"event_id":"e1","gif_id":"g1","s3_uri":"s3://b/k/x.gif","uploaded_at":"2026-11-22T10:00:00Z"}"#;

    #[test]
    fn ids_are_deterministic() {
        let o = RecordOrigin { topic: "t".into(), partition: 1, offset: 5, key: None };
        let d1 = DeadLetter::new(o.clone(), Some(b"x"), Stage::Source, Reason::InvalidEvent, "m".into());
        let d2 = DeadLetter::new(o, Some(b"x"), Stage::Source, Reason::InvalidEvent, "m".into());
        assert_eq!(d1.event_id, d2.event_id);
    }

    #[test]
    fn dead_letter_keeps_payload_exactly() {
        let o = RecordOrigin { topic: "t".into(), partition: 0, offset: 1, key: Some("k".into()) };
        let d = DeadLetter::new(o.clone(), Some(&[0xff, 0x00, 0x01]), Stage::Source, Reason::InvalidEvent, "x".into());
        assert_eq!(d.payload, None);
        assert_eq!(d.payload_base64.as_deref(), Some("/wAB"));
        let d = DeadLetter::new(o, Some(GOOD.as_bytes()), Stage::Fetch, Reason::ObjectNotFound, "x".into());
        assert_eq!(d.upload_event_id.as_deref(), Some("e1"));
        assert_eq!(d.gif_id.as_deref(), Some("g1"));
        assert_eq!(d.payload.as_deref(), Some(GOOD));
        assert_eq!(d.reason, "object_not_found");
    }

    #[test]
    fn a_backfill_events_dead_letter_names_its_run() {
        let o = RecordOrigin { topic: "gif-backfill".into(), partition: 0, offset: 3, key: None };
        let payload = br#"{"event_id":"e","gif_id":"g","source":"backfill","backfill_run_id":"run-7"}"#;
        let d = DeadLetter::new(o.clone(), Some(payload), Stage::Fetch, Reason::ObjectNotFound, "x".into());
        assert_eq!(d.backfill_run_id.as_deref(), Some("run-7"));
        let v = serde_json::to_value(&d).unwrap();
        assert_eq!(v["backfill_run_id"], "run-7");
        let d = DeadLetter::new(o, Some(b"{\"event_id\":\"e\"}"), Stage::Fetch, Reason::ObjectNotFound, "x".into());
        assert!(serde_json::to_value(&d).unwrap().get("backfill_run_id").is_none(), "absent on live events");
    }

    #[test]
    fn reason_codes_round_trip_and_are_snake_case() {
        for r in Reason::ALL {
            assert_eq!(Reason::from_code(r.as_str()), Some(r));
            assert!(r.as_str().bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{r}");
        }
        assert_eq!(Reason::from_code("fetch_failed"), None);
    }
}
