//! Publish: write suggestions and dead letters, then release their offsets.
//!
//! A record's offset is marked done only after the broker acknowledged its
//! outcome (idempotent producer, `acks=all`), which is what makes the
//! worker at-least-once: a crash between the acknowledgement and the next
//! commit re-emits the same outcome, with the same deterministic `event_id`.
//!
//! Sends run concurrently (up to `max_pending`) so that the broker's round
//! trip never stalls the model. Produce errors are retried with capped
//! backoff until they succeed or the shutdown deadline abandons them. Every
//! failed delivery is reported to the shared producer handle
//! (`autotag_infra::producer`), which rebuilds a producer that can no longer
//! deliver (fenced after a broker restart, or stuck past its message timeout);
//! the retry then goes through the new one.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use rdkafka::producer::FutureRecord;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use autotag_contract::{DeadLetter, ModelRef, Reason, Suggestion};
use autotag_infra::producer::{LastAck, ProducerHandle};
use autotag_infra::retry::{Retrier, RetryConfig};
use autotag_infra::shutdown::Shutdown;
use autotag_infra::telemetry::Health;

use super::{Outcome, Ticket};
use crate::telemetry;

/// A serialised output.
struct Output {
    topic: String,
    key: Option<String>,
    payload: Vec<u8>,
    kind: OutputKind,
}

enum OutputKind {
    Suggestion { uploaded_at: chrono::DateTime<chrono::Utc> },
    DeadLetter { stage: &'static str, reason: Reason },
}

/// The publish stage.
pub struct PublishStage {
    pub producer: Arc<ProducerHandle>,
    pub suggestions_topic: String,
    pub dead_letter_topic: String,
    pub model: ModelRef,
    pub retry: RetryConfig,
    pub health: Arc<Health>,
    pub outcomes: mpsc::Receiver<Outcome>,
    pub max_pending: usize,
    /// When the broker last acknowledged an output (the `autotag_kafka_seconds_since_last_ack` gauge).
    pub last_ack: Arc<LastAck>,
    pub shutdown: Shutdown,
}

impl PublishStage {
    fn render(&self, outcome: Outcome) -> (Ticket, Output) {
        match outcome {
            Outcome::Tagged { job, tags, existing_tag_scores, frames, inferred } => {
                let mut s = Suggestion::new(&job.upload.event, self.model.clone(), tags, frames, job.ticket.source)
                    .with_warnings(&job.warnings);
                s.existing_tag_scores = existing_tag_scores;
                s.frames_inferred = Some(inferred);
                // A struct of strings and numbers: serialising it cannot fail.
                let payload = serde_json::to_vec(&s).unwrap_or_default();
                let out = Output {
                    topic: self.suggestions_topic.clone(),
                    key: Some(job.upload.event.gif_id.clone()),
                    payload,
                    kind: OutputKind::Suggestion { uploaded_at: job.upload.uploaded_at },
                };
                (job.ticket, out)
            }
            Outcome::Failed { ticket, stage, reason, message } => {
                let d =
                    DeadLetter::new(ticket.record.origin(), ticket.record.payload.as_deref(), stage, reason, message);
                let payload = serde_json::to_vec(&d).unwrap_or_default();
                let out = Output {
                    topic: self.dead_letter_topic.clone(),
                    key: ticket.record.key.clone(),
                    payload,
                    kind: OutputKind::DeadLetter { stage: stage.as_str(), reason },
                };
                (ticket, out)
            }
        }
    }

    pub async fn run(mut self) {
        let mut pending = FuturesUnordered::new();
        loop {
            tokio::select! {
                o = self.outcomes.recv(), if pending.len() < self.max_pending => match o {
                    Some(o) => {
                        let (ticket, out) = self.render(o);
                        pending.push(send(self.producer.clone(), self.last_ack.clone(), ticket, out,
                            self.retry.clone(), self.health.clone(), self.shutdown.clone()));
                    }
                    None => break,
                },
                Some(()) = pending.next(), if !pending.is_empty() => {}
            }
        }
        while pending.next().await.is_some() {}
        // Flush whatever librdkafka still buffers (all were acknowledged above,
        // unless abandoned).
        self.producer.flush(Duration::from_secs(2));
        info!("publish stage drained");
    }
}

async fn send(
    handle: Arc<ProducerHandle>,
    last_ack: Arc<LastAck>,
    ticket: Ticket,
    out: Output,
    retry: RetryConfig,
    health: Arc<Health>,
    mut shutdown: Shutdown,
) {
    let mut retrier = Retrier::new("kafka", retry, health);
    loop {
        let mut rec: FutureRecord<'_, String, Vec<u8>> = FutureRecord::to(&out.topic).payload(&out.payload);
        if let Some(k) = &out.key {
            rec = rec.key(k);
        }
        let producer = handle.current();
        let result = tokio::select! {
            r = producer.send(rec, Duration::from_secs(5)) => r,
            _ = shutdown.aborted() => return,
        };
        match result {
            Ok(delivery) => {
                debug!(topic = %out.topic, partition = delivery.partition, offset = delivery.offset, "published");
                ticket.complete();
                last_ack.record();
                match out.kind {
                    OutputKind::Suggestion { uploaded_at } => {
                        metrics::counter!(telemetry::SUGGESTIONS_PUBLISHED, "lane" => ticket.source.as_str())
                            .increment(1);
                        let lag = (chrono::Utc::now() - uploaded_at).num_milliseconds().max(0) as f64 / 1000.0;
                        metrics::histogram!(telemetry::END_TO_END_SECONDS).record(lag);
                    }
                    OutputKind::DeadLetter { stage, reason } => {
                        metrics::counter!(telemetry::DEAD_LETTERS, "stage" => stage, "reason" => reason.as_str())
                            .increment(1);
                    }
                }
                metrics::histogram!(telemetry::STAGE_SECONDS, "stage" => "pipeline", "lane" => ticket.source.as_str())
                    .record(ticket.consumed_at.elapsed().as_secs_f64());
                return;
            }
            Err((e, _)) => {
                warn!(topic = %out.topic, attempt = retrier.attempts() + 1, error = %e, "produce failed; retrying");
                handle.recover(&producer, &e);
                if !retrier.failed(e.to_string(), &mut shutdown).await {
                    return;
                }
            }
        }
    }
}
