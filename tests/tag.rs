//! `autotag tag` on real GIFs with the exported model: local files and s3:// objects on the
//! real S3 server, one line per input, errors as lines with the worker's dead-letter reasons.

use std::process::Command;

use autotag_test_support::*;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_files_and_s3_objects_one_line_each() {
    let s3 = S3Server::start();
    s3.create_bucket("gifs").await;
    s3.put("gifs", "uploads/rocket.gif", read(&testdata("rocket_static.gif"))).await;
    let inputs = [
        testdata("chelsea_static.gif").display().to_string(),
        testdata("not_a_gif.gif").display().to_string(),
        testdata("no-such-file.gif").display().to_string(),
        "s3://gifs/uploads/rocket.gif".to_owned(),
        "s3://gifs/uploads/missing.gif".to_owned(),
    ];
    let out = Command::new(autotag_bin())
        .args(["--config", &repo().join("config/default.toml").display().to_string(), "tag", "--json"])
        .args(&inputs)
        .env("AUTOTAG__MODEL__DIR", model_dir())
        .env("AUTOTAG__MODEL__THREADS", "1")
        .envs(s3.aws_env())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "every input got a line, so exit 0: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).expect("JSON lines")).collect();
    assert_eq!(lines.len(), inputs.len(), "{stdout}");
    assert!(!stdout.contains("00000"), "scores print in the f32's shortest form, as suggestions do: {stdout}");
    let tags = |v: &Value| -> Vec<String> { sorted_tags(v) };
    for (line, input) in lines.iter().zip(&inputs) {
        assert_eq!(line["input"], input.as_str());
    }
    assert!(tags(&lines[0]).contains(&"cat".to_owned()), "{}", lines[0]);
    assert_eq!(lines[0]["frames_sampled"], 1, "a static GIF is one frame");
    assert_eq!(lines[1]["error"]["reason"], "not_a_gif", "{}", lines[1]);
    assert_eq!(lines[2]["error"]["reason"], "object_not_found", "{}", lines[2]);
    assert!(tags(&lines[3]).contains(&"rocket".to_owned()), "{}", lines[3]);
    assert_eq!(lines[4]["error"]["reason"], "object_not_found", "{}", lines[4]);
    for t in lines[0]["tags"].as_array().unwrap() {
        let score = t["score"].as_f64().unwrap();
        assert!((0.2..=1.0).contains(&score), "above the default threshold: {t}");
    }

    // The table, for people.
    let out = Command::new(autotag_bin())
        .args(["--config", &repo().join("config/default.toml").display().to_string(), "tag", &inputs[0], &inputs[1]])
        .env("AUTOTAG__MODEL__DIR", model_dir())
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(table.lines().next().unwrap().starts_with("input"), "{table}");
    assert!(table.contains("cat ") && table.contains("error not_a_gif"), "{table}");
}
