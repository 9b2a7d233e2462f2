//! Validation of feedback events: the request schema, then the checks that depend on
//! configuration, then tag normalisation.
//!
//! **Owns** the path from untrusted JSON to a [`FeedbackEvent`] fit for the topic, shared by the
//! API and `autotag feedback import`, and the error items of a 400
//! (`{"index":i,"field":"/tag","message":"…"}`).
//!
//! **Promises**: an event passes only if it is valid under `schemas/feedback-event.schema.json`
//! (compiled into the binary: the file is the contract), has no id longer than `max_id_chars`,
//! a tag of 1..=`max_tag_chars` characters after [`normalize_tag`] and no control characters,
//! and an `occurred_at` that is RFC 3339 and at most `max_future_skew` ahead. Every failing
//! field of every item is reported, not just the first, up to [`MAX_ERRORS`] items per request
//! (the rest are counted).
//!
//! **Limits**: JSON nesting deeper than serde_json's limit (128) is refused by the parser
//! before anything here runs; sizes are bounded by the caller (body size, event count).

use std::collections::HashMap;
use std::time::Duration;

use autotag_contract::{FeedbackEvent, normalize_tag};
use chrono::{DateTime, Utc};
use jsonschema::error::ValidationErrorKind;
use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;

/// The request schema, the contract's file.
pub const EVENT_SCHEMA: &str = include_str!("../../../schemas/feedback-event.schema.json");

/// One reason a request (or one of its events) is refused, as the 400 body lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// Position of the event in the request (0 for a single-object body; the line number in
    /// `autotag feedback import`); absent when the error is about the request as a whole.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// JSON Pointer to the offending field within the event (`/tag`), `""` for the whole event.
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(index: Option<usize>, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { index, field: field.into(), message: message.into() }
    }
}

/// The hard ceiling on `max_id_chars` and `max_tag_chars`, and the schemas' `maxLength` of every
/// id, the user and the tag (`schemas/feedback-event.schema.json`): configuration may go lower,
/// never higher, so that the largest valid record stays small ([`largest_record_bytes`]).
pub const MAX_CHARS_CEILING: usize = 256;

/// The longest `occurred_at` the schemas allow: `2026-12-01T10:00:00.123456789+01:00`.
pub const MAX_OCCURRED_AT_CHARS: usize = 35;

/// An upper bound, in bytes, of the largest feedback record (key and JSON value) the service can
/// write under `limits`: every id at `max_id_chars` and the tag at `max_tag_chars`, 4 bytes a
/// character (UTF-8; control characters are refused, so no `\u00XX` escapes), plus the fixed
/// fields and 512 bytes of names and punctuation. The service refuses to start when this exceeds
/// the producer's `message.max.bytes`, so a valid event can never be refused by the producer
/// for its size.
pub fn largest_record_bytes(limits: &Limits) -> usize {
    let ids = 5 * limits.max_id_chars + limits.max_tag_chars;
    let key = limits.max_id_chars;
    4 * (ids + key) + MAX_OCCURRED_AT_CHARS + 64 /* client */ + 30 /* received_at */ + 512
}

/// The longest JSON text of one event that is parsed at all (64 KiB): the largest valid event,
/// every character written as a `\uXXXX` escape (6 bytes), is under 10 KiB at the ceilings,
/// which leaves room for any whitespace a client may indent with. A longer element is refused
/// unparsed, so one element's `Value` stays small.
pub const MAX_EVENT_TEXT_BYTES: usize = 64 * 1024;

/// Most error items a refused request lists (a 400's body, an import line's report); the rest
/// are counted in one last item.
pub const MAX_ERRORS: usize = 100;

/// The limits that depend on configuration (`[feedback]`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_tag_chars: usize,
    pub max_id_chars: usize,
    pub max_future_skew: Duration,
}

/// The compiled request schema plus the configured limits.
pub struct EventValidator {
    schema: jsonschema::Validator,
    limits: Limits,
}

impl std::fmt::Debug for EventValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventValidator").field("limits", &self.limits).finish_non_exhaustive()
    }
}

impl EventValidator {
    /// Compile the request schema.
    ///
    /// # Panics
    /// Never for the schema shipped in the repository (a test compiles it).
    pub fn new(limits: Limits) -> Self {
        #[allow(clippy::expect_used)]
        let schema: Value = serde_json::from_str(EVENT_SCHEMA).expect("schemas/feedback-event.schema.json is JSON");
        #[allow(clippy::expect_used)]
        let schema = jsonschema::validator_for(&schema).expect("schemas/feedback-event.schema.json is a valid schema");
        Self { schema, limits }
    }

