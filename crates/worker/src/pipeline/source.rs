//! Source: consume upload events, register their offsets, commit the contiguous watermark
//! (`autotag_infra::offsets`; a commit counts once the broker confirmed it,
//! `autotag_infra::consumer`).
//!
//! Lanes: the worker runs one source per lane (issue 15): live uploads and the backfill, each
//! with its own consumer (group), offsets and in-flight semaphore (the backfill's is
//! `lanes.backfill_share` of `pipeline.max_in_flight`). The live source raises `waiting` while
//! it waits for capacity; the backfill source takes no new record while it is raised (it
//! pauses its partitions after `pause_after_ms`, as under backpressure).
//!
//! Backpressure: each record takes a permit of the in-flight semaphore, held
//! until its outcome is acknowledged, and a slot in the jobs channel. When
//! either does not come within `pause_after_ms`, the assigned partitions are
//! paused and resumed when capacity returns. The source never blocks: while it
//! waits it keeps polling the consumer (which serves the group protocol and
//! `max.poll.interval.ms`, however long the pressure lasts) and committing
//! (issue 24: it used to block in the channel send, which is smaller than
//! `max_in_flight`, and stop polling). Waiting a little before pausing avoids
//! flapping: every pause discards librdkafka's prefetched messages.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use autotag_contract::{Source, Stage, parse_upload};
use autotag_infra::consumer::{Committer, GroupConsumer};
use autotag_infra::offsets::{Epoch, Offsets};
use autotag_infra::shutdown::Shutdown;
use rdkafka::consumer::Consumer;
use rdkafka::message::{Message, OwnedMessage};
use tokio::sync::mpsc::OwnedPermit;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tracing::{debug, info, warn};

use super::{Job, Outcome, Record, Ticket};
use crate::telemetry;

/// Everything the source loop needs.
pub struct SourceStage {
    pub consumer: Arc<GroupConsumer>,
    pub offsets: Offsets,
    /// Commits the watermark every `commit_interval`, off the consumer loop.
    pub committer: Committer,
    pub in_flight: Arc<Semaphore>,
    /// Free permits needed to resume after a pause.
    pub resume_at: usize,
    pub pause_after: Duration,
    pub commit_interval: Duration,
    pub source: Source,
    /// Live lane: raised while this source waits for capacity.
    pub waiting: Option<Arc<AtomicBool>>,
    /// Backfill lane: take no new record while this is raised (live work waits).
    pub yield_to: Option<Arc<AtomicBool>>,
    pub jobs: mpsc::Sender<Job>,
    pub outcomes: mpsc::Sender<Outcome>,
    pub shutdown: Shutdown,
}

/// Room for one more record: an in-flight permit (held until its outcome is acknowledged) and
/// a slot in the jobs channel.
type Capacity = (OwnedSemaphorePermit, OwnedPermit<Job>);

/// [`Capacity`] now, if there is some.
fn try_capacity(in_flight: &Arc<Semaphore>, jobs: &mpsc::Sender<Job>) -> Option<Capacity> {
    let permit = in_flight.clone().try_acquire_owned().ok()?;
    let slot = jobs.clone().try_reserve_owned().ok()?;
    Some((permit, slot))
}

