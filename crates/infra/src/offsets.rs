//! The contiguous offset watermark: what may be committed when records finish out of order.
//!
//! Records finish out of order (a small GIF overtakes a large one), so the committable offset
//! of a partition is the lowest offset still unfinished, or one past the highest consumed when
//! none is: committing past an unfinished record would lose it on a crash. This is
//! rust-rdkafka's `at_least_once` example made safe for concurrent processing.
//!
//! **Assignments** (issue 24). Each assignment of a partition to this member is an *epoch*
//! ([`OffsetTracker::assign`], from the rebalance callback). A record is registered under the
//! epoch in which it was received ([`OffsetTracker::epoch_of`] at receipt); when that epoch
//! has ended by the time it is registered, or when the partition is revoked while its records
//! are still in the pipeline, they become *orphans*: still tracked, and the watermark of every
//! later epoch of this member stays below them until their outcomes are acknowledged. That is
//! what makes a lost assignment safe: when a broker outage outlasts the session timeout, the
//! assignment is lost and usually given back to the same member, and librdkafka may resume
//! fetching past records that are still in flight here; without orphans the new epoch's
//! watermark would move past them (measured: 9–11 of 240 events lost, issue 24).
//!
//! **Never backwards.** At each assignment the group's committed offset is read from the
//! broker ([`OffsetTracker::set_base`]); nothing of the partition is committed until it is
//! known, nothing at or below it is ever committed, and orphans below it are dropped (another
//! member, or this one, committed past them: they are done). A lost assignment is not committed
//! on revoke (another member may already own the partition).
//!
//! An offset counts as committed only when the broker confirmed it ([`OffsetTracker::mark_committed`]
//! is called after a synchronous commit returned `Ok`); until then
//! [`OffsetTracker::committable`] keeps returning it, so a failed commit is re-sent.
//!
//! Memory: per partition, one entry per record in flight (bounded by the worker's
//! `max_in_flight`), orphans included.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

/// A partition of a topic.
pub type TopicPartition = (String, i32);

/// Per-partition state of the watermark.
#[derive(Debug, Default)]
struct PartitionState {
    /// The current assignment's epoch; `None` while the partition is not assigned here.
    epoch: Option<u64>,
    /// Registered in the current epoch, not yet finished.
    pending: BTreeSet<i64>,
    /// Registered in an earlier epoch (or outside any), not yet finished: offset → count.
    orphans: BTreeMap<i64, u32>,
    /// One past the highest offset registered in the current epoch.
    next: Option<i64>,
    /// The group's committed offset as last known (read at assignment, or confirmed since).
    committed: Option<i64>,
    /// Whether `committed` was read from the broker for the current epoch.
    base_known: bool,
}

impl PartitionState {
    /// The lowest unfinished offset, or one past the highest registered in this epoch; `None`
    /// until the current epoch has registered a record.
    fn watermark(&self) -> Option<i64> {
        let next = self.next?;
        let low = [self.pending.first().copied(), self.orphans.keys().next().copied()].into_iter().flatten().min();
        Some(low.map_or(next, |l| l.min(next)))
    }

    /// What may be committed now: the watermark when the partition is assigned here, its base
    /// is known and the watermark is past it.
    fn committable(&self) -> Option<i64> {
        if self.epoch.is_none() || !self.base_known {
            return None;
        }
        let w = self.watermark()?;
        self.committed.is_none_or(|c| w > c).then_some(w)
    }

    fn orphan(&mut self, offset: i64) {
        *self.orphans.entry(offset).or_default() += 1;
    }

    /// The current epoch ends: what it left in flight becomes orphaned, its base unknown.
    fn end_epoch(&mut self) {
        for o in std::mem::take(&mut self.pending) {
            self.orphan(o);
        }
        self.epoch = None;
        self.next = None;
        self.base_known = false;
    }
}

/// Contiguous-watermark offset tracking for all partitions of one consumer.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    partitions: HashMap<TopicPartition, PartitionState>,
    epoch_counter: u64,
    /// Commits the broker refused or that could not be sent (their offsets stay committable).
    commit_failures: u64,
}

/// The token a registered record's completion must carry ([`OffsetTracker::register`]).
pub type Epoch = u64;