    /// Validate one event (`index` is what its errors report) and return it with its tag
    /// normalised.
    ///
    /// # Errors
    /// Every failing field, as [`FieldError`]s carrying `index`.
    pub fn validate(&self, index: usize, value: &Value, now: DateTime<Utc>) -> Result<FeedbackEvent, Vec<FieldError>> {
        let at = Some(index);
        let mut errors = Vec::new();
        if value.get("client").is_some() {
            errors.push(FieldError::new(
                at,
                "/client",
                "`client` is set by the service from the token; a request must not carry it",
            ));
        }
        for e in self.schema.iter_errors(value) {
            match &e.kind {
                ValidationErrorKind::Required { property } => {
                    let name = property.as_str().unwrap_or_default();
                    errors.push(FieldError::new(
                        at,
                        format!("{}/{}", e.instance_path, pointer_token(name)),
                        "is required",
                    ));
                }
                ValidationErrorKind::AdditionalProperties { unexpected } => {
                    for name in unexpected.iter().filter(|n| n.as_str() != "client") {
                        errors.push(FieldError::new(
                            at,
                            format!("{}/{}", e.instance_path, pointer_token(name)),
                            "is not a known field",
                        ));
                    }
                }
                _ => errors.push(FieldError::new(at, e.instance_path.to_string(), short(&e.to_string()))),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut event: FeedbackEvent = serde_json::from_value(value.clone())
            .map_err(|e| vec![FieldError::new(at, "", format!("does not match the event's shape: {e}"))])?;
        let max_id = self.limits.max_id_chars;
        let ids = [
            ("/event_id", Some(&event.event_id)),
            ("/gif_id", Some(&event.gif_id)),
            ("/user_id", Some(&event.user_id)),
            ("/suggestion_event_id", event.suggestion_event_id.as_ref()),
            ("/model_version", event.model_version.as_ref()),
        ];
        for (field, id) in ids {
            let Some(id) = id else { continue };
            if id.chars().count() > max_id {
                errors.push(FieldError::new(at, field, format!("is longer than {max_id} characters")));
            } else if id.trim().is_empty() || id.chars().any(is_hidden) {
                errors.push(FieldError::new(at, field, "must not be blank or hold control or invisible characters"));
            }
        }
        let tag = normalize_tag(&event.tag);
        let tag_chars = tag.chars().count();
        if tag_chars == 0 {
            errors.push(FieldError::new(at, "/tag", "is blank"));
        } else if tag_chars > self.limits.max_tag_chars {
            errors.push(FieldError::new(
                at,
                "/tag",
                format!("is longer than {} characters after normalisation", self.limits.max_tag_chars),
            ));
        } else if tag.chars().any(is_hidden) {
            errors.push(FieldError::new(at, "/tag", "must not hold control or invisible characters"));
        }
        event.tag = tag;
        match DateTime::parse_from_rfc3339(&event.occurred_at) {
            Err(_) => errors.push(FieldError::new(at, "/occurred_at", "is not an RFC 3339 timestamp")),
            Ok(t) => {
                // A skew too large for the calendar means no limit (it used to overflow and
                // panic on every request).
                let limit = chrono::Duration::from_std(self.limits.max_future_skew)
                    .ok()
                    .and_then(|skew| now.checked_add_signed(skew));
                if limit.is_some_and(|limit| t.with_timezone(&Utc) > limit) {
                    errors.push(FieldError::new(
                        at,
                        "/occurred_at",
                        format!(
                            "is more than {} ms ahead of the server's clock",
                            self.limits.max_future_skew.as_millis()
                        ),
                    ));
                }
            }
        }
        if errors.is_empty() { Ok(event) } else { Err(errors) }
    }

    /// Validate a whole request, given as each event's raw JSON text: every event, then that no
    /// `event_id` repeats. All or nothing. An element longer than [`MAX_EVENT_TEXT_BYTES`] is
    /// refused without being parsed; the others become a `Value` one at a time, so the memory
    /// of validation is one event's, not the request's.
    ///
    /// # Errors
    /// Every error of every event, ordered by index.
    pub fn validate_all(
        &self,
        raw: &[Box<RawValue>],
        now: DateTime<Utc>,
    ) -> Result<Vec<FeedbackEvent>, Vec<FieldError>> {
        let mut events = Vec::with_capacity(raw.len());
        let mut errors = Vec::new();
        let mut first_index: HashMap<String, usize> = HashMap::new();
        let mut omitted = 0usize;
        for (i, text) in raw.iter().enumerate() {
            if text.get().len() > MAX_EVENT_TEXT_BYTES {
                errors.push(FieldError::new(
                    Some(i),
                    "",
                    format!("is {} bytes of JSON; an event is at most {MAX_EVENT_TEXT_BYTES}", text.get().len()),
                ));
                continue;
            }
            let v: Value = match serde_json::from_str(text.get()) {
                Ok(v) => v,
                Err(e) => {
                    errors.push(FieldError::new(Some(i), "", format!("is not valid JSON: {e}")));
                    continue;
                }
            };
            match self.validate(i, &v, now) {
                Ok(ev) => {
                    if let Some(first) = first_index.get(&ev.event_id) {
                        errors.push(FieldError::new(
                            Some(i),
                            "/event_id",
                            format!("repeats the event_id of item {first} in this request"),
                        ));
                    } else {
                        first_index.insert(ev.event_id.clone(), i);
                    }
                    events.push(ev);
                }
                Err(mut e) => errors.append(&mut e),
            }
            // Keep at most MAX_ERRORS items (a body of unknown properties could otherwise hold
            // ~100 000 of them per request), counting the rest.
            if errors.len() > MAX_ERRORS {
                omitted += errors.len() - MAX_ERRORS;
                errors.truncate(MAX_ERRORS);
            }
        }
        if omitted > 0 {
            errors.push(FieldError::new(
                None,
                "",
                format!("and {omitted} more errors (the first {MAX_ERRORS} are listed)"),
            ));
        }
        if errors.is_empty() { Ok(events) } else { Err(errors) }
    }
}

/// A control character, or an invisible formatting one that would make two tags or ids that
/// look the same differ (zero-width space and joiners, word joiner, byte-order mark) or reorder
/// how text is shown (the bidirectional embeddings, overrides and isolates, "Trojan Source",
/// CVE-2021-42574). Refused in tags and ids.
fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}' | '\u{180E}' | '\u{00AD}')
}

