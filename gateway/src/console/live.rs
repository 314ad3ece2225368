//! Live refusals: the last minutes of refusals by cause and of admission state, from the
//! gateway's own counters, drawn as small inline SVG charts on `/console/live`.
//!
//! A background task ([`super::Console::spawn_sampler`]) reads the counters the gateway keeps
//! anyway (`gateway_refusals_total` by code, `gateway_risk_decisions_total`,
//! `gateway_risk_reasons_total`, and admission's limit, in flight, queue and shed counts)
//! every [`PERIOD`] into a ring of the last [`KEPT`] samples: bounded, one small copy per
//! period, nothing added on the request path. Counters are kept as read (cumulative); a
//! chart of a counter draws the difference between neighbouring samples, one bar per period.
//! Samples carry the injected clock's time, so the charts' time axis follows it in tests.
//!
//! These are this instance's counters: in a fleet, each instance charts its own, and the
//! Grafana dashboard (linked from each chart when `console.grafana_url` is set) sums them.

use crate::api::App;
use crate::api::error::ErrorCode;
use crate::metrics::{CodeLabels, OutcomeLabels};
use crate::request::Priority;
use jiff::Timestamp;
use risk_core::ReasonCode;
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

/// How often the counters are sampled.
pub const PERIOD: Duration = Duration::from_secs(10);
/// Samples kept: ten minutes at [`PERIOD`].
pub const KEPT: usize = 60;

/// Where a cause's count is read.
#[derive(Debug, Clone, Copy)]
pub(super) enum Source {
    /// `gateway_refusals_total{code}`.
    Refusal(ErrorCode),
    /// `gateway_risk_decisions_total{outcome}`.
    Outcome(&'static str),
    /// `gateway_risk_reasons_total{code}`.
    Reason(ReasonCode),
}

/// A refusal cause the page charts, and the dashboard panel that shows it.
#[derive(Debug)]
pub(super) struct Cause {
    /// The element id of its chart.
    pub(super) key: &'static str,
    pub(super) source: Source,
    /// The panel id in `gateway/deploy/grafana/dashboards/loan-gateway.json`.
    pub(super) panel: u32,
}

/// The causes charted, in the page's order: transient refusals (each a code of the API),
/// then risk's answers (a rejected decision, and the peak window's tightening among its
/// reasons).
pub(super) const CAUSES: [Cause; 8] = [
    Cause {
        key: "rate-limited-user",
        source: Source::Refusal(ErrorCode::RateLimitedUser),
        panel: 1,
    },
    Cause {
        key: "rate-limited-global",
        source: Source::Refusal(ErrorCode::RateLimitedGlobal),
        panel: 1,
    },
    Cause {
        key: "capacity-shed",
        source: Source::Refusal(ErrorCode::CapacityShed),
        panel: 1,
    },
    Cause {
        key: "dependency-unavailable",
        source: Source::Refusal(ErrorCode::DependencyUnavailable),
        panel: 1,
    },
    Cause {
        key: "line-contended",
        source: Source::Refusal(ErrorCode::LineContended),
        panel: 1,
    },
    Cause {
        key: "request-timeout",
        source: Source::Refusal(ErrorCode::RequestTimeout),
        panel: 1,
    },
    Cause {
        key: "risk-rejected",
        source: Source::Outcome("rejected"),
        panel: 2,
    },
    Cause {
        key: "peak-window",
        source: Source::Reason(ReasonCode::PeakWindowTightened),
        panel: 3,
    },
];

/// The dashboard panel of admission's limit, in flight and queue.
pub(super) const ADMISSION_PANEL: u32 = 4;
/// The dashboard panel that shows sheds (`CAPACITY_SHED` among the refusals by code).
pub(super) const SHED_PANEL: u32 = 1;

/// One reading of the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// When (the injected clock).
    pub at: Timestamp,
    /// Cumulative counts, by [`CAUSES`] index.
    pub causes: [u64; CAUSES.len()],
    /// Admission's concurrency limit.
    pub limit: u64,
    /// Requests admitted and running.
    pub in_flight: u64,
    /// Requests waiting for admission, every priority.
    pub queued: u64,
    /// Requests shed by admission, cumulative, every priority and cause.
    pub shed: u64,
}

