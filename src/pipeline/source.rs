//! Source: consume upload events, track offsets, commit a contiguous watermark.
//!
//! Records finish out of order (a small GIF overtakes a large one), so the
//! committed offset of a partition is the lowest offset still unfinished, or
//! one past the highest consumed when none is: committing past an unfinished
//! record would lose it on a crash. This is rust-rdkafka's
//! `at_least_once` example made safe for concurrent processing.
//!
//! Backpressure: each record takes a permit of the in-flight semaphore and
//! holds it until its outcome is acknowledged. When no permit comes within
//! `pause_after_ms`, the assigned partitions are paused (the consumer keeps
//! polling, so the group membership stays alive) and resumed when capacity
//! returns. Waiting a little before pausing avoids flapping: every pause
//! discards librdkafka's prefetched messages.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::{Semaphore, mpsc};
use tracing::{debug, error, info, warn};

use super::{Job, Outcome, Record, Shutdown, Ticket};
use crate::config::KafkaConfig;
use crate::contract::{self, Source, Stage};
use crate::telemetry::{self, Health};

/// Per-partition state of the watermark.
#[derive(Debug, Default)]
struct PartitionState {
    generation: u64,
    /// Consumed, not yet finished.
    pending: BTreeSet<i64>,
    /// One past the highest offset consumed.
    next: Option<i64>,
    /// Last offset committed (or known committed).
    committed: Option<i64>,
}

impl PartitionState {
    fn watermark(&self) -> Option<i64> {
        self.pending.first().copied().or(self.next)
    }
}

/// Contiguous-watermark offset tracking for all assigned partitions.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    partitions: HashMap<(String, i32), PartitionState>,
    generation_counter: u64,
}

impl OffsetTracker {
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&mut self, topic: &str, partition: i32) -> &mut PartitionState {
        let key = (topic.to_owned(), partition);
        if !self.partitions.contains_key(&key) {
            self.generation_counter += 1;
            let generation = self.generation_counter;
            self.partitions.insert(key.clone(), PartitionState { generation, ..Default::default() });
        }
        self.partitions.get_mut(&key).expect("inserted above")
    }

    /// A record was consumed; returns the generation its completion must carry.
    pub fn register(&mut self, topic: &str, partition: i32, offset: i64) -> u64 {
        let st = self.state(topic, partition);
        st.pending.insert(offset);
        st.next = Some(st.next.map_or(offset + 1, |n| n.max(offset + 1)));
        st.generation
    }

    /// A record's outcome was acknowledged. Ignored when the partition was
    /// revoked (or re-assigned) since the record was consumed.
    pub fn complete(&mut self, topic: &str, partition: i32, offset: i64, generation: u64) -> bool {
        match self.partitions.get_mut(&(topic.to_owned(), partition)) {
            Some(st) if st.generation == generation => st.pending.remove(&offset),
            _ => false,
        }
    }

    /// Offsets to commit now: per partition, the watermark when it moved
    /// past what was last committed.
    pub fn committable(&self) -> Vec<(String, i32, i64)> {
        let mut out: Vec<_> = self
            .partitions
            .iter()
            .filter_map(|((t, p), st)| {
                let w = st.watermark()?;
                (st.committed.is_none_or(|c| w > c)).then(|| (t.clone(), *p, w))
            })
            .collect();
        out.sort();
        out
    }

    /// Record that offsets were committed.
    pub fn mark_committed(&mut self, offsets: &[(String, i32, i64)]) {
        for (t, p, o) in offsets {
            if let Some(st) = self.partitions.get_mut(&(t.clone(), *p)) {
                st.committed = Some(st.committed.map_or(*o, |c| c.max(*o)));
            }
        }
    }

    /// Partitions are being revoked: return their final committable offsets
    /// and forget them, so late completions of their in-flight records are
    /// ignored and nothing of theirs is committed by this worker afterwards.
    pub fn revoke(&mut self, partitions: &[(String, i32)]) -> Vec<(String, i32, i64)> {
        let mut out = Vec::new();
        for key in partitions {
            if let Some(st) = self.partitions.remove(key)
                && let Some(w) = st.watermark()
                && st.committed.is_none_or(|c| w > c)
            {
                out.push((key.0.clone(), key.1, w));
            }
        }
        out
    }

    /// Records consumed and not finished, all partitions.
    pub fn pending(&self) -> usize {
        self.partitions.values().map(|s| s.pending.len()).sum()
    }
}

