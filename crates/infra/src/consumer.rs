//! The group consumer: joins the consumer group, hands revoked partitions over cleanly, and
//! commits the contiguous watermark of [`Offsets`] — recording a commit only once the broker
//! confirmed it.
//!
//! Auto-commit and auto offset store are off. Commits are synchronous, so that their result is
//! known: librdkafka reports the outcome of a manual *asynchronous* commit to nobody unless an
//! `offset_commit_cb` is configured, which rust-rdkafka's event API does not do (measured: the
//! callback never fired; librdkafka `rd_kafka_cgrp_propagate_commit_result`). To keep the
//! consumer loop free, [`Committer`] runs one commit at a time on a blocking thread.
//! [`commit_watermark`] records offsets as committed only when the broker confirmed them; a
//! failed commit leaves them committable, so the next tick sends them again (commits are
//! idempotent). [`commit_final`] is the commit at shutdown, re-sent until it succeeds or its
//! attempts run out. `autotag_offset_commits_total` counts confirmed commits,
//! `autotag_offset_commit_failures_total` failed ones.
//!
//! On revocation the finished part of the revoked partitions is committed synchronously before
//! they move to another member (not when the assignment was lost); their records still in flight
//! stay tracked (see [`crate::offsets`]). On assignment the group's committed offsets are read
//! (the watermark's base) and the partitions are resumed (a pause survives re-assignment in
//! librdkafka).

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tracing::{debug, error, info, warn};

use crate::kafka::{KafkaConfig, Role, client_config};
use crate::offsets::{Offsets, TopicPartition};
use crate::telemetry::{self, Health};

/// librdkafka callbacks of the group consumer.
pub struct GroupContext {
    offsets: Offsets,
    health: Arc<Health>,
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let parts = partitions_of(tpl);
                // A lost assignment (session timed out, e.g. during a broker outage) may belong
                // to another member already: commit nothing for it (librdkafka's rule).
                let lost = consumer.assignment_lost();
                let final_offsets = self.offsets.lock().revoke(&parts, lost);
                if lost {
                    metrics::counter!(telemetry::LOST_ASSIGNMENTS).increment(1);
                    warn!(partitions = ?parts, in_flight = self.offsets.lock().pending(),
                        "assignment lost; what is in flight stays tracked until its outcome is acknowledged");
                } else {
                    info!(partitions = ?parts, commits = ?final_offsets, "partitions revoked");
                }
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
            // Before librdkafka starts fetching: every record of the new assignment is
            // received in its epoch.
            Rebalance::Assign(tpl) => self.offsets.lock().assign(&partitions_of(tpl)),
            Rebalance::Error(e) => warn!(error = %e, "rebalance error"),
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            metrics::counter!(telemetry::REBALANCES).increment(1);
            info!(partitions = ?partitions_of(tpl), "partitions assigned");
            // librdkafka keeps an application's pause across revocation and re-assignment
            // (openmeter #4987, confluent-kafka-go #193): a partition paused for backpressure,
            // lost, and given back while not paused any more would never be fetched again.
            // Resume what is assigned; a source still under pressure pauses it again when its
            // first record arrives (as Snuba and the OpenTelemetry receiver do).
            if let Err(e) = consumer.resume(tpl) {
                warn!(error = %e, "resuming the assigned partitions failed");
            }
            // The base of the new epochs; when the broker does not answer in time, the
            // committer reads it before its next commit.
            if let Err(e) = read_bases(consumer, &self.offsets, BASE_TIMEOUT) {
                warn!(error = %e, "reading the committed offsets of the assignment failed; retried before the next commit");
            }
            self.health.set(telemetry::CONSUMER_JOINED, true);
        }
    }
}

/// How long reading the group's committed offsets of new partitions may take.
const BASE_TIMEOUT: Duration = Duration::from_secs(5);

fn partitions_of(tpl: &TopicPartitionList) -> Vec<TopicPartition> {
    tpl.elements().iter().map(|e| (e.topic().to_owned(), e.partition())).collect()
}

/// Read the group's committed offsets of the assigned partitions whose base is unknown
/// ([`crate::offsets::OffsetTracker::set_base`]): nothing of a partition is committed before.
///
/// # Errors
/// The broker did not answer within `timeout` (the bases stay unknown, so nothing of those
/// partitions is committed yet).
pub fn read_bases<C: Consumer<GroupContext>>(consumer: &C, offsets: &Offsets, timeout: Duration) -> KafkaResult<()> {
    let todo = offsets.lock().needs_base();
    if todo.is_empty() {
        return Ok(());
    }
    let mut tpl = TopicPartitionList::new();
    for ((t, p), _) in &todo {
        tpl.add_partition(t, *p);
    }
    let got = consumer.committed_offsets(tpl, timeout)?;
    let mut tracker = offsets.lock();
    for ((t, p), epoch) in todo {
        let Some(e) = got.find_partition(&t, p) else { continue };
        let committed = match e.offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        };
        tracker.set_base(&t, p, epoch, committed);
        debug!(topic = %t, partition = p, ?committed, "assignment base");
    }
    Ok(())
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