/// [`Capacity`] once there is some; `None` when the pipeline is gone (shutdown).
async fn capacity(in_flight: Arc<Semaphore>, jobs: mpsc::Sender<Job>) -> Option<Capacity> {
    let permit = in_flight.acquire_owned().await.ok()?;
    let slot = jobs.reserve_owned().await.ok()?;
    Some((permit, slot))
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
        // Each with its partition's epoch at receipt (`Offsets`: a record of an assignment that
        // ended meanwhile is tracked as an orphan, never as part of the new one).
        let mut held: VecDeque<(OwnedMessage, Option<Epoch>)> = VecDeque::new();
        loop {
            // 1. Capacity: take a permit, pausing the partitions if it takes too long. A
            // backfill lane also waits while live work waits.
            let yielding = || self.yield_to.as_ref().is_some_and(|f| f.load(Ordering::Relaxed));
            let immediate = if yielding() { None } else { try_capacity(&self.in_flight, &self.jobs) };
            let permit = match immediate {
                Some(p) => p,
                None => {
                    if let Some(w) = &self.waiting {
                        w.store(true, Ordering::Relaxed);
                    }
                    let waited = Instant::now();
                    let permit = loop {
                        tokio::select! {
                            c = capacity(self.in_flight.clone(), self.jobs.clone()), if !yielding() => match c {
                                Some(c) if yielding() => drop(c),
                                c => break c,
                            },
                            // Re-check the live lane's flag now and then.
                            _ = tokio::time::sleep(Duration::from_millis(20)), if self.yield_to.is_some() => {}
                            _ = commit_tick.tick() => self.committer.tick(),
                            _ = self.shutdown.stopped() => break None,
                            // Keep polling while paused: it serves the group protocol and
                            // max.poll.interval.ms, however long the pressure lasts.
                            m = self.consumer.recv(), if paused => match m {
                                Ok(m) => {
                                    held.push_back(self.received(m.detach()));
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
                    if let Some(w) = &self.waiting {
                        w.store(false, Ordering::Relaxed);
                    }
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
                            Ok(m) => break Some(self.received(m.detach())),
                            Err(e) => warn!(error = %e, "consumer error"),
                        },
                        _ = commit_tick.tick() => self.committer.tick(),
                        _ = self.shutdown.stopped() => break None,
                        _ = tokio::time::sleep(Duration::from_millis(20)), if paused => {}
                    }
                },
            };
            let Some((msg, epoch)) = msg else { break };
            if !self.dispatch(msg, epoch, permit).await {
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
        metrics::gauge!(telemetry::CONSUMER_PAUSED, "lane" => self.source.as_str()).set(if pause { 1.0 } else { 0.0 });
        let partitions = if pause { assignment.count() as f64 } else { 0.0 };
        metrics::gauge!(telemetry::PAUSED_PARTITIONS, "lane" => self.source.as_str()).set(partitions);
    }

    /// A record as received: with its partition's epoch now.
    fn received(&self, msg: OwnedMessage) -> (OwnedMessage, Option<Epoch>) {
        let epoch = self.offsets.lock().epoch_of(msg.topic(), msg.partition());
        (msg, epoch)
    }

    /// Register the record (in the epoch it was received in) and send it on; false when
    /// downstream is gone.
    async fn dispatch(&mut self, msg: OwnedMessage, epoch: Option<Epoch>, capacity: Capacity) -> bool {
        let (permit, slot) = capacity;
        metrics::counter!(telemetry::EVENTS_CONSUMED, "lane" => self.source.as_str()).increment(1);
        let generation = self.offsets.lock().register(msg.topic(), msg.partition(), msg.offset(), epoch);
        let record = Record {
            topic: msg.topic().to_owned(),
            partition: msg.partition(),
            offset: msg.offset(),
            key: msg.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            payload: msg.payload().map(<[u8]>::to_vec),
        };
        let parsed = parse_upload(record.payload.as_deref());
        let ticket = Ticket {
            record,
            generation,
            consumed_at: Instant::now(),
            source: self.source,
            offsets: self.offsets.clone(),
            _permit: Some(permit),
        };
        match parsed {
            Ok(upload) => {
                debug!(gif_id = %upload.event.gif_id, offset = ticket.record.offset, "consumed");
                slot.send(Job { ticket, upload, warnings: Vec::new() });
                true
            }
            Err(e) => {
                drop(slot);
                warn!(partition = ticket.record.partition, offset = ticket.record.offset, error = %e, "invalid upload event");
                let reason = e.reason();
                self.outcomes.send(Outcome::failed(ticket, Stage::Source, reason, e.to_string())).await.is_ok()
            }
        }
    }
}
