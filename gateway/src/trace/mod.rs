//! Distributed tracing: the W3C trace context of each request, passed on to the credit
//! bureau, and (when `[tracing] otlp_endpoint` is set) spans exported over OTLP.
//!
//! # Layout
//! - [`context`]: reading and writing `traceparent` and `tracestate`.
//! - [`config`]: `[tracing]` ([`TracingConfig`]).
//! - [`export`]: the OpenTelemetry SDK's tracer, batch processor and OTLP exporter, bounded
//!   and counted ([`Exporter`]).
//!
//! # One request
//! The edge calls [`Current::begin`] with the request's headers: the caller's trace is
//! continued when its `traceparent` is valid, else a fresh trace starts (a random trace id,
//! or the SDK's when exporting). The trace id is in the access-log line and in every error
//! body. The inner layers and the handler run inside [`Current::scope`] (a task-local, as
//! the access log's notes are: nothing on the request path leaves its task), so the bureau
//! call reads it without a parameter threaded through: [`call`] gives it a `traceparent`
//! naming a new child span, and the `tracestate` as received.
//!
//! When exporting, the request is a span (kind server, named by its route class) and, when
//! it is sampled, its work is spans under it: the admission wait (`admission.wait`, only for
//! a request that was queued), each store operation (`store.load`, `store.commit`, …) and
//! the bureau call (`bureau.score`, kind client, whose id the bureau receives as its
//! parent). Spans are recorded after the fact from the times already taken, so a request
//! that is not sampled, or a gateway that does not export, pays one task-local read per
//! operation. Sampling: `ParentBased(TraceIdRatioBased(sample_ratio))`, so a caller's
//! `sampled` flag is followed and a fresh trace is sampled by its id.

pub mod config;
pub mod context;
pub mod export;

pub use config::TracingConfig;
pub use export::{Exporter, TraceMetrics};

use axum::http::{HeaderMap, HeaderValue};
use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId,
    TraceState, Tracer as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::SdkTracer;
use std::time::Duration;

tokio::task_local! {
    static CURRENT: Current;
}

/// A trace id as 32 lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TraceIdHex([u8; 32]);

impl TraceIdHex {
    /// `id` in hex.
    pub fn new(id: [u8; 16]) -> Self {
        let mut out = [0; 32];
        context::write_hex(&id, &mut out);
        TraceIdHex(out)
    }

    /// The digits.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("hex digits are ASCII")
    }
}

impl std::fmt::Debug for TraceIdHex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The request's span, when it is recorded, and the tracer of its children.
#[derive(Debug, Clone)]
struct Recorded {
    cx: Context,
    tracer: SdkTracer,
}

/// One request's trace.
#[derive(Debug, Clone)]
pub struct Current {
    trace_id: [u8; 16],
    flags: u8,
    tracestate: Option<HeaderValue>,
    recorded: Option<Recorded>,
}

impl Current {
    /// The trace of a request with `headers` (see the module docs); with `exporter`, its
    /// span named `name` is started now.
    pub fn begin(exporter: Option<&Exporter>, headers: &HeaderMap, name: &'static str) -> Self {
        let incoming = context::extract(headers);
        let Some(exporter) = exporter else {
            let (trace_id, flags, tracestate) = match incoming {
                Some((p, state)) => (p.trace_id, p.flags, state),
                None => (random_nonzero(), 0, None),
            };
            return Current {
                trace_id,
                flags,
                tracestate,
                recorded: None,
            };
        };
        let tracer = exporter.tracer();
        let (parent, tracestate) = match incoming {
            Some((p, state)) => {
                let otel_state = state
                    .as_ref()
                    .and_then(|s| s.to_str().ok()?.parse::<TraceState>().ok())
                    .unwrap_or_default();
                let sc = SpanContext::new(
                    TraceId::from_bytes(p.trace_id),
                    SpanId::from_bytes(p.span_id),
                    TraceFlags::new(p.flags),
                    true,
                    otel_state,
                );
                (Context::new().with_remote_span_context(sc), state)
            }
            None => (Context::new(), None),
        };
        let span = tracer
            .span_builder(name)
            .with_kind(SpanKind::Server)
            .start_with_context(tracer, &parent);
        let sc = span.span_context().clone();
        let recorded = span.is_recording().then(|| Recorded {
            cx: parent.with_span(span),
            tracer: tracer.clone(),
        });
        Current {
            trace_id: sc.trace_id().to_bytes(),
            flags: sc.trace_flags().to_u8() & context::SAMPLED,
            tracestate,
            recorded,
        }
    }

    /// The trace id.
    pub fn trace_id(&self) -> [u8; 16] {
        self.trace_id
    }

    /// Whether this request's spans are recorded (exported).
    pub fn is_recorded(&self) -> bool {
        self.recorded.is_some()
    }

    /// Runs `f` with this trace as the current one (read by [`call`] and [`record`]).
    pub fn scope<F: Future>(&self, f: F) -> impl Future<Output = F::Output> {
        CURRENT.scope(self.clone(), f)
    }