fn wide(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

impl Sample {
    /// Reads the counters of `app` now.
    pub fn read(app: &App) -> Sample {
        let m = &app.metrics;
        let mut causes = [0; CAUSES.len()];
        for (slot, cause) in causes.iter_mut().zip(&CAUSES) {
            // `get` does not create the series: a code never answered stays out of /metrics.
            *slot = match cause.source {
                Source::Refusal(code) => m
                    .refusals
                    .get(&CodeLabels {
                        code: code.as_str(),
                    })
                    .map_or(0, |c| c.get()),
                Source::Outcome(outcome) => m
                    .decisions
                    .get(&OutcomeLabels { outcome })
                    .map_or(0, |c| c.get()),
                Source::Reason(code) => m
                    .reasons
                    .get(&CodeLabels {
                        code: code.as_str(),
                    })
                    .map_or(0, |c| c.get()),
            };
        }
        let a = &app.admission;
        // Admission follows the policy lazily, on arrivals; catch up before reading it.
        a.refresh();
        Sample {
            at: app.clock.now(),
            causes,
            limit: wide(a.limit()),
            in_flight: wide(a.in_flight()),
            queued: wide(Priority::ALL.iter().map(|p| a.queued(*p)).sum()),
            shed: Priority::ALL
                .iter()
                .flat_map(|p| a.shed_counts(*p))
                .map(|(_, n)| n)
                .sum(),
        }
    }
}

/// The ring of the last [`KEPT`] samples. A `std` mutex, held for a push or a copy, never
/// across an await.
#[derive(Debug)]
pub struct Live {
    ring: Mutex<VecDeque<Sample>>,
    kept: usize,
}

impl Live {
    /// A ring of at most `kept` samples (at least 2: a counter's chart needs two).
    pub fn new(kept: usize) -> Live {
        let kept = kept.max(2);
        Live {
            ring: Mutex::new(VecDeque::with_capacity(kept)),
            kept,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Sample>> {
        // Each operation is one push/pop or a copy: a poisoned ring is still consistent.
        self.ring
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds a sample, dropping the oldest past the bound.
    pub fn push(&self, s: Sample) {
        let mut ring = self.lock();
        while ring.len() >= self.kept {
            ring.pop_front();
        }
        ring.push_back(s);
    }

    /// The samples held, oldest first.
    pub fn samples(&self) -> Vec<Sample> {
        self.lock().iter().copied().collect()
    }
}

/// One point of a chart: its time and value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Point {
    pub(super) at: Timestamp,
    pub(super) value: u64,
}

/// A counter's differences between neighbouring samples, each at the later sample's time
/// (a counter that went back, which a restart of the process would do, counts 0).
pub(super) fn deltas(samples: &[Sample], count: impl Fn(&Sample) -> u64) -> Vec<Point> {
    samples
        .windows(2)
        .map(|w| Point {
            at: w[1].at,
            value: count(&w[1]).saturating_sub(count(&w[0])),
        })
        .collect()
}

/// A gauge's value at each sample.
pub(super) fn levels(samples: &[Sample], value: impl Fn(&Sample) -> u64) -> Vec<Point> {
    samples
        .iter()
        .map(|s| Point {
            at: s.at,
            value: value(s),
        })
        .collect()
}

/// The smallest of 1, 2 and 5 times a power of ten at or above `n` (at least 1): the top
/// of a chart's scale.
pub(super) fn scale_top(n: u64) -> u64 {
    let mut step = 1u64;
    loop {
        for m in [1, 2, 5] {
            let top = step.saturating_mul(m);
            if top >= n || top == u64::MAX {
                return top;
            }
        }
        step = step.saturating_mul(10);
    }
}

/// How a chart draws its points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Shape {
    /// One bar per period (a counter's differences).
    Bars,
    /// A line through the samples (a gauge).
    Line,
}

/// The time a chart spans, and the words of its axis.
pub(super) struct Frame<'a> {
    /// The right end of the time axis.
    pub(super) now: Timestamp,
    /// How far back the axis reaches.
    pub(super) span: Duration,
    /// Left end's label ("−10 min").
    pub(super) start: &'a str,
    /// Right end's label ("now").
    pub(super) end: &'a str,
}

const W: f64 = 320.0;
const H: f64 = 100.0;
const LEFT: f64 = 40.0;
const RIGHT: f64 = 6.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 80.0;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The chart of `points` over the frame's span, as SVG markup: an image named by its
/// title and described by `desc` (what a screen reader says of it). Points older than the
/// span are left out; the scale is the largest shown point's ([`scale_top`]).
pub(super) fn svg(
    id: &str,
    title: &str,
    desc: &str,
    points: &[Point],
    shape: Shape,
    frame: &Frame<'_>,
) -> String {
    let (now, axis) = (frame.now, frame);
    let span_s = frame.span.as_secs_f64().max(1.0);
    let shown: Vec<&Point> = points
        .iter()
        .filter(|p| p.at <= now && (now - p.at).as_secs_f64() <= span_s)
        .collect();
    let top = scale_top(shown.iter().map(|p| p.value).max().unwrap_or(0));
    let plot_w = W - LEFT - RIGHT;
    let plot_h = BOTTOM - TOP;
    let x_of = |at: Timestamp| {
        let age = (now - at).as_secs_f64().clamp(0.0, span_s);
        LEFT + plot_w * (1.0 - age / span_s)
    };
    #[allow(clippy::cast_precision_loss)] // counts far below 2^52
    let y_of = |v: u64| BOTTOM - plot_h * (v as f64 / top as f64);
    let (id, title, desc) = (escape(id), escape(title), escape(desc));
    let mut out = String::with_capacity(4096);
    let _ = write!(
        out,
        r#"<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-labelledby="{id}-t {id}-d" focusable="false" xmlns="http://www.w3.org/2000/svg"><title id="{id}-t">{title}</title><desc id="{id}-d">{desc}</desc>"#
    );
    // Axes: the scale's top and 0, the time span's ends.
    let _ = write!(
        out,
        r#"<line class="grid" x1="{LEFT}" y1="{TOP}" x2="{x2}" y2="{TOP}"/><line class="axis" x1="{LEFT}" y1="{BOTTOM}" x2="{x2}" y2="{BOTTOM}"/><text x="{tx}" y="{ty}" text-anchor="end">{top}</text><text x="{tx}" y="{by}" text-anchor="end">0</text><text x="{LEFT}" y="{H2}" text-anchor="start">{start}</text><text x="{x2}" y="{H2}" text-anchor="end">{end}</text>"#,
        x2 = W - RIGHT,
        tx = LEFT - 4.0,
        ty = TOP + 4.0,
        by = BOTTOM,
        H2 = H - 4.0,
        start = escape(axis.start),
        end = escape(axis.end),
    );
    match shape {
        Shape::Bars => {
            #[allow(clippy::cast_precision_loss)] // KEPT is small
            let bar = (plot_w / KEPT as f64).max(1.0);
            for p in shown.iter().filter(|p| p.value > 0) {
                let x = (x_of(p.at) - bar).max(LEFT);
                let y = y_of(p.value);
                let _ = write!(
                    out,
                    r#"<rect class="bar" x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{h:.1}"/>"#,
                    w = (bar - 0.6).max(0.6),
                    h = BOTTOM - y,
                );
            }
        }
        Shape::Line => {
            if !shown.is_empty() {
                out.push_str(r#"<polyline class="line" points=""#);
                for (i, p) in shown.iter().enumerate() {
                    let sep = if i == 0 { "" } else { " " };
                    let _ = write!(out, "{sep}{:.1},{:.1}", x_of(p.at), y_of(p.value));
                }
                out.push_str(r#""/>"#);
            }
        }
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn sample(at: i64, shed: u64, queued: u64) -> Sample {
        Sample {
            at: t(at),
            causes: [0; CAUSES.len()],
            limit: 64,
            in_flight: 3,
            queued,
            shed,
        }
    }

    #[test]
    fn each_linked_dashboard_panel_shows_what_its_chart_counts() {
        let dashboard: serde_json::Value = serde_json::from_str(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/grafana/dashboards/loan-gateway.json"
        )))
        .unwrap();
        assert_eq!(
            dashboard["uid"], "loan-gateway",
            "the links' /d/loan-gateway"
        );
        let exprs = |panel: u32| -> String {
            let p = dashboard["panels"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["id"] == panel)
                .unwrap_or_else(|| panic!("panel {panel} is on the dashboard"));
            p["targets"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["expr"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
                .join(" ")
        };
        for cause in &CAUSES {
            let metric = match cause.source {
                Source::Refusal(_) => "gateway_refusals_total",
                Source::Outcome(_) => "gateway_risk_decisions_total",
                Source::Reason(_) => "gateway_risk_reasons_total",
            };
            assert!(exprs(cause.panel).contains(metric), "{}", cause.key);
        }
        let admission = exprs(ADMISSION_PANEL);
        for m in [
            "gateway_admission_limit",
            "gateway_admission_in_flight",
            "gateway_admission_queued",
        ] {
            assert!(admission.contains(m), "{m}");
        }
        assert!(
            exprs(SHED_PANEL).contains("gateway_refusals_total"),
            "CAPACITY_SHED"
        );
    }

    #[test]
    fn the_ring_keeps_the_newest_samples_only() {
        let live = Live::new(3);
        for s in 0..5 {
            live.push(sample(s * 10, 0, 0));
        }
        let got: Vec<Timestamp> = live.samples().iter().map(|s| s.at).collect();
        assert_eq!(got, [t(20), t(30), t(40)]);
        assert_eq!(Live::new(0).kept, 2, "a counter's chart needs two samples");
    }

    #[test]
    fn counters_chart_their_differences_and_gauges_their_levels() {
        let s = [
            sample(0, 5, 1),
            sample(10, 9, 0),
            sample(20, 9, 7),
            sample(30, 2, 2),
        ];
        let d = deltas(&s, |s| s.shed);
        let values: Vec<u64> = d.iter().map(|p| p.value).collect();
        assert_eq!(values, [4, 0, 0], "a counter that went back counts 0");
        assert_eq!(d[0].at, t(10));
        let l: Vec<u64> = levels(&s, |s| s.queued).iter().map(|p| p.value).collect();
        assert_eq!(l, [1, 0, 7, 2]);
        assert!(deltas(&s[..1], |s| s.shed).is_empty());
    }

    #[test]
    fn scales_end_on_one_two_or_five() {
        let tops: Vec<u64> = [0, 1, 2, 3, 5, 6, 10, 11, 99, 101, 4_000]
            .into_iter()
            .map(scale_top)
            .collect();
        assert_eq!(tops, [1, 1, 2, 5, 5, 10, 10, 20, 100, 200, 5_000]);
        assert_eq!(scale_top(u64::MAX), u64::MAX);
    }

    #[test]
    fn a_chart_draws_each_non_zero_period_to_scale_and_names_itself() {
        let points = [
            Point {
                at: t(-700),
                value: 50,
            },
            Point {
                at: t(-20),
                value: 10,
            },
            Point {
                at: t(-10),
                value: 0,
            },
            Point { at: t(0), value: 5 },
        ];
        let frame = Frame {
            now: t(0),
            span: Duration::from_secs(600),
            start: "−10 min",
            end: "now",
        };
        let out = svg(
            "x",
            "Shed <503>",
            "15 in 10 min",
            &points,
            Shape::Bars,
            &frame,
        );
        assert!(out.starts_with("<svg") && out.ends_with("</svg>"));
        assert!(out.contains(r#"role="img" aria-labelledby="x-t x-d""#));
        assert!(out.contains("<title id=\"x-t\">Shed &lt;503&gt;</title>"));
        // The point older than the span is left out, and so is the scale it would need.
        assert_eq!(out.matches("<rect").count(), 2, "{out}");
        assert!(out.contains(">10</text>") && !out.contains(">50<"), "{out}");
        // On a scale of 10, a bar of 10 is the plot's 70 units tall, a bar of 5 half that.
        assert!(out.contains(r#"height="70.0""#), "{out}");
        assert!(out.contains(r#"height="35.0""#), "{out}");
        let line = svg("y", "Queued", "", &points[1..], Shape::Line, &frame);
        assert_eq!(line.matches("<polyline").count(), 1);
        assert!(line.contains(">10</text>"));
        // The newest point sits at the right end of the plot.
        assert!(line.contains(&format!("{:.1},", W - RIGHT)), "{line}");
    }
}
