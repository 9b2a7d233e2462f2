//! Feedback events: what a user did with a suggested tag (seen, added, rejected).
//!
//! **Owns** the request event a client sends to the feedback API
//! (`schemas/feedback-event.schema.json`), the record the API writes to the feedback topic
//! (`schemas/feedback-record.schema.json`: the request event + `client` + `received_at`, key
//! `gif_id`), and the tag normalisation every service applies before comparing tags
//! ([`normalize_tag`]).
//!
//! **Identity**: a feedback event is identified by the pair (`client`, `event_id`). The topic is
//! at-least-once (a client retries a request that got a 503 or no answer, and part of the first
//! attempt may already be written), so every consumer of the topic must count a pair once.
//!
//! **Limits**: these are the shapes only; the limits that depend on configuration (id and tag
//! lengths, clock skew) are checked by the feedback service.

use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization as _;

/// What the user did with a suggested tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedbackAction {
    /// The suggestion was shown to the user.
    Seen,
    /// The user added the suggested tag to the GIF.
    Add,
    /// The user dismissed the suggested tag.
    Reject,
}

impl FeedbackAction {
    /// Every action, in schema order.
    pub const ALL: [FeedbackAction; 3] = [FeedbackAction::Seen, FeedbackAction::Add, FeedbackAction::Reject];

    /// The wire name (`seen`, `add`, `reject`).
    pub fn as_str(self) -> &'static str {
        match self {
            FeedbackAction::Seen => "seen",
            FeedbackAction::Add => "add",
            FeedbackAction::Reject => "reject",
        }
    }
}

/// One feedback event as a client sends it (`POST /v1/feedback`, one line of
/// `autotag feedback import`). `tag` is normalised by the service before it is written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedbackEvent {
    /// Always [`crate::SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Chosen by the client, unique per client; (`client`, `event_id`) identifies the event.
    pub event_id: String,
    pub gif_id: String,
    /// The suggested tag (normalised: trimmed, lower case, Unicode NFC).
    pub tag: String,
    pub action: FeedbackAction,
    /// The platform's user id (opaque).
    pub user_id: String,
    /// When the user acted, RFC 3339 (as the client saw it).
    pub occurred_at: String,
    /// The suggestion (`Suggestion::event_id`) the tag came from, when the client knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suggestion_event_id: Option<String>,
    /// The model version that suggested the tag, when the client knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_version: Option<String>,
}

/// One record of the feedback topic (key `gif_id`): the request event, the client the service
/// authenticated (from its tokens file, never from the body) and when the service received it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedbackRecord {
    #[serde(flatten)]
    pub event: FeedbackEvent,
    /// The authenticated client's name.
    pub client: String,
    /// When the service received the request, RFC 3339 UTC with milliseconds.
    pub received_at: String,
}

/// The canonical form of a tag: surrounding white space trimmed, lower case, Unicode NFC
/// (`"  Café\u{301} "` and `"CAFÉ"` both become `"café"` in its composed form). Idempotent.
pub fn normalize_tag(tag: &str) -> String {
    // NFC before and after lower-casing: lower-casing a composed character can yield a
    // decomposable sequence, and decomposed input lower-cases per code point.
    let composed: String = tag.trim().nfc().collect();
    composed.to_lowercase().nfc().collect::<String>().trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_trimmed_lower_cased_and_composed() {
        assert_eq!(normalize_tag("  Cat \n"), "cat");
        let decomposed = "Cafe\u{301}";
        let composed = "caf\u{e9}";
        assert_eq!(normalize_tag(decomposed), composed);
        assert_eq!(normalize_tag("CAF\u{c9}"), composed);
        assert_eq!(normalize_tag("\u{130}stanbul"), normalize_tag(&normalize_tag("\u{130}stanbul")));
        for t in ["Ünïcödé", " A\u{30a} ", "ΣΊΣΥΦΟΣ", "ß"] {
            let once = normalize_tag(t);
            assert_eq!(normalize_tag(&once), once, "idempotent on {t:?}");
        }
    }

    #[test]
    fn record_is_the_event_plus_client_and_received_at() {
        let ev = FeedbackEvent {
            schema_version: 1,
            event_id: "e1".into(),
            gif_id: "g1".into(),
            tag: "cat".into(),
            action: FeedbackAction::Add,
            user_id: "u1".into(),
            occurred_at: "2026-11-29T10:00:00Z".into(),
            suggestion_event_id: None,
            model_version: Some("m1".into()),
        };
        let rec = FeedbackRecord { event: ev, client: "web".into(), received_at: "2026-11-29T10:00:01.000Z".into() };
        let v = serde_json::to_value(&rec).unwrap();
        assert_eq!(v["action"], "add");
        assert_eq!(v["client"], "web");
        assert_eq!(v["model_version"], "m1");
        assert!(v.get("suggestion_event_id").is_none());
        let back: FeedbackRecord = serde_json::from_value(v).unwrap();
        assert_eq!(back, rec);
    }
}
