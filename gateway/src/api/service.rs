//! [`GatewayService`]: the whole request path as one tower service.

use super::state::App;
use super::{edge, error, handlers, routes};
use crate::admission::AdmissionService;
use crate::ratelimit::RateLimit;
use crate::request::{Deadline, RequestFacts, RouteClass};
use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use axum::routing::future::RouteFuture;
use futures_util::future::{BoxFuture, Either};
use std::convert::Infallible;
use std::task::{Context, Poll};
use tower::{BoxError, Service, ServiceBuilder};

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
        Self::with_routes(app, Router::new())
    }

    /// The service for `app`, serving `extra`'s routes too (unlimited, like the operations
    /// routes: the edge classes a path outside `/v1/` and `/admin/` as one).
    pub fn with_routes(app: App, extra: Router) -> Self {
        let routes = routes::router(app.clone(), extra);
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
        if !class.is_limited() {
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
