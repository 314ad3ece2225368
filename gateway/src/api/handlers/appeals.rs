//! Appeals of decisions: filed by callers (`/v1/appeals`), listed and resolved by
//! operators (`/admin/appeals`).

use super::{ApiPath, ApiQuery, App, list_limit, rfc3339};
use crate::api::error::{ApiError, ErrorCode};
use crate::api::json::json_response;
use crate::api::wire::*;
use crate::metrics::StoreOp;
use crate::request::Caller;
use crate::store::{
    AppealCreated, AppealRecord, AppealResolved, AppealStatus, Store, new_appeal_id,
};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;

/// `POST /v1/appeals`.
pub async fn create_appeal(
    State(app): State<App>,
    caller: axum::Extension<Caller>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (decision_id, user, message) = parse_json::<AppealBody>(&body)?.validate()?;
    let now = app.clock.now();
    let zone = app.policy.compiled().zone().clone();
    let due = now + app.appeal_due;
    let appeal = AppealRecord {
        appeal_id: new_appeal_id(&user, now),
        decision_id,
        user_id: user.to_string(),
        message,
        status: AppealStatus::Open,
        created_at: rfc3339(now, &zone),
        due_at: rfc3339(due, &zone),
        resolved_at: None,
        resolution_note: None,
    };
    match app
        .timed(
            StoreOp::CreateAppeal,
            None,
            app.store.create_appeal(&caller.0.id, appeal),
        )
        .await?
    {
        AppealCreated::Created(a) => Ok((StatusCode::CREATED, json_response(&a)).into_response()),
        AppealCreated::AlreadyAppealed(a) => {
            Ok((StatusCode::OK, json_response(&a)).into_response())
        }
        AppealCreated::DecisionNotFound => Err(ApiError::new(ErrorCode::DecisionNotFound)),
        AppealCreated::NotAppealable => Err(ApiError::new(ErrorCode::NotAppealable)),
    }
}

/// `GET /v1/appeals/{appeal_id}`.
pub async fn get_appeal(
    State(app): State<App>,
    caller: axum::Extension<Caller>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    match app
        .timed(
            StoreOp::GetAppeal,
            None,
            app.store.get_appeal(&caller.0.id, &id),
        )
        .await?
    {
        Some(a) => Ok(json_response(&a)),
        None => Err(ApiError::new(ErrorCode::AppealNotFound)),
    }
}

/// `?status=` of `GET /admin/appeals`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppealQuery {
    status: Option<AppealStatus>,
    limit: Option<usize>,
}

/// The most appeals one `GET /admin/appeals` lists.
const MAX_APPEALS_LISTED: usize = 1_000;

/// `GET /admin/appeals?status=open`.
pub async fn list_appeals(
    State(app): State<App>,
    ApiQuery(q): ApiQuery<AppealQuery>,
) -> Result<Response, ApiError> {
    let limit = list_limit(q.limit, MAX_APPEALS_LISTED)?;
    let appeals = app
        .timed(
            StoreOp::ListAppeals,
            None,
            app.store.list_appeals(q.status, limit),
        )
        .await?;
    Ok(json_response(&AppealList { appeals }))
}

/// `POST /admin/appeals/{appeal_id}/resolve`.
pub async fn resolve_appeal(
    State(app): State<App>,
    operator: crate::api::auth::Operator,
    ApiPath(id): ApiPath<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let ResolveBody { resolution, note } = parse_json(&body)?;
    let note = (!note.is_empty()).then_some(note);
    match app
        .timed(
            StoreOp::ResolveAppeal,
            None,
            app.store
                .resolve_appeal(&id, resolution, note, app.clock.now()),
        )
        .await?
    {
        AppealResolved::Resolved(a) => {
            // Only an open appeal is resolved: before, it was this record, open, unresolved.
            let before = AppealRecord {
                status: AppealStatus::Open,
                resolved_at: None,
                resolution_note: None,
                ..a.clone()
            };
            let change = super::audit::Change {
                action: "appeal.resolve",
                route: "POST /admin/appeals/{appeal_id}/resolve",
                target: &a.appeal_id,
            };
            app.record_change(&operator, change, &before, &a).await?;
            Ok(json_response(&a))
        }
        AppealResolved::NotFound => Err(ApiError::new(ErrorCode::AppealNotFound)),
        AppealResolved::AlreadyResolved(_) => Err(ApiError::new(ErrorCode::AppealAlreadyResolved)),
    }
}
