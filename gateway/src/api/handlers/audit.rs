//! The audit trail of operator changes: recording a change ([`App::record_change`]) and
//! `GET /admin/audit`.
//!
//! A change is recorded after it is applied, by the instance that applied it: a write the
//! gateway refuses (400, 404, 409) changes nothing and records nothing. Should the store
//! refuse the entry after the change was applied, the answer is 503
//! `DEPENDENCY_UNAVAILABLE` with a message that says so (the change stands, its entry is
//! missing), and the entry is logged at ERROR in full, so it is never lost without a trace.

use super::{ApiQuery, App, list_limit, rfc3339};
use crate::api::auth::Operator;
use crate::api::error::{ApiError, ErrorCode, FieldProblem};
use crate::api::json::json_response;
use crate::store::{AuditCursor, OperatorChange, audit::diff};
use axum::extract::State;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// What changed: the action, the route that made it, and its target.
pub(super) struct Change<'a> {
    pub(super) action: &'static str,
    pub(super) route: &'static str,
    pub(super) target: &'a str,
}

impl App {
    /// Appends `change` by `operator` now, with the difference of `before` and `after`
    /// (serialised to JSON as the API answers them).
    pub(super) async fn record_change(
        &self,
        operator: &Operator,
        change: Change<'_>,
        before: &impl Serialize,
        after: &impl Serialize,
    ) -> Result<(), ApiError> {
        let (before, after) = (to_json(before)?, to_json(after)?);
        let zone = self.policy.compiled().zone().clone();
        let entry = OperatorChange {
            operator: operator.as_str().to_owned(),
            at: rfc3339(self.clock.now(), &zone),
            action: change.action.to_owned(),
            route: change.route.to_owned(),
            target: change.target.to_owned(),
            changes: diff(&before, &after),
        };
        match self.store.append_operator_change(entry.clone()).await {
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::error!(
                    cause = %e,
                    entry = %serde_json::to_string(&entry).unwrap_or_default(),
                    "operator change applied but its audit entry was not written"
                );
                Err(ApiError::new(ErrorCode::DependencyUnavailable)
                    .with_retry_after(Duration::from_secs(1))
                    .with_message(
                        "The change was applied, but its audit entry could not be written.",
                    ))
            }
        }
    }
}

fn to_json(v: &impl Serialize) -> Result<serde_json::Value, ApiError> {
    serde_json::to_value(v).map_err(|e| {
        tracing::error!(cause = %e, "bug: an audited record does not serialise");
        ApiError::new(ErrorCode::Internal)
    })
}

/// The query of `GET /admin/audit`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    after: Option<String>,
    limit: Option<usize>,
}

/// The most entries one `GET /admin/audit` answers.
const MAX_AUDIT_LISTED: usize = 1_000;

/// `GET /admin/audit`: one page, and the cursor of the next.
#[derive(Debug, Serialize)]
struct AuditList {
    entries: Vec<crate::store::AuditEntry>,
    /// The id of the last entry answered (pass it as `after`); `null` when the page is not
    /// full, which means the log has no more entries for now.
    next: Option<String>,
    /// Entries the store dropped for room (the memory store only; see the docs).
    dropped: u64,
}

/// `GET /admin/audit?after=<id>&limit=<n>`: the operator changes after `after` (default:
/// from the first), oldest first, up to `limit` (1 to 1,000, default 100).
pub async fn list_audit(
    State(app): State<App>,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Response, ApiError> {
    let limit = list_limit(q.limit, MAX_AUDIT_LISTED)?;
    let after = match q.after.as_deref() {
        None => AuditCursor::START,
        Some(text) => AuditCursor::parse(text).ok_or_else(|| {
            ApiError::invalid(vec![FieldProblem::new(
                "after",
                "must be an entry id, <number>-<number>",
            )])
        })?,
    };
    let page = app.store.operator_changes(after, limit).await?;
    let next = (page.entries.len() == limit)
        .then(|| page.entries.last().map(|e| e.id.clone()))
        .flatten();
    Ok(json_response(&AuditList {
        entries: page.entries,
        next,
        dropped: page.dropped,
    }))
}
