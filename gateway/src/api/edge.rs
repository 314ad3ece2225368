//! The edge of the stack: request id, trace context ([`crate::trace`]), span, route class,
//! authentication, deadline, priority, the bounded body read, and the metrics and access-log
//! line ([`super::access`]) of every answer.
//!
//! Everything the inner layers (rate limits, admission) key on is put into one request
//! extension here, [`RequestFacts`], so they never parse a body: a drawdown's user id is read
//! from the already-bounded body (at most `server.body_limit_bytes`) before any risk work. A
//! drawdown body that parses and validates is handed on as [`RequestFacts::drawdown`] (and
//! the body itself is not kept), so the handler does not parse it a second time; any other
//! body is left to the handler, which reports what is wrong.

use super::error::{ApiError, ErrorCode};
use super::wire::DrawdownBody;
use super::{App, access, names};
use crate::metrics::CodeLabels;
use crate::request::notes::{Notes, noted};
use crate::request::{CertCaller, Priority, RequestFacts, RouteClass, UserKey};
use crate::trace::{Current, TraceIdHex};
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use serde::Deserialize;
use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

fn request_id(req: &Request) -> HeaderValue {
    req.headers()
        .get(names::X_REQUEST_ID)
        .filter(|v| v.len() <= 128 && v.to_str().is_ok_and(|s| !s.is_empty()))
        .cloned()
        .unwrap_or_else(|| {
            // Encoded on the stack: no intermediate `String`.
            let mut buf = [0; ulid::ULID_LEN];
            HeaderValue::from_str(ulid::Ulid::new().array_to_str(&mut buf))
                .expect("a ULID is 26 ASCII characters, always a valid header value")
        })
}

/// The edge (see the module docs): everything before and after `inner`, which answers a
/// prepared request (the rate limits, admission and the handlers: [`super::GatewayService`]).
///
/// Not an `async fn`: the request id, the class and the span are settled when it is called,
/// and the future it answers is the instrumented block alone. An `async fn` would keep its
/// arguments (the request, `app`, `inner`) beside the block they were moved into.
pub(super) fn edge<F, Fut>(app: App, mut req: Request, inner: F) -> impl Future<Output = Response>
where
    F: FnOnce(RouteClass, Request) -> Fut,
    Fut: Future<Output = Response>,
{
    let started = tokio::time::Instant::now();
    let id = request_id(&req);
    let class = RouteClass::of(req.method(), req.uri().path());
    // The caller's trace continued, or a fresh one (`crate::trace`).
    let trace = Current::begin(app.tracing.as_ref(), req.headers(), class.as_str());
    let span = tracing::debug_span!(
        "request",
        http.method = %req.method(),
        http.route = class.as_str(),
        request.id = ?id,
        user = tracing::field::Empty,
    );
    async move {
        // Whether this request's access-log line is wanted (`access` at info): what only the
        // line needs is not kept otherwise.
        let logged = tracing::enabled!(target: access::TARGET, tracing::Level::INFO);
        let method = logged.then(|| req.method().clone());
        let mut who = access::Who::default();
        // Settled before `inner` is awaited, so neither the facts nor the refusal is held
        // across that await (the future would keep room for them). Only the user is kept,
        // for the per-user trail of refusals, and only while the trail is on.
        let mut user = None;
        let refused = match prepare(&app, class, started, &mut req).await {
            Ok(facts) => {
                if logged {
                    who = access::Who::of(class, &facts);
                }
                let span = tracing::Span::current();
                // The tag is a keyed hash: only worth computing when the span is recorded.
                if !span.is_disabled()
                    && let Some(user) = &facts.user
                {
                    span.record("user", app.auth.load().user_tag(user.as_str()).as_str());
                }
                // Only the limit layers and the `/v1/` handlers read them.
                if class.is_limited() {
                    if app.trail.is_on() {
                        user.clone_from(&facts.user);
                    }
                    req.extensions_mut().insert(facts);
                }
                None
            }
            Err(e) => Some(e.into_response()),
        };
        let (mut res, notes) = match refused {
            None => trace.scope(noted(inner(class, req))).await,
            Some(res) => (res, Notes::default()),
        };
        let trace_id = TraceIdHex::new(trace.trace_id());
        // Every error, wherever it was raised, is rendered here with the request id, keeping
        // the headers set on the way out (the router's `Allow` on a 405).
        if let Some(e) = res.extensions_mut().remove::<ApiError>() {
            let set = std::mem::take(res.headers_mut());
            res = e
                .with_request_id(Some(id.clone()))
                .render_traced(Some(&trace_id));
            let headers = res.headers_mut();
            for (name, value) in &set {
                // The length was the empty placeholder's; the rendered body has its own.
                if name != header::CONTENT_LENGTH && !headers.contains_key(name) {
                    headers.append(name, value.clone());
                }
            }
        }
        let status = res.status().as_u16();
        let took = started.elapsed();
        let m = &app.metrics;
        // The slot is the class's discriminant: one slot per class (see `RouteHandles`).
        m.record_answer(class as usize, class.as_str(), status, took.as_secs_f64());
        let code = res.extensions().get::<ErrorCode>().copied();
        if let Some(code) = code {
            m.refusals
                .get_or_create(&CodeLabels {
                    code: code.as_str(),
                })
                .inc();
            tracing::debug!(status, code = code.as_str(), "refused");
            // A transient refusal leaves no other record for the user (`crate::trail`).
            if matches!(status, 429 | 503)
                && let Some(user) = &user
            {
                app.trail.refused(
                    user.as_str(),
                    class.as_str(),
                    status,
                    code.as_str(),
                    app.clock.now(),
                );
            }
        }
        trace.finish(
            status,
            class.as_str(),
            id.to_str().unwrap_or("-"),
            code.map(ErrorCode::as_str),
        );
        if let Some(method) = method {
            access::log(&access::Line {
                app: &app,
                id: &id,
                trace_id: &trace_id,
                method: &method,
                class,
                status,
                code,
                took,
                notes: &notes,
                who: &who,
            });
        }
        res.headers_mut().insert(names::X_REQUEST_ID, id);
        res
    }
    .instrument(span)
}

