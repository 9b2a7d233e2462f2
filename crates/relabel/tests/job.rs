//! The relabel job against the real broker: hand-computed labels for every case of the rule,
//! a record only when labels change, and the records valid against their schema.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use autotag_test_support::{SUGGESTIONS, Schemas, UPLOADS};
use common::*;

fn l(tag: &str, score: f64, provenance: &str) -> (String, f64, String) {
    (tag.to_owned(), score, provenance.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn final_labels_are_the_hand_computed_ones() {
    let broker = broker().await;
    let state = tempfile::tempdir().unwrap();
    let mut job = start(&broker, "relabel-e2e", state.path(), "relabel-e2e");
    job.wait_ready(Duration::from_secs(30));

    // Feedback first, suggestions in reverse order, uploads last: arrival order must not matter.
    let feedback_records = vec![
        // g3: two rejects against one add (majority), a seen, an add of a new tag, one event twice.
        feedback("f1", "g3", 10, "u1", "cat", "reject"),
        feedback("f2", "g3", 11, "u2", "cat", "reject"),
        feedback("f3", "g3", 12, "u3", "cat", "add"),
        feedback("f4", "g3", 13, "u1", "meme", "add"),
        feedback("f4", "g3", 13, "u1", "meme", "add"),
        feedback("f5", "g3", 14, "u4", "dog", "seen"),
        // g4: a tie goes to the most recent vote (u2's reject, later than u1's add).
        feedback("f6", "g4", 30, "u1", "x", "add"),
        feedback("f7", "g4", 31, "u2", "x", "reject"),
        // g4: u3 changed their mind; only their latest vote counts (add at 41 over reject at 40).
        feedback("f8", "g4", 41, "u3", "y", "add"),
        feedback("f9", "g4", 40, "u3", "y", "reject"),
    ];
    broker.produce_all("gif-tag-feedback", &feedback_records).await;
    let suggestions = vec![
        // g6: the newer suggestion (produced at 61) replaces the older one, whatever the order.
        suggestion("s6b", "g6", 61, &[("b", 0.8)], &[]),
        suggestion("s6a", "g6", 60, &[("a", 0.9), ("c", 0.95)], &[]),
        suggestion("s1", "g1", 5, &[("cat", 0.9), ("pet", 0.75), ("animal", 0.69)], &[("cat", 0.9), ("dog", 0.1)]),
        // g2: both thresholds at the boundary (f32 0.3 and 0.7, compared as printed).
        suggestion("s2", "g2", 5, &[("dance", 0.7)], &[("funny", 0.3)]),
        suggestion("s3", "g3", 5, &[("cat", 0.95), ("dog", 0.8)], &[]),
        suggestion("s4", "g4", 5, &[], &[]),
    ];
    broker.produce_all(SUGGESTIONS, &suggestions).await;
    let uploads = vec![
        upload("u1", "g1", 1, &["Cat", "dog"]),
        upload("u2", "g2", 1, &["funny", "missing"]),
        upload("u3", "g3", 1, &[]),
        upload("u4", "g4", 1, &[]),
        upload("u5", "g5", 1, &["lonely"]),
    ];
    broker.produce_all(UPLOADS, &uploads).await;
    // A backfill event is an upload event too: its `existing_tags` are original labels.
    broker.produce_all("gif-backfill", &[upload("u6", "g6", 1, &["a"])]).await;

    let expected: BTreeMap<&str, Vec<(String, f64, String)>> = BTreeMap::from([
        ("g1", vec![l("cat", 1.0, "kept"), l("dog", 0.5, "halved"), l("pet", 0.75, "model_added")]),
        ("g2", vec![l("dance", 0.7, "model_added"), l("funny", 1.0, "kept"), l("missing", 0.5, "halved")]),
        ("g3", vec![l("cat", 0.0, "user_rejected"), l("dog", 0.8, "model_added"), l("meme", 1.0, "user_added")]),
        ("g4", vec![l("x", 0.0, "user_rejected"), l("y", 1.0, "user_added")]),
        // g6: `a` keeps the older suggestion's score (the newer one did not score it); `c` was
        // only in the older suggestion, so it is not added.
        ("g6", vec![l("a", 1.0, "kept"), l("b", 0.8, "model_added")]),
    ]);
    let t = Instant::now();
    let latest = loop {
        let (_, latest) = labels(&broker);
        let got: BTreeMap<&str, Vec<(String, f64, String)>> =
            latest.iter().map(|(k, v)| (k.as_str(), labels_of(v))).collect();
        if got == expected {
            break latest;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "labels not as computed by hand:\n got {got:?}\nwant {expected:?}\nlog:\n{}",
            job.log_text()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert!(!latest.contains_key("g5"), "a GIF without a suggestion has no labels yet");
    let g3 = &latest["g3"];
    assert_eq!(g3["inputs"]["feedback_events"], 5, "f4 counted once, the seen counted: {g3}");
    assert_eq!(g3["inputs"]["upload_event_id"], "u3");
    assert_eq!(g3["s3_uri"], "s3://gifs/g3.gif");
    assert_eq!(latest["g6"]["inputs"]["suggestion_event_id"], "s6b");
    assert_eq!(latest["g6"]["model_version"], "efficientnet-lite0@1");
    let schemas = Schemas::load();
    let (all, _) = labels(&broker);
    for r in &all {
        schemas.check(r);
    }

    // Inputs that change no label: a repeated upload, a new `seen`, a repeated vote. Then one
    // that does (g4's third vote); once its record is out, no other GIF got one.
    let per_gif = |all: &[autotag_test_support::OutputRecord]| {
        let mut n: BTreeMap<String, usize> = BTreeMap::new();
        for r in all {
            *n.entry(r.key.clone().unwrap_or_default()).or_default() += 1;
        }
        n
    };
    let mut before = per_gif(&all);
    broker.produce_all(UPLOADS, &[upload("u1", "g1", 1, &["Cat", "dog"])]).await;
    broker
        .produce_all(
            "gif-tag-feedback",
            &[feedback("f10", "g2", 20, "u9", "dance", "seen"), feedback("f2", "g3", 11, "u2", "cat", "reject")],
        )
        .await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    broker
        .produce_all(
            "gif-tag-feedback",
            &[feedback("f11", "g4", 50, "u4", "x", "add"), feedback("f12", "g4", 51, "u5", "x", "add")],
        )
        .await;
    let t = Instant::now();
    loop {
        let (all, latest) = labels(&broker);
        if labels_of(&latest["g4"]).contains(&l("x", 1.0, "user_added")) {
            *before.entry("g4".into()).or_default() += 1;
            assert_eq!(per_gif(&all), before, "only g4's labels changed, by one record");
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "g4's new vote not reflected; log:\n{}", job.log_text());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // A record in another partition than its gif_id's (a producer outside the partitioning
    // contract) is refused, not folded into a second state of the GIF.
    let right = autotag_relabel::partitioner::partition_of(b"g7", PARTITIONS);
    let (k, v) = upload("u7", "g7", 1, &["cat"]);
    let record = rdkafka::producer::FutureRecord::to(UPLOADS).key(&k).payload(&v).partition((right + 1) % PARTITIONS);
    broker.producer().send(record, Duration::from_secs(10)).await.expect("produce");
    broker.produce_all(SUGGESTIONS, &[suggestion("s7", "g7", 5, &[("cat", 0.9)], &[])]).await;
    let t = Instant::now();
    while !job.metrics().contains(r#"autotag_relabel_inputs_skipped_total{reason="misplaced"} 1"#) {
        assert!(t.elapsed() < Duration::from_secs(30), "misplaced record not refused:\n{}", job.metrics());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(!labels(&broker).1.contains_key("g7"), "g7's upload was refused, so it has no labels");
    assert!(job.log_text().contains("reason=\"misplaced\""), "{}", job.log_text());
    let metrics = job.metrics();
    assert!(metrics.contains("autotag_relabel_commits_total"), "{metrics}");
}

/// The job refuses to start, naming what is wrong, when a topic is missing or the inputs' and
/// the changelog's partition counts differ (the partitioning contract).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_to_start_without_its_topics_or_with_unequal_partition_counts() {
    let broker = autotag_test_support::Broker::start(PARTITIONS).await;
    let state = tempfile::tempdir().unwrap();
    let run = |log: &str| {
        let mut job = start(&broker, "relabel-refuse", state.path(), log);
        let t = Instant::now();
        let status = loop {
            if let Some(s) = job.proc.0.try_wait().unwrap() {
                break s;
            }
            assert!(t.elapsed() < Duration::from_secs(30), "still running; log:\n{}", job.log_text());
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(!status.success());
        job.log_text()
    };
    let log = run("relabel-refuse-missing");
    assert!(log.contains("topic `gif-backfill` does not exist"), "{log}");
    broker.create_topics(&["gif-backfill", "gif-tag-feedback", "gif-training-labels"], PARTITIONS).await;
    broker.create_topics(&["gif-relabel-changelog"], 2).await;
    let log = run("relabel-refuse-counts");
    assert!(
        log.contains("same partition count")
            && log.contains("gif-relabel-changelog=2")
            && log.contains("gif-uploads=4"),
        "{log}"
    );
}
