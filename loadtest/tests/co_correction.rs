//! Coordinated-omission correction against a server with a known injected delay.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use loadtest::blast::{BlastOptions, blast, serve_trivial};
use loadtest::client::TargetAddr;
use loadtest::results::decode_histogram;
use tokio::net::TcpListener;

const DELAY: Duration = Duration::from_millis(20);

async fn server() -> TargetAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve_trivial(listener, Some(DELAY), std::future::pending()));
    TargetAddr::from_addr(addr)
}

fn opts(target: TargetAddr, connections: usize) -> BlastOptions {
    BlastOptions {
        target,
        path: "/".into(),
        rate: 100.0,
        duration: Duration::from_millis(500),
        connections,
        timeout: Duration::from_secs(5),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_server_shows_in_latency_from_intended_time() {
    // One connection, 100 req/s intended, 20 ms per answer: the server can do 50/s. Request k
    // is intended at 10k ms and answered at about 20(k+1) ms, so its latency is 20 + 10k ms.
    // In 500 ms about 25 get through: p50 ~ 140 ms, max ~ 260 ms; the service time stays 20 ms.
    let rep = blast(&opts(server().await, 1)).await.unwrap();
    let l = &rep.latency_ms;
    assert!((22..=27).contains(&rep.completed), "{}", rep.completed);
    assert!(
        rep.missed >= 20,
        "the generator reports what it could not send: {}",
        rep.missed
    );
    assert!(
        (115.0..175.0).contains(&l.percentiles.p50),
        "p50 {}",
        l.percentiles.p50
    );
    assert!((230.0..320.0).contains(&l.max), "max {}", l.max);
    let s = &rep.service_time_ms;
    assert!(
        (19.0..35.0).contains(&s.percentiles.p50),
        "service p50 {}",
        s.percentiles.p50
    );
    // The histogram in the report is the one the percentiles came from.
    let h = decode_histogram(&l.histogram).unwrap();
    assert_eq!(h.len(), rep.completed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_enough_connections_latency_is_the_injected_delay() {
    // Eight connections can carry 400/s: nobody waits, latency is the 20 ms delay.
    let rep = blast(&opts(server().await, 8)).await.unwrap();
    assert!((49..=50).contains(&rep.completed), "{}", rep.completed);
    assert_eq!(rep.missed, 0);
    let l = &rep.latency_ms.percentiles;
    assert!((19.0..40.0).contains(&l.p50), "p50 {}", l.p50);
    assert!(l.p99 < 60.0, "p99 {}", l.p99);
}