    /// Ends the request's span (when recorded) with what was answered.
    pub fn finish(&self, status: u16, route: &'static str, request_id: &str, code: Option<&str>) {
        let Some(r) = &self.recorded else {
            return;
        };
        let span = r.cx.span();
        span.set_attribute(KeyValue::new("http.route", route));
        span.set_attribute(KeyValue::new(
            "http.response.status_code",
            i64::from(status),
        ));
        span.set_attribute(KeyValue::new("request.id", request_id.to_owned()));
        if let Some(code) = code {
            span.set_attribute(KeyValue::new("error.code", code.to_owned()));
        }
        if status >= 500 {
            span.set_status(Status::error(code.unwrap_or("server error").to_owned()));
        }
        span.end();
    }
}

fn random_nonzero<const N: usize>() -> [u8; N] {
    loop {
        let id: [u8; N] = rand::random();
        if id != [0; N] {
            return id;
        }
    }
}

/// A call to another service from the current request: the headers it sends and, when the
/// request is recorded, its span.
#[derive(Debug)]
pub struct Call {
    traceparent: HeaderValue,
    tracestate: Option<HeaderValue>,
    span: Option<opentelemetry_sdk::trace::Span>,
}

impl Call {
    /// The `traceparent` to send: this trace, the call's own span as the parent.
    pub fn traceparent(&self) -> &HeaderValue {
        &self.traceparent
    }

    /// The `tracestate` to send, as the request brought it.
    pub fn tracestate(&self) -> Option<&HeaderValue> {
        self.tracestate.as_ref()
    }

    /// Ends the call's span (when recorded); `error` names a failure.
    pub fn end(self, error: Option<&'static str>) {
        if let Some(mut span) = self.span {
            if let Some(e) = error {
                span.set_attribute(KeyValue::new("error.type", e));
                span.set_status(Status::error(e));
            }
            span.end();
        }
    }
}

/// A call named `name` from the current request, starting now; `None` outside a request.
pub fn call(name: &'static str, attributes: &[(&'static str, &'static str)]) -> Option<Call> {
    CURRENT
        .try_with(|c| {
            let span = c.recorded.as_ref().map(|r| {
                r.tracer
                    .span_builder(name)
                    .with_kind(SpanKind::Client)
                    .with_attributes(attributes.iter().map(|(k, v)| KeyValue::new(*k, *v)))
                    .start_with_context(&r.tracer, &r.cx)
            });
            let span_id = span
                .as_ref()
                .map_or_else(random_nonzero, |s| s.span_context().span_id().to_bytes());
            Call {
                traceparent: context::traceparent(c.trace_id, span_id, c.flags),
                tracestate: c.tracestate.clone(),
                span,
            }
        })
        .ok()
}

/// Records a span named `name` of the current request that ended now after `took` (a store
/// operation, the admission wait); `error` names a failure. Nothing when the request is not
/// recorded.
pub fn record(
    name: &'static str,
    kind: SpanKind,
    took: Duration,
    attributes: &[(&'static str, &'static str)],
    error: Option<&'static str>,
) {
    let _ = CURRENT.try_with(|c| {
        let Some(r) = &c.recorded else {
            return;
        };
        // The exporter's wall clock, the one the SDK stamps the request's span with: the
        // spans of one request line up on it (decisions never read it).
        let end = opentelemetry::time::now();
        let mut span = r
            .tracer
            .span_builder(name)
            .with_kind(kind)
            .with_start_time(end.checked_sub(took).unwrap_or(end))
            .with_attributes(attributes.iter().map(|(k, v)| KeyValue::new(*k, *v)))
            .start_with_context(&r.tracer, &r.cx);
        if let Some(e) = error {
            span.set_attribute(KeyValue::new("error.type", e));
            span.set_status(Status::error(e));
        }
        span.end_with_timestamp(end);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn without_export_the_callers_trace_goes_on_to_a_call_with_a_new_parent() {
        let mut h = HeaderMap::new();
        h.insert(
            context::TRACEPARENT,
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        h.insert(context::TRACESTATE, HeaderValue::from_static("congo=t61"));
        let current = Current::begin(None, &h, "drawdown");
        assert_eq!(
            TraceIdHex::new(current.trace_id()).as_str(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert!(!current.is_recorded());
        let call = current
            .scope(async { call("bureau.score", &[]) })
            .await
            .unwrap();
        let sent = context::parse_traceparent(call.traceparent().as_bytes()).unwrap();
        assert_eq!(sent.trace_id, current.trace_id());
        assert_ne!(
            sent.span_id,
            [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]
        );
        assert_eq!(sent.flags, context::SAMPLED);
        assert_eq!(call.tracestate().unwrap(), "congo=t61");
        // Outside a request there is no trace to pass on.
        assert!(call_outside().is_none());
    }

    fn call_outside() -> Option<Call> {
        call("bureau.score", &[])
    }

    #[test]
    fn a_malformed_traceparent_starts_a_fresh_unsampled_trace() {
        let mut h = HeaderMap::new();
        h.insert(
            context::TRACEPARENT,
            HeaderValue::from_static("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
        );
        h.insert(context::TRACESTATE, HeaderValue::from_static("congo=t61"));
        let a = Current::begin(None, &h, "drawdown");
        let b = Current::begin(None, &h, "drawdown");
        assert_ne!(a.trace_id(), [0; 16]);
        assert_ne!(a.trace_id(), b.trace_id());
        assert_eq!(a.flags, 0);
        assert!(a.tracestate.is_none());
    }
}
