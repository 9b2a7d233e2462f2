//! `autotag-feedback import --client NAME FILE.jsonl` against a real broker: valid lines are
//! written with the client's name, rejected lines are counted and named, and the exit code is 1
//! when any line was rejected.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use autotag_test_support::{Broker, repo};
use common::*;

fn import(broker: &Broker, client: &str, file: &std::path::Path) -> std::process::Output {
    Command::new(bin())
        .arg("--config")
        .arg(repo().join("config/default.toml"))
        .args(["import", "--client", client])
        .arg(file)
        .env("AUTOTAG__KAFKA__BROKERS", broker.brokers())
        .env("AUTOTAG__FEEDBACK__BROKER_TIMEOUT_MS", "5000")
        .env("AUTOTAG__FEEDBACK__MAX_EVENTS", "2")
        .output()
        .expect("running the importer")
}

#[tokio::test(flavor = "multi_thread")]
async fn import_writes_the_valid_lines_and_names_the_rejected_ones() {
    let broker = Broker::start(1).await;
    create_topic(&broker).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("feedback.jsonl");
    let mut number = event("imp-3", "g3", "cat");
    number["tag"] = serde_json::json!(3);
    let lines = [
        event("imp-1", "g1", " Dog ").to_string(),
        "{not json".to_owned(),
        event("imp-2", "g2", "cat").to_string(),
        String::new(),
        number.to_string(),
        event("imp-1", "g1", "dog").to_string(),
        event("imp-4", "g4", "bird").to_string(),
    ];
    std::fs::write(&file, lines.join("\n")).unwrap();
    let out = import(&broker, "batch-job", &file);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("imported 3, rejected 3"), "{stdout}");
    assert!(stdout.contains("rejected lines: 2, 5, 6"), "{stdout}");
    assert!(stderr.contains("line 5: /tag"), "{stderr}");

    let records = read_topic(&broker, Duration::from_secs(20), Duration::from_millis(500), |r| r.len() >= 3);
    let got: BTreeSet<(String, String, String)> = records
        .iter()
        .map(|r| {
            let s = |k: &str| r.value[k].as_str().unwrap().to_owned();
            (s("client"), s("event_id"), s("tag"))
        })
        .collect();
    let want: BTreeSet<(String, String, String)> = [("imp-1", "dog"), ("imp-2", "cat"), ("imp-4", "bird")]
        .iter()
        .map(|(e, t)| ("batch-job".to_owned(), e.to_string(), t.to_string()))
        .collect();
    assert_eq!(got, want);
    assert_eq!(records.len(), 3);
    let schema = record_schema();
    assert!(records.iter().all(|r| schema.is_valid(&r.value)));

    // A clean file exits 0.
    std::fs::write(&file, event("imp-5", "g5", "fish").to_string()).unwrap();
    let out = import(&broker, "batch-job", &file);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("imported 1, rejected 0"));
}
