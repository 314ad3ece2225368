//! Graceful shutdown lets an in-flight request finish.

use crate::support::*;
use reqwest::StatusCode;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn an_in_flight_request_finishes_during_shutdown() {
    let t = TestGateway::start(relaxed()).await;
    t.user("u-1", 1_000_000).await;
    faults(&t).set_latency(Duration::from_millis(300));
    let client = t.client.clone();
    let url = t.url("/v1/drawdowns");
    let in_flight = tokio::spawn(async move {
        client
            .post(url)
            .bearer_auth(KEY)
            .header("Idempotency-Key", "k-1")
            .json(&json!({"user_id": "u-1", "amount_fen": 100, "channel": "app"}))
            .send()
            .await
    });
    eventually("the first request in flight", || {
        t.gw.app.admission.in_flight() == 1
    })
    .await;
    let base = t.gw.base_url();
    t.gw.shutdown().await;
    let r = in_flight
        .await
        .unwrap()
        .expect("the in-flight request got its answer");
    assert_eq!(r.status(), StatusCode::OK);
    // New connections are refused once the server has stopped.
    assert!(
        reqwest::Client::new()
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_err()
    );
}
