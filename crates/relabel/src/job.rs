//! The job's loop: consume the four inputs, fold each record into its GIF's state, and every
//! `commit_interval_ms` write the changed labels, the changelog and one state transaction.
//!
//! **Flow** (one thread; librdkafka's rebalance callbacks run inside its `poll`, on the same
//! thread, so no state is shared between threads):
//! 1. a record of partition `p` is parsed into a fact ([`crate::input`]; one that cannot be is
//!    skipped and counted by reason), folded into the GIF's entry (from the pending batch, else
//!    the store), and its offset + 1 becomes `p`'s next offset for its topic;
//! 2. a flush ([`Job::flush`]) first produces a `gif-training-labels` record for every changed
//!    GIF whose labels differ from the last emitted ones and waits for all acknowledgements;
//!    then the changed states and one `offsets` record per partition to the changelog
//!    ([`crate::changelog`]), acknowledged; then one store transaction with the states, the
//!    input offsets and the changelog offsets. A record is therefore always produced before
//!    the state that says it was emitted is committed: a crash can duplicate a record, never
//!    lose one;
//! 3. on assignment, each partition's state is first brought up to the end of its changelog
//!    (a partition that was another instance's), then consumption starts at the stored input
//!    offsets (the beginning where there are none). On revocation the pending batch is flushed
//!    first (Kafka Streams commits on revoke); if that fails, it is dropped and the next owner
//!    redoes those inputs.
//!
//! **Exactly once, of state**: the state and the offsets it reflects are written in one
//! transaction, and consumption resumes at those offsets, so no input is folded into a
//! committed state twice; where a changelog state is ahead of its offsets after a takeover, the
//! folds' idempotence absorbs the re-read inputs.
//!
//! **Limits**: a flush that cannot reach the broker is retried at the next interval; the batch
//! waits (bounded by [`MAX_PENDING_GIFS`]: consumption stops while it is full) and the group may
//! drop the instance after `max.poll.interval.ms`, which then redoes the inputs. A zombie
//! instance (alive, but out of the group) is not fenced: it stops writing at its next poll.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use autotag_contract::{SCHEMA_VERSION, TrainingLabels, now_rfc3339};
use autotag_infra::kafka::{self, Role};
use autotag_infra::telemetry::Health;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message, ToBytes};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tracing::{error, info, warn};

use crate::changelog::{self, OffsetsRecord};
use crate::config::RelabelConfig;
use crate::eof;
use crate::input::{self, Fact, InputError};
use crate::metrics as m;
use crate::partitioner;
use crate::rule::Thresholds;
use crate::store::{Commit, Entry, Store, StoreError};

/// Changed GIFs held in the pending batch before a flush is forced, whatever the interval:
/// bounds the job's memory (each entry is a few KiB at most).
pub const MAX_PENDING_GIFS: usize = 20_000;

/// How long a produced record may wait for its acknowledgement in a flush.
const ACK_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the job stopped or could not start.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("topic `{0}` does not exist (create the inputs, the changelog and the labels topic first)")]
    MissingTopic(String),
    #[error("the input and changelog topics must have the same partition count (all keyed by gif_id): {0}")]
    PartitionCounts(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Restore(#[from] changelog::RestoreError),
}

/// Why a flush did not complete (the batch stays pending).
#[derive(Debug, thiserror::Error)]
pub enum FlushError {
    #[error("producing to {topic}: {source}")]
    Produce { topic: String, source: KafkaError },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl FlushError {
    /// A stable code for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            FlushError::Produce { .. } => "produce",
            FlushError::Store(e) => e.reason(),
        }
    }
}

/// The job's state between flushes.
pub struct Job {
    cfg: RelabelConfig,
    thresholds: Thresholds,
    store: Store,
    producer: FutureProducer,
    /// Reads the changelog on assignment (no group).
    reader: BaseConsumer<eof::ReaderContext>,
    /// The inputs' partition count (checked equal at start).
    partitions: i32,
    /// Partitions this instance owns now.
    owned: BTreeSet<i32>,
    /// Entries changed since the last flush.
    dirty: BTreeMap<(u32, String), Entry>,
    /// (topic, partition) → next offset, advanced since the last flush.
    offsets: BTreeMap<(String, u32), u64>,
}

