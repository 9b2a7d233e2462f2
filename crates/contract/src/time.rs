//! Timestamps of the contract: RFC 3339, UTC, millisecond precision (`2026-11-22T10:00:01.234Z`).

use chrono::{SecondsFormat, Utc};

/// Current time, RFC 3339 with milliseconds, UTC.
pub fn now_rfc3339() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}
