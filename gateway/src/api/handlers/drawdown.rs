//! The drawdown and its quote: `POST /v1/drawdowns`, `GET /v1/credit-lines/{user_id}`,
//! and the reason-code catalogue their answers refer to.

use super::{App, path_user_id, rfc3339, thresholds};
use crate::api::error::{ApiError, ErrorCode, FieldProblem};
use crate::api::json::{decision_response, json_response};
use crate::api::wire::*;
use crate::bureau::Bureau;
use crate::metrics::StoreOp;
use crate::policy::PolicySnapshot;
use crate::request::{Caller, Deadline, Drawdown, UserKey};
use crate::store::{
    CommitOutcome, CommitRequest, DecisionInputs, DecisionRecord, Fingerprint, Loaded,
    ReasonRecord, Reservation, Store, new_decision_id,
};
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use jiff::{Timestamp, tz::TimeZone};
use risk_core::{
    Channel, Context, Decision, DrawdownRequest, Fen, Outcome, RiskGrade, UserId, evaluate, quote,
};
use std::sync::Arc;
use std::time::Duration;

/// How often a commit is retried when a concurrent drawdown changed the line in between.
/// Each retry re-evaluates against the state the store returned, so it converges: the line
/// only moves one way during the loop.
const MAX_COMMIT_ATTEMPTS: usize = 8;

/// A drawdown's `Idempotency-Key`: `Err` is the answer when it is missing or not a valid key.
pub(in crate::api) fn idempotency_key(headers: &HeaderMap) -> Result<Arc<str>, ApiError> {
    let mut sent = headers.get_all(crate::api::names::IDEMPOTENCY_KEY).iter();
    let Some(v) = sent.next() else {
        return Err(ApiError::new(ErrorCode::IdempotencyKeyMissing));
    };
    // Two keys name two requests: which one the caller meant is not ours to guess.
    if sent.next().is_some() {
        return Err(ApiError::invalid(vec![FieldProblem::new(
            "Idempotency-Key",
            "sent more than once: send exactly one",
        )]));
    }
    let key = v
        .to_str()
        .ok()
        .filter(|k| risk_core::validate_id(k).is_ok())
        .ok_or_else(|| {
            ApiError::invalid(vec![FieldProblem::new(
                "Idempotency-Key",
                "must be 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'",
            )])
        })?;
    Ok(key.into())
}

/// A drawdown's `Idempotency-Key`, or the error it gets if the header is missing or not a
/// valid key. Read from the request's headers in place: axum's `HeaderMap` extractor
/// clones every header of the request to hand the handler one.
#[derive(Debug)]
pub struct IdempotencyKey(Result<Arc<str>, ApiError>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(IdempotencyKey(idempotency_key(&parts.headers)))
    }
}

fn fingerprint(d: &Drawdown) -> Fingerprint {
    use std::io::Write;
    let amount = d.amount.get().to_le_bytes();
    let parts: [&[u8]; 6] = [
        d.user.as_str().as_bytes(),
        &[0],
        &amount,
        // The channel's `Debug` name: fingerprints are stored, so these bytes must not change.
        match d.channel {
            Channel::App => b"App".as_slice(),
            Channel::Web => b"Web",
            Channel::Partner => b"Partner",
        },
        &[0],
        d.device_id.as_deref().unwrap_or("").as_bytes(),
    ];
    // BLAKE3 of the parts one after another, hashed in one call rather than fed to a hasher
    // in six updates; a validated request (ids of at most 64 bytes) always fits the buffer,
    // anything longer is hashed piece by piece, to the same digest.
    const BUF: usize = 160;
    let mut buf = [0u8; BUF];
    let mut rest = buf.as_mut_slice();
    let fits = parts.iter().all(|p| rest.write_all(p).is_ok());
    let used = BUF - rest.len();
    let digest = match buf.get(..used) {
        Some(bytes) if fits => blake3::hash(bytes),
        _ => {
            let mut h = blake3::Hasher::new();
            for p in parts {
                h.update(p);
            }
            h.finalize()
        }
    };
    Fingerprint::from_bytes(*digest.as_bytes())
}

/// The answer of a decision, noted for the access log.
fn decided(record: &DecisionRecord) -> Response {
    crate::request::notes::decision(
        record.outcome.as_str(),
        record.reasons.first().map(|r| r.code.as_str()),
    );
    decision_response(record)
}

