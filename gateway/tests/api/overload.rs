//! Under overload: low priority is shed before drawdowns; slow clients are dropped; a shed
//! costs no body read; connection-level overload actions pause accepting and close keep-alive.

use crate::support::*;
use gateway::policy::LimitsPatch;
use gateway::request::Priority;
use reqwest::StatusCode;
use serde_json::json;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_queue_is_full_low_priority_is_shed_before_drawdowns() {
    let mut c = relaxed_fixed();
    c.policy.normal = LimitsPatch {
        concurrency: Some(1),
        queue: Some(2),
        ..c.policy.normal
    };
    // Three drawdowns in a row at 2 × 400 ms of store latency each: give them the time.
    c.server.default_deadline = std::time::Duration::from_millis(10_000);
    let t = TestGateway::start(c).await;
    for u in ["u-1", "u-2", "u-3"] {
        t.user(u, 10_000_000).await;
    }
    faults(&t).set_latency(Duration::from_millis(400));
    let send_drawdown = |key: &'static str, user: &'static str| {
        let (client, url) = (t.client.clone(), t.url("/v1/drawdowns"));
        tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(KEY)
                .header("Idempotency-Key", key)
                .json(&json!({"user_id": user, "amount_fen": 100, "channel": "app"}))
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    let send_low_query = || {
        let (client, url) = (t.client.clone(), t.url("/v1/credit-lines/u-demo-a"));
        tokio::spawn(async move {
            client
                .get(url)
                .bearer_auth(KEY)
                .header("X-Priority", "low")
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    let admission = &t.gw.app.admission;
    // One drawdown holds the only slot; two low-priority queries fill the queue.
    let first = send_drawdown("k-1", "u-1");
    eventually("the first drawdown in flight", || {
        admission.in_flight() == 1
    })
    .await;
    let lows = [send_low_query(), send_low_query()];
    eventually("two low-priority queries queued", || {
        admission.queued(Priority::Low) == 2
    })
    .await;
    // Two drawdowns arrive at a full queue: they take the low-priority places.
    let second = send_drawdown("k-2", "u-2");
    let third = send_drawdown("k-3", "u-3");
    for low in lows {
        assert_eq!(
            low.await.unwrap(),
            StatusCode::SERVICE_UNAVAILABLE,
            "low priority is shed"
        );
    }
    for d in [first, second, third] {
        assert_eq!(d.await.unwrap(), StatusCode::OK, "drawdowns are served");
    }
    let m = t.metrics().await;
    assert!(
        m.contains(r#"gateway_refusals_total{code="CAPACITY_SHED"} 2"#),
        "{m}"
    );
}

#[tokio::test]
async fn a_client_that_trickles_its_headers_is_dropped() {
    let mut c = relaxed();
    c.server.header_read_timeout = std::time::Duration::from_millis(200);
    let t = TestGateway::start(c).await;
    let mut s = tokio::net::TcpStream::connect(t.gw.addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // No blank line: the headers never end. The server must close within its timeout.
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the connection was not closed");
    // hyper may answer 408 before closing; it never serves the request.
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));
}

#[tokio::test]
async fn connections_beyond_the_limit_are_answered_at_once() {
    let mut c = relaxed();
    c.server.max_connections = 1;
    let t = TestGateway::start(c).await;
    // The first connection holds the only slot (idle, kept alive).
    let mut held = tokio::net::TcpStream::connect(t.gw.addr).await.unwrap();
    held.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    let n = held.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // A second connection is answered at once, 503 CAPACITY_SHED, not left waiting.
    let second = reqwest::Client::new()
        .get(t.url("/healthz"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .expect("answered, not left waiting");
    assert!(second.headers().contains_key("retry-after"));
    let (status, code, _) = error_code(second).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "CAPACITY_SHED")
    );
    drop(held);
    let third = reqwest::Client::new()
        .get(t.url("/healthz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap();
    assert_eq!(third.status(), StatusCode::OK);
}

/// Sends `GET /healthz` on `s` and reads one response head (small: fits one read).
async fn healthz_on(s: &mut tokio::net::TcpStream) -> String {
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("an answer")
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_pauses_accepting_and_closes_keep_alive_connections() {
    let mut c = relaxed();
    c.server.overload.enabled = true;
    // The real probe does not fire during the test: the test drives the signal.
    c.server.overload.probe_interval = std::time::Duration::from_millis(3_600_000);
    c.server.overload.lag_high = std::time::Duration::from_millis(60_000);
    c.server.overload.lag_low = std::time::Duration::from_millis(30_000);
    c.server.overload.close_keep_alive = true;
    let t = TestGateway::start(c).await;
    let overload = t.gw.overload.clone().expect("overload actions are enabled");
    let mut kept = tokio::net::TcpStream::connect(t.gw.addr).await.unwrap();
    let head = healthz_on(&mut kept).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(!head.contains("connection: close"), "{head}");

    assert!(overload.observe(Duration::from_secs(61)));
    // A keep-alive connection is answered once more, told to close, and closed.
    let head = healthz_on(&mut kept).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), kept.read_to_end(&mut rest))
        .await
        .expect("the server closes the connection")
        .unwrap();
    assert_eq!(n, 0);
    // A new connection is left in the kernel's backlog: connected, never answered...
    let mut waiting = tokio::net::TcpStream::connect(t.gw.addr).await.unwrap();
    waiting
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let early = tokio::time::timeout(Duration::from_millis(300), waiting.read(&mut buf)).await;
    assert!(
        early.is_err(),
        "served while overloaded: {early:?} {:?}",
        String::from_utf8_lossy(&buf)
    );
    // ...until the signal falls below the low mark: then it is accepted and served.
    assert!(overload.observe(Duration::from_secs(31)), "hysteresis");
    assert!(!overload.observe(Duration::ZERO));
    let n = tokio::time::timeout(Duration::from_secs(5), waiting.read(&mut buf))
        .await
        .expect("served after the overload")
        .unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(!head.contains("connection: close"), "{head}");
    // The transitions and closes are in the metrics.
    let metrics = t.metrics().await;
    assert!(
        metrics.contains("gateway_overload_transitions_total 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("gateway_overload_connection_closes_total 1"),
        "{metrics}"
    );
    assert!(metrics.contains("gateway_overload_active 0"), "{metrics}");
}

#[tokio::test]
async fn a_shed_drawdown_is_refused_before_its_body_is_read() {
    let mut c = relaxed_fixed();
    c.policy.normal = LimitsPatch {
        concurrency: Some(1),
        queue: Some(0),
        ..c.policy.normal
    };
    let t = TestGateway::start(c).await;
    t.user("u-1", 10_000_000).await;
    // Hold the only slot with a drawdown stuck in the store.
    faults(&t).set_latency(Duration::from_millis(800));
    let holder = {
        let (client, url) = (t.client.clone(), t.url("/v1/drawdowns"));
        tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(KEY)
                .header("Idempotency-Key", "k-hold")
                .json(&json!({"user_id": "u-1", "amount_fen": 100, "channel": "app"}))
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    eventually("the slot is held", || t.gw.app.admission.in_flight() == 1).await;
    // Headers announce a body that never comes: a shed answers anyway, at once.
    let mut s = tokio::net::TcpStream::connect(t.gw.addr).await.unwrap();
    s.write_all(
        format!(
            "POST /v1/drawdowns HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n\
             Content-Type: application/json\r\nIdempotency-Key: k-2\r\nContent-Length: 100\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = [0u8; 2048];
    let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf))
        .await
        .expect("answered without the body")
        .unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("CAPACITY_SHED"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after"),
        "{answer}"
    );
    assert_eq!(holder.await.unwrap(), StatusCode::OK);
}

#[tokio::test]
async fn retries_beyond_the_budget_run_only_in_a_free_slot_and_first_attempts_wait() {
    let mut c = relaxed_fixed();
    c.policy.normal = LimitsPatch {
        concurrency: Some(1),
        queue: Some(4),
        ..c.policy.normal
    };
    c.admission.retry_budget.enabled = true;
    c.admission.retry_budget.ratio = 0.0;
    c.admission.retry_budget.min_per_sec = 0;
    let t = TestGateway::start(c).await;
    t.user("u-1", 10_000_000).await;
    let send = |key: &'static str, attempt: &'static str| {
        let (client, url) = (t.client.clone(), t.url("/v1/drawdowns"));
        async move {
            client
                .post(url)
                .bearer_auth(KEY)
                .header("Idempotency-Key", key)
                .header("X-Retry-Attempt", attempt)
                .json(&json!({"user_id": "u-1", "amount_fen": 100, "channel": "app"}))
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(send("k-1", "0").await.status(), StatusCode::OK);
    // No budget at all, but the slot is free: the retry is served.
    assert_eq!(send("k-2", "1").await.status(), StatusCode::OK);
    // Hold the only slot with a drawdown stuck in the store.
    faults(&t).set_latency(Duration::from_millis(800));
    let holder = tokio::spawn(send("k-hold", "0"));
    eventually("the slot is held", || t.gw.app.admission.in_flight() == 1).await;
    // A retry would now wait for the slot: shed, with the cause and a Retry-After.
    let r = send("k-3", "1").await;
    assert!(r.headers().contains_key("retry-after"));
    let (status, code, _) = error_code(r).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "CAPACITY_SHED")
    );
    // Not a number: refused as bad input, never counted as an attempt of either kind.
    assert_eq!(send("k-4", "x").await.status(), StatusCode::BAD_REQUEST);
    // A first attempt waits for the slot like any other.
    let first = tokio::spawn(send("k-5", "0"));
    eventually("the first attempt queues", || {
        t.gw.app.admission.queued(Priority::Critical) == 1
    })
    .await;
    faults(&t).set_latency(Duration::ZERO);
    assert_eq!(holder.await.unwrap().status(), StatusCode::OK);
    assert_eq!(first.await.unwrap().status(), StatusCode::OK);
    let a = &t.gw.app.admission;
    assert_eq!(
        a.shed_count(
            Priority::Critical,
            gateway::admission::ShedCause::RetryBudget
        ),
        1
    );
    let metrics = t.metrics().await;
    assert!(
        metrics.contains(
            "gateway_admission_shed_total{priority=\"critical\",cause=\"retry_budget\"} 1"
        ) && metrics.contains("# TYPE gateway_admission_shed counter"),
        "{metrics}"
    );
}

/// A gateway whose accept gate is at 10 ms (the event-loop lag probe out of the way), as
/// `with` leaves its config, and its CPU-pressure signal, for a test to drive.
async fn gated(
    with: impl FnOnce(&mut gateway::config::Config),
) -> (TestGateway, gateway::pressure::Pressure) {
    let mut c = relaxed();
    c.server.overload.enabled = true;
    c.server.overload.probe_interval = Duration::from_secs(3_600);
    c.server.overload.accept_delay = Duration::from_millis(10);
    with(&mut c);
    let t = TestGateway::start(c).await;
    let pressure =
        t.gw.overload
            .clone()
            .expect("overload actions are enabled")
            .pressure()
            .clone();
    (t, pressure)
}

/// While connections wait too long for the CPU, a new connection is not served (it waits in the
/// kernel's backlog, or at the gate if an accept was already under way); once the wait falls
/// it is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_connection_waits_in_the_backlog_while_the_cpu_is_behind() {
    let (t, pressure) = gated(|_| {}).await;
    // Connections waited a second for their turn: the gate closes at the next accept.
    for _ in 0..64 {
        pressure.observe(Duration::from_secs(1));
    }
    assert!(!pressure.admits_connection());
    let mut waiting = tokio::net::TcpStream::connect(t.gw.addr).await.unwrap();
    waiting
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // The gate looks again every millisecond, each look a sample of its own timer's
    // lateness: from a mean of a second, at least 35 looks (35 ms) bring it under 10 ms.
    let mut buf = [0u8; 1024];
    let early = tokio::time::timeout(Duration::from_millis(20), waiting.read(&mut buf)).await;
    assert!(early.is_err(), "accepted while the CPU was behind");
    let n = tokio::time::timeout(Duration::from_secs(5), waiting.read(&mut buf))
        .await
        .expect("accepted once the wait fell")
        .unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(pressure.admits_connection());
    let metrics = t.metrics().await;
    assert!(
        metrics.contains("gateway_cpu_accept_gate_waits_total 1"),
        "{metrics}"
    );
}

/// `GET path` on a connection of its own (so the server accepts one), read to its close.
async fn get_on_a_new_connection(addr: std::net::SocketAddr, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out))
        .await
        .expect("answered")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// While the accept gate holds connections back and they queue, the listen backlog is set
/// to `backlog_wait_ms` of the accept rate (here under 17 a second: the least, 16),
/// and once the gate has stayed open for a second it is `server.listen_backlog` again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_gate_holds_connections_back_the_backlog_follows_the_accept_rate() {
    // The gate at 1 s, so that nothing but this test closes it: the waits of a busy test
    // machine's CPU stay far under it.
    let (t, pressure) = gated(|c| {
        c.server.overload.accept_delay = Duration::from_secs(1);
        c.server.overload.backlog_wait = Duration::from_millis(50);
        c.server.listen_backlog = 64;
    })
    .await;
    // This accept ends the first window (100 ms), the gate open all through it.
    tokio::time::sleep(Duration::from_millis(120)).await;
    let metrics = get_on_a_new_connection(t.gw.addr, "/metrics").await;
    assert!(metrics.contains("gateway_listen_backlog 64"), "{metrics}");
    // Connections waited 10^8 s for their turn: the gate looks again every millisecond,
    // each look a sample of its own timer's lateness, and from that mean it takes over 130
    // looks (130 ms) to fall under 1 s.
    let close_the_gate = || {
        for _ in 0..64 {
            pressure.observe(Duration::from_secs(100_000_000));
        }
    };
    // The server is back waiting for a connection, none queued.
    tokio::time::sleep(Duration::from_millis(50)).await;
    close_the_gate();
    // Five connect at once: the server, already waiting for a connection, takes the first
    // and holds it at the gate (that accept ends a window in which none was queued: no
    // sample); the other four queue in the kernel and are taken in once the gate opens.
    let five: Vec<_> = (0..5)
        .map(|_| tokio::spawn(get_on_a_new_connection(t.gw.addr, "/healthz")))
        .collect();
    for answer in five {
        let head = answer.await.unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    }
    // 300 ms later the gate closes again, and the next connection taken in ends a window of
    // five accepts, four of them queued, over 300 ms or more with the gate open (the rate
    // is over the time open): under 17 a second, 1 in 50 ms, so 16.
    tokio::time::sleep(Duration::from_millis(300)).await;
    close_the_gate();
    let metrics = get_on_a_new_connection(t.gw.addr, "/metrics").await;
    assert!(metrics.contains("gateway_listen_backlog 16"), "{metrics}");
    // A second with the gate open: the backlog is the configured one again.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let metrics = get_on_a_new_connection(t.gw.addr, "/metrics").await;
    assert!(metrics.contains("gateway_listen_backlog 64"), "{metrics}");
}
