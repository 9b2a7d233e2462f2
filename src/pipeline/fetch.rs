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
//! make the worker allocate more).

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::operation::get_object::GetObjectError;
use tokio::sync::{Semaphore, mpsc};
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
    let resp = client.get_object().bucket(bucket).key(key).send().await.map_err(|e| classify(e, bucket, key))?;
    let declared = resp.content_length().unwrap_or(0).max(0) as u64;
    if declared > max_bytes {
        return Err(FetchError::TooLarge { size: declared, limit: max_bytes });
    }
    let mut body = resp.body;
    let mut out = Vec::with_capacity(declared as usize);
    while let Some(chunk) = body.try_next().await.map_err(|e| FetchError::Transient(format!("reading body: {e}")))? {
        if (out.len() + chunk.len()) as u64 > max_bytes {
            return Err(FetchError::TooLarge { size: (out.len() + chunk.len()) as u64, limit: max_bytes });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
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
            tasks.spawn(async move {
                let _permit = permit;
                fetch_one(job, client, s3, retry, health, fetched, outcomes, shutdown).await;
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
) {
    let started = Instant::now();
    let (bucket, key) = (job.upload.bucket.clone(), job.upload.key.clone());
    let timeout = Duration::from_millis(s3.request_timeout_ms);
    let mut retrier = Retrier::new("s3", retry, health);
    let result = loop {
        let r = match tokio::time::timeout(timeout, get_object(&client, &bucket, &key, s3.max_object_bytes)).await {
            Ok(r) => r,
            Err(_) => Err(FetchError::Transient(format!("timed out after {timeout:?}"))),
        };
        match r {
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
        Ok(bytes) => {
            let _ = fetched.send(Fetched { job, bytes }).await;
        }
        Err(e) => {
            warn!(%bucket, %key, error = %e, "fetch failed permanently");
            let _ = outcomes.send(Outcome::failed(job.ticket, Stage::Fetch, e.reason(), e.to_string())).await;
        }
    }
}
