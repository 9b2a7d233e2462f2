//! The relabel job's inputs as facts: the three streams' records parsed, validated and
//! normalised into what the rule ([`crate::rule`]) folds into a GIF's state.
//!
//! **Owns** the conversion from the contract's records (upload or backfill event, suggestion,
//! feedback record) to [`Fact`]s: tags pass the contract's one normaliser
//! ([`autotag_contract::normalize_tag`]), timestamps become [`OrderKey`]s, scores are the f64
//! of their JSON text ([`autotag_contract::TagScore::score_as_printed`]).
//!
//! **Errors**: a record that cannot be a fact is an [`InputError`] with a stable
//! [`InputError::reason`]; the job skips it and counts it (it cannot change any label).

use autotag_contract::{FeedbackAction, FeedbackRecord, SCHEMA_VERSION, Suggestion, UploadEvent, normalize_tag};
use chrono::DateTime;
use serde::{Deserialize, Serialize};

/// The order of a stream's records: (instant, `event_id`). "Newest" and "latest" in the rule
/// mean the greatest key, so two records with the same instant are ordered by `event_id` and
/// the result does not depend on arrival order (issue 13, "Order").
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct OrderKey {
    /// Seconds since the Unix epoch, UTC.
    pub secs: i64,
    /// Nanoseconds within the second (RFC 3339 fractions beyond 9 digits are cut).
    pub nanos: u32,
    pub event_id: String,
}

impl OrderKey {
    /// The key of a record stamped `at` (RFC 3339, any offset) with id `event_id`.
    ///
    /// # Errors
    /// [`InputError::Timestamp`] when `at` is not RFC 3339.
    pub fn parse(field: &'static str, at: &str, event_id: &str) -> Result<Self, InputError> {
        let t = DateTime::parse_from_rfc3339(at).map_err(|_| InputError::Timestamp { field, value: clip(at) })?;
        Ok(Self { secs: t.timestamp(), nanos: t.timestamp_subsec_nanos(), event_id: event_id.to_owned() })
    }
}

/// An upload (live or backfill) event of a GIF: its original labels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UploadFact {
    /// By (`uploaded_at`, `event_id`).
    pub key: OrderKey,
    pub s3_uri: String,
    /// The uploader's tags, normalised, without repeats, in their first order.
    pub existing_tags: Vec<String>,
}

/// A suggestion of the model for a GIF.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuggestionFact {
    /// By (`produced_at`, `event_id`).
    pub key: OrderKey,
    /// `name@version` of the model.
    pub model_version: String,
    /// The suggested tags (normalised) and their scores.
    pub tags: Vec<(String, f64)>,
    /// The model's scores of the upload's original labels (`existing_tag_scores`), normalised.
    pub existing_tag_scores: Vec<(String, f64)>,
}

/// A user's feedback on one tag of a GIF.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedbackFact {
    /// The authenticated client: with `key.event_id` the event's identity.
    pub client: String,
    pub user_id: String,
    pub tag: String,
    pub action: FeedbackAction,
    /// By (`occurred_at`, `event_id`).
    pub key: OrderKey,
}

/// One input of the job, for the GIF `gif_id`.
#[derive(Debug, Clone, PartialEq)]
pub struct Fact {
    pub gif_id: String,
    pub kind: FactKind,
}

/// What an input says.
#[derive(Debug, Clone, PartialEq)]
pub enum FactKind {
    Upload(UploadFact),
    Suggestion(SuggestionFact),
    Feedback(FeedbackFact),
}

