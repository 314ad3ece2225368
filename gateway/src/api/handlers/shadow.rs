//! Shadow candidates ([`crate::shadow`]): stage, report, promote, discard. Every write is
//! recorded in the audit trail of operator changes.

use super::admin::{parse_thresholds, publish_thresholds};
use super::audit::Change;
use super::{App, rfc3339, thresholds};
use crate::api::auth::Operator;
use crate::api::error::{ApiError, ErrorCode, FieldProblem};
use crate::api::json::json_response;
use crate::shadow::{Candidate, Report};
use crate::store::{ReasonRecord, Selection, StagedCandidate, Store, StoreError};
use axum::extract::State;
use axum::response::Response;
use bytes::Bytes;
use risk_core::Thresholds;
use serde::Serialize;
use std::sync::Arc;

const TARGET: &str = "shadow";

fn no_candidate() -> ApiError {
    ApiError::new(ErrorCode::NoShadowCandidate)
}

impl App {
    /// This instance takes the candidate the store holds (`None`: none), compiled and checked
    /// against this instance's policy as a staged one is ([`crate::shadow::Shadow::follow`]).
    pub(crate) fn follow_candidate(
        &self,
        stored: Option<&StagedCandidate>,
    ) -> Result<Option<Arc<Candidate>>, String> {
        self.shadow.follow(stored, |json| {
            let th = Thresholds::from_json(json).map_err(|e| e.to_string())?;
            th.require_profiles(self.policy.compiled().profiles())
                .map_err(|e| format!("the staged candidate does not fit this policy: {e}"))?;
            Ok(th)
        })
    }

    /// The candidate the store holds now, taken by this instance: one store round trip, so
    /// that an admin route acts on the fleet's candidate (staged on any instance, before a
    /// restart), not on what this instance last saw.
    async fn synced_candidate(&self) -> Result<Option<Arc<Candidate>>, ApiError> {
        let stored = self.store.staged_candidate().await?;
        Ok(self
            .follow_candidate(stored.as_ref())
            .map_err(StoreError::Corrupt)?)
    }
}

/// `PUT /admin/shadow`: stages a thresholds document as the candidate (validated as
/// `PUT /admin/thresholds` validates one; its `version` is replaced at promotion). Replaces
/// any staged candidate and its counts; answers the (empty) report.
pub async fn stage_shadow(
    State(app): State<App>,
    operator: Operator,
    body: Bytes,
) -> Result<Response, ApiError> {
    let th = parse_thresholds(&app, &body)?;
    let live = thresholds(&app)?;
    let doc = th.document().clone();
    let zone = app.policy.compiled().zone().clone();
    let now = app.clock.now();
    let stored = StagedCandidate {
        id: StagedCandidate::mint_id(now),
        staged_by: operator.as_str().to_owned(),
        staged_at: rfc3339(now, &zone),
        document: serde_json::to_string(&doc).map_err(|e| {
            tracing::error!(cause = %e, "a validated thresholds document does not serialise");
            ApiError::new(ErrorCode::Internal)
        })?,
    };
    // The store first: the candidate every instance follows. Refused there, nothing is staged.
    app.store.stage_candidate(&stored).await?;
    let candidate = app
        .shadow
        .stage(&stored.id, th, &stored.staged_by, stored.staged_at.clone());
    tracing::info!(
        candidate = candidate.thresholds().version(),
        "shadow candidate staged"
    );
    let change = Change {
        action: "shadow.stage",
        route: "PUT /admin/shadow",
        target: TARGET,
    };
    // The difference: what the candidate changes against the live document.
    app.record_change(&operator, change, live.document(), &doc)
        .await?;
    Ok(json_response(&candidate.report()))
}

/// `GET /admin/shadow`: the staged candidate's report.
pub async fn shadow_report(State(app): State<App>) -> Result<Response, ApiError> {
    let candidate = app.synced_candidate().await?.ok_or_else(no_candidate)?;
    let report = app
        .shadow
        .with_shared_users(&candidate, candidate.report())
        .await?;
    Ok(json_response(&report))
}

/// `POST /admin/shadow/promote`'s answer.
#[derive(Debug, Serialize)]
struct Promoted<'a> {
    /// The thresholds now in force (the candidate, with the next version).
    thresholds: &'a risk_core::ThresholdsDocument,
    /// The candidate's final report.
    report: Report,
}

/// `POST /admin/shadow/promote`'s body: an empty object (a POST body is JSON).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PromoteBody {}

/// `POST /admin/shadow/promote` with `{}`: the candidate becomes the live thresholds, as the
/// version after the one in force (published as `PUT /admin/thresholds` publishes), and is no
/// longer staged. The candidate stays staged if the publication fails.
pub async fn promote_shadow(
    State(app): State<App>,
    operator: Operator,
    body: Bytes,
) -> Result<Response, ApiError> {
    let PromoteBody {} = crate::api::wire::parse_json(&body)?;
    let candidate = app.synced_candidate().await?.ok_or_else(no_candidate)?;
    let live = thresholds(&app)?;
    let mut doc = candidate.thresholds().document().clone();
    doc.version = live.version() + 1;
    let th = Thresholds::compile(doc).map_err(|e| {
        // The live version is at the largest allowed: no version follows it.
        ApiError::new(ErrorCode::StaleVersion).with_message(e.to_string())
    })?;
    let published = publish_thresholds(&app, th).await?;
    let report = candidate.report();
    // Published: the candidate is unstaged for the fleet (unless another was staged
    // meanwhile, which stays). Should the store refuse, the promotion stands (and is
    // audited below); the candidate stays staged, now equal to the live document, until a
    // discard.
    if let Err(e) = app.store.unstage_candidate(candidate.id()).await {
        tracing::error!(cause = %e,
            "shadow candidate promoted, but the store kept it staged: discard it");
    }
    app.shadow.discard();
    tracing::info!(version = published.version(), "shadow candidate promoted");
    let change = Change {
        action: "shadow.promote",
        route: "POST /admin/shadow/promote",
        target: "thresholds",
    };
    app.record_change(&operator, change, live.document(), published.document())
        .await?;
    Ok(json_response(&Promoted {
        thresholds: published.document(),
        report,
    }))
}

