//! Logs, metrics and health.
//!
//! Every metric the worker emits is named here, once, so that dashboards and
//! alerts have one reference. `/metrics` serves them in Prometheus text format;
//! `/healthz` says the process is alive; `/readyz` says it is worth sending
//! traffic to: the model is loaded and warmed up and the consumer has joined
//! its group.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const EVENTS_CONSUMED: &str = "autotag_events_consumed_total";
pub const SUGGESTIONS_PUBLISHED: &str = "autotag_suggestions_published_total";
pub const DEAD_LETTERS: &str = "autotag_dead_letters_total";
pub const BATCH_SIZE: &str = "autotag_batch_size_frames";
pub const STAGE_SECONDS: &str = "autotag_stage_duration_seconds";
pub const END_TO_END_SECONDS: &str = "autotag_upload_to_suggestion_seconds";
pub const MODEL_LOAD_SECONDS: &str = "autotag_model_load_seconds";
pub const MODEL_WARMUP_SECONDS: &str = "autotag_model_warmup_seconds";
pub const IN_FLIGHT: &str = "autotag_events_in_flight";
pub const RETRIES: &str = "autotag_retries_total";
pub const CONSUMER_PAUSED: &str = "autotag_consumer_paused";
pub const COMMITTED_OFFSETS: &str = "autotag_offset_commits_total";

/// Liveness/readiness flags shared by the stages and the HTTP endpoint.
#[derive(Debug, Default)]
pub struct Health {
    model_ready: AtomicBool,
    consumer_joined: AtomicBool,
    /// Requests currently stuck retrying a failing dependency.
    dependency_degraded: AtomicUsize,
}

impl Health {
    pub fn set_model_ready(&self) {
        self.model_ready.store(true, Ordering::SeqCst);
    }
    pub fn set_consumer_joined(&self, joined: bool) {
        self.consumer_joined.store(joined, Ordering::SeqCst);
    }
    /// S3 or the broker keeps failing: readiness drops so that an operator
    /// sees it, while the worker keeps retrying.
    /// Calls must pair: `true` when a request starts failing persistently,
    /// `false` when that same request recovers.
    pub fn set_degraded(&self, degraded: bool) {
        if degraded {
            self.dependency_degraded.fetch_add(1, Ordering::SeqCst);
        } else {
            let _ = self.dependency_degraded.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        }
    }
    pub fn is_ready(&self) -> bool {
        self.model_ready.load(Ordering::SeqCst)
            && self.consumer_joined.load(Ordering::SeqCst)
            && self.dependency_degraded.load(Ordering::SeqCst) == 0
    }
}

/// Structured logs. `AUTOTAG_LOG=debug` (or any `EnvFilter` directive) sets
/// the level; `AUTOTAG_LOG_FORMAT=json` switches to JSON lines.
pub fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("AUTOTAG_LOG").unwrap_or_else(|_| EnvFilter::new("info,rdkafka=warn,aws=warn"));
    let json = std::env::var("AUTOTAG_LOG_FORMAT").is_ok_and(|v| v == "json");
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let _ = if json { builder.json().try_init() } else { builder.compact().try_init() };
}

/// Install the Prometheus recorder (once per process) and describe metrics.
pub fn install_metrics() -> anyhow::Result<PrometheusHandle> {
    let seconds = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
    let sizes = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0];
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(BATCH_SIZE.into()), &sizes)?
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &seconds)?
        .install_recorder()?;
    metrics::describe_counter!(EVENTS_CONSUMED, "Upload events read from Kafka");
    metrics::describe_counter!(SUGGESTIONS_PUBLISHED, "Suggestions acknowledged by the broker");
    metrics::describe_counter!(DEAD_LETTERS, "Dead letters acknowledged, by stage and reason");
    metrics::describe_histogram!(BATCH_SIZE, "Frames per forward pass");
    metrics::describe_histogram!(STAGE_SECONDS, "Time spent per stage, per GIF (per batch for infer)");
    metrics::describe_histogram!(END_TO_END_SECONDS, "uploaded_at to suggestion acknowledged");
    metrics::describe_gauge!(MODEL_LOAD_SECONDS, "Time to load the model");
    metrics::describe_gauge!(MODEL_WARMUP_SECONDS, "Time to warm the model up with every batch shape");
    metrics::describe_gauge!(IN_FLIGHT, "Upload events consumed and not yet finished");
    metrics::describe_counter!(RETRIES, "Retries of transient failures, by dependency");
    metrics::describe_gauge!(CONSUMER_PAUSED, "1 while the consumer is paused for backpressure");
    metrics::describe_counter!(COMMITTED_OFFSETS, "Offset commits sent to the group coordinator");
    // Give the upkeep task something to do so histograms don't grow unbounded.
    let upkeep = handle.clone();
    std::thread::Builder::new().name("metrics-upkeep".into()).spawn(move || {
        loop {
            std::thread::sleep(Duration::from_secs(5));
            upkeep.run_upkeep();
        }
    })?;
    Ok(handle)
}

/// Serve `/metrics`, `/healthz` and `/readyz` until the process ends.
pub async fn serve_http(listen: &str, handle: PrometheusHandle, health: Arc<Health>) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(move || std::future::ready(handle.render())))
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let ready = health.is_ready();
                async move {
                    if ready { (StatusCode::OK, "ready\n") } else { (StatusCode::SERVICE_UNAVAILABLE, "not ready\n") }
                }
            }),
        );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics endpoint stopped");
        }
    });
    Ok(addr)
}
