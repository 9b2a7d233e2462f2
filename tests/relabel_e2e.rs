//! The relabel job end to end on the real worker's suggestions: real GIFs uploaded with the
//! uploader's tags, tagged by the worker (the exported model), feedback from users; the job's
//! final labels equal the ones computed by hand from the suggestions the worker wrote.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use autotag_test_support::*;
use serde_json::{Value, json};

const BUCKET: &str = "gifs";

/// (gif_id, file, the uploader's tags, votes (tag, action) by distinct users).
type Case<'a> = (&'a str, &'a str, &'a [&'a str], &'a [(&'a str, &'a str)]);

/// The rule, written out for this test: (tag, score, provenance) sorted by tag.
fn by_hand(existing: &[&str], suggestion: &Value, votes: &[(&str, &str)]) -> Vec<(String, f64, String)> {
    let score = |list: &str, tag: &str| {
        suggestion[list].as_array().unwrap().iter().find(|t| t["tag"] == tag).map(|t| t["score"].as_f64().unwrap())
    };
    let mut labels: BTreeMap<String, (f64, &str)> = BTreeMap::new();
    for tag in existing {
        let s = score("existing_tag_scores", tag).or_else(|| score("tags", tag));
        labels.insert(tag.to_string(), if s.is_some_and(|s| s >= 0.3) { (1.0, "kept") } else { (0.5, "halved") });
    }
    for t in suggestion["tags"].as_array().unwrap() {
        let s = t["score"].as_f64().unwrap();
        if s >= 0.7 {
            labels.entry(t["tag"].as_str().unwrap().to_owned()).or_insert((s, "model_added"));
        }
    }
    // One vote per user here, so the decision is the majority of `votes` (no tie in the cases).
    let mut tally: BTreeMap<&str, i32> = BTreeMap::new();
    for (tag, action) in votes {
        *tally.entry(tag).or_default() += if *action == "add" { 1 } else { -1 };
    }
    for (tag, n) in tally {
        labels.insert(tag.to_owned(), if n > 0 { (1.0, "user_added") } else { (0.0, "user_rejected") });
    }
    labels.into_iter().map(|(t, (s, p))| (t, s, p.to_owned())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_from_the_real_workers_suggestions_and_feedback() {
    let broker = Broker::start(4).await;
    broker.create_topics(&[RELABEL_TOPICS[1], RELABEL_TOPICS[3], RELABEL_TOPICS[4], RELABEL_TOPICS[5]], 4).await;
    let s3 = S3Server::start();
    s3.create_bucket(BUCKET).await;
    let cases: [Case; 3] = [
        ("g-cat", "chelsea_static.gif", &["Cat", "unicorn", "coffee"], &[]),
        (
            "g-coffee",
            "coffee_static.gif",
            &["coffee"],
            &[("coffee", "reject"), ("coffee", "reject"), ("coffee", "add"), ("latte art", "add")],
        ),
        (
            "g-rocket",
            "rocket_200x200_8f_interlaced.gif",
            &[],
            &[("rocket", "reject"), ("space", "add"), ("space", "add")],
        ),
    ];
    for (gif, file, existing, _) in &cases {
        let key = format!("uploads/{file}");
        s3.put(BUCKET, &key, read(&testdata(file))).await;
        let mut event: Value = serde_json::from_slice(&upload_event(&format!("up-{gif}"), gif, BUCKET, &key)).unwrap();
        event["existing_tags"] = json!(existing);
        broker.produce(UPLOADS, gif, &serde_json::to_vec(&event).unwrap()).await;
    }
    let mut feedback = Vec::new();
    for (gif, _, _, votes) in &cases {
        for (i, (tag, action)) in votes.iter().enumerate() {
            let v = json!({"schema_version":1,"event_id":format!("fb-{gif}-{i}"),"gif_id":gif,"tag":tag,"action":action,
                "user_id":format!("user-{i}"),"occurred_at":"2026-12-01T10:00:00Z","client":"web","received_at":"2026-12-01T10:00:00Z"});
            feedback.push((gif.to_string(), serde_json::to_vec(&v).unwrap()));
        }
    }
    broker.produce_all("gif-tag-feedback", &feedback).await;

    let env = WorkerEnv::new(&broker, &s3);
    let mut worker = Worker::start(&env, "relabel-e2e-worker");
    worker.wait_ready(Duration::from_secs(120));
    let state = tempfile::tempdir().unwrap();
    let (vars, port) = relabel_env(&broker, "relabel-e2e", state.path());
    let relabel = Service::spawn(&bin("autotag-relabel"), &[], &vars, port, "relabel-e2e");

    let consumer = broker.output_consumer();
    let mut out = Vec::new();
    let done = collect_outputs(&consumer, &mut out, Duration::from_secs(180), |o| o.len() >= cases.len()).await;
    assert!(done, "the worker tagged {} of {} GIFs; log:\n{}", out.len(), cases.len(), worker.log_text());
    let suggestions: BTreeMap<String, Value> = out
        .iter()
        .filter(|r| r.topic == SUGGESTIONS)
        .map(|r| (r.value["gif_id"].as_str().unwrap().to_owned(), r.value.clone()))
        .collect();
    assert_eq!(suggestions.len(), cases.len(), "a suggestion per GIF: {out:?}");
    let want: BTreeMap<String, Vec<(String, f64, String)>> = cases
        .iter()
        .map(|(gif, _, existing, votes)| {
            let existing: Vec<String> = existing.iter().map(|t| t.to_lowercase()).collect();
            let existing: Vec<&str> = existing.iter().map(String::as_str).collect();
            (gif.to_string(), by_hand(&existing, &suggestions[*gif], votes))
        })
        .collect();
    // The cases mean something: the cat is kept, `unicorn` halved, users decided two tags.
    assert!(want["g-cat"].contains(&("cat".into(), 1.0, "kept".into())), "{want:?}");
    assert!(want["g-cat"].contains(&("unicorn".into(), 0.5, "halved".into())), "{want:?}");
    assert!(want["g-coffee"].contains(&("coffee".into(), 0.0, "user_rejected".into())), "{want:?}");
    assert!(want["g-rocket"].contains(&("space".into(), 1.0, "user_added".into())), "{want:?}");

    let schemas = Schemas::load();
    let t = Instant::now();
    loop {
        let records = read_to_end(&broker, "gif-training-labels", 4);
        let got: BTreeMap<String, Vec<(String, f64, String)>> =
            records.iter().map(|r| (r.key.clone().unwrap(), label_triples(&r.value))).collect();
        if got == want {
            for r in &records {
                schemas.check(r);
            }
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "labels differ:\n got {got:?}\nwant {want:?}\nrelabel log:\n{}",
            relabel.log_text()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
