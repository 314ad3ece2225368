//! The bureau's side of a scenario run: applies the scenario's `[[bureau.change]]`s at their
//! times and samples, once a second, the simulator's counters and the gateway's
//! `gateway_bureau_*` metrics (calls, timeouts, breaker state, cache, fallbacks by kind), so
//! the report can put the bureau's story beside the drawdown latency.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::Bureau;
use crate::client::{Conn, TargetAddr};
use serde::{Deserialize, Serialize};

use super::BureauStats;

/// `[[bureau.change]]`: at `at_s` seconds from the run start, set the service time and/or
/// the error rate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BureauChange {
    /// Seconds from the run start (scaled by `--scale`).
    pub at_s: f64,
    /// The new base service time, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_ms: Option<u64>,
    /// The new injected error probability.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate: Option<f64>,
}

/// One sample of the bureau's side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BureauSample {
    /// Seconds from the run start.
    pub t: f64,
    /// The simulator's counters and settings.
    pub sim: BureauStats,
    /// The gateway's `gateway_bureau_*` series (cumulative; histogram buckets left out).
    pub gateway: BTreeMap<String, f64>,
}

/// Prefix of the gateway metrics kept.
pub const GATEWAY_PREFIX: &str = "gateway_bureau_";

/// Further gateway series kept in the samples: admission (limit, latencies, sheds by
/// priority and cause, sojourn) and the overload actions, to follow a limiter over a run.
pub const GATEWAY_EXTRA_PREFIXES: &[&str] = &["gateway_admission_", "gateway_overload_"];

/// The series of a Prometheus / OpenMetrics text exposition whose name starts with `prefix`,
/// with their values; histogram buckets are left out (their `_sum` and `_count` stay).
pub fn parse_metrics(text: &str, prefix: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || !line.starts_with(prefix) {
            continue;
        }
        // `name{labels} value [timestamp]`; label values may hold spaces, so split after `}`.
        let (series, rest) = match line.find('{') {
            Some(open) => match line[open..].find('}') {
                Some(close) => line.split_at(open + close + 1),
                None => continue,
            },
            None => match line.split_once(' ') {
                Some(parts) => parts,
                None => continue,
            },
        };
        if series.contains("_bucket") {
            continue;
        }
        if let Some(v) = rest
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
        {
            out.insert(series.to_owned(), v);
        }
    }
    out
}

async fn scrape(conn: &mut Conn, target: &TargetAddr) -> Result<BTreeMap<String, f64>, String> {
    let req = Request::builder()
        .uri("/metrics")
        .header(http::header::HOST, &target.authority)
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let resp = conn
        .send(req, Duration::from_secs(2))
        .await
        .map_err(|e| format!("GET /metrics: {e:?}"))?;
    if resp.status() != StatusCode::OK {
        return Err(format!("GET /metrics: HTTP {}", resp.status()));
    }
    let text = String::from_utf8_lossy(resp.body());
    let mut out = parse_metrics(&text, GATEWAY_PREFIX);
    for prefix in GATEWAY_EXTRA_PREFIXES {
        out.extend(parse_metrics(&text, prefix));
    }
    Ok(out)
}

/// What the timeline saw.
#[derive(Debug, Default)]
pub(crate) struct Timeline {
    pub(crate) samples: Vec<BureauSample>,
    pub(crate) warnings: Vec<String>,
}

/// What one sample reads: the simulator's stats and the gateway's bureau series.
struct Sampler {
    bureau: Bureau,
    conn: Conn,
    target: TargetAddr,
    start: Instant,
    /// A failed scrape has been listed (later ones are not).
    warned: bool,
}

impl Sampler {
    async fn sample(&mut self, warnings: &mut Vec<String>) -> BureauSample {
        let gateway = match scrape(&mut self.conn, &self.target).await {
            Ok(m) => m,
            Err(e) => {
                if !self.warned {
                    warnings.push(format!(
                        "bureau timeline: {e} (further failures not listed)"
                    ));
                    self.warned = true;
                }
                BTreeMap::new()
            }
        };
        BureauSample {
            t: Instant::now()
                .saturating_duration_since(self.start)
                .as_secs_f64(),
            sim: self.bureau.stats(),
            gateway,
        }
    }
}

