//! The v1 HTTP API: routes, wire types, errors, and the state handlers share.
//!
//! # Layout
//! - [`GatewayService`]: the whole request path as one tower service (edge, limits,
//!   admission, handlers).
//! - [`edge`]: request id, authentication, deadline, priority, bounded body, metrics.
//! - [`handlers`]: one function per route.
//! - [`wire`]: request and response bodies, with validation.
//! - [`error`]: the one error shape and the mapping of stack errors to it.
//! - [`openapi`]: the OpenAPI 3.1 document served at `/openapi.json`.

/// The names of the API's own headers, as constants: a lookup by a `&str` name parses and
/// hashes the name each time; by a `HeaderName` it only hashes.
pub mod names {
    use axum::http::HeaderName;

    /// `X-Request-Id`.
    pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
    /// `X-Request-Deadline-Ms`.
    pub const X_REQUEST_DEADLINE_MS: HeaderName = HeaderName::from_static("x-request-deadline-ms");
    /// `X-Priority`.
    pub const X_PRIORITY: HeaderName = HeaderName::from_static("x-priority");
    /// `X-Retry-Attempt`.
    pub const X_RETRY_ATTEMPT: HeaderName = HeaderName::from_static("x-retry-attempt");
    /// `Idempotency-Key`.
    pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
}

pub mod edge;
pub mod error;
pub mod handlers;
pub mod openapi;
pub mod wire;

use crate::admission::{Admission, AdmissionService, Deadline, RequestFacts, RouteClass};
use crate::clock::SharedClock;
use crate::config::Config;
use crate::metrics::{Forced, Metrics, PolicyLabels, PriorityLabels, ShedLabels};
use crate::policy::Policy;
use crate::ratelimit::{RateLimit, RateLimits};
use crate::store::AnyStore;
use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::future::RouteFuture;
use error::{ApiError, ErrorCode};
use futures_util::future::{BoxFuture, Either};
use prometheus_client::registry::Registry;
use risk_core::ThresholdCache;
use std::convert::Infallible;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;
use std::task::{Context, Poll};
use subtle::ConstantTimeEq;
use tower::{BoxError, Service, ServiceBuilder};

/// An authenticated caller: idempotency keys are scoped by `id`, which is derived from the
/// key (a keyed hash prefix), never the key itself.
#[derive(Debug, Clone)]
pub struct Caller {
    /// A stable, non-secret identifier of the API key.
    pub id: Arc<str>,
}

/// API keys and the admin token, compared in constant time.
pub struct Auth {
    /// (hash of key, caller).
    callers: Vec<([u8; 32], Caller)>,
    admin: [u8; 32],
    hash_key: [u8; 32],
    /// Keys the user tags of logs; derived from the admin token, so tags are stable across
    /// the instances of one deployment and cannot be reversed without the token.
    user_tag_key: [u8; 32],
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("callers", &self.callers.len())
            .finish_non_exhaustive()
    }
}

impl Auth {
    /// From the configured keys and token.
    pub fn new(api_keys: &[String], admin_token: &str) -> Self {
        // Hashing both sides to 32 bytes makes the comparison constant-time in the key's
        // length too. The hash key only needs to be fixed per process.
        let hash_key = *blake3::hash(b"loan-gateway api key v1").as_bytes();
        let h = |k: &str| *blake3::keyed_hash(&hash_key, k.as_bytes()).as_bytes();
        let callers = api_keys
            .iter()
            .map(|k| {
                let digest = h(k);
                let id = format!("caller-{}", &blake3::Hash::from(digest).to_hex()[..12]);
                (digest, Caller { id: id.into() })
            })
            .collect();
        Auth {
            callers,
            admin: h(admin_token),
            hash_key,
            user_tag_key: blake3::derive_key("loan-gateway user tag v1", admin_token.as_bytes()),
        }
    }

    fn bearer(headers: &HeaderMap) -> Option<&str> {
        let v = headers
            .get(axum::http::header::AUTHORIZATION)?
            .to_str()
            .ok()?;
        let (scheme, token) = v.split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then_some(token.trim())
    }

    fn digest(&self, token: &str) -> [u8; 32] {
        *blake3::keyed_hash(&self.hash_key, token.as_bytes()).as_bytes()
    }

    /// A user id as it may appear in logs: 16 hex digits of a keyed hash, never the id.
    pub fn user_tag(&self, user: &str) -> String {
        blake3::keyed_hash(&self.user_tag_key, user.as_bytes()).to_hex()[..16].to_owned()
    }

    /// The caller a request authenticates as.
    pub fn caller(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        let token =
            Self::bearer(headers).ok_or_else(|| ApiError::new(ErrorCode::Unauthenticated))?;
        let d = self.digest(token);
        let mut found = None;
        // Compare against every key so timing does not reveal which one matched.
        for (k, caller) in &self.callers {
            if bool::from(k.ct_eq(&d)) {
                found = Some(caller.clone());
            }
        }
        found.ok_or_else(|| ApiError::new(ErrorCode::Unauthenticated))
    }

