//! Tag quality: how good autotag's suggestions are against known true tags (issue 14).
//!
//! **Owns** the metrics ([`metrics`]): GIPHY's four (`shared/docs/seed-giphy-autotagging-part2.md`,
//! "Training and Evaluation": IOU, at-least-one-correct, all-correct, semantic accuracy) plus the
//! precision and recall of the tags actually suggested, scene recall and per-tag figures, as
//! pure functions of tag lists and a report that aggregates them.
//!
//! [`tagger`] tags one GIF as the worker does (decoder, sampling, model, scoring) and [`tag`] is
//! `autotag tag FILE_OR_S3_URI...` on top of it, configured by [`config`] (the worker's own
//! `[model]`, `[frames]`, `[limits]`, `[s3]` sections).
//!
//! [`runner`] is `autotag eval --labels FILE.jsonl`: the labelled set tagged, the metrics
//! overall and per group.
//!
//! [`embeddings`] reads the tag vectors of the semantic metric (`tools/embed_tags.py` writes
//! them). The labelled GIF set is built by `tools/make_eval_set.py`, the scoring data calibrated
//! by `tools/calibrate_scoring.py` (`docs/quality.md`).
//!
//! **Never imports** a service (it links libtorch through `model`, like the worker).

pub mod config;
pub mod embeddings;
pub mod metrics;
pub mod runner;
pub mod tag;
pub mod tagger;

pub use config::EvalConfig;