impl Job {
    /// Open the store and create the clients.
    ///
    /// # Errors
    /// The store cannot be opened; librdkafka refused the configuration.
    pub fn new(cfg: RelabelConfig, partitions: i32) -> Result<Self, JobError> {
        let store = Store::open(&cfg.relabel.state_dir, cfg.relabel.store_cache_mib * 1024 * 1024)?;
        let producer = kafka::create_producer(&cfg.kafka)?;
        let reader = eof::reader(&cfg.kafka, &format!("{}-restore", cfg.relabel.group_id))?;
        Ok(Self {
            thresholds: cfg.relabel.thresholds(),
            cfg,
            store,
            producer,
            reader,
            partitions,
            owned: BTreeSet::new(),
            dirty: BTreeMap::new(),
            offsets: BTreeMap::new(),
        })
    }

    /// Fold one consumed record in. A record of a partition this instance does not own is
    /// ignored (its new owner reads it).
    ///
    /// # Errors
    /// The store could not be read.
    pub fn process(&mut self, msg: &BorrowedMessage<'_>) -> Result<(), StoreError> {
        let p = msg.partition();
        if !self.owned.contains(&p) {
            return Ok(());
        }
        let topic = msg.topic();
        let payload = msg.payload().unwrap_or_default();
        let (stream, parsed) = match stream_of(&self.cfg, topic) {
            Some(stream @ ("uploads" | "backfill")) => (stream, input::upload(payload)),
            Some(stream @ "suggestions") => (stream, input::suggestion(payload)),
            Some(stream) => (stream, input::feedback(payload)),
            None => (
                "other",
                Err(InputError::Json { kind: "input", message: format!("record of unexpected topic {topic}") }),
            ),
        };
        self.offsets.insert((topic.to_owned(), p as u32), msg.offset() as u64 + 1);
        match parsed.map(|fact| (partitioner::partition_of(fact.gif_id.as_bytes(), self.partitions), fact)) {
            Ok((expected, fact)) if expected != p => {
                metrics::counter!(m::SKIPPED, "reason" => "misplaced").increment(1);
                warn!(
                    topic, partition = p, offset = msg.offset(), gif_id = %fact.gif_id, expected,
                    reason = "misplaced",
                    "input skipped: its gif_id belongs in another partition (producer not keyed by gif_id with murmur2?)"
                );
            }
            Ok((_, fact)) => self.fold(p as u32, fact, stream)?,
            Err(e) => {
                metrics::counter!(m::SKIPPED, "reason" => e.reason()).increment(1);
                warn!(topic, partition = p, offset = msg.offset(), reason = e.reason(), error = %e, "input skipped");
            }
        }
        Ok(())
    }

    fn fold(&mut self, p: u32, fact: Fact, stream: &'static str) -> Result<(), StoreError> {
        let key = (p, fact.gif_id);
        let (mut entry, was_dirty) = match self.dirty.remove(&key) {
            Some(e) => (e, true),
            None => (self.store.entry(p, &key.1)?.unwrap_or_default(), false),
        };
        let changed = entry.state.apply(&fact.kind);
        tracing::debug!(partition = p, gif_id = %key.1, stream, changed, "input folded");
        metrics::counter!(m::INPUTS, "stream" => stream, "outcome" => if changed { "changed" } else { "unchanged" })
            .increment(1);
        if changed || was_dirty {
            self.dirty.insert(key, entry);
        }
        Ok(())
    }

    /// Whether the pending batch is full (flush before consuming more).
    pub fn is_full(&self) -> bool {
        self.dirty.len() >= MAX_PENDING_GIFS
    }