    /// Checks the admin token; a caller key on an admin route is 403.
    pub fn admin(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let token =
            Self::bearer(headers).ok_or_else(|| ApiError::new(ErrorCode::Unauthenticated))?;
        if bool::from(self.admin.ct_eq(&self.digest(token))) {
            return Ok(());
        }
        if self.caller(headers).is_ok() {
            return Err(ApiError::new(ErrorCode::Forbidden));
        }
        Err(ApiError::new(ErrorCode::Unauthenticated))
    }
}

/// Everything the handlers share.
#[derive(Debug)]
pub struct AppState {
    /// The effective configuration.
    pub config: Config,
    /// The store.
    pub store: AnyStore,
    /// The thresholds in force.
    pub thresholds: Arc<ThresholdCache>,
    /// The peak-window policy.
    pub policy: Policy,
    /// Rate limiters.
    pub limits: RateLimits,
    /// Admission control.
    pub admission: Admission,
    /// Metrics.
    pub metrics: Metrics,
    /// The credit bureau (`None`: off).
    pub bureau: Option<crate::bureau::Bureau>,
    /// The registry `/metrics` encodes.
    pub registry: Registry,
    /// Credentials.
    pub auth: Auth,
    /// Wall time.
    pub clock: SharedClock,
    /// How long an appeal may take (the `due_at` of a new appeal).
    pub appeal_due: jiff::SignedDuration,
}

/// Shared handle to [`AppState`].
#[derive(Debug, Clone)]
pub struct App(pub Arc<AppState>);

impl Deref for App {
    type Target = AppState;
    fn deref(&self) -> &AppState {
        &self.0
    }
}

