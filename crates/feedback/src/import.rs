//! `autotag feedback import --client NAME FILE.jsonl`: bulk load of feedback events, one JSON
//! event a line, with the API's validation and producer.
//!
//! **Promises**: every non-blank line is validated exactly as one event of a request would be
//! (an `event_id` repeated within the file is rejected after its first line); the valid lines are
//! written with the same producer settings and the same record shape (the given client name,
//! `received_at` = when the import read the line's batch), each batch acknowledged before the
//! next is read. The report counts imported and rejected lines and names the rejected ones.
//!
//! **Limits**: the set of `event_id`s seen is held in memory (one file of feedback is assumed to
//! fit). A broker failure stops the import with an error after the batches already
//! acknowledged; re-running the whole file is safe (consumers count (`client`, `event_id`) once).

use std::collections::HashSet;
use std::io::BufRead;
use std::path::Path;

use autotag_contract::{FeedbackRecord, now_rfc3339};
use serde_json::Value;

use crate::auth::is_client_name;
use crate::config::FeedbackConfig;
use crate::publish::{PublishError, Publisher};
use crate::validate::{EventValidator, FieldError};

/// Why an import stopped.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("client name `{0}` is not 1-64 of A-Z a-z 0-9 . _ -")]
    Client(String),
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("creating the Kafka producer: {0}")]
    Producer(#[from] rdkafka::error::KafkaError),
    #[error("after {imported} imported events: {source}")]
    Publish { imported: usize, source: PublishError },
}

/// What an import did.
#[derive(Debug, Default)]
pub struct ImportReport {
    /// Events acknowledged by the broker.
    pub imported: usize,
    /// Rejected lines (1-based) and why.
    pub rejected: Vec<(usize, Vec<FieldError>)>,
}

/// Import `file` as `client` (see the module doc).
///
/// # Errors
/// [`ImportError`]: a bad client name, an unreadable file, a producer the configuration does not
/// allow, or the broker not acknowledging a batch within `feedback.broker_timeout_ms`.
pub async fn import(cfg: &FeedbackConfig, client: &str, file: &Path) -> Result<ImportReport, ImportError> {
    if !is_client_name(client) {
        return Err(ImportError::Client(client.to_owned()));
    }
    let read_err = |source| ImportError::Read { path: file.display().to_string(), source };
    let reader = std::io::BufReader::new(std::fs::File::open(file).map_err(read_err)?);
    let f = &cfg.feedback;
    let validator = EventValidator::new(crate::limits(f));
    let publisher = Publisher::new(&cfg.kafka, &f.topic, f.broker_timeout)?;
    let mut report = ImportReport::default();
    let mut seen: HashSet<String> = HashSet::new();
    let mut batch: Vec<FeedbackRecord> = Vec::new();
    for (i, line) in reader.split(b'\n').enumerate() {
        let line_no = i + 1;
        let line = line.map_err(read_err)?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let now = chrono::Utc::now();
        let checked = serde_json::from_slice::<Value>(&line)
            .map_err(|e| vec![FieldError::new(Some(line_no), "", format!("not valid JSON: {e}"))])
            .and_then(|v| validator.validate(line_no, &v, now));
        match checked {
            Err(errors) => report.rejected.push((line_no, errors)),
            Ok(event) if !seen.insert(event.event_id.clone()) => report.rejected.push((
                line_no,
                vec![FieldError::new(Some(line_no), "/event_id", "repeats the event_id of an earlier line")],
            )),
            Ok(event) => {
                batch.push(FeedbackRecord { event, client: client.to_owned(), received_at: now_rfc3339() });
                if batch.len() >= f.max_events {
                    flush(&publisher, &mut batch, &mut report).await?;
                }
            }
        }
    }
    flush(&publisher, &mut batch, &mut report).await?;
    ::metrics::counter!(crate::metrics::EVENTS_REJECTED).increment(report.rejected.len() as u64);
    Ok(report)
}

async fn flush(
    publisher: &Publisher,
    batch: &mut Vec<FeedbackRecord>,
    report: &mut ImportReport,
) -> Result<(), ImportError> {
    if batch.is_empty() {
        return Ok(());
    }
    publisher.publish(batch).await.map_err(|source| ImportError::Publish { imported: report.imported, source })?;
    report.imported += batch.len();
    ::metrics::counter!(crate::metrics::EVENTS_ACCEPTED).increment(batch.len() as u64);
    batch.clear();
    Ok(())
}
