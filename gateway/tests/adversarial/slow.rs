//! Bodies sent too slowly: refused as the client's own timeout, never as the service's
//! capacity.

use crate::closed_within;
use crate::support::*;
use gateway::admission::ShedCause;
use gateway::request::Priority;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

const BODY: &str = r#"{"user_id":"u-slow","amount_fen":1000,"channel":"app"}"#;

/// Sends a drawdown head, then its body a byte every `gap`; answers the response.
async fn trickle(addr: std::net::SocketAddr, extra: &str, gap: Duration) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /v1/drawdowns HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n\
         Idempotency-Key: k-slow\r\nContent-Type: application/json\r\n{extra}\
         Content-Length: {}\r\n\r\n",
        BODY.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let (mut r, mut w) = s.into_split();
    let writer = tokio::spawn(async move {
        for b in BODY.as_bytes() {
            if w.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(gap).await;
        }
    });
    let mut out = Vec::new();
    let _ = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::io::AsyncReadExt::read_to_end(&mut r, &mut out),
    )
    .await;
    writer.abort();
    String::from_utf8_lossy(&out).into_owned()
}

fn sheds(t: &TestGateway) -> u64 {
    Priority::ALL
        .iter()
        .map(|p| {
            t.gw.app
                .admission
                .shed_count(*p, ShedCause::DeadlineUnmeetable)
        })
        .sum()
}

/// A body slower than `body_read_timeout_ms` (well within the deadline) is answered 408
/// `REQUEST_TIMEOUT`; many at once are each cut off at the timeout, not held.
#[tokio::test]
async fn a_body_slower_than_the_body_timeout_is_a_408() {
    let mut c = relaxed();
    c.server.body_read_timeout = std::time::Duration::from_millis(300);
    c.server.default_deadline = std::time::Duration::from_millis(10_000);
    let t = TestGateway::start(c).await;
    t.user("u-slow", 1_000_000).await;
    let all: Vec<_> = (0..20)
        .map(|_| tokio::spawn(trickle(t.gw.addr, "", Duration::from_millis(100))))
        .collect();
    for one in all {
        let answer = one.await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("REQUEST_TIMEOUT"), "{answer}");
    }
    // Each body would take over 5 s at 10 bytes a second, well within the 10 s deadline:
    // only the body timeout answers 408.
    assert_eq!(sheds(&t), 0, "counted as admission sheds");
    // Nothing was decided or reserved.
    let line: serde_json::Value = t
        .get("/v1/credit-lines/u-slow", KEY)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(line["used_fen"], 0);
}

/// A body that spends the request's own deadline is the client's timeout (408), never
/// `CAPACITY_SHED`, and not an admission shed.
#[tokio::test]
async fn an_upload_that_spends_the_deadline_is_not_blamed_on_capacity() {
    let mut c = relaxed();
    c.server.body_read_timeout = std::time::Duration::from_millis(10_000);
    let t = TestGateway::start(c).await;
    t.user("u-slow", 1_000_000).await;
    let answer = trickle(
        t.gw.addr,
        "X-Request-Deadline-Ms: 300\r\n",
        Duration::from_millis(20),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("REQUEST_TIMEOUT"), "{answer}");
    assert!(!answer.contains("CAPACITY_SHED"), "{answer}");
    assert_eq!(sheds(&t), 0, "counted as admission sheds");
    let m = t.metrics().await;
    assert!(
        m.contains(r#"gateway_refusals_total{code="REQUEST_TIMEOUT"} 1"#),
        "{m}"
    );
}

/// A connection that sends a head and then nothing of its body is not held past the
/// body timeout.
#[tokio::test]
async fn a_body_that_never_comes_is_cut_off() {
    let mut c = relaxed();
    c.server.body_read_timeout = std::time::Duration::from_millis(300);
    let t = TestGateway::start(c).await;
    let mut s = tokio::net::TcpStream::connect(t.gw.addr).await.unwrap();
    s.write_all(
        format!(
            "PUT /admin/policy/force HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\n\
             Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let got = closed_within(&mut s, Duration::from_secs(3))
        .await
        .expect("held past the body timeout");
    let got = String::from_utf8_lossy(&got);
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
}
