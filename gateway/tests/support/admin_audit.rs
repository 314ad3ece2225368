//! Every admin write appears in `GET /admin/audit` with its operator and its difference:
//! one check, run by the API tests (memory store) and the Redis tests (the gateway on Redis).
#![allow(clippy::unwrap_used, dead_code)]

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

/// Named admin tokens the check signs in with (configure them as `[[admin.tokens]]`).
pub(crate) const ALICE: (&str, &str) = ("alice", "alice-admin-token-0001");
/// The second operator.
pub(crate) const BOB: (&str, &str) = ("bob", "bob-admin-token-000001");

/// The named tokens, for a test's configuration.
pub(crate) fn named_tokens() -> Vec<gateway::config::AdminToken> {
    [ALICE, BOB]
        .into_iter()
        .map(|(operator, token)| gateway::config::AdminToken {
            operator: operator.into(),
            token: token.into(),
        })
        .collect()
}

struct Check<'a> {
    client: Client,
    base: &'a str,
}

impl Check<'_> {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("{status}: {text}")),
        )
    }

    /// Every entry of the log, read `page` at a time through the cursor.
    async fn all(&self, token: &str, page: usize) -> Vec<Value> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let path = match &after {
                Some(a) => format!("/admin/audit?limit={page}&after={a}"),
                None => format!("/admin/audit?limit={page}"),
            };
            let (status, body) = self.send(reqwest::Method::GET, &path, token, None).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            let entries = body["entries"].as_array().unwrap();
            assert!(entries.len() <= page);
            out.extend(entries.iter().cloned());
            match body["next"].as_str() {
                Some(next) => {
                    assert_eq!(entries.len(), page, "a page with a next is full");
                    after = Some(next.to_owned());
                }
                None => break,
            }
        }
        out
    }
}

