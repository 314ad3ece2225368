//! Every error row of the API table: status, code, and `Retry-After` where due.

use crate::support::*;
use gateway::policy::{LimitsPatch, Rate, UserPatch};
use gateway::store::Store;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

async fn post_raw(t: &TestGateway, body: &str, ct: &str) -> reqwest::Response {
    t.client
        .post(t.url("/v1/drawdowns"))
        .bearer_auth(KEY)
        .header("Idempotency-Key", "k-raw")
        .header("Content-Type", ct)
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn invalid_requests_name_their_fields() {
    let t = TestGateway::start(relaxed()).await;
    t.user("u-1", 1_000_000).await;
    let cases = [
        (
            r#"{"user_id":"u-1","amount_fen":100,"channel":"app","extra":1}"#,
            "extra",
        ),
        (r#"{"user_id":"u-1","amount_fen":"#, "body"),
        (
            r#"{"user_id":"u-1","amount_fen":0,"channel":"app"}"#,
            "amount_fen",
        ),
        (
            r#"{"user_id":"u-1","amount_fen":-100,"channel":"app"}"#,
            "amount_fen",
        ),
        (
            r#"{"user_id":"u-1","amount_fen":100,"channel":"fax"}"#,
            "body",
        ),
        (r#"{"amount_fen":100,"channel":"app"}"#, "user_id"),
    ];
    for (body, field) in cases {
        let (status, code, v) = error_code(post_raw(&t, body, "application/json").await).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::BAD_REQUEST, "INVALID_REQUEST"),
            "{body}"
        );
        let fields: Vec<&str> = v["error"]["details"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["field"].as_str().unwrap())
            .collect();
        assert!(fields.contains(&field), "{body}: {v}");
        assert_eq!(v["error"]["category"], "client");
    }
    let long = "u".repeat(65);
    let (status, _, v) = error_code(t.drawdown("k-2", &long, 100).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(v["error"]["details"][0]["field"], "user_id");
    // Nothing was reserved by any of them.
    let q: Value = t
        .get("/v1/credit-lines/u-1", KEY)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(q["used_fen"], 0);
}

#[tokio::test]
async fn body_size_media_type_and_idempotency_key() {
    let t = TestGateway::start(relaxed()).await;
    let big = format!(
        r#"{{"user_id":"u-1","amount_fen":1,"channel":"app","device_id":"{}"}}"#,
        "d".repeat(17 * 1024)
    );
    let (status, code, _) = error_code(post_raw(&t, &big, "application/json").await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "BODY_TOO_LARGE")
    );
    let (status, code, _) =
        error_code(post_raw(&t, "user_id=u-1", "application/x-www-form-urlencoded").await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNSUPPORTED_MEDIA_TYPE, "UNSUPPORTED_MEDIA_TYPE")
    );
    let r = t
        .client
        .post(t.url("/v1/drawdowns"))
        .bearer_auth(KEY)
        .json(&json!({"user_id": "u-1", "amount_fen": 1, "channel": "app"}))
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_code(r).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "IDEMPOTENCY_KEY_MISSING")
    );
}

