//! The rule's table test: every provenance, thresholds at the boundary, majority, tie, reject
//! blocking a model add, duplicated feedback, and every arrival order of each case's inputs.
//! Expected labels are computed by hand from the rule in the module doc.

use super::*;
use crate::input::OrderKey;
use Provenance::*;
use autotag_contract::FeedbackAction::{Add, Reject, Seen};
use std::collections::BTreeSet;

/// 2026-12-01T10:00:00Z + `s` seconds.
fn key(id: &str, s: i64) -> OrderKey {
    OrderKey { secs: 1_796_119_200 + s, nanos: 0, event_id: id.to_owned() }
}

fn up(id: &str, s: i64, tags: &[&str]) -> FactKind {
    FactKind::Upload(UploadFact {
        key: key(id, s),
        s3_uri: format!("s3://gifs/{id}.gif"),
        existing_tags: tags.iter().map(|t| (*t).to_owned()).collect(),
    })
}

fn sug(id: &str, s: i64, tags: &[(&str, f64)], existing: &[(&str, f64)]) -> FactKind {
    let v = |x: &[(&str, f64)]| x.iter().map(|(t, s)| ((*t).to_owned(), *s)).collect();
    FactKind::Suggestion(SuggestionFact {
        key: key(id, s),
        model_version: format!("m@{id}"),
        tags: v(tags),
        existing_tag_scores: v(existing),
    })
}

fn fb(id: &str, user: &str, tag: &str, action: FeedbackAction, s: i64) -> FactKind {
    FactKind::Feedback(FeedbackFact {
        client: "web".into(),
        user_id: user.into(),
        tag: tag.into(),
        action,
        key: key(id, s),
    })
}

