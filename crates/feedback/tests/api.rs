//! The feedback API against a real Tansu broker, through the real `autotag-feedback` binary:
//! every refusal gets its status and writes nothing; a valid batch appears once, with the
//! client's name from the tokens file; a broker outage is a 503 within the deadline and the same
//! request succeeds once the broker is back; overload is a 429; CORS preflights; hostile
//! requests are 4xx with the service alive and its memory bounded.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::time::{Duration, Instant};

use autotag_test_support::{Broker, http_get};
use common::*;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread")]
async fn refusals_write_nothing_and_a_valid_batch_appears_once_with_the_client_from_the_token() {
    let broker = Broker::start(1).await;
    create_topic(&broker).await;
    let svc = Service::start(&broker, &[]);
    let json_ct = Some("application/json");

    // A good batch of ten, and the same with one bad event.
    let good: Vec<Value> = batch("bad-run", 10);
    let body = serde_json::to_vec(&good).unwrap();

    let r = svc.post(None, json_ct, &body);
    assert_eq!(r.status, 401, "missing token: {r:?}");
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    let r = svc.post(Some("not-a-token"), json_ct, &body);
    assert_eq!(r.status, 401, "wrong token");
    // 401 comes before 415 and 413.
    assert_eq!(svc.post(Some("nope"), Some("text/plain"), &vec![b'x'; 2 << 20]).status, 401);

    assert_eq!(svc.post(Some(WEB_TOKEN), Some("text/plain"), &body).status, 415, "wrong content type");
    assert_eq!(svc.post(Some(WEB_TOKEN), None, &body).status, 415, "no content type");
    // 415 comes before 413.
    assert_eq!(svc.post(Some(WEB_TOKEN), Some("text/plain"), &vec![b'x'; 2 << 20]).status, 415);

    let mut big = good.clone();
    big[0]["user_id"] = Value::String("u".repeat(1 << 20));
    let r = svc.post(Some(WEB_TOKEN), json_ct, &serde_json::to_vec(&big).unwrap());
    assert_eq!(r.status, 413, "oversize body: {r:?}");
    let r = svc.post_json(WEB_TOKEN, &Value::Array(batch("too-many", 501)));
    assert_eq!(r.status, 413, "too many events: {r:?}");

    let mut one_bad = good.clone();
    one_bad[6]["tag"] = json!(7);
    let r = svc.post_json(WEB_TOKEN, &Value::Array(one_bad));
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(r.error_fields(), [(Some(6), "/tag".to_owned())], "{}", r.body);

    let mut claims_client = good.clone();
    claims_client[2]["client"] = json!("someone-else");
    let r = svc.post_json(WEB_TOKEN, &Value::Array(claims_client));
    assert_eq!((r.status, r.error_fields()), (400, vec![(Some(2), "/client".to_owned())]));

    let mut repeated = good.clone();
    repeated[9]["event_id"] = json!("bad-run-3");
    let r = svc.post_json(WEB_TOKEN, &Value::Array(repeated));
    assert_eq!((r.status, r.error_fields()), (400, vec![(Some(9), "/event_id".to_owned())]));
    assert_eq!(svc.post_json(WEB_TOKEN, &json!([])).status, 400, "empty array");
    assert_eq!(svc.post(Some(WEB_TOKEN), json_ct, b"{not json").status, 400);

    // Now a valid batch, sent with the rotated token and a tag that needs normalising.
    let mut valid = batch("ok", 10);
    valid[0]["tag"] = json!("  Cafe\u{301} ");
    let r = svc.post_json(WEB_TOKEN_NEW, &Value::Array(valid.clone()));
    assert_eq!(r.status, 202, "{r:?}");
    assert_eq!(r.json(), json!({"accepted": 10}));
    // A single object is a batch of one; the other client's token names the other client.
    let single = event("ios-1", "gif-9", "dog");
    assert_eq!(svc.post_json(IOS_TOKEN, &single).status, 202);

    let records = read_topic(&broker, Duration::from_secs(20), Duration::from_secs(1), |r| r.len() >= 11);
    let schema = record_schema();
    for r in &records {
        let errors: Vec<String> = schema.iter_errors(&r.value).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "record violates the record schema: {errors:?}\n{}", r.value);
        assert_eq!(r.key.as_deref(), r.value["gif_id"].as_str(), "key is gif_id");
    }
    let ids: Vec<(&str, &str)> =
        records.iter().map(|r| (r.value["client"].as_str().unwrap(), r.value["event_id"].as_str().unwrap())).collect();
    let mut expected: Vec<(&str, String)> = (0..10).map(|i| ("web", format!("ok-{i}"))).collect();
    expected.push(("ios-app", "ios-1".to_owned()));
    let got: BTreeSet<(String, String)> = ids.iter().map(|(c, e)| (c.to_string(), e.to_string())).collect();
    let want: BTreeSet<(String, String)> = expected.iter().map(|(c, e)| (c.to_string(), e.clone())).collect();
    assert_eq!(got, want, "exactly the accepted events, nothing of the refused requests");
    assert_eq!(records.len(), 11, "each once");
    let first = records.iter().find(|r| r.value["event_id"] == "ok-0").unwrap();
    assert_eq!(first.value["tag"], "caf\u{e9}", "tag trimmed, lower case, NFC");
    assert_eq!(first.value["model_version"], "efficientnet-lite0@1");
    let metrics = http_get(svc.metrics_port, "/metrics").unwrap().1;
    assert!(metrics.contains("autotag_feedback_events_accepted_total 11"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread")]
async fn broker_outage_is_a_503_within_the_deadline_and_the_same_request_succeeds_after() {
    let mut broker = Broker::start(1).await;
    create_topic(&broker).await;
    let mut svc = Service::start(&broker, &[("AUTOTAG__FEEDBACK__BROKER_TIMEOUT_MS", "2000")]);
    assert_eq!(svc.post_json(WEB_TOKEN, &Value::Array(batch("before", 3))).status, 202);

    broker.stop();
    let request = Value::Array(batch("during", 5));
    let t = Instant::now();
    let r = svc.post_json(WEB_TOKEN, &request);
    let took = t.elapsed();
    assert_eq!(r.status, 503, "{r:?}");
    assert!(r.header("retry-after").is_some(), "{r:?}");
    assert!(took < Duration::from_millis(2000 + 1000), "503 after {took:?}, deadline 2 s");
    assert_eq!(http_get(svc.metrics_port, "/readyz").map(|(c, _)| c), Some(503), "not ready while the broker is down");

    // Back (memory storage: empty, so the topic is created again). With no traffic at all,
    // readiness comes back by itself: a load balancer that gates on /readyz sends nothing to an
    // instance it took out of rotation, so only the service's own probe can bring it back.
    broker.restart();
    create_topic(&broker).await;
    let back = Instant::now();
    while http_get(svc.metrics_port, "/readyz").map(|(c, _)| c) != Some(200) {
        assert!(
            back.elapsed() < Duration::from_secs(30),
            "not ready 30 s after the broker returned\n{}",
            svc.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("ready again {:?} after the broker returned, without traffic", back.elapsed());
    // The client retries the same request until it is accepted.
    let t = Instant::now();
    let mut statuses = Vec::new();
    loop {
        let r = svc.post_json(WEB_TOKEN, &request);
        statuses.push(r.status);
        if r.status == 202 {
            break;
        }
        assert_eq!(r.status, 503, "{r:?}");
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "not accepted 60 s after the broker returned: {statuses:?}\n{}",
            svc.log_text()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!("statuses after the broker returned: {statuses:?} ({:?})", t.elapsed());
    svc.wait_ready(Duration::from_secs(5));
    let records = read_topic(&broker, Duration::from_secs(20), Duration::from_millis(500), |r| {
        (0..5).all(|i| r.iter().any(|x| x.value["event_id"] == format!("during-{i}")))
    });
    let mut counts: HashMap<String, usize> = HashMap::new();
    for r in &records {
        *counts.entry(r.value["event_id"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    for i in 0..5 {
        assert!(counts.get(&format!("during-{i}")).is_some_and(|n| *n >= 1), "during-{i} missing: {counts:?}");
    }
    svc.assert_alive();
}

/// A record that could never be written is refused as a 4xx before anything is produced: a
/// batch holding one event with a megabyte of `occurred_at` fraction digits (before the
/// schemas' ceilings it got a 503, and its valid neighbour was written on every retry).
#[tokio::test(flavor = "multi_thread")]
async fn a_megabyte_occurred_at_is_a_400_and_nothing_of_its_batch_is_written() {
    let broker = Broker::start(1).await;
    create_topic(&broker).await;
    let svc = Service::start(&broker, &[]);
    let mut huge = event("mega-1", "g1", "cat");
    huge["occurred_at"] = format!("2026-11-29T10:00:00.{}Z", "1".repeat(1_000_000)).into();
    let body = Value::Array(vec![event("mega-0", "g1", "cat"), huge]);
    let r = svc.post_json(WEB_TOKEN, &body);
    assert_eq!(r.status, 400, "{}", &r.body[..r.body.len().min(500)]);
    // Item 1 is named: as too long a text to be an event (it is refused before being parsed).
    let fields = r.error_fields();
    assert!(!fields.is_empty() && fields.iter().all(|f| f.0 == Some(1)), "{fields:?}");
    assert!(r.body.len() < 2_000, "the 400 does not echo the megabyte back ({} bytes)", r.body.len());
    assert_eq!(svc.post_json(WEB_TOKEN, &Value::Array(batch("marker", 1))).status, 202);
    let records = read_topic(&broker, Duration::from_secs(20), Duration::from_millis(500), |r| {
        r.iter().any(|x| x.value["event_id"] == "marker-0")
    });
    let ids: Vec<&str> = records.iter().filter_map(|r| r.value["event_id"].as_str()).collect();
    assert_eq!(ids, ["marker-0"], "nothing of the refused batch is on the topic");
}

/// A 2 MiB body sent the plain way (headers and body, then read; no `Expect: 100-continue`):
/// the whole write succeeds and the client reads its 413, both for a declared length over the
/// limit and for a chunked body that runs past it. Without the lingering close the service
/// closed with the body unread and the client got a reset.
#[tokio::test(flavor = "multi_thread")]
async fn a_two_megabyte_body_sent_without_expect_reads_its_413() {
    let broker = Broker::start(1).await;
    create_topic(&broker).await;
    let svc = Service::start(&broker, &[]);
    let body = format!("[{}]", "1,".repeat(1 << 20));
    let head = |framing: &str| raw_head(WEB_TOKEN, framing, true);
    let declared = format!("{}{body}", head(&format!("Content-Length: {}", body.len())));
    let chunked = format!("{}{:x}\r\n{body}\r\n0\r\n\r\n", head("Transfer-Encoding: chunked"), body.len());
    for (name, request) in [("declared", declared), ("chunked", chunked)] {
        // Sent in 64 KiB pieces, 2 ms apart, as over a real network: loopback's socket buffers
        // would otherwise swallow the whole 2 MiB before the service decides.
        let mut s = svc.connect();
        for (i, piece) in request.as_bytes().chunks(64 << 10).enumerate() {
            s.write_all(piece).unwrap_or_else(|e| panic!("{name}: the client could not send piece {i}: {e}"));
            std::thread::sleep(Duration::from_millis(2));
        }
        let r = read_response(&mut s);
        assert_eq!(r.status, 413, "{name}: {r:?}");
        assert!(r.body.contains("larger than"), "{name}: a readable reason: {}", r.body);
    }
}

/// SIGTERM with a request in flight (its body half sent): readiness drops at once, the request
/// still gets its answer (202 here) once the rest of the body arrives, never a reset, and the
/// service exits 0. Its body read timeout plus broker deadline (6 s) is longer than the
/// shutdown deadline (2 s), so the drain must wait for the longer of the two.
#[tokio::test(flavor = "multi_thread")]
async fn shutdown_answers_the_request_in_flight() {
    let broker = Broker::start(1).await;
    create_topic(&broker).await;
    let mut svc = Service::start(
        &broker,
        &[("AUTOTAG__FEEDBACK__BODY_READ_TIMEOUT_MS", "4000"), ("AUTOTAG__SHUTDOWN__DEADLINE_MS", "2000")],
    );
    let body = Value::Array(batch("in-flight", 2)).to_string();
    let (first, rest) = body.split_at(body.len() / 2);
    let mut s = svc.connect();
    write!(s, "{}{first}", raw_head(WEB_TOKEN, &format!("Content-Length: {}", body.len()), true)).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    svc.signal("TERM");
    let t = Instant::now();
    while http_get(svc.metrics_port, "/readyz").map(|(c, _)| c) == Some(200) {
        assert!(t.elapsed() < Duration::from_secs(2), "still ready after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The rest arrives after the shutdown deadline has passed.
    std::thread::sleep(Duration::from_millis(2500));
    s.write_all(rest.as_bytes()).unwrap();
    let r = read_response(&mut s);
    assert_eq!(r.status, 202, "{r:?}\n{}", svc.log_text());
    let t = Instant::now();
    let code = loop {
        if let Some(status) = svc.proc.0.try_wait().unwrap() {
            break status.code();
        }
        assert!(t.elapsed() < Duration::from_secs(10), "still running");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(code, Some(0), "{}", svc.log_text());
}

/// A client that pipelines requests and never reads the answers: once the socket buffers are
/// full the service's write makes no progress, and after `write_timeout_ms` it closes the
/// connection, so the client cannot hold a connection slot for ever (here the only one).
#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_never_reads_is_cut_off_by_the_write_timeout() {
    let broker = Broker::start(1).await;
    create_topic(&broker).await;
    let svc = Service::start(
        &broker,
        &[("AUTOTAG__FEEDBACK__MAX_CONNECTIONS", "1"), ("AUTOTAG__FEEDBACK__WRITE_TIMEOUT_MS", "1000")],
    );
    // Each request names 100 unknown 150-character fields: a ~20 KB answer listing them.
    let mut e = event("hog", "g", "cat");
    for i in 0..100 {
        e[format!("{i:0>150}")] = 1.into();
    }
    let body = e.to_string();
    let request = format!("{}{body}", raw_head(WEB_TOKEN, &format!("Content-Length: {}", body.len()), false));
    let mut hog = svc.connect();
    hog.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    let writer = std::thread::spawn(move || {
        // ~40 MB of answers, far more than the socket buffers hold; the writes stop when the
        // service stops reading (or closes).
        for _ in 0..2_000 {
            if hog.write_all(request.as_bytes()).is_err() {
                break;
            }
        }
        hog
    });
    std::thread::sleep(Duration::from_millis(500));
    let (tx, rx) = std::sync::mpsc::channel();
    let port = svc.port;
    let body = Value::Array(batch("patient", 1)).to_string();
    std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        write!(s, "{}{body}", raw_head(IOS_TOKEN, &format!("Content-Length: {}", body.len()), true)).unwrap();
        let _ = tx.send(read_response(&mut s).status);
    });
    let status = rx.recv_timeout(Duration::from_secs(30)).expect("the other client was never served");
    assert_eq!(status, 202);
    drop(writer.join().unwrap());
}

/// A leaked token removed from the tokens file, with a typo on another line: the reload fails
/// as a whole (every old token still works) and the failure is counted on /metrics and logged
/// with its line; the next clean reload revokes the token.
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_token_reload_is_counted_and_the_next_clean_one_revokes() {
    use autotag_feedback::auth::token_line;
    let broker = Broker::start(1).await;
    create_topic(&broker).await;
    let svc = Service::start(&broker, &[]);
    assert_eq!(svc.post_json(WEB_TOKEN, &Value::Array(batch("before", 1))).status, 202);

    std::fs::write(&svc.tokens, format!("{}\nios-app sha256:0123 # typo\n", token_line("web", WEB_TOKEN_NEW))).unwrap();
    svc.hangup();
    svc.wait_metric(r#"autotag_feedback_token_reloads_total{result="error"} 1"#, Duration::from_secs(10));
    assert!(svc.log_text().contains("line 2"), "the log names the bad line:\n{}", svc.log_text());
    assert_eq!(
        svc.post_json(WEB_TOKEN, &Value::Array(batch("kept", 1))).status,
        202,
        "all or nothing: old tokens kept"
    );

    std::fs::write(&svc.tokens, format!("\u{feff}{}\n", token_line("web", WEB_TOKEN_NEW))).unwrap();
    svc.hangup();
    svc.wait_metric(r#"autotag_feedback_token_reloads_total{result="ok"} 1"#, Duration::from_secs(10));
    assert_eq!(svc.post_json(WEB_TOKEN, &Value::Array(batch("leaked", 1))).status, 401, "the leaked token is revoked");
    assert_eq!(svc.post_json(WEB_TOKEN_NEW, &Value::Array(batch("after", 1))).status, 202);
    assert_eq!(svc.post_json(IOS_TOKEN, &Value::Array(batch("ios", 1))).status, 401);
}

/// Past `max_connections` the listener stops accepting: a new client waits (in the kernel's
/// backlog) instead of costing the service memory, and is served once a connection closes.
#[tokio::test(flavor = "multi_thread")]
async fn past_max_connections_a_new_connection_waits_until_one_closes() {
    let broker = Broker::start(1).await;
    create_topic(&broker).await;
    let mut svc = Service::start(
        &broker,
        &[("AUTOTAG__FEEDBACK__MAX_CONNECTIONS", "3"), ("AUTOTAG__FEEDBACK__HEADER_READ_TIMEOUT_MS", "60000")],
    );
    svc.wait_ready(Duration::from_secs(20));
    // Three silent connections take every connection slot.
    let mut silent: Vec<std::net::TcpStream> = (0..3).map(|_| svc.connect()).collect();
    std::thread::sleep(Duration::from_millis(300));
    let (tx, rx) = std::sync::mpsc::channel();
    let port = svc.port;
    let body = Value::Array(batch("waiting", 1)).to_string();
    std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(s, "{}{body}", raw_head(WEB_TOKEN, &format!("Content-Length: {}", body.len()), true)).unwrap();
        let _ = tx.send((read_response(&mut s).status, Instant::now()));
    });
    assert!(rx.recv_timeout(Duration::from_millis(1500)).is_err(), "served past max_connections");
    let closed = Instant::now();
    drop(silent.pop());
    let (status, at) = rx.recv_timeout(Duration::from_secs(10)).expect("served once a connection closed");
    assert_eq!(status, 202);
    eprintln!("served {:?} after a connection closed", at.duration_since(closed));
    svc.assert_alive();
}

/// One client holding 80 connections with half-sent bodies cannot lock the others out: it runs
/// out of its own share of the slots (`max_requests_per_client`, 16) and gets 429s, while
/// another client is still served at once.
#[tokio::test(flavor = "multi_thread")]
async fn one_client_with_slow_bodies_cannot_lock_out_another() {
    let broker = Broker::start(1).await;
    create_topic(&broker).await;
    let mut svc = Service::start(&broker, &[("AUTOTAG__FEEDBACK__BODY_READ_TIMEOUT_MS", "20000")]);
    svc.wait_ready(Duration::from_secs(20));
    let mut slow = Vec::new();
    for _ in 0..80 {
        let mut s = svc.connect();
        write!(
            s,
            "POST /v1/feedback HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {WEB_TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n[{{\"schema_version\":1"
        )
        .unwrap();
        slow.push(s);
    }
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    let r = svc.post_json(IOS_TOKEN, &Value::Array(batch("other-client", 1)));
    assert_eq!(r.status, 202, "{r:?}");
    assert!(t.elapsed() < Duration::from_secs(3), "took {:?}", t.elapsed());
    // The slow client itself is past its share: a 429 at once.
    let r = svc.post_json(WEB_TOKEN, &Value::Array(batch("same-client", 1)));
    assert_eq!((r.status, r.header("retry-after")), (429, Some("1")), "{r:?}");
    let metrics = http_get(svc.metrics_port, "/metrics").map(|(_, b)| b).unwrap_or_default();
    assert!(metrics.contains("autotag_feedback_requests_in_flight 16"), "16 of web's requests hold slots:\n{metrics}");
    drop(slow);
    // Hung-up clients give their slots and the in-flight gauge back.
    let t = Instant::now();
    loop {
        let m = http_get(svc.metrics_port, "/metrics").map(|(_, b)| b).unwrap_or_default();
        if m.contains("autotag_feedback_requests_in_flight 0") {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "gauge not back to 0:\n{m}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(svc.post_json(WEB_TOKEN, &Value::Array(batch("after", 1))).status, 202);
}

#[tokio::test(flavor = "multi_thread")]
async fn past_max_concurrent_requests_is_a_429_never_a_queue() {
    let broker = Broker::start(1).await;
    create_topic(&broker).await;
    let svc = Service::start(
        &broker,
        &[("AUTOTAG__FEEDBACK__MAX_CONCURRENT_REQUESTS", "2"), ("AUTOTAG__FEEDBACK__BODY_READ_TIMEOUT_MS", "3000")],
    );
    // Two requests hold both slots: headers sent, body withheld.
    let mut holders = Vec::new();
    for _ in 0..2 {
        let mut s = svc.connect();
        write!(
            s,
            "POST /v1/feedback HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {WEB_TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
        )
        .unwrap();
        holders.push(s);
    }
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    let r = svc.post_json(WEB_TOKEN, &Value::Array(batch("third", 1)));
    assert_eq!(r.status, 429, "{r:?}");
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(t.elapsed() < Duration::from_millis(500), "answered at once, not queued: {:?}", t.elapsed());
    // The holders are cut off by the body read timeout (408), which frees the slots.
    for mut s in holders {
        assert_eq!(read_response(&mut s).status, 408);
    }
    assert_eq!(svc.post_json(WEB_TOKEN, &Value::Array(batch("later", 1))).status, 202);
}

#[tokio::test(flavor = "multi_thread")]
async fn cors_preflight_from_an_allowed_origin_gets_204_others_no_cors_headers() {
    let broker = Broker::start(1).await;
    create_topic(&broker).await;
    let svc = Service::start(&broker, &[("AUTOTAG__FEEDBACK__ALLOWED_ORIGINS", r#"["https://giphy.com"]"#)]);
    let preflight = |origin: &str| {
        svc.send(
            format!(
                "OPTIONS /v1/feedback HTTP/1.1\r\nHost: x\r\nConnection: close\r\nOrigin: {origin}\r\nAccess-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: authorization, content-type\r\n\r\n"
            )
            .as_bytes(),
        )
    };
    let r = preflight("https://giphy.com");
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(r.header("access-control-allow-origin"), Some("https://giphy.com"));
    assert!(r.header("access-control-allow-methods").is_some_and(|m| m.contains("POST")));
    assert!(r.header("access-control-allow-headers").is_some_and(|h| h.contains("authorization")));
    let r = preflight("https://evil.example");
    assert_ne!(r.status / 100, 2, "{r:?}");
    assert!(r.headers.iter().all(|(k, _)| !k.to_ascii_lowercase().starts_with("access-control-")), "{r:?}");
    assert_eq!(r.header("vary"), Some("Origin"), "a refused preflight varies by Origin too: {r:?}");

    let post = |origin: &str, token: &str| {
        let body = event(&format!("cors-{origin}-{token}"), "g", "cat").to_string();
        svc.send(
            format!(
                "POST /v1/feedback HTTP/1.1\r\nHost: x\r\nConnection: close\r\nOrigin: {origin}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
    };
    let r = post("https://giphy.com", WEB_TOKEN);
    assert_eq!((r.status, r.header("access-control-allow-origin")), (202, Some("https://giphy.com")));
    let r = post("https://giphy.com", "bad");
    assert_eq!(
        (r.status, r.header("access-control-allow-origin")),
        (401, Some("https://giphy.com")),
        "errors are readable too"
    );
    let r = post("https://evil.example", WEB_TOKEN);
    assert_eq!((r.status, r.header("access-control-allow-origin")), (202, None));
    assert_eq!(r.header("vary"), Some("Origin"), "{r:?}");
}

/// Memory is bounded before parsing: 64 clients (the default slot count) at once, each with a
/// ~1 MiB body of ~130 000 tiny objects, then each with 500 objects of ~1.8 KB of tiny unknown
/// properties. Before, each body became one `serde_json::Value` (~12 MiB of heap per MiB of
/// body, measured from outside: ~800 MiB for such a burst); the service's peak RSS must stay
/// under 256 MiB.
#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_megabyte_bodies_of_tiny_objects_keeps_rss_under_256_mib() {
    let broker = Broker::start(1).await;
    create_topic(&broker).await;
    let mut svc = Service::start(&broker, &[]);
    let tiny = {
        let mut b = String::from("[");
        while b.len() < 1_040_000 {
            b.push_str(r#"{"a":1},"#);
        }
        b.push_str(r#"{"a":1}]"#);
        b
    };
    let wide = {
        let object: String = format!("{{{}\"z\":1}}", (0..200).map(|i| format!("\"p{i}\":1,")).collect::<String>());
        format!("[{}]", vec![object; 500].join(","))
    };
    assert!(wide.len() < 1_048_576, "{}", wide.len());
    for (name, body, status) in [("tiny", tiny, 413), ("wide", wide, 400)] {
        let request = format!("{}{body}", raw_head(WEB_TOKEN, &format!("Content-Length: {}", body.len()), true));
        let request = std::sync::Arc::new(request.into_bytes());
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(64));
        let port = svc.port;
        let clients: Vec<_> = (0..64)
            .map(|_| {
                let (request, barrier) = (request.clone(), barrier.clone());
                std::thread::spawn(move || {
                    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
                    barrier.wait();
                    let _ = s.write_all(&request);
                    read_response(&mut s).status
                })
            })
            .collect();
        let statuses: Vec<u16> = clients.into_iter().map(|c| c.join().unwrap()).collect();
        assert!(statuses.iter().all(|s| *s == status || *s == 429), "{name}: {statuses:?}");
        assert!(statuses.contains(&status), "{name}: {statuses:?}");
        let (_, peak) = svc.rss_kib();
        eprintln!("{name}: statuses {statuses:?}, service peak RSS {} MiB", peak / 1024);
        assert!(peak < 256 * 1024, "{name}: peak RSS {} MiB", peak / 1024);
    }
    svc.assert_alive();
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_inputs_get_4xx_the_service_stays_alive_and_memory_bounded() {
    let broker = Broker::start(1).await;
    create_topic(&broker).await;
    let mut svc = Service::start(
        &broker,
        &[("AUTOTAG__FEEDBACK__BODY_READ_TIMEOUT_MS", "1000"), ("AUTOTAG__FEEDBACK__HEADER_READ_TIMEOUT_MS", "1000")],
    );
    assert_eq!(svc.post_json(WEB_TOKEN, &Value::Array(batch("warm", 5))).status, 202);
    let (rss_before, _) = svc.rss_kib();

    for round in 0..3 {
        // Invalid UTF-8.
        let r = svc.post(Some(WEB_TOKEN), Some("application/json"), b"[{\"tag\":\"\xff\xfe\xfd\"}]");
        assert_eq!(r.status, 400, "invalid UTF-8: {r:?}");
        // Deeply nested JSON, just under the body limit.
        let deep = format!("{}{}", "[".repeat(500_000), "]".repeat(500_000));
        let r = svc.post(Some(WEB_TOKEN), Some("application/json"), deep.as_bytes());
        assert_eq!(r.status, 400, "deep nesting: {r:?}");
        let deep_obj = "{\"a\":".repeat(100_000);
        assert_eq!(svc.post(Some(WEB_TOKEN), Some("application/json"), deep_obj.as_bytes()).status, 400);
        // A JSON number where a string belongs.
        let mut e = event(&format!("num-{round}"), "g", "cat");
        e["gif_id"] = json!(12345);
        let r = svc.post_json(WEB_TOKEN, &e);
        assert_eq!((r.status, r.error_fields()), (400, vec![(Some(0), "/gif_id".to_owned())]));

        // A 10 MB header.
        let r = ten_megabyte_header(&svc);
        assert!(r.status == 431 || r.status == 0, "10 MB header: {r:?}");
        if round == 0 {
            assert_eq!(r.status, 431, "the first 10 MB header gets its 431");
        }

        // A body that never ends: slow (a byte a while) → 408 at the body deadline ...
        let t = Instant::now();
        let mut s = svc.connect();
        write!(s, "POST /v1/feedback HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {WEB_TOKEN}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
        let writer = {
            let mut s = s.try_clone().unwrap();
            std::thread::spawn(move || {
                for _ in 0..100 {
                    if s.write_all(b"1\r\n[\r\n").is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        let r = read_response(&mut s);
        assert_eq!(r.status, 408, "slow endless body: {r:?}");
        assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
        drop(s);
        writer.join().unwrap();
        // ... and fast → 413 at the size limit.
        let mut s = svc.connect();
        write!(s, "POST /v1/feedback HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {WEB_TOKEN}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
        let writer = {
            let mut s = s.try_clone().unwrap();
            std::thread::spawn(move || {
                let chunk = format!("10000\r\n{}\r\n", "[".repeat(0x10000));
                for _ in 0..1000 {
                    if s.write_all(chunk.as_bytes()).is_err() {
                        return;
                    }
                }
            })
        };
        let r = read_response(&mut s);
        assert!(r.status == 413 || r.status == 0, "fast endless body: {r:?}");
        drop(s);
        writer.join().unwrap();

        // Headers that never end: the connection is closed at the header deadline.
        let t = Instant::now();
        let mut s = svc.connect();
        write!(s, "POST /v1/feedback HTTP/1.1\r\nHost: x\r\n").unwrap();
        let r = read_response(&mut s);
        assert!(r.status == 0 || r.status == 408, "{r:?}");
        assert!(t.elapsed() < Duration::from_secs(4), "slow headers held for {:?}", t.elapsed());
    }

    svc.assert_alive();
    assert_eq!(svc.post_json(WEB_TOKEN, &Value::Array(batch("after", 5))).status, 202, "still serving");
    let (rss_after, peak) = svc.rss_kib();
    eprintln!("RSS before {rss_before} KiB, after {rss_after} KiB, peak {peak} KiB");
    assert!(peak < rss_before + 64 * 1024, "peak RSS {peak} KiB grew more than 64 MiB over {rss_before} KiB");
    let records = read_topic(&broker, Duration::from_secs(20), Duration::from_millis(500), |r| r.len() >= 10);
    assert_eq!(records.len(), 10, "only the two valid batches were written");
}

/// Send a request whose headers total 10 MB, from a thread, while reading the answer.
fn ten_megabyte_header(svc: &Service) -> Response {
    let mut s = svc.connect();
    let writer = {
        let mut s = s.try_clone().unwrap();
        std::thread::spawn(move || {
            let _ = s.write_all(b"POST /v1/feedback HTTP/1.1\r\nHost: x\r\nX-Big: ");
            let chunk = vec![b'a'; 64 * 1024];
            for _ in 0..160 {
                if s.write_all(&chunk).is_err() {
                    return;
                }
            }
            let _ = s.write_all(b"\r\n\r\n");
        })
    };
    let r = read_response(&mut s);
    drop(s);
    writer.join().unwrap();
    r
}