#[tokio::test]
async fn authentication_and_authorisation() {
    let t = TestGateway::start(relaxed()).await;
    let (status, code, _) = error_code(
        t.client
            .get(t.url("/v1/reason-codes"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED")
    );
    let (status, code, _) =
        error_code(t.get("/v1/reason-codes", "wrong-key-wrong-key").await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED")
    );
    let (status, code, _) = error_code(t.get("/admin/policy", KEY).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::FORBIDDEN, "FORBIDDEN")
    );
    let (status, code, _) = error_code(t.get("/v1/reason-codes", ADMIN).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED")
    );
}

#[tokio::test]
async fn not_found_rows() {
    let t = TestGateway::start(relaxed()).await;
    let (s, c, _) = error_code(t.drawdown("k-1", "u-nobody", 100).await).await;
    assert_eq!((s, c.as_str()), (StatusCode::NOT_FOUND, "USER_NOT_FOUND"));
    let (s, c, _) = error_code(t.get("/v1/appeals/ap_nothing", KEY).await).await;
    assert_eq!((s, c.as_str()), (StatusCode::NOT_FOUND, "APPEAL_NOT_FOUND"));
    t.user("u-1", 1_000).await;
    let r = t.client.post(t.url("/v1/appeals")).bearer_auth(KEY)
        .json(&json!({"decision_id": "dd_01JXXXXXXXXXXXXXXXXXXXXXXX", "user_id": "u-1", "message": "why"}))
        .send().await.unwrap();
    let (s, c, _) = error_code(r).await;
    assert_eq!(
        (s, c.as_str()),
        (StatusCode::NOT_FOUND, "DECISION_NOT_FOUND")
    );
    let (s, c, _) = error_code(t.get("/v1/nope", KEY).await).await;
    assert_eq!((s, c.as_str()), (StatusCode::NOT_FOUND, "NOT_FOUND"));
    // A good drawdown body on a path below the route's is not a drawdown: the edge parses it,
    // but only the route's exact path is dispatched to the handler.
    let r = t
        .client
        .post(t.url("/v1/drawdowns/extra"))
        .bearer_auth(KEY)
        .header("Idempotency-Key", "k-extra")
        .json(&json!({"user_id": "u-1", "amount_fen": 100, "channel": "app"}))
        .send()
        .await
        .unwrap();
    let (s, c, _) = error_code(r).await;
    assert_eq!((s, c.as_str()), (StatusCode::NOT_FOUND, "NOT_FOUND"));
    let line: Value = t
        .get("/v1/credit-lines/u-1", KEY)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(line["used_fen"], 0, "nothing was reserved: {line}");
}

#[tokio::test]
async fn approved_decisions_are_not_appealable() {
    let t = TestGateway::start(relaxed()).await;
    t.user("u-1", 1_000_000).await;
    let d: Value = t.drawdown("k-1", "u-1", 100).await.json().await.unwrap();
    let r = t
        .client
        .post(t.url("/v1/appeals"))
        .bearer_auth(KEY)
        .json(&json!({"decision_id": d["decision_id"], "user_id": "u-1", "message": "why"}))
        .send()
        .await
        .unwrap();
    let (s, c, _) = error_code(r).await;
    assert_eq!(
        (s, c.as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "NOT_APPEALABLE")
    );
}

#[tokio::test]
async fn stale_thresholds_are_refused() {
    let t = TestGateway::start(relaxed()).await;
    let th: Value = t.thresholds().await;
    let r = t.put_thresholds(&th).await;
    let (s, c, _) = error_code(r).await;
    assert_eq!((s, c.as_str()), (StatusCode::CONFLICT, "STALE_VERSION"));
    let mut bad = th.clone();
    bad["version"] = json!(5);
    bad["profiles"]["peak"]["grades"]["A"]["max_utilisation"] = json!(1.5);
    let r = t.put_thresholds(&bad).await;
    let (s, _, v) = error_code(r).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        v["error"]["details"][0]["field"],
        "profiles.peak.grades.A.max_utilisation"
    );
    let th2: Value = t.thresholds().await;
    assert_eq!(th2["version"], 1, "a refused document changes nothing");
}