/// What a discarded candidate was, for the audit trail.
#[derive(Debug, Serialize)]
struct Staged<'a> {
    candidate_version: u64,
    staged_by: &'a str,
    staged_at: &'a str,
}

/// `DELETE /admin/shadow`: drops the candidate; answers its final report.
pub async fn discard_shadow(
    State(app): State<App>,
    operator: Operator,
) -> Result<Response, ApiError> {
    let candidate = app.synced_candidate().await?.ok_or_else(no_candidate)?;
    // Cleared only if it is still this one: a candidate staged meanwhile on another instance
    // is not dropped by a discard meant for the one before it.
    if !app.store.unstage_candidate(candidate.id()).await? {
        return Err(no_candidate());
    }
    app.shadow.discard();
    let report = candidate.report();
    tracing::info!(
        candidate = report.candidate_version,
        "shadow candidate discarded"
    );
    let change = Change {
        action: "shadow.discard",
        route: "DELETE /admin/shadow",
        target: TARGET,
    };
    let before = Staged {
        candidate_version: report.candidate_version,
        staged_by: &report.staged_by,
        staged_at: &report.staged_at,
    };
    app.record_change(&operator, change, &before, &serde_json::Value::Null)
        .await?;
    Ok(json_response(&report))
}

/// `POST /admin/shadow/backtest`'s body: `{"last": N}`, or `{"from": t, "to": t}` (RFC 3339
/// instants, both included).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BacktestBody {
    /// A whole number, `5` or `5.0`, as JSON Schema's `integer` allows.
    #[serde(default, deserialize_with = "crate::api::wire::some_whole_number")]
    last: Option<i64>,
    from: Option<String>,
    to: Option<String>,
}

/// The most decisions one backtest may select by count.
const MAX_BACKTEST: u64 = 10_000_000;

impl BacktestBody {
    fn selection(self) -> Result<Selection, ApiError> {
        let problem = |field: &'static str, what: &'static str| {
            ApiError::invalid(vec![FieldProblem::new(field, what)])
        };
        let instant = |field: &'static str, v: &str| {
            v.parse::<jiff::Timestamp>()
                .map_err(|_| problem(field, "must be an RFC 3339 instant with its offset"))
        };
        match (self.last, self.from, self.to) {
            (Some(n), None, None) => match u64::try_from(n) {
                Ok(n @ 1..=MAX_BACKTEST) => {
                    Ok(Selection::Last(usize::try_from(n).unwrap_or(usize::MAX)))
                }
                _ => Err(problem("last", "must be from 1 to 10,000,000")),
            },
            (None, Some(from), Some(to)) => {
                let (from, to) = (instant("from", &from)?, instant("to", &to)?);
                if from > to {
                    // Each end is well formed (the schema's part); together they select
                    // nothing, which is the request's meaning, not its form: 422.
                    return Err(ApiError::new(ErrorCode::RangeInverted)
                        .with_details(vec![FieldProblem::new("to", "must not be before `from`")]));
                }
                Ok(Selection::Range { from, to })
            }
            _ => Err(problem(
                "body",
                "send either `last`, or both `from` and `to`",
            )),
        }
    }
}

/// `POST /admin/shadow/backtest` with `{"last": 100000}` or `{"from": …, "to": …}`: the
/// staged candidate replayed over the stored inputs of the decisions selected, without
/// traffic ([`crate::backtest`]); answers the live report's shape with `selected`,
/// `replayed` and `skipped` (selected decisions without stored inputs). Changes nothing.
pub async fn backtest_shadow(State(app): State<App>, body: Bytes) -> Result<Response, ApiError> {
    let selection = crate::api::wire::parse_json::<BacktestBody>(&body)?.selection()?;
    let candidate = app.synced_candidate().await?.ok_or_else(no_candidate)?;
    let selected = app.store.select_inputs(selection).await?;
    let thresholds = candidate.thresholds().clone();
    let header = candidate.header();
    // The replay is CPU work of up to seconds: off the runtime's workers.
    let mut report = tokio::task::spawn_blocking(move || {
        crate::backtest::run(&thresholds, header, &selected, ReasonRecord::of)
    })
    .await
    .map_err(|e| {
        tracing::error!(cause = %e, "backtest failed");
        ApiError::new(ErrorCode::Internal)
    })?;
    // The samples' live explanations as answered, where the decisions are still stored.
    for sample in report.samples_mut() {
        if let Some(d) = app.store.get_decision_any(&sample.decision_id).await? {
            sample.live.reasons = d.reasons;
        }
    }
    Ok(json_response(&report))
}
