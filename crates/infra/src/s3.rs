//! S3: the shared `[s3]` section, the client, size-checked GETs and the byte budget.
//!
//! Credentials, region and endpoint come from the standard AWS environment
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT_URL_S3` /
//! `AWS_ENDPOINT_URL`, profiles, instance roles), so operators use the tooling they have.
//!
//! Failures are sorted into two kinds, because they call for opposite actions ([`FetchError`]):
//! *permanent* (the object does not exist, is larger than allowed, another 4xx): retrying cannot
//! help; *transient* (5xx, throttling, timeouts, connection errors, auth errors an operator can
//! fix): the caller retries them ([`crate::retry`]). The SDK's own retries are off so that every
//! attempt is visible to that loop and its metrics.
//!
//! A GET checks the object's size from the response headers before reading the body, and caps
//! the body read as well: a lying Content-Length cannot make the caller allocate more.

use std::sync::Arc;
use std::time::Duration;

use autotag_contract::Reason;
use aws_sdk_s3::Client;
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::operation::get_object::GetObjectError;
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::millis;

/// S3 client settings that are not part of the standard AWS environment (`[s3]`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Config {
    /// Path-style addressing (`http://host/bucket/key`). Needed by MinIO, s3s-fs and most
    /// S3-compatible servers; AWS itself prefers virtual-host style.
    pub force_path_style: bool,
    /// Maximum concurrent GetObject requests. Fetching is I/O-bound, so this can be much larger
    /// than the number of cores.
    pub max_concurrent_fetches: usize,
    /// Largest object that is downloaded, checked from the object's size before the body is
    /// read. Bigger objects are dead-lettered as `too_large`.
    pub max_object_bytes: u64,
    /// Downloaded bytes held at once, from a GetObject response until that GIF is decoded: the
    /// memory bound of fetching, which `max_concurrent_fetches × max_object_bytes` alone would
    /// leave at gigabytes. A response whose object does not fit waits for room before its body
    /// is read (the wait does not count towards the request timeout). At least
    /// `max_object_bytes`.
    pub max_bytes_in_flight: u64,
    /// Timeout of one GetObject attempt (`request_timeout_ms`): the headers, and the body
    /// separately.
    #[serde(rename = "request_timeout_ms", with = "millis")]
    pub request_timeout: Duration,
}

impl Default for S3Config {
    fn default() -> Self {
        Self {
            force_path_style: true,
            max_concurrent_fetches: 16,
            max_object_bytes: 32 * 1024 * 1024,
            max_bytes_in_flight: 256 * 1024 * 1024,
            request_timeout: Duration::from_millis(10_000),
        }
    }
}

impl S3Config {
    /// Cross-key checks.
    ///
    /// # Errors
    /// A message naming the offending key.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_concurrent_fetches == 0 {
            return Err("s3.max_concurrent_fetches must be >= 1".into());
        }
        if self.max_bytes_in_flight < self.max_object_bytes {
            return Err(
                "s3.max_bytes_in_flight must be >= s3.max_object_bytes (else a large object could never fit)".into()
            );
        }
        if self.max_bytes_in_flight / 1024 > u64::from(u32::MAX) {
            return Err("s3.max_bytes_in_flight must be below 4 TiB".into());
        }
        Ok(())
    }
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
    /// Dead-letter reason of a permanent failure; `None` for a transient one, which is retried,
    /// never dead-lettered.
    pub fn reason(&self) -> Option<Reason> {
        match self {
            FetchError::NotFound { .. } => Some(Reason::ObjectNotFound),
            FetchError::TooLarge { .. } => Some(Reason::TooLarge),
            FetchError::Rejected(_) => Some(Reason::FetchRejected),
            FetchError::Transient(_) => None,
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
