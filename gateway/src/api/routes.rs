//! The route table: the router is built from it, and the OpenAPI test checks the document
//! against it and the statuses the edge and the limit layers add ([`edge_statuses`]).

use super::error::{ApiError, ErrorCode};
use super::handlers;
use super::state::App;
use crate::policy::GlobalLimits;
use crate::request::RouteClass;
use axum::Router;
use axum::response::{IntoResponse, Response};

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

        /// The router of every route and of `extra` (pages served beside the API, such as
        /// the console), with the API's 404 and 405 answers.
        pub(super) fn router(app: App, extra: Router) -> Router {
            Router::new()
                $( .route($path, axum::routing::$method(handlers::$handler)) )*
                .with_state(app)
                .merge(extra)
                .fallback(not_found)
                .method_not_allowed_fallback(method_not_allowed)
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
    put "/admin/policy/force" => force_policy [200, 400, 500, 503],
    post "/admin/reload" => reload_config [200, 400, 409, 422, 500, 503],
    get "/admin/appeals" => list_appeals [200, 400, 500, 503],
    post "/admin/appeals/{appeal_id}/resolve" => resolve_appeal [200, 400, 404, 409, 500, 503],
    get "/admin/audit" => list_audit [200, 400, 500, 503],
    put "/admin/shadow" => stage_shadow [200, 400, 500, 503],
    get "/admin/shadow" => shadow_report [200, 404, 500, 503],
    delete "/admin/shadow" => discard_shadow [200, 404, 500, 503],
    post "/admin/shadow/promote" => promote_shadow [200, 404, 409, 500, 503],
    post "/admin/shadow/backtest" => backtest_shadow [200, 400, 404, 422, 500, 503],
    get "/admin/limit-modes" => get_limit_modes [200],
    put "/admin/limit-modes" => put_limit_modes [200, 400, 500, 503],
    get "/admin/rule-modes" => get_rule_modes [200],
    put "/admin/rule-modes" => put_rule_modes [200, 400, 500, 503],
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
    let class = RouteClass::of(&method.parse().unwrap_or(axum::http::Method::GET), path);
    let mut s = Vec::new();
    match class {
        RouteClass::Ops => return s,
        RouteClass::Admin => s.extend([401, 403]),
        _ => s.push(401),
    }
    s.push(400); // a malformed X-Request-Deadline-Ms
    if matches!(method.as_str(), "POST" | "PUT") {
        s.extend([408, 413, 415]);
    }
    if GlobalLimits::has_rate(class) {
        s.push(429);
    }
    if class.is_limited() {
        s.push(503);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edge_statuses_follow_the_route_class() {
        // Every `/v1/` route is admitted, so it may be shed (503); only the classes with a
        // global rate, whose requests also carry a user, may be rate limited (429).
        assert_eq!(edge_statuses("get", "/v1/reason-codes"), [401, 400, 503]);
        assert_eq!(
            edge_statuses("post", "/v1/drawdowns"),
            [401, 400, 408, 413, 415, 429, 503]
        );
        assert_eq!(edge_statuses("get", "/admin/policy"), [401, 403, 400]);
        assert!(edge_statuses("get", "/healthz").is_empty());
    }
}
