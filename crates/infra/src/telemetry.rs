//! Logs, metrics and health, on the same conventions for every service.
//!
//! Metric names are constants beside the code that emits them: the infrastructure's here, each
//! service's in its own `metrics` module, so dashboards and alerts have one reference each.
//! `/metrics` serves them in Prometheus text format; `/healthz` says the process is alive;
//! `/readyz` says it is worth sending traffic to: every readiness condition the service
//! registered is met ([`Health`]) and no dependency is degraded.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde::{Deserialize, Serialize};

/// Retries of transient failures, by `dependency` (s3, kafka).
pub const RETRIES: &str = "autotag_retries_total";
/// Offset commits the broker confirmed.
pub const COMMITTED_OFFSETS: &str = "autotag_offset_commits_total";
/// Offset commits that failed (they are re-sent).
pub const COMMIT_FAILURES: &str = "autotag_offset_commit_failures_total";
/// Partition assignments this member received (each rebalance that gave it partitions).
pub const REBALANCES: &str = "autotag_kafka_rebalances_total";
/// Assignments lost (session timeout, e.g. a broker outage): nothing of them is committed.
pub const LOST_ASSIGNMENTS: &str = "autotag_kafka_lost_assignments_total";

/// The readiness condition the group consumer sets once it has partitions.
pub const CONSUMER_JOINED: &str = "consumer_joined";
/// The readiness condition of the broker probe: the broker answered a metadata request for the
/// service's topic through its producer lately ([`crate::producer::spawn_broker_probe`]).
pub const BROKER_REACHABLE: &str = "broker_reachable";
/// Seconds since the broker last acknowledged an output of this service (0 before the first;
/// alert when it grows while work is in flight).
pub const SECONDS_SINCE_LAST_ACK: &str = "autotag_kafka_seconds_since_last_ack";

/// The `/metrics`, `/healthz`, `/readyz` endpoint (`[metrics]`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Listen address of the worker's endpoint; empty disables it. Each service has its own
    /// default port: worker 9464, the next services 9465, 9466, ….
    pub listen: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self { listen: "127.0.0.1:9464".into() }
    }
}

/// Readiness shared by a service's stages and its HTTP endpoint: a set of named conditions
/// that must all hold, and a count of requests stuck retrying a failing dependency.
#[derive(Debug)]
pub struct Health {
    conditions: Mutex<BTreeMap<&'static str, bool>>,
    /// Requests currently stuck retrying a failing dependency.
    dependency_degraded: AtomicUsize,
}

impl Health {
    /// Not ready until every one of `conditions` was set true.
    pub fn new(conditions: &[&'static str]) -> Self {
        Self {
            conditions: Mutex::new(conditions.iter().map(|c| (*c, false)).collect()),
            dependency_degraded: AtomicUsize::new(0),
        }
    }

    /// Set a readiness condition (one not registered in [`Health::new`] is added).
    pub fn set(&self, condition: &'static str, met: bool) {
        self.conditions.lock().unwrap_or_else(|p| p.into_inner()).insert(condition, met);
    }

    /// A dependency keeps failing: readiness drops so that an operator sees it, while the
    /// service keeps retrying. Calls must pair: `true` when a request starts failing
    /// persistently, `false` when that same request recovers or is abandoned.
    pub fn set_degraded(&self, degraded: bool) {
        if degraded {
            self.dependency_degraded.fetch_add(1, Ordering::SeqCst);
        } else {
            let _ = self.dependency_degraded.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        }
    }

    /// Every condition met and no dependency degraded.
    pub fn is_ready(&self) -> bool {
        self.conditions.lock().unwrap_or_else(|p| p.into_inner()).values().all(|v| *v)
            && self.dependency_degraded.load(Ordering::SeqCst) == 0
    }
}

/// Structured logs to stderr. `AUTOTAG_LOG=debug` (or any `EnvFilter` directive) sets the
/// level; `AUTOTAG_LOG_FORMAT=json` switches to JSON lines.
pub fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("AUTOTAG_LOG").unwrap_or_else(|_| EnvFilter::new("info,rdkafka=warn,aws=warn"));
    let json = std::env::var("AUTOTAG_LOG_FORMAT").is_ok_and(|v| v == "json");
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let _ = if json { builder.json().try_init() } else { builder.compact().try_init() };
}

/// Install the Prometheus recorder (once per process) with seconds buckets for every
/// `*_seconds` histogram, plus `buckets` for other histograms by full name, and describe the
/// infrastructure's metrics (services describe their own).
///
/// # Errors
/// A recorder is already installed, or a bucket list is empty.
pub fn install_metrics(buckets: &[(&str, &[f64])]) -> anyhow::Result<PrometheusHandle> {
    let seconds = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
    let mut builder = PrometheusBuilder::new().set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &seconds)?;
    for (name, values) in buckets {
        builder = builder.set_buckets_for_metric(Matcher::Full((*name).into()), values)?;
    }
    let handle = builder.install_recorder()?;
    metrics::describe_counter!(RETRIES, "Retries of transient failures, by dependency");
    metrics::describe_counter!(COMMITTED_OFFSETS, "Offset commits confirmed by the group coordinator");
    metrics::describe_counter!(COMMIT_FAILURES, "Offset commits that failed (they are re-sent)");
    metrics::describe_counter!(
        crate::producer::PRODUCER_REBUILDS,
        "Kafka producers rebuilt, by reason: fatal (it can never deliver again) or stuck (failing past its message timeout)"
    );
    metrics::describe_gauge!(SECONDS_SINCE_LAST_ACK, "Seconds since the broker last acknowledged an output");
    metrics::describe_counter!(REBALANCES, "Partition assignments received by this member");
    metrics::describe_counter!(LOST_ASSIGNMENTS, "Assignments lost (session timeout); nothing of them is committed");
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

/// Serve `/metrics`, `/healthz` and `/readyz` on `listen` until the process ends; returns the
/// bound address.
///
/// # Errors
/// The address cannot be bound.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_every_condition_holds_and_nothing_is_degraded() {
        let h = Health::new(&["model", CONSUMER_JOINED]);
        assert!(!h.is_ready());
        h.set("model", true);
        assert!(!h.is_ready());
        h.set(CONSUMER_JOINED, true);
        assert!(h.is_ready());
        h.set_degraded(true);
        h.set_degraded(true);
        h.set_degraded(false);
        assert!(!h.is_ready(), "one request still degraded");
        h.set_degraded(false);
        h.set_degraded(false); // unpaired: must not underflow
        assert!(h.is_ready());
    }
}
