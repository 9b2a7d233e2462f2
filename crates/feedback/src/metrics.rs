//! The feedback service's metrics: every name it emits, once. Served on
//! `feedback.metrics_listen` by `autotag_infra::telemetry`.

/// Requests answered, by `status` (the HTTP status code).
pub const REQUESTS: &str = "autotag_feedback_requests_total";
/// Events acknowledged by the broker (what 202s and the importer wrote).
pub const EVENTS_ACCEPTED: &str = "autotag_feedback_events_accepted_total";
/// Events refused by validation (400s and rejected import lines).
pub const EVENTS_REJECTED: &str = "autotag_feedback_events_rejected_total";
/// Time from the request's headers to its answer, by `status`.
pub const REQUEST_SECONDS: &str = "autotag_feedback_request_duration_seconds";
/// Time from producing a batch to the broker's last acknowledgement (or the deadline).
pub const PUBLISH_SECONDS: &str = "autotag_feedback_publish_duration_seconds";
/// Requests being served now (at most `max_concurrent_requests`).
pub const IN_FLIGHT: &str = "autotag_feedback_requests_in_flight";
/// Tokens file reloads on SIGHUP, by `result` (`ok`, `error`): a failed reload keeps the old
/// tokens, so an operator must see it here.
pub const TOKEN_RELOADS: &str = "autotag_feedback_token_reloads_total";
/// Events per accepted request (histogram).
pub const BATCH_EVENTS: &str = "autotag_feedback_batch_events";

/// A readiness condition: the broker answers for the topic. Set by the shared background probe
/// (`autotag_infra::producer::spawn_broker_probe`: every second while false, every 5 s while
/// true), so it recovers without traffic; a 503 sets it false at once.
pub const BROKER_READY: &str = autotag_infra::telemetry::BROKER_REACHABLE;
/// A readiness condition: the listener accepts requests (false from the start of shutdown).
pub const ACCEPTING: &str = "accepting";

/// Buckets of the non-seconds histograms.
pub const BUCKETS: &[(&str, &[f64])] = &[(BATCH_EVENTS, &[1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0])];

/// Describe the service's metrics to the installed recorder.
pub fn describe() {
    metrics::describe_counter!(REQUESTS, "Feedback requests answered, by HTTP status");
    metrics::describe_counter!(EVENTS_ACCEPTED, "Feedback events acknowledged by the broker");
    metrics::describe_counter!(EVENTS_REJECTED, "Feedback events refused by validation");
    metrics::describe_histogram!(REQUEST_SECONDS, "Request headers received to answer sent, by status");
    metrics::describe_histogram!(PUBLISH_SECONDS, "Batch produced to its last acknowledgement or the deadline");
    metrics::describe_gauge!(IN_FLIGHT, "Feedback requests being served");
    metrics::describe_histogram!(BATCH_EVENTS, "Events per accepted request");
    metrics::describe_counter!(TOKEN_RELOADS, "Tokens file reloads on SIGHUP, by result (ok, error)");
}