/// Shared handle to the tracker (locked briefly from the source, the
/// publisher and librdkafka's rebalance callback).
#[derive(Debug, Clone, Default)]
pub struct Offsets(Arc<Mutex<OffsetTracker>>);

impl Offsets {
    pub fn lock(&self) -> MutexGuard<'_, OffsetTracker> {
        // A panic while holding the lock cannot leave the tracker in a state
        // worse than a crash would; keep going.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Mark a ticket's record finished (its outcome is durably written).
    pub fn complete(&self, ticket: &Ticket) {
        let r = &ticket.record;
        self.lock().complete(&r.topic, r.partition, r.offset, ticket.generation);
    }
}

fn to_tpl(offsets: &[(String, i32, i64)]) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    for (t, p, o) in offsets {
        // Offsets come from consumed records, so they are valid.
        let _ = tpl.add_partition_offset(t, *p, Offset::Offset(*o));
    }
    tpl
}

/// librdkafka callbacks: commit the revoked partitions' watermark before
/// they move to another worker.
pub struct SourceContext {
    offsets: Offsets,
    health: Arc<Health>,
}

impl ClientContext for SourceContext {}

impl ConsumerContext for SourceContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let parts: Vec<(String, i32)> =
                    tpl.elements().iter().map(|e| (e.topic().to_owned(), e.partition())).collect();
                let final_offsets = self.offsets.lock().revoke(&parts);
                info!(partitions = ?parts, commits = ?final_offsets, "partitions revoked");
                if !final_offsets.is_empty()
                    && let Err(e) = consumer.commit(&to_tpl(&final_offsets), CommitMode::Sync)
                {
                    warn!(error = %e, "commit on revoke failed; the new owner redoes those records");
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
            self.health.set_consumer_joined(true);
        }
    }
}

pub type SourceConsumer = StreamConsumer<SourceContext>;

/// Build the group consumer. Auto-commit and auto-store are off: offsets are
/// committed only by [`commit_watermark`].
pub fn create_consumer(
    cfg: &KafkaConfig,
    offsets: Offsets,
    health: Arc<Health>,
) -> Result<Arc<SourceConsumer>, rdkafka::error::KafkaError> {
    let defaults = [
        ("group.id", cfg.group_id.as_str()),
        ("enable.auto.commit", "false"),
        ("enable.auto.offset.store", "false"),
        ("auto.offset.reset", "earliest"),
        ("partition.assignment.strategy", "cooperative-sticky"),
        // Bound librdkafka's prefetch buffer (default 64 MiB per partition).
        ("queued.max.messages.kbytes", "16384"),
    ];
    let cc = super::kafka_client_config(&cfg.brokers, &defaults, &cfg.consumer);
    let consumer: SourceConsumer = cc.create_with_context(SourceContext { offsets, health })?;
    Ok(Arc::new(consumer))
}

/// Commit the current watermark of every partition. Sync on shutdown, async
/// otherwise.
pub fn commit_watermark(consumer: &SourceConsumer, offsets: &Offsets, mode: CommitMode) {
    let todo = offsets.lock().committable();
    if todo.is_empty() {
        return;
    }
    match consumer.commit(&to_tpl(&todo), mode) {
        Ok(()) => {
            debug!(offsets = ?todo, "committed");
            metrics::counter!(telemetry::COMMITTED_OFFSETS).increment(1);
            offsets.lock().mark_committed(&todo);
        }
        Err(e) => warn!(error = %e, "offset commit failed; will retry"),
    }
}

