//! Offsets count as committed only once the broker confirmed the commit, against the real
//! Tansu broker: a confirmed commit is recorded and is what the group coordinator holds. (The
//! refused commit is in `autotag_infra::consumer`'s unit tests: Tansu refuses none.)

use std::sync::Arc;
use std::time::{Duration, Instant};

use autotag_infra::consumer::{self, Committer, GroupConsumer};
use autotag_infra::kafka::KafkaConfig;
use autotag_infra::offsets::Offsets;
use autotag_infra::telemetry::{CONSUMER_JOINED, Health};
use autotag_test_support::{Broker, UPLOADS};
use rdkafka::message::Message;

fn kafka(broker: &Broker) -> KafkaConfig {
    let mut cfg = KafkaConfig { brokers: broker.brokers(), ..KafkaConfig::default() };
    cfg.consumer.0.insert("session.timeout.ms".into(), "2000".into());
    cfg.consumer.0.insert("heartbeat.interval.ms".into(), "500".into());
    cfg
}

/// Poll the consumer (commit callbacks are served from its queue) until `done` or `timeout`.
async fn poll_until(c: &GroupConsumer, timeout: Duration, done: impl Fn() -> bool) -> bool {
    let t = Instant::now();
    while !done() {
        if t.elapsed() > timeout {
            return false;
        }
        let _ = tokio::time::timeout(Duration::from_millis(100), c.recv()).await;
    }
    true
}

/// Consume `n` records and mark them finished in the tracker.
async fn consume_and_finish(c: &GroupConsumer, offsets: &Offsets, n: usize) {
    let mut consumed = 0;
    let t = Instant::now();
    while consumed < n {
        assert!(t.elapsed() < Duration::from_secs(30), "consumed only {consumed} of {n}");
        if let Ok(Ok(m)) = tokio::time::timeout(Duration::from_millis(500), c.recv()).await {
            let g = offsets.register_received(m.topic(), m.partition(), m.offset());
            offsets.complete(m.topic(), m.partition(), m.offset(), g);
            consumed += 1;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmed_commits_are_recorded_and_held_by_the_coordinator() {
    let broker = Broker::start(1).await;
    for i in 0..6 {
        broker.produce(UPLOADS, &format!("k{i}"), b"{}").await;
    }
    let group = format!("commit-test-{}", uuid::Uuid::new_v4());
    let offsets = Offsets::default();
    let health = Arc::new(Health::new(&[CONSUMER_JOINED]));
    let c = consumer::create_consumer(&kafka(&broker), &group, offsets.clone(), health).unwrap();
    consumer::subscribe(&c, &[UPLOADS]).unwrap();
    let committer = Committer::new(c.clone(), offsets.clone());

    // 1. A confirmed commit.
    consume_and_finish(&c, &offsets, 5).await;
    let first = vec![(UPLOADS.to_owned(), 0, 5)];
    assert_eq!(offsets.lock().committable(), first);
    committer.tick();
    let confirmed = poll_until(&c, Duration::from_secs(15), || offsets.lock().committable().is_empty()).await;
    assert!(confirmed, "no commit confirmation within 15 s");
    assert_eq!(broker.committed(&group, 1).get(&0), Some(&5), "the coordinator holds the confirmed offset");
    assert_eq!(offsets.lock().commit_failures(), 0);

    // 2. What Tansu cannot show: it accepts every OffsetCommit (measured: an offset of a
    // partition the topic lacks, a commit by a member whose generation a joining member made
    // stale), so a refused commit is faked at the send in the unit test
    // `consumer::tests::a_failed_commit_is_not_recorded_and_is_re_sent`. Here: after a commit
    // is confirmed, a newly finished record is committable again, and only it.
    let g = offsets.register_received(UPLOADS, 0, 5);
    offsets.complete(UPLOADS, 0, 5, g);
    assert_eq!(offsets.lock().committable(), vec![(UPLOADS.to_owned(), 0, 6)]);
    let idle = poll_until(&c, Duration::from_secs(10), || !committer.is_busy()).await;
    assert!(idle);
    committer.tick();
    let confirmed = poll_until(&c, Duration::from_secs(15), || offsets.lock().committable().is_empty()).await;
    assert!(confirmed, "no commit confirmation within 15 s");
    assert_eq!(broker.committed(&group, 1).get(&0), Some(&6));
}
