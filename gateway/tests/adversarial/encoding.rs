//! The same request spelt another way must be treated the same; a request that is
//! ambiguous or incomplete is refused with its cause, and changes nothing.

use crate::support::*;
use gateway::policy::UserPatch;
use reqwest::StatusCode;
use serde_json::json;

/// `u%2Dalice` is `u-alice`: to the handler, and to the per-user rate limit.
#[tokio::test]
async fn a_percent_encoded_user_id_is_limited_like_the_plain_one() {
    let mut c = relaxed();
    c.policy.normal.user = UserPatch {
        per_minute: Some(3),
        burst: Some(3),
        ..UserPatch::default()
    };
    let t = TestGateway::start(c).await;
    t.user("u-alice", 1_000_000).await;
    let mut statuses = Vec::new();
    for path in ["u-alice", "u%2Dalice", "u%2dalice", "u-alice", "u%2Dalice"] {
        let r = t.get(&format!("/v1/credit-lines/{path}"), KEY).await;
        let status = r.status();
        if status == StatusCode::OK {
            let body: serde_json::Value = r.json().await.unwrap();
            assert_eq!(body["user_id"], "u-alice");
        }
        statuses.push(status);
    }
    assert_eq!(
        statuses,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::TOO_MANY_REQUESTS,
        ]
    );
    // A path that does not decode to a valid id is refused, not looked up.
    let r = t.get("/v1/credit-lines/u%FFx", KEY).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

/// Two `Idempotency-Key` headers name two requests: refused, nothing decided.
#[tokio::test]
async fn two_idempotency_keys_are_refused() {
    let t = TestGateway::start(relaxed()).await;
    t.user("u-dup", 1_000_000).await;
    let r = t
        .client
        .post(t.url("/v1/drawdowns"))
        .bearer_auth(KEY)
        .header("Idempotency-Key", "k-one")
        .header("Idempotency-Key", "k-two")
        .json(&json!({"user_id": "u-dup", "amount_fen": 1000, "channel": "app"}))
        .send()
        .await
        .unwrap();
    let (status, code, body) = error_code(r).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "INVALID_REQUEST")
    );
    assert_eq!(
        body["error"]["details"][0]["field"], "Idempotency-Key",
        "{body}"
    );
    let line: serde_json::Value = t
        .get("/v1/credit-lines/u-dup", KEY)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(line["used_fen"], 0);
}

/// `PUT /admin/policy/force` needs its `window` field: `{}` is refused (and changes
/// nothing); `{"window": null}` returns to the calendar.
#[tokio::test]
async fn forcing_the_policy_needs_the_window_field() {
    let t = TestGateway::start(relaxed()).await;
    let force = |body: serde_json::Value| {
        t.client
            .put(t.url("/admin/policy/force"))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
    };
    let r = force(json!({"window": "double11"})).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = force(json!({})).await.unwrap();
    let (status, code, body) = error_code(r).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "INVALID_REQUEST")
    );
    assert_eq!(body["error"]["details"][0]["field"], "window", "{body}");
    let p: serde_json::Value = t.get("/admin/policy", ADMIN).await.json().await.unwrap();
    assert_eq!(
        (p["window"].as_str(), p["forced"].as_bool()),
        (Some("double11"), Some(true))
    );
    let r = force(json!({"window": null})).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let p: serde_json::Value = t.get("/admin/policy", ADMIN).await.json().await.unwrap();
    assert_eq!(p["forced"], false);
}

/// A thresholds version past 2^53 - 1 is refused at the edge with its field; later
/// versions still publish (it locked every later update out before).
#[tokio::test]
async fn a_thresholds_version_past_2_pow_53_is_refused() {
    let t = TestGateway::start(relaxed()).await;
    let th = t.thresholds().await;
    for version in [u64::MAX, 1 << 53] {
        let mut bad = th.clone();
        bad["version"] = json!(version);
        let (status, code, body) = error_code(t.put_thresholds(&bad).await).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::BAD_REQUEST, "INVALID_REQUEST")
        );
        assert_eq!(body["error"]["details"][0]["field"], "version", "{body}");
    }
    assert_eq!(t.thresholds().await["version"], th["version"]);
    let mut top = th.clone();
    top["version"] = json!((1u64 << 53) - 1);
    assert_eq!(t.put_thresholds(&top).await.status(), StatusCode::OK);
    assert_eq!(t.thresholds().await["version"], json!((1u64 << 53) - 1));
    let m = t.metrics().await;
    assert!(
        m.contains("gateway_threshold_version 9007199254740991"),
        "{m}"
    );
}
