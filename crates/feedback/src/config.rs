//! The feedback service's configuration: the shared `[kafka]` (brokers, the operator's producer
//! pass-through keys) and `[shutdown]` sections, and its own `[feedback]` section, documented
//! here field by field. `config/default.toml` is the reference; every key can be overridden as
//! `AUTOTAG__FEEDBACK__KEY`.
//!
//! The service serves its metrics and health on its own `feedback.metrics_listen` (default port
//! 9465) rather than the shared `[metrics]` section, whose address belongs to the worker: both
//! can run on one host with one config file.

use std::path::PathBuf;
use std::time::Duration;

use autotag_infra::config::{ConfigError, ServiceConfig, millis};
use autotag_infra::kafka::KafkaConfig;
use autotag_infra::shutdown::ShutdownConfig;
use serde::{Deserialize, Serialize};

/// Everything the feedback API and `autotag feedback import` read.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct FeedbackConfig {
    pub kafka: KafkaConfig,
    pub feedback: FeedbackSection,
    pub shutdown: ShutdownConfig,
}

impl ServiceConfig for FeedbackConfig {
    const SECTIONS: &'static [&'static str] = &["kafka", "feedback", "shutdown"];

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        let f = &self.feedback;
        if self.kafka.brokers.trim().is_empty() {
            return bad("kafka.brokers is empty".into());
        }
        if f.topic.trim().is_empty() {
            return bad("feedback.topic is empty".into());
        }
        for (key, v) in [
            ("max_events", f.max_events),
            ("max_body_bytes", f.max_body_bytes),
            ("max_tag_chars", f.max_tag_chars),
            ("max_id_chars", f.max_id_chars),
            ("max_concurrent_requests", f.max_concurrent_requests),
            ("max_connections", f.max_connections),
            ("max_requests_per_client", f.max_requests_per_client),
        ] {
            if v == 0 {
                return bad(format!("feedback.{key} must be >= 1"));
            }
        }
        for (key, v) in [("max_tag_chars", f.max_tag_chars), ("max_id_chars", f.max_id_chars)] {
            if v > crate::validate::MAX_CHARS_CEILING {
                return bad(format!(
                    "feedback.{key} = {v} is above the schemas' ceiling of {} characters",
                    crate::validate::MAX_CHARS_CEILING
                ));
            }
        }
        for (key, d) in [
            ("header_read_timeout_ms", f.header_read_timeout),
            ("body_read_timeout_ms", f.body_read_timeout),
            ("write_timeout_ms", f.write_timeout),
            ("broker_timeout_ms", f.broker_timeout),
        ] {
            if d.is_zero() {
                return bad(format!("feedback.{key} must be > 0"));
            }
        }
        for o in &f.allowed_origins {
            if !is_origin(o) {
                return bad(format!(
                    "feedback.allowed_origins: `{o}` is not an origin (scheme://host[:port], no path, no wildcard)"
                ));
            }
        }
        Ok(())
    }
}

/// `scheme://host[:port]` with nothing after it: what browsers send in `Origin`.
fn is_origin(o: &str) -> bool {
    let Some((scheme, rest)) = o.split_once("://") else { return false };
    !scheme.is_empty()
        && scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && !rest.is_empty()
        && !rest.contains(['/', '*', '?', '#', ' '])
}