    /// Write the pending batch: labels, changelog, then the store transaction (module docs).
    /// Returns the input offsets committed (for the group's lag view).
    ///
    /// # Errors
    /// A produce that was not acknowledged, or the store; the batch stays pending.
    pub fn flush(&mut self) -> Result<BTreeMap<(String, u32), u64>, FlushError> {
        if self.dirty.is_empty() && self.offsets.is_empty() {
            return Ok(BTreeMap::new());
        }
        let started = Instant::now();
        let topics = self.cfg.relabel.topics.clone();
        // 1. Labels that changed, acknowledged before anything says they were emitted.
        let mut emitted = Vec::new();
        for (key, entry) in &self.dirty {
            let Some(o) = entry.state.outcome(self.thresholds) else { continue };
            if entry.emitted.as_ref() == Some(&o.labels) {
                continue;
            }
            let record = TrainingLabels {
                schema_version: SCHEMA_VERSION,
                gif_id: key.1.clone(),
                s3_uri: o.s3_uri,
                labels: o.labels,
                model_version: o.model_version,
                inputs: o.inputs,
                updated_at: now_rfc3339(),
            };
            emitted.push((key.clone(), record));
        }
        let mut sends = Vec::new();
        for ((_, gif_id), record) in &emitted {
            let json = serde_json::to_vec(record).unwrap_or_default();
            sends.push(send(&self.producer, FutureRecord::to(&topics.labels).key(gif_id).payload(&json))?);
        }
        wait_all(sends, &topics.labels)?;
        let emitted_n = emitted.len();
        for (key, record) in emitted {
            if let Some(e) = self.dirty.get_mut(&key) {
                e.emitted = Some(record.labels);
            }
        }
        // 2. The changed states, then one offsets record per partition.
        let mut sends = Vec::new();
        for ((p, gif_id), entry) in &self.dirty {
            let json = serde_json::to_vec(entry).unwrap_or_default();
            let r = FutureRecord::to(&topics.changelog)
                .partition(*p as i32)
                .key(gif_id)
                .payload(&json)
                .headers(changelog::headers("state"));
            sends.push(send(&self.producer, r)?);
        }
        wait_all(sends, &topics.changelog)?;
        let partitions: BTreeSet<u32> = self.offsets.keys().map(|(_, p)| *p).collect();
        let mut sends = Vec::new();
        for p in &partitions {
            let mut record = OffsetsRecord { offsets: self.store.input_offsets(*p)?.into_iter().collect() };
            for ((t, q), next) in &self.offsets {
                if q == p {
                    record.offsets.insert(t.clone(), *next);
                }
            }
            let json = serde_json::to_vec(&record).unwrap_or_default();
            let r = FutureRecord::to(&topics.changelog)
                .partition(*p as i32)
                .key(changelog::OFFSETS_KEY)
                .payload(&json)
                .headers(changelog::headers("offsets"));
            sends.push(send(&self.producer, r)?);
        }
        let markers = wait_all(sends, &topics.changelog)?;
        // 3. One transaction: states, input offsets, changelog offsets.
        let commit = Commit {
            entries: std::mem::take(&mut self.dirty),
            input_offsets: std::mem::take(&mut self.offsets),
            changelog_offsets: markers.into_iter().map(|(p, o)| (p as u32, o as u64 + 1)).collect(),
        };
        if let Err(e) = self.store.commit(&commit) {
            self.dirty = commit.entries;
            self.offsets = commit.input_offsets;
            return Err(e.into());
        }
        metrics::counter!(m::EMITTED).increment(emitted_n as u64);
        metrics::counter!(m::COMMITS).increment(1);
        metrics::histogram!(m::COMMIT_SECONDS).record(started.elapsed().as_secs_f64());
        Ok(commit.input_offsets)
    }

    /// Restore `partitions` from the changelog and return the assignment with each input's
    /// stored offset (the beginning where there is none).
    fn on_assign(&mut self, tpl: &TopicPartitionList) -> Result<TopicPartitionList, JobError> {
        let partitions: BTreeSet<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
        let topic = self.cfg.relabel.topics.changelog.clone();
        let list: Vec<i32> = partitions.iter().copied().collect();
        let r = changelog::restore(&self.reader, &self.store, &topic, &list, ACK_TIMEOUT)?;
        metrics::histogram!(m::RESTORE_SECONDS).record(r.elapsed.as_secs_f64());
        metrics::counter!(m::RESTORED_RECORDS).increment(r.records);
        info!(partitions = ?list, records = r.records, gifs = r.gifs, elapsed_ms = r.elapsed.as_millis() as u64, "partition state restored");
        let mut out = TopicPartitionList::new();
        for p in &partitions {
            let stored = self.store.input_offsets(*p as u32)?;
            for e in tpl.elements().iter().filter(|e| e.partition() == *p) {
                let offset = stored.get(e.topic()).map_or(Offset::Beginning, |o| Offset::Offset(*o as i64));
                out.add_partition_offset(e.topic(), *p, offset)?;
            }
        }
        self.owned = partitions;
        Ok(out)
    }

