//! Issue 14: per-grade quotas apply, every refusal carries its true cause, 405s carry
//! `Allow`, timestamps share one form.

use crate::support::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// 2026-11-11 00:30 Asia/Shanghai: inside the default Double 11 window (23:30 → 02:00).
fn double11() -> jiff::Timestamp {
    jiff::civil::date(2026, 11, 11)
        .at(0, 30, 0, 0)
        .in_tz("Asia/Shanghai")
        .unwrap()
        .timestamp()
}

/// Drawdowns of `user` one after another until the first refusal: how many were answered.
async fn answered_before_429(t: &TestGateway, user: &str, tries: usize) -> usize {
    for i in 0..tries {
        let r = t.drawdown(&format!("{user}-k{i}"), user, 100).await;
        match r.status() {
            StatusCode::OK => {}
            StatusCode::TOO_MANY_REQUESTS => {
                let (_, code, _) = error_code(r).await;
                assert_eq!(code, "RATE_LIMITED_USER");
                return i;
            }
            other => panic!("{user}: {other} {}", r.text().await.unwrap()),
        }
    }
    tries
}

#[tokio::test]
async fn a_grade_e_user_gets_the_peak_windows_tighter_quota_and_a_grade_a_user_does_not() {
    let t = TestGateway::start(relaxed()).await;
    t.clock.set(double11());
    t.gw.app.policy.evaluate();
    let p: Value = t.get("/admin/policy", ADMIN).await.json().await.unwrap();
    assert_eq!(p["window"], "double11");
    // The peak preset: burst 6 per user, 3 for grades D and E.
    assert_eq!(p["limits"]["user"]["burst"], 6, "{p}");
    assert_eq!(p["limits"]["user"]["grades"]["E"]["burst"], 3, "{p}");
    for (user, grade) in [("u-grade-e", "E"), ("u-grade-a", "A")] {
        let r = t
            .put_user(
                user,
                json!({"limit_fen": 10_000_000, "used_fen": 0, "risk_grade": grade,
                       "account_age_days": 400}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    assert_eq!(answered_before_429(&t, "u-grade-e", 10).await, 3);
    assert_eq!(answered_before_429(&t, "u-grade-a", 10).await, 6);
}

#[tokio::test]
async fn a_corrupt_store_is_a_500_internal_not_a_retryable_503() {
    let t = TestGateway::start(relaxed()).await;
    t.user("u-1", 1_000_000).await;
    faults(&t).set_corrupt(true);
    let r = t.drawdown("k-1", "u-1", 100).await;
    assert!(!r.headers().contains_key("retry-after"));
    let (s, c, body) = error_code(r).await;
    assert_eq!(
        (s, c.as_str()),
        (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL")
    );
    assert_eq!(body["error"]["category"], "server");
    let r = t.get("/v1/credit-lines/u-1", KEY).await;
    assert_eq!(error_code(r).await.1, "INTERNAL");
    faults(&t).set_corrupt(false);
    // Nothing was written.
    let q: Value = t
        .get("/v1/credit-lines/u-1", KEY)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(q["used_fen"], 0);
}

#[tokio::test]
async fn a_commit_race_lost_every_time_is_line_contended_not_capacity_shed() {
    let t = TestGateway::start(relaxed()).await;
    t.user("u-1", 1_000_000).await;
    faults(&t).set_contended(true);
    let r = t.drawdown("k-1", "u-1", 100).await;
    assert_eq!(r.headers()["retry-after"], "1");
    let (s, c, body) = error_code(r).await;
    assert_eq!(
        (s, c.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "LINE_CONTENDED")
    );
    assert_eq!(body["error"]["category"], "transient");
    // The code is in the catalogue, as every transient code is.
    let cat: Value = t.get("/v1/reason-codes", KEY).await.json().await.unwrap();
    assert!(
        cat["reason_codes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["code"] == "LINE_CONTENDED" && e["category"] == "transient")
    );
    // Nothing was written: the retry with the same key is a first decision.
    faults(&t).set_contended(false);
    let r = t.drawdown("k-1", "u-1", 100).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(!r.headers().contains_key("idempotent-replayed"));
}

#[tokio::test]
async fn unrouted_v1_requests_are_not_counted_as_the_reason_codes_route() {
    let t = TestGateway::start(relaxed()).await;
    let r = t.get("/v1/drawdowns", KEY).await;
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    let r = t.get("/v1/no-such-route", KEY).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let m = t.metrics().await;
    let line = |route: &str, status: u16| {
        format!("gateway_http_requests_total{{route=\"{route}\",status=\"{status}\"}} 1")
    };
    assert!(m.contains(&line("unrouted", 405)), "{m}");
    assert!(m.contains(&line("unrouted", 404)), "{m}");
    assert!(!m.contains("route=\"reason_codes\""), "{m}");
}

#[tokio::test]
async fn every_405_carries_allow() {
    let t = TestGateway::start(relaxed()).await;
    for (method, path, token, allow) in [
        (reqwest::Method::GET, "/v1/drawdowns", KEY, "POST"),
        (
            reqwest::Method::DELETE,
            "/v1/credit-lines/u-1",
            KEY,
            "GET,HEAD",
        ),
        (reqwest::Method::POST, "/healthz", KEY, "GET,HEAD"),
        (
            reqwest::Method::DELETE,
            "/admin/thresholds",
            ADMIN,
            "GET,HEAD,PUT",
        ),
    ] {
        let r = t
            .client
            .request(method.clone(), t.url(path))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        let got = r
            .headers()
            .get("allow")
            .unwrap_or_else(|| panic!("{method} {path}: no Allow"))
            .to_str()
            .unwrap()
            .replace(' ', "");
        let mut got: Vec<&str> = got.split(',').collect();
        got.sort_unstable();
        assert_eq!(got.join(","), allow, "{method} {path}");
        assert_eq!(error_code(r).await.1, "METHOD_NOT_ALLOWED");
    }
}

/// RFC 3339 with a numeric offset, in whole seconds.
fn whole_seconds(v: &Value, what: &str) {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("{what}: not a string: {v}"));
    let ok = s.len() == 25
        && s.parse::<jiff::Timestamp>().is_ok()
        && s.as_bytes()[19] != b'.'
        && matches!(s.as_bytes()[19], b'+' | b'-');
    assert!(ok, "{what}: {s:?} is not RFC 3339 in whole seconds");
}

#[tokio::test]
async fn every_timestamp_is_rfc3339_in_whole_seconds() {
    let t = TestGateway::start(relaxed()).await;
    // A clock with a fraction of a second, as a real one has.
    t.clock
        .set(quiet_noon() + jiff::SignedDuration::from_millis(1_234));
    t.gw.app.policy.evaluate();
    let r = t
        .put_user(
            "u-overdue",
            json!({"limit_fen": 1_000_000, "used_fen": 0, "risk_grade": "A",
                   "account_age_days": 400, "days_overdue": 90}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let d: Value = t
        .drawdown("k-1", "u-overdue", 100)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(d["outcome"], "rejected", "{d}");
    whole_seconds(&d["evaluated_at"], "evaluated_at");
    let q: Value = t
        .get("/v1/credit-lines/u-overdue", KEY)
        .await
        .json()
        .await
        .unwrap();
    whole_seconds(&q["as_of"], "as_of");
    let a: Value = t
        .client
        .post(t.url("/v1/appeals"))
        .bearer_auth(KEY)
        .json(
            &json!({"decision_id": d["decision_id"], "user_id": "u-overdue",
                      "message": "repaid yesterday"}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    whole_seconds(&a["created_at"], "created_at");
    whole_seconds(&a["due_at"], "due_at");
    t.clock.advance(std::time::Duration::from_millis(2_500));
    let id = a["appeal_id"].as_str().unwrap();
    let resolved: Value = t
        .client
        .post(t.url(&format!("/admin/appeals/{id}/resolve")))
        .bearer_auth(ADMIN)
        .json(&json!({"resolution": "overturned", "note": "confirmed"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    whole_seconds(&resolved["resolved_at"], "resolved_at");
    let p: Value = t.get("/admin/policy", ADMIN).await.json().await.unwrap();
    whole_seconds(&p["since"], "since");
    // A calendar window's end, too.
    t.clock
        .set(double11() + jiff::SignedDuration::from_millis(500));
    t.gw.app.policy.evaluate();
    let p: Value = t.get("/admin/policy", ADMIN).await.json().await.unwrap();
    whole_seconds(&p["since"], "since (window)");
    whole_seconds(&p["ends_at"], "ends_at");
    // All in the policy's zone.
    for v in [
        &d["evaluated_at"],
        &q["as_of"],
        &a["created_at"],
        &a["due_at"],
        &resolved["resolved_at"],
        &p["ends_at"],
    ] {
        assert!(v.as_str().unwrap().ends_with("+08:00"), "{v}");
    }
}

/// Found by the OpenAPI fuzzer: the document allows `limit` 1 to 1000, and the server
/// answered any other value (it clamped it) instead of refusing it.
#[tokio::test]
async fn an_appeal_list_limit_out_of_the_documented_range_is_a_400() {
    let t = TestGateway::start(relaxed()).await;
    for limit in ["0", "1001"] {
        let r = t.get(&format!("/admin/appeals?limit={limit}"), ADMIN).await;
        let (s, c, body) = error_code(r).await;
        assert_eq!(
            (s, c.as_str()),
            (StatusCode::BAD_REQUEST, "INVALID_REQUEST")
        );
        assert_eq!(body["error"]["details"][0]["field"], "limit");
    }
    for limit in ["1", "1000"] {
        let r = t.get(&format!("/admin/appeals?limit={limit}"), ADMIN).await;
        assert_eq!(r.status(), StatusCode::OK);
    }
}

/// Found by the OpenAPI fuzzer: a line the upstream system cut below what is drawn is a
/// valid state (the document cannot relate two fields); it is stored, with nothing available.
#[tokio::test]
async fn a_line_cut_below_what_is_drawn_is_stored_with_nothing_available() {
    let t = TestGateway::start(relaxed()).await;
    let r = t
        .put_user(
            "u-cut",
            json!({"limit_fen": 1_000, "used_fen": 5_000, "risk_grade": "B"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let q: Value = t
        .get("/v1/credit-lines/u-cut", KEY)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (q["available_fen"].as_u64(), q["drawable_now_fen"].as_u64()),
        (Some(0), Some(0))
    );
    let d: Value = t.drawdown("k-1", "u-cut", 100).await.json().await.unwrap();
    assert_eq!(d["outcome"], "rejected", "{d}");
}

/// Found by the OpenAPI fuzzer: a method no route answers, sent with a body that is not
/// JSON, was refused 415 (the body was checked first) instead of 405.
#[tokio::test]
async fn a_method_no_route_answers_is_a_405_whatever_the_body() {
    let t = TestGateway::start(relaxed()).await;
    for (path, token) in [
        ("/v1/credit-lines/u-1", KEY),
        ("/v1/reason-codes", KEY),
        ("/v1/appeals/ap_1", KEY),
        ("/admin/policy", ADMIN),
        ("/admin/appeals", ADMIN),
    ] {
        let r = t
            .client
            .put(t.url(path))
            .bearer_auth(token)
            .header("content-type", "text/plain")
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED, "PUT {path}");
        assert!(r.headers().contains_key("allow"), "PUT {path}");
    }
    // A routed method still checks its body.
    let r = t
        .client
        .put(t.url("/admin/policy/force"))
        .bearer_auth(ADMIN)
        .header("content-type", "text/plain")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

/// Found by the OpenAPI fuzzer: a query string the route cannot read was refused by axum in
/// plain text, not in the API's error shape.
#[tokio::test]
async fn an_unreadable_query_is_a_400_in_the_error_shape() {
    let t = TestGateway::start(relaxed()).await;
    for query in ["status=AAA", "limit=x", "other=1"] {
        let r = t.get(&format!("/admin/appeals?{query}"), ADMIN).await;
        assert_eq!(r.headers()["content-type"], "application/json", "{query}");
        let (s, c, body) = error_code(r).await;
        assert_eq!(
            (s, c.as_str()),
            (StatusCode::BAD_REQUEST, "INVALID_REQUEST"),
            "{query}"
        );
        assert_eq!(body["error"]["details"][0]["field"], "query");
    }
}

/// Found by the OpenAPI fuzzer: `{}` was taken for `{"window": null}` (serde defaults a
/// missing `Option`), though the document requires `window`.
#[tokio::test]
async fn forcing_a_policy_needs_the_window_field() {
    let t = TestGateway::start(relaxed()).await;
    let force = |body: &'static str| {
        t.client
            .put(t.url("/admin/policy/force"))
            .bearer_auth(ADMIN)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let (s, c, body) = error_code(force("{}").await.unwrap()).await;
    assert_eq!(
        (s, c.as_str()),
        (StatusCode::BAD_REQUEST, "INVALID_REQUEST")
    );
    assert_eq!(body["error"]["details"][0]["field"], "window");
    assert_eq!(
        force(r#"{"window": null}"#).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        force(r#"{"window": "double11"}"#).await.unwrap().status(),
        StatusCode::OK
    );
}

/// Found by the OpenAPI fuzzer: the document bounds `decision_id` to 64 characters (JSON
/// Schema counts characters), and the server counted bytes, refusing a shorter id written in
/// characters of four bytes.
#[tokio::test]
async fn an_appeals_decision_id_is_bounded_in_characters_not_bytes() {
    let t = TestGateway::start(relaxed()).await;
    let appeal = |decision_id: String| {
        t.client
            .post(t.url("/v1/appeals"))
            .bearer_auth(KEY)
            .json(&json!({"decision_id": decision_id, "user_id": "u-1", "message": "why"}))
            .send()
    };
    // 64 characters, 256 bytes: valid, and no such decision.
    let r = appeal("𝕕".repeat(64)).await.unwrap();
    let (s, c, body) = error_code(r).await;
    assert_eq!(
        (s, c.as_str()),
        (StatusCode::NOT_FOUND, "DECISION_NOT_FOUND"),
        "{body}"
    );
    // 65 characters: refused, naming the field.
    let r = appeal("𝕕".repeat(65)).await.unwrap();
    let (s, c, body) = error_code(r).await;
    assert_eq!(
        (s, c.as_str()),
        (StatusCode::BAD_REQUEST, "INVALID_REQUEST"),
        "{body}"
    );
    assert_eq!(
        body["error"]["details"][0]["field"], "decision_id",
        "{body}"
    );
}
