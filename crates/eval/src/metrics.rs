//! The metrics of tag quality, per GIF and aggregated ([`Report`]).
//!
//! Per GIF, with `truth` its N true tags, `ranked` the model's whole vocabulary ordered by score
//! (best first) and `suggested` the tags it actually suggested (above its threshold, within its
//! top-k):
//! - **`iou`** — |truth ∩ top-N(ranked)| / N. This is the seed's number: its own example (true
//!   {soccer, goal}, predicted {soccer, ball}) "is 0.5", which is the intersection over N, not
//!   over the union (that would be 1/3). The union-normalised value is reported as
//!   **`jaccard`** = |truth ∩ top-N| / |truth ∪ top-N|.
//! - **`at_least_one`** — the share of GIFs whose `iou` is not zero (seed: "the percentage of GIFs
//!   for which IOU is not zero").
//! - **`all_correct`** — the share of GIFs whose `iou` is 1 (every true tag in the top N).
//! - **`semantic`** — per GIF, the largest over true tags of the smallest cosine distance to a
//!   suggested tag (seed: "pairwise cosine distances, … minmax distance"); `mean` over GIFs and
//!   `share_under` a threshold. A GIF without suggestions, or a tag without an embedding, is
//!   left out and counted.
//! - **`precision`**, **`recall`** — micro-averaged over all suggested / all true tags.
//! - **`scene_recall`** — the share of scenes (a GIF's shots, each with its own true tags) with at
//!   least one of their tags suggested.
//!
//! GIFs and scenes whose true tags are empty are left out of every figure and counted.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

/// |truth ∩ top-N(ranked)| for N = |truth|.
fn hits_in_top_n(truth: &BTreeSet<&str>, ranked: &[String]) -> usize {
    ranked.iter().take(truth.len()).filter(|t| truth.contains(t.as_str())).count()
}

/// The seed's IOU: |truth ∩ top-N(ranked)| / N, N = |truth| (0 when `truth` is empty).
pub fn iou(truth: &[String], ranked: &[String]) -> f64 {
    let truth: BTreeSet<&str> = truth.iter().map(String::as_str).collect();
    if truth.is_empty() {
        return 0.0;
    }
    hits_in_top_n(&truth, ranked) as f64 / truth.len() as f64
}

/// |truth ∩ top-N| / |truth ∪ top-N|, N = |truth| (0 when `truth` is empty).
pub fn jaccard(truth: &[String], ranked: &[String]) -> f64 {
    let truth: BTreeSet<&str> = truth.iter().map(String::as_str).collect();
    if truth.is_empty() {
        return 0.0;
    }
    let top: BTreeSet<&str> = ranked.iter().take(truth.len()).map(String::as_str).collect();
    truth.intersection(&top).count() as f64 / truth.union(&top).count() as f64
}

/// Cosine distance, 1 − cos(a, b), in `[0, 2]`; `None` for a zero vector or unequal lengths.
pub fn cosine_distance(a: &[f32], b: &[f32]) -> Option<f64> {
    if a.len() != b.len() || a.is_empty() {
        return None;
    }
    let (mut dot, mut na, mut nb) = (0.0f64, 0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (f64::from(*x), f64::from(*y));
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        return None;
    }
    Some(1.0 - dot / (na.sqrt() * nb.sqrt()))
}

/// The seed's semantic distance of one GIF: max over true tags of the min cosine distance to a
/// suggested tag. `None` when nothing was suggested or a tag has no embedding.
pub fn semantic_distance<'e>(
    truth: &[String],
    suggested: &[String],
    embedding: impl Fn(&str) -> Option<&'e [f32]>,
) -> Option<f64> {
    if truth.is_empty() || suggested.is_empty() {
        return None;
    }
    let mut worst: f64 = 0.0;
    for t in truth {
        let te = embedding(t)?;
        let mut best = f64::INFINITY;
        for s in suggested {
            best = best.min(cosine_distance(te, embedding(s)?)?);
        }
        worst = worst.max(best);
    }
    Some(worst)
}

/// One evaluated GIF.
#[derive(Debug, Clone, Default)]
pub struct GifResult {
    /// The GIF's true tags (the union of its scenes').
    pub truth: Vec<String>,
    /// The true tags of each scene (empty: the GIF is one scene, `truth`).
    pub scenes: Vec<Vec<String>>,
    /// The whole vocabulary ordered by the GIF's score, best first.
    pub ranked: Vec<String>,
    /// The tags suggested.
    pub suggested: Vec<String>,
    /// The semantic distance, if computable ([`semantic_distance`]).
    pub semantic: Option<f64>,
}

/// A figure with its count: `value` over `n`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Share {
    pub value: f64,
    pub n: u64,
}

/// The semantic metric's summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Semantic {
    /// Mean distance over the GIFs it was computable for.
    pub mean: f64,
    /// Share of those GIFs whose distance is under `threshold`.
    pub share_under: f64,
    pub threshold: f64,
    /// GIFs it was computable for; the others had no suggestion or an unembedded tag.
    pub gifs: u64,
}

