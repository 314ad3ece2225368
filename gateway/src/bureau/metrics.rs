//! The bureau's metrics, registered under the `gateway_bureau_` prefix.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// How a call ended.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct CallLabels {
    /// `ok`, `error` or `timeout`.
    pub result: &'static str,
}

/// What stood in for an answer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct FallbackLabels {
    /// `cached` (an older answer was used) or `unavailable` (none: review when rules are on).
    pub kind: &'static str,
    /// Why no fresh answer: `timeout`, `error`, `breaker_open`, `bulkhead_full`, `no_budget`.
    pub cause: &'static str,
}

/// Every bureau metric.
#[derive(Debug, Clone)]
pub struct BureauMetrics {
    /// Calls made, by result (`gateway_bureau_calls_total`).
    pub calls: Family<CallLabels, Counter>,
    /// Call latency, seconds (`gateway_bureau_call_duration_seconds`).
    pub latency: Histogram,
    /// Calls cut at their budget (`gateway_bureau_timeouts_total`).
    pub timeouts: Counter,
    /// The breaker: 0 closed, 1 open, 2 half-open (`gateway_bureau_breaker_state`).
    pub breaker_state: Gauge,
    /// Answers served from the cache within its TTL (`gateway_bureau_cache_hits_total`).
    pub cache_hits: Counter,
    /// Lookups that found no answer within the TTL (`gateway_bureau_cache_misses_total`).
    pub cache_misses: Counter,
    /// Fallbacks by kind and cause (`gateway_bureau_fallbacks_total`).
    pub fallbacks: Family<FallbackLabels, Counter>,
    /// Requests the consult rule sent to the bureau, or not (`gateway_bureau_consults_total`).
    pub consults: Family<ConsultLabels, Counter>,
}

/// Whether a request consulted the bureau.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ConsultLabels {
    /// `drawdown` or `credit_line`.
    pub route: &'static str,
    /// `yes` or `skipped` (the consult rule left it out).
    pub consulted: &'static str,
}

impl BureauMetrics {
    /// Registers every metric under `gateway_bureau_`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = BureauMetrics {
            calls: Family::default(),
            // 1 ms to about 16 s, doubling.
            latency: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            timeouts: Counter::default(),
            breaker_state: Gauge::default(),
            cache_hits: Counter::default(),
            cache_misses: Counter::default(),
            fallbacks: Family::default(),
            consults: Family::default(),
        };
        let r = registry.sub_registry_with_prefix("gateway_bureau");
        r.register("calls", "Bureau calls by result", m.calls.clone());
        r.register(
            "call_duration_seconds",
            "Bureau call latency",
            m.latency.clone(),
        );
        r.register(
            "timeouts",
            "Bureau calls cut at their budget",
            m.timeouts.clone(),
        );
        r.register(
            "breaker_state",
            "Bureau circuit breaker: 0 closed, 1 open, 2 half-open",
            m.breaker_state.clone(),
        );
        r.register(
            "cache_hits",
            "Bureau answers reused within the cache TTL",
            m.cache_hits.clone(),
        );
        r.register(
            "cache_misses",
            "Bureau lookups with no answer within the TTL",
            m.cache_misses.clone(),
        );
        r.register(
            "fallbacks",
            "Requests without a fresh bureau answer, by what stood in and why",
            m.fallbacks.clone(),
        );
        r.register(
            "consults",
            "Requests by whether the consult rule sent them to the bureau",
            m.consults.clone(),
        );
        m
    }
}
