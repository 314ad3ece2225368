//! A peak window opening by the injected clock switches limits and profile.

use crate::support::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn the_double11_window_opens_by_the_clock_and_can_be_forced() {
    let t = TestGateway::start(relaxed()).await;
    t.user("u-1", 10_000_000).await;
    // Outside the window: 3,000,000 fen is within grade A's normal single cap.
    let d: Value = t
        .drawdown("k-1", "u-1", 3_000_000)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (d["outcome"].as_str(), d["policy"].as_str()),
        (Some("approved"), Some("normal"))
    );

    // 2026-11-11 00:00 Asia/Shanghai is inside double11 (23:30 → 02:00).
    let midnight = jiff::civil::date(2026, 11, 11)
        .at(0, 0, 0, 0)
        .in_tz("Asia/Shanghai")
        .unwrap();
    t.clock.set(midnight.timestamp());
    t.gw.app.policy.evaluate();
    let p: Value = t.get("/admin/policy", ADMIN).await.json().await.unwrap();
    assert_eq!(p["window"], "double11");
    assert_eq!(p["profile"], "peak");

    let d: Value = t
        .drawdown("k-2", "u-1", 3_000_000)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(d["policy"], "double11");
    assert_eq!(d["outcome"], "rejected");
    assert_eq!(d["reasons"][0]["code"], "PEAK_WINDOW_TIGHTENED");
    assert!(
        d["reasons"][0]["retry_at"]
            .as_str()
            .unwrap()
            .starts_with("2026-11-11T02:00:00+08:00"),
        "{d}"
    );

    let q: Value = t
        .get("/v1/credit-lines/u-1", KEY)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(q["policy"], "double11");
    assert_eq!(q["drawable_now_fen"], 2_000_000);

    // An operator returns to normal limits by force, then back to the calendar.
    let r = t
        .client
        .put(t.url("/admin/policy/force"))
        .bearer_auth(ADMIN)
        .json(&json!({"window": "normal"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    let p: Value = t.get("/admin/policy", ADMIN).await.json().await.unwrap();
    assert_eq!(
        (p["window"].as_str(), p["forced"].as_bool()),
        (Some("normal"), Some(true))
    );
    let r = t
        .client
        .put(t.url("/admin/policy/force"))
        .bearer_auth(ADMIN)
        .json(&json!({"window": null}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let p: Value = t.get("/admin/policy", ADMIN).await.json().await.unwrap();
    assert_eq!(
        (p["window"].as_str(), p["forced"].as_bool()),
        (Some("double11"), Some(false))
    );

    let r = t
        .client
        .put(t.url("/admin/policy/force"))
        .bearer_auth(ADMIN)
        .json(&json!({"window": "nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_window_tightens_the_per_user_limit_without_a_restart() {
    let mut c = relaxed();
    // Normal: generous; the double11 window: 1 request per minute per user.
    c.policy.windows[0].limits.user = gateway::policy::UserPatch {
        per_minute: Some(1),
        burst: Some(1),
        ..Default::default()
    };
    let t = TestGateway::start(c).await;
    t.user("u-1", 10_000_000).await;
    for i in 0..3 {
        assert_eq!(
            t.drawdown(&format!("n-{i}"), "u-1", 100).await.status(),
            StatusCode::OK
        );
    }
    let midnight = jiff::civil::date(2026, 11, 11)
        .at(0, 0, 0, 0)
        .in_tz("Asia/Shanghai")
        .unwrap();
    t.clock.set(midnight.timestamp());
    t.gw.app.policy.evaluate();
    assert_eq!(t.drawdown("p-1", "u-1", 100).await.status(), StatusCode::OK);
    let (s, c, _) = error_code(t.drawdown("p-2", "u-1", 100).await).await;
    assert_eq!(
        (s, c.as_str()),
        (StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED_USER")
    );
}
