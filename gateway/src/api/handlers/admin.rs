//! The admin API: credit lines, thresholds and the peak-window policy. Every write is
//! recorded in the audit trail of operator changes ([`super::audit`]).

use super::audit::Change;
use super::{App, path_user_id, thresholds};
use crate::api::auth::Operator;
use crate::api::error::{ApiError, ErrorCode, FieldProblem};
use crate::api::json::json_response;
use crate::api::wire::*;
use crate::metrics::StoreOp;
use crate::store::Store;
use axum::extract::State;
use axum::response::Response;
use bytes::Bytes;
use risk_core::{PublishError, Thresholds};

/// `PUT /admin/credit-lines/{user_id}`. The state before (for the audit trail) is read just
/// before the write: one more round trip, on an admin route.
pub async fn put_credit_line(
    State(app): State<App>,
    operator: Operator,
    uri: axum::http::Uri,
    body: Bytes,
) -> Result<Response, ApiError> {
    let user = path_user_id(&uri)?;
    let state = parse_json::<CreditLineBody>(&body)?.validate()?;
    let before_state = app
        .timed(StoreOp::Load, None, app.store.load("", &user, None))
        .await?
        .user;
    let stored = app
        .timed(
            StoreOp::UpsertUser,
            None,
            app.store.upsert_user(&user, state),
        )
        .await?;
    let before = before_state.as_ref().map(|state| CreditLineState {
        user_id: &user,
        state,
    });
    let after = CreditLineState {
        user_id: &user,
        state: &stored,
    };
    let change = Change {
        action: "credit_line.upsert",
        route: "PUT /admin/credit-lines/{user_id}",
        target: user.as_str(),
    };
    app.record_change(&operator, change, &before, &after)
        .await?;
    Ok(json_response(&after))
}

/// `GET /admin/thresholds`.
pub async fn get_thresholds(State(app): State<App>) -> Result<Response, ApiError> {
    let th = thresholds(&app)?;
    Ok(json_response(th.document()))
}

/// `PUT /admin/thresholds`: validate, check the policy's profiles exist, publish, record.
pub async fn put_thresholds(
    State(app): State<App>,
    operator: Operator,
    body: Bytes,
) -> Result<Response, ApiError> {
    let before = app.thresholds.load_full();
    let th = parse_thresholds(&app, &body)?;
    let published = publish_thresholds(&app, th).await?;
    let change = Change {
        action: "thresholds.publish",
        route: "PUT /admin/thresholds",
        target: "thresholds",
    };
    app.record_change(
        &operator,
        change,
        &before.as_ref().map(|t| t.document()),
        published.document(),
    )
    .await?;
    Ok(json_response(published.document()))
}

/// A thresholds document from a request body, validated, with every profile the policy's
/// windows use.
pub(super) fn parse_thresholds(app: &App, body: &Bytes) -> Result<Thresholds, ApiError> {
    let text = std::str::from_utf8(body)
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
    Ok(th)
}

/// Publishes a validated thresholds document (on Redis, to every instance); answers the
/// version in force after.
pub(super) async fn publish_thresholds(
    app: &App,
    th: Thresholds,
) -> Result<std::sync::Arc<Thresholds>, ApiError> {
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
                return Ok(current);
            }
        }
    }
    match app.thresholds.publish(th) {
        Ok(published) => {
            tracing::info!(version = published.version(), "thresholds published");
            Ok(published)
        }
        Err(e @ PublishError::StaleVersion { .. }) => {
            // On Redis the store already accepted this version, so an equal version here
            // means our own notice was applied between the check above and this publish:
            // that is success, not a conflict.
            if matches!(app.store, crate::store::AnyStore::Redis(_))
                && app.thresholds.version() == version
                && let Some(current) = app.thresholds.load_full()
            {
                return Ok(current);
            }
            Err(ApiError::new(ErrorCode::StaleVersion).with_message(e.to_string()))
        }
    }
}

/// `GET /admin/policy`.
pub async fn get_policy(State(app): State<App>) -> Response {
    json_response(&*app.policy.current())
}

/// `PUT /admin/policy/force`. On Redis the force is stored first, for every instance of
/// the fleet (each follows it within one thresholds poll, see `store/redis/forced.rs`);
/// a store that does not take it answers 503 and nothing is forced. On the memory store
/// it is this instance's. The audit entry is in the store, as every other.
pub async fn force_policy(
    State(app): State<App>,
    operator: Operator,
    body: Bytes,
) -> Result<Response, ApiError> {
    let ForceBody { window } = parse_json(&body)?;
    let unknown = |e: crate::policy::UnknownWindow| {
        ApiError::invalid(vec![FieldProblem::new("window", e.to_string())])
    };
    app.policy.check_force(window.as_deref()).map_err(unknown)?;
    // What this write changes is read before the store has it: on Redis the store's notice
    // reaches this instance's own follower too, which may apply the force before the
    // handler does, and a `before` read after that would equal `after`.
    let before = app.policy.current();
    if let crate::store::AnyStore::Redis(redis) = &app.store {
        redis.store_forced_window(window.as_deref()).await?;
    }
    let snapshot = app.policy.force(window.as_deref()).map_err(unknown)?;
    tracing::info!(window = %snapshot.window, forced = snapshot.forced, "policy forced");
    let change = Change {
        action: "policy.force",
        route: "PUT /admin/policy/force",
        target: "policy",
    };
    app.record_change(&operator, change, &*before, &*snapshot)
        .await?;
    Ok(json_response(&*snapshot))
}
