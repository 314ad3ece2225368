//! The access log: one line per answered request, under its own tracing target
//! ([`TARGET`], `access`), so it is kept, filtered or sent elsewhere apart from the
//! service's other logs (`RUST_LOG=info,access=off` turns it off; `warn,access=info` keeps
//! only it and the warnings).
//!
//! A line carries the request id, the trace id (W3C, the caller's or a fresh one), the method and route class, the caller's id (`admin` on
//! the admin routes, none on the operations routes or before authentication), the status,
//! the refusal code or the decision's outcome and principal reason, the latency and the time
//! spent in the store and the credit bureau, in microseconds. It carries no personal data:
//! never a path (a credit-line path names a user) or a body, and the user only as the keyed
//! tag the other logs use ([`super::Auth::user_tag`]).
//!
//! The edge emits it after the answer is complete; what only the line needs (the caller,
//! the user, the method) is kept only when the target is enabled at info level, and the tag
//! is computed only then.

use super::App;
use super::error::ErrorCode;
use crate::request::notes::Notes;
use crate::request::{RequestFacts, RouteClass, UserKey};
use crate::trace::TraceIdHex;
use axum::http::{HeaderValue, Method};
use std::sync::Arc;
use std::time::Duration;

/// The tracing target of access-log lines.
pub const TARGET: &str = "access";

/// Who a request came from and acted for, as far as the edge learned it.
#[derive(Debug, Default)]
pub(super) struct Who {
    caller: Option<Arc<str>>,
    user: Option<UserKey>,
}

impl Who {
    /// From the facts of an authenticated request of `class`.
    pub(super) fn of(class: RouteClass, facts: &RequestFacts) -> Who {
        let caller = match class {
            RouteClass::Ops => None,
            RouteClass::Admin => Some(Arc::from("admin")),
            _ => facts.caller.as_ref().map(|c| Arc::clone(&c.id)),
        };
        Who {
            caller,
            user: facts.user.clone(),
        }
    }
}

/// One answered request.
pub(super) struct Line<'a> {
    pub(super) app: &'a App,
    pub(super) id: &'a HeaderValue,
    pub(super) trace_id: &'a TraceIdHex,
    pub(super) method: &'a Method,
    pub(super) class: RouteClass,
    pub(super) status: u16,
    pub(super) code: Option<ErrorCode>,
    pub(super) took: Duration,
    pub(super) notes: &'a Notes,
    pub(super) who: &'a Who,
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Emits `line` at info level under [`TARGET`].
pub(super) fn log(line: &Line<'_>) {
    let Line {
        app,
        id,
        trace_id,
        method,
        class,
        status,
        code,
        took,
        notes,
        who,
    } = line;
    let user = who
        .user
        .as_ref()
        .map(|u| app.auth.load().user_tag(u.as_str()));
    tracing::info!(
        target: TARGET,
        request_id = id.to_str().unwrap_or("-"),
        trace_id = trace_id.as_str(),
        method = method.as_str(),
        route = class.as_str(),
        caller = who.caller.as_deref(),
        user = user.as_deref(),
        status,
        code = code.map(ErrorCode::as_str),
        outcome = notes.outcome,
        reason = notes.reason,
        latency_us = micros(*took),
        store_us = micros(notes.store),
        store_ops = notes.store_ops,
        bureau_us = micros(notes.bureau),
        bureau_calls = notes.bureau_calls,
        "answered"
    );
}
