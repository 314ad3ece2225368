//! Prometheus metrics, built by `register(&mut Registry) -> Self` with typed label sets.
//!
//! # Layout
//! - [`RequestLabels`]: `route` and `status` of a served request.
//! - [`RouteLabels`]: the route class alone.
//! - [`CodeLabels`]: a code (error code or reason code).
//! - [`OutcomeLabels`]: a risk outcome.
//! - [`StoreOpLabels`]: a store operation.
//! - [`PriorityLabels`]: an admission priority.
//! - [`ShedLabels`]: shed by priority and cause.
//! - [`PolicyLabels`]: the active policy.
//! - [`Forced`]: whether the policy is forced.
//! - [`Metrics`]: every metric of the gateway.

use crate::admission::Admission;
use crate::policy::Policy;
use crate::ratelimit::RateLimits;
use crate::request::Priority;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeGaugeValue, EncodeLabelSet, EncodeLabelValue, EncodeMetric,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use risk_core::ThresholdCache;
use std::fmt;
use std::sync::{Arc, OnceLock};

/// `route` and `status` of a served request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RequestLabels {
    /// Route class (`drawdown`, `credit_line`, …).
    pub route: &'static str,
    /// HTTP status.
    pub status: u16,
}

/// The route class alone.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RouteLabels {
    /// Route class.
    pub route: &'static str,
}

/// A code (error code or reason code).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct CodeLabels {
    /// The code.
    pub code: &'static str,
}

/// A risk outcome.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `approved`, `rejected`, `review`.
    pub outcome: &'static str,
}

/// A store operation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct StoreOpLabels {
    /// `load`, `commit`, …
    pub op: &'static str,
}

/// An admission priority.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct PriorityLabels {
    /// `critical`, `default`, `low`.
    pub priority: &'static str,
}

/// Shed by priority and cause.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ShedLabels {
    /// Priority.
    pub priority: &'static str,
    /// Cause.
    pub cause: &'static str,
}

/// The active policy.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct PolicyLabels {
    /// Window name or `normal`.
    pub window: String,
    /// Threshold profile.
    pub profile: String,
    /// Forced by an operator.
    pub forced: Forced,
}

/// Whether the policy is forced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
pub enum Forced {
    /// By an operator.
    True,
    /// By the calendar.
    False,
}

/// Latency buckets from 50 µs to about 6.5 s, doubling.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 2.0, 18))
}

/// Every metric of the gateway.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// Requests by route class and status.
    pub requests: Family<RequestLabels, Counter>,
    /// Request latency by route class, seconds.
    pub latency: Family<RouteLabels, Histogram>,
    /// Refusals (every error answer) by code.
    pub refusals: Family<CodeLabels, Counter>,
    /// Risk decisions by outcome.
    pub decisions: Family<OutcomeLabels, Counter>,
    /// Reasons given in risk decisions, by code.
    pub reasons: Family<CodeLabels, Counter>,
    /// Store operation latency, seconds.
    pub store_latency: Family<StoreOpLabels, Histogram>,
    /// Store operations that failed.
    pub store_errors: Family<StoreOpLabels, Counter>,
    /// Admission: time requests admitted from the queue waited in it, seconds (requests
    /// admitted at once are not observed).
    pub admission_sojourn: Histogram,
    /// `requests{status=200}` and `latency` handles per route, resolved once.
    pub routes: Arc<RouteHandles>,
    /// `store_latency` and `store_errors` handles per store operation and `decisions`
    /// handles per outcome, resolved once.
    pub handler: Arc<HandlerHandles>,
}

/// Route slots of [`RouteHandles`] (one per route class; more is harmless).
pub const ROUTE_SLOTS: usize = 8;

/// The per-route handles every answer updates, kept so the edge does not look a label set
/// up in a `Family` (a hash and a read lock) twice per request. A handle is resolved through
/// `get_or_create` on the route's first such answer, so `/metrics` lists exactly the series
/// it listed before; the cached `Counter`/`Histogram` shares its value with the family's.
#[derive(Debug, Default)]
pub struct RouteHandles {
    ok: [OnceLock<Counter>; ROUTE_SLOTS],
    latency: [OnceLock<Histogram>; ROUTE_SLOTS],
}