impl App {
    /// Copies the admission, policy and limiter state into their gauges (at scrape time).
    pub fn refresh_gauges(&self) {
        let m = &self.metrics;
        let a = &self.admission;
        // Admission follows the policy lazily, on arrivals; catch up before reading gauges.
        a.refresh();
        m.admission_in_flight
            .set(i64::try_from(a.in_flight()).unwrap_or(i64::MAX));
        m.admission_limit
            .set(i64::try_from(a.limit()).unwrap_or(i64::MAX));
        if let Some(s) = a.adaptive_stats() {
            let secs = |d: Option<std::time::Duration>| d.map_or(0.0, |d| d.as_secs_f64());
            m.admission_no_load_latency.set(secs(s.no_load));
            m.admission_sampled_latency.set(secs(s.current));
        }
        for p in crate::admission::Priority::ALL {
            let q = a.queued(p);
            m.admission_queued
                .get_or_create(&PriorityLabels {
                    priority: p.as_str(),
                })
                .set(i64::try_from(q).unwrap_or(i64::MAX));
            for (cause, n) in a.shed_counts(p) {
                m.admission_shed
                    .get_or_create(&ShedLabels {
                        priority: p.as_str(),
                        cause,
                    })
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
        let policy = self.policy.current();
        m.policy.clear();
        m.policy
            .get_or_create(&PolicyLabels {
                window: policy.window.clone(),
                profile: policy.profile.clone(),
                forced: if policy.forced {
                    Forced::True
                } else {
                    Forced::False
                },
            })
            .set(1);
        m.threshold_version
            .set(i64::try_from(self.thresholds.version()).unwrap_or(i64::MAX));
        m.ratelimit_tracked_users
            .set(i64::try_from(self.limits.tracked_users()).unwrap_or(i64::MAX));
    }
}

async fn not_found() -> Response {
    ApiError::new(ErrorCode::NotFound).into_response()
}

async fn method_not_allowed() -> Response {
    ApiError::new(ErrorCode::MethodNotAllowed).into_response()
}

/// Declares the routes once: the router is built from this table, and the OpenAPI test
/// checks the document against it (every route, every status it can answer).
macro_rules! routes {
    ($( $method:ident $path:literal => $handler:ident [$($status:literal),*] ),* $(,)?) => {
        /// Every route: method, path template, and the statuses its handler answers (the edge
        /// and the limit layers add theirs by route class, see [`edge_statuses`]).
        pub const ROUTES: &[(&str, &str, &[u16])] = &[
            $( (stringify!($method), $path, &[$($status),*]) ),*
        ];

        /// The routes whose path `keep` accepts.
        fn add_routes(keep: impl Fn(&str) -> bool) -> Router<App> {
            let mut router = Router::new();
            $( if keep($path) {
                router = router.route($path, axum::routing::$method(handlers::$handler));
            } )*
            router
        }
    };
}

routes! {
    post "/v1/drawdowns" => drawdown [200, 400, 404, 422, 500, 503],
    get "/v1/credit-lines/{user_id}" => credit_line [200, 400, 404, 500, 503],
    post "/v1/appeals" => create_appeal [200, 201, 400, 404, 422, 500, 503],
    get "/v1/appeals/{appeal_id}" => get_appeal [200, 404, 500, 503],
    get "/v1/reason-codes" => reason_codes [200],
    put "/admin/credit-lines/{user_id}" => put_credit_line [200, 400, 500, 503],
    get "/admin/thresholds" => get_thresholds [200, 503],
    put "/admin/thresholds" => put_thresholds [200, 400, 409, 500, 503],
    get "/admin/policy" => get_policy [200],
    put "/admin/policy/force" => force_policy [200, 400],
    get "/admin/appeals" => list_appeals [200, 400, 500, 503],
    post "/admin/appeals/{appeal_id}/resolve" => resolve_appeal [200, 400, 404, 409, 500, 503],
    get "/healthz" => healthz [200],
    get "/readyz" => readyz [200, 503],
    get "/metrics" => metrics [200],
    get "/openapi.json" => openapi [200],
}

/// Whether a route answers `method` on `path` (a `{name}` of a template matches one
/// non-empty segment). Read for admin paths only, whose class does not say it.
pub fn is_routed(method: &axum::http::Method, path: &str) -> bool {
    ROUTES.iter().any(|(m, template, _)| {
        method.as_str().eq_ignore_ascii_case(m) && {
            let mut want = template.split('/');
            let mut got = path.split('/');
            loop {
                match (want.next(), got.next()) {
                    (None, None) => break true,
                    (Some(w), Some(g)) if w.starts_with('{') && !g.is_empty() => {}
                    (Some(w), Some(g)) if w == g => {}
                    _ => break false,
                }
            }
        }
    })
}

/// Statuses the edge and the limit layers may answer on a route before its handler runs.
pub fn edge_statuses(method: &str, path: &str) -> Vec<u16> {
    let method = method.to_ascii_uppercase();
    let class = edge::classify(&method.parse().unwrap_or(axum::http::Method::GET), path);
    let mut s = Vec::new();
    match class {
        crate::admission::RouteClass::Ops => return s,
        crate::admission::RouteClass::Admin => s.extend([401, 403]),
        _ => s.push(401),
    }
    s.push(400); // a malformed X-Request-Deadline-Ms
    if matches!(method.as_str(), "POST" | "PUT") {
        s.extend([413, 415]);
    }
    if matches!(
        class,
        crate::admission::RouteClass::Drawdown
            | crate::admission::RouteClass::CreditLine
            | crate::admission::RouteClass::Appeal
    ) {
        s.push(429);
    }
    // Every `/v1/` request goes through admission, which may shed it.
    if path.starts_with("/v1/") {
        s.push(503);
    }
    s
}

/// The gateway's whole request path as one tower service, outermost first: the edge
/// (request id, span, authentication, deadline, priority, body: [`edge`]), then, for the
/// `/v1/` routes only, the rate limits (global, then per user) and admission, then the
/// router of the handlers.
///
/// Health checks, metrics and the admin API skip the limits and admission: they must answer
/// in an overload, when they are needed most. Every `/v1/` path goes through the limits and
/// admission, a path that matches no route too (it is answered 404 once admitted).
///
/// One hand-written service rather than axum middleware (`from_fn`, `HandleErrorLayer`,
/// `Router::layer`): those box the request's future, and clone a boxed service, at every
/// layer; here the only box is the edge's future, and the limit and admission layers keep
/// their named futures (`BENCHMARKS.md`, "gateway request path").
#[derive(Debug, Clone)]
pub struct GatewayService {
    app: App,
    /// The handlers, unlimited (ops and admin routes).
    routes: Router,
    /// The same handlers behind the rate limits and admission (the `/v1/` routes).
    limited: RateLimit<AdmissionService<Dispatch>>,
}

impl GatewayService {
    /// The service for `app`.
    pub fn new(app: App) -> Self {
        let routes = add_routes(|_| true)
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed)
            .with_state(app.clone());
        let limited = ServiceBuilder::new()
            .layer(app.limits.layer())
            .layer(app.admission.layer())
            .service(Dispatch {
                app: app.clone(),
                routes: routes.clone(),
            });
        GatewayService {
            app,
            routes,
            limited,
        }
    }

    /// A prepared request (the edge has run) through the limits and admission where due,
    /// then its handler.
    ///
    /// A combinator rather than an `async fn`: an `async fn` kept the request and `self` it
    /// was called with beside the futures they were moved into; `Oneshot` holds the service
    /// and the request until it calls, then only the call's future.
    fn dispatch(mut self, class: RouteClass, req: Request) -> impl Future<Output = Response> {
        use futures_util::FutureExt;
        if matches!(class, RouteClass::Ops | RouteClass::Admin) {
            // The router is always ready and never fails (`Infallible`).
            return Either::Left(self.routes.call(req).map(|answered| {
                let Ok(res) = answered;
                res
            }));
        }
        Either::Right(
            tower::ServiceExt::oneshot(self.limited, req).map(|answered| {
                answered.unwrap_or_else(|e| error::from_stack_error(e.as_ref()).into_response())
            }),
        )
    }
}

/// The innermost service of the `/v1/` routes: a drawdown whose body the edge parsed and
/// validated ([`RequestFacts::drawdown`]) goes straight to its handler
/// ([`handlers::drawdown_parsed`]: no route lookup, no extractors, no second read of the
/// body); every other request goes through the router.
#[derive(Debug, Clone)]
struct Dispatch {
    app: App,
    routes: Router,
}

impl Service<Request> for Dispatch {
    type Response = Response;
    type Error = Infallible;
    type Future = Either<RouteFuture<Infallible>, BoxFuture<'static, Result<Response, Infallible>>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The router is always ready, and so is a direct call.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let facts = req.extensions_mut().get_mut::<RequestFacts>();
        // The edge parses a drawdown only for an authenticated caller.
        if let Some(facts) = facts
            && let Some(caller) = facts.caller.clone()
            && let Some(drawdown) = facts.drawdown.take()
        {
            let deadline = facts.deadline;
            let user = facts.user.clone();
            // Read here, so the handler's future holds neither the headers nor the request.
            let answer = match handlers::idempotency_key(req.headers()) {
                Ok(key) => Box::pin(handlers::drawdown_parsed(
                    self.app.clone(),
                    caller,
                    deadline,
                    key,
                    drawdown,
                    user,
                )) as BoxFuture<'static, _>,
                Err(e) => Box::pin(std::future::ready(Ok(e.into_response()))),
            };
            return Either::Right(answer);
        }
        // The router's handlers take the caller and the deadline as extensions of their own.
        let facts = RequestFacts::of(&req);
        let (caller, deadline) = (facts.caller.clone(), facts.deadline);
        // The key the per-user limit used, for a handler that learns the user's grade.
        let user = facts.user.clone();
        let ext = req.extensions_mut();
        if let Some(caller) = caller {
            ext.insert(caller);
        }
        if let Some(deadline) = deadline {
            ext.insert(Deadline(deadline));
        }
        if let Some(user) = user {
            ext.insert(user);
        }
        Either::Left(self.routes.call(req))
    }
}

