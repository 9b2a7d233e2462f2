//! From per-frame tag scores to a GIF's suggestions.
//!
//! The model outputs one score per tag per frame (a multilabel head, as in
//! GIPHY's tagger; the default model sums ImageNet class probabilities per
//! tag inside the TorchScript module). A GIF's score for a tag is the mean
//! over its sampled frames: a tag must be visible through the animation, not
//! in one frame, to be suggested with high confidence.

use autotag_contract::{TagScore, normalize_tag};

/// Running sum of one GIF's frame scores. Frames of one GIF may arrive in
/// several batches.
#[derive(Debug, Clone)]
pub struct Accumulator {
    sums: Vec<f32>,
    seen: usize,
    expected: usize,
}

impl Accumulator {
    pub fn new(num_tags: usize, expected_frames: usize) -> Self {
        Self { sums: vec![0.0; num_tags], seen: 0, expected: expected_frames }
    }

    /// Add one frame's scores (`num_tags` values).
    pub fn add_frame(&mut self, scores: &[f32]) {
        for (s, v) in self.sums.iter_mut().zip(scores) {
            *s += if v.is_finite() { *v } else { 0.0 };
        }
        self.seen += 1;
    }

    pub fn is_complete(&self) -> bool {
        self.seen >= self.expected
    }

    pub fn frames(&self) -> usize {
        self.seen
    }

    /// Mean score per tag.
    pub fn means(&self) -> Vec<f32> {
        let n = self.seen.max(1) as f32;
        self.sums.iter().map(|s| s / n).collect()
    }
}

/// The `top_k` tags scoring at least `threshold`, best first. Ties break by
/// tag index so the output is deterministic.
pub fn top_tags(scores: &[f32], vocab: &[String], top_k: usize, threshold: f32) -> Vec<TagScore> {
    let mut idx: Vec<usize> = (0..scores.len().min(vocab.len())).filter(|&i| scores[i] >= threshold).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    idx.truncate(top_k);
    idx.into_iter().map(|i| TagScore { tag: vocab[i].clone(), score: rounded(scores[i]) }).collect()
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

/// The standard deviation of a frame's luma (ITU-R BT.601 weights), in 0–255 units: how much a
/// frame shows. A uniform frame (all black, white, grey; a fade's darkest step; a 1×1 GIF scaled
/// up) is 0. `rgb` is packed RGB (`len` a multiple of 3); an empty frame is 0.
pub fn luma_std(rgb: &[u8]) -> f32 {
    let n = rgb.len() / 3;
    if n == 0 {
        return 0.0;
    }
    let (mut sum, mut sq) = (0f64, 0f64);
    for px in rgb.chunks_exact(3) {
        let y = 0.299 * f64::from(px[0]) + 0.587 * f64::from(px[1]) + 0.114 * f64::from(px[2]);
        sum += y;
        sq += y * y;
    }
    let mean = sum / n as f64;
    ((sq / n as f64 - mean * mean).max(0.0)).sqrt() as f32
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

    #[test]
    fn mean_over_frames_then_threshold_and_top_k() {
        let mut acc = Accumulator::new(4, 2);
        acc.add_frame(&[0.9, 0.0, 0.2, 0.05]);
        assert!(!acc.is_complete());
        acc.add_frame(&[0.7, 0.1, 0.4, 0.05]);
        assert!(acc.is_complete());
        let tags = top_tags(&acc.means(), &vocab(), 2, 0.1);
        assert_eq!(tags.len(), 2);
        assert_eq!(tags[0].tag, "cat");
        assert!((tags[0].score - 0.8).abs() < 1e-4);
        assert_eq!(tags[1].tag, "dog");
    }

    #[test]
    fn nothing_above_threshold_gives_no_tags_and_nan_is_ignored() {
        let mut acc = Accumulator::new(4, 1);
        acc.add_frame(&[f32::NAN, 0.01, 0.02, 0.0]);
        assert!(top_tags(&acc.means(), &vocab(), 5, 0.1).is_empty());
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
    fn luma_std_of_uniform_and_two_tone_frames() {
        assert_eq!(luma_std(&[]), 0.0);
        assert_eq!(luma_std(&[7, 7, 7].repeat(100)), 0.0);
        // Half black, half white: luma 0 and 255 (weights sum to 1), std 127.5.
        let mut two = [0u8, 0, 0].repeat(50);
        two.extend([255u8, 255, 255].repeat(50));
        assert!((luma_std(&two) - 127.5).abs() < 1e-3, "{}", luma_std(&two));
    }

    #[test]
    fn ties_are_deterministic() {
        let t = top_tags(&[0.5, 0.5, 0.5, 0.1], &vocab(), 3, 0.0);
        let names: Vec<_> = t.iter().map(|t| t.tag.as_str()).collect();
        assert_eq!(names, ["cat", "coffee", "dog"]);
    }
}
