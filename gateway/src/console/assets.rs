//! The console's stylesheet and the live page's refresh script, embedded in the binary.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

/// The stylesheet (`assets/console.css`).
pub const CONSOLE_CSS: &str = include_str!("assets/console.css");

/// The live page's refresh script (`assets/live.js`).
pub const LIVE_JS: &str = include_str!("assets/live.js");

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        body,
    )
        .into_response()
}

/// `GET /console/assets/console.css`.
pub async fn stylesheet() -> Response {
    asset("text/css; charset=utf-8", CONSOLE_CSS)
}

/// `GET /console/assets/live.js`.
pub async fn live_script() -> Response {
    asset("text/javascript; charset=utf-8", LIVE_JS)
}