impl<B> Service<http::Request<B>> for GatewayService
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Readiness is decided per request, inside (the limits and admission answer a
        // refusal rather than apply backpressure to the connection).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        use futures_util::FutureExt;
        let this = self.clone();
        let app = this.app.clone();
        // The edge's future itself, boxed: no block around it to hold what it was built from.
        Box::pin(
            edge::edge(app, req.map(Body::new), move |class, req| {
                this.dispatch(class, req)
            })
            .map(Ok),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            axum::http::header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        h
    }

    #[test]
    fn callers_and_admin_are_told_apart() {
        let auth = Auth::new(
            &["key-aaaaaaaaaaaaaaaa".into(), "key-bbbbbbbbbbbbbbbb".into()],
            "admin-cccccccccccccc",
        );
        let a = auth.caller(&headers("key-aaaaaaaaaaaaaaaa")).unwrap();
        let b = auth.caller(&headers("key-bbbbbbbbbbbbbbbb")).unwrap();
        assert_ne!(a.id, b.id);
        assert!(
            !a.id.contains("aaaa"),
            "the caller id does not reveal the key"
        );
        assert!(auth.caller(&headers("key-zzzzzzzzzzzzzzzz")).is_err());
        assert!(auth.caller(&HeaderMap::new()).is_err());
        assert!(auth.admin(&headers("admin-cccccccccccccc")).is_ok());
        assert_eq!(
            auth.admin(&headers("key-aaaaaaaaaaaaaaaa"))
                .unwrap_err()
                .code(),
            ErrorCode::Forbidden
        );
        assert_eq!(
            auth.admin(&headers("nope-nope-nope-nope"))
                .unwrap_err()
                .code(),
            ErrorCode::Unauthenticated
        );
    }

    #[test]
    fn user_tags_hide_the_id_and_are_stable_per_deployment() {
        let auth = Auth::new(&[], "admin-cccccccccccccc");
        let tag = auth.user_tag("u-000123");
        assert_eq!(tag.len(), 16);
        assert!(!tag.contains("000123"));
        assert_eq!(
            tag,
            Auth::new(&[], "admin-cccccccccccccc").user_tag("u-000123")
        );
        assert_ne!(
            tag,
            Auth::new(&[], "admin-dddddddddddddd").user_tag("u-000123")
        );
    }
}
