//! The suggestion (topic `gif-tag-suggestions`, key `gif_id`; `schemas/suggestion.schema.json`).

use serde::{Deserialize, Serialize};

use crate::{SCHEMA_VERSION, UploadEvent, ids, now_rfc3339};

/// Model identity inside a suggestion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelRef {
    pub name: String,
    pub version: String,
}

/// One suggested tag with its score in `[0, 1]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TagScore {
    pub tag: String,
    pub score: f32,
}

impl TagScore {
    /// The score as the f64 value of its JSON text: serde_json prints an f32 by its shortest
    /// round-trip form (`0.7`, not `0.699999988…`), and so does `Display`, so a 0.7 on the wire
    /// compares `>= 0.7` as a reader of the JSON would expect (the relabel thresholds rely on it).
    pub fn score_as_printed(&self) -> f64 {
        self.score.to_string().parse().unwrap_or(f64::from(self.score))
    }
}

/// Where an upload came from: a live upload, or a replay of the catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Live,
    Backfill,
}

impl Source {
    /// The wire name (`live`, `backfill`), also the worker's `lane` metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Live => "live",
            Self::Backfill => "backfill",
        }
    }
}

/// Tag suggestions for one GIF (topic `gif-tag-suggestions`, key `gif_id`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Suggestion {
    pub schema_version: u32,
    /// Deterministic: the same upload event and model give the same id, so a
    /// duplicate emitted after a crash is recognisable as such.
    pub event_id: String,
    pub upload_event_id: String,
    pub gif_id: String,
    pub model: ModelRef,
    /// Highest score first.
    pub tags: Vec<TagScore>,
    /// Distinct frames on screen at the sampled instants (sampling is by display time).
    pub frames_sampled: usize,
    /// Of those, the frames the model ran on: blank frames and near-duplicates of an inferred
    /// frame are not inferred (issue 16). Absent from producers before issue 16. Added
    /// without a schema version bump (new optional field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frames_inferred: Option<usize>,
    pub source: Source,
    /// RFC 3339, when the suggestion was rendered.
    pub produced_at: String,
    /// What was wrong with a GIF that was still tagged (e.g. `"truncated"`: the data ended
    /// inside a block after at least one complete frame; the frames that decoded were tagged).
    /// Absent for a clean GIF. Added without a schema version bump (new optional field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warnings: Option<Vec<String>>,
    /// The model's score for each of the upload event's `existing_tags` that is in the model's
    /// vocabulary (normalised tags), whether or not it was suggested: the relabel rule needs
    /// the score of original labels the model did not suggest. Absent when the upload carried
    /// no `existing_tags`. Added without a schema version bump (new optional field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub existing_tag_scores: Option<Vec<TagScore>>,
    /// The backfill run of the upload event (`source: backfill`), so a run's results can be
    /// told apart; absent on live suggestions. Added without a schema version bump.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backfill_run_id: Option<String>,
}

impl Suggestion {
    /// The suggestion answering `upload`; `event_id` is the uuid v5 of (upload event, model).
    pub fn new(
        upload: &UploadEvent,
        model: ModelRef,
        tags: Vec<TagScore>,
        frames_sampled: usize,
        source: Source,
    ) -> Self {
        let name = format!("suggestion:{}:{}:{}", upload.event_id, model.name, model.version);
        Self {
            schema_version: SCHEMA_VERSION,
            event_id: ids::deterministic_id(&name),
            upload_event_id: upload.event_id.clone(),
            gif_id: upload.gif_id.clone(),
            model,
            tags,
            frames_sampled,
            frames_inferred: None,
            source,
            produced_at: now_rfc3339(),
            warnings: None,
            existing_tag_scores: None,
            backfill_run_id: upload.backfill_run_id.clone(),
        }
    }

    /// Sets [`Suggestion::warnings`]: `None` when `warnings` is empty.
    pub fn with_warnings(mut self, warnings: &[&str]) -> Self {
        self.warnings = (!warnings.is_empty()).then(|| warnings.iter().map(|w| (*w).to_owned()).collect());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_upload;

    #[test]
    fn scores_compare_as_printed() {
        let t = TagScore { tag: "cat".into(), score: 0.7 };
        // What the worker writes (`to_vec` prints an f32 as an f32; `to_value` would widen it).
        assert_eq!(serde_json::to_string(&t).unwrap(), r#"{"tag":"cat","score":0.7}"#);
        assert!(t.score_as_printed() >= 0.7);
        assert!(f64::from(t.score) < 0.7, "the widened f32 is below 0.7: why the printed value is used");
        assert_eq!(TagScore { tag: "x".into(), score: 1.0 }.score_as_printed(), 1.0);
    }

    #[test]
    fn ids_are_deterministic() {
        let payload = br#"{"schema_version":1,"event_id":"e1","gif_id":"g1","s3_uri":"s3://b/k","uploaded_at":"2026-11-22T10:00:00Z"}"#;
        let v = parse_upload(Some(payload)).unwrap();
        let m = ModelRef { name: "m".into(), version: "1".into() };
        let a = Suggestion::new(&v.event, m.clone(), vec![], 1, Source::Live);
        let b = Suggestion::new(&v.event, m, vec![], 1, Source::Live);
        assert_eq!(a.event_id, b.event_id);
    }
}
