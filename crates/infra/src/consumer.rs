//! The group consumer: joins the consumer group, hands revoked partitions over cleanly, and
//! commits the contiguous watermark of [`Offsets`] — recording a commit only once the broker
//! confirmed it.
//!
//! Auto-commit and auto offset store are off. [`commit_watermark`] sends the committable
//! offsets; with [`CommitMode::Async`] they are marked committed by the commit callback when the
//! broker acknowledges them, and a failed commit leaves them committable, so the next tick sends
//! them again (commits are idempotent). [`commit_final`] is the synchronous commit at shutdown,
//! re-sent until it succeeds or its attempts run out. `autotag_offset_commits_total` counts
//! confirmed commits, `autotag_offset_commit_failures_total` failed ones.
//!
//! On revocation the finished part of the revoked partitions is committed synchronously before
//! they move to another member, and the partitions are forgotten: late completions of their
//! in-flight records are ignored (see [`crate::offsets`]).

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tracing::{debug, error, info, warn};

use crate::kafka::{KafkaConfig, Role, client_config};
use crate::offsets::Offsets;
use crate::telemetry::{self, Health};

/// librdkafka callbacks of the group consumer.
pub struct GroupContext {
    offsets: Offsets,
    health: Arc<Health>,
}

impl GroupContext {
    /// Record a commit the broker confirmed: per partition, unless that partition reported an
    /// error of its own.
    fn confirmed(&self, tpl: &TopicPartitionList) {
        let mut ok = Vec::new();
        for e in tpl.elements() {
            match (e.error(), e.offset()) {
                (Ok(()), Offset::Offset(o)) => ok.push((e.topic().to_owned(), e.partition(), o)),
                (Err(err), _) => {
                    warn!(topic = e.topic(), partition = e.partition(), error = %err, "offset commit failed for a partition; it will be re-sent");
                    metrics::counter!(telemetry::COMMIT_FAILURES).increment(1);
                }
                _ => {}
            }
        }
        if !ok.is_empty() {
            debug!(offsets = ?ok, "commit confirmed");
            metrics::counter!(telemetry::COMMITTED_OFFSETS).increment(1);
            self.offsets.lock().mark_committed(&ok);
        }
    }
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let parts: Vec<(String, i32)> =
                    tpl.elements().iter().map(|e| (e.topic().to_owned(), e.partition())).collect();
                let final_offsets = self.offsets.lock().revoke(&parts);
                info!(partitions = ?parts, commits = ?final_offsets, "partitions revoked");
                if !final_offsets.is_empty() {
                    match consumer.commit(&to_tpl(&final_offsets), CommitMode::Sync) {
                        Ok(()) => metrics::counter!(telemetry::COMMITTED_OFFSETS).increment(1),
                        Err(e) => {
                            metrics::counter!(telemetry::COMMIT_FAILURES).increment(1);
                            warn!(error = %e, "commit on revoke failed; the new owner redoes those records");
                        }
                    }
                }
            }
            Rebalance::Assign(_) => {}
            Rebalance::Error(e) => warn!(error = %e, "rebalance error"),
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let parts: Vec<(String, i32)> =
                tpl.elements().iter().map(|e| (e.topic().to_owned(), e.partition())).collect();
            info!(partitions = ?parts, "partitions assigned");
            self.health.set(telemetry::CONSUMER_JOINED, true);
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => self.confirmed(offsets),
            Err(e) => {
                metrics::counter!(telemetry::COMMIT_FAILURES).increment(1);
                warn!(error = %e, "offset commit failed; it will be re-sent");
            }
        }
    }
}

/// The group consumer's type.
pub type GroupConsumer = StreamConsumer<GroupContext>;

/// Our defaults for a group consumer; the operator's `kafka.consumer` keys win.
pub fn consumer_defaults(group_id: &str) -> Vec<(&str, &str)> {
    vec![
        ("group.id", group_id),
        ("enable.auto.commit", "false"),
        ("enable.auto.offset.store", "false"),
        // `latest` is wrong on the test broker (docs: environment); `earliest` never skips.
        ("auto.offset.reset", "earliest"),
        ("partition.assignment.strategy", "cooperative-sticky"),
        // Bound librdkafka's prefetch buffer (default 64 MiB per partition).
        ("queued.max.messages.kbytes", "16384"),
    ]
}

/// Build the group consumer of `group_id`. Offsets are committed only by [`commit_watermark`]
/// and [`commit_final`] (and on revocation).
///
/// # Errors
/// librdkafka refused the configuration (an unknown or invalid key, named in the error).
pub fn create_consumer(
    cfg: &KafkaConfig,
    group_id: &str,
    offsets: Offsets,
    health: Arc<Health>,
) -> Result<Arc<GroupConsumer>, KafkaError> {
    let cc = client_config(cfg, Role::Consumer, &consumer_defaults(group_id));
    let consumer: GroupConsumer = cc.create_with_context(GroupContext { offsets, health })?;
    Ok(Arc::new(consumer))
}

/// Subscribe, logging a failure (fatal for the caller: a bad topic list or config).
///
/// # Errors
/// librdkafka's subscribe error.
pub fn subscribe(consumer: &GroupConsumer, topics: &[&str]) -> Result<(), KafkaError> {
    consumer.subscribe(topics).inspect_err(|e| error!(error = %e, "subscribe failed"))
}

pub(crate) fn to_tpl(offsets: &[(String, i32, i64)]) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    for (t, p, o) in offsets {
        // Offsets come from consumed records, so they are valid.
        let _ = tpl.add_partition_offset(t, *p, Offset::Offset(*o));
    }
    tpl
}

/// Send a commit of every partition whose watermark moved past its confirmed commit.
///
/// Async: returns at once; the commit callback records the commit when the broker confirms it.
/// Sync: waits for the broker and records the commit when it succeeded.
///
/// # Errors
/// The commit could not be sent, or (sync) the broker refused it; the offsets stay committable.
pub fn commit_watermark(consumer: &GroupConsumer, offsets: &Offsets, mode: CommitMode) -> KafkaResult<()> {
    let todo = offsets.lock().committable();
    if todo.is_empty() {
        return Ok(());
    }
    match consumer.commit(&to_tpl(&todo), mode) {
        Ok(()) => {
            if matches!(mode, CommitMode::Sync) {
                metrics::counter!(telemetry::COMMITTED_OFFSETS).increment(1);
                offsets.lock().mark_committed(&todo);
            }
            debug!(offsets = ?todo, ?mode, "commit sent");
            Ok(())
        }
        Err(e) => {
            metrics::counter!(telemetry::COMMIT_FAILURES).increment(1);
            warn!(error = %e, "offset commit failed; it will be re-sent");
            Err(e)
        }
    }
}

/// The last commit before the consumer leaves the group: synchronous, re-sent after `pause`
/// until it succeeds or `attempts` ran out. Returns whether every finished offset is committed.
pub fn commit_final(consumer: &GroupConsumer, offsets: &Offsets, attempts: u32, pause: Duration) -> bool {
    for attempt in 1..=attempts.max(1) {
        match commit_watermark(consumer, offsets, CommitMode::Sync) {
            Ok(()) => return true,
            Err(e) if attempt < attempts => {
                warn!(attempt, error = %e, "final commit failed; re-sending");
                std::thread::sleep(pause);
            }
            Err(e) => {
                error!(attempts, error = %e, "final commit failed; the next owner redoes the uncommitted records")
            }
        }
    }
    false
}
