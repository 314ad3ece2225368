//! The v1 HTTP API: routes, wire types, errors, and the state handlers share.
//!
//! # Layout
//! - [`service`]: [`GatewayService`], the whole request path as one tower service (edge,
//!   limits, admission, handlers).
//! - [`edge`]: request id, authentication, deadline, priority, bounded body, metrics.
//! - [`access`]: the access log, one line per answered request (target `access`).
//! - [`auth`]: API keys and the admin token ([`Auth`]).
//! - [`state`]: what the handlers share ([`AppState`], [`App`]).
//! - [`reload`]: reloading the configuration file without a restart ([`reload::Reloader`]).
//! - [`routes`]: the route table ([`ROUTES`]) and the statuses the edge adds.
//! - [`handlers`]: one function per route.
//! - [`wire`]: request and response bodies, with validation.
//! - [`json`]: JSON answers.
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

pub mod access;
pub mod auth;
pub mod edge;
pub mod error;
pub mod handlers;
pub mod json;
pub mod openapi;
pub mod reload;
pub mod routes;
pub mod service;
pub mod state;
pub mod wire;

pub use auth::Auth;
pub use routes::{ROUTES, edge_statuses};
pub use service::GatewayService;
pub use state::{App, AppState};