fn replayed(record: DecisionRecord) -> Response {
    let mut res = decided(&record);
    res.headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    res
}

/// `POST /v1/drawdowns`.
pub async fn drawdown(
    State(app): State<App>,
    caller: axum::Extension<Caller>,
    deadline: Option<axum::Extension<Deadline>>,
    key: IdempotencyKey,
    user: Option<axum::Extension<UserKey>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let deadline = deadline.map(|d| d.0.0);
    let key = key.0?;
    // A body the edge parsed and validated went to `drawdown_parsed`; this one is parsed
    // here, where its problems are reported.
    let req = parse_json::<DrawdownBody>(&body)?.validate()?;
    let user = user.map(|u| u.0);
    decide_drawdown(&app, &caller.0, deadline, &req, key, user.as_ref()).await
}

/// `POST /v1/drawdowns` when the edge has parsed and validated the body: the gateway's
/// service calls this directly, without the router and its extractors (`BENCHMARKS.md`,
/// "gateway request path"), with the request's idempotency key (see [`idempotency_key`]);
/// [`drawdown`] is the same route through the router, for a body the edge could not parse,
/// whose problems it reports. Never fails: the output is the service's.
pub(in crate::api) async fn drawdown_parsed(
    app: App,
    caller: Caller,
    deadline: Option<tokio::time::Instant>,
    key: Arc<str>,
    req: Arc<Drawdown>,
    user: Option<UserKey>,
) -> Result<Response, std::convert::Infallible> {
    Ok(
        decide_drawdown(&app, &caller, deadline, &req, key, user.as_ref())
            .await
            .unwrap_or_else(IntoResponse::into_response),
    )
}

