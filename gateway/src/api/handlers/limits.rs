//! Rate-limit modes: `GET /admin/limit-modes` (the modes and what the report-only ones
//! counted) and `PUT /admin/limit-modes` (recorded in the audit trail); the anomaly rules'
//! modes beside them, `GET` / `PUT /admin/rule-modes` ([`crate::anomaly`]).

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

/// The anomaly rules' modes and what the report-only ones counted.
#[derive(Debug, Serialize)]
struct RuleModesReport {
    #[serde(flatten)]
    modes: crate::anomaly::RuleModes,
    /// Since the process started, by rule: drawdowns (and distinct users) a report-only rule
    /// let through that enforcing would have refused or sent to review.
    would_refuse: std::collections::BTreeMap<&'static str, WouldRefuse>,
}

fn rule_report(app: &App) -> RuleModesReport {
    RuleModesReport {
        modes: app.anomaly.modes(),
        would_refuse: app.anomaly.would_refuse(),
    }
}

/// `GET /admin/rule-modes`.
pub async fn get_rule_modes(State(app): State<App>) -> Response {
    json_response(&rule_report(&app))
}

/// `PUT /admin/rule-modes` with `{"login_pattern": "report_only", "drawdowns_24h":
/// "enforce", "applications_1h": "enforce"}`: this instance's anomaly-rule modes from now on.
pub async fn put_rule_modes(
    State(app): State<App>,
    operator: Operator,
    body: Bytes,
) -> Result<Response, ApiError> {
    let modes: crate::anomaly::RuleModes = parse_json(&body)?;
    let live = super::thresholds(&app)?;
    let before = app.anomaly.set(modes, &live).map_err(|e| {
        // The thresholds in force relax by construction; a failure is a bug.
        tracing::error!(cause = %e, "report-only rules: the live thresholds did not relax");
        ApiError::new(crate::api::error::ErrorCode::Internal)
    })?;
    tracing::info!(?modes, "anomaly-rule modes set");
    let change = Change {
        action: "rule_modes.set",
        route: "PUT /admin/rule-modes",
        target: "rule_modes",
    };
    app.record_change(&operator, change, &before, &modes)
        .await?;
    Ok(json_response(&rule_report(&app)))
}
