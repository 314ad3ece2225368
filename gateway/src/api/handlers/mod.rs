//! Route handlers. Each reads at most one round trip from the store before deciding and
//! commits with one atomic call; risk-core does the deciding.

use super::App;
use super::error::{ApiError, ErrorCode, FieldProblem};
use crate::metrics::StoreOp;
use crate::store::{DecisionRecord, StoreError};
use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use jiff::{Timestamp, tz::TimeZone};
use risk_core::{Thresholds, UserId};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod admin;
mod appeals;
mod audit;
mod drawdown;
mod limits;
mod ops;
mod reload;
mod shadow;

pub use admin::*;
pub use appeals::*;
pub use audit::{AuditQuery, list_audit};
pub use drawdown::*;
pub use limits::*;
pub use ops::*;
pub use reload::*;
pub use shadow::*;

/// axum's `Path`, its rejection answered in the API's error shape (axum answers it as text).
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| ApiPath(v))
            .map_err(|e| ApiError::invalid(vec![FieldProblem::new("path", e.body_text())]))
    }
}

/// axum's `Query`, its rejection answered in the API's error shape (axum answers it as text).
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| ApiQuery(v))
            .map_err(|e| ApiError::invalid(vec![FieldProblem::new("query", e.body_text())]))
    }
}

/// `ts` in `tz`'s offset at that instant, as the API answers timestamps.
fn rfc3339(ts: Timestamp, tz: &TimeZone) -> String {
    crate::clock::rfc3339(ts, tz.to_offset(ts))
}

/// A listing's `limit`: 100 when absent; outside `1..=max`, the answer (422 naming `limit`).
fn list_limit(limit: Option<usize>, max: usize) -> Result<usize, ApiError> {
    let limit = limit.unwrap_or(100);
    if (1..=max).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::invalid(vec![FieldProblem::new(
            "limit",
            format!("must be between 1 and {max} (got {limit})"),
        )]))
    }
}

fn thresholds(app: &App) -> Result<Arc<Thresholds>, ApiError> {
    // Empty only before a first version is loaded; readiness reports it meanwhile.
    app.thresholds.load_full().ok_or_else(|| {
        ApiError::new(ErrorCode::DependencyUnavailable).with_retry_after(Duration::from_secs(1))
    })
}

impl App {
    /// Runs a store call, timed for metrics; with a deadline, the call gives up at it
    /// (`StoreError::Timeout`, answered 503 `DEPENDENCY_UNAVAILABLE`): a slow store turns into
    /// a fast refusal rather than a pile of waiting requests. A commit cut short may or may not
    /// have been applied; the caller's retry with the same idempotency key resolves it.
    ///
    /// A combinator rather than an `async fn`: an `async fn` would keep its argument `f`
    /// beside the `Timeout` it moved `f` into, and the drawdown's future holds this one. The
    /// clock starts here, where the call is made and awaited.
    fn timed<T>(
        &self,
        op: StoreOp,
        deadline: Option<tokio::time::Instant>,
        f: impl Future<Output = Result<T, StoreError>>,
    ) -> impl Future<Output = Result<T, StoreError>> {
        use futures_util::FutureExt;
        use futures_util::future::Either;
        let start = Instant::now();
        let call = match deadline {
            Some(at) => Either::Left(
                tokio::time::timeout_at(at, f).map(|r| r.unwrap_or(Err(StoreError::Timeout))),
            ),
            None => Either::Right(f),
        };
        call.map(move |out| {
            let took = start.elapsed();
            self.metrics
                .record_store_op(op, took.as_secs_f64(), out.is_err());
            crate::request::notes::add_store(took);
            crate::trace::record(
                op.span_name(),
                opentelemetry::trace::SpanKind::Client,
                took,
                &[],
                out.as_ref().err().map(StoreError::kind),
            );
            out
        })
    }

    fn record_decision(&self, d: &DecisionRecord) {
        self.trail.decision(d, self.clock.now());
        let m = &self.metrics;
        m.record_outcome(d.outcome);
        for r in &d.reasons {
            m.reasons
                .get_or_create(&crate::metrics::CodeLabels {
                    code: r.code.as_str(),
                })
                .inc();
        }
    }
}

fn user_id(raw: &str) -> Result<UserId, ApiError> {
    UserId::parse(raw)
        .map_err(|e| ApiError::invalid(vec![FieldProblem::new("user_id", e.to_string())]))
}

/// The user a credit-line route's path names, read as the edge reads it for the rate
/// limit ([`crate::request::path_user`]).
fn path_user_id(uri: &axum::http::Uri) -> Result<UserId, ApiError> {
    let raw = crate::request::path_user(uri.path()).ok_or_else(|| {
        ApiError::invalid(vec![FieldProblem::new(
            "user_id",
            "not percent-encoded UTF-8",
        )])
    })?;
    user_id(&raw)
}