/// A drawdown's decision: load, evaluate, commit (retrying when the line moved). `limit_key`
/// is the request's per-user limit key: the loaded state's grade is learned for it.
async fn decide_drawdown(
    app: &App,
    caller: &Caller,
    deadline: Option<tokio::time::Instant>,
    req: &Drawdown,
    key: Arc<str>,
    limit_key: Option<&UserKey>,
) -> Result<Response, ApiError> {
    let fp = fingerprint(req);
    let caller = &caller.id;

    // Taken apart at once: a `Loaded` kept whole would be held across the commit's await.
    let Loaded { user, idempotent } = app
        .timed(
            StoreOp::Load,
            deadline,
            app.store.load_for_drawdown(caller, &req.user, &key),
        )
        .await?;
    // Moved whole (`map`), not taken apart by a pattern: a local only partly moved from
    // keeps its room in the future across every later await.
    if let Some(answer) = idempotent.map(|seen| {
        if seen.fingerprint == fp {
            Ok(replayed(seen.decision))
        } else {
            Err(ApiError::new(ErrorCode::IdempotencyKeyReused))
        }
    }) {
        return answer;
    }
    let Some(state) = user else {
        return Err(ApiError::new(ErrorCode::UserNotFound));
    };
    learn_grade(app, limit_key, state.grade);

    // With an anomaly rule report-only, decided without it and, to count, with it.
    let crate::anomaly::Live {
        decide: th,
        enforcing,
    } = app.anomaly.live(thresholds(app)?);
    let policy = app.policy.current();
    let zone = app.policy.compiled().zone().clone();
    let (user, grade, amount) = (&req.user, state.grade, req.amount);
    let ctx = context(app, &policy, "drawdown", user, grade, amount, deadline).await;
    let request = DrawdownRequest {
        amount: req.amount,
        channel: req.channel,
    };
    // One reading of the clock per attempt: the first attempt's decision id, `evaluated_at`
    // and commit time are the same instant; a retry reads the clock again.
    let mut now = app.clock.now();
    let decision_id = new_decision_id(&req.user, now);
    // The state the commit is checked against (on Redis, with its version when this
    // instance's turn for the user is free: see `Store::commit_seen`).
    let mut seen = app
        .timed(StoreOp::Load, deadline, app.store.seen(&req.user, state))
        .await?;

    let kept = app.config.risk.decision_inputs_kept;
    for attempt in 0..MAX_COMMIT_ATTEMPTS {
        if attempt > 0 {
            now = app.clock.now();
        }
        // The engine's decision is dropped before the commit is awaited, so the drawdown's
        // future does not hold it across the await.
        let (record, reserve, verdict, flagged) = {
            let decision = evaluate(&th, &ctx, &seen.state, &request);
            let flagged = enforcing.as_ref().map_or_else(Default::default, |e| {
                let enforced = evaluate(e, &ctx, &seen.state, &request);
                app.anomaly.would_refuse_rules(decision.outcome, &enforced)
            });
            // The staged candidate, on the same inputs: counted once the decision commits.
            let verdict = app
                .shadow
                .evaluate(&ctx, &seen.state, &request, decision.outcome);
            let record = decision_record(
                &decision_id,
                &req.user,
                &decision,
                &policy.window,
                now,
                &zone,
            );
            let reserve = (decision.outcome == Outcome::Approved).then_some(Reservation {
                amount: decision.amount,
                ceiling: decision.reserve_ceiling,
            });
            (record, reserve, verdict, flagged)
        };
        let grade = seen.state.grade;
        // The state as evaluated, kept with the decision's inputs (the commit moves
        // `seen.state` on to the state it leaves).
        let evaluated = (kept > 0).then(|| seen.state.clone());
        let commit = CommitRequest {
            caller: Arc::clone(caller),
            user: req.user.clone(),
            idempotency_key: Arc::clone(&key),
            fingerprint: fp,
            decision: record,
            reserve,
            now,
        };
        match app
            .timed(
                StoreOp::Commit,
                deadline,
                app.store.commit_seen(commit, &mut seen),
            )
            .await?
        {
            CommitOutcome::Committed(stored) => {
                app.record_decision(&stored);
                if flagged != crate::anomaly::Flagged::default() {
                    app.anomaly.count(flagged, &stored.user_id);
                }
                if let Some(state) = evaluated {
                    app.store
                        .keep_inputs(decision_inputs(&stored, state, req, &ctx), kept);
                }
                app.shadow
                    .record(verdict, &stored, grade, req, ReasonRecord::of);
                return Ok(decided(&stored));
            }
            CommitOutcome::Replayed(stored) => return Ok(replayed(stored)),
            CommitOutcome::KeyReused => return Err(ApiError::new(ErrorCode::IdempotencyKeyReused)),
            CommitOutcome::UserNotFound => return Err(ApiError::new(ErrorCode::UserNotFound)),
            CommitOutcome::LineChanged(fresh) => seen.state = fresh,
        }
    }
    // Only reachable under extreme contention on one user: say so honestly, write nothing.
    Err(ApiError::new(ErrorCode::LineContended).with_retry_after(Duration::from_secs(1)))
}

/// The context of a decision (or a quote) under `policy`, the bureau consulted for a
/// drawdown of `amount` (`route` names the consult in the bureau's metrics).
async fn context<'p>(
    app: &App,
    policy: &'p PolicySnapshot,
    route: &'static str,
    user: &UserId,
    grade: RiskGrade,
    amount: Fen,
    deadline: Option<tokio::time::Instant>,
) -> Context<'p> {
    let bureau = app.bureau.load_full();
    let bureau = Bureau::consult(bureau.as_deref(), route, user, grade, amount, deadline).await;
    Context {
        profile: &policy.limits.profile,
        window_ends_at: policy.ends_at.as_ref(),
        bureau,
    }
}

/// What a committed decision was made from, for backtests ([`crate::backtest`]).
fn decision_inputs(
    stored: &DecisionRecord,
    state: risk_core::UserState,
    req: &Drawdown,
    ctx: &Context<'_>,
) -> DecisionInputs {
    DecisionInputs {
        decision_id: stored.decision_id.clone(),
        user_id: stored.user_id.clone(),
        state,
        amount_fen: stored.amount_fen,
        channel: req.channel,
        bureau: ctx.bureau.into(),
        profile: ctx.profile.to_owned(),
        window_ends_at: ctx.window_ends_at.cloned(),
        threshold_version: stored.threshold_version,
        outcome: stored.outcome,
        reason: stored.reasons.first().map(|r| r.code),
    }
}

/// Tells the per-user limit the grade of a state a handler loaded anyway (no round trip of
/// its own: see `ratelimit/user.rs`, "Grades").
fn learn_grade(app: &App, key: Option<&UserKey>, grade: RiskGrade) {
    if let Some(key) = key {
        app.limits.learn_grade(key, grade);
    }
}

