//! Less model work per GIF (issue 16): which sampled frames go through the model.
//!
//! GIFs repeat themselves: the TGIF corpus averages ~41 frames in ~2.5 shots, static GIFs show
//! one picture, fades and letterboxes show nothing. So, in display order ([`plan`]):
//! 1. a frame whose luma standard deviation is under the scoring data's `blank_luma_std` is
//!    content-free: it is not inferred, and contributes nothing ([`crate::scoring`] drops it
//!    whether inferred or not, so skipping it changes no tag);
//! 2. frames whose signature distance (the decoder's thumbnail difference, 0–255) to a group's
//!    first frame is at most `duplicate_distance` form a group; one of them, the group's medoid,
//!    is inferred, and the others reuse its scores, each weighted by its own display time;
//! 3. every other frame is inferred.
//!
//! So a static or single-picture GIF costs one forward, two alternating scenes cost two, and a
//! blank frame costs none; the budget `frames.per_gif` stays the maximum. The thresholds are the
//! model's scoring data (`scoring.json`, covered by the model version), chosen by measurement
//! (`docs/quality.md`), not code constants. This is the idea of ffmpeg's `mpdecimate` and of
//! video-analytics systems (NoScope, Reducto): do not run the model on what did not change.

/// Why a sampled frame was not inferred: the `reason` label of
/// `autotag_frames_skipped_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// Near-uniform: shows nothing.
    Blank,
    /// Close to a frame already inferred: reuses its scores.
    Duplicate,
}

impl SkipReason {
    pub const ALL: [SkipReason; 2] = [SkipReason::Blank, SkipReason::Duplicate];

    /// Stable metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Blank => "blank",
            Self::Duplicate => "duplicate",
        }
    }
}

/// One sampled frame in a [`FramePlan`].
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedFrame {
    /// The inferred frame (slot in [`FramePlan::inferred`]) whose scores this frame takes; `None`
    /// for a skipped blank frame.
    pub scores_from: Option<usize>,
    /// How much the frame shows (the decoder's luma standard deviation, 0–255).
    pub luma_std: f32,
    /// Its share of the sampled display time (the decoder's `shown`): its weight in its scene.
    pub shown: f32,
    /// Why it was not inferred, if it was not.
    pub skipped: Option<SkipReason>,
}

/// Which of a GIF's sampled frames the model runs on, and where each frame's scores come from.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FramePlan {
    /// Every sampled frame, in display order.
    pub frames: Vec<PlannedFrame>,
    /// The sampled index of each inferred frame, increasing: slot `s` of the model's output is
    /// frame `inferred[s]`.
    pub inferred: Vec<usize>,
}

/// How much work [`plan`] may save.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Work {
    /// Every sampled frame is inferred (the full-work baseline of the quality guard, and what
    /// `autotag eval --dump-frames` records for calibration).
    Full,
    /// Blank frames are not inferred; frames within `duplicate_distance` (if any) of an inferred
    /// one reuse its scores.
    Skip {
        /// Luma standard deviation under which a frame is blank (`blank_luma_std`).
        blank_luma_std: f32,
        /// Largest signature distance at which a frame is a duplicate; `None`: none is.
        duplicate_distance: Option<f32>,
    },
}

