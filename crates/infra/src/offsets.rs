//! The contiguous offset watermark: what may be committed when records finish out of order.
//!
//! Records finish out of order (a small GIF overtakes a large one), so the committable offset
//! of a partition is the lowest offset still unfinished, or one past the highest consumed when
//! none is: committing past an unfinished record would lose it on a crash. This is
//! rust-rdkafka's `at_least_once` example made safe for concurrent processing.
//!
//! Each partition's state carries a *generation*, new each time the partition is (re)assigned;
//! completions from an older generation (the partition was revoked meanwhile) are ignored, so
//! nothing of a revoked partition is committed by this consumer afterwards.
//!
//! An offset counts as committed only when the broker confirmed it ([`OffsetTracker::mark_committed`]
//! is called from the commit callback, or after a synchronous commit returned `Ok`); until then
//! [`OffsetTracker::committable`] keeps returning it, so a failed commit is re-sent.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

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
    /// Commits the broker refused or that could not be sent (their offsets stay committable).
    commit_failures: u64,
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

    /// A commit failed: nothing was recorded, so its offsets are sent again by the next commit.
    pub fn note_commit_failure(&mut self) {
        self.commit_failures += 1;
    }

    /// Commits that failed so far (for tests and logs; the metric is
    /// `autotag_offset_commit_failures_total`).
    pub fn commit_failures(&self) -> u64 {
        self.commit_failures
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

    /// Mark a record finished (its outcome is durably written); see [`OffsetTracker::complete`].
    pub fn complete(&self, topic: &str, partition: i32, offset: i64, generation: u64) {
        self.lock().complete(topic, partition, offset, generation);
    }
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
