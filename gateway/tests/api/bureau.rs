//! The credit bureau under a budget: a tiny fake bureau on port 0 whose latency, errors and
//! answers each test controls, and the drawdowns it leads to.

use crate::support::*;
use axum::extract::{Path, State};
use axum::http::StatusCode as AxumStatus;
use axum::response::{IntoResponse, Response as AxumResponse};
use gateway::config::Config;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant};

/// The fake bureau's switches and call counter.
#[derive(Default)]
struct Fake {
    calls: AtomicU32,
    delay_ms: AtomicU64,
    fail: AtomicBool,
    score: AtomicU16,
    overdue_accounts: AtomicU32,
    /// The client port of every call: one port for many calls means a reused connection.
    peers: std::sync::Mutex<Vec<u16>>,
}

async fn score(
    State(f): State<Arc<Fake>>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    Path(user): Path<String>,
) -> AxumResponse {
    f.calls.fetch_add(1, SeqCst);
    f.peers.lock().unwrap().push(peer.port());
    let delay = f.delay_ms.load(SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    if f.fail.load(SeqCst) {
        return (
            AxumStatus::SERVICE_UNAVAILABLE,
            axum::Json(json!({"error": "overloaded"})),
        )
            .into_response();
    }
    let overdue = f.overdue_accounts.load(SeqCst);
    axum::Json(json!({
        "user_id": user,
        "score": f.score.load(SeqCst),
        "overdue_accounts": overdue,
        "max_days_overdue": if overdue > 0 { 45 } else { 0 },
        "inquiries_90d": 1,
        "as_of": "2026-11-11T00:00:03+08:00",
    }))
    .into_response()
}

struct Bureau {
    fake: Arc<Fake>,
    url: String,
}

impl Bureau {
    async fn start() -> Bureau {
        let fake = Arc::new(Fake::default());
        fake.score.store(720, SeqCst);
        let app = axum::Router::new()
            .route("/v1/score/{user}", axum::routing::get(score))
            .with_state(Arc::clone(&fake));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .await
        });
        Bureau { fake, url }
    }

    fn calls(&self) -> u32 {
        self.fake.calls.load(SeqCst)
    }
}

/// The test configuration with the bureau at `url`; no cache unless a test turns it on.
fn config(url: &str) -> Config {
    let mut c = relaxed();
    c.bureau.url = Some(url.to_owned());
    c.bureau.cache_ttl = std::time::Duration::from_millis(0);
    c.bureau.stale_max_age = std::time::Duration::from_millis(0);
    c
}

async fn start(b: &Bureau, f: impl FnOnce(&mut Config)) -> TestGateway {
    let mut c = config(&b.url);
    f(&mut c);
    let t = TestGateway::start(c).await;
    t.user("u-b1", 1_000_000).await;
    t
}