/// Everything the source loop needs.
pub struct SourceStage {
    pub consumer: Arc<SourceConsumer>,
    pub offsets: Offsets,
    pub in_flight: Arc<Semaphore>,
    /// Free permits needed to resume after a pause.
    pub resume_at: usize,
    pub pause_after: Duration,
    pub commit_interval: Duration,
    pub source: Source,
    pub jobs: mpsc::Sender<Job>,
    pub outcomes: mpsc::Sender<Outcome>,
    pub shutdown: Shutdown,
}

impl SourceStage {
    /// Consume until shutdown. Returns when stopping; dropping `jobs` and
    /// `outcomes` then lets the downstream stages drain.
    pub async fn run(mut self) {
        let mut commit_tick = tokio::time::interval(self.commit_interval);
        commit_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut paused = false;
        // Records that arrived while paused (already fetched, or from a
        // partition assigned during the pause). Bounded by librdkafka's
        // prefetch: every arrival re-pauses the whole assignment.
        let mut held: VecDeque<OwnedMessage> = VecDeque::new();
        loop {
            // 1. Capacity: take a permit, pausing the partitions if it takes too long.
            let permit = match self.in_flight.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(_) => {
                    let waited = Instant::now();
                    let permit = loop {
                        tokio::select! {
                            p = self.in_flight.clone().acquire_owned() => break p.ok(),
                            _ = commit_tick.tick() => commit_watermark(&self.consumer, &self.offsets, CommitMode::Async),
                            _ = self.shutdown.stopped() => break None,
                            // Keep polling while paused: it serves the group protocol and
                            // max.poll.interval.ms, however long the pressure lasts.
                            m = self.consumer.recv(), if paused => match m {
                                Ok(m) => {
                                    held.push_back(m.detach());
                                    self.set_paused(true);
                                }
                                Err(e) => warn!(error = %e, "consumer error while paused"),
                            },
                            _ = tokio::time::sleep(self.pause_after), if !paused => {
                                self.set_paused(true);
                                paused = true;
                                debug!(after = ?waited.elapsed(), "paused for backpressure");
                            }
                        }
                    };
                    match permit {
                        Some(p) => p,
                        None => break,
                    }
                }
            };
            // 2. A record: one held back while paused, or the next one. While
            // paused, resume only once half the capacity is free again
            // (hysteresis: pause/resume flapping discards librdkafka's prefetch).
            let msg = match held.pop_front() {
                Some(m) => Some(m),
                None => loop {
                    if paused && self.in_flight.available_permits() + 1 >= self.resume_at {
                        self.set_paused(false);
                        paused = false;
                        debug!("resumed");
                    }
                    tokio::select! {
                        m = self.consumer.recv() => match m {
                            Ok(m) => break Some(m.detach()),
                            Err(e) => warn!(error = %e, "consumer error"),
                        },
                        _ = commit_tick.tick() => commit_watermark(&self.consumer, &self.offsets, CommitMode::Async),
                        _ = self.shutdown.stopped() => break None,
                        _ = tokio::time::sleep(Duration::from_millis(20)), if paused => {}
                    }
                },
            };
            let Some(msg) = msg else { break };
            if !self.dispatch(msg, permit).await {
                break;
            }
        }
        if paused {
            self.set_paused(false);
        }
        info!(pending = self.offsets.lock().pending(), "source stopped consuming");
    }

    fn set_paused(&self, pause: bool) {
        let Ok(assignment) = self.consumer.assignment() else { return };
        let r = if pause { self.consumer.pause(&assignment) } else { self.consumer.resume(&assignment) };
        if let Err(e) = r {
            warn!(error = %e, pause, "pause/resume failed");
        }
        metrics::gauge!(telemetry::CONSUMER_PAUSED).set(if pause { 1.0 } else { 0.0 });
    }

    /// Register the record and send it on; false when downstream is gone.
    async fn dispatch(&mut self, msg: OwnedMessage, permit: tokio::sync::OwnedSemaphorePermit) -> bool {
        metrics::counter!(telemetry::EVENTS_CONSUMED).increment(1);
        let generation = self.offsets.lock().register(msg.topic(), msg.partition(), msg.offset());
        let record = Record {
            topic: msg.topic().to_owned(),
            partition: msg.partition(),
            offset: msg.offset(),
            key: msg.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            payload: msg.payload().map(<[u8]>::to_vec),
        };
        let parsed = contract::parse_upload(record.payload.as_deref());
        let ticket =
            Ticket { record, generation, consumed_at: Instant::now(), source: self.source, _permit: Some(permit) };
        match parsed {
            Ok(upload) => {
                debug!(gif_id = %upload.event.gif_id, offset = ticket.record.offset, "consumed");
                self.jobs.send(Job { ticket, upload }).await.is_ok()
            }
            Err(e) => {
                warn!(partition = ticket.record.partition, offset = ticket.record.offset, error = %e, "invalid upload event");
                let reason = e.reason();
                self.outcomes.send(Outcome::failed(ticket, Stage::Source, reason, e.to_string())).await.is_ok()
            }
        }
    }
}

