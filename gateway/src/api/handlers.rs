//! Route handlers. Each reads at most one round trip from the store before deciding and
//! commits with one atomic call; risk-core does the deciding.

use super::error::{ApiError, ErrorCode, FieldProblem};
use super::wire::*;
use super::{App, Caller};
use crate::admission::{Deadline, UserKey};
use crate::bureau::Bureau;
use crate::metrics::StoreOp;
use crate::store::{
    AppealCreated, AppealRecord, AppealResolved, AppealStatus, CommitOutcome, CommitRequest,
    DecisionRecord, Fingerprint, Loaded, ReasonRecord, Reservation, Store, StoreError,
    new_appeal_id, new_decision_id,
};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use jiff::{Timestamp, ZonedDateTime, tz::TimeZone};
use risk_core::{
    Channel, Context, Decision, DrawdownRequest, Outcome, PublishError, Reason, Thresholds, UserId,
    evaluate, quote,
};
use serde::Deserialize;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often a commit is retried when a concurrent drawdown changed the line in between.
/// Each retry re-evaluates against the state the store returned, so it converges: the line
/// only moves one way during the loop.
const MAX_COMMIT_ATTEMPTS: usize = 8;

fn rfc3339(ts: Timestamp, tz: &TimeZone) -> String {
    let offset = tz.to_offset(ts);
    let secs = offset.seconds();
    let dt = offset.to_datetime(ts);
    // The common case by hand (the strftime machinery was ~1,800 instructions a record); the
    // rare rest (years past 4 digits, offsets with seconds) keeps the general formatter.
    let (Ok(year), true) = (u16::try_from(dt.year()), secs % 60 == 0) else {
        return ts
            .to_zoned_datetime(tz.clone())
            .strftime("%Y-%m-%dT%H:%M:%S%:z")
            .to_string();
    };
    let mut out = String::with_capacity(25);
    let mut two = |n: u32, sep: Option<char>| {
        // Both digits are below 10: `from_digit` always answers.
        out.push(char::from_digit(n / 10 % 10, 10).unwrap_or('0'));
        out.push(char::from_digit(n % 10, 10).unwrap_or('0'));
        if let Some(c) = sep {
            out.push(c);
        }
    };
    let year = u32::from(year);
    two(year / 100, None);
    two(year % 100, Some('-'));
    two(dt.month().unsigned_abs().into(), Some('-'));
    two(dt.day().unsigned_abs().into(), Some('T'));
    two(dt.hour().unsigned_abs().into(), Some(':'));
    two(dt.minute().unsigned_abs().into(), Some(':'));
    two(
        dt.second().unsigned_abs().into(),
        Some(if secs < 0 { '-' } else { '+' }),
    );
    let minutes = secs.unsigned_abs() / 60;
    two(minutes / 60, Some(':'));
    two(minutes % 60, None);
    out
}

fn zoned_rfc3339(z: &ZonedDateTime) -> String {
    z.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
}

fn reason_record(r: &Reason) -> ReasonRecord {
    let e = r.code.entry();
    ReasonRecord {
        code: r.code,
        category: e.category,
        message: e.message.to_owned(),
        message_zh: e.message_zh.to_owned(),
        guidance: r.guidance(),
        guidance_zh: r.guidance_zh(),
        appealable: e.appealable,
        limit: Some(r.limit),
        actual: Some(r.actual),
        unit: Some(r.unit.as_str().to_owned()),
        suggested_amount_fen: r.suggested_amount.map(|a| a.get()),
        retry_at: r.retry_at.as_ref().map(zoned_rfc3339),
    }
}

/// A drawdown's `Idempotency-Key`: `Err` is the answer when it is missing or not a valid key.
pub(super) fn idempotency_key(headers: &HeaderMap) -> Result<Arc<str>, ApiError> {
    let Some(v) = headers.get(super::names::IDEMPOTENCY_KEY) else {
        return Err(ApiError::new(ErrorCode::IdempotencyKeyMissing));
    };
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

/// axum's `Path`, its rejection answered in the API's error shape (axum answers it as text).
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| ApiPath(v))
            .map_err(|e| ApiError::invalid(vec![FieldProblem::new("path", e.body_text())]))
    }
}

