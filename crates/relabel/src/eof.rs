//! Reading partitions to the end they have now: what the changelog restore and the export both
//! do. librdkafka's partition EOF marks the end (Tansu's ListOffsets LATEST is wrong,
//! `shared/docs/environment.md`), so the reader is a consumer outside any group with
//! `enable.partition.eof=true` ([`reader`]).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use autotag_infra::kafka::{self, KafkaConfig, Role};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

/// The reader's callbacks: librdkafka also reports reaching a partition's end as an error, which
/// this reader expects; everything else is logged as usual.
pub struct ReaderContext;

impl ClientContext for ReaderContext {
    fn error(&self, error: KafkaError, reason: &str) {
        let eof = matches!(error, KafkaError::PartitionEOF(_))
            || error.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::PartitionEOF);
        if !eof {
            tracing::error!(%error, reason, "partition reader");
        }
    }
}

impl ConsumerContext for ReaderContext {}

/// A reader outside any consumer group (`group` only names it; nothing is committed), with the
/// operator's consumer keys and a 16 MiB prefetch per partition (librdkafka's default is 64).
///
/// # Errors
/// librdkafka refused the configuration.
pub fn reader(cfg: &KafkaConfig, group: &str) -> Result<BaseConsumer<ReaderContext>, KafkaError> {
    kafka::client_config(
        cfg,
        Role::Consumer,
        &[
            ("group.id", group),
            ("enable.auto.commit", "false"),
            ("enable.partition.eof", "true"),
            ("auto.offset.reset", "earliest"),
            ("queued.max.messages.kbytes", "16384"),
        ],
    )
    .create_with_context(ReaderContext)
}

/// Why reading to the end failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("reading {topic}[{partition}]: {source}")]
    Kafka { topic: String, partition: i32, source: KafkaError },
    #[error("{topic}[{partition}]: no record and no end within {timeout:?}")]
    Timeout { topic: String, partition: i32, timeout: Duration },
}

/// Read `topic`'s partitions, each from its start offset, until every one reached its end,
/// handing each record to `on_record` (in order within a partition). `idle_timeout` bounds the
/// wait for the next record or end. The reader is unassigned afterwards, whatever happened.
///
/// # Errors
/// A [`ReadError`] (converted into `E`), or the first error of `on_record`.
pub fn read_to_end<E: From<ReadError>>(
    reader: &BaseConsumer<ReaderContext>,
    topic: &str,
    starts: &[(i32, Offset)],
    idle_timeout: Duration,
    mut on_record: impl FnMut(&BorrowedMessage<'_>) -> Result<(), E>,
) -> Result<(), E> {
    let kafka = |partition, source| ReadError::Kafka { topic: topic.to_owned(), partition, source };
    let mut tpl = TopicPartitionList::new();
    for (p, offset) in starts {
        tpl.add_partition_offset(topic, *p, *offset).map_err(|e| kafka(*p, e))?;
    }
    if starts.is_empty() {
        return Ok(());
    }
    reader.assign(&tpl).map_err(|e| kafka(starts[0].0, e))?;
    let mut open: BTreeSet<i32> = starts.iter().map(|(p, _)| *p).collect();
    let mut last = Instant::now();
    let result = loop {
        if open.is_empty() {
            break Ok(());
        }
        let Some(msg) = reader.poll(Duration::from_millis(100)) else {
            if last.elapsed() > idle_timeout {
                let partition = open.first().copied().unwrap_or(-1);
                break Err(ReadError::Timeout { topic: topic.to_owned(), partition, timeout: idle_timeout }.into());
            }
            continue;
        };
        last = Instant::now();
        match msg {
            Ok(m) => {
                if let Err(e) = on_record(&m) {
                    break Err(e);
                }
            }
            Err(KafkaError::PartitionEOF(p)) => {
                open.remove(&p);
            }
            Err(e) => break Err(kafka(-1, e).into()),
        }
    };
    let _ = reader.unassign();
    result
}
