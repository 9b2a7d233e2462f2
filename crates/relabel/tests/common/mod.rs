//! Inputs of the relabel job as the real producers write them, and the job's output read
//! back, for the integration tests against the real broker.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use autotag_test_support::{Broker, OutputRecord, RELABEL_TOPICS, Service, read_to_end, relabel_env};
use serde_json::{Value, json};

pub const PARTITIONS: i32 = 4;
pub const LABELS: &str = "gif-training-labels";
pub const CHANGELOG: &str = "gif-relabel-changelog";

/// A broker with every topic of the job, `PARTITIONS` each.
pub async fn broker() -> Broker {
    let b = Broker::start(PARTITIONS).await;
    b.create_topics(&RELABEL_TOPICS[1..2], PARTITIONS).await;
    b.create_topics(&RELABEL_TOPICS[3..], PARTITIONS).await;
    b
}

/// `autotag-relabel` in `group`, its state in `state_dir`.
pub fn start(broker: &Broker, group: &str, state_dir: &Path, log_name: &str) -> Service {
    start_with(broker, group, state_dir, log_name, &[])
}

/// As [`start`], with more settings (`AUTOTAG__…` overrides).
pub fn start_with(broker: &Broker, group: &str, state_dir: &Path, log_name: &str, extra: &[(&str, &str)]) -> Service {
    let (mut vars, port) = relabel_env(broker, group, state_dir);
    vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Service::spawn(&autotag_test_support::bin("autotag-relabel"), &[], &vars, port, log_name)
}

/// One input record: (topic, key, payload).
pub type Input = (&'static str, String, Vec<u8>);

/// A seeded random workload of about 10 inputs per GIF over `gifs` GIFs: one or two uploads
/// (original labels from a small pool), one to three suggestions (scores on and around the
/// thresholds), and up to eight feedback events from five users, a fifth of them sent twice.
pub fn workload(gifs: usize, seed: u64) -> Vec<Input> {
    const POOL: [&str; 6] = ["cat", "dog", "funny", "dance", "meme", "pet"];
    const SCORES: [f32; 8] = [0.05, 0.2, 0.29, 0.3, 0.5, 0.69, 0.7, 0.95];
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut out: Vec<Input> = Vec::new();
    let pick = |rng: &mut fastrand::Rng, n: usize| -> Vec<&'static str> {
        let mut tags: Vec<&str> = POOL.to_vec();
        rng.shuffle(&mut tags);
        tags.truncate(n);
        tags
    };
    let mut fb = 0;
    for i in 0..gifs {
        let gif = format!("gif-{i:04}");
        for u in 0..rng.usize(1..=2) {
            let n = rng.usize(0..=3);
            let (k, v) = upload(&format!("up-{i}-{u}"), &gif, rng.u32(0..100), &pick(&mut rng, n));
            out.push((autotag_test_support::UPLOADS, k, v));
        }
        for s in 0..rng.usize(1..=3) {
            let n = rng.usize(0..=4);
            let tags: Vec<(&str, f32)> =
                pick(&mut rng, n).into_iter().map(|t| (t, SCORES[rng.usize(..SCORES.len())])).collect();
            let n = rng.usize(0..=3);
            let existing: Vec<(&str, f32)> =
                pick(&mut rng, n).into_iter().map(|t| (t, SCORES[rng.usize(..SCORES.len())])).collect();
            let (k, v) = suggestion(&format!("sg-{i}-{s}"), &gif, rng.u32(0..100), &tags, &existing);
            out.push((autotag_test_support::SUGGESTIONS, k, v));
        }
        for _ in 0..rng.usize(0..=8) {
            fb += 1;
            let action = ["add", "reject", "seen"][rng.usize(..3)];
            let user = format!("user-{}", rng.usize(..5));
            let (k, v) =
                feedback(&format!("fb-{fb}"), &gif, rng.u32(0..100), &user, POOL[rng.usize(..POOL.len())], action);
            if rng.usize(..5) == 0 {
                out.push(("gif-tag-feedback", k.clone(), v.clone()));
            }
            out.push(("gif-tag-feedback", k, v));
        }
    }
    rng.shuffle(&mut out);
    out
}

/// Produce `inputs` to their topics.
pub async fn produce(broker: &Broker, inputs: &[Input]) {
    produce_with(&broker.producer(), inputs).await;
}

/// Produce `inputs` with `producer`, every acknowledgement awaited.
pub async fn produce_with(producer: &rdkafka::producer::FutureProducer, inputs: &[Input]) {
    use rdkafka::producer::FutureRecord;
    let sends = inputs.iter().map(|(topic, k, v)| {
        producer.send(FutureRecord::to(topic).key(k).payload(v), std::time::Duration::from_secs(30))
    });
    for r in futures::future::join_all(sends).await {
        r.expect("produce");
    }
}

/// What an uninterrupted fold of `inputs` gives per GIF: labels, upload and suggestion ids,
/// feedback events counted. The rule in-process, as the job runs it.
pub fn expected(inputs: &[Input]) -> BTreeMap<String, Value> {
    use autotag_relabel::{GifState, Thresholds, input};
    let mut states: BTreeMap<String, GifState> = BTreeMap::new();
    for (topic, _, payload) in inputs {
        let fact = match *topic {
            autotag_test_support::UPLOADS => input::upload(payload),
            autotag_test_support::SUGGESTIONS => input::suggestion(payload),
            _ => input::feedback(payload),
        }
        .expect("a valid input");
        states.entry(fact.gif_id.clone()).or_default().apply(&fact.kind);
    }
    states
        .into_iter()
        .filter_map(|(gif, s)| {
            let o = s.outcome(Thresholds::default())?;
            Some((gif, json!({"labels": o.labels, "inputs": o.inputs, "s3_uri": o.s3_uri})))
        })
        .collect()
}

