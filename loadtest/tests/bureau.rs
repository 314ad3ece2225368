//! The bureau simulator over HTTP: the wire contract, queueing, run-time changes, injected
//! failures, abandoned requests. Exact queueing arithmetic is tested with a paused clock in
//! `src/bureau/mod.rs`; here the clock is real, so timings are only lower bounds.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use loadtest::bureau::{BureauOptions, BureauStats, Jitter, RunningBureau, ScoreAnswer, start};
use loadtest::client::{Conn, SendError};
use serde_json::Value;
use tokio::time::Instant;

const TIMEOUT: Duration = Duration::from_secs(10);

async fn send(
    conn: &mut Conn,
    b: &RunningBureau,
    method: Method,
    path: &str,
    body: &str,
) -> (StatusCode, Bytes) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, b.addr.to_string())
        .header("x-request-deadline-ms", "800")
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    let resp = conn.send(req, TIMEOUT).await.unwrap();
    (resp.status(), resp.body().clone())
}

async fn get(b: &RunningBureau, path: &str) -> (StatusCode, Bytes) {
    send(&mut Conn::new(b.addr), b, Method::GET, path, "").await
}

async fn stats(b: &RunningBureau) -> BureauStats {
    let (st, body) = get(b, "/stats").await;
    assert_eq!(st, StatusCode::OK);
    serde_json::from_slice(&body).unwrap()
}

/// Polls `/stats` until `cond` holds (at most 10 s).
async fn wait_for(b: &RunningBureau, cond: impl Fn(&BureauStats) -> bool) -> BureauStats {
    let until = Instant::now() + TIMEOUT;
    loop {
        let s = stats(b).await;
        if cond(&s) {
            return s;
        }
        assert!(Instant::now() < until, "condition never held: {s:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn opts(slots: usize, service_ms: u64) -> BureauOptions {
    BureauOptions {
        slots,
        service_ms,
        ..Default::default()
    }
}

fn error_code(body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body).unwrap();
    v["error"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn it_serves_the_contract() {
    let b = start(&opts(2, 0)).await.unwrap();
    let (st, first) = get(&b, "/v1/score/u-000123").await;
    assert_eq!(st, StatusCode::OK);
    let a: ScoreAnswer = serde_json::from_slice(&first).unwrap();
    assert_eq!(a.user_id, "u-000123");
    assert!((300..=850).contains(&a.score));
    // Every field of the contract, and no other.
    let v: Value = serde_json::from_slice(&first).unwrap();
    let mut keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "as_of",
            "inquiries_90d",
            "max_days_overdue",
            "overdue_accounts",
            "score",
            "user_id"
        ]
    );
    let (_, again) = get(&b, "/v1/score/u-000123").await;
    assert_eq!(first, again, "the same id gets the same body");
    assert_eq!(get(&b, "/healthz").await.0, StatusCode::OK);

    let (st, body) = get(&b, "/v1/score/u%2F1").await;
    assert_eq!(
        (st, error_code(&body).as_str()),
        (StatusCode::BAD_REQUEST, "bad_user_id")
    );
    assert_eq!(get(&b, "/v1/nothing").await.0, StatusCode::NOT_FOUND);
    let mut c = Conn::new(b.addr);
    let (st, _) = send(&mut c, &b, Method::POST, "/v1/score/u-1", "").await;
    assert_eq!(st, StatusCode::METHOD_NOT_ALLOWED);

    let s = stats(&b).await;
    assert_eq!((s.received, s.served, s.errors), (2, 2, 0));
    assert_eq!((s.slots, s.service_ms, s.jitter), (2, 0, Jitter::None));
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_grows_once_concurrency_exceeds_the_slots() {
    let service = Duration::from_millis(20);
    let b = start(&opts(2, 20)).await.unwrap();
    // One warmed connection per request, so the requests leave together.
    let mut conns = Vec::new();
    for _ in 0..8 {
        let mut c = Conn::new(b.addr);
        send(&mut c, &b, Method::GET, "/healthz", "").await;
        conns.push(c);
    }
    let round = |conns: Vec<Conn>| {
        let addr = b.addr;
        async move {
            let t0 = Instant::now();
            let tasks: Vec<_> = conns
                .into_iter()
                .enumerate()
                .map(|(k, mut c)| {
                    tokio::spawn(async move {
                        let req = Request::builder()
                            .uri(format!("/v1/score/u-{k:06}"))
                            .header(http::header::HOST, addr.to_string())
                            .body(Full::new(Bytes::new()))
                            .unwrap();
                        let sent = Instant::now();
                        let r = c.send(req, TIMEOUT).await.unwrap();
                        assert_eq!(r.status(), StatusCode::OK);
                        (sent.elapsed(), Instant::now() - t0, c)
                    })
                })
                .collect();
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.unwrap());
            }
            out
        }
    };

    // Two at once on two slots: each takes the service time, nobody waits.
    let two = round(conns.split_off(6)).await;
    for (latency, _, _) in &two {
        assert!(*latency >= service, "{latency:?}");
    }
    assert_eq!(
        stats(&b).await.max_queue,
        0,
        "two requests on two slots never queue"
    );

    // Eight at once on two slots: four rounds. Two slots cannot do 8 x 20 ms of work in
    // less than 80 ms, and the last one waited for about three rounds.
    let eight = round(
        conns
            .into_iter()
            .chain(two.into_iter().map(|t| t.2))
            .collect(),
    )
    .await;
    let span = eight.iter().map(|t| t.1).max().unwrap();
    let slowest = eight.iter().map(|t| t.0).max().unwrap();
    assert!(span >= service * 4, "all eight done after {span:?}");
    assert!(slowest >= service * 3, "slowest {slowest:?}");
    let s = stats(&b).await;
    assert!(s.max_queue >= 1, "{s:?}");
    assert_eq!((s.served, s.queued_now, s.in_service), (10, 0, 0));
    b.shutdown().await;
}

