//! W3C trace context and the OTLP export of spans: a caller's `traceparent` goes on to the
//! bureau and names the trace in error bodies; spans reach an OTLP/HTTP receiver started
//! here (protobuf at `/v1/traces`, decoded with opentelemetry-proto) under the caller's
//! trace id; a collector that is down costs requests nothing and its spans are counted.

use crate::support::*;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use gateway::config::Config;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

fn traceparent() -> String {
    format!("00-{TRACE_ID}-{CALLER_SPAN}-01")
}

/// A bureau that keeps the trace headers of every call.
#[derive(Default)]
pub struct TraceBureau {
    /// (`traceparent`, `tracestate`) of each call.
    pub seen: Mutex<Vec<(Option<String>, Option<String>)>>,
}

async fn score(
    State(b): State<Arc<TraceBureau>>,
    headers: HeaderMap,
    Path(user): Path<String>,
) -> axum::Json<Value> {
    let get = |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_owned());
    b.seen
        .lock()
        .unwrap()
        .push((get("traceparent"), get("tracestate")));
    axum::Json(json!({"user_id": user, "score": 720, "overdue_accounts": 0,
        "max_days_overdue": 0, "inquiries_90d": 1}))
}

/// The bureau's routes.
pub fn bureau_router(b: &Arc<TraceBureau>) -> axum::Router {
    axum::Router::new()
        .route("/v1/score/{user}", axum::routing::get(score))
        .with_state(Arc::clone(b))
}

async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    url
}

/// The OTLP/HTTP receiver: every span it was sent.
#[derive(Default)]
struct Receiver {
    spans: Mutex<Vec<Span>>,
    service_names: Mutex<Vec<String>>,
}