/// Checks and reads what the inner layers need (authentication, deadline, priority, the
/// body), into the request's facts; reads the body, if any, and leaves it in `req` unless
/// the facts carry it parsed.
async fn prepare(
    app: &App,
    class: RouteClass,
    started: tokio::time::Instant,
    req: &mut Request,
) -> Result<RequestFacts, ApiError> {
    let mut facts = RequestFacts {
        class: Some(class),
        ..RequestFacts::NONE
    };
    // 1. Authentication, before anything else is looked at.
    match class {
        RouteClass::Ops => {}
        RouteClass::Admin => {
            // Who is calling: the admin handlers record it with every change they make.
            let operator = app.auth.load().admin(req.headers())?;
            req.extensions_mut().insert(operator);
        }
        // A client certificate mapped to a caller (mutual TLS) stands for an API key.
        _ => {
            facts.caller = Some(match req.extensions().get::<CertCaller>() {
                Some(by_cert) => by_cert.0.clone(),
                None => app.auth.load().caller(req.headers())?,
            });
        }
    }
    // 2. Deadline: the caller's remaining budget, bounded, else the default.
    let server = &app.config.server;
    let budget = match req.headers().get(names::X_REQUEST_DEADLINE_MS) {
        None => server.default_deadline,
        Some(v) => {
            let ms = v
                .to_str()
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .filter(|ms| *ms >= 1);
            let ms = ms.ok_or_else(|| {
                ApiError::invalid(vec![super::error::FieldProblem::new(
                    "X-Request-Deadline-Ms",
                    "must be a whole number of milliseconds, at least 1",
                )])
            })?;
            Duration::from_millis(ms).min(server.max_deadline)
        }
    };
    facts.deadline = Some(started + budget);
    // 2b. The attempt number, checked before the body is read like every header: a whole
    // number, 0 for a first attempt (an operations route needs no header and reads none).
    let retry = match req.headers().get(names::X_RETRY_ATTEMPT) {
        Some(v) if class != RouteClass::Ops => {
            // Digits only, of any length (the document's `integer`, `minimum: 0`, with no
            // maximum): a retry is any number above 0.
            let digits = v.as_bytes();
            if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
                return Err(ApiError::invalid(vec![super::error::FieldProblem::new(
                    "X-Retry-Attempt",
                    "must be a whole number, 0 for a first attempt",
                )]));
            }
            digits.iter().any(|&d| d != b'0')
        }
        _ => false,
    };
    // 3. Priority: drawdowns are critical; a caller may only lower its own.
    let priority = if !app.config.admission.priorities {
        Priority::Default
    } else if req
        .headers()
        .get(names::X_PRIORITY)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"low"))
    {
        Priority::Low
    } else {
        class.default_priority()
    };
    facts.priority = Some(priority);
    // 3b. Shed before the body is read (`Admission::precheck`), when admission would refuse
    // now anyway, so a refusal costs no body read or parse; a retry (`X-Retry-Attempt` > 0)
    // draws from the retry budget.
    if class.is_limited() {
        app.admission
            .precheck(priority, Some(started + budget), retry)
            .map_err(|shed| super::error::from_stack_error(&shed))?;
    }
    // 4. The body: bounded in size and time, JSON, and the user it acts for; not read for a
    // method no route answers (the router answers 404 or 405, whatever the body).
    let routed = match class {
        RouteClass::Ops | RouteClass::Unrouted => false,
        RouteClass::Admin => super::routes::is_routed(req.method(), req.uri().path()),
        _ => true,
    };
    if matches!(*req.method(), Method::POST | Method::PUT) && routed {
        let deadline = started + budget;
        let cutoff = deadline.min(started + server.body_read_timeout);
        read_body(app, class, req, &mut facts, cutoff).await?;
        // The client's own upload spent the deadline: its refusal, not the service's
        // (admission would shed it as unmeetable and count it against capacity).
        if tokio::time::Instant::now() >= deadline {
            return Err(request_timeout());
        }
    } else if class == RouteClass::CreditLine
        && let Some(user) = crate::request::path_user(req.uri().path())
        && risk_core::validate_id(&user).is_ok()
    {
        facts.user = Some(UserKey::new(&user));
    }
    Ok(facts)
}