impl Metrics {
    /// Counts one answer of `route` (cached in `slot`, below [`ROUTE_SLOTS`]; one slot per
    /// route) with `status`, and observes its latency.
    pub fn record_answer(&self, slot: usize, route: &'static str, status: u16, seconds: f64) {
        let labels = || RequestLabels { route, status };
        match self.routes.ok.get(slot) {
            Some(cell) if status == 200 => cell
                .get_or_init(|| self.requests.get_or_create(&labels()).clone())
                .inc(),
            _ => self.requests.get_or_create(&labels()).inc(),
        };
        let route_labels = || RouteLabels { route };
        match self.routes.latency.get(slot) {
            Some(cell) => cell
                .get_or_init(|| self.latency.get_or_create(&route_labels()).clone())
                .observe(seconds),
            None => self.latency.get_or_create(&route_labels()).observe(seconds),
        }
    }
}

/// A store operation the handlers time: the `op` label of `store_latency` and
/// `store_errors`, and the slot of its cached handles in [`HandlerHandles`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoreOp {
    /// `load`.
    Load,
    /// `commit`.
    Commit,
    /// `upsert_user`.
    UpsertUser,
    /// `create_appeal`.
    CreateAppeal,
    /// `get_appeal`.
    GetAppeal,
    /// `list_appeals`.
    ListAppeals,
    /// `resolve_appeal`.
    ResolveAppeal,
}

impl StoreOp {
    /// Every operation, in slot order.
    pub const ALL: [StoreOp; 7] = [
        StoreOp::Load,
        StoreOp::Commit,
        StoreOp::UpsertUser,
        StoreOp::CreateAppeal,
        StoreOp::GetAppeal,
        StoreOp::ListAppeals,
        StoreOp::ResolveAppeal,
    ];

    /// The `op` label.
    pub const fn as_str(self) -> &'static str {
        match self {
            StoreOp::Load => "load",
            StoreOp::Commit => "commit",
            StoreOp::UpsertUser => "upsert_user",
            StoreOp::CreateAppeal => "create_appeal",
            StoreOp::GetAppeal => "get_appeal",
            StoreOp::ListAppeals => "list_appeals",
            StoreOp::ResolveAppeal => "resolve_appeal",
        }
    }

    /// The name of its span (`crate::trace`).
    pub const fn span_name(self) -> &'static str {
        match self {
            StoreOp::Load => "store.load",
            StoreOp::Commit => "store.commit",
            StoreOp::UpsertUser => "store.upsert_user",
            StoreOp::CreateAppeal => "store.create_appeal",
            StoreOp::GetAppeal => "store.get_appeal",
            StoreOp::ListAppeals => "store.list_appeals",
            StoreOp::ResolveAppeal => "store.resolve_appeal",
        }
    }
}

/// The handles the handlers update on every request, kept (as [`RouteHandles`] are) so a
/// drawdown does not look a label set up in a `Family` (a hash and a read lock) three times.
/// Each is resolved through `get_or_create` on its first use, so `/metrics` lists exactly the
/// series it listed before (a `store_errors` series appears with the operation's first
/// failure); the cached metric shares its value with the family's.
#[derive(Debug, Default)]
pub struct HandlerHandles {
    store_latency: [OnceLock<Histogram>; StoreOp::ALL.len()],
    store_errors: [OnceLock<Counter>; StoreOp::ALL.len()],
    decisions: [OnceLock<Counter>; 3],
}

impl Metrics {
    /// Observes one store operation of `seconds`, and counts it as failed if it `failed`.
    pub fn record_store_op(&self, op: StoreOp, seconds: f64, failed: bool) {
        let labels = StoreOpLabels { op: op.as_str() };
        let slot = op as usize;
        with_handle(
            &self.handler.store_latency,
            slot,
            || self.store_latency.get_or_create(&labels).clone(),
            |h| h.observe(seconds),
        );
        if failed {
            with_handle(
                &self.handler.store_errors,
                slot,
                || self.store_errors.get_or_create(&labels).clone(),
                |c| {
                    c.inc();
                },
            );
        }
    }

    /// Counts one risk decision of `outcome`.
    pub fn record_outcome(&self, outcome: risk_core::Outcome) {
        use risk_core::Outcome;
        let slot = match outcome {
            Outcome::Approved => 0,
            Outcome::Rejected => 1,
            Outcome::Review => 2,
        };
        let labels = OutcomeLabels {
            outcome: outcome.as_str(),
        };
        with_handle(
            &self.handler.decisions,
            slot,
            || self.decisions.get_or_create(&labels).clone(),
            |c| {
                c.inc();
            },
        );
    }
}

