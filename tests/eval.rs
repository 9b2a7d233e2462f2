//! `autotag eval` on a tiny labelled set of real GIFs with the exported model: the figures
//! follow by hand from what the model suggests (checked against `autotag tag`'s output:
//! chelsea → animal, pet, cat; coffee → drink, coffee, espresso; rocket → nothing: rocket 0.35
//! and missile 0.32 rank first and second, under the calibrated threshold 0.4).

use autotag_test_support::*;
use serde_json::Value;

#[test]
fn a_labelled_set_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["chelsea_static.gif", "coffee_static.gif", "rocket_static.gif", "not_a_gif.gif"] {
        std::fs::copy(testdata(f), dir.path().join(f)).unwrap();
    }
    let labels = dir.path().join("labels.jsonl");
    std::fs::write(
        &labels,
        [
            r#"{"gif":"chelsea_static.gif","tags":["Cat"],"groups":["static"]}"#,
            r#"{"gif":"coffee_static.gif","tags":["coffee"],"groups":["static"]}"#,
            r#"{"gif":"rocket_static.gif","scenes":[["rocket"],["missile"]],"groups":["two_scenes"]}"#,
            r#"{"gif":"not_a_gif.gif","tags":["cat"]}"#,
        ]
        .join("\n"),
    )
    .unwrap();
    let out_json = dir.path().join("out.json");
    let out = autotag_cli(&["eval", "--labels"])
        .arg(&labels)
        .arg("--json")
        .arg(&out_json)
        .arg("--dump-frames")
        .arg(dir.path().join("frames.jsonl"))
        .arg("--embeddings")
        .arg(repo().join("tools/tag_embeddings.json"))
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{table}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(table.contains("overall") && table.contains("two_scenes") && table.contains("not_a_gif"), "{table}");
    let v: Value = serde_json::from_slice(&std::fs::read(&out_json).unwrap()).unwrap();
    let o = &v["overall"];
    assert_eq!(o["gifs"], 4);
    // Suggested: 3 + 3 + 0 + 0 (the rocket's 0.35 is under the calibrated 0.4; not a GIF);
    // right: cat, coffee.
    assert_eq!(o["precision"].as_f64(), Some(2.0 / 6.0), "{o}");
    // True tags: cat, coffee, rocket, missile, cat (the undecodable GIF's): 2 of 5 suggested.
    assert_eq!(o["recall"], 0.4, "{o}");
    // Scenes: chelsea, coffee hit; rocket, missile and the undecodable GIF's missed.
    assert_eq!((o["scenes"].as_u64(), o["scene_recall"].as_f64()), (Some(5), Some(0.4)), "{o}");
    assert_eq!(o["tags_per_gif"], 1.5);
    assert_eq!(o["no_suggestion"], 2);
    assert_eq!(v["errors"]["not_a_gif"], 1);
    // The two-scene rocket: top-2 of the ranking = rocket, missile = the truth.
    let two = &v["groups"]["two_scenes"];
    assert_eq!(
        (two["iou"].as_f64(), two["jaccard"].as_f64(), two["all_correct"].as_f64()),
        (Some(1.0), Some(1.0), Some(1.0))
    );
    // The cat is third in its GIF's ranking (animal, pet, cat): not in the top 1.
    assert_eq!(v["groups"]["static"]["per_tag"]["cat"]["recall"], 1.0);
    // Semantic: the cat and the coffee GIFs suggest their true tag itself (distance 0, up to the
    // file's 4-decimal rounding); the rocket (no suggestion) and the undecodable GIF are left out.
    let sem = &o["semantic"];
    assert_eq!(sem["gifs"], 2, "{sem}");
    assert!(sem["mean"].as_f64().unwrap() < 1e-3, "{sem}");
    assert_eq!(sem["share_under"], 1.0, "{sem}");
    assert_eq!(v["unembedded_tags"], serde_json::json!([]));
    assert!(v["embeddings"].as_str().unwrap().contains("all-MiniLM-L6-v2"));
    // The per-frame dump (calibration input): one line per GIF, the vocabulary on the first.
    let dump = std::fs::read_to_string(dir.path().join("frames.jsonl")).unwrap();
    let lines: Vec<Value> = dump.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 4);
    let vocab = lines[0]["vocab"].as_array().expect("vocab on the first line").len();
    assert!(lines[1].get("vocab").is_none());
    let frames = lines[0]["frames"].as_array().unwrap();
    assert!(!frames.is_empty());
    assert_eq!(frames[0]["scores"].as_array().unwrap().len(), vocab);
    assert!(frames[0]["luma_std"].as_f64().unwrap() > 10.0, "a photo has content");
    // Each frame's index in the GIF and both signature distances to every earlier sampled frame:
    // what the skip thresholds are calibrated on (docs/quality.md).
    let indices: Vec<u64> = frames.iter().map(|f| f["index"].as_u64().expect("index")).collect();
    assert!(indices.windows(2).all(|w| w[0] < w[1]), "display order: {indices:?}");
    for (i, f) in frames.iter().enumerate() {
        assert_eq!(f["distances"].as_array().unwrap().len(), i);
        let h = f["histogram_distances"].as_array().unwrap();
        assert_eq!(h.len(), i);
        assert!(h.iter().all(|d| (0.0..=1.0).contains(&d.as_f64().unwrap())));
    }
    assert_eq!(lines[3]["frames"].as_array().unwrap().len(), 0, "the undecodable GIF has no frames");
    assert_eq!(lines[2]["scenes"].as_array().unwrap().len(), 2);
    for name in autotag_eval::metrics::FIGURES {
        assert!(o.get(name).is_some(), "{name}");
    }
}
