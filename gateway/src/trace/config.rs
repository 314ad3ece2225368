//! `[tracing]`: the export of spans over OTLP (off unless `otlp_endpoint` is set).

use crate::setting::{self, Invalid};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// `[tracing]`: where spans go and how many. The trace context (`traceparent`) is read and
/// passed on whether or not spans are exported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TracingConfig {
    /// The collector's OTLP/HTTP traces URL, e.g. `http://127.0.0.1:4318/v1/traces`
    /// (protobuf). Absent: no span is exported (the default).
    pub otlp_endpoint: Option<String>,
    /// Share of new traces recorded, 0 to 1 (`sample_ratio`); a request with a
    /// `traceparent` follows its caller's `sampled` flag instead.
    pub sample_ratio: f64,
    /// The `service.name` of the exported spans.
    pub service_name: String,
    /// Spans waiting for export at most; past it a finished span is dropped and counted
    /// (`gateway_trace_spans_dropped_total{reason="queue_full"}`), never waited for.
    pub queue_size: u32,
    /// Spans sent in one export request at most.
    pub batch_size: u32,
    /// How often waiting spans are sent (`export_interval_ms`).
    #[serde(rename = "export_interval_ms", with = "setting::millis")]
    pub export_interval: Duration,
    /// An export request not answered within this fails; its spans are dropped and
    /// counted (`export_timeout_ms`).
    #[serde(rename = "export_timeout_ms", with = "setting::millis")]
    pub export_timeout: Duration,
}

impl Default for TracingConfig {
    fn default() -> Self {
        TracingConfig {
            otlp_endpoint: None,
            sample_ratio: 1.0,
            service_name: "loan-gateway".into(),
            queue_size: 4096,
            batch_size: 512,
            export_interval: Duration::from_secs(1),
            export_timeout: Duration::from_secs(3),
        }
    }
}

impl TracingConfig {
    /// Checks every value types alone do not, naming the key within `[tracing]`.
    pub fn validate(&self) -> Result<(), Invalid> {
        if let Some(url) = &self.otlp_endpoint {
            let uri: http::Uri = url
                .parse()
                .map_err(|e| Invalid::new("otlp_endpoint", format!("not a URL: {e}")))?;
            if uri.scheme_str() != Some("http") || uri.authority().is_none() {
                return Err(Invalid::new(
                    "otlp_endpoint",
                    format!("expected an http:// URL of the collector, got {url:?}"),
                ));
            }
        }
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            return Err(Invalid::new(
                "sample_ratio",
                format!("must be 0 to 1 (got {})", self.sample_ratio),
            ));
        }
        if self.service_name.is_empty() {
            return Err(Invalid::new("service_name", "must not be empty"));
        }
        setting::at_least_one([
            ("queue_size", u128::from(self.queue_size)),
            ("batch_size", u128::from(self.batch_size)),
            ("export_interval_ms", self.export_interval.as_nanos()),
            ("export_timeout_ms", self.export_timeout.as_nanos()),
        ])?;
        if self.batch_size > self.queue_size {
            return Err(Invalid::new("batch_size", "must be at most queue_size"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_by_default_and_bad_values_name_their_key() {
        let c = TracingConfig::default();
        assert!(c.otlp_endpoint.is_none());
        c.validate().unwrap();
        let key = |f: fn(&mut TracingConfig)| {
            let mut c = TracingConfig::default();
            f(&mut c);
            c.validate().unwrap_err().key().to_owned()
        };
        assert_eq!(
            key(|c| c.otlp_endpoint = Some("grpc://x:4317".into())),
            "otlp_endpoint"
        );
        assert_eq!(key(|c| c.sample_ratio = 1.5), "sample_ratio");
        assert_eq!(key(|c| c.queue_size = 0), "queue_size");
        assert_eq!(key(|c| c.batch_size = 8192), "batch_size");
        let c: TracingConfig = toml::from_str(
            "otlp_endpoint = \"http://127.0.0.1:4318/v1/traces\"\nsample_ratio = 0.25\n",
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.sample_ratio, 0.25);
    }
}