fn decision_record(
    id: &str,
    user: &UserId,
    d: &Decision<'_>,
    policy: &str,
    now: Timestamp,
    zone: &TimeZone,
) -> DecisionRecord {
    DecisionRecord {
        decision_id: id.to_owned(),
        user_id: user.as_str().to_owned(),
        outcome: d.outcome,
        amount_fen: d.amount.get(),
        reasons: d.reasons.iter().map(ReasonRecord::of).collect(),
        available_fen: d.available.get(),
        drawable_now_fen: d.drawable_now.get(),
        threshold_version: d.threshold_version,
        policy: policy.to_owned(),
        evaluated_at: rfc3339(now, zone),
        appealable: d.appealable(),
    }
}

/// `GET /v1/credit-lines/{user_id}`: the quote that tells the truth.
pub async fn credit_line(
    State(app): State<App>,
    caller: axum::Extension<Caller>,
    deadline: Option<axum::Extension<Deadline>>,
    limit_key: Option<axum::Extension<UserKey>>,
    uri: axum::http::Uri,
) -> Result<Response, ApiError> {
    let deadline = deadline.map(|d| d.0.0);
    let user = path_user_id(&uri)?;
    let loaded = app
        .timed(
            StoreOp::Load,
            deadline,
            app.store.load(&caller.0.id, &user, None),
        )
        .await?;
    let state = loaded
        .user
        .ok_or_else(|| ApiError::new(ErrorCode::UserNotFound))?;
    learn_grade(&app, limit_key.as_ref().map(|k| &k.0), state.grade);
    // A report-only anomaly rule does not hold the quote (it holds no drawdown).
    let th = app.anomaly.live(thresholds(&app)?).decide;
    let policy = app.policy.current();
    // Consulted as a drawdown of the whole available line would be: the quote then tells
    // what a drawdown would meet, and the answer is cached for the drawdown that follows.
    let (grade, whole_line) = (state.grade, state.available());
    let ctx = context(
        &app,
        &policy,
        "credit_line",
        &user,
        grade,
        whole_line,
        deadline,
    )
    .await;
    let q = quote(&th, &ctx, &state);
    app.shadow
        .quote(&ctx, &state, user.as_str(), q.drawable_now);
    let compiled = app.policy.compiled();
    let zone = compiled.zone();
    Ok(json_response(&CreditLineQuote {
        user_id: user.to_string(),
        limit_fen: state.limit.get(),
        used_fen: state.used.get(),
        available_fen: q.available.get(),
        drawable_now_fen: q.drawable_now.get(),
        constraints: q.constraints.iter().map(ReasonRecord::of).collect(),
        policy: policy.window.clone(),
        threshold_version: q.threshold_version,
        as_of: rfc3339(app.clock.now(), zone),
    }))
}

/// `GET /v1/reason-codes`.
pub async fn reason_codes() -> Response {
    json_response(&ReasonCodes {
        reason_codes: risk_core::catalogue().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_hash_the_channels_stored_name() {
        let longest = "u".repeat(64);
        // Past the one-call buffer (not a valid device id): hashed piece by piece.
        let too_long = "d".repeat(100);
        for channel in [Channel::App, Channel::Web, Channel::Partner] {
            for (user, device) in [
                ("u-1", Some("d-1")),
                ("u-1", None),
                (longest.as_str(), Some(longest.as_str())),
                (longest.as_str(), Some(too_long.as_str())),
            ] {
                let d = Drawdown {
                    user: UserId::parse(user).unwrap(),
                    amount: risk_core::Fen::new(500).unwrap(),
                    channel,
                    device_id: device.map(str::to_owned),
                };
                let mut h = blake3::Hasher::new();
                h.update(user.as_bytes());
                h.update(&[0]);
                h.update(&500u64.to_le_bytes());
                h.update(format!("{channel:?}").as_bytes());
                h.update(&[0]);
                h.update(device.unwrap_or("").as_bytes());
                assert_eq!(
                    fingerprint(&d),
                    Fingerprint::from_bytes(*h.finalize().as_bytes()),
                    "{channel:?} {user} {device:?}"
                );
            }
        }
    }
}
