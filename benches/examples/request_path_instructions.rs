//! A repeatable measure of the in-process request path for `valgrind --tool=callgrind`:
//! `N` drawdowns through one variant, one after another, on a current-thread runtime, so
//! every instruction runs on the main thread and callgrind's count is the same on a quiet
//! machine and on a busy one (criterion's wall-clock figures are not, on the shared VM).
//!
//! Variants (the same three as `benches/benches/gateway_stack.rs`):
//! - `bare`: an axum router with the drawdown route whose handler reads the body and answers
//!   a fixed copy of a real drawdown answer;
//! - `handler`: the gateway's own drawdown handler on the gateway's state, no middleware;
//! - `full`: `Gateway::service()`, the whole request path;
//! - `replay`: `Gateway::service()`, one key sent again and again (the replay path);
//! - `shadow-same`: `full` with a shadow candidate staged that decides as live does (every
//!   drawdown also evaluated against it, nothing counted but the evaluation);
//! - `shadow-changed`: `full` with a candidate that rejects every drawdown live approves
//!   (the most a candidate costs: each decision counted as a change).
//! - `no-inputs`: `full` with `[risk] decision_inputs_kept = 0`: no decision keeps its
//!   inputs for backtests (`full` keeps them, as the default does).
//!
//! With `ACCESS_LOG=1` in the environment the gateway's access log is on, as the binary's
//! default filter has it: one JSON line per request, formatted by the binary's access layer
//! (`gateway::logging::AccessLayer`) and written to a sink (the cost of the line without the
//! writer thread's system call).
//!
//! Only [`measured`] is counted (`--toggle-collect`), so set-up (config, seeding, the
//! first answer) is left out; every request's status is checked inside it.
//!
//! ```sh
//! CARGO_TARGET_DIR=/work/target-perf cargo build --profile bench -p benches \
//!   --example request_path_instructions
//! for v in bare handler full; do
//!   valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*measured*' \
//!     --callgrind-out-file=/tmp/cg.$v \
//!     /work/target-perf/release/examples/request_path_instructions $v 2000
//! done
//! callgrind_annotate /tmp/cg.full | head -40    # Ir / 2000 = instructions per request
//! ```
#![allow(missing_docs, clippy::unwrap_used)]

/// The gateway binary's allocator (`gateway/src/main.rs`), so the counts are the binary's.
#[global_allocator]
static ALLOCATOR: alloc_mimalloc::MiMalloc = alloc_mimalloc::MiMalloc;

use axum::Router;
use axum::body::Body;
use axum::response::IntoResponse;
use axum::response::Response;
use axum::routing::post;
use bytes::Bytes;
use gateway::Gateway;
use gateway::api::{App, GatewayService, handlers};
use gateway::clock::SystemClock;
use gateway::config::Config;
use gateway::request::Caller;
use gateway::store::Store;
use http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderValue, Request, StatusCode};
use http_body_util::BodyExt;
use risk_core::{Fen, RiskGrade, UserId, UserState};
use std::convert::Infallible;
use std::hint::black_box;
use tower::{Service, ServiceExt};

const CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/wrk/gateway.toml");
const API_KEY: &str = "bench-caller-key-0001";
const BEARER: &str = "Bearer bench-caller-key-0001";
const DRAWDOWN_BODY: &[u8] = br#"{"user_id":"u-bench","amount_fen":100,"channel":"app"}"#;

fn drawdown_request(key: &str) -> Request<Body> {
    Request::post("/v1/drawdowns")
        .header(AUTHORIZATION, HeaderValue::from_static(BEARER))
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .header(CONTENT_LENGTH, DRAWDOWN_BODY.len())
        .header("idempotency-key", key)
        .body(Body::from(DRAWDOWN_BODY))
        .unwrap()
}

/// What a variant measures: an axum router (`bare`, `handler`) or the gateway's service.
#[derive(Clone)]
enum Target {
    Router(Router),
    Gateway(GatewayService),
}

async fn send(target: &mut Target, req: Request<Body>) -> (StatusCode, Bytes) {
    match target {
        Target::Router(r) => send_to(r, req).await,
        Target::Gateway(g) => send_to(g, req).await,
    }
}

async fn send_to<S>(svc: &mut S, req: Request<Body>) -> (StatusCode, Bytes)
where
    S: Service<Request<Body>, Response = Response, Error = Infallible>,
{
    let res = ServiceExt::<Request<Body>>::ready(svc)
        .await
        .unwrap()
        .call(req)
        .await
        .unwrap();
    let status = res.status();
    (status, res.into_body().collect().await.unwrap().to_bytes())
}

