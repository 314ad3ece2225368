//! One caller reaching for another caller's decisions and appeals: answered as if they did
//! not exist.

use crate::support::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn appeals_belong_to_the_caller_that_made_the_decision() {
    let t = TestGateway::start(relaxed()).await;
    let r = t
        .put_user(
            "u-late",
            json!({"limit_fen": 1_000_000, "used_fen": 0, "risk_grade": "B", "days_overdue": 3}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    // Caller A (KEY) is refused with an appealable reason.
    let d: Value = t
        .drawdown("k-1", "u-late", 1_000)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(d["appealable"], true, "{d}");
    let decision_id = d["decision_id"].as_str().unwrap();
    let appeal = |token: &'static str, message: &str| {
        t.client
            .post(t.url("/v1/appeals"))
            .bearer_auth(token)
            .json(&json!({"decision_id": decision_id, "user_id": "u-late", "message": message}))
            .send()
    };
    // Caller B may not appeal A's decision...
    let (status, code, _) = error_code(appeal(KEY2, "B first").await.unwrap()).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::NOT_FOUND, "DECISION_NOT_FOUND")
    );
    // ...A may.
    let r = appeal(KEY, "my private words").await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let a: Value = r.json().await.unwrap();
    let appeal_id = a["appeal_id"].as_str().unwrap();
    // B neither reads A's appeal nor is answered it by posting again.
    let (status, code, body) =
        error_code(t.get(&format!("/v1/appeals/{appeal_id}"), KEY2).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::NOT_FOUND, "APPEAL_NOT_FOUND")
    );
    assert!(!body.to_string().contains("private"), "{body}");
    let r = appeal(KEY2, "again").await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(!r.text().await.unwrap().contains("private"));
    // A still reads it.
    let got: Value = t
        .get(&format!("/v1/appeals/{appeal_id}"), KEY)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(got["message"], "my private words");
}
