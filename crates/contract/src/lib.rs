//! The event contract: what autotag's services read and write on Kafka.
//!
//! **Owns** the event types (upload, suggestion, dead letter, feedback, training labels), tag
//! normalisation ([`normalize_tag`]), the dead-letter [`Reason`] and [`Stage`] codes, deterministic
//! event ids ([`ids`]) and the timestamp format ([`time`]).
//!
//! **Promises**: the JSON Schemas in `schemas/` are the published contract and these types are
//! the code's side of it. Tests validate the services' real output against those files, and
//! `tests/schemas.rs` checks that the schemas' `reason` and `stage` enums list exactly the codes
//! of [`Reason`] and [`Stage`], so the two cannot drift apart.
//!
//! **Evolution rule**: new optional fields and new reason codes keep `schema_version` 1, and the
//! schemas change in the same commit (they stay strict: every new field is added there). Every
//! reader of ours ignores unknown fields. Only an incompatible change bumps `schema_version`;
//! the worker rejects an upload event whose version it does not know rather than guess.
//!
//! **Never imports** anything of autotag's: it is a leaf, shared by every service.

pub mod dead_letter;
pub mod feedback;
pub mod ids;
pub mod suggestion;
pub mod time;
pub mod training_labels;
pub mod upload;

pub use dead_letter::{DeadLetter, Reason, RecordOrigin, Stage};
pub use feedback::{FeedbackAction, FeedbackEvent, FeedbackRecord, normalize_tag};
pub use suggestion::{ModelRef, Source, Suggestion, TagScore};
pub use time::now_rfc3339;
pub use training_labels::{Label, LabelInputs, Provenance, TrainingLabels};
pub use upload::{ContractError, UploadEvent, ValidUpload, parse_s3_uri, parse_upload};

/// The only schema version this build reads and writes.
pub const SCHEMA_VERSION: u32 = 1;
