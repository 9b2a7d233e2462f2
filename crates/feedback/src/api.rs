//! `POST /v1/feedback`: authenticate, check the body, validate every event, write them all, and
//! answer 202 only once the broker acknowledged every one.
//!
//! **Owns** the HTTP contract of the service: the status codes and their order, the error body
//! (`{"errors":[{"index":i,"field":"/tag","message":"…"}]}`; `index` absent for errors about
//! the request as a whole), the concurrency bound and CORS.
//!
//! **Status order and promises**
//! - 401 + `WWW-Authenticate`: missing or unknown token, checked before the body is read and
//!   before a request slot is taken.
//! - 429 + `Retry-After`: the client already has `max_requests_per_client` requests in service,
//!   or all `max_concurrent_requests` are; never queued.
//! - 415: `Content-Type` is not `application/json`.
//! - 413: `Content-Length` or the body read over `max_body_bytes`, or more than `max_events`.
//! - 408: the body did not arrive within `body_read_timeout_ms`.
//! - 400: not JSON (also invalid UTF-8 and nesting deeper than 128), an empty array, a repeated
//!   `event_id`, an element over 64 KiB of JSON, or any invalid event (each listed, the first
//!   100 of them, then a count). Nothing is written.
//! - 503 + `Retry-After`: the broker did not acknowledge every event within `broker_timeout_ms`.
//!   Part of the request may have been written; retrying it with the same `event_id`s is safe.
//! - 202 `{"accepted":n}`: all `n` events are on the topic.
//!
//! **CORS**: a preflight (`OPTIONS` with `Access-Control-Request-Method`) from an origin in
//! `allowed_origins` gets 204 with the allow headers and needs no token; every response to such
//! an origin carries `Access-Control-Allow-Origin`. Other origins get no CORS headers (a browser
//! then refuses to let the page read the answer).

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use autotag_contract::FeedbackRecord;
use autotag_contract::now_rfc3339;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http_body_util::BodyExt as _;
use serde_json::json;
use serde_json::value::RawValue;
use tokio::sync::Semaphore;

use crate::auth::Tokens;
use crate::metrics;
use crate::publish::{PublishError, Publisher};
use crate::validate::{EventValidator, FieldError};
use autotag_infra::telemetry::Health;

/// The path of the API.
pub const PATH: &str = "/v1/feedback";

/// Everything a request needs; shared by all of them.
#[derive(Debug)]
pub struct ApiState {
    /// Replaced as a whole on SIGHUP.
    pub tokens: RwLock<Arc<Tokens>>,
    pub validator: EventValidator,
    pub publisher: Publisher,
    pub health: Arc<Health>,
    pub max_events: usize,
    pub max_body_bytes: usize,
    pub body_read_timeout: Duration,
    pub allowed_origins: Vec<String>,
    /// Permits for requests in service, `max_concurrent_requests` of them.
    pub permits: Arc<Semaphore>,
    pub max_concurrent_requests: usize,
    /// Each client's own permits, `max_requests_per_client` each, made on its first request
    /// (as many entries as client names in the tokens file, at most).
    pub client_permits: std::sync::Mutex<std::collections::HashMap<String, Arc<Semaphore>>>,
    pub max_requests_per_client: usize,
}

/// The authenticated client of a request, set by [`limit_concurrency`] for the handler.
#[derive(Debug, Clone)]
struct Client(String);

/// Why a request was refused; each variant is one stable status.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("all {0} request slots are busy; retry shortly")]
    Overloaded(usize),
    #[error("this client already has {0} requests in service; retry shortly")]
    ClientOverloaded(usize),
    #[error("missing or invalid bearer token")]
    Unauthorized,
    #[error("Content-Type must be application/json")]
    UnsupportedMediaType,
    #[error("the body is larger than {0} bytes")]
    BodyTooLarge(usize),
    #[error("more than {max} events in one request")]
    TooManyEvents { max: usize },
    #[error("the body did not arrive within {0:?}")]
    BodyTimeout(Duration),
    #[error("the body could not be read: {0}")]
    BodyRead(String),
    #[error("invalid request")]
    Invalid(Vec<FieldError>),
    #[error(transparent)]
    Unavailable(PublishError),
    /// A record that can never be written (over the producer's `message.max.bytes`): 413
    /// naming the item, and nothing of the request was sent.
    #[error("{0}")]
    RecordTooLarge(PublishError, usize),
}

