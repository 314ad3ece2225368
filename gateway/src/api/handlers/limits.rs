//! Rate-limit modes: `GET /admin/limit-modes` (the modes and what the report-only ones
//! counted) and `PUT /admin/limit-modes` (recorded in the audit trail).

use super::App;
use super::audit::Change;
use crate::api::auth::Operator;
use crate::api::error::ApiError;
use crate::api::json::json_response;
use crate::api::wire::parse_json;
use crate::ratelimit::{LimitModes, Scope, WouldRefuse};
use axum::extract::State;
use axum::response::Response;
use bytes::Bytes;
use serde::Serialize;

/// What a report-only scope counted, by scope.
#[derive(Debug, Serialize)]
struct Counted {
    user: WouldRefuse,
    global: WouldRefuse,
}

/// The modes and the counts.
#[derive(Debug, Serialize)]
struct ModesReport {
    #[serde(flatten)]
    modes: LimitModes,
    /// Since the process started: requests (and distinct users) a report-only limit let
    /// through that enforcing would have refused.
    would_refuse: Counted,
}

fn report(app: &App) -> ModesReport {
    let r = app.limits.report_only();
    ModesReport {
        modes: r.modes(),
        would_refuse: Counted {
            user: r.would_refuse(Scope::User),
            global: r.would_refuse(Scope::Global),
        },
    }
}

/// `GET /admin/limit-modes`.
pub async fn get_limit_modes(State(app): State<App>) -> Response {
    json_response(&report(&app))
}

/// `PUT /admin/limit-modes` with `{"user": "report_only", "global": "enforce"}`: this
/// instance's modes from now on.
pub async fn put_limit_modes(
    State(app): State<App>,
    operator: Operator,
    body: Bytes,
) -> Result<Response, ApiError> {
    let modes: LimitModes = parse_json(&body)?;
    let before = app.limits.report_only().set(modes);
    tracing::info!(?modes, "rate-limit modes set");
    let change = Change {
        action: "limit_modes.set",
        route: "PUT /admin/limit-modes",
        target: "limit_modes",
    };
    app.record_change(&operator, change, &before, &modes)
        .await?;
    Ok(json_response(&report(&app)))
}