struct Case {
    name: &'static str,
    facts: Vec<FactKind>,
    /// `None`: no record yet.
    labels: Option<Vec<(&'static str, f64, Provenance)>>,
    feedback_events: u64,
    /// (upload, suggestion) event ids the outcome names.
    inputs: (&'static str, &'static str),
}

fn case(
    name: &'static str,
    facts: Vec<FactKind>,
    labels: Vec<(&'static str, f64, Provenance)>,
    feedback_events: u64,
    inputs: (&'static str, &'static str),
) -> Case {
    Case { name, facts, labels: Some(labels), feedback_events, inputs }
}

fn cases() -> Vec<Case> {
    let base = || vec![up("u1", 0, &["cat"])];
    let with = |mut v: Vec<FactKind>, more: Vec<FactKind>| {
        v.extend(more);
        v
    };
    vec![
        case(
            "original scored exactly keep is kept",
            with(base(), vec![sug("s1", 5, &[], &[("cat", 0.3)])]),
            vec![("cat", 1.0, Kept)],
            0,
            ("u1", "s1"),
        ),
        case(
            "original scored just below keep is halved",
            with(base(), vec![sug("s1", 5, &[], &[("cat", 0.29)])]),
            vec![("cat", 0.5, Halved)],
            0,
            ("u1", "s1"),
        ),
        case(
            "original the model never scored is halved",
            with(base(), vec![sug("s1", 5, &[("dog", 0.2)], &[])]),
            vec![("cat", 0.5, Halved)],
            0,
            ("u1", "s1"),
        ),
        case(
            "original suggested high stays kept at 1.0, not model-added",
            with(base(), vec![sug("s1", 5, &[("cat", 0.9)], &[])]),
            vec![("cat", 1.0, Kept)],
            0,
            ("u1", "s1"),
        ),
        case(
            "suggestion at exactly add is added at its score, just below is not",
            with(base(), vec![sug("s1", 5, &[("dog", 0.7), ("pet", 0.69)], &[("cat", 0.4)])]),
            vec![("cat", 1.0, Kept), ("dog", 0.7, ModelAdded)],
            0,
            ("u1", "s1"),
        ),
        case(
            "newest suggestion replaces an older one's adds",
            with(
                base(),
                vec![sug("s1", 5, &[("dog", 0.9)], &[("cat", 0.8)]), sug("s2", 6, &[("pet", 0.8)], &[("cat", 0.1)])],
            ),
            vec![("cat", 0.5, Halved), ("pet", 0.8, ModelAdded)],
            0,
            ("u1", "s2"),
        ),
        case(
            "an older score survives a newer suggestion that did not score the label",
            with(base(), vec![sug("s1", 5, &[], &[("cat", 0.5)]), sug("s2", 6, &[("dog", 0.95)], &[])]),
            vec![("cat", 1.0, Kept), ("dog", 0.95, ModelAdded)],
            0,
            ("u1", "s2"),
        ),
        case(
            "a score inside tags counts for an original label",
            with(base(), vec![sug("s1", 5, &[("cat", 0.35)], &[])]),
            vec![("cat", 1.0, Kept)],
            0,
            ("u1", "s1"),
        ),
        case(
            "newest upload's existing tags are the originals",
            vec![up("u1", 0, &["cat"]), up("u2", 1, &["dog"]), sug("s1", 5, &[], &[("dog", 0.3), ("cat", 0.9)])],
            vec![("dog", 1.0, Kept)],
            0,
            ("u2", "s1"),
        ),
        case(
            "same instant: the greater event_id is the newer",
            vec![up("u1", 0, &["cat"]), up("u2", 0, &["dog"]), sug("s1", 5, &[], &[])],
            vec![("dog", 0.5, Halved)],
            0,
            ("u2", "s1"),
        ),
        case(
            "a majority of users adds",
            with(
                base(),
                vec![
                    sug("s1", 5, &[], &[]),
                    fb("f1", "a", "dog", Add, 10),
                    fb("f2", "b", "dog", Add, 11),
                    fb("f3", "c", "dog", Reject, 12),
                ],
            ),
            vec![("cat", 0.5, Halved), ("dog", 1.0, UserAdded)],
            3,
            ("u1", "s1"),
        ),
        case(
            "a majority of users rejects, and blocks the model's add",
            with(
                base(),
                vec![
                    sug("s1", 5, &[("dog", 0.9)], &[("cat", 0.9)]),
                    fb("f1", "a", "dog", Reject, 10),
                    fb("f2", "b", "dog", Reject, 11),
                    fb("f3", "c", "dog", Add, 12),
                ],
            ),
            vec![("cat", 1.0, Kept), ("dog", 0.0, UserRejected)],
            3,
            ("u1", "s1"),
        ),
        case(
            "users reject an original label",
            with(base(), vec![sug("s1", 5, &[], &[("cat", 0.9)]), fb("f1", "a", "cat", Reject, 10)]),
            vec![("cat", 0.0, UserRejected)],
            1,
            ("u1", "s1"),
        ),
        case(
            "a tie goes to the most recent vote (reject)",
            with(
                base(),
                vec![
                    sug("s1", 5, &[("dog", 0.8)], &[]),
                    fb("f1", "a", "dog", Add, 10),
                    fb("f2", "b", "dog", Reject, 11),
                ],
            ),
            vec![("cat", 0.5, Halved), ("dog", 0.0, UserRejected)],
            2,
            ("u1", "s1"),
        ),
        case(
            "a tie goes to the most recent vote (add)",
            with(base(), vec![sug("s1", 5, &[], &[]), fb("f1", "a", "dog", Reject, 10), fb("f2", "b", "dog", Add, 11)]),
            vec![("cat", 0.5, Halved), ("dog", 1.0, UserAdded)],
            2,
            ("u1", "s1"),
        ),
        case(
            "a user's latest vote is their only vote",
            with(
                base(),
                vec![
                    sug("s1", 5, &[], &[]),
                    fb("f1", "a", "dog", Add, 10),
                    fb("f2", "a", "dog", Reject, 11),
                    fb("f3", "b", "dog", Add, 9),
                ],
            ),
            // a: reject (latest), b: add → tie → most recent (a's reject at 11).
            vec![("cat", 0.5, Halved), ("dog", 0.0, UserRejected)],
            3,
            ("u1", "s1"),
        ),
        case(
            "seen is counted and changes no label",
            with(
                base(),
                vec![
                    sug("s1", 5, &[("dog", 0.8)], &[]),
                    fb("f1", "a", "dog", Seen, 10),
                    fb("f2", "b", "cat", Seen, 11),
                ],
            ),
            vec![("cat", 0.5, Halved), ("dog", 0.8, ModelAdded)],
            2,
            ("u1", "s1"),
        ),
        case(
            "a seen after an add does not cancel the vote",
            with(base(), vec![sug("s1", 5, &[], &[]), fb("f1", "a", "dog", Add, 10), fb("f2", "a", "dog", Seen, 11)]),
            vec![("cat", 0.5, Halved), ("dog", 1.0, UserAdded)],
            2,
            ("u1", "s1"),
        ),
        case(
            "a duplicated feedback event counts once",
            with(
                base(),
                vec![
                    sug("s1", 5, &[], &[]),
                    fb("f1", "a", "dog", Add, 10),
                    fb("f1", "a", "dog", Add, 10),
                    fb("f2", "b", "dog", Reject, 8),
                ],
            ),
            // one add (a) and one reject (b) → tie → most recent: a's add at 10.
            vec![("cat", 0.5, Halved), ("dog", 1.0, UserAdded)],
            2,
            ("u1", "s1"),
        ),
        case(
            "feedback before the upload and the suggestion still counts",
            vec![fb("f1", "a", "pet", Add, -100), up("u1", 0, &[]), sug("s1", 5, &[], &[])],
            vec![("pet", 1.0, UserAdded)],
            1,
            ("u1", "s1"),
        ),
        case(
            "the README's worked example",
            vec![
                up("u1", 0, &["cat", "funny"]),
                sug("s1", 5, &[("cat", 0.84), ("pet", 0.82), ("dog", 0.75)], &[("cat", 0.84)]),
                fb("f1", "a", "dog", Reject, 10),
                fb("f2", "b", "dog", Reject, 11),
                fb("f3", "c", "dog", Add, 12),
            ],
            vec![("cat", 1.0, Kept), ("dog", 0.0, UserRejected), ("funny", 0.5, Halved), ("pet", 0.82, ModelAdded)],
            3,
            ("u1", "s1"),
        ),
        Case {
            name: "no suggestion yet: no record",
            facts: vec![up("u1", 0, &["cat"]), fb("f1", "a", "cat", Add, 1)],
            labels: None,
            feedback_events: 1,
            inputs: ("", ""),
        },
        Case {
            name: "no upload yet: no record",
            facts: vec![sug("s1", 5, &[("dog", 0.9)], &[])],
            labels: None,
            feedback_events: 0,
            inputs: ("", ""),
        },
    ]
}

/// Every permutation of `0..n` (Heap's algorithm).
fn permutations(n: usize) -> Vec<Vec<usize>> {
    fn heap(k: usize, a: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
        if k <= 1 {
            out.push(a.clone());
            return;
        }
        for i in 0..k {
            heap(k - 1, a, out);
            let j = if k.is_multiple_of(2) { i } else { 0 };
            a.swap(j, k - 1);
        }
    }
    let mut out = Vec::new();
    heap(n, &mut (0..n).collect(), &mut out);
    out
}

#[test]
fn the_rule_table_in_every_arrival_order() {
    for c in cases() {
        assert!(c.facts.len() <= 7, "{}: keep cases small, every permutation is tried", c.name);
        let mut first: Option<GifState> = None;
        for order in permutations(c.facts.len()) {
            let mut state = GifState::default();
            for &i in &order {
                state.apply(&c.facts[i]);
            }
            // Applying everything again changes nothing (at-least-once delivery).
            for &i in &order {
                assert!(!state.apply(&c.facts[i]), "{}: a repeated input changed the state", c.name);
            }
            match &first {
                None => first = Some(state.clone()),
                Some(f) => assert_eq!(&state, f, "{}: the state depends on the order {order:?}", c.name),
            }
        }
        let state = first.expect("at least one order");
        let out = state.outcome(Thresholds::default());
        assert_eq!(state.feedback_events(), c.feedback_events, "{}", c.name);
        match (&c.labels, out) {
            (None, None) => {}
            (Some(want), Some(o)) => {
                let got: Vec<(&str, f64, Provenance)> =
                    o.labels.iter().map(|l| (l.tag.as_str(), l.score, l.provenance)).collect();
                assert_eq!(&got, want, "{}", c.name);
                assert_eq!(o.inputs.feedback_events, c.feedback_events, "{}", c.name);
                assert_eq!(
                    (o.inputs.upload_event_id.as_str(), o.inputs.suggestion_event_id.as_str()),
                    c.inputs,
                    "{}",
                    c.name
                );
                assert_eq!(o.model_version, format!("m@{}", c.inputs.1), "{}", c.name);
                assert_eq!(o.s3_uri, format!("s3://gifs/{}.gif", c.inputs.0), "{}", c.name);
            }
            (want, got) => panic!("{}: want {want:?}, got {got:?}", c.name),
        }
    }
}

#[test]
fn every_provenance_is_covered_by_the_table() {
    let seen: BTreeSet<Provenance> = cases().iter().flat_map(|c| c.labels.iter().flatten().map(|l| l.2)).collect();
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), Provenance::ALL.to_vec());
}

