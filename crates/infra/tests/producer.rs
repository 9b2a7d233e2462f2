//! Issue 24 (g): a fatal producer error, injected in-process with librdkafka's
//! `rd_kafka_test_fatal_error` as rust-rdkafka's own tests do, against the real broker: the
//! handle rebuilds the producer once, sending goes on through the new one, and every record a
//! caller re-sent is on the topic.

use std::ffi::CString;
use std::sync::Arc;
use std::time::{Duration, Instant};

use autotag_infra::producer::{Policy, ProducerHandle};
use autotag_test_support::{Broker, UPLOADS, read_to_end};
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureRecord, Producer as _};
use rdkafka::types::RDKafkaRespErr;

/// Send `payload` the way every service does: through the current producer, reporting a failed
/// delivery to the handle and re-sending. Returns the number of rebuilds this caused.
async fn send_until_acknowledged(h: &ProducerHandle, payload: &str) -> usize {
    let mut rebuilds = 0;
    let t = Instant::now();
    loop {
        assert!(t.elapsed() < Duration::from_secs(30), "{payload} not acknowledged within 30 s");
        let p = h.current();
        match p.send(FutureRecord::to(UPLOADS).key("k").payload(payload), Duration::from_secs(5)).await {
            Ok(_) => return rebuilds,
            Err((e, _)) => {
                rebuilds += usize::from(h.recover(&p, &e));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fatal_producer_error_rebuilds_the_producer_once_and_loses_nothing() {
    let broker = Broker::start(1).await;
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", broker.brokers()).set("enable.idempotence", "true").set("acks", "all");
    let h = ProducerHandle::new(cc, Policy { min_interval: Duration::from_millis(300), rebuild_when_stuck: false })
        .expect("producer");
    assert_eq!(send_until_acknowledged(&h, r#""before""#).await, 0);

    let fatal = h.current();
    let why = CString::new("injected by the test").unwrap();
    // SAFETY: a live client handle and a NUL-terminated reason, as rust-rdkafka's own test.
    unsafe {
        rdkafka::bindings::rd_kafka_test_fatal_error(
            fatal.client().native_ptr(),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
            why.as_ptr(),
        );
    }
    assert!(fatal.client().fatal_error().is_some());
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(send_until_acknowledged(&h, r#""after""#).await, 1, "rebuilt exactly once");
    assert!(!Arc::ptr_eq(&fatal, &h.current()));
    // More failures reported on the dead producer rebuild nothing.
    let e = rdkafka::error::KafkaError::MessageProduction(rdkafka::error::RDKafkaErrorCode::Fatal);
    assert!(!h.recover(&fatal, &e));
    assert_eq!(send_until_acknowledged(&h, r#""later""#).await, 0);
    let on_topic: Vec<_> = read_to_end(&broker, UPLOADS, 1).into_iter().map(|r| r.value).collect();
    for p in ["before", "after", "later"] {
        assert!(on_topic.iter().any(|x| x == p), "{p} missing from {on_topic:?}");
    }
}
