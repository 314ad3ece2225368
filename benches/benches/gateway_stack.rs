//! The gateway's in-process request path: a request through `Gateway::service()` (edge, rate
//! limits, admission, handler, memory store) called as a tower `Service`, no network, next to
//! two baselines measured in the same run:
//!
//! - `bare_handler`: an axum router of the same shape whose handler reads the body and
//!   answers a fixed copy of the real response JSON (routing and body plumbing only);
//! - `handler_only`: the gateway's own handler on the same state and store, without the
//!   middleware (the store, risk-core, and the JSON of the response).
//!
//! `full_stack - handler_only` is what the middleware costs per request; the target of issue 3
//! is under 10 µs. Results and commands: `BENCHMARKS.md`, section "gateway request path".
//!
//! Every drawdown carries a fresh `Idempotency-Key` (a process-wide counter), so each one is
//! a real approval that commits and reserves 100 fen; `full_stack_replay` sends one key again
//! and again (the replay path: one store read, no commit). The user has a line of
//! `Fen::MAX` and is re-seeded before every sample; the configuration
//! (`benches/wrk/gateway.toml`, shared with the wrk run) sets every limit far above what one
//! core can send and lifts the velocity threshold (`max_drawdowns_24h`), so nothing is
//! refused.
#![allow(missing_docs, clippy::unwrap_used)]

use axum::Router;
use axum::body::Body;
use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
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
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tower::{Service, ServiceExt};

/// The configuration shared with `benches/wrk/run.sh`.
const CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/wrk/gateway.toml");
const API_KEY: &str = "bench-caller-key-0001";
const BEARER: &str = "Bearer bench-caller-key-0001";
const ADMIN_TOKEN: &str = "bench-admin-token-0001";
const USER: &str = "u-bench";
const DRAWDOWN_BODY: &[u8] = br#"{"user_id":"u-bench","amount_fen":100,"channel":"app"}"#;
const CREDIT_LINE_PATH: &str = "/v1/credit-lines/u-bench";

/// Idempotency keys: unique across the whole run. Relaxed: only uniqueness matters, and
/// `fetch_add` gives that under any ordering.
static NEXT_KEY: AtomicU64 = AtomicU64::new(0);

fn gateway() -> Gateway {
    let mut config = Config::from_file(std::path::Path::new(CONFIG)).unwrap();
    config.api_keys = vec![API_KEY.to_owned()];
    config.admin_token = ADMIN_TOKEN.to_owned();
    Gateway::build(config, SystemClock::shared()).unwrap()
}

/// (Re)sets the benchmark user: a grade-A line of `Fen::MAX`, nothing drawn.
async fn seed(app: &App) {
    let mut state = UserState::clean(Fen::MAX, RiskGrade::A);
    state.logins_30d = 12;
    state.account_age_days = 800;
    app.store
        .upsert_user(&UserId::parse(USER).unwrap(), state)
        .await
        .unwrap();
}

fn drawdown_request(key: &str) -> Request<Body> {
    Request::post("/v1/drawdowns")
        .header(AUTHORIZATION, HeaderValue::from_static(BEARER))
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .header(CONTENT_LENGTH, DRAWDOWN_BODY.len())
        .header("idempotency-key", key)
        .body(Body::from(DRAWDOWN_BODY))
        .unwrap()
}

fn fresh_drawdown() -> Request<Body> {
    let n = NEXT_KEY.fetch_add(1, Ordering::Relaxed);
    drawdown_request(&format!("bench-{n}"))
}

fn credit_line_request() -> Request<Body> {
    Request::get(CREDIT_LINE_PATH)
        .header(AUTHORIZATION, HeaderValue::from_static(BEARER))
        .body(Body::empty())
        .unwrap()
}

/// The handler-only router needs what the edge would have put in the extensions.
fn with_caller(mut req: Request<Body>, caller: &Caller) -> Request<Body> {
    req.extensions_mut().insert(caller.clone());
    req
}

async fn send<S>(svc: &mut S, req: Request<Body>) -> (StatusCode, Bytes)
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

/// `iters` requests one after another; the request is built inside the timed loop for every
/// variant alike (a header or two and a key).
async fn timed<S>(svc: &S, iters: u64, make: impl Fn() -> Request<Body>) -> Duration
where
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Clone,
{
    let mut svc = svc.clone();
    let start = Instant::now();
    for _ in 0..iters {
        let (status, body) = send(&mut svc, make()).await;
        // Anything but 200 would be a refusal or an error: a different, cheaper path.
        assert_eq!(status, StatusCode::OK, "{body:?}");
        black_box(body);
    }
    start.elapsed()
}

