//! From per-frame tag scores to a GIF's suggestions.
//!
//! The model outputs one score per tag per frame (a multilabel head, as in GIPHY's tagger; the
//! default model sums ImageNet class probabilities per tag inside the TorchScript module). How
//! those become a GIF's tags is [`Scoring`]: data next to the model (`scoring.json`, its sha256
//! in `model.json` and covered by the model version), calibrated by `tools/calibrate_scoring.py`
//! on the calibration part of the labelled GIF set (`docs/quality.md`), not code constants.
//!
//! The rule, in order ([`ScoringRules::apply`]), over the sampled frames of a [`FramePlan`]
//! (a frame skipped as a near-duplicate takes the scores of the inferred frame it repeats,
//! [`crate::skip`]):
//! 1. A frame whose luma standard deviation is under `blank_luma_std` is content-free (black,
//!    white or grey, a fade's darkest step, a 1×1 GIF scaled up): it contributes nothing. A GIF
//!    of only such frames gets no tags.
//! 2. The remaining frames, in display order, are cut into scenes: a frame starts a new scene
//!    when the cosine similarity of its scores to the previous frame's is under
//!    `scene_similarity`. A scene's score of a tag is the mean over its frames, each weighted by
//!    its display time (`shown`: sampling is by time, so a frame on screen for several sampled
//!    instants weighs that many).
//! 3. Each scene offers its `per_scene_top_k` best tags that reach their threshold
//!    (`tag_thresholds`, else `threshold`); a GIF's score of a tag is its best scene's. The
//!    `max_tags` best offers are suggested.
//!
//! A mean over all frames would let a scene vanish: a tag at 0.9 in one of three scenes
//! averages to 0.3 (issue 14 measured scene recall falling from 0.975 for one scene to 0.82 for
//! three); per-scene pooling keeps it at 0.9, while the mean within a scene still smooths one
//! frame's noise, which max-pooling over frames would not.

use std::collections::BTreeMap;
use std::sync::Arc;

use autotag_contract::{TagScore, normalize_tag};
use serde::{Deserialize, Serialize};

use crate::skip::{FramePlan, Work};

/// How frame scores become a GIF's suggestions (module docs): the content of `scoring.json`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Scoring {
    /// Frames with a luma standard deviation (`gifcodec::luma_std`, 0–255 units) under this
    /// contribute nothing, and are not inferred ([`crate::skip`]). 0 keeps every frame.
    pub blank_luma_std: f32,
    /// A sampled frame whose signature distance (`gifcodec::FrameSignature::distance`, the mean
    /// absolute difference of 8×8 RGB thumbnails, 0–255) to an inferred frame is at most this
    /// reuses that frame's scores instead of being inferred ([`crate::skip`], issue 16). Absent:
    /// every content frame is inferred.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate_distance: Option<f32>,
    /// A sampled frame whose colour histogram distance (`gifcodec::FrameSignature::histogram_distance`,
    /// half the L1 distance of 64-bin histograms, 0–1) to an inferred frame is at most this is a
    /// duplicate too, however far its thumbnail moved (a pan or a zoom over one picture). Needs
    /// `duplicate_distance`; absent: only the thumbnail decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate_histogram_distance: Option<f32>,
    /// Consecutive frames whose score vectors have a cosine similarity of at least this are one
    /// scene. -1 makes the whole GIF one scene (the mean over frames); above 1 every frame is its
    /// own scene (max-pooling).
    pub scene_similarity: f32,
    /// Tags each scene may offer, its best first.
    pub per_scene_top_k: usize,
    /// At most this many tags per suggestion.
    pub max_tags: usize,
    /// A scene's tag is offered when its score is at least this (in `[0, 1]`)…
    pub threshold: f32,
    /// …or at least this tag's own threshold (tags of the model's vocabulary).
    #[serde(default)]
    pub tag_thresholds: BTreeMap<String, f32>,
}

impl Default for Scoring {
    /// The scoring of a model directory without `scoring.json` (exports before issue 14): the
    /// mean over all frames, the top 5 tags scoring at least 0.2.
    fn default() -> Self {
        Self {
            blank_luma_std: 0.0,
            duplicate_distance: None,
            duplicate_histogram_distance: None,
            scene_similarity: -1.0,
            per_scene_top_k: 5,
            max_tags: 5,
            threshold: 0.2,
            tag_thresholds: BTreeMap::new(),
        }
    }
}

