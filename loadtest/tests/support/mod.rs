//! A mock gateway speaking the API.md contract, with rules whose answers the tests know in
//! advance (the real gateway is tested in its own crate).
#![allow(clippy::unwrap_used, dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// What the mock saw.
#[derive(Default)]
pub struct MockState {
    pub users: HashMap<String, Value>,
    pub window: Option<String>,
    pub force_calls: Vec<Value>,
    pub quotes: u64,
    pub first_quotes: u64,
    pub drawdowns: u64,
    pub unauthorised: u64,
}

pub const API_KEY: &str = "test-key";
pub const ADMIN: &str = "test-admin";

fn json_resp(status: StatusCode, v: Value, retry_after: Option<&str>) -> Response<Full<Bytes>> {
    let mut b = Response::builder()
        .status(status)
        .header("content-type", "application/json");
    if let Some(r) = retry_after {
        b = b.header("retry-after", r);
    }
    b.body(Full::new(Bytes::from(v.to_string()))).unwrap()
}

fn refusal(status: StatusCode, code: &str) -> Response<Full<Bytes>> {
    json_resp(
        status,
        json!({"error": {"code": code, "category": "transient", "message": "m", "retry_after_s": 0}}),
        Some("0"),
    )
}

fn decision(outcome: &str, code: Option<&str>) -> Response<Full<Bytes>> {
    let reasons: Vec<Value> = code
        .map(|c| vec![json!({"code": c, "category": "risk"})])
        .unwrap_or_default();
    json_resp(
        StatusCode::OK,
        json!({"decision_id": "dd_1", "outcome": outcome, "amount_fen": 1, "reasons": reasons}),
        None,
    )
}

async fn handle(
    state: Arc<Mutex<MockState>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    let auth = parts
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let path = parts.uri.path().to_owned();
    let mut st = state.lock().unwrap();
    if path.starts_with("/admin/") && auth != format!("Bearer {ADMIN}")
        || path.starts_with("/v1/") && auth != format!("Bearer {API_KEY}")
    {
        st.unauthorised += 1;
        return Ok(refusal(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED"));
    }
    let resp = match (&parts.method, path.as_str()) {
        (&Method::PUT, "/admin/policy/force") => {
            let v: Value = serde_json::from_slice(&body).unwrap();
            st.window = v["window"].as_str().map(str::to_owned);
            st.force_calls.push(v["window"].clone());
            json_resp(StatusCode::OK, json!({"window": st.window}), None)
        }
        (&Method::PUT, p) if p.starts_with("/admin/credit-lines/") => {
            let id = p.trim_start_matches("/admin/credit-lines/").to_owned();
            let v: Value = serde_json::from_slice(&body).unwrap();
            st.users.insert(id, v.clone());
            json_resp(StatusCode::OK, v, None)
        }
        (&Method::GET, p) if p.starts_with("/v1/credit-lines/") => {
            st.quotes += 1;
            let id = p.trim_start_matches("/v1/credit-lines/");
            let Some(u) = st.users.get(id).cloned() else {
                return Ok(refusal(StatusCode::NOT_FOUND, "USER_NOT_FOUND"));
            };
            let available = u["limit_fen"].as_u64().unwrap() - u["used_fen"].as_u64().unwrap();
            let blocked = u["blocklisted"].as_bool().unwrap()
                || u["days_overdue"].as_u64().unwrap() > 0
                || u["risk_grade"] == "E";
            // Quotes ignore the peak window on purpose: the quota-truthfulness measure must
            // catch it.
            let drawable = if blocked { 0 } else { available };
            json_resp(
                StatusCode::OK,
                json!({"user_id": id, "limit_fen": u["limit_fen"], "used_fen": u["used_fen"],
                       "available_fen": available, "drawable_now_fen": drawable, "constraints": []}),
                None,
            )
        }
        (&Method::POST, "/v1/drawdowns") => {
            st.drawdowns += 1;
            let v: Value = serde_json::from_slice(&body).unwrap();
            assert!(parts.headers.contains_key("idempotency-key"));
            let id = v["user_id"].as_str().unwrap();
            let amount = v["amount_fen"].as_u64().unwrap();
            let Some(u) = st.users.get(id).cloned() else {
                return Ok(refusal(StatusCode::NOT_FOUND, "USER_NOT_FOUND"));
            };
            let age = u["account_age_days"].as_u64().unwrap();
            if u["blocklisted"].as_bool().unwrap() {
                decision("rejected", Some("BLOCKLISTED"))
            } else if u["days_overdue"].as_u64().unwrap() > 0 {
                decision("rejected", Some("OVERDUE_BALANCE"))
            } else if u["risk_grade"] == "E" {
                decision("rejected", Some("ACCOUNT_TOO_NEW"))
            } else if age == 1 {
                refusal(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED_USER")
            } else if age == 2 {
                refusal(StatusCode::SERVICE_UNAVAILABLE, "CAPACITY_SHED")
            } else if u["logins_30d"].as_u64().unwrap() >= 100 {
                decision("rejected", Some("LOGIN_PATTERN_ANOMALY"))
            } else if st.window.is_some() && amount > 300_000 {
                decision("rejected", Some("PEAK_WINDOW_TIGHTENED"))
            } else {
                decision("approved", None)
            }
        }
        _ => refusal(StatusCode::NOT_FOUND, "NOT_FOUND"),
    };
    Ok(resp)
}

/// Starts the mock on 127.0.0.1:0.
pub async fn start_mock() -> (SocketAddr, Arc<Mutex<MockState>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = Arc::new(Mutex::new(MockState::default()));
    let st = state.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let st = st.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| handle(st.clone(), req));
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, state)
}

/// A three-second scenario with every kind of refusal the mock can give.
pub const SCENARIO: &str = r#"
name = "mock-surge"
description = "three seconds against the mock gateway"
seed = 42
connections = 16
request_timeout_ms = 2000

[population]
users = 100

[[population.group]]
name = "good"
profile = "good"
share = 0.4

[[population.group]]
name = "frequent_login"
profile = "frequent_login"
share = 0.2

[[population.group]]
name = "risky"
profile = "risky"
share = 0.2

[[population.group]]
name = "shed_storm"
profile = "good"
behaviour = "retry_storm"
share = 0.1
overrides = { account_age_days = 2 }

[[population.group]]
name = "limited_polite"
profile = "good"
behaviour = "polite"
share = 0.1
overrides = { account_age_days = 1 }

[journey]
think_ms = 50
amount_min_fen = 100000
amount_max_fen = 500000

[retry]
storm_max_attempts = 4
polite_max_attempts = 3
polite_backoff_ms = 10
polite_cap_ms = 50

[[phase]]
name = "calm"
duration_s = 1.5
rate = { shape = "constant", rate = 60 }
force_window = "off"

[[phase]]
name = "peak"
duration_s = 1.5
rate = { shape = "ramp", from = 60, to = 140 }
force_window = "double11"
"#;