/// The answer to a body that did not arrive in time.
fn request_timeout() -> ApiError {
    ApiError::new(ErrorCode::RequestTimeout)
}

#[derive(Deserialize)]
struct Peek<'a> {
    #[serde(borrow, default)]
    user_id: Option<Cow<'a, str>>,
}

/// Reads the bounded body; a drawdown's is parsed into `facts` (then the body is not kept:
/// the gateway's service hands the parsed drawdown to its handler), any other is put back
/// for its handler.
async fn read_body(
    app: &App,
    class: RouteClass,
    req: &mut Request,
    facts: &mut RequestFacts,
    cutoff: tokio::time::Instant,
) -> Result<(), ApiError> {
    let json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            // A case-insensitive prefix, compared in place (no lower-cased copy).
            const JSON: &[u8] = b"application/json";
            ct.trim_start()
                .as_bytes()
                .get(..JSON.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(JSON))
        });
    let limit = usize::try_from(app.config.server.body_limit_bytes).unwrap_or(usize::MAX);
    if req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
        .is_some_and(|n| n > limit)
    {
        return Err(ApiError::new(ErrorCode::BodyTooLarge).with_message(format!(
            "The request body is over the limit of {limit} bytes."
        )));
    }
    let body = std::mem::take(req.body_mut());
    let bytes = tokio::time::timeout_at(cutoff, collect_limited(body, limit))
        .await
        .map_err(|_| request_timeout())?
        .map_err(|()| {
            ApiError::new(ErrorCode::BodyTooLarge).with_message(format!(
                "The request body is over the limit of {limit} bytes."
            ))
        })?;
    if !json {
        return Err(ApiError::new(ErrorCode::UnsupportedMediaType));
    }
    // Only the route's own path: the body of any other (answered 404) is left to the router.
    let parsed = (class == RouteClass::Drawdown && req.uri().path() == "/v1/drawdowns")
        .then(|| {
            // Anything else is reported by the handler, which parses it again.
            if !super::wire::is_json_object(&bytes) {
                return None;
            }
            serde_json::from_slice::<DrawdownBody>(&bytes)
                .ok()?
                .validate()
                .ok()
        })
        .flatten();
    if let Some(d) = parsed {
        let d = Arc::new(d);
        facts.user = Some(UserKey::of_drawdown(&d));
        facts.drawdown = Some(d);
        // The body is not put back: nothing reads it again.
        return Ok(());
    }
    if matches!(class, RouteClass::Drawdown | RouteClass::Appeal) {
        // Cheap: borrows the id from the body; a malformed body is reported by the handler.
        if let Ok(Peek {
            user_id: Some(user),
        }) = serde_json::from_slice::<Peek<'_>>(&bytes)
            && risk_core::validate_id(&user).is_ok()
        {
            facts.user = Some(UserKey::new(&user));
        }
    }
    *req.body_mut() = Body::from(bytes);
    Ok(())
}