fn json(body: Bytes) -> Response {
    ([(CONTENT_TYPE, "application/json")], body).into_response()
}

/// The same routes with a trivial handler answering a fixed copy of the real JSON.
fn bare_router(drawdown: Bytes, credit_line: Bytes) -> Router {
    Router::new()
        .route(
            "/v1/drawdowns",
            post(move |body: Bytes| {
                let out = drawdown.clone();
                async move {
                    black_box(body);
                    json(out)
                }
            }),
        )
        .route(
            "/v1/credit-lines/{user_id}",
            get(move |Path(user): Path<String>| {
                let out = credit_line.clone();
                async move {
                    black_box(user);
                    json(out)
                }
            }),
        )
}

/// The gateway's handlers on the gateway's state, without the middleware.
fn handler_only_router(app: &App) -> Router {
    Router::new()
        .route("/v1/drawdowns", post(handlers::drawdown))
        .route("/v1/credit-lines/{user_id}", get(handlers::credit_line))
        .with_state(app.clone())
}

struct Fixture {
    gateway: Gateway,
    full: GatewayService,
    handler_only: Router,
    bare: Router,
    caller: Caller,
}

async fn fixture() -> Fixture {
    let gateway = gateway();
    seed(gateway.app()).await;
    let mut full = gateway.service();
    // One real answer of each route, checked, becomes the bare handler's fixed answer.
    let (status, drawdown) = send(&mut full, fresh_drawdown()).await;
    assert_eq!(status, StatusCode::OK, "{drawdown:?}");
    let v: serde_json::Value = serde_json::from_slice(&drawdown).unwrap();
    assert_eq!(v["outcome"], "approved", "{v}");
    let (status, credit_line) = send(&mut full, credit_line_request()).await;
    assert_eq!(status, StatusCode::OK, "{credit_line:?}");
    Fixture {
        handler_only: handler_only_router(gateway.app()),
        bare: bare_router(drawdown, credit_line),
        full,
        gateway,
        caller: Caller {
            id: "caller-bench".into(),
        },
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Every drawdown variant gets a gateway of its own, so each starts from an empty store and
/// none runs against the records another one left (a bigger store is a slower store).
fn drawdown(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("gateway_drawdown");
    g.throughput(Throughput::Elements(1));
    let fx = rt.block_on(fixture());
    g.bench_function("bare_handler", |b| {
        b.to_async(&rt)
            .iter_custom(|iters| timed(&fx.bare, iters, fresh_drawdown));
    });
    let fx = rt.block_on(fixture());
    let (app, handler_only, caller) = (fx.gateway.app(), &fx.handler_only, &fx.caller);
    g.bench_function("handler_only", |b| {
        b.to_async(&rt).iter_custom(|iters| async move {
            seed(app).await;
            timed(handler_only, iters, || {
                with_caller(fresh_drawdown(), caller)
            })
            .await
        });
    });
    let fx = rt.block_on(fixture());
    let (app, full) = (fx.gateway.app(), &fx.full);
    g.bench_function("full_stack", |b| {
        b.to_async(&rt).iter_custom(|iters| async move {
            seed(app).await;
            timed(full, iters, fresh_drawdown).await
        });
    });
    // Still approving after the run: nothing above measured a refusal.
    let mut last = fx.full.clone();
    let (_, body) = rt.block_on(send(&mut last, fresh_drawdown()));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["outcome"], "approved", "{v}");
    g.bench_function("full_stack_replay", |b| {
        b.to_async(&rt)
            .iter_custom(|iters| timed(full, iters, || drawdown_request("bench-replay")));
    });
    g.finish();
}

fn credit_line(c: &mut Criterion) {
    let rt = runtime();
    let fx = rt.block_on(fixture());
    let mut g = c.benchmark_group("gateway_credit_line");
    g.throughput(Throughput::Elements(1));
    g.bench_function("bare_handler", |b| {
        b.to_async(&rt)
            .iter_custom(|iters| timed(&fx.bare, iters, credit_line_request));
    });
    g.bench_function("handler_only", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            timed(&fx.handler_only, iters, || {
                with_caller(credit_line_request(), &fx.caller)
            })
        });
    });
    g.bench_function("full_stack", |b| {
        b.to_async(&rt)
            .iter_custom(|iters| timed(&fx.full, iters, credit_line_request));
    });
    g.finish();
}

criterion_group!(benches, drawdown, credit_line);
criterion_main!(benches);
