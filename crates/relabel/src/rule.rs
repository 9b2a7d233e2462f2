//! The relabel rule: a GIF's training labels from its original labels, the model's newest
//! suggestion and its users' votes. A pure function of the folded state, so that the job's
//! result does not depend on the order its three input streams arrive in.
//!
//! The rule (GIPHY's semi-supervised cleaning, `shared/docs/seed-giphy-autotagging-part2.md`,
//! "Semi-supervised learning", with user feedback on top; issue 13). Thresholds are inclusive
//! (`score >= threshold`):
//! 1. an original label (the newest upload's `existing_tags`) whose model score is at least
//!    `keep` stays at 1.0 ([`Provenance::Kept`]); otherwise it is halved to 0.5
//!    ([`Provenance::Halved`]), also when no suggestion scored it;
//! 2. every tag of the newest suggestion scored at least `add` that is not yet a label is
//!    added at its score ([`Provenance::ModelAdded`]);
//! 3. feedback overrides the model: per tag, each user's latest `add`/`reject` is a vote; the
//!    majority of distinct users decides, a tie goes to the most recent vote; `add` gives 1.0
//!    ([`Provenance::UserAdded`]), `reject` 0.0 ([`Provenance::UserRejected`]), so the model
//!    cannot add a rejected tag back. `seen` changes no label but is counted.
//!
//! An original label's score is the one from the newest suggestion that scored it (in
//! `existing_tag_scores` or `tags`): a newer suggestion that did not score it does not erase
//! it, so a backfill whose events carry no `existing_tags` cannot halve a GIF's labels.
//!
//! **Folds** ([`GifState::apply`]) are commutative and idempotent: the newest record wins by
//! [`OrderKey`], a user's vote is the latest by key, a feedback event counts once by
//! (`client`, `event_id`). Applying any permutation of any multiset of the same facts gives the
//! same state.
//!
//! **Feedback ids are bounded by time** ([`FEEDBACK_ID_WINDOW_SECS`]): a GIF keeps the ids of
//! the feedback events that occurred within the window before its newest one; older ids leave
//! the set and are kept as a count. An event that occurred before that window when it arrives
//! is taken for a repeat and not counted again (its vote still applies: votes are idempotent by
//! user and time). So the count is exact, and independent of arrival order, for events that
//! arrive within the window of the GIF's newest feedback; a first delivery that arrives later
//! than that is not counted.

use std::collections::BTreeMap;

use autotag_contract::{FeedbackAction, Label, LabelInputs, Provenance};
use serde::{Deserialize, Serialize};

use crate::input::{FactKind, FeedbackFact, OrderKey, SuggestionFact, UploadFact};

/// How far before a GIF's newest feedback event (by `occurred_at`) the ids of its events are
/// kept for de-duplication: 30 days. Retries of the feedback API and redeliveries of the topic
/// arrive within seconds to hours; a month bounds the set by a GIF's feedback of one month.
pub const FEEDBACK_ID_WINDOW_SECS: i64 = 30 * 24 * 3600;

/// The rule's two thresholds, each in `[0, 1]`, compared inclusively.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// An original label scored at least this is kept at 1.0, else halved (default 0.3).
    pub keep: f64,
    /// A suggested tag scored at least this is added at its score (default 0.7).
    pub add: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self { keep: 0.3, add: 0.7 }
    }
}

/// A model score and the suggestion it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreSeen {
    pub score: f64,
    pub from: OrderKey,
}

/// A user's latest vote on a tag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vote {
    /// [`FeedbackAction::Add`] or [`FeedbackAction::Reject`].
    pub action: FeedbackAction,
    pub key: OrderKey,
}

/// Everything the job knows of one GIF: its inputs folded.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GifState {
    /// The newest upload or backfill event.
    pub upload: Option<UploadFact>,
    /// The newest suggestion.
    pub suggestion: Option<SuggestionFact>,
    /// Per tag, the score from the newest suggestion that scored it.
    pub scores: BTreeMap<String, ScoreSeen>,
    /// Per tag, per user, the latest add/reject.
    pub votes: BTreeMap<String, BTreeMap<String, Vote>>,
    /// client → event_id → `occurred_at` (Unix seconds) of the feedback events counted that
    /// occurred within [`FEEDBACK_ID_WINDOW_SECS`] of the newest one.
    pub feedback_ids: BTreeMap<String, BTreeMap<String, i64>>,
    /// Feedback events counted whose ids left the window.
    #[serde(default)]
    pub feedback_before_window: u64,
    /// `occurred_at` (Unix seconds) of the newest feedback event counted.
    #[serde(default)]
    pub newest_feedback_secs: Option<i64>,
}

/// A GIF's labels and what they were computed from.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Sorted by tag, each tag once.
    pub labels: Vec<Label>,
    pub s3_uri: String,
    pub model_version: String,
    pub inputs: LabelInputs,
}

impl GifState {
    /// Fold one input in. Returns whether the state changed (a duplicate changes nothing).
    pub fn apply(&mut self, fact: &FactKind) -> bool {
        match fact {
            FactKind::Upload(u) => newest(&mut self.upload, u, |u| &u.key),
            FactKind::Suggestion(s) => self.apply_suggestion(s),
            FactKind::Feedback(f) => self.apply_feedback(f),
        }
    }

