//! Shadow candidates: a candidate that tightens the login rule counts exactly the users it
//! would refuse, answers stay byte-identical, promotion and discard behave.

use crate::support::*;
use gateway::clock::Clock as _;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Frequent-login users (120 logins in 30 days): the live rule lets them through, the
/// candidate's `reject_alone` refuses them.
const FREQUENT: [&str; 3] = ["u-sh-freq-1", "u-sh-freq-2", "u-sh-freq-3"];
/// Users the candidate decides as live does.
const QUIET: [&str; 4] = [
    "u-sh-quiet-1",
    "u-sh-quiet-2",
    "u-sh-quiet-3",
    "u-sh-quiet-4",
];

async fn seed(t: &TestGateway) {
    for (users, logins) in [(&FREQUENT[..], 120), (&QUIET[..], 5)] {
        for u in users {
            let r = t
                .put_user(
                    u,
                    json!({"limit_fen": 1_000_000, "used_fen": 0, "risk_grade": "B",
                           "account_age_days": 400, "logins_30d": logins}),
                )
                .await;
            assert_eq!(r.status(), StatusCode::OK);
        }
    }
}

/// The live document with the login rule tightened: frequent logins alone reject.
fn tightened(live: &Value) -> Value {
    let mut doc = live.clone();
    doc["profiles"]["normal"]["login_pattern"]["mode"] = json!("reject_alone");
    doc
}

/// Two drawdowns and a quote per user; answers every body, in order, with the decision ids
/// masked (a new ULID per decision: the only field that differs between two gateways).
async fn traffic(t: &TestGateway) -> Vec<String> {
    let mut bodies = Vec::new();
    for u in FREQUENT.iter().chain(&QUIET) {
        for n in 0..2 {
            let r = t.drawdown(&format!("{u}-{n}"), u, 10_000).await;
            assert_eq!(r.status(), StatusCode::OK);
            let text = r.text().await.unwrap();
            let body: Value = serde_json::from_str(&text).unwrap();
            let id = body["decision_id"].as_str().unwrap();
            bodies.push(text.replace(id, "dd_masked"));
        }
        let r = t.get(&format!("/v1/credit-lines/{u}"), KEY).await;
        assert_eq!(r.status(), StatusCode::OK);
        // Byte for byte: no id in a quote.
        bodies.push(r.text().await.unwrap());
    }
    bodies
}

async fn send(
    t: &TestGateway,
    method: reqwest::Method,
    path: &str,
    body: Option<&Value>,
) -> (StatusCode, Value) {
    let mut req = t.client.request(method, t.url(path)).bearer_auth(ADMIN);
    if let Some(b) = body {
        req = req.json(b);
    }
    let r = req.send().await.unwrap();
    (r.status(), r.json().await.unwrap())
}

fn count(list: &Value, transition: &str, key: &str) -> (u64, u64) {
    let e = list
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["transition"] == transition && e["key"] == key)
        .unwrap_or_else(|| panic!("no {transition}/{key} in {list}"));
    (
        e["requests"].as_u64().unwrap(),
        e["users"].as_u64().unwrap(),
    )
}