impl From<PublishError> for ApiError {
    fn from(e: PublishError) -> Self {
        match e {
            PublishError::TooLarge { index, .. } => ApiError::RecordTooLarge(e, index),
            other => ApiError::Unavailable(other),
        }
    }
}

impl ApiError {
    /// The status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Overloaded(_) | ApiError::ClientOverloaded(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::BodyTooLarge(_) | ApiError::TooManyEvents { .. } | ApiError::RecordTooLarge(..) => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ApiError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::BodyRead(_) | ApiError::Invalid(_) => StatusCode::BAD_REQUEST,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let errors = match &self {
            ApiError::Invalid(items) => items.clone(),
            ApiError::RecordTooLarge(e, index) => vec![FieldError::new(Some(*index), "", e.to_string())],
            other => vec![FieldError::new(None, "", other.to_string())],
        };
        let mut resp = (status, axum::Json(json!({ "errors": errors }))).into_response();
        let h = resp.headers_mut();
        match self {
            ApiError::Overloaded(_) | ApiError::ClientOverloaded(_) => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            ApiError::Unavailable(_) => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            ApiError::Unauthorized => {
                h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::BodyTimeout(_) | ApiError::BodyTooLarge(_) => {
                // The rest of the body is not read: the connection cannot be reused.
                h.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        resp
    }
}

/// The service's router: the API behind the concurrency bound, CORS outermost (a preflight
/// needs neither a token nor a slot).
pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route(PATH, post(post_feedback))
        .layer(middleware::from_fn_with_state(state.clone(), limit_concurrency))
        .layer(middleware::from_fn_with_state(state.clone(), cors))
        .with_state(state)
}

async fn post_feedback(State(state): State<Arc<ApiState>>, request: Request) -> Response {
    let started = Instant::now();
    let response = match accept(&state, request).await {
        Ok(n) => {
            ::metrics::counter!(metrics::EVENTS_ACCEPTED).increment(n as u64);
            ::metrics::histogram!(metrics::BATCH_EVENTS).record(n as f64);
            (StatusCode::ACCEPTED, axum::Json(json!({ "accepted": n }))).into_response()
        }
        Err(e) => {
            match &e {
                ApiError::Invalid(items) => {
                    let events = items.iter().filter_map(|i| i.index).collect::<std::collections::BTreeSet<_>>();
                    ::metrics::counter!(metrics::EVENTS_REJECTED).increment(events.len() as u64);
                    tracing::debug!(errors = items.len(), "request refused: invalid events");
                }
                ApiError::Unavailable(err) => tracing::warn!(error = %err, "request refused: broker unavailable"),
                other => tracing::debug!(error = %other, "request refused"),
            }
            e.into_response()
        }
    };
    let status = response.status().as_u16().to_string();
    ::metrics::histogram!(metrics::REQUEST_SECONDS, "status" => status).record(started.elapsed().as_secs_f64());
    response
}

/// The whole request path; `Ok(n)` once the broker acknowledged all `n` events.
async fn accept(state: &ApiState, request: Request) -> Result<usize, ApiError> {
    let (parts, mut body) = request.into_parts();
    let client = parts.extensions.get::<Client>().map(|c| c.0.clone()).ok_or(ApiError::Unauthorized)?;
    if !is_json(&parts.headers) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let max = state.max_body_bytes;
    let declared = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        linger(&mut body).await;
        return Err(ApiError::BodyTooLarge(max));
    }
    let bytes = read_body(&mut body, max, state.body_read_timeout).await?;
    let received_at = now_rfc3339();
    let raw = parse(&bytes, state.max_events)?;
    let events = state.validator.validate_all(&raw, chrono::Utc::now()).map_err(ApiError::Invalid)?;
    let records: Vec<FeedbackRecord> = events
        .into_iter()
        .map(|event| FeedbackRecord { event, client: client.clone(), received_at: received_at.clone() })
        .collect();
    let t = Instant::now();
    let published = state.publisher.publish(&records).await;
    ::metrics::histogram!(metrics::PUBLISH_SECONDS).record(t.elapsed().as_secs_f64());
    // A record too large says nothing of the broker.
    if !matches!(published, Err(PublishError::TooLarge { .. })) {
        state.health.set(metrics::BROKER_READY, published.is_ok());
    }
    published?;
    Ok(records.len())
}

/// `application/json`, parameters (`; charset=utf-8`) allowed.
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

