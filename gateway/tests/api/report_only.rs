//! Report-only rate limits: they refuse nothing and count what they would have refused, in
//! requests and distinct users; back to enforcing, they refuse again.

use crate::support::*;
use gateway::policy::{Rate, UserPatch};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn modes(t: &TestGateway, body: Value) -> (StatusCode, Value) {
    let r = t
        .client
        .put(t.url("/admin/limit-modes"))
        .bearer_auth(ADMIN)
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap())
}

#[tokio::test]
async fn a_report_only_user_limit_counts_what_it_would_refuse() {
    let mut c = relaxed();
    c.policy.normal.user = UserPatch {
        per_minute: Some(2),
        burst: Some(2),
        ..UserPatch::default()
    };
    let t = TestGateway::start(c).await;
    let users = ["u-ro-1", "u-ro-2", "u-ro-3"];
    for u in users {
        t.user(u, 10_000_000).await;
    }
    let got: Value = t
        .get("/admin/limit-modes", ADMIN)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(got["user"], "enforce");
    let (s, _) = modes(&t, json!({"user": "sometimes", "global": "enforce"})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, got) = modes(&t, json!({"user": "report_only", "global": "enforce"})).await;
    assert_eq!(s, StatusCode::OK, "{got}");
    assert_eq!(got["user"], "report_only");

    // Five drawdowns a user against a burst of two: every one served.
    for u in users {
        for i in 0..5 {
            let r = t.drawdown(&format!("{u}-{i}"), u, 100).await;
            assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
        }
    }
    let got: Value = t
        .get("/admin/limit-modes", ADMIN)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        got["would_refuse"]["user"],
        json!({"requests": 9, "users": 3})
    );
    assert_eq!(
        got["would_refuse"]["global"],
        json!({"requests": 0, "users": 0})
    );
    let m = t.metrics().await;
    assert!(
        m.contains(r#"gateway_report_only_would_refuse_total{scope="user"} 9"#),
        "{m}"
    );
    assert!(m.contains(r#"gateway_report_only_would_refuse_users{scope="user"} 3"#));

    // Enforced again: refused, as before, and counted no more.
    let (s, _) = modes(&t, json!({"user": "enforce", "global": "enforce"})).await;
    assert_eq!(s, StatusCode::OK);
    let (s, code, _) = error_code(t.drawdown("again", users[0], 100).await).await;
    assert_eq!(
        (s, code.as_str()),
        (StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED_USER")
    );
    let got: Value = t
        .get("/admin/limit-modes", ADMIN)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(got["would_refuse"]["user"]["requests"], 9);

    // Both changes are in the audit trail.
    let audit: Value = t.get("/admin/audit", ADMIN).await.json().await.unwrap();
    let changes: Vec<&Value> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "limit_modes.set")
        .collect();
    assert_eq!(changes.len(), 2);
    assert_eq!(
        changes[0]["changes"],
        json!([{"path": "/user", "before": "enforce", "after": "report_only"}])
    );
    assert_eq!(changes[1]["operator"], "admin");
}

#[tokio::test]
async fn a_report_only_global_limit_counts_what_it_would_refuse() {
    let mut c = relaxed();
    c.policy.normal.global.drawdown = Some(Rate {
        per_second: 1,
        burst: 1,
    });
    let t = TestGateway::start(c).await;
    let users = ["u-rg-1", "u-rg-2", "u-rg-3", "u-rg-4"];
    for u in users {
        t.user(u, 10_000_000).await;
    }
    let (s, _) = modes(&t, json!({"user": "enforce", "global": "report_only"})).await;
    assert_eq!(s, StatusCode::OK);
    for u in users {
        let r = t.drawdown(&format!("{u}-k"), u, 100).await;
        assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    }
    let got: Value = t
        .get("/admin/limit-modes", ADMIN)
        .await
        .json()
        .await
        .unwrap();
    let counted = &got["would_refuse"]["global"];
    // One a second with a burst of one: all but the first (and any a second later) would
    // have been refused, each another user's.
    let requests = counted["requests"].as_u64().unwrap();
    assert!((2..=3).contains(&requests), "{got}");
    assert_eq!(counted["users"], requests);
}

async fn rule_modes(t: &TestGateway, body: Value) -> (StatusCode, Value) {
    let r = t
        .client
        .put(t.url("/admin/rule-modes"))
        .bearer_auth(ADMIN)
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap())
}

/// Report-only anomaly rules: the login rule (tightened to refuse frequent logins alone) and
/// the 24-hour velocity refuse nothing and count, per rule, what they would have refused.
#[tokio::test]
async fn a_report_only_anomaly_rule_counts_what_it_would_refuse() {
    let t = TestGateway::start(relaxed()).await;
    t.publish_thresholds(|th| {
        th["profiles"]["normal"]["login_pattern"]["mode"] = json!("reject_alone");
    })
    .await;
    let frequent = ["u-ar-f1", "u-ar-f2", "u-ar-f3"];
    for u in frequent {
        let r = t
            .put_user(
                u,
                json!({"limit_fen": 1_000_000, "used_fen": 0, "risk_grade": "A",
                       "account_age_days": 400, "logins_30d": 120}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    // Far past any grade's 24-hour velocity limit.
    let r = t
        .put_user(
            "u-ar-fast",
            json!({"limit_fen": 1_000_000, "used_fen": 0, "risk_grade": "A",
                   "account_age_days": 400, "drawdowns_24h": 1000}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    t.user("u-ar-quiet", 1_000_000).await;
    let outcome = |key: String, user: &'static str| {
        let t = &t;
        async move {
            let v: Value = t.drawdown(&key, user, 1_000).await.json().await.unwrap();
            v["outcome"].as_str().unwrap().to_owned()
        }
    };
    assert_eq!(outcome("e-0".into(), "u-ar-f1").await, "rejected");
    assert_eq!(outcome("e-1".into(), "u-ar-fast").await, "rejected");

    let (s, b) = rule_modes(&t, json!({"login_pattern": "report_only"})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "every rule is named: {b}");
    let (s, b) = rule_modes(
        &t,
        json!({"login_pattern": "report_only", "drawdowns_24h": "report_only",
               "applications_1h": "enforce", "extra": 1}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    let (s, b) = rule_modes(
        &t,
        json!({"login_pattern": "report_only", "drawdowns_24h": "report_only",
               "applications_1h": "enforce"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["login_pattern"], "report_only");

    for n in 0..2 {
        for u in frequent.into_iter().chain(["u-ar-fast", "u-ar-quiet"]) {
            assert_eq!(outcome(format!("r-{u}-{n}"), u).await, "approved", "{u}");
        }
    }
    // The quote is not held by a report-only rule either.
    let q: Value = t
        .get("/v1/credit-lines/u-ar-f1", KEY)
        .await
        .json()
        .await
        .unwrap();
    assert!(q["drawable_now_fen"].as_u64().unwrap() > 0, "{q}");

    let got: Value = t
        .get("/admin/rule-modes", ADMIN)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        got["would_refuse"],
        json!({"login_pattern": {"requests": 6, "users": 3},
               "drawdowns_24h": {"requests": 2, "users": 1},
               "applications_1h": {"requests": 0, "users": 0}}),
        "{got}"
    );
    let m = t.metrics().await;
    assert!(
        m.contains(r#"gateway_report_only_rule_would_refuse_total{rule="login_pattern"} 6"#),
        "{m}"
    );
    assert!(m.contains(r#"gateway_report_only_rule_would_refuse_users{rule="drawdowns_24h"} 1"#));

    // Enforced again: refused, and counted no more.
    let (s, _) = rule_modes(
        &t,
        json!({"login_pattern": "enforce", "drawdowns_24h": "enforce",
               "applications_1h": "enforce"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(outcome("after".into(), "u-ar-f2").await, "rejected");
    let got: Value = t
        .get("/admin/rule-modes", ADMIN)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(got["would_refuse"]["login_pattern"]["requests"], 6);

    let audit: Value = t.get("/admin/audit", ADMIN).await.json().await.unwrap();
    let changes: Vec<&Value> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "rule_modes.set")
        .collect();
    assert_eq!(changes.len(), 2, "{audit}");
    assert_eq!(
        changes[0]["changes"],
        json!([{"path": "/drawdowns_24h", "before": "enforce", "after": "report_only"},
               {"path": "/login_pattern", "before": "enforce", "after": "report_only"}])
    );
}