/// Precision and recall of one tag.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct TagFigures {
    /// GIFs for which it is a true tag.
    pub truth: u64,
    /// GIFs it was suggested for.
    pub suggested: u64,
    pub correct: u64,
    pub precision: f64,
    pub recall: f64,
}

/// The headline figures of a [`Report`] by their JSON names (issue 14 fixes them).
pub const FIGURES: [&str; 9] = [
    "iou",
    "jaccard",
    "at_least_one",
    "all_correct",
    "semantic",
    "precision",
    "recall",
    "scene_recall",
    "tags_per_gif",
];

/// The aggregated figures (the names of `autotag eval --json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    pub gifs: u64,
    /// GIFs left out: no true tag.
    pub gifs_without_truth: u64,
    pub iou: f64,
    pub jaccard: f64,
    pub at_least_one: f64,
    pub all_correct: f64,
    pub semantic: Semantic,
    pub precision: f64,
    pub recall: f64,
    pub scene_recall: f64,
    pub scenes: u64,
    /// Scenes left out: no true tag.
    pub scenes_without_truth: u64,
    pub tags_per_gif: f64,
    /// GIFs that got no suggestion at all.
    pub no_suggestion: u64,
    /// The `per_tag_limit` most frequent true tags.
    pub per_tag: BTreeMap<String, TagFigures>,
}

impl Report {
    /// Aggregate `results`; `semantic_threshold` for `semantic.share_under`; per-tag figures
    /// for the `per_tag_limit` most frequent true tags.
    pub fn new(results: &[GifResult], semantic_threshold: f64, per_tag_limit: usize) -> Self {
        let mut r =
            Report { semantic: Semantic { threshold: semantic_threshold, ..Semantic::default() }, ..Report::default() };
        let (mut iou_sum, mut jac_sum, mut one, mut all) = (0.0, 0.0, 0u64, 0u64);
        let (mut correct, mut suggested, mut truth_n, mut tags) = (0u64, 0u64, 0u64, 0u64);
        let (mut scenes_hit, mut sem_sum, mut sem_under) = (0u64, 0.0, 0u64);
        let mut per_tag: BTreeMap<String, TagFigures> = BTreeMap::new();
        for g in results {
            let truth: BTreeSet<&str> = g.truth.iter().map(String::as_str).collect();
            if truth.is_empty() {
                r.gifs_without_truth += 1;
                continue;
            }
            r.gifs += 1;
            let i = iou(&g.truth, &g.ranked);
            iou_sum += i;
            jac_sum += jaccard(&g.truth, &g.ranked);
            one += u64::from(i > 0.0);
            all += u64::from(i >= 1.0);
            let sugg: BTreeSet<&str> = g.suggested.iter().map(String::as_str).collect();
            tags += sugg.len() as u64;
            r.no_suggestion += u64::from(sugg.is_empty());
            suggested += sugg.len() as u64;
            truth_n += truth.len() as u64;
            correct += sugg.intersection(&truth).count() as u64;
            for t in &truth {
                let f = per_tag.entry((*t).to_owned()).or_default();
                f.truth += 1;
                f.correct += u64::from(sugg.contains(t));
            }
            for s in &sugg {
                per_tag.entry((*s).to_owned()).or_default().suggested += 1;
            }
            let scenes: Vec<&Vec<String>> =
                if g.scenes.is_empty() { vec![&g.truth] } else { g.scenes.iter().collect() };
            for scene in scenes {
                if scene.is_empty() {
                    r.scenes_without_truth += 1;
                    continue;
                }
                r.scenes += 1;
                scenes_hit += u64::from(scene.iter().any(|t| sugg.contains(t.as_str())));
            }
            if let Some(d) = g.semantic {
                r.semantic.gifs += 1;
                sem_sum += d;
                sem_under += u64::from(d < semantic_threshold);
            }
        }
        let div = |a: f64, b: u64| if b == 0 { 0.0 } else { a / b as f64 };
        r.iou = div(iou_sum, r.gifs);
        r.jaccard = div(jac_sum, r.gifs);
        r.at_least_one = div(one as f64, r.gifs);
        r.all_correct = div(all as f64, r.gifs);
        r.precision = div(correct as f64, suggested);
        r.recall = div(correct as f64, truth_n);
        r.scene_recall = div(scenes_hit as f64, r.scenes);
        r.tags_per_gif = div(tags as f64, r.gifs);
        r.semantic.mean = div(sem_sum, r.semantic.gifs);
        r.semantic.share_under = div(sem_under as f64, r.semantic.gifs);
        let mut frequent: Vec<(String, TagFigures)> = per_tag.into_iter().filter(|(_, f)| f.truth > 0).collect();
        frequent.sort_by(|a, b| b.1.truth.cmp(&a.1.truth).then_with(|| a.0.cmp(&b.0)));
        frequent.truncate(per_tag_limit);
        r.per_tag = frequent
            .into_iter()
            .map(|(t, mut f)| {
                f.precision = div(f.correct as f64, f.suggested);
                f.recall = div(f.correct as f64, f.truth);
                (t, f)
            })
            .collect();
        r
    }
}

#[cfg(test)]
mod tests;