/// Read at most `max` bytes of `body` within `timeout`; past `max`, [`linger`] then 413.
async fn read_body(body: &mut Body, max: usize, timeout: Duration) -> Result<bytes::Bytes, ApiError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => return Err(ApiError::BodyTimeout(timeout)),
            Ok(None) => return Ok(bytes::Bytes::from(buf)),
            Ok(Some(Err(e))) => return Err(ApiError::BodyRead(e.to_string())),
            Ok(Some(Ok(frame))) => frame,
        };
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > max {
                linger(body).await;
                return Err(ApiError::BodyTooLarge(max));
            }
            buf.extend_from_slice(&data);
        }
    }
}

/// Most bytes read and thrown away after deciding on a 413 (8 MiB), and for how long (2 s).
pub const LINGER_BYTES: usize = 8 << 20;
/// See [`LINGER_BYTES`].
pub const LINGER_TIME: Duration = Duration::from_secs(2);

/// A lingering close, as nginx (`lingering_close`) and Go's net/http do: read and discard what
/// the client is still sending, up to [`LINGER_BYTES`] for [`LINGER_TIME`], before the 413 and
/// the close. Closing a socket with unread data makes the kernel answer with a reset, and a
/// client that sends its whole body before reading (no `Expect: 100-continue`) would see a
/// broken pipe instead of its 413. A client that sends more, or slower, is cut off anyway.
async fn linger(body: &mut Body) {
    let deadline = tokio::time::Instant::now() + LINGER_TIME;
    let mut seen = 0usize;
    while seen < LINGER_BYTES {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(Ok(frame))) => seen += frame.data_ref().map_or(0, |d| d.len()),
            _ => return,
        }
    }
}

/// The body as a list of events: one JSON value or an array of 1..=`max_events`, each kept as
/// its raw text. Nothing becomes a `serde_json::Value` here: the array is walked once,
/// its elements only delimited (`RawValue`: a slice of the body), and the walk stops at element
/// `max_events + 1`. So a 1 MiB body of ~150 000 tiny objects costs about the body plus a
/// pointer per element (before, the whole body became one `Value`: ~12 MiB of heap per MiB);
/// each element becomes a `Value` one at a time during validation
/// ([`EventValidator::validate_all`]), and only if its text is small enough to be an event.
fn parse(bytes: &[u8], max_events: usize) -> Result<Vec<Box<RawValue>>, ApiError> {
    let whole = |m: String| ApiError::Invalid(vec![FieldError::new(None, "", m)]);
    let not_json = |e: serde_json::Error| whole(format!("the body is not valid JSON: {e}"));
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'[') {
        return serde_json::from_slice::<Box<RawValue>>(bytes).map(|one| vec![one]).map_err(not_json);
    }
    let too_many = std::cell::Cell::new(false);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let items = serde::Deserializer::deserialize_seq(&mut de, Elements { max: max_events, too_many: &too_many })
        .and_then(|items| de.end().map(|()| items));
    match items {
        _ if too_many.get() => Err(ApiError::TooManyEvents { max: max_events }),
        Err(e) => Err(not_json(e)),
        Ok(items) if items.is_empty() => Err(whole("the array holds no event".into())),
        Ok(items) => Ok(items),
    }
}

/// Collects at most `max` elements of a JSON array as raw text; one more sets `too_many` and
/// stops the walk.
struct Elements<'a> {
    max: usize,
    too_many: &'a std::cell::Cell<bool>,
}

impl<'de> serde::de::Visitor<'de> for Elements<'_> {
    type Value = Vec<Box<RawValue>>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array of events")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Box<RawValue>>()? {
            if items.len() == self.max {
                self.too_many.set(true);
                return Err(serde::de::Error::custom("too many events"));
            }
            items.push(item);
        }
        Ok(items)
    }
}