/// Log consumer errors that are fatal for the process (bad config).
pub fn subscribe(consumer: &SourceConsumer, topics: &[&str]) -> Result<(), rdkafka::error::KafkaError> {
    consumer.subscribe(topics).inspect_err(|e| error!(error = %e, "subscribe failed"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermark_never_passes_an_unfinished_record() {
        let mut t = OffsetTracker::new();
        let g = t.register("t", 0, 10);
        t.register("t", 0, 11);
        t.register("t", 0, 12);
        // 11 and 12 finish first: nothing may be committed past 10.
        assert!(t.complete("t", 0, 12, g));
        assert!(t.complete("t", 0, 11, g));
        assert_eq!(t.committable(), vec![("t".into(), 0, 10)]);
        t.mark_committed(&t.committable());
        assert!(t.committable().is_empty(), "unchanged watermark is not re-committed");
        assert!(t.complete("t", 0, 10, g));
        assert_eq!(t.committable(), vec![("t".into(), 0, 13)]);
    }

    #[test]
    fn out_of_order_completion_randomised() {
        // Property: after any completion order, the committable offset is the
        // smallest unfinished offset (or next when all are done).
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..200 {
            let mut t = OffsetTracker::new();
            let n = rng.usize(1..50);
            let g = (0..n).map(|o| t.register("t", 3, 100 + o as i64)).last().unwrap();
            let mut order: Vec<i64> = (0..n as i64).map(|o| 100 + o).collect();
            rng.shuffle(&mut order);
            let mut done = BTreeSet::new();
            for o in order {
                t.complete("t", 3, o, g);
                done.insert(o);
                let expect = (100..100 + n as i64).find(|x| !done.contains(x)).unwrap_or(100 + n as i64);
                let c = t.committable();
                assert_eq!(c, vec![("t".to_string(), 3, expect)]);
                for (_, _, w) in &c {
                    assert!((100..*w).all(|x| done.contains(&x)), "committed past an unfinished record");
                }
            }
        }
    }

    #[test]
    fn revoked_partitions_ignore_late_completions() {
        let mut t = OffsetTracker::new();
        let g = t.register("t", 1, 5);
        t.register("t", 1, 6);
        t.complete("t", 1, 6, g);
        let final_offsets = t.revoke(&[("t".into(), 1)]);
        assert_eq!(final_offsets, vec![("t".into(), 1, 5)]);
        // The record at 5 finishes after revocation: it must not be committed.
        assert!(!t.complete("t", 1, 5, g));
        assert!(t.committable().is_empty());
        // Re-assigned later: a new generation, old tickets still ignored.
        let g2 = t.register("t", 1, 5);
        assert_ne!(g, g2);
        assert!(!t.complete("t", 1, 5, g));
        assert!(t.complete("t", 1, 5, g2));
    }

    #[test]
    fn partitions_are_independent() {
        let mut t = OffsetTracker::new();
        let g0 = t.register("t", 0, 0);
        let g1 = t.register("t", 1, 0);
        t.register("t", 1, 1);
        t.complete("t", 1, 0, g1);
        t.complete("t", 1, 1, g1);
        assert_eq!(t.committable(), vec![("t".into(), 0, 0), ("t".into(), 1, 2)]);
        t.complete("t", 0, 0, g0);
        assert_eq!(t.pending(), 0);
    }
}