/// The body's bytes, or `Err` when it fails or its data is over `limit` bytes (what
/// `axum::body::to_bytes` answers, without its queue of frames: a body of one frame, the
/// usual, is handed on as it is, without an allocation).
async fn collect_limited(mut body: Body, limit: usize) -> Result<Bytes, ()> {
    let mut first = Bytes::new();
    let mut more: Option<BytesMut> = None;
    let mut len = 0usize;
    while let Some(frame) = body.frame().await {
        // Trailers carry no data.
        let Ok(data) = frame.map_err(drop)?.into_data() else {
            continue;
        };
        if data.is_empty() {
            continue;
        }
        len = len.saturating_add(data.len());
        if len > limit {
            return Err(());
        }
        match &mut more {
            Some(buf) => buf.extend_from_slice(&data),
            None if first.is_empty() => first = data,
            None => {
                let mut buf = BytesMut::with_capacity(len);
                buf.extend_from_slice(&first);
                buf.extend_from_slice(&data);
                more = Some(buf);
            }
        }
    }
    Ok(more.map_or(first, BytesMut::freeze))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunked(chunks: &[&'static str]) -> Body {
        let frames = chunks
            .iter()
            .map(|c| Ok::<_, std::convert::Infallible>(http_body::Frame::data(Bytes::from(*c))))
            .collect::<Vec<_>>();
        Body::new(http_body_util::StreamBody::new(futures_util::stream::iter(
            frames,
        )))
    }

    #[tokio::test]
    async fn bodies_are_collected_within_the_limit() {
        let one = Bytes::from_static(b"{\"user_id\":\"u-1\"}");
        let got = collect_limited(Body::from(one.clone()), 64).await.unwrap();
        assert_eq!(got, one);
        // A body of one frame is handed on as it is.
        assert_eq!(got.as_ptr(), one.as_ptr());
        assert_eq!(
            collect_limited(chunked(&["ab", "", "cd", "e"]), 5).await,
            Ok(Bytes::from_static(b"abcde"))
        );
        assert_eq!(
            collect_limited(chunked(&["", "abc"]), 3).await,
            Ok(Bytes::from_static(b"abc"))
        );
        assert_eq!(collect_limited(Body::empty(), 0).await, Ok(Bytes::new()));
        assert_eq!(collect_limited(chunked(&["abc", "def"]), 5).await, Err(()));
        assert_eq!(collect_limited(Body::from("abcdef"), 5).await, Err(()));
    }
}
