//! No over-reservation under concurrency; idempotent replays; conflicting reuse.

use crate::support::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_concurrent_drawdowns_approve_exactly_one_hundred() {
    let t = TestGateway::start(relaxed()).await;
    t.user("u-race", 100_000).await;
    // Velocity limits would stop this user after a few drawdowns; lift them so that only
    // the line binds.
    t.publish_thresholds(|th| {
        th["profiles"]["normal"]["grades"]["A"]["max_drawdowns_24h"] = json!(1_000_000);
    })
    .await;
    let tasks: Vec<_> = (0..500)
        .map(|i| {
            let client = t.client.clone();
            let url = t.url("/v1/drawdowns");
            tokio::spawn(async move {
                let r = client
                    .post(url)
                    .bearer_auth(KEY)
                    .header("Idempotency-Key", format!("race-{i}"))
                    .json(&json!({"user_id": "u-race", "amount_fen": 1_000, "channel": "app"}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), StatusCode::OK);
                let d: Value = r.json().await.unwrap();
                d["outcome"].as_str().unwrap().to_owned()
            })
        })
        .collect();
    let mut approved = 0;
    for task in tasks {
        let outcome = task.await.unwrap();
        if outcome == "approved" {
            approved += 1;
        } else {
            assert_eq!(outcome, "rejected");
        }
    }
    assert_eq!(approved, 100);
    let q: Value = t
        .get("/v1/credit-lines/u-race", KEY)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(q["used_fen"], 100_000);
    assert_eq!(q["available_fen"], 0);
}

#[tokio::test]
async fn a_replay_returns_the_stored_decision_and_reserves_nothing_even_after_a_threshold_change() {
    let t = TestGateway::start(relaxed()).await;
    t.user("u-1", 10_000_000).await;
    let r1 = t.drawdown("same-key", "u-1", 4_000_000).await;
    assert!(r1.headers().get("idempotent-replayed").is_none());
    let d1: Value = r1.json().await.unwrap();
    assert_eq!(d1["outcome"], "approved");

    // Tighten thresholds: the same amount would now be refused.
    t.publish_thresholds(|th| {
        th["profiles"]["normal"]["grades"]["A"]["max_single_fen"] = json!(1_000_000);
    })
    .await;

    let r2 = t.drawdown("same-key", "u-1", 4_000_000).await;
    assert_eq!(r2.status(), StatusCode::OK);
    assert_eq!(r2.headers()["idempotent-replayed"], "true");
    let d2: Value = r2.json().await.unwrap();
    assert_eq!(d1, d2, "the stored decision, unchanged");
    let q: Value = t
        .get("/v1/credit-lines/u-1", KEY)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(q["used_fen"], 4_000_000, "reserved once");

    let (s, c, _) = error_code(t.drawdown("same-key", "u-1", 5).await).await;
    assert_eq!(
        (s, c.as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "IDEMPOTENCY_KEY_REUSED")
    );

    // Keys are scoped to the caller: the other caller's same key is a new request.
    let r = t
        .client
        .post(t.url("/v1/drawdowns"))
        .bearer_auth(KEY2)
        .header("Idempotency-Key", "same-key")
        .json(&json!({"user_id": "u-1", "amount_fen": 5, "channel": "app"}))
        .send()
        .await
        .unwrap();
    let d3: Value = r.json().await.unwrap();
    assert_ne!(d3["decision_id"], d1["decision_id"]);
    assert_eq!(d3["threshold_version"], 2);
}
