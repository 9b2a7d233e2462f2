//! The tagging pipeline: one module per stage, joined by bounded channels.
//!
//! ```text
//!  source ──Job──► fetch ──Fetched──► decode ──Decoded──► batch ──Batch──► infer
//!    │               │                  │                                   │
//!    └──────────────►┴──────────────────┴────────── Outcome ──────────────► publish
//!                                                                          │
//!    source ◄──────────── offset completions (contiguous watermark) ◄──────┘
//! ```
//!
//! Every consumed record travels with a [`Ticket`]. The ticket owns a permit
//! of the in-flight semaphore (the worker's memory bound) and knows the
//! record's partition/offset. Exactly one [`Outcome`] is produced per ticket,
//! a suggestion or a dead letter; `publish` marks the offset done only after
//! the broker acknowledged that outcome, and `source` commits only the
//! contiguous prefix of done offsets. A ticket dropped without an outcome
//! (shutdown, revoked partition) simply never commits: the record is
//! re-delivered.

pub mod batch;
pub mod decode;
pub mod fetch;
pub mod infer;
pub mod publish;
pub mod source;

use std::time::Instant;

use autotag_contract::{Reason, RecordOrigin, Source, Stage, TagScore, ValidUpload};
use tokio::sync::OwnedSemaphorePermit;

/// Identity of a consumed record and what a dead letter needs of it.
#[derive(Debug)]
pub struct Record {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub payload: Option<Vec<u8>>,
}

impl Record {
    pub fn origin(&self) -> RecordOrigin {
        RecordOrigin {
            topic: self.topic.clone(),
            partition: self.partition,
            offset: self.offset,
            key: self.key.clone(),
        }
    }
}

/// A consumed record's passage through the pipeline (see the module docs).
#[derive(Debug)]
pub struct Ticket {
    pub record: Record,
    /// The token of the record's registration in its lane's offsets (the partition's epoch
    /// when it was received; `autotag_infra::offsets`).
    pub generation: autotag_infra::offsets::Epoch,
    pub consumed_at: Instant,
    pub source: Source,
    /// The offsets of the record's lane (each lane has its consumer and its watermark).
    pub offsets: autotag_infra::offsets::Offsets,
    pub(crate) _permit: Option<OwnedSemaphorePermit>,
}

impl Ticket {
    /// Mark this ticket's record finished (its outcome is durably written) in its lane's
    /// offsets.
    pub fn complete(&self) {
        let r = &self.record;
        self.offsets.complete(&r.topic, r.partition, r.offset, self.generation);
    }
}

/// A valid upload on its way to the model.
#[derive(Debug)]
pub struct Job {
    pub ticket: Ticket,
    pub upload: ValidUpload,
    /// Set by the decode stage: what was wrong with a GIF that still decoded
    /// ([`gifcodec::SampledFrames::warnings`]); carried into the suggestion.
    pub warnings: Vec<&'static str>,
}

/// The one result per consumed record.
// One outcome per GIF moves through a bounded channel: its size (~400 bytes) costs nothing
// worth a Box on every tagged GIF.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Outcome {
    /// Tags for `job`; the decoder's warnings ride on `job.warnings`.
    Tagged {
        job: Job,
        tags: Vec<TagScore>,
        /// The scores of the upload's `existing_tags` in the vocabulary (`None`: it had none).
        existing_tag_scores: Option<Vec<TagScore>>,
        /// Frames sampled.
        frames: usize,
        /// Of those, frames the model ran on.
        inferred: usize,
    },
    Failed {
        ticket: Ticket,
        stage: Stage,
        reason: Reason,
        message: String,
    },
}

/// A bounded channel for the backfill lane, when it is on.
pub(crate) fn lane_channel<T>(
    on: bool,
    cap: usize,
) -> (Option<tokio::sync::mpsc::Sender<T>>, Option<tokio::sync::mpsc::Receiver<T>>) {
    if on {
        let (tx, rx) = tokio::sync::mpsc::channel(cap);
        (Some(tx), Some(rx))
    } else {
        (None, None)
    }
}

impl Outcome {
    pub fn failed(ticket: Ticket, stage: Stage, reason: Reason, message: impl Into<String>) -> Self {
        Outcome::Failed { ticket, stage, reason, message: message.into() }
    }
}