/// The feedback API (`[feedback]`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct FeedbackSection {
    /// Listen address of the API (`POST /v1/feedback`).
    pub listen: String,
    /// Listen address of `/metrics`, `/healthz`, `/readyz`; empty disables them.
    pub metrics_listen: String,
    /// The tokens file: one `client_name sha256:<hex of the token>` a line, `#` comments and
    /// blank lines allowed; several lines (also for one client) allow rotation. Required by the
    /// API, re-read on SIGHUP. Plain tokens are never stored.
    pub tokens_file: PathBuf,
    /// The topic feedback records are written to (key `gif_id`).
    pub topic: String,
    /// Most events in one request; more is a 413.
    pub max_events: usize,
    /// Largest request body in bytes; more is a 413 (checked on `Content-Length` and while
    /// reading, so a body without a length cannot exceed it either).
    pub max_body_bytes: usize,
    /// Longest tag in Unicode scalar values, after normalisation (trim, lower case, NFC); at
    /// most 256, the schemas' ceiling.
    pub max_tag_chars: usize,
    /// Longest `event_id`, `gif_id`, `user_id`, `suggestion_event_id`, `model_version`, in
    /// Unicode scalar values; at most 256, the schemas' ceiling.
    pub max_id_chars: usize,
    /// Browser origins allowed to call the API (CORS), `scheme://host[:port]`; empty = none.
    pub allowed_origins: Vec<String>,
    /// Requests served at once; one more is answered 429 with `Retry-After` at once (never
    /// queued).
    pub max_concurrent_requests: usize,
    /// Requests one client (one name of the tokens file) may have in service at once; one more
    /// is a 429 with `Retry-After`. Keeps one client with slow bodies from taking every one of
    /// the `max_concurrent_requests` slots. A value above `max_concurrent_requests` is taken as
    /// `max_concurrent_requests`.
    pub max_requests_per_client: usize,
    /// Connections open at once. Past it the listener stops accepting (new connections wait in
    /// the kernel's accept backlog) until one closes, so the memory of open connections (each
    /// holds hyper's buffers and possibly a body) is bounded, whatever clients do. Measured
    /// without a cap (`docs/benchmarks.md`, feedback overload at batch 100): RSS followed the
    /// ~2 000 connections the load opened, 105 → 147 MiB in 10 s.
    pub max_connections: usize,
    /// A client must send its request line and headers within this time, or the connection is
    /// closed (`header_read_timeout_ms`).
    #[serde(rename = "header_read_timeout_ms", with = "millis")]
    pub header_read_timeout: Duration,
    /// A client must send the whole body within this time after its headers, or it gets a 408
    /// (`body_read_timeout_ms`).
    #[serde(rename = "body_read_timeout_ms", with = "millis")]
    pub body_read_timeout: Duration,
    /// A write of an answer that makes no progress (the client does not read) for this long
    /// closes the connection (`write_timeout_ms`), so that such a client cannot hold one of the
    /// `max_connections` for ever.
    #[serde(rename = "write_timeout_ms", with = "millis")]
    pub write_timeout: Duration,
    /// The broker must acknowledge every event of a request within this time, or the request gets
    /// a 503 with `Retry-After` (`broker_timeout_ms`). The producer's `message.timeout.ms` is set
    /// no longer than this.
    #[serde(rename = "broker_timeout_ms", with = "millis")]
    pub broker_timeout: Duration,
    /// An `occurred_at` further ahead of the server's clock than this is a 400
    /// (`max_future_skew_ms`).
    #[serde(rename = "max_future_skew_ms", with = "millis")]
    pub max_future_skew: Duration,
}

impl Default for FeedbackSection {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            metrics_listen: "127.0.0.1:9465".into(),
            tokens_file: PathBuf::new(),
            topic: "gif-tag-feedback".into(),
            max_events: 500,
            max_body_bytes: 1024 * 1024,
            max_tag_chars: 64,
            max_id_chars: 128,
            allowed_origins: Vec::new(),
            max_concurrent_requests: 64,
            max_requests_per_client: 16,
            max_connections: 512,
            header_read_timeout: Duration::from_millis(5_000),
            body_read_timeout: Duration::from_millis(10_000),
            write_timeout: Duration::from_millis(10_000),
            broker_timeout: Duration::from_millis(5_000),
            max_future_skew: Duration::from_millis(300_000),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use autotag_infra::config::load_with_env;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_overrides_and_refusals() {
        let cfg: FeedbackConfig = load_with_env(None, env(&[])).unwrap();
        assert_eq!(cfg.feedback.listen, "127.0.0.1:8080");
        assert_eq!(cfg.feedback.max_body_bytes, 1 << 20);
        let cfg: FeedbackConfig = load_with_env(
            None,
            env(&[
                ("AUTOTAG__FEEDBACK__BROKER_TIMEOUT_MS", "1500"),
                ("AUTOTAG__FEEDBACK__ALLOWED_ORIGINS", r#"["https://giphy.com"]"#),
                ("AUTOTAG__MODEL__DIR", "ignored: the worker's section"),
            ]),
        )
        .unwrap();
        assert_eq!(cfg.feedback.broker_timeout, Duration::from_millis(1500));
        assert_eq!(cfg.feedback.allowed_origins, vec!["https://giphy.com".to_owned()]);
        for bad in [
            ("AUTOTAG__FEEDBACK__MAX_EVENTS", "0"),
            ("AUTOTAG__FEEDBACK__BROKER_TIMEOUT_MS", "0"),
            ("AUTOTAG__FEEDBACK__ALLOWED_ORIGINS", r#"["*"]"#),
            ("AUTOTAG__FEEDBACK__ALLOWED_ORIGINS", r#"["https://giphy.com/"]"#),
            ("AUTOTAG__FEEDBACK__MAX_EVENT", "1"),
            ("AUTOTAG__FEEDBACK__MAX_CONNECTIONS", "0"),
            ("AUTOTAG__FEEDBACK__MAX_REQUESTS_PER_CLIENT", "0"),
            ("AUTOTAG__FEEDBACK__MAX_ID_CHARS", "257"),
            ("AUTOTAG__FEEDBACK__MAX_TAG_CHARS", "1000"),
        ] {
            assert!(load_with_env::<FeedbackConfig>(None, env(&[bad])).is_err(), "{bad:?}");
        }
    }
}
