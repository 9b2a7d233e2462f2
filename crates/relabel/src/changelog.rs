//! The changelog topic: the job's state, replicated through Kafka so that a partition's state
//! follows the partition to its next owner (Kafka Streams' changelog and restore).
//!
//! **Record kinds** (header `autotag-record`), each written to the partition of the inputs it
//! came from, so changelog partition `p` is partition `p`'s state:
//! - `state`: key `gif_id`, value an [`Entry`] as JSON: the GIF's whole state after a commit;
//! - `offsets`: key [`OFFSETS_KEY`], value `{"offsets":{"<topic>":<next offset>,…}}`: the input
//!   offsets of partition `p` that the `state` records before it reflect. One per partition
//!   and commit, written after that commit's `state` records were acknowledged.
//!
//! **Restore** ([`restore`]) reads the assigned partitions together, each from the store's changelog offset to the end
//! (librdkafka's partition EOF; Tansu's ListOffsets LATEST is wrong, environment.md) and
//! writes the latest record per key into the store, with the last `offsets` record's offsets.
//! A state may then be ahead of those offsets (a commit whose `state` records landed but whose
//! `offsets` record did not): the new owner re-reads those inputs, and since the rule's folds
//! are idempotent ([`crate::rule`]) no input is counted twice.
//!
//! **Limits**: restore time grows with the changelog's length: compaction (create the topic
//! compacted) keeps it near one record per GIF; without it, every state change stays.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::Offset;
use rdkafka::consumer::BaseConsumer;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use serde::{Deserialize, Serialize};

use crate::eof::{self, ReadError, ReaderContext};

use crate::store::{Commit, Entry, Store, StoreError};

/// The header naming a changelog record's kind.
pub const KIND_HEADER: &str = "autotag-record";
/// The key of `offsets` records (a key no GIF is expected to have; it only matters to
/// compaction, which keeps the latest per key).
pub const OFFSETS_KEY: &str = "\u{0}relabel-input-offsets";

/// The value of an `offsets` record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OffsetsRecord {
    /// Input topic → the next offset to read in this partition.
    pub offsets: BTreeMap<String, u64>,
}

/// The headers of a `state` or `offsets` record.
pub fn headers(kind: &'static str) -> OwnedHeaders {
    OwnedHeaders::new().insert(Header { key: KIND_HEADER, value: Some(kind) })
}

/// Why a restore failed.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("changelog {topic}[{partition}] offset {offset}: {message}")]
    Record { topic: String, partition: i32, offset: i64, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a restore did.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Restored {
    /// Changelog records read.
    pub records: u64,
    /// GIF states written to the store.
    pub gifs: u64,
    pub elapsed: Duration,
}

/// Records written to the store per transaction while restoring.
const RESTORE_CHUNK: usize = 20_000;

/// Bring `store`'s state of `partitions` up to the end of the changelog `topic`, reading them
/// together with `reader` ([`eof::reader`]).
/// `idle_timeout` bounds the wait for the next record or the end.
///
/// # Errors
/// The broker, a record that is not ours, or the store.
pub fn restore(
    reader: &BaseConsumer<ReaderContext>,
    store: &Store,
    topic: &str,
    partitions: &[i32],
    idle_timeout: Duration,
) -> Result<Restored, RestoreError> {
    let started = Instant::now();
    let mut starts = Vec::with_capacity(partitions.len());
    for p in partitions {
        starts.push((*p, Offset::Offset(store.changelog_offset(*p as u32)? as i64)));
    }
    let mut done = Restored::default();
    let mut commit = Commit::default();
    eof::read_to_end(reader, topic, &starts, idle_timeout, |msg| {
        let partition = msg.partition();
        let p = partition as u32;
        let bad = |message: String| RestoreError::Record {
            topic: topic.to_owned(),
            partition,
            offset: msg.offset(),
            message,
        };
        let kind = msg.headers().and_then(|h| h.iter().find(|h| h.key == KIND_HEADER).and_then(|h| h.value));
        let payload = msg.payload().unwrap_or_default();
        match kind {
            Some(b"state") => {
                let gif_id = msg
                    .key()
                    .map(|k| String::from_utf8_lossy(k).into_owned())
                    .ok_or_else(|| bad("a state record without a key".into()))?;
                let entry: Entry =
                    serde_json::from_slice(payload).map_err(|e| bad(format!("state of {gif_id:?}: {e}")))?;
                commit.entries.insert((p, gif_id), entry);
            }
            Some(b"offsets") => {
                let r: OffsetsRecord = serde_json::from_slice(payload).map_err(|e| bad(format!("offsets: {e}")))?;
                for (t, next) in r.offsets {
                    commit.input_offsets.insert((t, p), next);
                }
            }
            _ => return Err(bad("no `autotag-record` header of a known kind: not a relabel changelog record".into())),
        }
        done.records += 1;
        commit.changelog_offsets.insert(p, msg.offset() as u64 + 1);
        if commit.entries.len() >= RESTORE_CHUNK {
            done.gifs += commit.entries.len() as u64;
            store.commit(&std::mem::take(&mut commit))?;
        }
        Ok(())
    })?;
    done.gifs += commit.entries.len() as u64;
    store.commit(&commit)?;
    done.elapsed = started.elapsed();
    Ok(done)
}