/// Plan a GIF's model work. `luma_std[i]` and `shown[i]` describe sampled frame `i` (display
/// order); `distance(i, j)` is the signature distance between sampled frames `i` and `j`
/// (symmetric, ≥ 0; 0–255 for the decoder's thumbnails).
///
/// Content frames are grouped greedily in display order: a frame joins the group of the
/// closest group's first frame when within `duplicate_distance`, else starts a group (comparing
/// with first frames only keeps a slow drift from chaining). Each group's inferred frame is its
/// medoid, the member with the least display-time-weighted distance to the others (ties: the
/// earliest): in a slow pan that is the middle view, not the first, so the reused scores stand
/// for the whole group.
pub fn plan(luma_std: &[f32], shown: &[f32], distance: impl Fn(usize, usize) -> f32, work: Work) -> FramePlan {
    let n = luma_std.len();
    let shown_at = |i: usize| shown.get(i).copied().unwrap_or(0.0);
    // Group of each frame (None: blank), and each group's members.
    let mut group: Vec<Option<usize>> = vec![None; n];
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for i in 0..n {
        let joins = match work {
            Work::Full => None,
            Work::Skip { blank_luma_std, .. } if luma_std[i] < blank_luma_std => continue,
            Work::Skip { duplicate_distance: None, .. } => None,
            Work::Skip { duplicate_distance: Some(max), .. } => groups
                .iter()
                .enumerate()
                .map(|(g, members)| (g, distance(i, members[0])))
                .filter(|&(_, d)| d <= max)
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(g, _)| g),
        };
        let g = joins.unwrap_or_else(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[g].push(i);
        group[i] = Some(g);
    }
    let medoid = |members: &[usize]| -> usize {
        let cost = |i: usize| members.iter().map(|&j| shown_at(j) * distance(i, j)).sum::<f32>();
        let mut best = members[0];
        let mut best_cost = cost(best);
        for &i in &members[1..] {
            let c = cost(i);
            if c < best_cost {
                (best, best_cost) = (i, c);
            }
        }
        best
    };
    let mut reps: Vec<usize> = groups.iter().map(|m| medoid(m)).collect();
    let mut inferred = reps.clone();
    inferred.sort_unstable();
    // Group → slot of its representative.
    for r in &mut reps {
        *r = inferred.binary_search(r).unwrap_or(0);
    }
    let frames = (0..n)
        .map(|i| {
            let scores_from = group[i].map(|g| reps[g]);
            let skipped = match group[i] {
                None => Some(SkipReason::Blank),
                Some(g) if inferred[reps[g]] != i => Some(SkipReason::Duplicate),
                Some(_) => None,
            };
            PlannedFrame { scores_from, luma_std: luma_std[i], shown: shown_at(i), skipped }
        })
        .collect();
    FramePlan { frames, inferred }
}

impl FramePlan {
    /// Frames skipped for `reason`.
    pub fn skipped(&self, reason: SkipReason) -> usize {
        self.frames.iter().filter(|f| f.skipped == Some(reason)).count()
    }

