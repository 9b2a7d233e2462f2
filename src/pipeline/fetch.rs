//! Fetch: download each upload's GIF from S3, concurrently, with retries.
//!
//! Failures are sorted into two kinds, because they call for opposite
//! actions:
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
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::operation::get_object::GetObjectError;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tracing::{debug, warn};

use super::{Job, Outcome, Retrier, Shutdown};
use crate::config::{RetryConfig, S3Config};
use crate::contract::Stage;
use crate::telemetry::{self, Health};

/// A fetched GIF on its way to decoding.
#[derive(Debug)]
pub struct Fetched {
    pub job: Job,
    pub bytes: Vec<u8>,
    /// This GIF's share of the byte budget; dropped once it is decoded.
    pub reserved: Reservation,
}

/// Bytes reserved in a [`ByteBudget`]; released on drop.
#[derive(Debug)]
pub struct Reservation {
    _permit: Option<OwnedSemaphorePermit>,
    /// Bytes reserved (rounded up to KiB).
    pub bytes: u64,
}

/// Downloaded bytes the pipeline may hold at once (`s3.max_bytes_in_flight`),
/// counted in KiB permits of a semaphore.
#[derive(Debug, Clone)]
pub struct ByteBudget {
    sem: Arc<Semaphore>,
    kib: u32,
}

impl ByteBudget {
    pub fn new(bytes: u64) -> Self {
        let kib = Self::kib(bytes).max(1);
        ByteBudget { sem: Arc::new(Semaphore::new(kib as usize)), kib }
    }

    fn kib(bytes: u64) -> u32 {
        bytes.div_ceil(1024).min(u64::from(u32::MAX)) as u32
    }

    /// Wait until `bytes` fit. A request larger than the whole budget waits
    /// for all of it (config validation keeps `max_object_bytes` within it).
    pub async fn reserve(&self, bytes: u64) -> Reservation {
        let n = Self::kib(bytes.max(1)).min(self.kib);
        // The semaphore is never closed, so acquiring cannot fail; if it
        // somehow did, go on unbounded rather than stall the pipeline.
        let permit = self.sem.clone().acquire_many_owned(n).await.ok();
        Reservation { _permit: permit, bytes: u64::from(n) * 1024 }
    }

    /// Bytes not reserved right now.
    pub fn available(&self) -> u64 {
        self.sem.available_permits() as u64 * 1024
    }
}

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("object s3://{bucket}/{key} not found")]
    NotFound { bucket: String, key: String },
    #[error("object is {size} bytes, over the limit of {limit}")]
    TooLarge { size: u64, limit: u64 },
    #[error("S3 rejected the request: {0}")]
    Rejected(String),
    #[error("transient S3 failure: {0}")]
    Transient(String),
}

impl FetchError {
    /// Dead-letter reason code.
    pub fn reason(&self) -> &'static str {
        match self {
            FetchError::NotFound { .. } => "object_not_found",
            FetchError::TooLarge { .. } => "too_large",
            FetchError::Rejected(_) => "fetch_rejected",
            FetchError::Transient(_) => "fetch_failed",
        }
    }
    pub fn is_transient(&self) -> bool {
        matches!(self, FetchError::Transient(_))
    }
}

/// Build the S3 client from the standard AWS environment.
pub async fn create_client(cfg: &S3Config) -> Client {
    let region = aws_config::meta::region::RegionProviderChain::default_provider().or_else("us-east-1");
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(region)
        // Our own retry loop classifies errors and never gives up on
        // transient ones; the SDK's would hide attempts from the metrics.
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .load()
        .await;
    let conf = aws_sdk_s3::config::Builder::from(&shared).force_path_style(cfg.force_path_style).build();
    Client::from_conf(conf)
}

fn classify(err: SdkError<GetObjectError>, bucket: &str, key: &str) -> FetchError {
    match &err {
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            if se.err().is_no_such_key() || status == 404 {
                return FetchError::NotFound { bucket: bucket.into(), key: key.into() };
            }
            let msg = format!("HTTP {status}: {}", aws_sdk_s3::error::DisplayErrorContext(&err));
            // 5xx, throttling and auth errors are things an operator or time
            // fixes; other 4xx are about this object.
            if status >= 500 || status == 408 || status == 429 || status == 403 || status == 401 {
                FetchError::Transient(msg)
            } else {
                FetchError::Rejected(msg)
            }
        }
        SdkError::ConstructionFailure(_) => {
            FetchError::Rejected(aws_sdk_s3::error::DisplayErrorContext(&err).to_string())
        }
        _ => FetchError::Transient(aws_sdk_s3::error::DisplayErrorContext(&err).to_string()),
    }
}

/// One GetObject attempt, size-checked.
pub async fn get_object(client: &Client, bucket: &str, key: &str, max_bytes: u64) -> Result<Vec<u8>, FetchError> {
    let (body, declared) = start_get(client, bucket, key, max_bytes).await?;
    read_body(body, declared, max_bytes).await
}

/// Send GetObject and check the declared size; returns the unread body and
/// the declared length (0 when the server sent none).
pub async fn start_get(
    client: &Client,
    bucket: &str,
    key: &str,
    max_bytes: u64,
) -> Result<(aws_sdk_s3::primitives::ByteStream, u64), FetchError> {
    let resp = client.get_object().bucket(bucket).key(key).send().await.map_err(|e| classify(e, bucket, key))?;
    let declared = resp.content_length().unwrap_or(0).max(0) as u64;
    if declared > max_bytes {
        return Err(FetchError::TooLarge { size: declared, limit: max_bytes });
    }
    Ok((resp.body, declared))
}

/// Read a body of `declared` bytes, never more than `max_bytes`.
pub async fn read_body(
    mut body: aws_sdk_s3::primitives::ByteStream,
    declared: u64,
    max_bytes: u64,
) -> Result<Vec<u8>, FetchError> {
    let mut out = Vec::with_capacity(declared.min(max_bytes) as usize);
    while let Some(chunk) = body.try_next().await.map_err(|e| FetchError::Transient(format!("reading body: {e}")))? {
        if (out.len() + chunk.len()) as u64 > max_bytes {
            return Err(FetchError::TooLarge { size: (out.len() + chunk.len()) as u64, limit: max_bytes });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
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
    let timeout = Duration::from_millis(s3.request_timeout_ms);
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
            let (fetched, outcomes, shutdown) = (self.fetched.clone(), self.outcomes.clone(), self.shutdown.clone());
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
            let _ = outcomes.send(Outcome::failed(job.ticket, Stage::Fetch, e.reason(), e.to_string())).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn byte_budget_blocks_until_decoded_bytes_are_released() {
        let budget = ByteBudget::new(3 * 1024);
        let a = budget.reserve(2000).await; // 2 KiB
        assert_eq!(a.bytes, 2048);
        assert_eq!(budget.available(), 1024);
        let b = budget.reserve(1).await;
        assert_eq!(budget.available(), 0);
        // A third reservation waits until something is released.
        let waiting = tokio::spawn({
            let budget = budget.clone();
            async move { budget.reserve(2048).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(b);
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "1 KiB free is not enough for 2 KiB");
        drop(a);
        let c = tokio::time::timeout(Duration::from_secs(5), waiting).await.expect("released").expect("task");
        assert_eq!(c.bytes, 2048);
        // More than the whole budget waits for all of it instead of forever.
        drop(c);
        let all = budget.reserve(1 << 30).await;
        assert_eq!(all.bytes, 3 * 1024);
    }
}
