//! Inputs of the relabel job as the real producers write them, and the job's output read
//! back, for the integration tests against the real broker.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

use autotag_test_support::{Broker, OutputRecord, RELABEL_TOPICS, Service, read_to_end, relabel_env};
use serde_json::{Value, json};

pub const PARTITIONS: i32 = 4;
pub const LABELS: &str = "gif-training-labels";

/// A broker with every topic of the job, `PARTITIONS` each.
pub async fn broker() -> Broker {
    let b = Broker::start(PARTITIONS).await;
    b.create_topics(&RELABEL_TOPICS[1..2], PARTITIONS).await;
    b.create_topics(&RELABEL_TOPICS[3..], PARTITIONS).await;
    b
}

/// `autotag-relabel` in `group`, its state in `state_dir`.
pub fn start(broker: &Broker, group: &str, state_dir: &Path, log_name: &str) -> Service {
    let (vars, port) = relabel_env(broker, group, state_dir);
    Service::spawn(&autotag_test_support::bin("autotag-relabel"), &[], &vars, port, log_name)
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
    v["labels"]
        .as_array()
        .expect("labels")
        .iter()
        .map(|l| {
            (
                l["tag"].as_str().unwrap().to_owned(),
                l["score"].as_f64().unwrap(),
                l["provenance"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Every labels record, and the latest per GIF.
pub fn labels(broker: &Broker) -> (Vec<OutputRecord>, BTreeMap<String, Value>) {
    let all = read_to_end(broker, LABELS, PARTITIONS);
    let latest = all.iter().map(|r| (r.key.clone().expect("keyed by gif_id"), r.value.clone())).collect();
    (all, latest)
}