    /// Keep only the inferred frames of `frames` (sampled frames of `frame_bytes` bytes each, one
    /// after the other, as the decoder returns them), in slot order, in place.
    pub fn compact(&self, frames: &mut Vec<u8>, frame_bytes: usize) {
        for (slot, &i) in self.inferred.iter().enumerate() {
            if slot != i && (i + 1) * frame_bytes <= frames.len() {
                // `inferred` increases, so slot ≤ i: copying down never overwrites a frame to keep.
                frames.copy_within(i * frame_bytes..(i + 1) * frame_bytes, slot * frame_bytes);
            }
        }
        frames.truncate(self.inferred.len() * frame_bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SKIP: Work = Work::Skip { blank_luma_std: 4.0, duplicate_distance: Some(6.0) };

    /// Frames described by a "picture" number each (equal pictures at distance 0, different ones
    /// at 50) and a luma std; equal display times.
    fn run(pictures: &[(u32, f32)], work: Work) -> FramePlan {
        let luma: Vec<f32> = pictures.iter().map(|p| p.1).collect();
        let shown = vec![1.0 / pictures.len() as f32; pictures.len()];
        plan(&luma, &shown, |a, b| if pictures[a].0 == pictures[b].0 { 0.0 } else { 50.0 }, work)
    }

    #[test]
    fn eight_identical_frames_infer_one() {
        let p = run(&[(7, 30.0); 8], SKIP);
        assert_eq!(p.inferred, [0]);
        assert!(p.frames.iter().all(|f| f.scores_from == Some(0)));
        assert_eq!(p.skipped(SkipReason::Duplicate), 7);
    }

    #[test]
    fn two_alternating_scenes_infer_two() {
        let p = run(&[(1, 30.0), (2, 30.0), (1, 30.0), (2, 30.0), (1, 30.0), (2, 30.0), (1, 30.0), (2, 30.0)], SKIP);
        assert_eq!(p.inferred, [0, 1]);
        let from: Vec<Option<usize>> = p.frames.iter().map(|f| f.scores_from).collect();
        assert_eq!(from, [Some(0), Some(1), Some(0), Some(1), Some(0), Some(1), Some(0), Some(1)]);
    }

    #[test]
    fn a_blank_frame_infers_nothing() {
        let p = run(&[(0, 0.0)], SKIP);
        assert!(p.inferred.is_empty());
        assert_eq!(p.frames[0].scores_from, None);
        assert_eq!(p.frames[0].skipped, Some(SkipReason::Blank));
        // A fade in: the blank frames cost nothing, the picture one forward.
        let p = run(&[(0, 0.0), (0, 1.0), (3, 40.0), (3, 40.0)], SKIP);
        assert_eq!(p.inferred, [2]);
        assert_eq!((p.skipped(SkipReason::Blank), p.skipped(SkipReason::Duplicate)), (2, 1));
    }

    #[test]
    fn full_work_infers_every_frame_blank_or_not() {
        let p = run(&[(0, 0.0), (1, 30.0), (1, 30.0)], Work::Full);
        assert_eq!(p.inferred, [0, 1, 2]);
        assert!(p.frames.iter().all(|f| f.skipped.is_none()));
        // Without a duplicate threshold only blank frames are skipped.
        let p = run(&[(0, 0.0), (1, 30.0), (1, 30.0)], Work::Skip { blank_luma_std: 4.0, duplicate_distance: None });
        assert_eq!(p.inferred, [1, 2]);
    }

    #[test]
    fn a_frame_joins_the_closest_group_and_never_chains() {
        // Distances on a line: frame i at position pos[i]; threshold 6.
        let pos = [0.0f32, 10.0, 4.0, 8.0, 14.0];
        let luma = [30.0; 5];
        let p = plan(&luma, &[0.2; 5], |a, b| (pos[a] - pos[b]).abs(), SKIP);
        // Groups by first frame: 0 starts one; 10 is 10 away: starts one; 4 is 4 from 0 and 6
        // from 10: joins 0's; 8 is 2 from 10: joins it; 14 is 4 from 10 (within 6 of the group's
        // first frame, though 6 from 8): joins it. Medoids: {0, 4} tie → frame 0; {10, 8, 14} → 10.
        assert_eq!(p.inferred, [0, 1]);
        let from: Vec<Option<usize>> = p.frames.iter().map(|f| f.scores_from).collect();
        assert_eq!(from, [Some(0), Some(1), Some(0), Some(1), Some(1)]);
        assert_eq!(p.frames[3].shown, 0.2);
    }

    #[test]
    fn a_slow_pan_infers_its_middle_view() {
        // Three views 3 apart, all within 6 of the first: one group, whose medoid is the middle.
        let pos = [0.0f32, 3.0, 6.0];
        let p = plan(&[30.0; 3], &[1.0 / 3.0; 3], |a, b| (pos[a] - pos[b]).abs(), SKIP);
        assert_eq!(p.inferred, [1]);
        assert!(p.frames.iter().all(|f| f.scores_from == Some(0)));
        assert_eq!(p.frames.iter().map(|f| f.skipped.is_none()).collect::<Vec<_>>(), [false, true, false]);
        // Display time moves the medoid: the last view shows most of the time.
        let p = plan(&[30.0; 3], &[0.1, 0.1, 0.8], |a, b| (pos[a] - pos[b]).abs(), SKIP);
        assert_eq!(p.inferred, [2]);
    }

    #[test]
    fn compact_keeps_the_inferred_frames_in_slot_order() {
        let p = run(&[(0, 0.0), (1, 30.0), (1, 30.0), (2, 30.0)], SKIP);
        assert_eq!(p.inferred, [1, 3]);
        let mut frames = vec![0u8, 0, 1, 1, 1, 1, 2, 2];
        p.compact(&mut frames, 2);
        assert_eq!(frames, [1, 1, 2, 2]);
    }
}