async fn drawdown_within(t: &TestGateway, key: &str, user: &str, deadline_ms: u64) -> Value {
    let r = t
        .client
        .post(t.url("/v1/drawdowns"))
        .bearer_auth(KEY)
        .header("Idempotency-Key", key)
        .header("X-Request-Deadline-Ms", deadline_ms.to_string())
        .json(&json!({"user_id": user, "amount_fen": 10_000, "channel": "app"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

async fn draw(t: &TestGateway, key: &str) -> Value {
    drawdown_within(t, key, "u-b1", 2_000).await
}

fn outcome(d: &Value) -> (&str, Vec<&str>) {
    let codes = d["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["code"].as_str().unwrap())
        .collect();
    (d["outcome"].as_str().unwrap(), codes)
}

/// The value of one series of `/metrics` (0 when absent).
async fn metric(t: &TestGateway, series: &str) -> f64 {
    let text = t.get("/metrics", ADMIN).await.text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// The documented fallback: review with `BUREAU_UNAVAILABLE_REVIEW` alone.
fn is_review_unavailable(d: &Value) -> bool {
    outcome(d) == ("review", vec!["BUREAU_UNAVAILABLE_REVIEW"])
}

#[tokio::test]
async fn a_slow_bureau_never_makes_a_drawdown_miss_its_deadline() {
    let b = Bureau::start().await;
    b.fake.delay_ms.store(5_000, SeqCst);
    let t = start(&b, |_| {}).await;
    // Budget = min(cap 150 ms, deadline − reserve 50 ms).
    for (i, deadline_ms) in [400u64, 120].into_iter().enumerate() {
        let started = Instant::now();
        let d = drawdown_within(&t, &format!("k-slow-{i}"), "u-b1", deadline_ms).await;
        let took = started.elapsed();
        assert!(
            took < Duration::from_millis(deadline_ms + 100),
            "{took:?} for a {deadline_ms} ms deadline"
        );
        assert!(is_review_unavailable(&d), "{d}");
    }
    assert_eq!(b.calls(), 2);
    assert_eq!(metric(&t, "gateway_bureau_timeouts_total").await, 2.0);
    assert_eq!(
        metric(
            &t,
            "gateway_bureau_fallbacks_total{kind=\"unavailable\",cause=\"timeout\"}"
        )
        .await,
        2.0
    );
    // The guidance says nothing was refused, in both languages.
    let d = draw(&t, "k-slow-guidance").await;
    assert!(
        d["reasons"][0]["guidance"]
            .as_str()
            .unwrap()
            .starts_with("Nothing is refused")
    );
    assert!(!d["reasons"][0]["guidance_zh"].as_str().unwrap().is_empty());
}

#[tokio::test]
async fn no_budget_left_means_no_call() {
    let b = Bureau::start().await;
    let t = start(&b, |_| {}).await;
    // 40 ms deadline < the 50 ms reserve: the bureau is not asked.
    let d = drawdown_within(&t, "k-nobudget", "u-b1", 40).await;
    assert!(is_review_unavailable(&d), "{d}");
    assert_eq!(b.calls(), 0);
    assert_eq!(
        metric(
            &t,
            "gateway_bureau_fallbacks_total{kind=\"unavailable\",cause=\"no_budget\"}"
        )
        .await,
        1.0
    );
}

#[tokio::test]
async fn the_breaker_opens_after_errors_and_closes_after_probes() {
    let b = Bureau::start().await;
    b.fake.fail.store(true, SeqCst);
    let t = start(&b, |c| {
        c.bureau.breaker.min_calls = 4;
        c.bureau.breaker.error_rate = 0.5;
        c.bureau.breaker.open_for = std::time::Duration::from_millis(5_000);
        c.bureau.breaker.probes = 2;
    })
    .await;
    let state = "gateway_bureau_breaker_state";
    for i in 0..4 {
        assert!(is_review_unavailable(
            &draw(&t, &format!("k-err-{i}")).await
        ));
    }
    assert_eq!(b.calls(), 4);
    assert_eq!(metric(&t, state).await, 1.0, "open");
    // Open: not asked, the drawdown goes to review at once.
    assert!(is_review_unavailable(&draw(&t, "k-open").await));
    assert_eq!(b.calls(), 4);
    assert_eq!(
        metric(
            &t,
            "gateway_bureau_fallbacks_total{kind=\"unavailable\",cause=\"breaker_open\"}"
        )
        .await,
        1.0
    );
    // The cool-down passes on the injected clock; the bureau has recovered.
    b.fake.fail.store(false, SeqCst);
    t.clock.advance(Duration::from_secs(5));
    assert_eq!(outcome(&draw(&t, "k-probe-1").await).0, "approved");
    assert_eq!(b.calls(), 5);
    assert_eq!(metric(&t, state).await, 2.0, "half-open after one probe");
    assert_eq!(outcome(&draw(&t, "k-probe-2").await).0, "approved");
    assert_eq!(metric(&t, state).await, 0.0, "closed after two probes");
    // Readiness never depended on the bureau.
    assert_eq!(t.get("/readyz", ADMIN).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_failed_probe_opens_it_again() {
    let b = Bureau::start().await;
    b.fake.fail.store(true, SeqCst);
    let t = start(&b, |c| {
        c.bureau.breaker.min_calls = 2;
        c.bureau.breaker.open_for = std::time::Duration::from_millis(1_000);
    })
    .await;
    draw(&t, "k-1").await;
    draw(&t, "k-2").await;
    t.clock.advance(Duration::from_secs(1));
    draw(&t, "k-probe").await;
    assert_eq!(b.calls(), 3, "one probe went through");
    assert!(is_review_unavailable(&draw(&t, "k-after").await));
    assert_eq!(b.calls(), 3, "open again");
}

#[tokio::test]
async fn the_cache_serves_within_its_ttl() {
    let b = Bureau::start().await;
    let t = start(&b, |c| {
        c.bureau.cache_ttl = std::time::Duration::from_millis(60_000);
        c.bureau.stale_max_age = std::time::Duration::from_millis(60_000);
    })
    .await;
    // The quote consults and caches; the drawdown that follows uses the answer.
    let q: Value = t
        .get("/v1/credit-lines/u-b1", KEY)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(q["drawable_now_fen"], 1_000_000, "{q}");
    assert_eq!(outcome(&draw(&t, "k-c1").await).0, "approved");
    assert_eq!(outcome(&draw(&t, "k-c2").await).0, "approved");
    assert_eq!(b.calls(), 1);
    assert_eq!(metric(&t, "gateway_bureau_cache_hits_total").await, 2.0);
    t.clock.advance(Duration::from_secs(60));
    draw(&t, "k-c3").await;
    assert_eq!(b.calls(), 2, "expired at the TTL");
    assert_eq!(metric(&t, "gateway_bureau_cache_misses_total").await, 2.0);
}

#[tokio::test]
async fn an_answer_younger_than_the_stale_age_stands_in() {
    let b = Bureau::start().await;
    b.fake.score.store(600, SeqCst);
    let t = start(&b, |c| {
        c.bureau.cache_ttl = std::time::Duration::from_millis(1_000);
        c.bureau.stale_max_age = std::time::Duration::from_millis(10_000);
    })
    .await;
    assert_eq!(
        outcome(&draw(&t, "k-s1").await),
        ("review", vec!["BUREAU_SCORE_REVIEW"])
    );
    b.fake.fail.store(true, SeqCst);
    t.clock.advance(Duration::from_secs(5));
    // The bureau fails; the 5 s old answer is judged as it was.
    assert_eq!(
        outcome(&draw(&t, "k-s2").await),
        ("review", vec!["BUREAU_SCORE_REVIEW"])
    );
    assert_eq!(b.calls(), 2);
    assert_eq!(
        metric(
            &t,
            "gateway_bureau_fallbacks_total{kind=\"cached\",cause=\"error\"}"
        )
        .await,
        1.0
    );
    // Past the stale age, it no longer stands in.
    t.clock.advance(Duration::from_secs(5));
    assert!(is_review_unavailable(&draw(&t, "k-s3").await));
}

#[tokio::test]
async fn the_bureau_rules_decide_on_its_answer() {
    let b = Bureau::start().await;
    let t = start(&b, |_| {}).await;
    b.fake.score.store(620, SeqCst);
    assert_eq!(outcome(&draw(&t, "k-r1").await).0, "approved");
    b.fake.score.store(549, SeqCst);
    let d = draw(&t, "k-r2").await;
    assert_eq!(outcome(&d), ("rejected", vec!["BUREAU_SCORE_LOW"]));
    assert_eq!(d["reasons"][0]["unit"], "score");
    assert_eq!(d["reasons"][0]["limit"], 550);
    assert_eq!(d["appealable"], true);
    b.fake.score.store(800, SeqCst);
    b.fake.overdue_accounts.store(1, SeqCst);
    let d = draw(&t, "k-r3").await;
    assert_eq!(
        outcome(&d),
        ("rejected", vec!["BUREAU_OVERDUE", "BUREAU_OVERDUE"])
    );
    // The catalogue serves the new codes.
    let cat: Value = t.get("/v1/reason-codes", KEY).await.json().await.unwrap();
    let text = cat.to_string();
    for code in [
        "BUREAU_OVERDUE",
        "BUREAU_SCORE_LOW",
        "BUREAU_SCORE_REVIEW",
        "BUREAU_UNAVAILABLE_REVIEW",
    ] {
        assert!(text.contains(code), "{code}");
    }
}

#[tokio::test]
async fn a_full_bulkhead_falls_back_without_waiting() {
    let b = Bureau::start().await;
    b.fake.delay_ms.store(1_500, SeqCst);
    let t = Arc::new(
        start(&b, |c| {
            c.bureau.max_concurrent = 1;
            c.bureau.timeout_cap = std::time::Duration::from_millis(3_000);
        })
        .await,
    );
    t.user("u-b2", 1_000_000).await;
    let slow = {
        let t = Arc::clone(&t);
        tokio::spawn(async move { drawdown_within(&t, "k-hold", "u-b1", 5_000).await })
    };
    eventually("the first call to hold the only slot", || b.calls() == 1).await;
    let started = Instant::now();
    let d = drawdown_within(&t, "k-full", "u-b2", 5_000).await;
    assert!(
        started.elapsed() < Duration::from_millis(1_000),
        "it waited"
    );
    assert!(is_review_unavailable(&d), "{d}");
    assert_eq!(b.calls(), 1);
    assert_eq!(
        metric(
            &t,
            "gateway_bureau_fallbacks_total{kind=\"unavailable\",cause=\"bulkhead_full\"}"
        )
        .await,
        1.0
    );
    assert_eq!(outcome(&slow.await.unwrap()).0, "approved");
}

#[tokio::test]
async fn a_review_decision_replays_without_asking_again() {
    let b = Bureau::start().await;
    b.fake.fail.store(true, SeqCst);
    let t = start(&b, |_| {}).await;
    let first = draw(&t, "k-replay").await;
    assert!(is_review_unavailable(&first));
    b.fake.fail.store(false, SeqCst);
    let r = t.drawdown("k-replay", "u-b1", 10_000).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["idempotent-replayed"], "true");
    let again: Value = r.json().await.unwrap();
    assert_eq!(again, first);
    assert_eq!(b.calls(), 1);
}

#[tokio::test]
async fn the_consult_rule_leaves_other_requests_alone() {
    let b = Bureau::start().await;
    b.fake.fail.store(true, SeqCst);
    let t = start(&b, |c| {
        c.bureau.consult = gateway::bureau::ConsultRule::AmountAbove;
        c.bureau.amount_above_fen = 50_000;
    })
    .await;
    // 10,000 fen: not consulted, approved although the bureau is failing.
    assert_eq!(outcome(&draw(&t, "k-small").await).0, "approved");
    assert_eq!(b.calls(), 0);
    let r = t.drawdown("k-big", "u-b1", 50_001).await;
    let d: Value = r.json().await.unwrap();
    assert!(is_review_unavailable(&d), "{d}");
    assert_eq!(b.calls(), 1);
}

#[tokio::test]
async fn unguarded_calls_wait_for_the_bureau() {
    let b = Bureau::start().await;
    b.fake.delay_ms.store(400, SeqCst);
    let t = start(&b, |c| c.bureau.guard = false).await;
    let started = Instant::now();
    // 400 ms is past the 150 ms cap, but without the guard there is no cap: the call waits.
    let r = t
        .client
        .post(t.url("/v1/drawdowns"))
        .bearer_auth(KEY)
        .header("Idempotency-Key", "k-naive")
        .header("X-Request-Deadline-Ms", "2000")
        .json(&json!({"user_id": "u-b1", "amount_fen": 10_000, "channel": "app"}))
        .send()
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(400));
    let d: Value = r.json().await.unwrap();
    assert_eq!(outcome(&d).0, "approved");
    assert_eq!(b.calls(), 1);
}

#[tokio::test]
async fn an_unreachable_bureau_is_a_review_and_readiness_holds() {
    // A port nobody listens on: bind, read the port, close.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let t = TestGateway::start(config(&format!("http://127.0.0.1:{port}"))).await;
    t.user("u-b1", 1_000_000).await;
    assert!(is_review_unavailable(&draw(&t, "k-down").await));
    assert_eq!(
        metric(&t, "gateway_bureau_calls_total{result=\"error\"}").await,
        1.0
    );
    assert_eq!(t.get("/readyz", ADMIN).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn bureau_rules_are_published_with_the_thresholds_and_checked() {
    let b = Bureau::start().await;
    b.fake.score.store(600, SeqCst);
    let t = start(&b, |_| {}).await;
    let th = t.thresholds().await;
    assert_eq!(
        th["profiles"]["normal"]["bureau"]["review_below_score"],
        620
    );
    // A bad value is refused with its field, and changes nothing.
    let mut bad = th.clone();
    bad["version"] = json!(2);
    bad["profiles"]["normal"]["bureau"]["review_below_score"] = json!(900);
    let (s, _, v) = error_code(t.put_thresholds(&bad).await).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        v["error"]["details"][0]["field"],
        "profiles.normal.bureau.review_below_score"
    );
    assert_eq!(outcome(&draw(&t, "k-p1").await).0, "review");
    // Without the rules, the bureau's answer is ignored (still asked: the config says so).
    t.publish_thresholds(|th| {
        th["profiles"]["normal"]
            .as_object_mut()
            .unwrap()
            .remove("bureau");
    })
    .await;
    assert_eq!(outcome(&draw(&t, "k-p2").await).0, "approved");
    assert_eq!(b.calls(), 2);
}

#[tokio::test]
async fn calls_reuse_a_pooled_connection() {
    let b = Bureau::start().await;
    let t = start(&b, |_| {}).await;
    for i in 0..5 {
        assert_eq!(
            outcome(&draw(&t, &format!("k-pool-{i}")).await).0,
            "approved"
        );
    }
    let mut peers = b.fake.peers.lock().unwrap().clone();
    assert_eq!(peers.len(), 5);
    peers.dedup();
    assert_eq!(peers.len(), 1, "one connection for five sequential calls");
}
