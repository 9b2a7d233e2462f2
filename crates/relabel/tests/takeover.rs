//! The relabel job's state under crashes and takeovers, against the real broker: SIGKILLs at
//! random moments and an instance's partitions moving to another leave the final labels
//! identical to an uninterrupted run's, with no feedback event counted twice.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkills_at_random_moments_change_no_label_and_count_no_feedback_twice() {
    let broker = broker().await;
    broker.create_topics(&["labels-ref", "changelog-ref"], PARTITIONS).await;
    let inputs = workload(240, 13);
    assert!(inputs.len() >= 1_800, "about 2 000 inputs: {}", inputs.len());
    let want = expected(&inputs);

    // The crashed run: inputs trickle in (20 every 250 ms) while the job is killed at random
    // moments after it took its partitions: in its consumption, a flush or between them.
    let state = tempfile::tempdir().unwrap();
    let trickle = {
        let (brokers, inputs) = (broker.brokers(), inputs.clone());
        tokio::spawn(async move {
            let producer = autotag_test_support::producer_for(&brokers);
            for chunk in inputs.chunks(20) {
                produce_with(&producer, chunk).await;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };
    let mut rng = fastrand::Rng::with_seed(7);
    let mut kills = 0;
    while kills < 6 || !trickle.is_finished() {
        let mut job = start(&broker, "relabel-crash", state.path(), &format!("relabel-crash-{kills}"));
        job.wait_ready(Duration::from_secs(30));
        let t = Instant::now();
        while !job.log_text().contains("partitions assigned") {
            assert!(t.elapsed() < Duration::from_secs(30), "never assigned; log:\n{}", job.log_text());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.u64(0..1_500))).await;
        job.kill9();
        kills += 1;
    }
    trickle.await.unwrap();
    assert!(kills >= 6, "{kills}");
    let job = start(&broker, "relabel-crash", state.path(), "relabel-crash-final");
    converge(&broker, (LABELS, CHANGELOG), &want, &job).await;

    // The uninterrupted run over the same inputs, on topics of its own.
    let ref_state = tempfile::tempdir().unwrap();
    let reference = start_with(
        &broker,
        "relabel-ref",
        ref_state.path(),
        "relabel-ref",
        &[("AUTOTAG__RELABEL__TOPICS__LABELS", "labels-ref"), ("AUTOTAG__RELABEL__TOPICS__CHANGELOG", "changelog-ref")],
    );
    converge(&broker, ("labels-ref", "changelog-ref"), &want, &reference).await;
    assert_eq!(comparable(&labels(&broker).1), comparable(&labels_in(&broker, "labels-ref").1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_instances_partitions_and_state_move_to_the_other() {
    let broker = broker().await;
    let inputs = workload(120, 29);
    let want = expected(&inputs);
    let (first, second) = inputs.split_at(inputs.len() / 2);
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = start(&broker, "relabel-pair", a_dir.path(), "relabel-a");
    let b = start(&broker, "relabel-pair", b_dir.path(), "relabel-b");
    a.wait_ready(Duration::from_secs(30));
    // Both members own partitions before the first half arrives.
    let t = Instant::now();
    while !(a.log_text().contains("partitions assigned") && b.log_text().contains("partitions assigned")) {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "no shared assignment; a:\n{}\nb:\n{}",
            a.log_text(),
            b.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    produce(&broker, first).await;
    converge(&broker, (LABELS, CHANGELOG), &expected(first), &a).await;
    a.kill9();
    produce(&broker, second).await;
    converge(&broker, (LABELS, CHANGELOG), &want, &b).await;
    // b took a's partitions over from the changelog, not by re-reading their inputs.
    let restored = b
        .metrics()
        .lines()
        .find(|l| l.starts_with("autotag_relabel_restored_records_total"))
        .and_then(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(restored > 0.0, "b restored nothing from the changelog; log:\n{}", b.log_text());
}
