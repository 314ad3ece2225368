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

// One test, two runs in sequence: the runs must not compete for the CPU with each other.
// Bounds are loose where a busy machine can only make things slower, tight where the
// arithmetic of coordinated omission decides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_counts_from_the_intended_send_time() {
    // One connection, 100 req/s intended, 20 ms per answer: the server can do 50/s. Request k
    // is intended at 10k ms and answered at about 20(k+1) ms, so its latency is 20 + 10k ms.
    // In 500 ms about 25 get through: p50 ~ 140 ms, max ~ 260 ms; the service time stays 20 ms.
    let rep = blast(&opts(server().await, 1)).await.unwrap();
    let (l, s) = (&rep.latency_ms, &rep.service_time_ms);
    assert!((10..=27).contains(&rep.completed), "{}", rep.completed);
    assert!(
        rep.missed >= 20,
        "the generator reports what it could not send: {}",
        rep.missed
    );
    assert!(
        s.percentiles.p50 >= 19.0,
        "service p50 {}",
        s.percentiles.p50
    );
    // Corrected latency is many times the service time (uncorrected it would equal it).
    assert!(
        l.percentiles.p50 > 3.0 * s.percentiles.p50,
        "p50 {} vs service {}",
        l.percentiles.p50,
        s.percentiles.p50
    );
    // The last answered request was intended ~10 ms x its index before it was answered.
    let expected_max = 20.0 + 10.0 * (rep.completed as f64 - 1.0);
    assert!(
        l.max >= 0.9 * expected_max,
        "max {} vs {expected_max}",
        l.max
    );
    assert!(l.max < 1000.0, "max {}", l.max);
    // The histogram in the report is the one the percentiles came from.
    let h = decode_histogram(&l.histogram).unwrap();
    assert_eq!(h.len(), rep.completed);

    // Eight connections can carry 400/s: nobody waits, latency is the 20 ms delay.
    let rep = blast(&opts(server().await, 8)).await.unwrap();
    assert!((45..=50).contains(&rep.completed), "{}", rep.completed);
    let l = &rep.latency_ms.percentiles;
    assert!((19.0..60.0).contains(&l.p50), "p50 {}", l.p50);
    assert!(l.p99 < 150.0, "p99 {}", l.p99);
}