#[test]
fn other_thresholds_move_the_boundaries() {
    let mut s = GifState::default();
    for f in [up("u1", 0, &["cat", "dog"]), sug("s1", 5, &[("pet", 0.5)], &[("cat", 0.6), ("dog", 0.59)])] {
        s.apply(&f);
    }
    let o = s.outcome(Thresholds { keep: 0.6, add: 0.5 }).expect("an outcome");
    let got: Vec<(&str, f64, Provenance)> = o.labels.iter().map(|l| (l.tag.as_str(), l.score, l.provenance)).collect();
    assert_eq!(got, [("cat", 1.0, Kept), ("dog", 0.5, Halved), ("pet", 0.5, ModelAdded)]);
}

/// The feedback-id window: ids older than the window before the newest event leave the set but
/// stay counted; a first delivery older than the window is taken for a repeat; votes still apply.
#[test]
fn feedback_ids_are_bounded_by_the_window_and_stay_counted() {
    let w = FEEDBACK_ID_WINDOW_SECS;
    let mut state = GifState::default();
    for f in [fb("old-1", "a", "cat", Add, 0), fb("old-2", "b", "cat", Seen, 10)] {
        assert!(state.apply(&f));
    }
    assert_eq!(state.feedback_events(), 2);
    // A month and a day later: the old ids leave the set, the count stays.
    assert!(state.apply(&fb("new-1", "c", "dog", Add, w + 86_400)));
    assert_eq!(state.feedback_events(), 3);
    assert_eq!(state.feedback_ids.values().map(BTreeMap::len).sum::<usize>(), 1, "only the new id is kept");
    assert_eq!(state.feedback_before_window, 2);
    // A repeat of an old event changes nothing; a repeat of the new one neither.
    assert!(!state.apply(&fb("old-1", "a", "cat", Add, 0)));
    assert!(!state.apply(&fb("new-1", "c", "dog", Add, w + 86_400)));
    assert_eq!(state.feedback_events(), 3);
    // An old event seen for the first time is not counted, but its vote applies.
    assert!(state.apply(&fb("old-3", "d", "cat", Reject, 20)));
    assert_eq!(state.feedback_events(), 3);
    assert_eq!(state.votes["cat"]["d"].action, Reject);
    // The state survives its JSON round trip (the store and the changelog hold it so).
    let json = serde_json::to_string(&state).unwrap();
    assert_eq!(serde_json::from_str::<GifState>(&json).unwrap(), state);
}