async fn traces(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> Vec<u8> {
    assert_eq!(headers["content-type"], "application/x-protobuf");
    let req = ExportTraceServiceRequest::decode(body).unwrap();
    for rs in req.resource_spans {
        if let Some(res) = &rs.resource {
            for kv in &res.attributes {
                if kv.key == "service.name" {
                    r.service_names
                        .lock()
                        .unwrap()
                        .push(format!("{:?}", kv.value));
                }
            }
        }
        for ss in rs.scope_spans {
            r.spans.lock().unwrap().extend(ss.spans);
        }
    }
    ExportTraceServiceResponse::default().encode_to_vec()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

async fn gateway(bureau: &str, otlp: Option<String>) -> TestGateway {
    let mut c: Config = relaxed();
    c.bureau.url = Some(bureau.to_owned());
    c.bureau.cache_ttl = Duration::ZERO;
    c.bureau.stale_max_age = Duration::ZERO;
    c.tracing.otlp_endpoint = otlp;
    c.tracing.export_interval = Duration::from_millis(50);
    c.tracing.export_timeout = Duration::from_millis(500);
    let t = TestGateway::start(c).await;
    t.user("u-t1", 1_000_000).await;
    t
}

async fn traced_drawdown(t: &TestGateway, key: &str, parent: Option<&str>) -> Value {
    let mut req = t
        .client
        .post(t.url("/v1/drawdowns"))
        .bearer_auth(KEY)
        .header("Idempotency-Key", key)
        .header("tracestate", "congo=t61rcWkgMzE");
    if let Some(p) = parent {
        req = req.header("traceparent", p);
    }
    let r = req
        .json(&json!({"user_id": "u-t1", "amount_fen": 10_000, "channel": "app"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

#[tokio::test]
async fn the_bureau_receives_the_callers_trace_with_the_gateways_span_as_parent() {
    let b = Arc::new(TraceBureau::default());
    let url = serve(bureau_router(&b)).await;
    let t = gateway(&url, None).await;
    traced_drawdown(&t, "tr-1", Some(&traceparent())).await;
    traced_drawdown(&t, "tr-2", Some("00-not-a-valid-traceparent-01")).await;
    traced_drawdown(&t, "tr-3", None).await;
    let seen = b.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "{seen:?}");

    // Continued: the same trace, a new parent (the gateway's), the caller's flags and state.
    let (parent, state) = &seen[0];
    let parts: Vec<&str> = parent.as_deref().unwrap().split('-').collect();
    assert_eq!(parts[0], "00");
    assert_eq!(parts[1], TRACE_ID);
    assert_ne!(parts[2], CALLER_SPAN);
    assert_ne!(parts[2], "0000000000000000");
    assert_eq!(parts[3], "01");
    assert_eq!(state.as_deref(), Some("congo=t61rcWkgMzE"));

    // Malformed, and absent: a fresh trace each, not sampled, and no tracestate.
    let fresh: Vec<&str> = seen[1..]
        .iter()
        .map(|(p, s)| {
            assert!(s.is_none(), "{s:?}");
            let p = p.as_deref().unwrap();
            assert_eq!(p.len(), 55);
            assert!(p.ends_with("-00"), "{p}");
            &p[3..35]
        })
        .collect();
    assert_ne!(fresh[0], fresh[1]);
    assert!(
        fresh
            .iter()
            .all(|id| *id != TRACE_ID && *id != "0".repeat(32))
    );
}

#[tokio::test]
async fn error_bodies_name_the_trace() {
    let b = Arc::new(TraceBureau::default());
    let url = serve(bureau_router(&b)).await;
    let t = gateway(&url, None).await;
    let r = t
        .client
        .get(t.url("/v1/credit-lines/u-t1"))
        .header("traceparent", traceparent())
        .send()
        .await
        .unwrap();
    let (status, code, body) = error_code(r).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED")
    );
    assert_eq!(body["error"]["trace_id"], TRACE_ID);
    // A malformed traceparent: a fresh trace id, still named.
    let r = t
        .client
        .get(t.url("/nowhere"))
        .header(
            "traceparent",
            format!("00-{}-{CALLER_SPAN}-01", TRACE_ID.to_uppercase()),
        )
        .send()
        .await
        .unwrap();
    let (status, _, body) = error_code(r).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let id = body["error"]["trace_id"].as_str().unwrap();
    assert_eq!(id.len(), 32);
    assert!(
        id.bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    );
    assert_ne!(id, TRACE_ID);
}

#[tokio::test]
async fn spans_reach_an_otlp_receiver_under_the_callers_trace_id() {
    let b = Arc::new(TraceBureau::default());
    let bureau_url = serve(bureau_router(&b)).await;
    let receiver = Arc::new(Receiver::default());
    let otlp = serve(
        axum::Router::new()
            .route("/v1/traces", axum::routing::post(traces))
            .with_state(Arc::clone(&receiver)),
    )
    .await;
    let t = gateway(&bureau_url, Some(format!("{otlp}/v1/traces"))).await;
    traced_drawdown(&t, "tr-otlp", Some(&traceparent())).await;

    // The batch goes out within the export interval (50 ms); wait for the request's span.
    let ours = |r: &Receiver| -> Vec<Span> {
        r.spans
            .lock()
            .unwrap()
            .iter()
            .filter(|s| hex(&s.trace_id) == TRACE_ID)
            .cloned()
            .collect()
    };
    eventually("the request's spans at the receiver", || {
        let spans = ours(&receiver);
        spans.iter().any(|s| s.name == "drawdown") && spans.iter().any(|s| s.name == "bureau.score")
    })
    .await;
    let spans = ours(&receiver);
    let named = |name: &str| spans.iter().find(|s| s.name == name).unwrap().clone();
    let request = named("drawdown");
    // The server span's parent is the caller's span.
    assert_eq!(hex(&request.parent_span_id), CALLER_SPAN);
    assert_eq!(request.kind, 2, "SPAN_KIND_SERVER");
    let attr = |s: &Span, key: &str| {
        s.attributes
            .iter()
            .find(|kv| kv.key == key)
            .map(|kv| format!("{:?}", kv.value))
    };
    assert!(
        attr(&request, "http.response.status_code")
            .unwrap()
            .contains("200")
    );
    // The bureau call and the store operations are its children.
    let bureau = named("bureau.score");
    assert_eq!(bureau.kind, 3, "SPAN_KIND_CLIENT");
    assert_eq!(bureau.parent_span_id, request.span_id);
    for op in ["store.load", "store.commit"] {
        assert_eq!(named(op).parent_span_id, request.span_id, "{op}");
    }
    // What the bureau received names the bureau call's span as its parent.
    let seen = b.seen.lock().unwrap().clone();
    let sent = seen[0].0.as_deref().unwrap();
    assert_eq!(sent, format!("00-{TRACE_ID}-{}-01", hex(&bureau.span_id)));
    assert!(
        receiver
            .service_names
            .lock()
            .unwrap()
            .iter()
            .all(|n| n.contains("loan-gateway"))
    );
    let m = t.metrics().await;
    assert!(m.contains("gateway_trace_spans_exported_total"), "{m}");
}

#[tokio::test]
async fn a_collector_that_is_down_costs_requests_nothing_and_its_spans_are_counted() {
    let b = Arc::new(TraceBureau::default());
    let bureau_url = serve(bureau_router(&b)).await;
    // A port nobody listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let t = gateway(&bureau_url, Some(format!("http://{closed}/v1/traces"))).await;
    for i in 0..5 {
        let d = traced_drawdown(&t, &format!("tr-down-{i}"), Some(&traceparent())).await;
        assert_eq!(d["outcome"], "approved", "{d}");
    }
    let dropped = "gateway_trace_spans_dropped_total{reason=\"export_failed\"}";
    let start = std::time::Instant::now();
    loop {
        let m = t.metrics().await;
        let n = m
            .lines()
            .find_map(|l| l.strip_prefix(dropped)?.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        if n > 0.0 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{m}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
