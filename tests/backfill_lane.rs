//! The worker's backfill lane (issue 15) against the real broker, S3 server and model: GIFs
//! enqueued by `autotag backfill` and live uploads side by side; every backfill object gets one
//! suggestion that says `source: backfill` and names the run, live ones say `live`, each lane
//! commits its own consumer group to the end of its topic, and the backfill lane's decode and
//! model threads run at the idle CPU priority (`SCHED_IDLE`).

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use autotag_test_support::*;
use serde_json::Value;

const PARTITIONS: i32 = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_events_are_tagged_in_their_own_lane() {
    let broker = Broker::start(PARTITIONS).await;
    broker.create_topics(&[BACKFILL], PARTITIONS).await;
    let s3 = S3Server::start();
    s3.create_bucket("gifs").await;
    let files =
        ["chelsea_static.gif", "coffee_static.gif", "coffee_200x200_8f_interlaced.gif", "chelsea_480x270_24f_O3.gif"];
    for f in files {
        s3.put("gifs", &format!("catalogue/{f}"), read(&testdata(f))).await;
    }
    s3.put("gifs", "live/cat.gif", read(&testdata("chelsea_static.gif"))).await;

    let env = WorkerEnv::new(&broker, &s3);
    let mut worker = Worker::start(&env, "lanes");
    worker.wait_ready(Duration::from_secs(120));

    // The catalogue through `autotag backfill`, one live upload beside it.
    let out = Command::new(autotag_bin())
        .args(["--config", &repo().join("config/default.toml").display().to_string(), "backfill"])
        .args(["--from", "s3://gifs/catalogue/", "--checkpoint"])
        .arg(tempfile::tempdir().unwrap().path().join("cp.json"))
        .env("AUTOTAG__KAFKA__BROKERS", broker.brokers())
        .envs(s3.aws_env())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let run_id = stdout.lines().next().unwrap().strip_prefix("run_id=").unwrap().to_owned();
    broker.produce(UPLOADS, "live-cat", &upload_event("ev-live", "live-cat", "gifs", "live/cat.gif")).await;

    let consumer = broker.output_consumer();
    let mut outs = Vec::new();
    let done = collect_outputs(&consumer, &mut outs, Duration::from_secs(120), |o| o.len() > files.len()).await;
    assert!(done, "only {} outputs; worker log:\n{}", outs.len(), worker.log_text());
    collect_outputs(&consumer, &mut outs, Duration::from_secs(2), |_| false).await;
    let schemas = Schemas::load();
    let mut by_gif: HashMap<String, Value> = HashMap::new();
    for o in &outs {
        schemas.check(o);
        assert_eq!(o.topic, SUGGESTIONS, "no dead letters: {}", o.value);
        assert!(by_gif.insert(o.value["gif_id"].as_str().unwrap().to_owned(), o.value.clone()).is_none(), "one each");
    }
    assert_eq!(by_gif.len(), files.len() + 1);
    for f in files {
        let s = &by_gif[f.trim_end_matches(".gif")];
        assert_eq!(s["source"], "backfill", "{s}");
        assert_eq!(s["backfill_run_id"], run_id.as_str(), "{s}");
        let uri = format!("s3://gifs/catalogue/{f}");
        assert_eq!(s["upload_event_id"], autotag_contract::ids::backfill_event_id(&run_id, &uri).as_str());
        assert!(!s["tags"].as_array().unwrap().is_empty(), "{s}");
    }
    assert_eq!(by_gif["live-cat"]["source"], "live");
    assert!(by_gif["live-cat"].get("backfill_run_id").is_none());

    // Each lane commits its own group to the end of its topic.
    let ends = |topic: &str| -> i64 { read_to_end(&broker, topic, PARTITIONS).len() as i64 };
    let (live_end, backfill_end) = (ends(UPLOADS), ends(BACKFILL));
    let t = std::time::Instant::now();
    loop {
        let live: i64 = broker.committed(&env.group, PARTITIONS).values().sum();
        let back: i64 = broker.committed_on(&format!("{}-backfill", env.group), BACKFILL, PARTITIONS).values().sum();
        if live == live_end && back == backfill_end {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "committed live {live}/{live_end}, backfill {back}/{backfill_end}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let metrics = worker.metrics();
    assert!(metrics.contains("lane=\"backfill\""), "lane-labelled metrics");
    assert!(
        metrics.lines().any(|l| l.starts_with("autotag_stage_duration_seconds_count")
            && l.contains("stage=\"infer\"")
            && l.contains("lane=\"backfill\"")),
        "backfill frames ran in the backfill lane's own model pool"
    );
    // The backfill lane decodes and infers on threads of its own at a lower CPU priority; the
    // live lane's threads keep the normal one.
    const SCHED_IDLE: u32 = 5;
    let threads = worker.threads();
    let policy = |name: &str| threads.iter().filter(|t| t.0 == name).map(|t| t.2).collect::<Vec<_>>();
    for backfill in ["bf-infer-0", "bf-infer-1", "bf-decode-0"] {
        assert_eq!(policy(backfill), [SCHED_IDLE], "{backfill}: {threads:?}");
    }
    for live in ["autotag-infer", "autotag-infer-1"] {
        let p = policy(live);
        assert!(!p.is_empty() && p.iter().all(|&p| p == 0), "{live}: {threads:?}");
    }
    let (code, _) = worker.terminate(Duration::from_secs(20));
    assert_eq!(code, Some(0));
}