    fn on_revoke(&mut self) {
        if let Err(e) = self.flush() {
            warn!(reason = e.reason(), error = %e, "flush on revoke failed; the next owner redoes the pending inputs");
        }
        self.dirty.clear();
        self.offsets.clear();
        self.owned.clear();
    }
}

/// Which input stream a topic is (its metrics label), if any.
fn stream_of(cfg: &RelabelConfig, topic: &str) -> Option<&'static str> {
    let t = &cfg.relabel.topics;
    [(&t.uploads, "uploads"), (&t.backfill, "backfill"), (&t.suggestions, "suggestions"), (&t.feedback, "feedback")]
        .into_iter()
        .find_map(|(name, stream)| (name == topic).then_some(stream))
}

/// Enqueue `record`, waiting while librdkafka's queue is full.
fn send<K, P>(producer: &FutureProducer, mut record: FutureRecord<'_, K, P>) -> Result<DeliveryFuture, FlushError>
where
    K: ToBytes + ?Sized,
    P: ToBytes + ?Sized,
{
    let topic = record.topic.to_owned();
    let started = Instant::now();
    loop {
        match producer.send_result(record) {
            Ok(f) => return Ok(f),
            Err((KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull), r))
                if started.elapsed() < ACK_TIMEOUT =>
            {
                record = r;
                producer.poll(Duration::from_millis(10));
            }
            Err((source, _)) => return Err(FlushError::Produce { topic, source }),
        }
    }
}

/// Wait for every acknowledgement; the (partition, offset) of each.
fn wait_all(sends: Vec<DeliveryFuture>, topic: &str) -> Result<Vec<(i32, i64)>, FlushError> {
    let mut out = Vec::with_capacity(sends.len());
    let mut first_error = None;
    for f in sends {
        match futures::executor::block_on(f) {
            Ok(Ok(d)) => out.push((d.partition, d.offset)),
            Ok(Err((e, _))) => {
                first_error.get_or_insert(e);
            }
            Err(_) => {
                first_error.get_or_insert(KafkaError::Canceled);
            }
        }
    }
    match first_error {
        None => Ok(out),
        Some(source) => Err(FlushError::Produce { topic: topic.to_owned(), source }),
    }
}

/// The group consumer's callbacks: restore and seek on assignment, flush on revocation.
pub struct RelabelContext {
    job: std::sync::Mutex<Option<Job>>,
    fatal: std::sync::Mutex<Option<JobError>>,
}

impl ClientContext for RelabelContext {}

impl ConsumerContext for RelabelContext {
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        let mut guard = self.job.lock().unwrap_or_else(|p| p.into_inner());
        let Some(job) = guard.as_mut() else {
            // Stopped: hand everything back without work.
            let _ = consumer.unassign();
            return;
        };
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => match job.on_assign(tpl) {
                Ok(assignment) => {
                    info!(partitions = ?job.owned, "partitions assigned");
                    if let Err(e) = consumer.assign(&assignment) {
                        *self.fatal.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.into());
                    }
                }
                Err(e) => {
                    error!(error = %e, "cannot take the assigned partitions over");
                    job.owned.clear();
                    let _ = consumer.unassign();
                    *self.fatal.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                }
            },
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                info!(partitions = ?job.owned, "partitions revoked");
                job.on_revoke();
                let _ = consumer.unassign();
            }
            other => {
                warn!(error = ?other, "rebalance error");
                job.on_revoke();
                let _ = consumer.unassign();
            }
        }
    }
}

