//! The OTLP export of spans: the OpenTelemetry SDK's tracer and batch processor, the OTLP/HTTP
//! exporter, and a bound in front of them that counts what it drops.
//!
//! A request never waits for the collector: a finished span is handed to the batch
//! processor's queue (a channel to its own thread, which makes the export requests), and when
//! more than `queue_size` spans wait, the span is dropped at once. The SDK's processor drops
//! on a full queue too but only logs how many; [`Bounded`] counts what is waiting itself
//! (handed on and not yet through an export) and drops before the SDK's queue can fill, so
//! every span lost is in `gateway_trace_spans_dropped_total`: `queue_full`, or
//! `export_failed` for the spans of an export request the collector refused or did not
//! answer in time (the exporter does not retry: a collector that is down costs the spans of
//! its downtime, not the gateway's memory).

use super::config::TracingConfig;
use crate::setting::Invalid;
use opentelemetry::Context;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider, Span, SpanData,
    SpanExporter, SpanProcessor,
};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// The label of a dropped span.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct DropLabels {
    /// `queue_full` or `export_failed`.
    pub reason: &'static str,
}

/// The `gateway_trace_*` series.
#[derive(Debug, Clone, Default)]
pub struct TraceMetrics {
    /// Spans the collector accepted.
    pub exported: Counter,
    /// Spans lost, by why.
    pub dropped: Family<DropLabels, Counter>,
}

impl TraceMetrics {
    /// The series, registered in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = TraceMetrics::default();
        let r = registry.sub_registry_with_prefix("gateway_trace");
        r.register(
            "spans_exported",
            "Spans the OTLP collector accepted",
            m.exported.clone(),
        );
        r.register(
            "spans_dropped",
            "Spans not exported: the export queue was full, or the export request failed",
            m.dropped.clone(),
        );
        m
    }

    fn drop_n(&self, reason: &'static str, n: usize) {
        self.dropped
            .get_or_create(&DropLabels { reason })
            .inc_by(u64::try_from(n).unwrap_or(u64::MAX));
    }
}

/// The running export: the tracer that starts the spans, and the provider that sends them.
#[derive(Debug)]
pub struct Exporter {
    tracer: SdkTracer,
    provider: SdkTracerProvider,
    metrics: TraceMetrics,
}

impl Exporter {
    /// The export of `config` (`None` without an `otlp_endpoint`), its metrics registered in
    /// `registry`. Starts the batch processor's thread.
    pub fn start(config: &TracingConfig, registry: &mut Registry) -> Result<Option<Self>, Invalid> {
        config.validate()?;
        let Some(endpoint) = &config.otlp_endpoint else {
            return Ok(None);
        };
        let metrics = TraceMetrics::register(registry);
        let otlp = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(endpoint.clone())
            .with_timeout(config.export_timeout)
            .build()
            .map_err(|e| Invalid::new("otlp_endpoint", e.to_string()))?;
        let queue = usize::try_from(config.queue_size).unwrap_or(usize::MAX);
        let batch = usize::try_from(config.batch_size).unwrap_or(usize::MAX);
        let waiting = Arc::new(AtomicUsize::new(0));
        let exporter = Counted {
            inner: otlp,
            waiting: Arc::clone(&waiting),
            metrics: metrics.clone(),
        };
        // The SDK's own queue has room for everything `Bounded` lets through (the spans
        // being exported are out of the queue already), so it never drops one uncounted.
        // An export is bounded by the HTTP client's timeout (`with_timeout` above).
        let batch_config = BatchConfigBuilder::default()
            .with_max_queue_size(queue)
            .with_max_export_batch_size(batch)
            .with_scheduled_delay(config.export_interval)
            .build();
        let processor = Bounded {
            inner: BatchSpanProcessor::builder(exporter)
                .with_batch_config(batch_config)
                .build(),
            waiting,
            max: queue,
            metrics: metrics.clone(),
        };
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                config.sample_ratio,
            ))))
            .with_resource(
                Resource::builder()
                    .with_service_name(config.service_name.clone())
                    .build(),
            )
            .build();
        let tracer = provider.tracer("gateway");
        Ok(Some(Exporter {
            tracer,
            provider,
            metrics,
        }))
    }

    /// The tracer.
    pub fn tracer(&self) -> &SdkTracer {
        &self.tracer
    }

    /// The metrics.
    pub fn metrics(&self) -> &TraceMetrics {
        &self.metrics
    }

    /// Sends what is waiting, then stops the batch processor's thread (blocks up to the
    /// export timeout: call it off the runtime's threads, or at exit).
    pub fn shutdown(&self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(cause = %e, "the span export did not shut down cleanly");
        }
    }
}

/// The batch processor behind a bound that counts what it drops (see the module docs).
#[derive(Debug)]
struct Bounded {
    inner: BatchSpanProcessor,
    /// Spans handed to `inner` and not yet through an export.
    waiting: Arc<AtomicUsize>,
    max: usize,
    metrics: TraceMetrics,
}

impl SpanProcessor for Bounded {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        // Relaxed: a count, guarding no other memory. Each span gets a count of its own, so
        // at most `max` are ever waiting, however many threads end spans at once.
        if self.waiting.fetch_add(1, Ordering::Relaxed) >= self.max {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            self.metrics.drop_n("queue_full", 1);
            return;
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The OTLP exporter, counting what each export request carried.
#[derive(Debug)]
struct Counted<E> {
    inner: E,
    waiting: Arc<AtomicUsize>,
    metrics: TraceMetrics,
}

impl<E: SpanExporter> SpanExporter for Counted<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len();
        let out = self.inner.export(batch).await;
        self.waiting.fetch_sub(n, Ordering::Relaxed);
        match &out {
            Ok(()) => {
                self.metrics
                    .exported
                    .inc_by(u64::try_from(n).unwrap_or(u64::MAX));
            }
            Err(e) => {
                self.metrics.drop_n("export_failed", n);
                warn_export_failed(e);
            }
        }
        out
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// One WARN line per 10 s at most while exports fail (the count is in the metric).
fn warn_export_failed(e: &OTelSdkError) {
    use std::sync::Mutex;
    use std::time::Instant;
    static LAST: Mutex<Option<Instant>> = Mutex::new(None);
    let mut last = LAST
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if last.is_none_or(|at| at.elapsed() >= Duration::from_secs(10)) {
        *last = Some(Instant::now());
        tracing::warn!(cause = %e, "span export failed: spans dropped (gateway_trace_spans_dropped_total)");
    }
}
