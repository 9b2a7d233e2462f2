//! The feedback ingestion service: the HTTP API the GIF edit dialog calls with what users did
//! with suggested tags (seen / add / reject), and the bulk importer.
//!
//! **Owns** `POST /v1/feedback` ([`api`]), its server loop ([`server`]), bearer-token auth
//! ([`auth`]), validation against `schemas/feedback-event.schema.json` ([`validate`]), the
//! producer of the feedback topic ([`publish`]), `autotag feedback import` ([`import`](mod@import)), the
//! `[feedback]` config section ([`config`]) and the service's metrics ([`metrics`]). The
//! `autotag-feedback` binary and `autotag feedback-api` run [`run`].
//!
//! **Promises**: a 2xx means the broker acknowledged every event of the request (idempotent
//! producer, `acks=all`, key `gif_id`); an invalid or unauthenticated request writes nothing; a
//! 503 may have written part of the request, and a retry with the same `event_id`s is safe
//! because every consumer counts (`client`, `event_id`) once. Nothing is queued without bound:
//! request slots, body size and event count are capped, slow clients are cut off.
//!
//! **Never imports** the model, libtorch or another service: contract + infra only
//! (`scripts/test` checks the built binary with `readelf -d`).

pub mod api;
pub mod auth;
pub mod config;
pub mod import;
pub mod metrics;
pub mod publish;
pub mod server;
pub mod validate;

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use autotag_infra::telemetry::{self, Health};
use tokio::sync::Semaphore;

pub use config::{FeedbackConfig, FeedbackSection};
pub use import::{ImportReport, import};

use crate::api::ApiState;
use crate::auth::Tokens;
use crate::publish::Publisher;
use crate::validate::{EventValidator, Limits};

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("feedback.tokens_file is not set: the API needs a tokens file")]
    NoTokensFile,
    #[error(transparent)]
    Tokens(#[from] auth::TokensError),
    #[error("creating the Kafka producer: {0}")]
    Producer(#[from] rdkafka::error::KafkaError),
    #[error("binding {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    #[error("metrics endpoint: {0}")]
    Metrics(String),
    #[error(
        "the largest valid feedback record ({largest} bytes under feedback.max_id_chars / max_tag_chars) exceeds the producer's message.max.bytes ({max_message}): lower those limits or raise message.max.bytes"
    )]
    MessageSize { largest: usize, max_message: usize },
    #[error("installing the SIGHUP handler: {0}")]
    Signal(std::io::Error),
}

/// The feedback commands besides the API (`autotag feedback …`, `autotag-feedback …`).
#[derive(Debug, clap::Subcommand)]
pub enum FeedbackTool {
    /// Import feedback events from a JSON Lines file (one event a line) as client NAME. Prints
    /// the imported and rejected counts and each rejected line; exits 1 if any line was rejected.
    Import {
        /// The client name written into every record (as a token of the tokens file would give).
        #[arg(long)]
        client: String,
        /// The JSON Lines file.
        file: PathBuf,
    },
}

/// Run a [`FeedbackTool`]; `Ok(false)` when lines were rejected (exit 1).
///
/// # Errors
/// [`import::ImportError`].
pub async fn run_tool(cfg: &FeedbackConfig, tool: FeedbackTool) -> Result<bool, import::ImportError> {
    match tool {
        FeedbackTool::Import { client, file } => {
            let report = import(cfg, &client, &file).await?;
            for (line, errors) in &report.rejected {
                for e in errors {
                    eprintln!("line {line}: {} {}", if e.field.is_empty() { "(event)" } else { &e.field }, e.message);
                }
            }
            let lines: Vec<String> = report.rejected.iter().map(|(l, _)| l.to_string()).collect();
            println!("imported {}, rejected {}", report.imported, report.rejected.len());
            if !lines.is_empty() {
                println!("rejected lines: {}", lines.join(", "));
            }
            Ok(report.rejected.is_empty())
        }
    }
}

/// The validation limits of `[feedback]`.
pub fn limits(f: &FeedbackSection) -> Limits {
    Limits { max_tag_chars: f.max_tag_chars, max_id_chars: f.max_id_chars, max_future_skew: f.max_future_skew }
}

