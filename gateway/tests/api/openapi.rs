//! The OpenAPI document and the router agree: every route is documented with every status
//! it can answer, every documented route exists.

use crate::support::*;
use gateway::api::{ROUTES, edge_statuses, openapi::DOCUMENT};
use serde_json::Value;
use std::collections::BTreeSet;

fn doc() -> Value {
    serde_json::from_str(DOCUMENT).unwrap()
}

#[test]
fn every_route_and_status_is_documented() {
    let doc = doc();
    let mut missing = Vec::new();
    for (method, path, statuses) in ROUTES {
        let op = &doc["paths"][path][method];
        if !op.is_object() {
            missing.push(format!("{method} {path}: not documented"));
            continue;
        }
        let all: BTreeSet<u16> = statuses
            .iter()
            .copied()
            .chain(edge_statuses(method, path))
            .collect();
        for status in all {
            if !op["responses"][status.to_string()].is_object() {
                missing.push(format!("{method} {path}: status {status} not documented"));
            }
        }
    }
    assert!(missing.is_empty(), "{missing:#?}");
}

#[test]
fn every_documented_route_exists() {
    let doc = doc();
    let routes: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p, _)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            assert!(
                routes.contains(&(method.clone(), path.clone())),
                "{method} {path} is documented but not routed"
            );
        }
    }
}

#[tokio::test]
async fn every_route_is_served() {
    let t = TestGateway::start(relaxed()).await;
    for (method, path, _) in ROUTES {
        let url = t.url(
            &path
                .replace("{user_id}", "u-demo-a")
                .replace("{appeal_id}", "ap_x"),
        );
        let token = if path.starts_with("/admin") {
            ADMIN
        } else {
            KEY
        };
        let m: reqwest::Method = method.to_ascii_uppercase().parse().unwrap();
        let r = t
            .client
            .request(m, url)
            .bearer_auth(token)
            .header("Idempotency-Key", "k")
            .header("Content-Type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        let status = r.status();
        let body: serde_json::Value = r.json().await.unwrap_or_default();
        let code = body["error"]["code"].as_str().unwrap_or("");
        assert!(
            code != "NOT_FOUND" && code != "METHOD_NOT_ALLOWED",
            "{method} {path}: {status} {body}"
        );
    }
}