#[tokio::test]
async fn the_service_time_changes_at_run_time() {
    let b = start(&opts(1, 0)).await.unwrap();
    let mut c = Conn::new(b.addr);
    let (st, body) = send(
        &mut c,
        &b,
        Method::PUT,
        "/admin/service",
        r#"{"service_ms":150}"#,
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let s: BureauStats = serde_json::from_slice(&body).unwrap();
    assert_eq!(s.service_ms, 150);
    let t = Instant::now();
    assert_eq!(get(&b, "/v1/score/u-1").await.0, StatusCode::OK);
    assert!(
        t.elapsed() >= Duration::from_millis(150),
        "{:?}",
        t.elapsed()
    );

    // Bad changes are refused by name and change nothing.
    for bad in [
        r#"{"service_ms":150,"error_rate":2}"#,
        r#"{"service_ms":9999999}"#,
        r#"{"service":5}"#,
        r#"{}"#,
        "not json",
    ] {
        let (st, body) = send(&mut c, &b, Method::PUT, "/admin/service", bad).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{bad}");
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"], "bad_request");
        assert!(!v["message"].as_str().unwrap().is_empty());
    }
    let s = stats(&b).await;
    assert_eq!((s.service_ms, s.error_rate), (150, 0.0));

    // The in-process handle changes the same bureau.
    b.bureau.set_service_ms(5).unwrap();
    assert_eq!(stats(&b).await.service_ms, 5);
    b.shutdown().await;
}

#[tokio::test]
async fn failures_are_answered_as_the_contract_says() {
    let b = start(&BureauOptions {
        slots: 1,
        service_ms: 0,
        error_rate: 1.0,
        max_queue: Some(0),
        ..Default::default()
    })
    .await
    .unwrap();
    let (st, body) = get(&b, "/v1/score/u-1").await;
    assert_eq!(
        (st, error_code(&body).as_str()),
        (StatusCode::INTERNAL_SERVER_ERROR, "injected")
    );

    // One request holds the only slot; with no queue allowed the next is refused at once.
    b.bureau.set_service_ms(2_000).unwrap();
    b.bureau.set_error_rate(0.0).unwrap();
    let holder = tokio::spawn({
        let addr = b.addr;
        async move {
            let req = Request::builder()
                .uri("/v1/score/u-2")
                .header(http::header::HOST, addr.to_string())
                .body(Full::new(Bytes::new()))
                .unwrap();
            Conn::new(addr).send(req, TIMEOUT).await.unwrap().status()
        }
    });
    wait_for(&b, |s| s.in_service == 1).await;
    let t = Instant::now();
    let (st, body) = get(&b, "/v1/score/u-3").await;
    assert_eq!(
        (st, error_code(&body).as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "overloaded")
    );
    assert!(
        t.elapsed() < Duration::from_millis(2_000),
        "refused without waiting"
    );
    assert_eq!(holder.await.unwrap(), StatusCode::OK);
    let s = stats(&b).await;
    assert_eq!((s.served, s.errors, s.overloaded), (1, 1, 1));
    b.shutdown().await;
}

#[tokio::test]
async fn a_caller_that_gives_up_does_not_free_the_slot() {
    let b = start(&opts(1, 1_000)).await.unwrap();
    let req = Request::builder()
        .uri("/v1/score/u-1")
        .header(http::header::HOST, b.addr.to_string())
        .body(Full::new(Bytes::new()))
        .unwrap();
    let r = Conn::new(b.addr).send(req, Duration::from_millis(30)).await;
    assert_eq!(r.unwrap_err(), SendError::Timeout);
    // The work goes on after the caller left, holding its slot, and is counted.
    let s = stats(&b).await;
    assert_eq!(s.in_service, 1, "{s:?}");
    let s = wait_for(&b, |s| s.abandoned == 1).await;
    assert_eq!((s.served, s.in_service), (1, 0));
    b.shutdown().await;
}
