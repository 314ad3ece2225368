//! The admin API: credit lines, thresholds and the peak-window policy.

use super::{App, path_user_id, thresholds};
use crate::api::error::{ApiError, ErrorCode, FieldProblem};
use crate::api::json::json_response;
use crate::api::wire::*;
use crate::metrics::StoreOp;
use crate::store::Store;
use axum::extract::State;
use axum::response::Response;
use bytes::Bytes;
use risk_core::{PublishError, Thresholds};

/// `PUT /admin/credit-lines/{user_id}`.
pub async fn put_credit_line(
    State(app): State<App>,
    uri: axum::http::Uri,
    body: Bytes,
) -> Result<Response, ApiError> {
    let user = path_user_id(&uri)?;
    let state = parse_json::<CreditLineBody>(&body)?.validate()?;
    let stored = app
        .timed(
            StoreOp::UpsertUser,
            None,
            app.store.upsert_user(&user, state),
        )
        .await?;
    Ok(json_response(&CreditLineState {
        user_id: &user,
        state: &stored,
    }))
}

/// `GET /admin/thresholds`.
pub async fn get_thresholds(State(app): State<App>) -> Result<Response, ApiError> {
    let th = thresholds(&app)?;
    Ok(json_response(th.document()))
}

/// `PUT /admin/thresholds`: validate, check the policy's profiles exist, publish.
pub async fn put_thresholds(State(app): State<App>, body: Bytes) -> Result<Response, ApiError> {
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::invalid(vec![FieldProblem::new("body", "not UTF-8")]))?;
    let th = Thresholds::from_json(text).map_err(|e| {
        ApiError::invalid(vec![FieldProblem::new(
            e.field().to_owned(),
            e.problem().to_owned(),
        )])
    })?;
    th.require_profiles(app.policy.compiled().profiles())
        .map_err(|e| {
            ApiError::invalid(vec![FieldProblem::new(
                e.field().to_owned(),
                e.problem().to_owned(),
            )])
        })?;
    let version = th.version();
    if let crate::store::AnyStore::Redis(redis) = &app.store {
        // Redis first: the version every instance will apply. This instance applies it now
        // (below) rather than wait for its own notice.
        if let crate::store::ThresholdWrite::Stale { current } =
            redis.publish_thresholds(&th).await?
        {
            return Err(ApiError::new(ErrorCode::StaleVersion).with_message(format!(
                "thresholds version {version} is not greater than the current version {current}"
            )));
        }
        if app.thresholds.version() == version {
            // Our own notice was applied first.
            if let Some(current) = app.thresholds.load_full() {
                return Ok(json_response(current.document()));
            }
        }
    }
    match app.thresholds.publish(th) {
        Ok(published) => {
            tracing::info!(version = published.version(), "thresholds published");
            Ok(json_response(published.document()))
        }
        Err(e @ PublishError::StaleVersion { .. }) => {
            // On Redis the store already accepted this version, so an equal version here
            // means our own notice was applied between the check above and this publish:
            // that is success, not a conflict.
            if matches!(app.store, crate::store::AnyStore::Redis(_))
                && app.thresholds.version() == version
                && let Some(current) = app.thresholds.load_full()
            {
                return Ok(json_response(current.document()));
            }
            Err(ApiError::new(ErrorCode::StaleVersion).with_message(e.to_string()))
        }
    }
}

/// `GET /admin/policy`.
pub async fn get_policy(State(app): State<App>) -> Response {
    json_response(&*app.policy.current())
}

/// `PUT /admin/policy/force`.
pub async fn force_policy(State(app): State<App>, body: Bytes) -> Result<Response, ApiError> {
    let ForceBody { window } = parse_json(&body)?;
    let snapshot = app
        .policy
        .force(window.as_deref())
        .map_err(|e| ApiError::invalid(vec![FieldProblem::new("window", e.to_string())]))?;
    tracing::info!(window = %snapshot.window, forced = snapshot.forced, "policy forced");
    Ok(json_response(&*snapshot))
}
