//! `POST /admin/reload`: the configuration file read again ([`crate::api::reload`]).

use super::App;
use super::audit::Change;
use crate::api::auth::Operator;
use crate::api::error::{ApiError, ErrorCode, FieldProblem};
use crate::api::json::json_response;
use crate::api::reload::ReloadError;
use crate::api::wire::parse_json;
use axum::extract::State;
use axum::response::Response;
use bytes::Bytes;
use serde::Deserialize;

/// The body: an empty JSON object (the edge has checked that it is JSON; an empty body of
/// that type is taken as `{}`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReloadBody {}

/// `POST /admin/reload`: what changed live and what needs a restart (200), or why nothing
/// changed (422 `CONFIG_INVALID` naming the key; 409 `RELOAD_UNAVAILABLE` without a file).
///
/// An applied reload is recorded in the audit trail as the operator's, with the report as
/// its difference (which keys changed, never their values: keys and tokens are secrets). A
/// reload by `SIGHUP` has no operator and is logged only.
pub async fn reload_config(
    State(app): State<App>,
    operator: Operator,
    body: Bytes,
) -> Result<Response, ApiError> {
    if !body.is_empty() {
        let ReloadBody {} = parse_json(&body)?;
    }
    // A small local file: read on this thread, like the thresholds file at start.
    match app.reload_config() {
        Ok(report) => {
            let change = Change {
                action: "config.reload",
                route: "POST /admin/reload",
                target: "config",
            };
            app.record_change(&operator, change, &serde_json::json!({}), &report)
                .await?;
            Ok(json_response(&report))
        }
        Err(e @ ReloadError::NoFile) => {
            Err(ApiError::new(ErrorCode::ReloadUnavailable).with_message(e.to_string()))
        }
        Err(e) => Err(ApiError::new(ErrorCode::ConfigInvalid)
            .with_details(vec![FieldProblem::new(e.key(), e.problem())])),
    }
}