/// Runs `f` on the handle cached in `cells[slot]`, resolved by `make` (from its family) on
/// first use; a slot out of range (never, the arrays are sized by their enums) resolves
/// it every time.
fn with_handle<M>(
    cells: &[OnceLock<M>],
    slot: usize,
    make: impl FnOnce() -> M,
    f: impl FnOnce(&M),
) {
    match cells.get(slot) {
        Some(cell) => f(cell.get_or_init(make)),
        None => f(&make()),
    }
}

impl Metrics {
    /// Registers every metric under the `gateway` prefix.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Metrics {
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            refusals: Family::default(),
            decisions: Family::default(),
            reasons: Family::default(),
            store_latency: Family::new_with_constructor(latency_histogram),
            store_errors: Family::default(),
            admission_sojourn: latency_histogram(),
            routes: Arc::default(),
            handler: Arc::default(),
        };
        let r = registry.sub_registry_with_prefix("gateway");
        r.register(
            "http_requests",
            "Requests by route class and status",
            m.requests.clone(),
        );
        r.register(
            "http_request_duration_seconds",
            "Request latency by route class",
            m.latency.clone(),
        );
        r.register(
            "refusals",
            "Error answers by code (transient and client)",
            m.refusals.clone(),
        );
        r.register(
            "risk_decisions",
            "Risk decisions by outcome",
            m.decisions.clone(),
        );
        r.register(
            "risk_reasons",
            "Reasons given in risk decisions, by code",
            m.reasons.clone(),
        );
        r.register(
            "store_duration_seconds",
            "Store operation latency",
            m.store_latency.clone(),
        );
        r.register(
            "store_errors",
            "Store operations that failed",
            m.store_errors.clone(),
        );
        r.register(
            "admission_sojourn_seconds",
            "Time requests admitted from the admission queue waited in it",
            m.admission_sojourn.clone(),
        );
        m
    }
}

/// The state the gateway holds anyway (admission, the policy, the thresholds, the rate
/// limiter), read at scrape time: nothing is copied into metrics on the request path.
#[derive(Debug, Clone)]
pub struct StateCollector {
    /// Admission control.
    pub admission: Admission,
    /// The peak-window policy.
    pub policy: Policy,
    /// The thresholds in force.
    pub thresholds: Arc<ThresholdCache>,
    /// The rate limiters.
    pub limits: RateLimits,
}

impl StateCollector {
    /// Registers this collector under the `gateway` prefix.
    pub fn register(self, registry: &mut Registry) {
        registry
            .sub_registry_with_prefix("gateway")
            .register_collector(Box::new(self));
    }
}

/// Encodes one unlabelled gauge of `value` (for collectors read at scrape time).
pub(crate) fn gauge(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: impl EncodeGaugeValue,
) -> fmt::Result {
    let g = ConstGauge::new(value);
    g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)
}