impl OffsetTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Partitions were assigned to this member: each starts a new epoch, its base (the
    /// group's committed offset) still to be read ([`OffsetTracker::set_base`]).
    pub fn assign(&mut self, partitions: &[TopicPartition]) {
        for key in partitions {
            self.epoch_counter += 1;
            let st = self.partitions.entry(key.clone()).or_default();
            // Whatever a previous epoch left in flight is an orphan now.
            st.end_epoch();
            st.epoch = Some(self.epoch_counter);
        }
    }

    /// The group's committed offset of a partition, read from the broker after its
    /// assignment (`None`: the group has none). Orphans below it are done (someone committed
    /// past them) and dropped; nothing at or below it is committed in this epoch.
    /// Ignored when the partition's epoch is no longer `epoch` (it was revoked or assigned
    /// again while the base was being read).
    pub fn set_base(&mut self, topic: &str, partition: i32, epoch: Epoch, committed: Option<i64>) {
        let Some(st) = self.partitions.get_mut(&(topic.to_owned(), partition)) else { return };
        if st.epoch != Some(epoch) {
            return;
        }
        if let Some(c) = committed {
            st.orphans = st.orphans.split_off(&c);
        }
        st.committed = committed;
        st.base_known = true;
    }

    /// Assigned partitions whose base is not known yet, with their epochs.
    pub fn needs_base(&self) -> Vec<(TopicPartition, Epoch)> {
        let mut out: Vec<_> = self
            .partitions
            .iter()
            .filter(|(_, s)| !s.base_known)
            .filter_map(|(k, s)| Some((k.clone(), s.epoch?)))
            .collect();
        out.sort();
        out
    }

    /// The current epoch of a partition, to be read when a record of it is received and
    /// passed to [`OffsetTracker::register`]; `None` when it is not assigned here.
    pub fn epoch_of(&self, topic: &str, partition: i32) -> Option<Epoch> {
        self.partitions.get(&(topic.to_owned(), partition)).and_then(|s| s.epoch)
    }

    /// A record received in epoch `received_in` is entering the pipeline; returns the token
    /// its completion must carry. A record of an epoch that has ended meanwhile (or received
    /// outside any) is tracked as an orphan.
    pub fn register(&mut self, topic: &str, partition: i32, offset: i64, received_in: Option<Epoch>) -> Epoch {
        let st = self.partitions.entry((topic.to_owned(), partition)).or_default();
        match (st.epoch, received_in) {
            (Some(current), Some(r)) if current == r => {
                st.pending.insert(offset);
                st.next = Some(st.next.map_or(offset + 1, |n| n.max(offset + 1)));
                current
            }
            _ => {
                st.orphan(offset);
                received_in.unwrap_or(0)
            }
        }
    }

    /// A record's outcome was acknowledged. Returns whether it was being tracked.
    pub fn complete(&mut self, topic: &str, partition: i32, offset: i64, token: Epoch) -> bool {
        let Some(st) = self.partitions.get_mut(&(topic.to_owned(), partition)) else { return false };
        if st.epoch == Some(token) && st.pending.remove(&offset) {
            return true;
        }
        match st.orphans.get_mut(&offset) {
            Some(n) if *n > 1 => {
                *n -= 1;
                true
            }
            Some(_) => {
                st.orphans.remove(&offset);
                true
            }
            None => false,
        }
    }

    /// Offsets to commit now: per assigned partition with a known base, the watermark when it
    /// moved past what is committed.
    pub fn committable(&self) -> Vec<(String, i32, i64)> {
        let mut out: Vec<_> =
            self.partitions.iter().filter_map(|((t, p), st)| Some((t.clone(), *p, st.committable()?))).collect();
        out.sort();
        out
    }

    /// Record that offsets were committed (the broker confirmed them).
    pub fn mark_committed(&mut self, offsets: &[(String, i32, i64)]) {
        for (t, p, o) in offsets {
            if let Some(st) = self.partitions.get_mut(&(t.clone(), *p)) {
                st.committed = Some(st.committed.map_or(*o, |c| c.max(*o)));
            }
        }
    }

    /// Partitions are being revoked. Returns their final committable offsets — none when the
    /// assignment was `lost` (another member may own them already) — and ends their epoch:
    /// what is still in flight becomes orphaned, and nothing of theirs is committed until they
    /// are assigned here again.
    pub fn revoke(&mut self, partitions: &[TopicPartition], lost: bool) -> Vec<(String, i32, i64)> {
        let mut out = Vec::new();
        for key in partitions {
            let Some(st) = self.partitions.get_mut(key) else { continue };
            if !lost && let Some(w) = st.committable() {
                out.push((key.0.clone(), key.1, w));
            }
            st.end_epoch();
            if st.orphans.is_empty() {
                self.partitions.remove(key);
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

    /// Records in the pipeline and not finished, all partitions, orphans included.
    pub fn pending(&self) -> usize {
        self.partitions.values().map(|s| s.pending.len() + s.orphans.values().map(|n| *n as usize).sum::<usize>()).sum()
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
    pub fn complete(&self, topic: &str, partition: i32, offset: i64, token: Epoch) {
        self.lock().complete(topic, partition, offset, token);
    }

    /// Register a record just received (its epoch read now); see [`OffsetTracker::register`].
    pub fn register_received(&self, topic: &str, partition: i32, offset: i64) -> Epoch {
        let mut t = self.lock();
        let epoch = t.epoch_of(topic, partition);
        t.register(topic, partition, offset, epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(p: i32) -> TopicPartition {
        ("t".to_owned(), p)
    }

    /// A tracker with `partitions` of topic `t` assigned and their base read (`committed`).
    fn assigned(partitions: &[i32], committed: Option<i64>) -> OffsetTracker {
        let mut t = OffsetTracker::new();
        t.assign(&partitions.iter().map(|p| tp(*p)).collect::<Vec<_>>());
        for p in partitions {
            base(&mut t, *p, committed);
        }
        t
    }

    fn base(t: &mut OffsetTracker, p: i32, committed: Option<i64>) {
        let e = t.epoch_of("t", p).expect("assigned");
        t.set_base("t", p, e, committed);
    }

    fn receive(t: &mut OffsetTracker, p: i32, offset: i64) -> Epoch {
        let e = t.epoch_of("t", p);
        t.register("t", p, offset, e)
    }

    #[test]
    fn watermark_never_passes_an_unfinished_record() {
        let mut t = assigned(&[0], None);
        let g = receive(&mut t, 0, 10);
        receive(&mut t, 0, 11);
        receive(&mut t, 0, 12);
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
            let mut t = assigned(&[3], Some(100));
            let n = rng.usize(1..50);
            let g = (0..n).map(|o| receive(&mut t, 3, 100 + o as i64)).last().unwrap();
            let mut order: Vec<i64> = (0..n as i64).map(|o| 100 + o).collect();
            rng.shuffle(&mut order);
            let mut done = BTreeSet::new();
            for o in order {
                t.complete("t", 3, o, g);
                done.insert(o);
                let expect = (100..100 + n as i64).find(|x| !done.contains(x)).unwrap_or(100 + n as i64);
                let c = t.committable();
                if expect == 100 {
                    assert!(c.is_empty(), "nothing past the base yet");
                    continue;
                }
                assert_eq!(c, vec![("t".to_string(), 3, expect)]);
                assert!((100..expect).all(|x| done.contains(&x)), "committed past an unfinished record");
            }
        }
    }

    /// Issue 24's loss: the broker goes away for longer than the session timeout, the
    /// assignment is lost with records in flight, the same member gets the partition back and
    /// librdkafka resumes fetching after them. The watermark must wait for their outcomes.
    #[test]
    fn a_lost_assignment_given_back_waits_for_the_work_in_flight() {
        let mut t = assigned(&[0], Some(100));
        let old: Vec<Epoch> = (100..110).map(|o| receive(&mut t, 0, o)).collect();
        for o in 100..105 {
            t.complete("t", 0, o, old[0]);
        }
        assert!(t.revoke(&[tp(0)], true).is_empty(), "a lost assignment is not committed");
        assert_eq!(t.pending(), 5, "what is in flight is still tracked");
        t.assign(&[tp(0)]);
        assert!(t.committable().is_empty(), "nothing before the base is read");
        base(&mut t, 0, Some(100));
        // Fetching resumes at 110, past the five still in flight.
        let new: Vec<Epoch> = (110..120).map(|o| receive(&mut t, 0, o)).collect();
        for (o, e) in (110..120).zip(&new) {
            t.complete("t", 0, o, *e);
        }
        assert_eq!(t.committable(), vec![("t".into(), 0, 105)], "held at the first record in flight");
        // The old work's outcomes are acknowledged late: they count.
        for o in 105..110 {
            assert!(t.complete("t", 0, o, old[0]));
        }
        assert_eq!(t.committable(), vec![("t".into(), 0, 120)]);
        assert_eq!(t.pending(), 0);
    }

    /// Fetching resumes at the committed offset instead: the records in flight come again
    /// (duplicates, allowed) and the watermark waits for both copies.
    #[test]
    fn records_fetched_again_after_reassignment_are_tracked_twice() {
        let mut t = assigned(&[0], Some(0));
        let old = receive(&mut t, 0, 0);
        t.revoke(&[tp(0)], true);
        t.assign(&[tp(0)]);
        base(&mut t, 0, Some(0));
        let new = receive(&mut t, 0, 0);
        assert!(t.complete("t", 0, 0, new));
        assert!(t.committable().is_empty(), "the first copy is still in flight");
        assert!(t.complete("t", 0, 0, old));
        assert_eq!(t.committable(), vec![("t".into(), 0, 1)]);
    }

    /// A record received before its partition was revoked and registered after it was
    /// assigned again (held back while paused) is an orphan of the old epoch.
    #[test]
    fn a_record_received_in_an_ended_epoch_is_an_orphan() {
        let mut t = assigned(&[0], Some(50));
        let received_in = t.epoch_of("t", 0);
        t.revoke(&[tp(0)], true);
        t.assign(&[tp(0)]);
        base(&mut t, 0, Some(50));
        let held = t.register("t", 0, 60, received_in);
        let e = receive(&mut t, 0, 50);
        t.complete("t", 0, 50, e);
        for o in 51..61 {
            let e = receive(&mut t, 0, o);
            t.complete("t", 0, o, e);
        }
        assert_eq!(t.committable(), vec![("t".into(), 0, 60)], "the held record blocks");
        assert!(t.complete("t", 0, 60, held));
        assert_eq!(t.committable(), vec![("t".into(), 0, 61)]);
        // Received while not assigned at all: also tracked.
        let mut u = OffsetTracker::new();
        let token = u.register("t", 0, 7, None);
        assert_eq!(u.pending(), 1);
        assert!(u.complete("t", 0, 7, token));
    }

    /// Another member committed past our orphans while it owned the partition: they are
    /// done, and nothing at or below its commit is committed (never backwards).
    #[test]
    fn the_committed_offset_never_moves_backwards() {
        let mut t = assigned(&[1], Some(5));
        let old = receive(&mut t, 1, 5);
        receive(&mut t, 1, 6);
        assert!(t.revoke(&[tp(1)], false).is_empty(), "nothing finished: no final commit");
        t.assign(&[tp(1)]);
        base(&mut t, 1, Some(40));
        assert_eq!(t.pending(), 0, "orphans below the base are dropped");
        let e = receive(&mut t, 1, 40);
        assert!(t.committable().is_empty(), "40 is not past the base");
        t.complete("t", 1, 40, e);
        assert_eq!(t.committable(), vec![("t".into(), 1, 41)]);
        assert!(!t.complete("t", 1, 5, old), "a late completion of a dropped orphan is ignored");
        assert_eq!(t.committable(), vec![("t".into(), 1, 41)]);
    }

    #[test]
    fn a_graceful_revoke_commits_what_finished_and_a_lost_one_nothing() {
        let mut t = assigned(&[0, 1], Some(0));
        for p in [0, 1] {
            let e = receive(&mut t, p, 0);
            t.complete("t", p, 0, e);
            receive(&mut t, p, 1);
        }
        assert_eq!(t.revoke(&[tp(0)], false), vec![("t".into(), 0, 1)]);
        assert!(t.revoke(&[tp(1)], true).is_empty());
        assert!(t.committable().is_empty(), "nothing of a revoked partition is committed");
        assert!(t.needs_base().is_empty());
    }

    #[test]
    fn nothing_is_committed_before_the_base_is_read() {
        let mut t = OffsetTracker::new();
        t.assign(&[tp(0), tp(1)]);
        let e = receive(&mut t, 0, 0);
        t.complete("t", 0, 0, e);
        assert!(t.committable().is_empty());
        assert_eq!(t.needs_base().into_iter().map(|(k, _)| k).collect::<Vec<_>>(), vec![tp(0), tp(1)]);
        base(&mut t, 0, None);
        assert_eq!(t.committable(), vec![("t".into(), 0, 1)]);
        assert_eq!(t.needs_base().into_iter().map(|(k, _)| k).collect::<Vec<_>>(), vec![tp(1)]);
    }

    #[test]
    fn partitions_are_independent() {
        let mut t = assigned(&[0, 1], None);
        let g0 = receive(&mut t, 0, 0);
        let g1 = receive(&mut t, 1, 0);
        receive(&mut t, 1, 1);
        t.complete("t", 1, 0, g1);
        t.complete("t", 1, 1, g1);
        assert_eq!(t.committable(), vec![("t".into(), 0, 0), ("t".into(), 1, 2)]);
        t.complete("t", 0, 0, g0);
        assert_eq!(t.pending(), 0);
    }
}
