//! Tag quality: how good autotag's suggestions are against known true tags (issue 14).
//!
//! **Owns** the metrics ([`metrics`]): GIPHY's four (`shared/docs/seed-giphy-autotagging-part2.md`,
//! "Training and Evaluation": IOU, at-least-one-correct, all-correct, semantic accuracy) plus the
//! precision and recall of the tags actually suggested, scene recall and per-tag figures, as
//! pure functions of tag lists and a report that aggregates them.
//!
//! **Limits** (what lands later): the runner (`autotag eval --labels FILE.jsonl`, which tags
//! each GIF with the worker's decoder, model and scoring), `autotag tag`, the tag embeddings
//! for the semantic metric, the labelled GIF set.
//!
//! **Never imports** a service.

pub mod metrics;
