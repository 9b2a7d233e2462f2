//! Each metric on hand-computed cases, the seed's own example first.

use super::*;

fn v(tags: &[&str]) -> Vec<String> {
    tags.iter().map(|t| (*t).to_owned()).collect()
}

#[test]
fn the_seeds_example_is_iou_one_half_and_jaccard_one_third() {
    // True {soccer, goal}; the model's top 2 are {soccer, ball}: the seed says IOU 0.5.
    let (truth, ranked) = (v(&["soccer", "goal"]), v(&["soccer", "ball", "goal", "grass"]));
    assert_eq!(iou(&truth, &ranked), 0.5);
    assert!((jaccard(&truth, &ranked) - 1.0 / 3.0).abs() < 1e-12);
}

#[test]
fn iou_takes_the_top_n_of_the_whole_ranking() {
    let truth = v(&["cat", "pet", "animal"]);
    assert_eq!(iou(&truth, &v(&["animal", "cat", "pet", "dog"])), 1.0);
    assert_eq!(iou(&truth, &v(&["dog", "cat", "car", "pet"])), 1.0 / 3.0, "pet is 4th: outside the top 3");
    assert_eq!(iou(&truth, &v(&["dog", "car", "bus"])), 0.0);
    assert_eq!(jaccard(&truth, &v(&["dog", "cat", "car"])), 1.0 / 5.0);
    assert_eq!(iou(&[], &v(&["cat"])), 0.0);
}

#[test]
fn cosine_and_the_semantic_minmax() {
    assert_eq!(cosine_distance(&[1.0, 0.0], &[1.0, 0.0]), Some(0.0));
    assert_eq!(cosine_distance(&[1.0, 0.0], &[0.0, 2.0]), Some(1.0));
    assert_eq!(cosine_distance(&[1.0, 0.0], &[-3.0, 0.0]), Some(2.0));
    assert_eq!(cosine_distance(&[0.0, 0.0], &[1.0, 0.0]), None);
    let emb: BTreeMap<&str, Vec<f32>> = BTreeMap::from([
        ("soccer", vec![1.0, 0.0]),
        ("goal", vec![0.6, 0.8]),
        ("ball", vec![0.8, 0.6]),
        ("cat", vec![0.0, 1.0]),
    ]);
    let e = |t: &str| emb.get(t).map(Vec::as_slice);
    // soccer → soccer 0; goal → min(d(goal,soccer)=0.4, d(goal,ball)=1-0.96=0.04) = 0.04; max = 0.04.
    let d = semantic_distance(&v(&["soccer", "goal"]), &v(&["soccer", "ball"]), e).unwrap();
    assert!((d - 0.04).abs() < 1e-6, "{d}");
    assert_eq!(semantic_distance(&v(&["soccer"]), &[], e), None, "nothing suggested");
    assert_eq!(semantic_distance(&v(&["unicorn"]), &v(&["cat"]), e), None, "no embedding");
}

#[test]
fn the_report_aggregates_by_hand() {
    let results = vec![
        // GIF 1: two scenes; suggested cat (right), dog (wrong); ranked top-2 = cat, dog.
        GifResult {
            truth: v(&["cat", "coffee"]),
            scenes: vec![v(&["cat"]), v(&["coffee"])],
            ranked: v(&["cat", "dog", "coffee"]),
            suggested: v(&["cat", "dog"]),
            semantic: Some(0.2),
        },
        // GIF 2: one scene, fully right.
        GifResult {
            truth: v(&["rocket"]),
            ranked: v(&["rocket", "cat"]),
            suggested: v(&["rocket"]),
            semantic: Some(0.0),
            ..GifResult::default()
        },
        // GIF 3: nothing suggested; cat second in the ranking (outside the top 1).
        GifResult {
            truth: v(&["cat"]),
            ranked: v(&["dog", "cat"]),
            suggested: vec![],
            semantic: None,
            ..GifResult::default()
        },
        // GIF 4: no truth: left out, counted.
        GifResult { truth: vec![], ranked: v(&["cat"]), suggested: v(&["cat"]), ..GifResult::default() },
    ];
    let r = Report::new(&results, 0.1, 10);
    assert_eq!((r.gifs, r.gifs_without_truth), (3, 1));
    assert!((r.iou - (0.5 + 1.0 + 0.0) / 3.0).abs() < 1e-12);
    assert!((r.jaccard - (1.0 / 3.0 + 1.0 + 0.0) / 3.0).abs() < 1e-12);
    assert!((r.at_least_one - 2.0 / 3.0).abs() < 1e-12);
    assert!((r.all_correct - 1.0 / 3.0).abs() < 1e-12);
    assert_eq!(r.precision, 2.0 / 3.0, "cat, rocket right; dog wrong");
    assert_eq!(r.recall, 2.0 / 4.0, "cat, rocket of cat, coffee, rocket, cat");
    assert_eq!((r.scenes, r.scene_recall), (4, 2.0 / 4.0), "cat and rocket scenes hit; coffee and GIF 3 missed");
    assert_eq!(r.tags_per_gif, 1.0);
    assert_eq!(r.no_suggestion, 1);
    assert_eq!(r.semantic, Semantic { mean: 0.1, share_under: 0.5, threshold: 0.1, gifs: 2 });
    assert_eq!(r.per_tag["cat"], TagFigures { truth: 2, suggested: 1, correct: 1, precision: 1.0, recall: 0.5 });
    assert_eq!(r.per_tag.keys().next().map(String::as_str), Some("cat"));
    let json = serde_json::to_value(&r).unwrap();
    for name in FIGURES {
        assert!(json.get(name).is_some(), "{name} in the JSON report");
    }
}
