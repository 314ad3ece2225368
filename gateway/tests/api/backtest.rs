//! Backtests on the memory store: the staged candidate replayed over the stored inputs of
//! the last N decisions or a time range counts exactly what live traffic would have, and a
//! decision without stored inputs is skipped.

use crate::support::*;
use gateway::clock::Clock;
use gateway::store::{CommitOutcome, CommitRequest, DecisionRecord, Fingerprint, Store};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

/// 120 logins in 30 days: live approves, the candidate's `reject_alone` refuses.
const FREQUENT: [&str; 3] = ["u-bt-freq-1", "u-bt-freq-2", "u-bt-freq-3"];
const QUIET: [&str; 2] = ["u-bt-quiet-1", "u-bt-quiet-2"];

async fn backtest(t: &TestGateway, body: &Value) -> (StatusCode, Value) {
    let r = t
        .client
        .post(t.url("/admin/shadow/backtest"))
        .bearer_auth(ADMIN)
        .json(body)
        .send()
        .await
        .unwrap();
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
async fn a_backtest_replays_stored_inputs_and_skips_decisions_without_them() {
    let t = TestGateway::start(relaxed()).await;
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
    // Two drawdowns per user, one second apart, the frequent users first.
    let start = t.clock.now();
    for u in FREQUENT.iter().chain(&QUIET) {
        for n in 0..2 {
            t.clock.advance(Duration::from_secs(1));
            let r = t.drawdown(&format!("{u}-{n}"), u, 10_000).await;
            let d: Value = r.json().await.unwrap();
            assert_eq!(d["outcome"], "approved", "live approves: {d}");
        }
    }
    let frequent_until = start
        .checked_add(jiff::SignedDuration::from_secs(6))
        .unwrap();
    // One more decision, committed without its inputs (as before the record existed).
    t.clock.advance(Duration::from_secs(1));
    let now = t.clock.now();
    let user = risk_core::UserId::parse(QUIET[0]).unwrap();
    let id = gateway::store::new_decision_id(&user, now);
    let out =
        t.gw.app
            .store
            .commit(CommitRequest {
                caller: "direct".into(),
                user: user.clone(),
                idempotency_key: "direct-1".into(),
                fingerprint: Fingerprint::from_bytes([1; 32]),
                decision: DecisionRecord {
                    decision_id: id,
                    user_id: user.to_string(),
                    outcome: risk_core::Outcome::Rejected,
                    amount_fen: 10_000,
                    reasons: vec![],
                    available_fen: 0,
                    drawable_now_fen: 0,
                    threshold_version: 1,
                    policy: "standard".into(),
                    evaluated_at: "2026-06-01T12:00:11+08:00".into(),
                    appealable: false,
                },
                reserve: None,
                now,
            })
            .await
            .unwrap();
    assert!(matches!(out, CommitOutcome::Committed(_)), "{out:?}");

    let (s, b) = backtest(&t, &json!({"last": 10})).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("NO_SHADOW_CANDIDATE"))
    );
    let mut candidate = t.thresholds().await;
    candidate["profiles"]["normal"]["login_pattern"]["mode"] = json!("reject_alone");
    let r = t
        .client
        .put(t.url("/admin/shadow"))
        .bearer_auth(ADMIN)
        .json(&candidate)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // Everything: ten replayed, the direct one skipped.
    let (s, r) = backtest(&t, &json!({"last": 100})).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(
        (&r["selected"], &r["replayed"], &r["skipped"]),
        (&json!(11), &json!(10), &json!(1)),
        "{r}"
    );
    // The newest decision, yet without inputs: not recorded (nothing was pushed out).
    assert_eq!(
        r["skipped_by_cause"],
        json!({"pushed_out": 0, "not_recorded": 1, "unreadable": 0})
    );
    assert_eq!(r["drawdowns_evaluated"], 10);
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
    let samples = r["samples"].as_array().unwrap();
    assert_eq!(samples.len(), 6);
    assert!(
        samples
            .iter()
            .all(|s| FREQUENT.contains(&s["user_id"].as_str().unwrap())
                && s["live"]["outcome"] == "approved"
                && s["candidate"]["reasons"][0]["code"] == "LOGIN_PATTERN_ANOMALY")
    );
    // The live report's shape, and then some.
    let live = t
        .get("/admin/shadow", ADMIN)
        .await
        .json::<Value>()
        .await
        .unwrap();
    let keys = |v: &Value| -> Vec<String> { v.as_object().unwrap().keys().cloned().collect() };
    assert!(
        keys(&live).iter().all(|k| r.get(k).is_some()),
        "{live} vs {r}"
    );
    assert_eq!(
        live["drawdowns_evaluated"], 0,
        "a backtest counts nothing live"
    );

    // The last five: the direct one and the quiet users' four: nothing changes.
    let (s, r) = backtest(&t, &json!({"last": 5})).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!((&r["selected"], &r["skipped"]), (&json!(5), &json!(1)));
    assert_eq!(r["changes"], json!([]));

    // The frequent users' six seconds.
    let (s, r) = backtest(
        &t,
        &json!({"from": start.to_string(), "to": frequent_until.to_string()}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!((&r["selected"], &r["skipped"]), (&json!(6), &json!(0)));
    assert_eq!(
        count(
            &r["changes"],
            "approved_to_rejected",
            "approved_to_rejected"
        ),
        (6, 3)
    );

    // Bad selections are refused with the field named.
    for (body, field) in [
        (json!({}), "body"),
        (json!({"last": 0}), "last"),
        (json!({"last": 5, "from": start.to_string()}), "body"),
        (
            json!({"from": "yesterday", "to": start.to_string()}),
            "from",
        ),
    ] {
        let (s, b) = backtest(&t, &body).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {b}");
        assert_eq!(b["error"]["details"][0]["field"], field, "{body}: {b}");
    }
    // A range that ends before it starts is well formed and means nothing: 422.
    let body = json!({"from": frequent_until.to_string(), "to": start.to_string()});
    let (s, b) = backtest(&t, &body).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["error"]["code"], "RANGE_INVERTED", "{b}");
    assert_eq!(b["error"]["details"][0]["field"], "to", "{b}");
    let (s, _) = backtest(&t, &json!({"last": 5, "extra": 1})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // JSON Schema's `integer`: `5.0` is 5, `5.5` is not a count.
    let (s, b) = backtest(&t, &json!({"last": 5.0})).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["selected"], 5, "{b}");
    let (s, b) = backtest(&t, &json!({"last": 5.5})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
}

/// The bound is the store's, not a shard's: the last `decision_inputs_kept` decisions have
/// their inputs whichever users (and shards) they are of; older ones are skipped as pushed out.
#[tokio::test]
async fn the_inputs_kept_are_bounded_over_the_whole_store() {
    let mut c = relaxed();
    c.risk.decision_inputs_kept = 4;
    let t = TestGateway::start(c).await;
    // Eight users: on eight shards at most, one decision each, then four more of one user.
    let users: Vec<String> = (0..8).map(|n| format!("u-bt-bound-{n}")).collect();
    for u in &users {
        t.user(u, 1_000_000).await;
    }
    for (n, u) in users
        .iter()
        .chain(std::iter::repeat_n(&users[0], 4))
        .enumerate()
    {
        t.clock.advance(Duration::from_secs(1));
        let r = t.drawdown(&format!("b-{n}"), u, 1_000).await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    let r = t
        .client
        .put(t.url("/admin/shadow"))
        .bearer_auth(ADMIN)
        .json(&t.thresholds().await)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // The last four, all of one user (one shard): every one replayed.
    let (s, r) = backtest(&t, &json!({"last": 4})).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(
        (&r["selected"], &r["replayed"], &r["skipped"]),
        (&json!(4), &json!(4), &json!(0)),
        "{r}"
    );
    // All twelve: the store holds the last five (4 and 1/64 more, rounded up); the seven
    // before them were pushed out.
    let (s, r) = backtest(&t, &json!({"last": 12})).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(
        (&r["selected"], &r["replayed"], &r["skipped"]),
        (&json!(12), &json!(5), &json!(7)),
        "{r}"
    );
    assert_eq!(
        r["skipped_by_cause"],
        json!({"pushed_out": 7, "not_recorded": 0, "unreadable": 0})
    );
}
