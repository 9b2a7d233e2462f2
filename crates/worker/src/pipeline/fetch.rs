//! Fetch: download each upload's GIF from S3, concurrently, with retries.
//!
//! Failures are sorted into two kinds (`autotag_infra::s3::FetchError`):
//! - *permanent* (the object does not exist, is larger than
//!   `s3.max_object_bytes`): retrying cannot help, so the record is
//!   dead-lettered at once;
//! - *transient* (5xx, throttling, timeouts, connection errors, auth
//!   errors that an operator can fix): retried with capped exponential
//!   backoff and jitter, **without limit**. A good upload is never
//!   dead-lettered because S3 was down. While one request keeps failing the
//!   worker reports itself degraded; as the stuck records hold their
//!   in-flight permits, the source runs out of capacity and pauses the
//!   consumer, and everything resumes when S3 is back.
//!
//! The object's size is checked from the response headers before the body is
//! read, and the body read is capped as well (a lying Content-Length cannot
//! make the worker allocate more). Then the body waits for room in the
//! [`ByteBudget`] (`s3.max_bytes_in_flight`); the reservation travels with
//! the bytes and is released when the GIF has been decoded, so downloads in
//! memory stay bounded whatever the fetch concurrency.

use std::sync::Arc;
use std::time::Instant;

use autotag_contract::Stage;
use autotag_infra::retry::{Retrier, RetryConfig};
use autotag_infra::s3::{ByteBudget, FetchError, Reservation, S3Config, read_body, start_get};
use autotag_infra::shutdown::Shutdown;
use autotag_infra::telemetry::Health;
use aws_sdk_s3::Client;
use tokio::sync::{Semaphore, mpsc};
use tracing::{debug, warn};

use super::{Job, Outcome};
use crate::telemetry;

/// A fetched GIF on its way to decoding.
#[derive(Debug)]
pub struct Fetched {
    pub job: Job,
    pub bytes: Vec<u8>,
    /// This GIF's share of the byte budget; dropped once it is decoded.
    pub reserved: Reservation,
}

/// One attempt of the stage: headers (timed), room in the byte budget
/// (untimed: waiting for decode to free memory is not a fault of S3), body
/// (timed).
async fn attempt(
    client: &Client,
    bucket: &str,
    key: &str,
    s3: &S3Config,
    budget: &ByteBudget,
) -> Result<(Vec<u8>, Reservation), FetchError> {
    let timeout = s3.request_timeout;
    let timed_out = || FetchError::Transient(format!("timed out after {timeout:?}"));
    let (body, declared) = tokio::time::timeout(timeout, start_get(client, bucket, key, s3.max_object_bytes))
        .await
        .map_err(|_| timed_out())??;
    // No Content-Length: reserve for the largest object we would accept.
    let reserved = budget.reserve(if declared > 0 { declared } else { s3.max_object_bytes }).await;
    // The reservation covers the declared size (validation keeps max_object_bytes within the
    // budget), so reading at most that much also stops a body longer than it claimed.
    let limit = reserved.bytes.min(s3.max_object_bytes);
    let bytes = tokio::time::timeout(timeout, read_body(body, declared, limit)).await.map_err(|_| timed_out())??;
    Ok((bytes, reserved))
}

/// The fetch stage.
pub struct FetchStage {
    pub client: Client,
    pub s3: S3Config,
    pub retry: RetryConfig,
    pub health: Arc<Health>,
    pub jobs: mpsc::Receiver<Job>,
    pub fetched: mpsc::Sender<Fetched>,
    /// Fetched backfill GIFs (decode takes live ones first); `None`: everything to `fetched`.
    pub fetched_backfill: Option<mpsc::Sender<Fetched>>,
    pub outcomes: mpsc::Sender<Outcome>,
    pub shutdown: Shutdown,
    /// Shared with nobody else: reservations travel with the bytes to decode.
    pub budget: ByteBudget,
}

impl FetchStage {
    pub async fn run(mut self) {
        let limit = Arc::new(Semaphore::new(self.s3.max_concurrent_fetches));
        let mut tasks = tokio::task::JoinSet::new();
        while let Some(job) = self.jobs.recv().await {
            let Ok(permit) = limit.clone().acquire_owned().await else { break };
            let client = self.client.clone();
            let (s3, retry, health) = (self.s3.clone(), self.retry.clone(), self.health.clone());
            let fetched = match (&self.fetched_backfill, job.ticket.source) {
                (Some(b), autotag_contract::Source::Backfill) => b.clone(),
                _ => self.fetched.clone(),
            };
            let (outcomes, shutdown) = (self.outcomes.clone(), self.shutdown.clone());
            let budget = self.budget.clone();
            tasks.spawn(async move {
                let _permit = permit;
                fetch_one(job, client, s3, retry, health, fetched, outcomes, shutdown, budget).await;
            });
            while tasks.try_join_next().is_some() {}
        }
        while tasks.join_next().await.is_some() {}
        debug!("fetch stage drained");
    }
}

#[allow(clippy::too_many_arguments)]
async fn fetch_one(
    job: Job,
    client: Client,
    s3: S3Config,
    retry: RetryConfig,
    health: Arc<Health>,
    fetched: mpsc::Sender<Fetched>,
    outcomes: mpsc::Sender<Outcome>,
    mut shutdown: Shutdown,
    budget: ByteBudget,
) {
    let started = Instant::now();
    let (bucket, key) = (job.upload.bucket.clone(), job.upload.key.clone());
    let mut retrier = Retrier::new("s3", retry, health);
    let result = loop {
        match attempt(&client, &bucket, &key, &s3, &budget).await {
            Err(e) if e.is_transient() => {
                if !retrier.failed(format!("s3://{bucket}/{key}: {e}"), &mut shutdown).await {
                    // Abandoned at shutdown: not completed, so not committed.
                    return;
                }
            }
            other => break other,
        }
    };
    drop(retrier);
    metrics::histogram!(telemetry::STAGE_SECONDS, "stage" => "fetch").record(started.elapsed().as_secs_f64());
    match result {
        Ok((bytes, reserved)) => {
            let _ = fetched.send(Fetched { job, bytes, reserved }).await;
        }
        Err(e) => {
            warn!(%bucket, %key, error = %e, "fetch failed permanently");
            // Transient errors never leave the loop above; a permanent one always has a reason.
            let reason = e.reason().unwrap_or(autotag_contract::Reason::FetchRejected);
            let _ = outcomes.send(Outcome::failed(job.ticket, Stage::Fetch, reason, e.to_string())).await;
        }
    }
}
