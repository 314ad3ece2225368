//! The success path of every route.

use crate::support::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn drawdown_approved_then_credit_line_reflects_it() {
    let t = TestGateway::start(relaxed()).await;
    t.user("u-ok", 1_000_000).await;
    let r = t.drawdown("k-1", "u-ok", 300_000).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers().get("x-request-id").is_some());
    let d: Value = r.json().await.unwrap();
    assert_eq!(d["outcome"], "approved");
    assert!(d["decision_id"].as_str().unwrap().starts_with("dd_"));
    assert_eq!(d["reasons"], json!([]));
    assert_eq!(d["available_fen"], 700_000);
    assert_eq!(d["threshold_version"], 1);
    assert_eq!(d["policy"], "normal");
    assert!(
        d["evaluated_at"].as_str().unwrap().ends_with("+08:00"),
        "{d}"
    );

    let q: Value = t
        .get("/v1/credit-lines/u-ok", KEY)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(q["used_fen"], 300_000);
    assert_eq!(q["available_fen"], 700_000);
    assert_eq!(q["drawable_now_fen"], 700_000);
}

#[tokio::test]
async fn a_risk_rejection_is_a_200_with_reasons_and_guidance() {
    let t = TestGateway::start(relaxed()).await;
    t.user("u-big", 100_000_000).await;
    let r = t.drawdown("k-1", "u-big", 6_000_000).await;
    assert_eq!(r.status(), StatusCode::OK);
    let d: Value = r.json().await.unwrap();
    assert_eq!(d["outcome"], "rejected");
    let reason = &d["reasons"][0];
    assert_eq!(reason["code"], "SINGLE_DRAWDOWN_LIMIT");
    assert_eq!(reason["category"], "risk");
    assert_eq!(reason["limit"], 5_000_000);
    assert_eq!(reason["suggested_amount_fen"], 5_000_000);
    assert!(reason["guidance"].as_str().unwrap().contains("50000.00"));
    assert!(!reason["message_zh"].as_str().unwrap().is_empty());
}

#[tokio::test]
async fn appeal_lifecycle() {
    let t = TestGateway::start(relaxed()).await;
    // Demo user with 120 logins is fine; an overdue user is refused with an appealable reason.
    let r = t
        .put_user(
            "u-late",
            json!({"limit_fen": 1_000_000, "used_fen": 0, "risk_grade": "B", "days_overdue": 3}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let d: Value = t
        .drawdown("k-1", "u-late", 1_000)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(d["outcome"], "rejected");
    assert_eq!(d["appealable"], true);
    let id = d["decision_id"].as_str().unwrap();

    let r = t
        .client
        .post(t.url("/v1/appeals"))
        .bearer_auth(KEY)
        .json(&json!({"decision_id": id, "user_id": "u-late", "message": "I repaid yesterday."}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let a: Value = r.json().await.unwrap();
    assert_eq!(a["status"], "open");
    let appeal_id = a["appeal_id"].as_str().unwrap().to_owned();
    assert!(a["due_at"].as_str().unwrap() > a["created_at"].as_str().unwrap());

    let got: Value = t
        .get(&format!("/v1/appeals/{appeal_id}"), KEY)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(got["appeal_id"], appeal_id.as_str());

    let list: Value = t
        .get("/admin/appeals?status=open", ADMIN)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["appeals"][0]["appeal_id"], appeal_id.as_str());

    let r = t
        .client
        .post(t.url(&format!("/admin/appeals/{appeal_id}/resolve")))
        .bearer_auth(ADMIN)
        .json(&json!({"resolution": "overturned", "note": "repayment confirmed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let resolved: Value = r.json().await.unwrap();
    assert_eq!(resolved["status"], "overturned");
    assert_eq!(resolved["resolution_note"], "repayment confirmed");
    let list: Value = t
        .get("/admin/appeals?status=open", ADMIN)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["appeals"], json!([]));
}

#[tokio::test]
async fn catalogue_policy_thresholds_and_ops_routes() {
    let t = TestGateway::start(relaxed()).await;
    let c: Value = t.get("/v1/reason-codes", KEY).await.json().await.unwrap();
    let codes: Vec<&str> = c["reason_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["code"].as_str().unwrap())
        .collect();
    assert!(codes.contains(&"PEAK_WINDOW_TIGHTENED") && codes.contains(&"CAPACITY_SHED"));

    let p: Value = t.get("/admin/policy", ADMIN).await.json().await.unwrap();
    assert_eq!(p["window"], "normal");
    let th: Value = t.thresholds().await;
    assert_eq!(th["version"], 1);

    let mut next = th.clone();
    next["version"] = json!(2);
    let r = t.put_thresholds(&next).await;
    assert_eq!(r.status(), StatusCode::OK);
    let th: Value = t.thresholds().await;
    assert_eq!(th["version"], 2);

    assert_eq!(
        t.client
            .get(t.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        t.client
            .get(t.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let m = t.metrics().await;
    assert!(m.contains("gateway_http_requests_total"), "{m}");
    assert!(m.contains("gateway_threshold_version 2"), "{m}");
    let o: Value = t
        .client
        .get(t.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(o["openapi"], "3.1.0");
}

#[tokio::test]
async fn request_ids_are_echoed() {
    let t = TestGateway::start(relaxed()).await;
    let r = t
        .client
        .get(t.url("/healthz"))
        .header("X-Request-Id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "abc-123");
    let r = t
        .client
        .get(t.url("/v1/credit-lines/nobody"))
        .bearer_auth(KEY)
        .header("X-Request-Id", "req-9")
        .send()
        .await
        .unwrap();
    let (status, code, body) = error_code(r).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::NOT_FOUND, "USER_NOT_FOUND")
    );
    assert_eq!(body["error"]["request_id"], "req-9");
}

#[tokio::test]
async fn without_credentials_the_gateway_uses_demo_ones_and_seeds_demo_users() {
    let g = gateway::Gateway::build(
        gateway::config::Config::default(),
        gateway::clock::SystemClock::shared(),
    )
    .unwrap();
    assert!(g.uses_demo_credentials());
    let ids: Vec<&str> = g.demo_users().iter().map(|u| u.id.as_str()).collect();
    assert!(
        ids.contains(&"u-demo-a") && ids.contains(&"u-demo-frequent-login"),
        "{ids:?}"
    );
    // With keys configured, no demo users unless asked for.
    let c = gateway::config::Config {
        api_keys: vec![KEY.into()],
        admin_token: ADMIN.into(),
        ..Default::default()
    };
    let g = gateway::Gateway::build(c, gateway::clock::SystemClock::shared()).unwrap();
    assert!(!g.uses_demo_credentials());
    assert!(g.demo_users().is_empty());
}