/// The labels of the latest labels record per GIF. (A record's `inputs` are those of the last
/// change of its labels: an input that changes no label writes no record, so the counts are
/// compared on the job's state, [`states_in`].)
pub fn comparable(latest: &BTreeMap<String, Value>) -> BTreeMap<String, Value> {
    latest.iter().map(|(k, v)| (k.clone(), v["labels"].clone())).collect()
}

/// The labels part of [`expected`].
pub fn expected_labels(want: &BTreeMap<String, Value>) -> BTreeMap<String, Value> {
    want.iter().map(|(k, v)| (k.clone(), v["labels"].clone())).collect()
}

/// The job's latest state per GIF in the changelog `topic`, as [`expected`] gives it: what
/// the state says now, feedback events counted included.
pub fn states_in(broker: &Broker, topic: &str) -> BTreeMap<String, Value> {
    use autotag_relabel::Thresholds;
    use autotag_relabel::changelog::OFFSETS_KEY;
    use autotag_relabel::store::Entry;
    let mut latest: BTreeMap<String, Value> = BTreeMap::new();
    for r in read_to_end(broker, topic, PARTITIONS) {
        let key = r.key.expect("changelog records are keyed");
        if key != OFFSETS_KEY {
            latest.insert(key, r.value);
        }
    }
    latest
        .into_iter()
        .filter_map(|(gif, v)| {
            let entry: Entry = serde_json::from_value(v).expect("a state record");
            let o = entry.state.outcome(Thresholds::default())?;
            Some((gif, json!({"labels": o.labels, "inputs": o.inputs, "s3_uri": o.s3_uri})))
        })
        .collect()
}

/// An instant `secs` after a fixed epoch, RFC 3339.
pub fn at(secs: u32) -> String {
    format!("2026-12-01T10:{:02}:{:02}Z", secs / 60, secs % 60)
}

pub fn upload(event_id: &str, gif: &str, secs: u32, tags: &[&str]) -> (String, Vec<u8>) {
    let v = json!({"schema_version":1,"event_id":event_id,"gif_id":gif,"s3_uri":format!("s3://gifs/{gif}.gif"),
        "uploaded_at":at(secs),"existing_tags":tags});
    (gif.to_owned(), v.to_string().into_bytes())
}

pub fn suggestion(
    event_id: &str,
    gif: &str,
    secs: u32,
    tags: &[(&str, f32)],
    existing: &[(&str, f32)],
) -> (String, Vec<u8>) {
    let scores = |v: &[(&str, f32)]| v.iter().map(|(t, s)| json!({"tag":t,"score":s})).collect::<Vec<_>>();
    let v = json!({"schema_version":1,"event_id":event_id,"upload_event_id":format!("u-{gif}"),"gif_id":gif,
        "model":{"name":"efficientnet-lite0","version":"1"},"tags":scores(tags),"frames_sampled":8,"source":"live",
        "produced_at":at(secs),"existing_tag_scores":scores(existing)});
    (gif.to_owned(), v.to_string().into_bytes())
}

pub fn feedback(event_id: &str, gif: &str, secs: u32, user: &str, tag: &str, action: &str) -> (String, Vec<u8>) {
    let v = json!({"schema_version":1,"event_id":event_id,"gif_id":gif,"tag":tag,"action":action,"user_id":user,
        "occurred_at":at(secs),"client":"web","received_at":at(secs)});
    (gif.to_owned(), v.to_string().into_bytes())
}

/// The labels of a record as (tag, score, provenance), sorted by tag.
pub fn labels_of(v: &Value) -> Vec<(String, f64, String)> {
    autotag_test_support::label_triples(v)
}

/// Every labels record, and the latest per GIF.
pub fn labels(broker: &Broker) -> (Vec<OutputRecord>, BTreeMap<String, Value>) {
    labels_in(broker, LABELS)
}

/// As [`labels`], of another labels topic.
pub fn labels_in(broker: &Broker, topic: &str) -> (Vec<OutputRecord>, BTreeMap<String, Value>) {
    let all = read_to_end(broker, topic, PARTITIONS);
    let latest = all.iter().map(|r| (r.key.clone().expect("keyed by gif_id"), r.value.clone())).collect();
    (all, latest)
}

/// Wait until the latest labels of `topic` equal `want`'s, and the state in `changelog` (the
/// feedback events counted included) equals `want`.
pub async fn converge(
    broker: &Broker,
    (topic, changelog): (&str, &str),
    want: &BTreeMap<String, Value>,
    job: &Service,
) {
    let t = Instant::now();
    let want_labels = expected_labels(want);
    loop {
        let got = comparable(&labels_in(broker, topic).1);
        if got == want_labels {
            let got = states_in(broker, changelog);
            assert_eq!(&got, want, "labels right, but the state differs (a feedback event counted twice?)");
            return;
        }
        let want = &want_labels;
        if t.elapsed() > Duration::from_secs(90) {
            let wrong: Vec<_> = want.iter().filter(|(k, v)| got.get(*k) != Some(*v)).take(3).collect();
            panic!(
                "{topic}: {} of {} GIFs differ, e.g. {wrong:?}\ngot for them: {:?}\nlog:\n{}",
                want.iter().filter(|(k, v)| got.get(*k) != Some(*v)).count(),
                want.len(),
                wrong.iter().map(|(k, _)| got.get(*k)).collect::<Vec<_>>(),
                job.log_text()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