#[tokio::test]
async fn per_user_rate_limit_is_a_429_with_retry_after_and_never_a_decision() {
    let mut c = relaxed();
    c.policy.normal.user = UserPatch {
        per_minute: Some(2),
        burst: Some(2),
        ..UserPatch::default()
    };
    let t = TestGateway::start(c).await;
    t.user("u-1", 1_000_000).await;
    t.user("u-2", 1_000_000).await;
    for i in 0..2 {
        assert_eq!(
            t.drawdown(&format!("k-{i}"), "u-1", 100).await.status(),
            StatusCode::OK
        );
    }
    let r = t.drawdown("k-3", "u-1", 100).await;
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    let (s, c, v) = error_code(r).await;
    assert_eq!(
        (s, c.as_str()),
        (StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED_USER")
    );
    assert_eq!(v["error"]["category"], "transient");
    assert_eq!(v["error"]["retry_after_s"], retry);
    // Another user is unaffected; the refused request reserved nothing (read past the API:
    // the user's credit-line query is rate limited too).
    assert_eq!(t.drawdown("k-4", "u-2", 100).await.status(), StatusCode::OK);
    let user = risk_core::UserId::parse("u-1").unwrap();
    let state =
        t.gw.app
            .store
            .load("any", &user, None)
            .await
            .unwrap()
            .user
            .unwrap();
    assert_eq!(state.used.get(), 200);
}

#[tokio::test]
async fn global_rate_limit_is_a_429() {
    let mut c = relaxed();
    c.policy.normal.global.drawdown = Some(Rate {
        per_second: 1,
        burst: 1,
    });
    let t = TestGateway::start(c).await;
    t.user("u-1", 1_000_000).await;
    t.user("u-2", 1_000_000).await;
    assert_eq!(t.drawdown("k-1", "u-1", 100).await.status(), StatusCode::OK);
    let r = t.drawdown("k-2", "u-2", 100).await;
    assert!(r.headers().contains_key("retry-after"));
    let (s, c, _) = error_code(r).await;
    assert_eq!(
        (s, c.as_str()),
        (StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED_GLOBAL")
    );
}

#[tokio::test]
async fn capacity_shed_is_a_503_with_retry_after() {
    let mut c = relaxed_fixed();
    c.policy.normal = LimitsPatch {
        concurrency: Some(1),
        queue: Some(0),
        ..c.policy.normal
    };
    let t = TestGateway::start(c).await;
    t.user("u-1", 1_000_000).await;
    faults(&t).set_latency(Duration::from_millis(300));
    let first = tokio::spawn({
        let client = t.client.clone();
        let url = t.url("/v1/drawdowns");
        async move {
            client
                .post(url)
                .bearer_auth(KEY)
                .header("Idempotency-Key", "k-slow")
                .json(&json!({"user_id": "u-1", "amount_fen": 100, "channel": "app"}))
                .send()
                .await
                .unwrap()
                .status()
        }
    });
    eventually("the first request in flight", || {
        t.gw.app.admission.in_flight() == 1
    })
    .await;
    let r = t.drawdown("k-2", "u-1", 100).await;
    assert!(r.headers().contains_key("retry-after"));
    let (s, c, _) = error_code(r).await;
    assert_eq!(
        (s, c.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "CAPACITY_SHED")
    );
    // Every /v1/ path goes through admission, one that matches no route too; health checks
    // and the admin API do not.
    let (s, c, _) = error_code(t.get("/v1/nope", KEY).await).await;
    assert_eq!(
        (s, c.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "CAPACITY_SHED")
    );
    assert_eq!(t.get("/healthz", KEY).await.status(), StatusCode::OK);
    assert_eq!(t.get("/admin/policy", ADMIN).await.status(), StatusCode::OK);
    assert_eq!(first.await.unwrap(), StatusCode::OK);
}

#[tokio::test]
async fn dependency_unavailable_is_a_503_and_writes_nothing() {
    let t = TestGateway::start(relaxed()).await;
    t.user("u-1", 1_000_000).await;
    faults(&t).set_unavailable(true);
    let r = t.drawdown("k-1", "u-1", 100).await;
    assert!(r.headers().contains_key("retry-after"));
    let (s, c, _) = error_code(r).await;
    assert_eq!(
        (s, c.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "DEPENDENCY_UNAVAILABLE")
    );
    assert_eq!(
        t.client
            .get(t.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    faults(&t).set_unavailable(false);
    let q: Value = t
        .get("/v1/credit-lines/u-1", KEY)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(q["used_fen"], 0);
    // The same key now goes through: nothing was recorded under it.
    let d: Value = t.drawdown("k-1", "u-1", 100).await.json().await.unwrap();
    assert_eq!(d["outcome"], "approved");
}

#[tokio::test]
async fn a_store_slower_than_the_deadline_is_a_fast_503_and_a_retry_replays() {
    let t = TestGateway::start(relaxed()).await;
    t.user("u-1", 1_000_000).await;
    faults(&t).set_latency(Duration::from_millis(500));
    let started = std::time::Instant::now();
    let r = t
        .client
        .post(t.url("/v1/drawdowns"))
        .bearer_auth(KEY)
        .header("Idempotency-Key", "k-slow")
        .header("X-Request-Deadline-Ms", "100")
        .json(&json!({"user_id": "u-1", "amount_fen": 100, "channel": "app"}))
        .send()
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(450),
        "answered at the deadline, not after the store"
    );
    assert!(r.headers().contains_key("retry-after"));
    let (s, c, _) = error_code(r).await;
    assert_eq!(
        (s, c.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "DEPENDENCY_UNAVAILABLE")
    );
    // The store recovers; the same key is answered once, reserving once.
    faults(&t).set_latency(Duration::ZERO);
    let d: Value = t.drawdown("k-slow", "u-1", 100).await.json().await.unwrap();
    assert_eq!(d["outcome"], "approved");
    let user = risk_core::UserId::parse("u-1").unwrap();
    let state =
        t.gw.app
            .store
            .load("any", &user, None)
            .await
            .unwrap()
            .user
            .unwrap();
    assert_eq!(state.used.get(), 100);
}

/// A malformed `X-Retry-Attempt` is a 400 naming the header, before the body is read: even
/// with a deadline too short for any body to arrive, the answer is about the header.
#[tokio::test]
async fn a_malformed_retry_attempt_is_a_400_before_the_body_is_read() {
    let t = TestGateway::start(relaxed()).await;
    t.user("u-1", 1_000_000).await;
    for bad in ["{}", "-1", "one", "", "1.5", "1 2"] {
        let r = t
            .client
            .post(t.url("/v1/drawdowns"))
            .bearer_auth(KEY)
            .header("Idempotency-Key", "k-retry-header")
            .header("X-Request-Deadline-Ms", "1")
            .header("X-Retry-Attempt", bad)
            .json(&json!({"user_id": "u-1", "amount_fen": 100, "channel": "app"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "INVALID_REQUEST", "{bad}: {body}");
        assert!(
            body.to_string().contains("X-Retry-Attempt"),
            "{bad}: {body}"
        );
    }
    // A number past any integer type is still a whole number: a retry, served.
    let r = t
        .client
        .post(t.url("/v1/drawdowns"))
        .bearer_auth(KEY)
        .header("Idempotency-Key", "k-retry-big")
        .header("X-Retry-Attempt", "3729688287312195584000")
        .json(&json!({"user_id": "u-1", "amount_fen": 100, "channel": "app"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // The refused requests decided nothing: only that retry used the line.
    let r = t
        .client
        .get(t.url("/v1/credit-lines/u-1"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["used_fen"], 100, "{body}");
}

/// Every request body is a JSON object: an array of the fields (which serde would read into
/// a struct) is a 400 naming the body, and changes nothing.
#[tokio::test]
async fn a_body_that_is_not_a_json_object_is_a_400() {
    let t = TestGateway::start(relaxed()).await;
    t.user("u-1", 1_000_000).await;
    let cases = [
        ("POST", "/v1/drawdowns", KEY, r#"["u-1", 100, "app"]"#),
        ("PUT", "/admin/policy/force", ADMIN, "[null]"),
    ];
    for (method, path, token, body) in cases {
        let r = t
            .client
            .request(method.parse().unwrap(), t.url(path))
            .bearer_auth(token)
            .header("Idempotency-Key", "k-array")
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{path}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["details"][0]["field"], "body", "{path}: {v}");
    }
    let r = t
        .client
        .get(t.url("/v1/credit-lines/u-1"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["used_fen"], 0, "{v}");
}