/// The counted part: `n` requests from `make`, each answered 200.
#[inline(never)]
fn measured(
    rt: &tokio::runtime::Runtime,
    target: &Target,
    n: u64,
    make: &dyn Fn(u64) -> Request<Body>,
) {
    rt.block_on(async {
        let mut svc = target.clone();
        for i in 0..n {
            let (status, body) = send(&mut svc, make(i)).await;
            assert_eq!(status, StatusCode::OK, "{body:?}");
            black_box(body);
        }
    });
}

fn main() {
    let mut args = std::env::args().skip(1);
    let variant = args.next().unwrap_or_else(|| "full".to_owned());
    let n: u64 = args.next().map_or(1000, |s| s.parse().unwrap());
    if std::env::var_os("ACCESS_LOG").is_some() {
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        tracing_subscriber::registry()
            .with(tracing_subscriber::EnvFilter::new("warn,access=info"))
            .with(gateway::logging::AccessLayer::new(
                gateway::config::LogFormat::Json,
                std::io::sink,
            ))
            .init();
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let mut config = Config::from_file(std::path::Path::new(CONFIG)).unwrap();
    config.api_keys = vec![API_KEY.to_owned()];
    config.admin_token = "bench-admin-token-0001".to_owned();
    if variant == "no-inputs" {
        config.risk.decision_inputs_kept = 0;
    }
    let gateway = Gateway::build(config, SystemClock::shared()).unwrap();
    let app: &App = gateway.app();
    let mut state = UserState::clean(Fen::MAX, RiskGrade::A);
    state.logins_30d = 12;
    state.account_age_days = 800;
    rt.block_on(
        app.store
            .upsert_user(&UserId::parse("u-bench").unwrap(), state),
    )
    .unwrap();
    let mut full = Target::Gateway(gateway.service());
    // One real answer, checked: an approval (else the run measures a refusal).
    let (status, answer) = rt.block_on(send(&mut full, drawdown_request("first")));
    assert_eq!(status, StatusCode::OK, "{answer:?}");
    let v: serde_json::Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(v["outcome"], "approved", "{v}");

    let fresh = |i: u64| drawdown_request(&format!("cg-{i}"));
    let caller = Caller {
        id: "caller-bench".into(),
    };
    match variant.as_str() {
        "bare" => {
            let bare = Router::new().route(
                "/v1/drawdowns",
                post(move |body: Bytes| {
                    let out = answer.clone();
                    async move {
                        black_box(body);
                        ([(CONTENT_TYPE, "application/json")], out).into_response()
                    }
                }),
            );
            measured(&rt, &Target::Router(bare), n, &fresh);
        }
        "handler" => {
            let handler_only = Router::new()
                .route("/v1/drawdowns", post(handlers::drawdown))
                .with_state(app.clone());
            measured(&rt, &Target::Router(handler_only), n, &|i| {
                let mut req = fresh(i);
                req.extensions_mut().insert(caller.clone());
                req
            });
        }
        "full" | "no-inputs" => measured(&rt, &full, n, &fresh),
        "shadow-same" | "shadow-changed" => {
            let live = app.thresholds.load_full().unwrap();
            let mut doc = live.document().clone();
            if variant == "shadow-changed" {
                // Below the 100 fen every drawdown asks for: SINGLE_DRAWDOWN_LIMIT.
                for profile in doc.profiles.values_mut() {
                    profile.grades.get_mut("A").unwrap().max_single_fen = 50;
                }
            }
            let candidate = risk_core::Thresholds::compile(doc).unwrap();
            app.shadow.stage(
                "sc_bench",
                candidate,
                "bench",
                "2026-12-05T00:00:00+08:00".into(),
            );
            measured(&rt, &full, n, &fresh);
            let report = app.shadow.current().unwrap().report();
            assert_eq!(report.drawdowns_evaluated, n);
            let changed: u64 = report.changes.iter().map(|c| c.count.requests).sum();
            assert_eq!(changed, if variant == "shadow-changed" { n } else { 0 });
        }
        "replay" => measured(&rt, &full, n, &|_| drawdown_request("first")),
        other => panic!(
            "unknown variant {other:?}: bare, handler, full, no-inputs, replay, shadow-same or shadow-changed"
        ),
    }
    // Still approving after the run.
    let (_, body) = rt.block_on(send(&mut full, drawdown_request("last")));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["outcome"], "approved", "{v}");
}
