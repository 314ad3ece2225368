//! Operations: health, readiness, metrics and the OpenAPI document.

use super::App;
use crate::api::error::{ApiError, ErrorCode};
use crate::api::json::json_response;
use crate::store::Store;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// `GET /healthz`.
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// `GET /readyz`: thresholds loaded and the store answers.
pub async fn readyz(State(app): State<App>) -> Response {
    let mut problems = Vec::new();
    if app.thresholds.load().is_none() {
        problems.push("thresholds: no version loaded yet".to_owned());
    }
    if let Err(e) = app.store.ping().await {
        problems.push(format!("store: {e}"));
    }
    if problems.is_empty() {
        (
            StatusCode::OK,
            json_response(&serde_json::json!({"ready": true})),
        )
            .into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json_response(&serde_json::json!({"ready": false, "reasons": problems})),
        )
            .into_response()
    }
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(app): State<App>) -> Response {
    let mut out = String::with_capacity(16 * 1024);
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &app.registry) {
        tracing::error!(cause = %e, "metrics encoding failed");
        return ApiError::new(ErrorCode::Internal).into_response();
    }
    let mut res = out.into_response();
    res.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    res
}

/// `GET /openapi.json`.
pub async fn openapi() -> Response {
    let mut res = crate::api::openapi::DOCUMENT.into_response();
    res.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}