/// Why a `scoring.json` is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct ScoringError(pub String);

/// A [`Scoring`] checked against a vocabulary: the thresholds resolved per tag index.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoringRules {
    pub scoring: Scoring,
    thresholds: Vec<f32>,
}

impl ScoringRules {
    /// Check `scoring` and resolve its per-tag thresholds against `vocab` (canonical tags).
    ///
    /// # Errors
    /// A value out of range, or a per-tag threshold for a tag that is not in `vocab` (a typo in
    /// the data would otherwise silently do nothing).
    pub fn new(scoring: Scoring, vocab: &[String]) -> Result<Self, ScoringError> {
        let bad = |m: String| Err(ScoringError(m));
        if !(0.0..=255.0).contains(&scoring.blank_luma_std) {
            return bad(format!("blank_luma_std {} is not within [0, 255]", scoring.blank_luma_std));
        }
        if let Some(d) = scoring.duplicate_distance.filter(|d| !(0.0..=255.0).contains(d)) {
            return bad(format!("duplicate_distance {d} is not within [0, 255]"));
        }
        if let Some(d) = scoring.duplicate_histogram_distance.filter(|d| !(0.0..=1.0).contains(d)) {
            return bad(format!("duplicate_histogram_distance {d} is not within [0, 1]"));
        }
        if !scoring.scene_similarity.is_finite() {
            return bad("scene_similarity must be a number".into());
        }
        if scoring.per_scene_top_k == 0 || scoring.max_tags == 0 {
            return bad("per_scene_top_k and max_tags must be at least 1".into());
        }
        let mut thresholds = vec![scoring.threshold; vocab.len()];
        if !(0.0..=1.0).contains(&scoring.threshold) {
            return bad(format!("threshold {} is not within [0, 1]", scoring.threshold));
        }
        if let Some((tag, t)) = scoring.tag_thresholds.iter().find(|(_, t)| !(0.0..=1.0).contains(*t)) {
            return bad(format!("the threshold of {tag:?} is {t}, not within [0, 1]"));
        }
        for (tag, &t) in &scoring.tag_thresholds {
            let canon = normalize_tag(tag);
            match vocab.iter().position(|v| *v == canon) {
                Some(i) => thresholds[i] = t,
                None => return bad(format!("tag_thresholds names {tag:?}, which is not in the vocabulary")),
            }
        }
        Ok(Self { scoring, thresholds })
    }

    /// The GIF's score of every tag and its suggestions (module docs), from a complete
    /// accumulator. `vocab[i]` names score `i`.
    pub fn apply(&self, acc: &Accumulator, vocab: &[String]) -> Scored {
        let s = &self.scoring;
        let n = acc.num_tags;
        // (scores, weight) of each content frame, in display order.
        let (content, weights): (Vec<&[f32]>, Vec<f32>) = acc
            .plan
            .frames
            .iter()
            .filter(|f| f.luma_std >= s.blank_luma_std)
            .filter_map(|f| {
                let scores = acc.slots.get(f.scores_from?)?.as_deref()?;
                (scores.len() == n).then_some((scores, finite(f.shown).max(0.0)))
            })
            .unzip();
        let mut scores = vec![0f32; n];
        let mut offers: BTreeMap<usize, f32> = BTreeMap::new();
        let mut scenes = 0;
        let mut i = 0;
        while i < content.len() {
            let mut j = i + 1;
            while j < content.len() && cosine(content[j - 1], content[j]) >= s.scene_similarity {
                j += 1;
            }
            scenes += 1;
            // Weighted by display time; equal weights if the plan carries none.
            let total: f32 = weights[i..j].iter().sum();
            let w = |k: usize| if total > 0.0 { weights[k] / total } else { 1.0 / (j - i) as f32 };
            let mean: Vec<f32> = (0..n).map(|t| (i..j).map(|k| w(k) * finite(content[k][t])).sum::<f32>()).collect();
            for (g, m) in scores.iter_mut().zip(&mean) {
                *g = g.max(*m);
            }
            for t in ranked(&mean).into_iter().take(s.per_scene_top_k) {
                if mean[t] >= self.thresholds.get(t).copied().unwrap_or(s.threshold) {
                    let o = offers.entry(t).or_insert(0.0);
                    *o = o.max(mean[t]);
                }
            }
            i = j;
        }
        let mut best: Vec<(usize, f32)> = offers.into_iter().filter(|&(t, _)| t < vocab.len()).collect();
        best.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        best.truncate(s.max_tags);
        let tags = best.into_iter().map(|(t, v)| TagScore { tag: vocab[t].clone(), score: rounded(v) }).collect();
        Scored { tags, scores, scenes, content_frames: content.len() }
    }
}