/// axum's `Query`, its rejection answered in the API's error shape (axum answers it as text).
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| ApiQuery(v))
            .map_err(|e| ApiError::invalid(vec![FieldProblem::new("query", e.body_text())]))
    }
}

fn fingerprint(d: &Drawdown) -> Fingerprint {
    use std::io::Write;
    let amount = d.amount.get().to_le_bytes();
    let parts: [&[u8]; 6] = [
        d.user.as_str().as_bytes(),
        &[0],
        &amount,
        // The `Debug` name, as before: fingerprints are stored, so the bytes must not change.
        match d.channel {
            Channel::App => b"App".as_slice(),
            Channel::Web => b"Web",
            Channel::Partner => b"Partner",
        },
        &[0],
        d.device_id.as_deref().unwrap_or("").as_bytes(),
    ];
    // BLAKE3 of the parts one after another, hashed in one call (a hasher fed six updates
    // cost twice the instructions); a validated request (ids of at most 64 bytes) always
    // fits the buffer, anything longer is hashed piece by piece, to the same digest.
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

fn replayed(record: DecisionRecord) -> Response {
    let mut res = decision_response(&record);
    res.headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    res
}

fn thresholds(app: &App) -> Result<Arc<Thresholds>, ApiError> {
    // Empty only before a first version is loaded; readiness reports it meanwhile.
    app.thresholds.load_full().ok_or_else(|| {
        ApiError::new(ErrorCode::DependencyUnavailable).with_retry_after(Duration::from_secs(1))
    })
}

impl App {
    /// Runs a store call, timed for metrics; with a deadline, the call gives up at it
    /// (`StoreError::Timeout`, answered 503 `DEPENDENCY_UNAVAILABLE`): a slow store turns into
    /// a fast refusal rather than a pile of waiting requests. A commit cut short may or may not
    /// have been applied; the caller's retry with the same idempotency key resolves it.
    ///
    /// A combinator rather than an `async fn`: an `async fn` keeps its argument `f` and the
    /// `Timeout` it moved `f` into side by side, twice the size of the store's future, and
    /// the drawdown's future holds this one (`BENCHMARKS.md`, "gateway request path"). The
    /// clock starts here, where the call is made and awaited.
    fn timed<T>(
        &self,
        op: StoreOp,
        deadline: Option<tokio::time::Instant>,
        f: impl Future<Output = Result<T, StoreError>>,
    ) -> impl Future<Output = Result<T, StoreError>> {
        use futures_util::FutureExt;
        use futures_util::future::Either;
        let start = Instant::now();
        let call = match deadline {
            Some(at) => Either::Left(
                tokio::time::timeout_at(at, f).map(|r| r.unwrap_or(Err(StoreError::Timeout))),
            ),
            None => Either::Right(f),
        };
        call.map(move |out| {
            self.metrics
                .record_store_op(op, start.elapsed().as_secs_f64(), out.is_err());
            out
        })
    }

    fn record_decision(&self, d: &DecisionRecord) {
        let m = &self.metrics;
        m.record_outcome(d.outcome);
        for r in &d.reasons {
            m.reasons
                .get_or_create(&crate::metrics::CodeLabels {
                    code: r.code.as_str(),
                })
                .inc();
        }
    }
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
pub(super) async fn drawdown_parsed(
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
            app.store.load(caller, &req.user, Some(&key)),
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
    let Some(mut state) = user else {
        return Err(ApiError::new(ErrorCode::UserNotFound));
    };
    learn_grade(app, limit_key, state.grade);

    let th = thresholds(app)?;
    let policy = app.policy.current();
    let zone = app.policy.compiled().zone().clone();
    let bureau = Bureau::consult(
        app.bureau.as_ref(),
        "drawdown",
        &req.user,
        state.grade,
        req.amount,
        deadline,
    )
    .await;
    let ctx = Context {
        profile: &policy.limits.profile,
        window_ends_at: policy.ends_at.as_ref(),
        bureau,
    };
    let request = DrawdownRequest {
        amount: req.amount,
        channel: req.channel,
    };
    // One reading of the clock per attempt (each was ~150 instructions): the first
    // attempt's decision id, `evaluated_at` and commit time are the same instant; a retry
    // reads the clock again, as before.
    let mut now = app.clock.now();
    let decision_id = new_decision_id(&req.user, now);

    for attempt in 0..MAX_COMMIT_ATTEMPTS {
        if attempt > 0 {
            now = app.clock.now();
        }
        // The engine's decision is dropped before the commit is awaited, so the drawdown's
        // future does not hold it across the await.
        let (record, reserve) = {
            let decision = evaluate(&th, &ctx, &state, &request);
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
            (record, reserve)
        };
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
            .timed(StoreOp::Commit, deadline, app.store.commit(commit))
            .await?
        {
            CommitOutcome::Committed(stored) => {
                app.record_decision(&stored);
                return Ok(decision_response(&stored));
            }
            CommitOutcome::Replayed(stored) => return Ok(replayed(stored)),
            CommitOutcome::KeyReused => return Err(ApiError::new(ErrorCode::IdempotencyKeyReused)),
            CommitOutcome::UserNotFound => return Err(ApiError::new(ErrorCode::UserNotFound)),
            CommitOutcome::LineChanged(now) => state = now,
        }
    }
    // Only reachable under extreme contention on one user: say so honestly, write nothing.
    Err(ApiError::new(ErrorCode::LineContended).with_retry_after(Duration::from_secs(1)))
}

/// Tells the per-user limit the grade of a state a handler loaded anyway (no round trip of
/// its own: see `ratelimit/user.rs`, "Grades").
fn learn_grade(app: &App, key: Option<&UserKey>, grade: risk_core::RiskGrade) {
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
        reasons: d.reasons.iter().map(reason_record).collect(),
        available_fen: d.available.get(),
        drawable_now_fen: d.drawable_now.get(),
        threshold_version: d.threshold_version,
        policy: policy.to_owned(),
        evaluated_at: rfc3339(now, zone),
        appealable: d.appealable(),
    }
}

fn user_id(raw: &str) -> Result<UserId, ApiError> {
    UserId::parse(raw)
        .map_err(|e| ApiError::invalid(vec![FieldProblem::new("user_id", e.to_string())]))
}

/// `GET /v1/credit-lines/{user_id}`: the quote that tells the truth.
pub async fn credit_line(
    State(app): State<App>,
    caller: axum::Extension<Caller>,
    deadline: Option<axum::Extension<Deadline>>,
    limit_key: Option<axum::Extension<UserKey>>,
    ApiPath(raw): ApiPath<String>,
) -> Result<Response, ApiError> {
    let deadline = deadline.map(|d| d.0.0);
    let user = user_id(&raw)?;
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
    let th = thresholds(&app)?;
    let policy = app.policy.current();
    // Consulted as a drawdown of the whole available line would be: the quote then tells
    // what a drawdown would meet, and the answer is cached for the drawdown that follows.
    let bureau = Bureau::consult(
        app.bureau.as_ref(),
        "credit_line",
        &user,
        state.grade,
        state.available(),
        deadline,
    )
    .await;
    let ctx = Context {
        profile: &policy.limits.profile,
        window_ends_at: policy.ends_at.as_ref(),
        bureau,
    };
    let q = quote(&th, &ctx, &state);
    let zone = app.policy.compiled().zone();
    Ok(json_response(&CreditLineQuote {
        user_id: user.to_string(),
        limit_fen: state.limit.get(),
        used_fen: state.used.get(),
        available_fen: q.available.get(),
        drawable_now_fen: q.drawable_now.get(),
        constraints: q.constraints.iter().map(reason_record).collect(),
        policy: policy.window.clone(),
        threshold_version: q.threshold_version,
        as_of: rfc3339(app.clock.now(), zone),
    }))
}

/// `POST /v1/appeals`.
pub async fn create_appeal(State(app): State<App>, body: Bytes) -> Result<Response, ApiError> {
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
        .timed(StoreOp::CreateAppeal, None, app.store.create_appeal(appeal))
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
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    match app
        .timed(StoreOp::GetAppeal, None, app.store.get_appeal(&id))
        .await?
    {
        Some(a) => Ok(json_response(&a)),
        None => Err(ApiError::new(ErrorCode::AppealNotFound)),
    }
}

/// `GET /v1/reason-codes`.
pub async fn reason_codes() -> Response {
    json_response(&ReasonCodes {
        reason_codes: risk_core::catalogue().collect(),
    })
}

/// `PUT /admin/credit-lines/{user_id}`.
pub async fn put_credit_line(
    State(app): State<App>,
    ApiPath(raw): ApiPath<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let user = user_id(&raw)?;
    let state = parse_json::<CreditLineBody>(&body)?.validate()?;
    let stored = app
        .timed(
            StoreOp::UpsertUser,
            None,
            app.store.upsert_user(&user, state),
        )
        .await?;
    Ok(json_response(&CreditLineState::new(&user, &stored)))
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
            app.metrics
                .threshold_version
                .set(i64::try_from(published.version()).unwrap_or(i64::MAX));
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
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_APPEALS_LISTED).contains(&limit) {
        return Err(ApiError::invalid(vec![FieldProblem::new(
            "limit",
            format!("must be between 1 and {MAX_APPEALS_LISTED} (got {limit})"),
        )]));
    }
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
        AppealResolved::Resolved(a) => Ok(json_response(&a)),
        AppealResolved::NotFound => Err(ApiError::new(ErrorCode::AppealNotFound)),
        AppealResolved::AlreadyResolved(_) => Err(ApiError::new(ErrorCode::AppealAlreadyResolved)),
    }
}

