//! Partly-open journeys: the drawdown is intended at the quote's *intended* time plus think
//! time, so a slow quote shows up in the drawdown's latency instead of being hidden.
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
use loadtest::results::decode_histogram;
use loadtest::scenario::Scenario;
use tokio::net::TcpListener;

const QUOTE_DELAY: Duration = Duration::from_millis(200);

async fn slow_quote_server() -> TargetAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let svc = service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                    let body = if req.uri().path().starts_with("/v1/credit-lines/") {
                        tokio::time::sleep(QUOTE_DELAY).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_quote_lands_in_the_drawdown_latency() {
    // Think time 50-150 ms, quote 200 ms: every drawdown is due before its quote returns,
    // so it is sent late and its latency (from its intended time) is at least ~50 ms, though
    // the server answers it at once.
    let sc = Scenario::from_toml(
        "partly-open",
        r#"
name = "partly-open"
connections = 32
[population]
users = 10
[[population.group]]
name = "good"
profile = "good"
share = 1
[journey]
think_ms = 100
amount_min_fen = 100000
amount_max_fen = 100000
[[phase]]
name = "only"
duration_s = 1
rate = { shape = "constant", rate = 20 }
"#,
    )
    .unwrap();
    let r = run(
        &sc,
        &RunOptions {
            target: slow_quote_server().await,
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
    .unwrap();
    assert_eq!(r.populations[0].intents, 20);
    assert_eq!(r.populations[0].approved, 20);
    let latency = decode_histogram(&r.latency_ms.histogram).unwrap();
    let service = decode_histogram(&r.service_time_ms.histogram).unwrap();
    assert_eq!(latency.len(), 40);
    // Drawdowns are answered at once...
    assert!(service.min() < 40_000, "service min {} us", service.min());
    // ...but none of them looks fast, because each was due before its quote came back.
    assert!(latency.min() >= 45_000, "latency min {} us", latency.min());
    // Quotes: ~200 ms.
    assert!(latency.max() >= 195_000, "latency max {} us", latency.max());
}