/// The change of `path` in an entry, as (before, after).
fn field(entry: &Value, path: &str) -> Option<(Value, Value)> {
    entry["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["path"] == path)
        .map(|c| (c["before"].clone(), c["after"].clone()))
}

/// Runs every admin write (as `alice`, `bob` and the legacy token's `admin`) against the
/// gateway at `base`, then reads the log: each write once, in order, with its operator, the
/// gateway clock's time `now` (RFC 3339), its route and target, and its difference. Refused
/// writes record nothing. `caller_key` makes the decision that is appealed.
pub(crate) async fn every_admin_write_is_audited(
    base: &str,
    legacy: &str,
    caller_key: &str,
    now: &str,
) {
    use reqwest::Method;
    let c = Check {
        client: Client::new(),
        base,
    };
    let (alice, bob) = (ALICE.1, BOB.1);
    let user = "u-audit-1";

    // 1. A new credit line (alice), then a change of its limit (bob).
    let line =
        json!({"limit_fen": 100_000, "used_fen": 0, "risk_grade": "B", "account_age_days": 400});
    let (s, b) = c
        .send(
            Method::PUT,
            &format!("/admin/credit-lines/{user}"),
            alice,
            Some(line.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let mut raised = line.clone();
    raised["limit_fen"] = json!(250_000);
    let (s, b) = c
        .send(
            Method::PUT,
            &format!("/admin/credit-lines/{user}"),
            bob,
            Some(raised),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");

    // 2. A thresholds version (the legacy token: operator "admin"), and a stale one, refused.
    let (_, mut th) = c.send(Method::GET, "/admin/thresholds", legacy, None).await;
    let version = th["version"].as_u64().unwrap();
    th["version"] = json!(version + 1);
    let logins = th["profiles"]["normal"]["login_pattern"]["logins_30d"].clone();
    assert!(logins.is_u64(), "the document has the login rule: {th}");
    th["profiles"]["normal"]["login_pattern"]["logins_30d"] = json!(77);
    let (s, b) = c
        .send(Method::PUT, "/admin/thresholds", legacy, Some(th.clone()))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, _) = c
        .send(Method::PUT, "/admin/thresholds", legacy, Some(th))
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "the same version again is stale");

    // 3. A forced window (alice), then back to the calendar (bob); an unknown one, refused.
    for (token, window) in [(alice, json!("double11")), (bob, Value::Null)] {
        let (s, b) = c
            .send(
                Method::PUT,
                "/admin/policy/force",
                token,
                Some(json!({"window": window})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
    }
    let (s, _) = c
        .send(
            Method::PUT,
            "/admin/policy/force",
            alice,
            Some(json!({"window": "nope"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // 4. An appeal's resolution (bob), and a second one, refused.
    let blocked = "u-audit-blocked";
    let (s, _) = c
        .send(
            Method::PUT,
            &format!("/admin/credit-lines/{blocked}"),
            alice,
            Some(
                json!({"limit_fen": 100_000, "used_fen": 0, "risk_grade": "B",
                        "account_age_days": 400, "blocklisted": true}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let r = c
        .client
        .post(format!("{base}/v1/drawdowns"))
        .bearer_auth(caller_key)
        .header("Idempotency-Key", "audit-1")
        .json(&json!({"user_id": blocked, "amount_fen": 10_000, "channel": "app"}))
        .send()
        .await
        .unwrap();
    let decision: Value = r.json().await.unwrap();
    assert_eq!(decision["outcome"], "rejected", "{decision}");
    let r = c
        .client
        .post(format!("{base}/v1/appeals"))
        .bearer_auth(caller_key)
        .json(
            &json!({"decision_id": decision["decision_id"], "user_id": blocked,
                      "message": "I was unblocked."}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let appeal: Value = r.json().await.unwrap();
    let id = appeal["appeal_id"].as_str().unwrap();
    let resolve = json!({"resolution": "overturned", "note": "cleared"});
    let (s, b) = c
        .send(
            Method::POST,
            &format!("/admin/appeals/{id}/resolve"),
            bob,
            Some(resolve.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, _) = c
        .send(
            Method::POST,
            &format!("/admin/appeals/{id}/resolve"),
            bob,
            Some(resolve),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);

    // The log, two entries a page: the seven writes that changed something, in order.
    let log = c.all(alice, 2).await;
    let summary: Vec<(&str, &str, &str)> = log
        .iter()
        .map(|e| {
            (
                e["operator"].as_str().unwrap(),
                e["action"].as_str().unwrap(),
                e["target"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("alice", "credit_line.upsert", user),
            ("bob", "credit_line.upsert", user),
            ("admin", "thresholds.publish", "thresholds"),
            ("alice", "policy.force", "policy"),
            ("bob", "policy.force", "policy"),
            ("alice", "credit_line.upsert", blocked),
            ("bob", "appeal.resolve", id),
        ],
        "{log:#?}"
    );
    for e in &log {
        assert_eq!(e["at"], now, "the gateway's clock: {e}");
        assert!(!e["changes"].as_array().unwrap().is_empty(), "{e}");
    }
    let routes: Vec<&str> = log.iter().map(|e| e["route"].as_str().unwrap()).collect();
    assert_eq!(routes[0], "PUT /admin/credit-lines/{user_id}");
    assert_eq!(routes[2], "PUT /admin/thresholds");
    assert_eq!(routes[3], "PUT /admin/policy/force");
    assert_eq!(routes[6], "POST /admin/appeals/{appeal_id}/resolve");

    // The differences.
    assert_eq!(
        field(&log[0], "/limit_fen"),
        Some((Value::Null, json!(100_000)))
    );
    assert_eq!(
        field(&log[0], "/risk_grade"),
        Some((Value::Null, json!("B")))
    );
    assert_eq!(
        log[1]["changes"],
        json!([{"path": "/limit_fen", "before": 100_000, "after": 250_000}]),
        "only what changed"
    );
    assert_eq!(
        field(&log[2], "/version"),
        Some((json!(version), json!(version + 1)))
    );
    assert_eq!(
        field(&log[2], "/profiles/normal/login_pattern/logins_30d"),
        Some((logins, json!(77)))
    );
    assert_eq!(log[2]["changes"].as_array().unwrap().len(), 2, "{}", log[2]);
    assert_eq!(
        field(&log[3], "/window"),
        Some((json!("normal"), json!("double11")))
    );
    assert_eq!(field(&log[3], "/forced"), Some((json!(false), json!(true))));
    assert_eq!(
        field(&log[4], "/window"),
        Some((json!("double11"), json!("normal")))
    );
    assert_eq!(
        field(&log[6], "/status"),
        Some((json!("open"), json!("overturned")))
    );
    assert_eq!(
        field(&log[6], "/resolution_note"),
        Some((Value::Null, json!("cleared")))
    );
    assert!(field(&log[6], "/resolved_at").is_some());

    // The cursor pages on from any entry; bad input is refused; callers may not read it.
    let (s, b) = c
        .send(
            Method::GET,
            &format!("/admin/audit?after={}", log[4]["id"].as_str().unwrap()),
            legacy,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["entries"].as_array().unwrap().len(), 2);
    assert_eq!(b["next"], Value::Null);
    for bad in ["after=x", "after=1-", "limit=0", "limit=1001", "nope=1"] {
        let (s, b) = c
            .send(Method::GET, &format!("/admin/audit?{bad}"), legacy, None)
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {b}");
        assert_eq!(b["error"]["code"], "INVALID_REQUEST");
    }
    let (s, _) = c.send(Method::GET, "/admin/audit", caller_key, None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}