/// Authentication, then the request slots: a missing or unknown token is a 401 that takes no
/// slot; an authenticated client takes one of its own `max_requests_per_client` slots and one
/// of the `max_concurrent_requests` shared ones, or gets a 429 at once (never queued). So one
/// client holding slots with slow bodies cannot lock the others out: it runs out of its own
/// share first.
async fn limit_concurrency(State(state): State<Arc<ApiState>>, mut request: Request, next: Next) -> Response {
    let refuse = |e: ApiError| {
        let resp = e.into_response();
        ::metrics::counter!(metrics::REQUESTS, "status" => resp.status().as_u16().to_string()).increment(1);
        resp
    };
    let client = {
        let tokens = state.tokens.read().unwrap_or_else(|p| p.into_inner()).clone();
        tokens.authenticate(request.headers().get(header::AUTHORIZATION)).map(str::to_owned)
    };
    let Some(client) = client else { return refuse(ApiError::Unauthorized) };
    let own = {
        let mut map = state.client_permits.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(client.clone()).or_insert_with(|| Arc::new(Semaphore::new(state.max_requests_per_client))).clone()
    };
    let Ok(own_permit) = own.try_acquire_owned() else {
        return refuse(ApiError::ClientOverloaded(state.max_requests_per_client));
    };
    let Ok(permit) = state.permits.clone().try_acquire_owned() else {
        return refuse(ApiError::Overloaded(state.max_concurrent_requests));
    };
    request.extensions_mut().insert(Client(client));
    ::metrics::gauge!(metrics::IN_FLIGHT).increment(1.0);
    // Decrements on drop, also when the client hangs up and the handler's future is dropped.
    let _in_flight = InFlight;
    let response = next.run(request).await;
    drop((permit, own_permit));
    ::metrics::counter!(metrics::REQUESTS, "status" => response.status().as_u16().to_string()).increment(1);
    response
}

/// Holds one unit of the in-flight gauge.
struct InFlight;

impl Drop for InFlight {
    fn drop(&mut self) {
        ::metrics::gauge!(metrics::IN_FLIGHT).decrement(1.0);
    }
}

/// CORS for `allowed_origins` (see the module doc).
async fn cors(State(state): State<Arc<ApiState>>, request: Request, next: Next) -> Response {
    let origin = request
        .headers()
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .filter(|o| state.allowed_origins.iter().any(|a| a == o))
        .and_then(|o| HeaderValue::from_str(o).ok());
    let preflight =
        request.method() == Method::OPTIONS && request.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        let mut resp = StatusCode::NO_CONTENT.into_response();
        if let Some(origin) = origin {
            let h = resp.headers_mut();
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("POST"));
            h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("authorization, content-type"));
            h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
        } else {
            *resp.status_mut() = StatusCode::FORBIDDEN;
        }
        // The answer depends on Origin whether it allowed it or not: a cache must not give one
        // origin's answer to another.
        resp.headers_mut().insert(header::VARY, HeaderValue::from_static("Origin"));
        return resp;
    }
    let mut resp = next.run(request).await;
    if let Some(origin) = origin {
        let h = resp.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("retry-after"));
    }
    if !state.allowed_origins.is_empty() {
        resp.headers_mut().append(header::VARY, HeaderValue::from_static("Origin"));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_parse_to_event_lists_and_refusals_get_their_status() {
        assert_eq!(parse(br#"{"a":1}"#, 2).unwrap().len(), 1);
        assert_eq!(parse(br#"[{"a":1},{"a":2}]"#, 2).unwrap().len(), 2);
        assert_eq!(parse(br#"[{},{},{}]"#, 2).unwrap_err().status(), StatusCode::PAYLOAD_TOO_LARGE);
        // Counted while walking: the walk stops at element max + 1, before the broken tail.
        assert_eq!(parse(br#"[{},{},{}, oops"#, 2).unwrap_err().status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(parse(br#" [ {"a" : [1, 2]} ] "#, 2).unwrap()[0].get(), r#"{"a" : [1, 2]}"#);
        assert_eq!(parse(br#"[{}] x"#, 2).unwrap_err().status(), StatusCode::BAD_REQUEST, "trailing bytes");
        assert_eq!(parse(br#"[{},"#, 2).unwrap_err().status(), StatusCode::BAD_REQUEST);
        assert_eq!(parse(b"5", 2).unwrap().len(), 1, "a scalar is one (invalid) event, named by validation");
        assert_eq!(parse(b"[]", 2).unwrap_err().status(), StatusCode::BAD_REQUEST);
        assert_eq!(parse(b"\xff\xfe", 2).unwrap_err().status(), StatusCode::BAD_REQUEST);
        let deep = "[".repeat(10_000);
        assert_eq!(parse(deep.as_bytes(), 2).unwrap_err().status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn content_types() {
        let mut h = HeaderMap::new();
        assert!(!is_json(&h));
        for (v, ok) in [
            ("application/json", true),
            ("Application/JSON; charset=utf-8", true),
            ("text/plain", false),
            ("application/jsonx", false),
        ] {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(v));
            assert_eq!(is_json(&h), ok, "{v}");
        }
    }
}