/// A count as a gauge value (saturating: counts never reach `i64::MAX`).
fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Collector for StateCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let a = &self.admission;
        // Admission follows the policy lazily, on arrivals; catch up before reading it.
        a.refresh();
        gauge(
            &mut encoder,
            "admission_in_flight",
            "Requests admitted and running",
            count(a.in_flight()),
        )?;
        gauge(
            &mut encoder,
            "admission_limit",
            "Admission concurrency limit",
            count(a.limit()),
        )?;
        let mut queued = encoder.encode_descriptor(
            "admission_queued",
            "Requests waiting for admission",
            None,
            MetricType::Gauge,
        )?;
        for p in Priority::ALL {
            let labels = PriorityLabels {
                priority: p.as_str(),
            };
            ConstGauge::new(count(a.queued(p))).encode(queued.encode_family(&labels)?)?;
        }
        let mut shed = encoder.encode_descriptor(
            "admission_shed",
            "Requests shed by admission control",
            None,
            MetricType::Counter,
        )?;
        for p in Priority::ALL {
            for (cause, n) in a.shed_counts(p) {
                let labels = ShedLabels {
                    priority: p.as_str(),
                    cause,
                };
                ConstCounter::new(n).encode(shed.encode_family(&labels)?)?;
            }
        }
        let stats = a.adaptive_stats();
        let secs = |d: Option<std::time::Duration>| d.map_or(0.0, |d| d.as_secs_f64());
        gauge(
            &mut encoder,
            "admission_no_load_latency_seconds",
            "Adaptive limit: measured no-load latency of admitted work",
            secs(stats.and_then(|s| s.no_load)),
        )?;
        gauge(
            &mut encoder,
            "admission_sampled_latency_seconds",
            "Adaptive limit: latency percentile of admitted work in the last interval",
            secs(stats.and_then(|s| s.current)),
        )?;
        let policy = self.policy.current();
        let labels = PolicyLabels {
            window: policy.window.clone(),
            profile: policy.profile.clone(),
            forced: if policy.forced {
                Forced::True
            } else {
                Forced::False
            },
        };
        let mut active = encoder.encode_descriptor(
            "policy_active",
            "The active policy (1 on its labels)",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(1i64).encode(active.encode_family(&labels)?)?;
        gauge(
            &mut encoder,
            "threshold_version",
            "Thresholds version in force",
            i64::try_from(self.thresholds.version()).unwrap_or(i64::MAX),
        )?;
        gauge(
            &mut encoder,
            "ratelimit_tracked_users",
            "Users with per-user rate-limit state",
            count(self.limits.tracked_users()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(registry: &Registry) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, registry).unwrap();
        out
    }

    #[test]
    fn cached_route_handles_count_into_the_same_series() {
        let mut registry = Registry::default();
        let m = Metrics::register(&mut registry);
        // Nothing is listed before a route's first answer (as with `get_or_create` alone).
        assert!(!text(&registry).contains("route=\"drawdown\""));
        m.record_answer(0, "drawdown", 200, 0.001);
        m.record_answer(0, "drawdown", 200, 0.002);
        m.record_answer(0, "drawdown", 503, 0.003);
        // A slot past the cache falls back to the family: still counted.
        m.record_answer(ROUTE_SLOTS, "ops", 200, 0.004);
        let t = text(&registry);
        assert!(
            t.contains("gateway_http_requests_total{route=\"drawdown\",status=\"200\"} 2"),
            "{t}"
        );
        assert!(
            t.contains("gateway_http_requests_total{route=\"drawdown\",status=\"503\"} 1"),
            "{t}"
        );
        assert!(
            t.contains("gateway_http_requests_total{route=\"ops\",status=\"200\"} 1"),
            "{t}"
        );
        assert!(
            t.contains("gateway_http_request_duration_seconds_count{route=\"drawdown\"} 3"),
            "{t}"
        );
        assert!(!t.contains("route=\"credit_line\""), "{t}");
    }

    #[test]
    fn cached_handler_handles_count_into_the_same_series() {
        let mut registry = Registry::default();
        let m = Metrics::register(&mut registry);
        let before = text(&registry);
        assert!(!before.contains("op=\""), "{before}");
        assert!(!before.contains("outcome=\""), "{before}");
        m.record_store_op(StoreOp::Commit, 0.001, false);
        m.record_store_op(StoreOp::Commit, 0.002, false);
        m.record_store_op(StoreOp::Load, 0.003, true);
        m.record_outcome(risk_core::Outcome::Approved);
        m.record_outcome(risk_core::Outcome::Approved);
        m.record_outcome(risk_core::Outcome::Review);
        // The family's own handle sees the cached handles' counts (and they see its).
        m.decisions
            .get_or_create(&OutcomeLabels {
                outcome: "approved",
            })
            .inc();
        let t = text(&registry);
        for want in [
            "gateway_store_duration_seconds_count{op=\"commit\"} 2",
            "gateway_store_duration_seconds_count{op=\"load\"} 1",
            "gateway_store_errors_total{op=\"load\"} 1",
            "gateway_risk_decisions_total{outcome=\"approved\"} 3",
            "gateway_risk_decisions_total{outcome=\"review\"} 1",
        ] {
            assert!(t.contains(want), "{want} in {t}");
        }
        // No failure of a commit yet, no rejection yet: no such series.
        assert!(
            !t.contains("gateway_store_errors_total{op=\"commit\"}"),
            "{t}"
        );
        assert!(!t.contains("outcome=\"rejected\""), "{t}");
        let labels: Vec<_> = StoreOp::ALL.iter().map(|op| op.as_str()).collect();
        assert_eq!(
            labels,
            [
                "load",
                "commit",
                "upsert_user",
                "create_appeal",
                "get_appeal",
                "list_appeals",
                "resolve_appeal"
            ]
        );
        for (slot, op) in StoreOp::ALL.iter().enumerate() {
            assert_eq!(*op as usize, slot);
        }
    }
}