/// Refuse to start unless every topic exists and the inputs and the changelog have one
/// partition count. Returns it.
///
/// # Errors
/// [`JobError::MissingTopic`], [`JobError::PartitionCounts`] naming every topic's count.
pub fn check_topics<C: ConsumerContext>(consumer: &BaseConsumer<C>, cfg: &RelabelConfig) -> Result<i32, JobError> {
    let t = &cfg.relabel.topics;
    let mut counts = Vec::new();
    for topic in t.inputs().into_iter().chain([t.changelog.as_str(), t.labels.as_str()]) {
        let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
        let n = md
            .topics()
            .iter()
            .find(|x| x.name() == topic)
            .filter(|x| x.error().is_none())
            .map_or(0, |x| x.partitions().len());
        if n == 0 {
            return Err(JobError::MissingTopic(topic.to_owned()));
        }
        if topic != t.labels {
            counts.push((topic, n));
        }
    }
    if counts.iter().any(|(_, n)| *n != counts[0].1) {
        let list: Vec<String> = counts.iter().map(|(t, n)| format!("{t}={n}")).collect();
        return Err(JobError::PartitionCounts(list.join(", ")));
    }
    Ok(counts[0].1 as i32)
}

/// Run the job until `stop` is set: consume, fold, flush every `commit_interval_ms` (and when
/// the batch is full), flush once more at the end.
///
/// # Errors
/// A start-up check, the store, or a partition that cannot be taken over.
pub fn run(cfg: RelabelConfig, stop: Arc<AtomicBool>, health: Arc<Health>) -> Result<(), JobError> {
    let mut cc = kafka::client_config(
        &cfg.kafka,
        Role::Consumer,
        &[
            ("group.id", &cfg.relabel.group_id),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("auto.offset.reset", "earliest"),
        ],
    );
    // Co-partitioning: partition p of every input goes to one member (issue 13); not the
    // operator's to change.
    cc.set("partition.assignment.strategy", "range");
    let context = RelabelContext { job: std::sync::Mutex::new(None), fatal: std::sync::Mutex::new(None) };
    let consumer: BaseConsumer<RelabelContext> = cc.create_with_context(context)?;
    let partitions = check_topics(&consumer, &cfg)?;
    *lock(&consumer) = Some(Job::new(cfg.clone(), partitions)?);
    info!(partitions, inputs = ?cfg.relabel.topics.inputs(), "topics checked");
    consumer.subscribe(&cfg.relabel.topics.inputs())?;
    health.set(m::RUNNING, true);
    let mut last_flush = Instant::now();
    let result = loop {
        if stop.load(Ordering::SeqCst) {
            break Ok(());
        }
        let full = lock(&consumer).as_ref().is_some_and(Job::is_full);
        if !full {
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(msg)) => {
                    let mut g = lock(&consumer);
                    if let Some(Err(e)) = g.as_mut().map(|job| job.process(&msg)) {
                        break Err(e.into());
                    }
                }
                Some(Err(e)) => warn!(error = %e, "consumer error"),
                None => {}
            }
        }
        if let Some(e) = consumer.context().fatal.lock().unwrap_or_else(|p| p.into_inner()).take() {
            break Err(e);
        }
        if full || last_flush.elapsed() >= cfg.relabel.commit_interval {
            last_flush = Instant::now();
            flush_and_commit(&consumer);
        }
    };
    flush_and_commit(&consumer);
    health.set(m::RUNNING, false);
    // Leave the group now (its revocation callback flushes nothing more), not at drop.
    consumer.unsubscribe();
    lock(&consumer).take();
    result
}

fn lock(consumer: &BaseConsumer<RelabelContext>) -> std::sync::MutexGuard<'_, Option<Job>> {
    consumer.context().job.lock().unwrap_or_else(|p| p.into_inner())
}

fn flush_and_commit(consumer: &BaseConsumer<RelabelContext>) {
    let mut g = lock(consumer);
    let Some(job) = g.as_mut() else { return };
    match job.flush() {
        Ok(offsets) if !offsets.is_empty() => {
            drop(g);
            // The group's committed offsets are for operators' lag views only: the job
            // resumes from its store's offsets.
            let mut tpl = TopicPartitionList::new();
            for ((t, p), o) in &offsets {
                let _ = tpl.add_partition_offset(t, *p as i32, Offset::Offset(*o as i64));
            }
            if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
                warn!(error = %e, "group offset commit failed (lag view only)");
            }
        }
        Ok(_) => {}
        Err(e) => {
            metrics::counter!(m::FLUSH_FAILURES, "reason" => e.reason()).increment(1);
            warn!(reason = e.reason(), error = %e, "flush failed; retrying at the next interval");
        }
    }
}
