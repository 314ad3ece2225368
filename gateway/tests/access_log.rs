//! The access log: one line per answered request under the `access` target, with the
//! request id, caller, route, status, refusal code or decision, latency and upstream times,
//! and no personal data.
//!
//! A test binary of its own, with one test and the process's global subscriber: log
//! subscribers are process state, and a subscriber scoped to one test's thread missed the
//! lines now and then while the API suite's other tests ran beside it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    unreachable_pub
)]

#[path = "api/support.rs"]
#[allow(dead_code)]
mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use std::io::Write;
use std::sync::{Arc, Mutex};
use support::*;

/// Log output collected in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }

    /// The access lines' fields, by request id.
    fn lines(&self) -> Vec<Value> {
        self.text()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|v| v["target"] == "access")
            .map(|v| v["fields"].clone())
            .collect()
    }
}

fn line_of(lines: &[Value], id: &str) -> Value {
    let found: Vec<&Value> = lines.iter().filter(|l| l["request_id"] == id).collect();
    assert_eq!(found.len(), 1, "one line for {id}: {lines:#?}");
    found[0].clone()
}

#[tokio::test]
async fn every_answer_has_one_access_line_without_personal_data() {
    let out = Captured::default();
    let writer = out.clone();
    // The binary's access layer (`gateway::logging`), as its default filter has it.
    use tracing_subscriber::layer::SubscriberExt;
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new("info"))
        .with(gateway::logging::AccessLayer::new(
            gateway::config::LogFormat::Json,
            move || writer.clone(),
        ));
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let t = TestGateway::start(relaxed()).await;
    let send = |id: &'static str, user: &'static str, key: &'static str| {
        t.client
            .post(t.url("/v1/drawdowns"))
            .bearer_auth(KEY)
            .header("X-Request-Id", id)
            .header(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )
            .header("Idempotency-Key", key)
            .json(&json!({"user_id": user, "amount_fen": 100_000, "channel": "app"}))
            .send()
    };
    let r = send("acc-approved", "u-demo-a", "acc-1").await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = send("acc-rejected", "u-demo-e", "acc-2").await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let rejected: Value = r.json().await.unwrap();
    let r = send("acc-replayed", "u-demo-a", "acc-1").await.unwrap();
    assert_eq!(r.headers()["idempotent-replayed"], "true");
    let r = t
        .client
        .get(t.url("/v1/credit-lines/u-demo-b"))
        .header("X-Request-Id", "acc-anonymous")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = t
        .client
        .get(t.url("/admin/policy"))
        .bearer_auth(ADMIN)
        .header("X-Request-Id", "acc-admin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = t
        .client
        .get(t.url("/healthz"))
        .header("X-Request-Id", "acc-health")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let tag_a = t.gw_app_tag("u-demo-a");
    t.gw.shutdown().await;

    let lines = out.lines();

    let approved = line_of(&lines, "acc-approved");
    assert_eq!(approved["method"], "POST");
    assert_eq!(approved["route"], "drawdown");
    assert_eq!(approved["status"], 200);
    assert_eq!(approved["outcome"], "approved");
    assert_eq!(approved["user"], tag_a.as_str());
    assert!(approved["caller"].as_str().unwrap().starts_with("caller-"));
    assert!(approved.get("code").is_none());
    // A load and a commit, timed; their time is within the request's.
    assert!(approved["store_ops"].as_u64().unwrap() >= 2, "{approved}");
    assert!(approved["store_us"].as_u64() <= approved["latency_us"].as_u64());
    assert_eq!(approved["bureau_calls"], 0);
    // The caller's trace.
    assert_eq!(approved["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");

    let line = line_of(&lines, "acc-rejected");
    assert_eq!(line["outcome"], "rejected");
    assert_eq!(line["reason"], rejected["reasons"][0]["code"]);

    let line = line_of(&lines, "acc-replayed");
    assert_eq!(line["outcome"], "approved");
    assert_eq!(line["user"], tag_a.as_str());

    let line = line_of(&lines, "acc-anonymous");
    assert_eq!(line["status"], 401);
    assert_eq!(line["code"], "UNAUTHENTICATED");
    assert_eq!(line["route"], "credit_line");
    assert!(line.get("caller").is_none(), "{line}");
    assert_eq!(line["store_ops"], 0);
    // No traceparent: a fresh trace, named all the same.
    let fresh = line["trace_id"].as_str().unwrap();
    assert_eq!(fresh.len(), 32);
    assert_ne!(fresh, "4bf92f3577b34da6a3ce929d0e0e4736");

    assert_eq!(line_of(&lines, "acc-admin")["caller"], "admin");
    let health = line_of(&lines, "acc-health");
    assert_eq!(health["status"], 200);
    assert!(health.get("caller").is_none());

    // No user id, anywhere in the log.
    let text = out.text();
    for id in ["u-demo-a", "u-demo-b", "u-demo-e"] {
        assert!(!text.contains(id), "{id} in the log:\n{text}");
    }
}

impl TestGateway {
    /// The tag logs give `user`.
    fn gw_app_tag(&self, user: &str) -> String {
        self.gw.app.auth.load().user_tag(user)
    }
}