/// What [`ScoringRules::apply`] makes of a GIF.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    /// The suggestions, best first.
    pub tags: Vec<TagScore>,
    /// The GIF's score of every tag (its best scene's mean), vocabulary order; all 0 for a GIF
    /// without content frames.
    pub scores: Vec<f32>,
    /// Scenes found among the content frames.
    pub scenes: usize,
    /// Frames that were not content-free.
    pub content_frames: usize,
}

/// One GIF's model output, slot by slot, and the [`FramePlan`] that says which sampled frame
/// each slot is and which frames reuse it. Slots of one GIF may arrive in several batches,
/// finished out of order by different model instances: each is set at its index.
#[derive(Debug, Clone)]
pub struct Accumulator {
    num_tags: usize,
    plan: Arc<FramePlan>,
    slots: Vec<Option<Vec<f32>>>,
    seen: usize,
}

impl Accumulator {
    pub fn new(num_tags: usize, plan: Arc<FramePlan>) -> Self {
        let slots = vec![None; plan.inferred.len()];
        Self { num_tags, plan, slots, seen: 0 }
    }

    /// Set inferred slot `slot` (0-based in [`FramePlan::inferred`]): its `num_tags` scores
    /// (empty when the forward failed). A slot out of range or set twice is ignored.
    pub fn set_frame(&mut self, slot: usize, scores: &[f32]) {
        if let Some(entry @ None) = self.slots.get_mut(slot) {
            *entry = Some(scores.to_vec());
            self.seen += 1;
        }
    }

    pub fn is_complete(&self) -> bool {
        self.seen >= self.slots.len()
    }

    /// Frames sampled (every frame of the plan, inferred or not).
    pub fn frames(&self) -> usize {
        self.plan.frames.len()
    }

    /// Frames that went through the model (slots set so far).
    pub fn inferred(&self) -> usize {
        self.seen
    }

    pub fn num_tags(&self) -> usize {
        self.num_tags
    }
}

impl Scoring {
    /// The model work this scoring data allows ([`crate::skip`]).
    pub fn work(&self) -> Work {
        Work::Skip { blank_luma_std: self.blank_luma_std, duplicate_distance: self.duplicate_distance }
    }

    /// The distance [`crate::skip::plan`] compares with `duplicate_distance`, from a frame pair's
    /// thumbnail distance (0–255) and histogram distance (0–1): the thumbnail's, or, with
    /// `duplicate_histogram_distance`, the smaller of it and the histogram distance rescaled so
    /// that the two thresholds coincide (a pair is a duplicate when either is within its own).
    pub fn frame_distance(&self, thumb: f32, hist: f32) -> f32 {
        match (self.duplicate_distance, self.duplicate_histogram_distance) {
            (Some(d), Some(h)) if h > 0.0 => thumb.min(hist * d / h),
            _ => thumb,
        }
    }
}

fn finite(v: f32) -> f32 {
    if v.is_finite() { v } else { 0.0 }
}

/// Cosine similarity of two score vectors; 1 when either is all zero (nothing tells them apart).
fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut ab, mut aa, mut bb) = (0f32, 0f32, 0f32);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (finite(*x), finite(*y));
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa == 0.0 || bb == 0.0 { 1.0 } else { ab / (aa.sqrt() * bb.sqrt()) }
}

/// Tag indices by score, best first; ties by index (deterministic output).
fn ranked(scores: &[f32]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    idx
}

