//! `clients = "per_journey"`: every journey sends on a connection of its own, so a slow
//! target never makes a request wait behind another journey's (no send delay of the
//! generator's making), and what the generator could not send is counted as not sent.
#![allow(clippy::unwrap_used)]

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use loadtest::client::TargetAddr;
use loadtest::engine::{RunOptions, run};
use loadtest::results::Results;
use loadtest::scenario::Scenario;
use tokio::net::TcpListener;

/// A drawdown takes 300 ms (a quote is answered at once, so a journey's drawdown is due
/// 100-300 ms after its quote was due, long after the quote is back).
const DELAY: Duration = Duration::from_millis(300);

async fn slow_server() -> TargetAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let svc = service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                    if req.uri().path() == "/v1/drawdowns" {
                        tokio::time::sleep(DELAY).await;
                    }
                    let body = if req.uri().path().starts_with("/v1/credit-lines/") {
                        r#"{"drawable_now_fen": 5000000, "available_fen": 5000000}"#
                    } else if req.uri().path() == "/v1/drawdowns" {
                        r#"{"outcome": "approved", "reasons": []}"#
                    } else {
                        "{}"
                    };
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                        body.as_bytes(),
                    ))))
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    TargetAddr::from_addr(addr)
}

/// 40 journeys/s for 1 s against the slow server, with `clients` and `connections`.
async fn run_with(clients: &str, connections: usize) -> Results {
    let sc = Scenario::from_toml(
        "per-journey",
        &format!(
            r#"
name = "per-journey"
clients = "{clients}"
connections = {connections}
request_timeout_ms = 2000
[population]
users = 10
[[population.group]]
name = "good"
profile = "good"
share = 1
[journey]
think_ms = 200
amount_min_fen = 100000
amount_max_fen = 100000
[[phase]]
name = "only"
duration_s = 1
rate = {{ shape = "constant", rate = 40 }}
"#
        ),
    )
    .unwrap();
    run(
        &sc,
        &RunOptions {
            target: slow_server().await,
            target_label: "slow".into(),
            api_key: "k".into(),
            admin_token: "a".into(),
            scale: 1.0,
            started_at: "2026-11-11T00:00:00Z".into(),
            run_nonce: 1,
            progress: false,
            bureau: None,
            faults: Vec::new(),
        },
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journey_never_waits_behind_another_journeys_connection() {
    // A pool of 4 connections in front of 40 drawdowns/s × 300 ms: requests queue in the
    // generator behind busy connections, and the send delay says so.
    let pool = run_with("pool", 4).await;
    assert!(
        pool.generator.send_delay_ms.p99 > 200.0,
        "pool send delay p99 {} ms",
        pool.generator.send_delay_ms.p99
    );
    // A connection per journey: every request leaves at its intended time.
    let own = run_with("per_journey", 1000).await;
    assert_eq!(own.populations[0].intents, 40);
    assert_eq!(own.populations[0].approved, 40);
    assert_eq!(own.generator.missed_sends, 0);
    // (What is left is the generator's own timer lag, tens of ms on a busy machine.)
    assert!(
        own.generator.send_delay_ms.p99 < 150.0
            && own.generator.send_delay_ms.p99 * 3.0 < pool.generator.send_delay_ms.p99,
        "per-journey send delay p99 {} ms, pool {} ms",
        own.generator.send_delay_ms.p99,
        pool.generator.send_delay_ms.p99
    );
    // One connection per journey, kept for both of its requests.
    assert_eq!(own.generator.connections_opened, 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_generator_cannot_send_is_reported_as_not_sent() {
    // At most 5 connections open at once while ~13 journeys are in flight: the journeys
    // that find none free are not sent, and the results say so (missed, sent < offered),
    // instead of queueing them and counting the wait as latency.
    let r = run_with("per_journey", 5).await;
    let g = &r.generator;
    assert!(g.missed_sends > 0, "{g:?}");
    assert_eq!(g.requests_sent + g.missed_sends, g.requests_scheduled);
    assert!(!g.kept_up);
    assert!(
        g.send_delay_ms.p99 < 150.0,
        "what was sent left on time: {} ms",
        g.send_delay_ms.p99
    );
    let sent: u64 = r.seconds.iter().map(|s| s.sent).sum();
    let offered: u64 = r.seconds.iter().map(|s| s.offered).sum();
    assert!(sent < offered, "sent {sent} offered {offered}");
}