/// Why a record is not an input of the rule.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InputError {
    #[error("not JSON of the {kind} shape: {message}")]
    Json { kind: &'static str, message: String },
    #[error("unsupported schema_version {0} (this job reads {SCHEMA_VERSION})")]
    Version(u32),
    #[error("field `{0}` is empty")]
    Empty(&'static str),
    #[error("`{field}` is not an RFC 3339 timestamp: {value:?}")]
    Timestamp { field: &'static str, value: String },
    #[error("score {score} of tag {tag:?} is not in [0, 1]")]
    Score { tag: String, score: f64 },
}

impl InputError {
    /// A stable code for logs and the skipped-inputs metric.
    pub fn reason(&self) -> &'static str {
        match self {
            InputError::Json { .. } => "invalid_json",
            InputError::Version(_) => "unsupported_version",
            InputError::Empty(_) => "empty_field",
            InputError::Timestamp { .. } => "invalid_timestamp",
            InputError::Score { .. } => "invalid_score",
        }
    }
}

/// An upload or backfill event (both have the upload schema) as a fact.
///
/// # Errors
/// Not the upload shape, another `schema_version`, an empty id, a bad `uploaded_at`.
pub fn upload(payload: &[u8]) -> Result<Fact, InputError> {
    let e: UploadEvent = parse(payload, "upload event")?;
    check(e.schema_version, [("event_id", &e.event_id), ("gif_id", &e.gif_id), ("s3_uri", &e.s3_uri)])?;
    let mut tags: Vec<String> = Vec::new();
    for t in e.existing_tags.iter().flatten().map(|t| normalize_tag(t)) {
        if !t.is_empty() && !tags.contains(&t) {
            tags.push(t);
        }
    }
    Ok(Fact {
        kind: FactKind::Upload(UploadFact {
            key: OrderKey::parse("uploaded_at", &e.uploaded_at, &e.event_id)?,
            s3_uri: e.s3_uri,
            existing_tags: tags,
        }),
        gif_id: e.gif_id,
    })
}

/// A suggestion as a fact.
///
/// # Errors
/// Not the suggestion shape, another `schema_version`, an empty id, a bad `produced_at`, a
/// score outside `[0, 1]`.
pub fn suggestion(payload: &[u8]) -> Result<Fact, InputError> {
    let s: Suggestion = parse(payload, "suggestion")?;
    check(s.schema_version, [("event_id", &s.event_id), ("gif_id", &s.gif_id), ("model.version", &s.model.version)])?;
    let scores = |v: &[autotag_contract::TagScore]| -> Result<Vec<(String, f64)>, InputError> {
        v.iter()
            .map(|t| {
                let score = t.score_as_printed();
                if !(0.0..=1.0).contains(&score) {
                    return Err(InputError::Score { tag: clip(&t.tag), score });
                }
                Ok((normalize_tag(&t.tag), score))
            })
            .filter(|r| r.as_ref().map_or(true, |(t, _)| !t.is_empty()))
            .collect()
    };
    Ok(Fact {
        kind: FactKind::Suggestion(SuggestionFact {
            key: OrderKey::parse("produced_at", &s.produced_at, &s.event_id)?,
            model_version: format!("{}@{}", s.model.name, s.model.version),
            tags: scores(&s.tags)?,
            existing_tag_scores: scores(s.existing_tag_scores.as_deref().unwrap_or_default())?,
        }),
        gif_id: s.gif_id,
    })
}

/// A feedback record (the feedback API's output) as a fact.
///
/// # Errors
/// Not the record shape, another `schema_version`, an empty id, client, user or tag, a bad
/// `occurred_at`.
pub fn feedback(payload: &[u8]) -> Result<Fact, InputError> {
    let r: FeedbackRecord = parse(payload, "feedback record")?;
    let e = r.event;
    let tag = normalize_tag(&e.tag);
    check(
        e.schema_version,
        [("event_id", &e.event_id), ("gif_id", &e.gif_id), ("user_id", &e.user_id), ("client", &r.client)],
    )?;
    if tag.is_empty() {
        return Err(InputError::Empty("tag"));
    }
    Ok(Fact {
        kind: FactKind::Feedback(FeedbackFact {
            key: OrderKey::parse("occurred_at", &e.occurred_at, &e.event_id)?,
            client: r.client,
            user_id: e.user_id,
            tag,
            action: e.action,
        }),
        gif_id: e.gif_id,
    })
}

fn parse<T: serde::de::DeserializeOwned>(payload: &[u8], kind: &'static str) -> Result<T, InputError> {
    serde_json::from_slice(payload).map_err(|e| InputError::Json { kind, message: e.to_string() })
}

fn check<const N: usize>(version: u32, fields: [(&'static str, &String); N]) -> Result<(), InputError> {
    if version != SCHEMA_VERSION {
        return Err(InputError::Version(version));
    }
    match fields.iter().find(|(_, v)| v.trim().is_empty()) {
        Some((name, _)) => Err(InputError::Empty(name)),
        None => Ok(()),
    }
}

/// At most 64 characters of an offending value, for an error message.
fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_tags_are_normalised_once_each() {
        let f = upload(br#"{"schema_version":1,"event_id":"u1","gif_id":"g1","s3_uri":"s3://b/k","uploaded_at":"2026-12-01T10:00:00+01:00","existing_tags":[" Cat","cat","DOG",""]}"#).unwrap();
        assert_eq!(f.gif_id, "g1");
        let FactKind::Upload(u) = f.kind else { panic!("an upload") };
        assert_eq!(u.existing_tags, ["cat", "dog"]);
        assert_eq!(u.key, OrderKey { secs: 1_796_115_600, nanos: 0, event_id: "u1".into() });
    }

    #[test]
    fn suggestion_scores_are_the_printed_values() {
        let f = suggestion(br#"{"schema_version":1,"event_id":"s1","upload_event_id":"u1","gif_id":"g1","model":{"name":"m","version":"2"},"tags":[{"tag":"Cat","score":0.7}],"frames_sampled":8,"source":"live","produced_at":"2026-12-01T10:00:00.5Z","existing_tag_scores":[{"tag":"dog","score":0.3}]}"#).unwrap();
        let FactKind::Suggestion(s) = f.kind else { panic!("a suggestion") };
        assert_eq!(s.tags, [("cat".to_owned(), 0.7)]);
        assert_eq!(s.existing_tag_scores, [("dog".to_owned(), 0.3)]);
        assert_eq!(s.model_version, "m@2");
        assert_eq!(s.key.nanos, 500_000_000);
    }

    #[test]
    fn bad_records_name_their_problem() {
        type Parser = fn(&[u8]) -> Result<Fact, InputError>;
        let cases: [(&[u8], Parser, &str); 6] = [
            (b"{", upload, "invalid_json"),
            (br#"{"schema_version":2,"event_id":"u1","gif_id":"g1","s3_uri":"s3://b/k","uploaded_at":"2026-12-01T10:00:00Z"}"#, upload, "unsupported_version"),
            (br#"{"schema_version":1,"event_id":" ","gif_id":"g1","s3_uri":"s3://b/k","uploaded_at":"2026-12-01T10:00:00Z"}"#, upload, "empty_field"),
            (br#"{"schema_version":1,"event_id":"u1","gif_id":"g1","s3_uri":"s3://b/k","uploaded_at":"yesterday"}"#, upload, "invalid_timestamp"),
            (br#"{"schema_version":1,"event_id":"s1","upload_event_id":"u1","gif_id":"g1","model":{"name":"m","version":"2"},"tags":[{"tag":"cat","score":1.5}],"frames_sampled":8,"source":"live","produced_at":"2026-12-01T10:00:00Z"}"#, suggestion, "invalid_score"),
            (br#"{"schema_version":1,"event_id":"f1","gif_id":"g1","tag":"  ","action":"add","user_id":"u","occurred_at":"2026-12-01T10:00:00Z","client":"web","received_at":"2026-12-01T10:00:00Z"}"#, feedback, "empty_field"),
        ];
        for (payload, f, reason) in cases {
            let e = f(payload).expect_err(&String::from_utf8_lossy(payload));
            assert_eq!(e.reason(), reason, "{e}");
        }
    }
}