#[tokio::test]
async fn a_tightened_login_rule_counts_exactly_the_users_it_would_refuse() {
    use reqwest::Method;
    // Two gateways on the same clock: one without a candidate, one with.
    let plain = TestGateway::start(relaxed()).await;
    let shadowed = TestGateway::start(relaxed()).await;
    seed(&plain).await;
    seed(&shadowed).await;
    let live = shadowed.thresholds().await;

    let (s, b) = send(&shadowed, Method::GET, "/admin/shadow", None).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("NO_SHADOW_CANDIDATE"))
    );
    let (s, b) = send(
        &shadowed,
        Method::PUT,
        "/admin/shadow",
        Some(&json!({"version": 1})),
    )
    .await;
    assert_eq!(
        s,
        StatusCode::BAD_REQUEST,
        "an invalid document is refused: {b}"
    );
    let (s, report) = send(
        &shadowed,
        Method::PUT,
        "/admin/shadow",
        Some(&tightened(&live)),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{report}");
    assert_eq!(report["drawdowns_evaluated"], 0);

    // The clients' answers are the same with and without the candidate.
    let without = traffic(&plain).await;
    let with = traffic(&shadowed).await;
    assert_eq!(without, with);
    assert!(
        with.iter().all(|b| !b.contains("\"rejected\"")),
        "live approves everyone"
    );

    let (s, r) = send(&shadowed, Method::GET, "/admin/shadow", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(r["drawdowns_evaluated"], 14);
    assert_eq!(r["quotes_evaluated"], 7);
    // Exactly the frequent-login users, each twice.
    assert_eq!(r["changes"].as_array().unwrap().len(), 1, "{r}");
    assert_eq!(
        count(
            &r["changes"],
            "approved_to_rejected",
            "approved_to_rejected"
        ),
        (6, 3)
    );
    assert_eq!(
        count(
            &r["by_reason"],
            "approved_to_rejected",
            "LOGIN_PATTERN_ANOMALY"
        ),
        (6, 3)
    );
    assert_eq!(count(&r["by_grade"], "approved_to_rejected", "B"), (6, 3));
    assert_eq!(
        count(&r["by_channel"], "approved_to_rejected", "app"),
        (6, 3)
    );
    assert_eq!(r["quotes_lower"], json!({"requests": 3, "users": 3}));
    assert_eq!(r["quotes_higher"], json!({"requests": 0, "users": 0}));
    let samples = r["samples"].as_array().unwrap();
    assert_eq!(samples.len(), 6);
    for s in samples {
        assert!(FREQUENT.contains(&s["user_id"].as_str().unwrap()));
        assert_eq!(s["live"]["outcome"], "approved");
        assert_eq!(s["live"]["reasons"], json!([]));
        assert_eq!(s["candidate"]["outcome"], "rejected");
        assert_eq!(
            s["candidate"]["reasons"][0]["code"],
            "LOGIN_PATTERN_ANOMALY"
        );
        assert!(s["candidate"]["reasons"][0]["guidance"].is_string());
    }
    let metrics = shadowed.metrics().await;
    assert!(metrics.contains("gateway_shadow_staged 1"), "{metrics}");
    assert!(
        metrics.contains(r#"gateway_shadow_outcome_changes_total{transition="approved_to_rejected",reason="LOGIN_PATTERN_ANOMALY",grade="B",channel="app"} 6"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"gateway_shadow_affected_users{transition="approved_to_rejected"} 3"#)
    );
    assert!(metrics.contains(r#"gateway_shadow_evaluated_total{route="drawdown"} 14"#));
    // The plain gateway evaluated nothing.
    assert!(plain.metrics().await.contains("gateway_shadow_staged 0"));

    // Promotion: the candidate is the next live version, and no longer staged.
    let version = live["version"].as_u64().unwrap();
    let (s, p) = send(
        &shadowed,
        Method::POST,
        "/admin/shadow/promote",
        Some(&json!({})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!(p["thresholds"]["version"], version + 1);
    assert_eq!(p["report"]["drawdowns_evaluated"], 14);
    let now_live = shadowed.thresholds().await;
    assert_eq!(now_live["version"], version + 1);
    assert_eq!(
        now_live["profiles"]["normal"]["login_pattern"]["mode"],
        "reject_alone"
    );
    let (s, _) = send(&shadowed, Method::GET, "/admin/shadow", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let r = shadowed
        .drawdown("after-promotion", FREQUENT[0], 10_000)
        .await;
    let d: Value = r.json().await.unwrap();
    assert_eq!(d["outcome"], "rejected", "live now: {d}");
    assert_eq!(d["threshold_version"], version + 1);
    let (s, _) = send(
        &shadowed,
        Method::POST,
        "/admin/shadow/promote",
        Some(&json!({})),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "nothing left to promote");

    // Discard: a candidate that loosens the rule again is dropped; live is unchanged.
    let (s, _) = send(&shadowed, Method::PUT, "/admin/shadow", Some(&live)).await;
    assert_eq!(s, StatusCode::OK);
    let r = shadowed.drawdown("loosened", FREQUENT[1], 10_000).await;
    assert_eq!(r.status(), StatusCode::OK);
    let (_, r) = send(&shadowed, Method::GET, "/admin/shadow", None).await;
    assert_eq!(
        count(
            &r["changes"],
            "rejected_to_approved",
            "rejected_to_approved"
        ),
        (1, 1)
    );
    assert_eq!(
        count(
            &r["by_reason"],
            "rejected_to_approved",
            "LOGIN_PATTERN_ANOMALY"
        ),
        (1, 1)
    );
    let (s, d) = send(&shadowed, Method::DELETE, "/admin/shadow", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(d["drawdowns_evaluated"], 1);
    let (s, _) = send(&shadowed, Method::GET, "/admin/shadow", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = send(&shadowed, Method::DELETE, "/admin/shadow", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(shadowed.thresholds().await["version"], version + 1);
    assert!(shadowed.metrics().await.contains("gateway_shadow_staged 0"));

    // Each write is in the audit trail, by its operator.
    let (_, audit) = send(&shadowed, Method::GET, "/admin/audit?limit=1000", None).await;
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"].as_str().unwrap().starts_with("shadow."))
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "shadow.stage",
            "shadow.promote",
            "shadow.stage",
            "shadow.discard"
        ]
    );
    let stage = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "shadow.stage")
        .unwrap();
    assert_eq!(stage["operator"], "admin");
    assert_eq!(
        stage["changes"],
        json!([{"path": "/profiles/normal/login_pattern/mode",
                "before": "review_when_combined", "after": "reject_alone"}]),
        "the stage's difference is what the candidate changes"
    );
}

/// The candidate is the store's, not the process's: what `PUT /admin/shadow` stages is in the
/// store; one staged in the store by another instance of the fleet is the one this gateway
/// reports (and evaluates); a discard clears the store's.
#[tokio::test]
async fn the_candidate_lives_in_the_store() {
    use gateway::store::StagedCandidate;
    let t = TestGateway::start(relaxed()).await;
    seed(&t).await;
    let live = t.thresholds().await;
    let (s, r) = send(
        &t,
        reqwest::Method::PUT,
        "/admin/shadow",
        Some(&tightened(&live)),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let stored = t.gw.app.store.staged_candidate().await.unwrap().unwrap();
    assert_eq!(
        (stored.staged_by.as_str(), &json!(stored.staged_at)),
        ("admin", &r["staged_at"])
    );
    let doc: Value = serde_json::from_str(&stored.document).unwrap();
    assert_eq!(
        doc["profiles"]["normal"]["login_pattern"]["mode"],
        "reject_alone"
    );
    // Another instance stages the live document itself: this one follows.
    let other = StagedCandidate {
        id: StagedCandidate::mint_id(t.clock.now()),
        staged_by: "bob".into(),
        staged_at: "2026-06-01T12:00:00+08:00".into(),
        document: live.to_string(),
    };
    t.gw.app.store.stage_candidate(&other).await.unwrap();
    let (s, r) = send(&t, reqwest::Method::GET, "/admin/shadow", None).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["staged_by"], "bob");
    traffic(&t).await;
    let (_, r) = send(&t, reqwest::Method::GET, "/admin/shadow", None).await;
    assert_eq!(r["drawdowns_evaluated"], 14, "{r}");
    assert_eq!(
        r["changes"],
        json!([]),
        "the live document changes nothing: {r}"
    );
    let (s, r) = send(&t, reqwest::Method::DELETE, "/admin/shadow", None).await;
    assert_eq!((s, &r["staged_by"]), (StatusCode::OK, &json!("bob")));
    assert_eq!(t.gw.app.store.staged_candidate().await.unwrap(), None);
}