/// A property name as a JSON Pointer reference token (RFC 6901 §3: `~` → `~0`, `/` → `~1`), with
/// control characters escaped (`\n`), so that a client-chosen name cannot forge another path or
/// a line of the importer's output. Other characters stay as they are.
fn pointer_token(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            '~' => out.push_str("~0"),
            '/' => out.push_str("~1"),
            c if c.is_control() => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    out
}

/// A schema error's text without echoing a huge offending value back.
fn short(message: &str) -> String {
    const MAX: usize = 200;
    if message.len() <= MAX {
        return message.to_owned();
    }
    let mut end = MAX;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &message[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The schema's ceilings are the code's, and the largest record at the ceilings is small.
    #[test]
    fn schema_ceilings_match_the_code() {
        let schema: Value = serde_json::from_str(EVENT_SCHEMA).unwrap();
        for f in ["event_id", "gif_id", "user_id", "suggestion_event_id", "model_version", "tag"] {
            assert_eq!(schema["properties"][f]["maxLength"], MAX_CHARS_CEILING, "{f}");
        }
        assert_eq!(schema["properties"]["occurred_at"]["maxLength"], MAX_OCCURRED_AT_CHARS);
        let at_ceiling = Limits {
            max_tag_chars: MAX_CHARS_CEILING,
            max_id_chars: MAX_CHARS_CEILING,
            max_future_skew: Duration::ZERO,
        };
        assert!(largest_record_bytes(&at_ceiling) < 10_000, "{}", largest_record_bytes(&at_ceiling));
    }

    /// A megabyte of fraction digits is a 400 on `/occurred_at`, not a record too large to write.
    #[test]
    fn invisible_characters_a_huge_skew_and_pointer_tokens() {
        for (field, value) in [("/tag", "ca\u{200B}t"), ("/user_id", "u\u{202E}1"), ("/event_id", "\u{FEFF}e1")] {
            let mut e = good();
            e[&field[1..]] = value.into();
            assert_eq!(fields(&e), [field], "{value:?}");
        }
        let huge = EventValidator::new(Limits { max_tag_chars: 8, max_id_chars: 10, max_future_skew: Duration::MAX });
        assert!(huge.validate(0, &good(), now()).is_ok(), "no overflow panic");
        let mut e = good();
        e["a/b~c"] = 1.into();
        e["x\ny"] = 1.into();
        e["café's"] = 1.into();
        let mut got = fields(&e);
        got.sort();
        assert_eq!(got, ["/a~1b~0c", "/café's", "/x\\ny"]);
    }

    #[test]
    fn an_overlong_occurred_at_is_refused() {
        let v = validator();
        let mut e = good();
        e["occurred_at"] = format!("2026-11-29T10:00:00.{}Z", "1".repeat(1_000_000)).into();
        let errors = v.validate(0, &e, now()).unwrap_err();
        assert!(errors.iter().all(|x| x.field == "/occurred_at"), "{errors:?}");
        assert!(errors.iter().all(|x| x.message.len() <= 400), "no megabyte echoed back");
        e["occurred_at"] = "2026-11-29T10:00:00.1234567891Z".into();
        assert!(v.validate(0, &e, now()).is_err(), "10 fraction digits");
        e["occurred_at"] = "2026-11-29T10:00:00.123456789+01:00".into();
        assert!(v.validate(0, &e, now()).is_ok());
    }

    fn validator() -> EventValidator {
        EventValidator::new(Limits { max_tag_chars: 8, max_id_chars: 10, max_future_skew: Duration::from_secs(60) })
    }

    fn good() -> Value {
        json!({"schema_version":1,"event_id":"e1","gif_id":"g1","tag":"  Café ","action":"add","user_id":"u1",
               "occurred_at":"2026-11-29T10:00:00Z"})
    }

    fn raw(values: &[Value]) -> Vec<Box<RawValue>> {
        values.iter().map(|v| RawValue::from_string(v.to_string()).unwrap()).collect()
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-29T10:00:30Z").unwrap().with_timezone(&Utc)
    }

    fn fields(v: &Value) -> Vec<String> {
        match validator().validate(3, v, now()) {
            Ok(_) => vec![],
            Err(e) => {
                assert!(e.iter().all(|f| f.index == Some(3)));
                e.into_iter().map(|f| f.field).collect()
            }
        }
    }

    #[test]
    fn a_good_event_passes_with_its_tag_normalised() {
        let ev = validator().validate(0, &good(), now()).unwrap();
        assert_eq!(ev.tag, "café");
    }

    #[test]
    fn each_bad_field_is_named() {
        let with = |k: &str, v: Value| {
            let mut g = good();
            g[k] = v;
            g
        };
        let without = |k: &str| {
            let mut g = good();
            g.as_object_mut().unwrap().remove(k);
            g
        };
        assert_eq!(fields(&with("tag", json!(42))), ["/tag"], "a number where a string belongs");
        assert_eq!(fields(&with("action", json!("like"))), ["/action"]);
        assert_eq!(fields(&with("schema_version", json!(2))), ["/schema_version"]);
        assert_eq!(fields(&without("user_id")), ["/user_id"]);
        assert_eq!(fields(&with("client", json!("evil"))), ["/client"]);
        assert_eq!(fields(&with("colour", json!("red"))), ["/colour"]);
        assert_eq!(fields(&with("tag", json!("   "))), ["/tag"]);
        assert_eq!(fields(&with("tag", json!("ninechars"))), ["/tag"]);
        assert_eq!(fields(&with("tag", json!("  EIGHTCHR  "))), Vec::<String>::new(), "limit counts after trimming");
        assert_eq!(fields(&with("event_id", json!("elevenchars"))), ["/event_id"]);
        assert_eq!(fields(&with("gif_id", json!("a\u{0}b"))), ["/gif_id"]);
        assert_eq!(fields(&with("occurred_at", json!("yesterday"))), ["/occurred_at"]);
        assert_eq!(fields(&with("occurred_at", json!("2026-11-29T10:02:00Z"))), ["/occurred_at"], "too far ahead");
        assert_eq!(fields(&with("occurred_at", json!("2026-11-29T10:01:00Z"))), Vec::<String>::new());
        assert_eq!(fields(&json!("a string")), [""]);
        let two = fields(
            &with("action", json!(1))
                .as_object()
                .map(|o| {
                    let mut o = o.clone();
                    o.insert("gif_id".into(), json!(""));
                    Value::Object(o)
                })
                .unwrap(),
        );
        assert_eq!(two.len(), 2, "every failing field is reported: {two:?}");
    }

    #[test]
    fn a_request_is_all_or_nothing_and_event_ids_must_not_repeat() {
        let mut bad = good();
        bad["tag"] = json!(null);
        let mut other = good();
        other["event_id"] = json!("e2");
        let errs = validator().validate_all(&raw(&[good(), bad, other.clone(), good()]), now()).unwrap_err();
        let got: Vec<(Option<usize>, &str)> = errs.iter().map(|e| (e.index, e.field.as_str())).collect();
        assert_eq!(got, [(Some(1), "/tag"), (Some(3), "/event_id")]);
        assert_eq!(validator().validate_all(&raw(&[good(), other]), now()).unwrap().len(), 2);
        let big = RawValue::from_string(format!("{{{}}}", " ".repeat(MAX_EVENT_TEXT_BYTES))).unwrap();
        let errs = validator().validate_all(&[big], now()).unwrap_err();
        assert_eq!((errs.len(), errs[0].index, errs[0].field.as_str()), (1, Some(0), ""), "refused unparsed: {errs:?}");
        let mut wide = good();
        for i in 0..300 {
            wide[format!("p{i}")] = 1.into();
        }
        let errs = validator().validate_all(&raw(&[wide.clone(), wide]), now()).unwrap_err();
        assert_eq!(errs.len(), MAX_ERRORS + 1, "capped");
        assert_eq!(errs[MAX_ERRORS].message, format!("and 500 more errors (the first {MAX_ERRORS} are listed)"));
    }
}