/// `GET /healthz`.
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// `GET /readyz`: thresholds loaded and the store answers.
pub async fn readyz(State(app): State<App>) -> Response {
    let mut problems = Vec::new();
    if app.thresholds.load().is_none() {
        problems.push("thresholds: no version loaded yet".to_owned());
    }
    if let Err(e) = app.store.ping().await {
        problems.push(format!("store: {e}"));
    }
    if problems.is_empty() {
        (
            StatusCode::OK,
            json_response(&serde_json::json!({"ready": true})),
        )
            .into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json_response(&serde_json::json!({"ready": false, "reasons": problems})),
        )
            .into_response()
    }
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(app): State<App>) -> Response {
    app.refresh_gauges();
    let mut out = String::with_capacity(16 * 1024);
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &app.registry) {
        tracing::error!(cause = %e, "metrics encoding failed");
        return ApiError::new(ErrorCode::Internal).into_response();
    }
    let mut res = out.into_response();
    res.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    res
}

/// `GET /openapi.json`.
pub async fn openapi() -> Response {
    let mut res = super::openapi::DOCUMENT.into_response();
    res.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_by_hand_equals_strftime() {
        let zones = [
            "Asia/Shanghai",
            "UTC",
            "America/New_York",
            "Asia/Kolkata",
            "America/St_Johns",
            "Pacific/Chatham",
            "Europe/Amsterdam",
        ];
        // From before 1900 (offsets with seconds: the fallback) to 2200, in uneven steps.
        let seconds = (0..4_000i64).map(|i| -2_300_000_000 + i * 2_123_456_789 / 1_000 + i % 7);
        for name in zones {
            let tz = TimeZone::get(name).unwrap();
            for s in seconds.clone() {
                let ts = Timestamp::new(s, 123_456_789).unwrap();
                let want = ts
                    .to_zoned_datetime(tz.clone())
                    .strftime("%Y-%m-%dT%H:%M:%S%:z")
                    .to_string();
                assert_eq!(rfc3339(ts, &tz), want, "{name} {s}");
            }
        }
        for ts in [Timestamp::MIN, Timestamp::MAX] {
            let tz = TimeZone::get("Asia/Shanghai").unwrap();
            let want = ts
                .to_zoned_datetime(tz.clone())
                .strftime("%Y-%m-%dT%H:%M:%S%:z")
                .to_string();
            assert_eq!(rfc3339(ts, &tz), want);
        }
    }

    #[test]
    fn fingerprints_hash_the_channel_debug_name_as_before() {
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