/// Runs until `stop` fires: the changes at `start + at_s`, a sample at `start` and every second
/// after it, and a last sample when stopped.
pub(crate) async fn run_timeline(
    bureau: Bureau,
    changes: Vec<BureauChange>,
    target: TargetAddr,
    start: Instant,
    stop: oneshot::Receiver<()>,
) -> Timeline {
    let mut out = Timeline::default();
    let mut sampler = Sampler {
        conn: Conn::new(target.addr),
        bureau,
        target,
        start,
        warned: false,
    };
    let mut next_sample = start;
    let mut pending = changes.into_iter().peekable();
    tokio::pin!(stop);
    loop {
        let next_change = pending
            .peek()
            .map(|c| start + Duration::from_secs_f64(c.at_s));
        let change_first = next_change.is_some_and(|c| c <= next_sample);
        let at = if change_first {
            next_change.unwrap_or(next_sample)
        } else {
            next_sample
        };
        tokio::select! {
            biased;
            _ = &mut stop => break,
            () = tokio::time::sleep_until(at) => {}
        }
        if change_first {
            if let Some(c) = pending.next() {
                // Validated with the scenario; a failure here would be a bug worth seeing.
                if let Some(ms) = c.service_ms
                    && let Err(e) = sampler.bureau.set_service_ms(ms)
                {
                    out.warnings
                        .push(format!("bureau change at {} s: {e}", c.at_s));
                }
                if let Some(p) = c.error_rate
                    && let Err(e) = sampler.bureau.set_error_rate(p)
                {
                    out.warnings
                        .push(format!("bureau change at {} s: {e}", c.at_s));
                }
            }
        } else {
            let s = sampler.sample(&mut out.warnings).await;
            out.samples.push(s);
            next_sample += Duration::from_secs(1);
        }
    }
    let s = sampler.sample(&mut out.warnings).await;
    out.samples.push(s);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_read_by_prefix_without_buckets() {
        let text = "# HELP gateway_bureau_calls Bureau calls by result\n\
            # TYPE gateway_bureau_calls counter\n\
            gateway_bureau_calls_total{result=\"ok\"} 12\n\
            gateway_bureau_calls_total{result=\"timeout\"} 3\n\
            gateway_bureau_fallbacks_total{kind=\"cached\",cause=\"breaker open\"} 4 1700000000\n\
            gateway_bureau_breaker_state 1\n\
            gateway_bureau_call_duration_seconds_bucket{le=\"0.001\"} 0\n\
            gateway_bureau_call_duration_seconds_sum 0.5\n\
            gateway_requests_total{route=\"x\"} 99\n\
            gateway_bureau_broken{a=\"b\" 1\n\
            # EOF\n";
        let m = parse_metrics(text, GATEWAY_PREFIX);
        let want: BTreeMap<String, f64> = [
            ("gateway_bureau_calls_total{result=\"ok\"}", 12.0),
            ("gateway_bureau_calls_total{result=\"timeout\"}", 3.0),
            (
                "gateway_bureau_fallbacks_total{kind=\"cached\",cause=\"breaker open\"}",
                4.0,
            ),
            ("gateway_bureau_breaker_state", 1.0),
            ("gateway_bureau_call_duration_seconds_sum", 0.5),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        assert_eq!(m, want);
    }

    #[tokio::test(start_paused = true)]
    async fn changes_apply_at_their_times_and_samples_come_every_second() {
        let bureau = Bureau::new(&super::super::BureauOptions::default()).unwrap();
        // Nothing listens on this port: samples still come, without gateway metrics, and the
        // failure is reported once.
        let target = TargetAddr::from_addr(std::net::SocketAddr::from(([127, 0, 0, 1], 9)));
        let start = Instant::now();
        let changes = vec![
            BureauChange {
                at_s: 1.5,
                service_ms: Some(400),
                error_rate: None,
            },
            BureauChange {
                at_s: 3.0,
                service_ms: Some(20),
                error_rate: Some(0.5),
            },
        ];
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(run_timeline(bureau.clone(), changes, target, start, rx));
        tokio::time::sleep_until(start + Duration::from_millis(4_500)).await;
        tx.send(()).unwrap();
        let tl = task.await.unwrap();
        let service: Vec<(String, u64)> = tl
            .samples
            .iter()
            .map(|s| (format!("{:.1}", s.t), s.sim.service_ms))
            .collect();
        // Samples at 0..=4 s and a last one at 4.5 s; the change at 3 s comes before the
        // sample at 3 s.
        assert_eq!(
            service,
            [
                ("0.0".to_owned(), 20),
                ("1.0".to_owned(), 20),
                ("2.0".to_owned(), 400),
                ("3.0".to_owned(), 20),
                ("4.0".to_owned(), 20),
                ("4.5".to_owned(), 20)
            ]
        );
        assert_eq!(tl.samples.last().unwrap().sim.error_rate, 0.5);
        assert_eq!(tl.warnings.len(), 1, "{:?}", tl.warnings);
        assert!(tl.samples.iter().all(|s| s.gateway.is_empty()));
    }
}
