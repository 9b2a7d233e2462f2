//! `autotag-relabel export` against the real broker and S3 server: the job's labels of a
//! workload become JSONL shards and a manifest whose counts match; a second export of the same
//! state writes the same keys.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use autotag_test_support::{S3Server, bin, relabel_env};
use common::*;
use serde_json::Value;

fn export(broker: &autotag_test_support::Broker, s3: &S3Server, state: &std::path::Path, to: &str) -> String {
    let (vars, _) = relabel_env(broker, "relabel-export", state);
    let out = Command::new(bin("autotag-relabel"))
        .args(["export", "--to", to, "--shard-gifs", "7"])
        .envs(vars.into_iter().chain(s3.aws_env()))
        .output()
        .expect("running the export");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "export failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_and_a_manifest_whose_counts_match_and_whose_keys_repeat() {
    let broker = broker().await;
    let s3 = S3Server::start();
    s3.create_bucket("datasets").await;
    let inputs = workload(40, 5);
    let want = expected(&inputs);
    let state = tempfile::tempdir().unwrap();
    let job = start(&broker, "relabel-export", state.path(), "relabel-export");
    produce(&broker, &inputs).await;
    converge(&broker, (LABELS, CHANGELOG), &want, &job).await;
    drop(job);

    let stdout = export(&broker, &s3, state.path(), "s3://datasets/relabel/v1");
    assert!(stdout.contains(&format!("{} GIFs", want.len())), "{stdout}");
    let keys = s3.list("datasets", "relabel/v1/").await;
    let manifest: Value = serde_json::from_slice(&s3.get("datasets", "relabel/v1/manifest.json").await).unwrap();
    let shards: Vec<(String, u64)> = manifest["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["key"].as_str().unwrap().to_owned(), s["gifs"].as_u64().unwrap()))
        .collect();
    let mut listed: BTreeSet<String> = shards.iter().map(|(k, _)| k.clone()).collect();
    listed.insert("relabel/v1/manifest.json".into());
    assert_eq!(keys.iter().cloned().collect::<BTreeSet<_>>(), listed, "exactly the manifest and its shards");

    let mut lines: BTreeMap<String, Value> = BTreeMap::new();
    let mut labels = 0;
    for (key, gifs) in &shards {
        let body = String::from_utf8(s3.get("datasets", key).await).unwrap();
        assert_eq!(body.lines().count() as u64, *gifs, "{key}: the manifest's count");
        assert!(*gifs <= 7, "--shard-gifs 7");
        for line in body.lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            labels += v["labels"].as_array().unwrap().len() as u64;
            assert!(v["s3_uri"].as_str().unwrap().starts_with("s3://gifs/"), "{v}");
            assert!(
                lines.insert(v["gif_id"].as_str().unwrap().to_owned(), v["labels"].clone()).is_none(),
                "a GIF once"
            );
        }
    }
    assert_eq!(lines, expected_labels(&want), "one line per GIF, its current labels");
    assert_eq!(manifest["counts"]["gifs"], want.len() as u64);
    assert_eq!(manifest["counts"]["labels"], labels);
    assert_eq!(manifest["counts"]["shards"], shards.len() as u64);
    let by_provenance: u64 = manifest["label_distribution"]["by_provenance"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(by_provenance, labels);
    assert_eq!(manifest["label_distribution"]["by_provenance"].as_object().unwrap().len(), 5, "every provenance");
    assert_eq!(manifest["thresholds"]["keep"], 0.3);
    assert_eq!(manifest["source"]["topic"], LABELS);
    assert_eq!(manifest["source"]["offsets"].as_object().unwrap().len(), PARTITIONS as usize);

    // The same state again: the same keys, the same dataset id, nothing added.
    export(&broker, &s3, state.path(), "s3://datasets/relabel/v1/");
    assert_eq!(s3.list("datasets", "relabel/v1/").await, keys);
    let again: Value = serde_json::from_slice(&s3.get("datasets", "relabel/v1/manifest.json").await).unwrap();
    assert_eq!(again["dataset_id"], manifest["dataset_id"]);
    assert_eq!(again["shards"], manifest["shards"]);
}