/// Commit every partition whose watermark moved past its confirmed commit, synchronously
/// (blocks until the broker answered), and record it when the broker confirmed it. Any
/// partition's error fails the whole commit (librdkafka `rd_kafka_handle_OffsetCommit`), so
/// nothing unconfirmed is ever recorded.
///
/// # Errors
/// The broker refused the commit or could not be reached; the offsets stay committable.
pub fn commit_watermark(consumer: &GroupConsumer, offsets: &Offsets) -> KafkaResult<()> {
    // Partitions whose base could not be read at assignment: read it now (until then they
    // are left out of the commit).
    if let Err(e) = read_bases(consumer, offsets, BASE_TIMEOUT) {
        warn!(error = %e, "reading the committed offsets of the assignment failed; retried before the next commit");
    }
    commit_with(offsets, |tpl| consumer.commit(tpl, CommitMode::Sync))
}

/// The bookkeeping of [`commit_watermark`] around any synchronous `send` of the offsets: record
/// them only when `send` succeeded; count a failure and leave them committable otherwise.
fn commit_with(offsets: &Offsets, send: impl FnOnce(&TopicPartitionList) -> KafkaResult<()>) -> KafkaResult<()> {
    let todo = offsets.lock().committable();
    if todo.is_empty() {
        return Ok(());
    }
    match send(&to_tpl(&todo)) {
        Ok(()) => {
            metrics::counter!(telemetry::COMMITTED_OFFSETS).increment(1);
            offsets.lock().mark_committed(&todo);
            debug!(offsets = ?todo, "committed");
            Ok(())
        }
        Err(e) => {
            metrics::counter!(telemetry::COMMIT_FAILURES).increment(1);
            offsets.lock().note_commit_failure();
            warn!(error = %e, "offset commit failed; it will be re-sent");
            Err(e)
        }
    }
}

/// The last commit before the consumer leaves the group: synchronous, re-sent after `pause`
/// until it succeeds or `attempts` ran out. Returns whether every finished offset is committed.
pub fn commit_final(consumer: &GroupConsumer, offsets: &Offsets, attempts: u32, pause: Duration) -> bool {
    for attempt in 1..=attempts.max(1) {
        match commit_watermark(consumer, offsets) {
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

/// Runs [`commit_watermark`] on a blocking thread, one commit at a time, so that the consumer
/// loop never waits for the broker. A tick while a commit is in flight does nothing: the next
/// tick after it sends whatever is committable then.
#[derive(Clone)]
pub struct Committer {
    consumer: Arc<GroupConsumer>,
    offsets: Offsets,
    in_flight: Arc<std::sync::atomic::AtomicBool>,
}

impl Committer {
    /// A committer of `consumer`'s watermark in `offsets`.
    pub fn new(consumer: Arc<GroupConsumer>, offsets: Offsets) -> Self {
        Self { consumer, offsets, in_flight: Arc::default() }
    }

    /// Start a commit unless one is in flight. Must be called within a Tokio runtime.
    pub fn tick(&self) {
        use std::sync::atomic::Ordering;
        if self.in_flight.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let _ = commit_watermark(&this.consumer, &this.offsets);
            this.in_flight.store(false, Ordering::Release);
        });
    }

    /// Whether a commit is running.
    pub fn is_busy(&self) -> bool {
        self.in_flight.load(std::sync::atomic::Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::error::RDKafkaErrorCode;

    /// A commit the broker refuses (faked at the send: Tansu accepts every OffsetCommit, see
    /// `tests/commit.rs`) is not recorded, is counted, and the next commit sends the same offsets.
    #[test]
    fn a_failed_commit_is_not_recorded_and_is_re_sent() {
        let offsets = Offsets::default();
        offsets.lock().assign(&[("t".to_owned(), 0)]);
        let epoch = offsets.lock().epoch_of("t", 0).expect("assigned");
        offsets.lock().set_base("t", 0, epoch, None);
        let g = offsets.register_received("t", 0, 10);
        offsets.complete("t", 0, 10, g);
        let mut sent = Vec::new();
        let refused = commit_with(&offsets, |tpl| {
            sent.push(tpl.to_topic_map());
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::RebalanceInProgress))
        });
        assert!(refused.is_err());
        assert_eq!(offsets.lock().committable(), vec![("t".to_owned(), 0, 11)], "a refused commit was recorded");
        assert_eq!(offsets.lock().commit_failures(), 1);
        commit_with(&offsets, |tpl| {
            sent.push(tpl.to_topic_map());
            Ok(())
        })
        .expect("confirmed");
        assert_eq!(sent[0], sent[1], "the second commit re-sends the refused offsets");
        assert!(offsets.lock().committable().is_empty(), "a confirmed commit is recorded");
        // Nothing new: no commit is sent at all.
        commit_with(&offsets, |_| panic!("nothing to commit")).expect("no-op");
    }
}