    fn apply_suggestion(&mut self, s: &SuggestionFact) -> bool {
        let mut changed = newest(&mut self.suggestion, s, |s| &s.key);
        for (tag, score) in s.tags.iter().chain(&s.existing_tag_scores) {
            let seen = ScoreSeen { score: *score, from: s.key.clone() };
            match self.scores.get_mut(tag) {
                Some(old) if old.from >= s.key => {}
                Some(old) => {
                    *old = seen;
                    changed = true;
                }
                None => {
                    self.scores.insert(tag.clone(), seen);
                    changed = true;
                }
            }
        }
        changed
    }

    /// Distinct feedback events counted for the GIF (`seen` included).
    pub fn feedback_events(&self) -> u64 {
        self.feedback_before_window + self.feedback_ids.values().map(|ids| ids.len() as u64).sum::<u64>()
    }

    /// Count the event once (module docs: the window); whether the count changed.
    fn count_feedback(&mut self, f: &FeedbackFact) -> bool {
        let at = f.key.secs;
        if self.newest_feedback_secs.is_some_and(|newest| at < newest - FEEDBACK_ID_WINDOW_SECS) {
            return false;
        }
        let ids = self.feedback_ids.entry(f.client.clone()).or_default();
        if ids.contains_key(&f.key.event_id) {
            return false;
        }
        ids.insert(f.key.event_id.clone(), at);
        if self.newest_feedback_secs.is_none_or(|newest| at > newest) {
            self.newest_feedback_secs = Some(at);
            let horizon = at - FEEDBACK_ID_WINDOW_SECS;
            for ids in self.feedback_ids.values_mut() {
                let before = ids.len();
                ids.retain(|_, t| *t >= horizon);
                self.feedback_before_window += (before - ids.len()) as u64;
            }
            self.feedback_ids.retain(|_, ids| !ids.is_empty());
        }
        true
    }

    fn apply_feedback(&mut self, f: &FeedbackFact) -> bool {
        let mut changed = self.count_feedback(f);
        if f.action != FeedbackAction::Seen {
            let votes = self.votes.entry(f.tag.clone()).or_default();
            let vote = Vote { action: f.action, key: f.key.clone() };
            match votes.get_mut(&f.user_id) {
                Some(old) if old.key >= f.key => {}
                Some(old) => {
                    *old = vote;
                    changed = true;
                }
                None => {
                    votes.insert(f.user_id.clone(), vote);
                    changed = true;
                }
            }
        }
        changed
    }

    /// The GIF's labels under `t`, or `None` until both its upload (or backfill) event and a
    /// suggestion are known.
    pub fn outcome(&self, t: Thresholds) -> Option<Outcome> {
        let (upload, suggestion) = (self.upload.as_ref()?, self.suggestion.as_ref()?);
        let mut labels: BTreeMap<&str, (f64, Provenance)> = BTreeMap::new();
        for tag in &upload.existing_tags {
            let kept = self.scores.get(tag).is_some_and(|s| s.score >= t.keep);
            labels.insert(tag, if kept { (1.0, Provenance::Kept) } else { (0.5, Provenance::Halved) });
        }
        for (tag, score) in &suggestion.tags {
            if *score >= t.add {
                labels.entry(tag).or_insert((*score, Provenance::ModelAdded));
            }
        }
        for (tag, votes) in &self.votes {
            match decision(votes) {
                Some(FeedbackAction::Add) => labels.insert(tag, (1.0, Provenance::UserAdded)),
                Some(FeedbackAction::Reject) => labels.insert(tag, (0.0, Provenance::UserRejected)),
                _ => None,
            };
        }
        Some(Outcome {
            labels: labels
                .into_iter()
                .map(|(tag, (score, provenance))| Label { tag: tag.to_owned(), score, provenance })
                .collect(),
            s3_uri: upload.s3_uri.clone(),
            model_version: suggestion.model_version.clone(),
            inputs: LabelInputs {
                upload_event_id: upload.key.event_id.clone(),
                suggestion_event_id: suggestion.key.event_id.clone(),
                feedback_events: self.feedback_events(),
            },
        })
    }
}

/// The majority of distinct users' latest votes; a tie goes to the most recent vote.
fn decision(votes: &BTreeMap<String, Vote>) -> Option<FeedbackAction> {
    let adds = votes.values().filter(|v| v.action == FeedbackAction::Add).count();
    let rejects = votes.values().filter(|v| v.action == FeedbackAction::Reject).count();
    match adds.cmp(&rejects) {
        std::cmp::Ordering::Greater => Some(FeedbackAction::Add),
        std::cmp::Ordering::Less => Some(FeedbackAction::Reject),
        std::cmp::Ordering::Equal => votes.values().max_by(|a, b| a.key.cmp(&b.key)).map(|v| v.action),
    }
}

/// Keep the newer of `slot` and `new` by `key`; whether `slot` changed.
fn newest<T: Clone>(slot: &mut Option<T>, new: &T, key: impl Fn(&T) -> &OrderKey) -> bool {
    match slot {
        Some(old) if key(old) >= key(new) => false,
        _ => {
            *slot = Some(new.clone());
            true
        }
    }
}

#[cfg(test)]
mod tests;