/// The GIF's score for each of the uploader's `existing` tags that is in `vocab` (the uploader's
/// tags pass [`normalize_tag`]; `vocab` is already canonical, as `manifest::read_manifest` returns
/// it; each tag once, in the uploader's order), whatever its score: the
/// suggestion's `existing_tag_scores`, which the relabel job keeps or halves original labels
/// by (issue 13). `None` when the upload carried no tags; an empty list when none of them is
/// in the vocabulary.
pub fn existing_tag_scores(scores: &[f32], vocab: &[String], existing: Option<&[String]>) -> Option<Vec<TagScore>> {
    let existing = existing.filter(|e| !e.is_empty())?;
    let mut out: Vec<TagScore> = Vec::new();
    for tag in existing.iter().map(|t| normalize_tag(t)) {
        if out.iter().any(|t| t.tag == tag) {
            continue;
        }
        if let Some(i) = vocab.iter().position(|v| *v == tag).filter(|&i| i < scores.len()) {
            out.push(TagScore { tag, score: rounded(scores[i]) });
        }
    }
    Some(out)
}

/// A score as published: clamped to `[0, 1]` (guards against fp drift past 1) and rounded to
/// 4 decimals for readable output.
fn rounded(score: f32) -> f32 {
    (score.clamp(0.0, 1.0) * 10_000.0).round() / 10_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab() -> Vec<String> {
        ["cat", "coffee", "dog", "rocket"].iter().map(|s| s.to_string()).collect()
    }

    /// Every frame inferred, equal display times.
    fn acc(frames: &[(&[f32], f32)]) -> Accumulator {
        let luma: Vec<f32> = frames.iter().map(|f| f.1).collect();
        let shown = vec![1.0 / frames.len() as f32; frames.len()];
        let plan = crate::skip::plan(&luma, &shown, |_, _| 0.0, Work::Full);
        let mut a = Accumulator::new(4, Arc::new(plan));
        // Out of order, as model instances may finish them.
        for (i, (s, _)) in frames.iter().enumerate().rev() {
            a.set_frame(i, s);
        }
        assert!(a.is_complete());
        a
    }

    fn rules(s: Scoring) -> ScoringRules {
        ScoringRules::new(s, &vocab()).unwrap()
    }

    fn names(s: &Scored) -> Vec<&str> {
        s.tags.iter().map(|t| t.tag.as_str()).collect()
    }

    #[test]
    fn default_is_the_mean_over_frames_then_threshold_and_top_k() {
        let a = acc(&[(&[0.9, 0.0, 0.2, 0.05], 50.0), (&[0.7, 0.1, 0.4, 0.05], 50.0)]);
        let got = rules(Scoring { max_tags: 2, ..Scoring::default() }).apply(&a, &vocab());
        assert_eq!(names(&got), ["cat", "dog"]);
        assert!((got.tags[0].score - 0.8).abs() < 1e-4);
        assert!((got.scores[2] - 0.3).abs() < 1e-6);
        assert_eq!(got.scenes, 1);
    }

    #[test]
    fn nothing_above_threshold_gives_no_tags_and_nan_is_ignored() {
        let a = acc(&[(&[f32::NAN, 0.01, 0.02, 0.0], 50.0)]);
        assert!(rules(Scoring::default()).apply(&a, &vocab()).tags.is_empty());
    }

    #[test]
    fn scenes_keep_a_tag_the_mean_would_dilute() {
        // Three scenes (cat, coffee, rocket) of two frames each: the mean over all six frames
        // gives each tag ~0.3, under a 0.4 threshold; per-scene pooling keeps all three.
        let cat: &[f32] = &[0.9, 0.0, 0.05, 0.0];
        let coffee: &[f32] = &[0.0, 0.85, 0.0, 0.05];
        let rocket: &[f32] = &[0.05, 0.0, 0.0, 0.8];
        let a = acc(&[(cat, 40.0), (cat, 40.0), (coffee, 40.0), (coffee, 40.0), (rocket, 40.0), (rocket, 40.0)]);
        let mean = rules(Scoring { threshold: 0.4, ..Scoring::default() }).apply(&a, &vocab());
        assert!(mean.tags.is_empty(), "{mean:?}");
        let scenes = Scoring { threshold: 0.4, scene_similarity: 0.7, per_scene_top_k: 1, ..Scoring::default() };
        let got = rules(scenes).apply(&a, &vocab());
        assert_eq!(names(&got), ["cat", "coffee", "rocket"]);
        assert_eq!(got.scenes, 3);
        assert!((got.scores[0] - 0.9).abs() < 1e-6, "a GIF's score is its best scene's");
    }

    #[test]
    fn blank_frames_contribute_nothing_and_a_blank_gif_gets_no_tags() {
        let blank: &[f32] = &[0.4, 0.0, 0.3, 0.0]; // what the model says of a black frame
        let cat: &[f32] = &[0.9, 0.0, 0.05, 0.0];
        let r = rules(Scoring { blank_luma_std: 4.0, ..Scoring::default() });
        let got = r.apply(&acc(&[(blank, 0.0), (blank, 1.5), (blank, 0.0)]), &vocab());
        assert!(got.tags.is_empty() && got.scores.iter().all(|&s| s == 0.0), "{got:?}");
        assert_eq!(got.content_frames, 0);
        // A fade from black: only the photo counts (dog's 0.3 of the black frames would pass 0.2).
        let got = r.apply(&acc(&[(blank, 0.0), (cat, 30.0), (cat, 30.0)]), &vocab());
        assert_eq!(names(&got), ["cat"]);
        assert!((got.tags[0].score - 0.9).abs() < 1e-6);
    }

    #[test]
    fn per_tag_thresholds_and_the_tag_budget() {
        let a = acc(&[(&[0.5, 0.45, 0.3, 0.25], 40.0)]);
        let mut s = Scoring { threshold: 0.2, ..Scoring::default() };
        s.tag_thresholds.insert("Cat".into(), 0.6);
        let got = rules(s.clone()).apply(&a, &vocab());
        assert_eq!(names(&got), ["coffee", "dog", "rocket"], "cat under its own threshold");
        let got = rules(Scoring { max_tags: 2, ..s.clone() }).apply(&a, &vocab());
        assert_eq!(names(&got), ["coffee", "dog"]);
        let got = rules(Scoring { per_scene_top_k: 1, ..s }).apply(&a, &vocab());
        assert_eq!(names(&got), Vec::<&str>::new(), "the scene's best (cat) is under its threshold");
    }

    #[test]
    fn bad_scoring_data_is_refused_naming_the_problem() {
        let mut s = Scoring::default();
        s.tag_thresholds.insert("unicorn".into(), 0.5);
        let e = ScoringRules::new(s, &vocab()).unwrap_err();
        assert!(e.0.contains("unicorn"), "{e}");
        let e = ScoringRules::new(Scoring { threshold: 1.5, ..Scoring::default() }, &vocab()).unwrap_err();
        assert!(e.0.contains("1.5"), "{e}");
        assert!(ScoringRules::new(Scoring { max_tags: 0, ..Scoring::default() }, &vocab()).is_err());
        let e = ScoringRules::new(Scoring { duplicate_distance: Some(-1.0), ..Scoring::default() }, &vocab());
        assert!(e.unwrap_err().0.contains("duplicate_distance"));
        let e = ScoringRules::new(Scoring { duplicate_histogram_distance: Some(2.0), ..Scoring::default() }, &vocab());
        assert!(e.unwrap_err().0.contains("duplicate_histogram_distance"));
    }

    #[test]
    fn a_pair_is_a_duplicate_when_either_distance_is_within_its_threshold() {
        let s =
            Scoring { duplicate_distance: Some(8.0), duplicate_histogram_distance: Some(0.2), ..Scoring::default() };
        assert_eq!(s.frame_distance(5.0, 0.9), 5.0, "thumbnail close");
        assert!((s.frame_distance(40.0, 0.1) - 4.0).abs() < 1e-6, "colours close: within 8 after rescaling");
        assert!(s.frame_distance(40.0, 0.3) > 8.0, "neither");
        let thumb_only = Scoring { duplicate_distance: Some(8.0), ..Scoring::default() };
        assert_eq!(thumb_only.frame_distance(40.0, 0.0), 40.0);
        assert!(serde_json::from_str::<Scoring>(r#"{"blank_luma_std":1,"scene_similarity":0.5,"per_scene_top_k":3,"max_tags":5,"threshold":0.4,"tag_threshold":{}}"#).is_err(), "unknown keys are refused");
    }

    #[test]
    fn frames_set_twice_or_out_of_range_are_ignored() {
        let plan = crate::skip::plan(&[9.0, 9.0], &[0.5, 0.5], |_, _| 0.0, Work::Full);
        let mut a = Accumulator::new(4, Arc::new(plan));
        a.set_frame(0, &[1.0, 0.0, 0.0, 0.0]);
        a.set_frame(0, &[0.0, 1.0, 0.0, 0.0]);
        a.set_frame(7, &[0.0, 1.0, 0.0, 0.0]);
        assert!(!a.is_complete());
        a.set_frame(1, &[]); // a failed forward
        assert!(a.is_complete());
        let got = rules(Scoring::default()).apply(&a, &vocab());
        assert_eq!(names(&got), ["cat"]);
    }

    #[test]
    fn duplicates_reuse_scores_weighted_by_the_time_they_show() {
        // Sampled frames: cat (shown 0.5), a blank frame (0.125), a duplicate of cat (0.125),
        // dog (0.25). Skipping infers two frames; the GIF scores as if all four were inferred.
        let cat: &[f32] = &[0.8, 0.0, 0.1, 0.0];
        let dog: &[f32] = &[0.1, 0.0, 0.9, 0.0];
        let (luma, shown) = ([30.0, 0.0, 30.0, 30.0], [0.5, 0.125, 0.125, 0.25]);
        let pictures = [0, 9, 0, 1];
        let work = Work::Skip { blank_luma_std: 4.0, duplicate_distance: Some(1.0) };
        let plan = crate::skip::plan(&luma, &shown, |a, b| if pictures[a] == pictures[b] { 0.0 } else { 50.0 }, work);
        assert_eq!(plan.inferred, [0, 3]);
        let mut a = Accumulator::new(4, Arc::new(plan));
        a.set_frame(1, dog);
        a.set_frame(0, cat);
        assert!(a.is_complete());
        assert_eq!((a.frames(), a.inferred()), (4, 2));
        // One scene (similarity -1): weights 0.5 + 0.125 cat, 0.25 dog, over 0.875.
        let s = Scoring { blank_luma_std: 4.0, threshold: 0.0, ..Scoring::default() };
        let got = rules(s).apply(&a, &vocab());
        let want_cat = (0.625 * 0.8 + 0.25 * 0.1) / 0.875;
        assert!((got.scores[0] - want_cat).abs() < 1e-6, "{:?}", got.scores);
        assert_eq!(got.content_frames, 3);
        assert_eq!(names(&got)[..2], ["cat", "dog"]);
    }

    #[test]
    fn existing_tags_get_their_score_whether_suggested_or_not() {
        let scores = [0.8, 0.01, 0.333_33, 0.0];
        let existing: Vec<String> = [" Dog", "coffee", "unicorn", "dog"].iter().map(|s| s.to_string()).collect();
        let got = existing_tag_scores(&scores, &vocab(), Some(&existing)).expect("tags were given");
        let got: Vec<(&str, f32)> = got.iter().map(|t| (t.tag.as_str(), t.score)).collect();
        assert_eq!(got, [("dog", 0.3333), ("coffee", 0.01)], "normalised, once each, unknown tags left out");
        assert_eq!(existing_tag_scores(&scores, &vocab(), None), None);
        assert_eq!(existing_tag_scores(&scores, &vocab(), Some(&[])), None);
        assert_eq!(existing_tag_scores(&scores, &vocab(), Some(&["unicorn".to_owned()])), Some(vec![]));
    }

    #[test]
    fn ties_are_deterministic() {
        let a = acc(&[(&[0.5, 0.5, 0.5, 0.1], 40.0)]);
        let got = rules(Scoring { max_tags: 3, threshold: 0.0, ..Scoring::default() }).apply(&a, &vocab());
        assert_eq!(names(&got), ["cat", "coffee", "dog"]);
    }
}
