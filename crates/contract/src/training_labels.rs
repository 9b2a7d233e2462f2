//! Training labels: a GIF's current labels for retraining (topic `gif-training-labels`, key
//! `gif_id`; `schemas/training-labels.schema.json`).
//!
//! **Owns** the record the relabel job writes and the [`Provenance`] codes that say where each
//! label came from. The rule that produces them is the relabel service's
//! (`crates/relabel/src/rule.rs`); it follows GIPHY's semi-supervised cleaning
//! (`shared/docs/seed-giphy-autotagging-part2.md`, "Semi-supervised learning"): keep an original
//! label the model agrees with, halve one it does not, add what the model is confident about,
//! and let users' add/reject feedback override the model.
//!
//! **Promises**: the latest record per key is the truth (the topic is created compacted); a
//! record is written when a GIF's set of (tag, score, provenance) changes, and a duplicate of
//! the latest record may follow a crash of the job (same labels, later `updated_at`).

use serde::{Deserialize, Serialize};

/// Where a training label came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provenance {
    /// An original label (the upload's `existing_tags`) the model scored at or above the keep
    /// threshold: score 1.0.
    Kept,
    /// An original label the model scored below the keep threshold, or did not score: score 0.5.
    Halved,
    /// A tag the model suggested at or above the add threshold that was not a label: its score.
    ModelAdded,
    /// Users' votes added it (a majority of distinct users' latest votes): score 1.0.
    UserAdded,
    /// Users' votes rejected it: score 0.0, and the model cannot add it back.
    UserRejected,
}

impl Provenance {
    /// Every code, in schema order.
    pub const ALL: [Provenance; 5] =
        [Provenance::Kept, Provenance::Halved, Provenance::ModelAdded, Provenance::UserAdded, Provenance::UserRejected];

    /// The wire name (`kept`, `halved`, `model_added`, `user_added`, `user_rejected`).
    pub fn as_str(self) -> &'static str {
        match self {
            Provenance::Kept => "kept",
            Provenance::Halved => "halved",
            Provenance::ModelAdded => "model_added",
            Provenance::UserAdded => "user_added",
            Provenance::UserRejected => "user_rejected",
        }
    }
}

/// One training label: a normalised tag ([`crate::normalize_tag`]), its target score in `[0, 1]`
/// and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Label {
    pub tag: String,
    /// The training target in `[0, 1]` (a soft label: 0.5 for a halved original).
    pub score: f64,
    pub provenance: Provenance,
}

/// The input records a [`TrainingLabels`] record reflects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelInputs {
    /// The newest upload (or backfill) event of the GIF, by (`uploaded_at`, `event_id`).
    pub upload_event_id: String,
    /// The newest suggestion of the GIF, by (`produced_at`, `event_id`).
    pub suggestion_event_id: String,
    /// Distinct feedback events (by `client`, `event_id`) counted for the GIF, `seen` included.
    pub feedback_events: u64,
}

/// A GIF's current training labels (topic `gif-training-labels`, key `gif_id`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingLabels {
    /// Always [`crate::SCHEMA_VERSION`].
    pub schema_version: u32,
    pub gif_id: String,
    /// `s3://bucket/key` of the GIF, from its newest upload event.
    pub s3_uri: String,
    /// Sorted by tag; a tag appears once.
    pub labels: Vec<Label>,
    /// The model version of the newest suggestion.
    pub model_version: String,
    pub inputs: LabelInputs,
    /// RFC 3339 UTC with milliseconds, when the record was written.
    pub updated_at: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provenance_wire_names_round_trip() {
        for p in Provenance::ALL {
            let v = serde_json::to_value(p).unwrap();
            assert_eq!(v, p.as_str());
            assert_eq!(serde_json::from_value::<Provenance>(v).unwrap(), p);
        }
    }
}