/// Run the API until `stop` resolves (a signal in production); re-reads the tokens file on
/// SIGHUP. Returns once requests in flight finished or the drain time passed: the longer of
/// `shutdown.deadline_ms` and `body_read_timeout_ms + broker_timeout_ms`, so that a request in
/// flight at shutdown still gets its answer.
///
/// # Errors
/// [`StartError`]: no or a bad tokens file, a producer the configuration does not allow, an
/// address that cannot be bound.
pub async fn run(cfg: FeedbackConfig, stop: impl Future<Output = ()>) -> Result<(), StartError> {
    let f = &cfg.feedback;
    if f.tokens_file.as_os_str().is_empty() {
        return Err(StartError::NoTokensFile);
    }
    let tokens = Tokens::load(&f.tokens_file)?;
    // SIGHUP's handler first: until it is installed, a SIGHUP (an operator's reload) would
    // terminate the process.
    let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).map_err(StartError::Signal)?;
    let health = Arc::new(Health::new(&[metrics::BROKER_READY, metrics::ACCEPTING]));
    if !f.metrics_listen.is_empty() {
        let handle = telemetry::install_metrics(metrics::BUCKETS).map_err(|e| StartError::Metrics(e.to_string()))?;
        metrics::describe();
        let addr = telemetry::serve_http(&f.metrics_listen, handle, health.clone())
            .await
            .map_err(|e| StartError::Metrics(format!("binding {}: {e}", f.metrics_listen)))?;
        tracing::info!(%addr, "serving /metrics, /healthz, /readyz");
    }
    // A valid event must never be too large for the producer: that would be a 503 that no retry
    // can cure (and the rest of its batch written on every try).
    let largest = validate::largest_record_bytes(&limits(f));
    let max_message = publish::max_message_bytes(&cfg.kafka, f.broker_timeout);
    if largest > max_message {
        return Err(StartError::MessageSize { largest, max_message });
    }
    let publisher = Publisher::new(&cfg.kafka, &f.topic, f.broker_timeout)?;
    let listener = tokio::net::TcpListener::bind(&f.listen)
        .await
        .map_err(|source| StartError::Bind { addr: f.listen.clone(), source })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind { addr: f.listen.clone(), source })?;
    let state = Arc::new(ApiState {
        tokens: RwLock::new(Arc::new(tokens)),
        validator: EventValidator::new(limits(f)),
        publisher,
        health: health.clone(),
        max_events: f.max_events,
        max_body_bytes: f.max_body_bytes,
        body_read_timeout: f.body_read_timeout,
        allowed_origins: f.allowed_origins.clone(),
        permits: Arc::new(Semaphore::new(f.max_concurrent_requests)),
        max_concurrent_requests: f.max_concurrent_requests,
        client_permits: std::sync::Mutex::new(std::collections::HashMap::new()),
        max_requests_per_client: f.max_requests_per_client.min(f.max_concurrent_requests),
    });
    let watchers = [
        // Readiness follows the broker with or without traffic (a 503 also sets it false at
        // once, `api`; the probe sets it true again once the broker answers).
        autotag_infra::producer::spawn_broker_probe(state.publisher.handle(), f.topic.clone(), state.health.clone()),
        tokio::spawn(reload_tokens_on_sighup(state.clone(), f.tokens_file.clone(), hangups)),
    ];
    tracing::info!(%addr, topic = %f.topic, "feedback API listening on POST {}", api::PATH);
    let router = api::router(state.clone());
    health.set(metrics::ACCEPTING, true);
    // Not ready from the moment shutdown begins, so a load balancer stops sending first.
    let stop = async {
        stop.await;
        health.set(metrics::ACCEPTING, false);
    };
    // A request in flight at shutdown always gets its answer: it may still need its body read
    // timeout plus the broker deadline, which may be longer than `shutdown.deadline` (by default
    // 10 + 5 s against 10 s); the drain waits for the longer.
    let drain = cfg.shutdown.deadline.max(f.body_read_timeout + f.broker_timeout);
    if drain > cfg.shutdown.deadline {
        tracing::info!(
            ?drain,
            "shutdown drains for body_read_timeout_ms + broker_timeout_ms, longer than shutdown.deadline_ms"
        );
    }
    let limits = server::ServeLimits {
        header_read_timeout: f.header_read_timeout,
        write_timeout: f.write_timeout,
        max_connections: f.max_connections,
        deadline: drain,
    };
    server::serve(listener, router, limits, stop).await;
    for w in watchers {
        w.abort();
    }
    state.publisher.flush(Duration::from_millis(500));
    tracing::info!("feedback API stopped");
    Ok(())
}

/// SIGHUP: re-read the tokens file. A reload applies or fails as a whole: a file with one bad
/// line (or none at all) keeps every old token, so a half-read file can never lock every
/// client out. A failure is loud: `autotag_feedback_token_reloads_total{result="error"}` and an
/// error log line naming the bad line. An operator who removed a leaked token checks that
/// metric (or the log) and reloads again once the file is fixed.
async fn reload_tokens_on_sighup(state: Arc<ApiState>, path: PathBuf, mut hangups: tokio::signal::unix::Signal) {
    while hangups.recv().await.is_some() {
        match Tokens::load(&path) {
            Ok(t) => {
                ::metrics::counter!(metrics::TOKEN_RELOADS, "result" => "ok").increment(1);
                tracing::info!(tokens = t.len(), "tokens file reloaded");
                *state.tokens.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(t);
            }
            Err(e) => {
                ::metrics::counter!(metrics::TOKEN_RELOADS, "result" => "error").increment(1);
                tracing::error!(error = %e, "tokens file NOT reloaded: every old token still works until a clean reload");
            }
        }
    }
}
