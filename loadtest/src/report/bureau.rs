//! The credit-bureau part of a report: per phase and per five seconds, the drawdown latency
//! and outcomes beside the simulator's service time and queue and the gateway's bureau
//! metrics (calls by result, fallbacks by kind), so the story of a bureau slowdown reads off
//! one table and one chart.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use plotters::prelude::*;

use super::{charts, pct};
use crate::Error;
use crate::bureau::BureauSample;
use crate::recorder::new_histogram;
use crate::results::{BureauResult, Results, decode_histogram};

/// Gateway series counted as fallbacks (one per kind and cause).
const FALLBACKS: &str = "gateway_bureau_fallbacks";
/// Gateway series counted as calls (one per result).
const CALLS: &str = "gateway_bureau_calls";
/// The breaker gauge: 0 closed, 1 open, 2 half-open.
const BREAKER: &str = "gateway_bureau_breaker_state";

/// The label values of a series (`name{a="x",b="y"}` → `x/y`), or `""` without labels.
fn label_values(series: &str) -> String {
    let Some(open) = series.find('{') else {
        return String::new();
    };
    let inner = series[open + 1..].trim_end_matches('}');
    inner
        .split("\",")
        .filter_map(|kv| kv.split_once('='))
        .map(|(_, v)| v.trim_matches('"'))
        .collect::<Vec<_>>()
        .join("/")
}

/// Increase of every series starting with `prefix` from `a` to `b`, by label values
/// (zero increases left out).
fn deltas(a: &BureauSample, b: &BureauSample, prefix: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for (series, vb) in &b.gateway {
        if !series.starts_with(prefix) {
            continue;
        }
        let va = a.gateway.get(series).copied().unwrap_or(0.0);
        if vb - va > 0.0 {
            *out.entry(label_values(series)).or_insert(0.0) += vb - va;
        }
    }
    out
}

fn list(m: &BTreeMap<String, f64>) -> String {
    if m.is_empty() {
        return "–".into();
    }
    m.iter()
        .map(|(k, v)| {
            if k.is_empty() {
                format!("{v:.0}")
            } else {
                format!("{k} {v:.0}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The sample nearest to `t` seconds.
fn sample_at(samples: &[BureauSample], t: f64) -> Option<&BureauSample> {
    samples
        .iter()
        .min_by(|a, b| (a.t - t).abs().total_cmp(&(b.t - t).abs()))
}

/// One span of the run: a phase or a five-second slice.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    /// Phase name, or `a–b s`.
    pub name: String,
    /// Drawdown attempts intended in the span.
    pub drawdowns: u64,
    /// Drawdown latency p50, ms.
    pub p50: f64,
    /// Drawdown latency p99, ms.
    pub p99: f64,
    /// Share of drawdowns answered within the deadline.
    pub within_deadline: f64,
    /// Decisions approved / review / rejected, and no decision, as shares of `drawdowns`.
    pub outcomes: [f64; 4],
    /// The simulator's base service time: lowest and highest sampled in the span, ms.
    pub service_ms: (u64, u64),
    /// The simulator's longest sampled queue in the span.
    pub queue: u64,
    /// Gateway bureau calls by result, increase over the span.
    pub calls: BTreeMap<String, f64>,
    /// Gateway fallbacks by kind/cause, increase over the span.
    pub fallbacks: BTreeMap<String, f64>,
    /// Samples with the breaker open (1) or half-open (2).
    pub breaker_open: (u64, u64),
    /// Transient refusals of any request (quotes too) completed in the span, by cause: a
    /// journey refused at its quote never draws, so these say where the missing drawdowns
    /// went.
    pub refused_requests: BTreeMap<String, f64>,
}

fn span(r: &Results, b: &BureauResult, name: String, from: f64, to: f64, last: bool) -> Span {
    let mut h: Histogram<u64> = new_histogram();
    let mut counts = [0u64; 4];
    let mut n = 0;
    let mut refused_requests = BTreeMap::new();
    for s in &r.seconds {
        let t = s.t as f64;
        if t < from || (t >= to && !last) {
            continue;
        }
        for (c, k) in &s.refusals {
            if c.is_transient() {
                *refused_requests.entry(c.as_str().to_owned()).or_insert(0.0) += *k as f64;
            }
        }
        let d = &s.drawdowns;
        n += d.count;
        counts[0] += d.approved;
        counts[1] += d.review;
        counts[2] += d.rejected;
        counts[3] += d.refused;
        if !d.histogram.is_empty()
            && let Ok(x) = decode_histogram(&d.histogram)
        {
            // Both come from `new_histogram`, so their bounds match.
            let _ = h.add(&x);
        }
    }
    let deadline_us = b.deadline_ms.saturating_mul(1_000);
    let within = if h.is_empty() {
        0.0
    } else {
        h.count_between(0, deadline_us) as f64 / h.len() as f64
    };
    let ratio = |k: u64| if n == 0 { 0.0 } else { k as f64 / n as f64 };
    let inside: Vec<&BureauSample> = b
        .samples
        .iter()
        .filter(|s| s.t >= from && (s.t < to || last))
        .collect();
    let service_ms = inside.iter().fold((u64::MAX, 0), |(lo, hi), s| {
        (lo.min(s.sim.service_ms), hi.max(s.sim.service_ms))
    });
    let service_ms = if inside.is_empty() {
        (0, 0)
    } else {
        service_ms
    };
    let breaker = |v: f64| {
        inside
            .iter()
            .filter(|s| s.gateway.get(BREAKER).copied() == Some(v))
            .count() as u64
    };
    let (start, end) = (
        sample_at(&b.samples, from),
        if last {
            b.samples.last()
        } else {
            sample_at(&b.samples, to)
        },
    );
    let (calls, fallbacks) = match (start, end) {
        (Some(a), Some(z)) => (deltas(a, z, CALLS), deltas(a, z, FALLBACKS)),
        _ => Default::default(),
    };
    Span {
        name,
        drawdowns: n,
        p50: h.value_at_quantile(0.5) as f64 / 1_000.0,
        p99: h.value_at_quantile(0.99) as f64 / 1_000.0,
        within_deadline: within,
        outcomes: counts.map(ratio),
        service_ms,
        queue: inside.iter().map(|s| s.sim.queued_now).max().unwrap_or(0),
        calls,
        fallbacks,
        breaker_open: (breaker(1.0), breaker(2.0)),
        refused_requests,
    }
}

/// One span per phase of the run.
pub fn phase_spans(r: &Results) -> Vec<Span> {
    let Some(b) = &r.bureau else {
        return Vec::new();
    };
    let n = r.phases.len();
    r.phases
        .iter()
        .enumerate()
        .map(|(i, p)| span(r, b, p.name.clone(), p.start_s, p.end_s, i + 1 == n))
        .collect()
}

/// One span per `step` seconds of the run.
pub fn time_spans(r: &Results, step: u64) -> Vec<Span> {
    let Some(b) = &r.bureau else {
        return Vec::new();
    };
    let end = r.scenario.duration_s;
    let mut out = Vec::new();
    let mut from = 0u64;
    while (from as f64) < end {
        let to = from + step;
        let last = to as f64 >= end;
        out.push(span(
            r,
            b,
            format!("{from}–{to} s"),
            from as f64,
            to as f64,
            last,
        ));
        from = to;
    }
    out
}

fn describe(b: &BureauResult) -> String {
    let o = &b.options;
    let mut s = format!(
        "Simulator: {} slots, service {} ms + jitter {}, error rate {}{}. ",
        o.slots,
        o.service_ms,
        o.jitter,
        o.error_rate,
        o.max_queue
            .map_or_else(String::new, |q| format!(", queue at most {q}"))
    );
    for c in &b.changes {
        let mut what = Vec::new();
        if let Some(ms) = c.service_ms {
            what.push(format!("service {ms} ms"));
        }
        if let Some(p) = c.error_rate {
            what.push(format!("error rate {p}"));
        }
        let _ = write!(s, "At {} s: {}. ", c.at_s, what.join(", "));
    }
    let _ = write!(s, "Drawdown deadline {} ms.", b.deadline_ms);
    s
}

fn settings(b: &BureauResult) -> String {
    b.gateway_overrides
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

fn service(s: &Span) -> String {
    if s.service_ms.0 == s.service_ms.1 {
        s.service_ms.0.to_string()
    } else {
        format!("{}–{}", s.service_ms.0, s.service_ms.1)
    }
}

/// The column headings of both tables.
fn headings(deadline_ms: u64) -> [String; 15] {
    [
        "span".into(),
        "bureau service ms".into(),
        "bureau queue max".into(),
        "drawdowns".into(),
        "p50 ms".into(),
        "p99 ms".into(),
        format!("within {deadline_ms} ms"),
        "approved".into(),
        "review".into(),
        "rejected".into(),
        "no decision".into(),
        "requests refused (any endpoint)".into(),
        "bureau calls".into(),
        "fallbacks".into(),
        "breaker open / half-open (samples)".into(),
    ]
}

/// One span's cells, unescaped; both tables render these.
fn cells(s: &Span) -> [String; 15] {
    [
        s.name.clone(),
        service(s),
        s.queue.to_string(),
        s.drawdowns.to_string(),
        format!("{:.1}", s.p50),
        format!("{:.1}", s.p99),
        pct(s.within_deadline),
        pct(s.outcomes[0]),
        pct(s.outcomes[1]),
        pct(s.outcomes[2]),
        pct(s.outcomes[3]),
        list(&s.refused_requests),
        list(&s.calls),
        list(&s.fallbacks),
        format!("{} / {}", s.breaker_open.0, s.breaker_open.1),
    ]
}

fn md_table(out: &mut String, spans: &[Span], deadline_ms: u64) {
    let _ = writeln!(out, "| {} |", headings(deadline_ms).join(" | "));
    out.push_str("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|---|---|--:|\n");
    for s in spans {
        let _ = writeln!(out, "| {} |", cells(s).join(" | "));
    }
}

/// The Markdown section (empty when the run had no bureau).
pub fn markdown(r: &Results) -> String {
    let Some(b) = &r.bureau else {
        return String::new();
    };
    let mut s = format!(
        "\n**Credit bureau** — {}\n\nGateway settings over its configuration: `{}`\n\nPer phase (drawdowns by intended send time; latency from it; \"no decision\" = 429/503/timeout):\n\n",
        describe(b),
        settings(b)
    );
    md_table(&mut s, &phase_spans(r), b.deadline_ms);
    s.push_str("\nEvery 5 s:\n\n");
    md_table(&mut s, &time_spans(r, 5), b.deadline_ms);
    s
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn html_table(spans: &[Span], deadline_ms: u64) -> String {
    let mut h = String::from("<table><tr>");
    for heading in headings(deadline_ms) {
        let _ = write!(h, "<th>{}</th>", esc(&heading));
    }
    h.push_str("</tr>");
    for s in spans {
        let [name, rest @ ..] = cells(s);
        let _ = write!(h, "<tr><th>{}</th>", esc(&name));
        for cell in rest {
            let _ = write!(h, "<td>{}</td>", esc(&cell));
        }
        h.push_str("</tr>");
    }
    h.push_str("</table>");
    h
}

/// The largest value the bureau chart of any of `runs` shows, ms.
pub fn chart_max_ms(runs: &[&Results]) -> f64 {
    let mut m: f64 = 1.0;
    for r in runs {
        let Some(b) = &r.bureau else { continue };
        m = m.max(b.deadline_ms as f64);
        for s in &r.seconds {
            m = m.max(s.drawdowns.latency_ms.p99);
        }
        for s in &b.samples {
            m = m.max(s.sim.service_ms as f64);
        }
    }
    m * 1.1
}

/// The base service time as a step line from the configured changes (exact times, unlike
/// the once-a-second samples).
fn service_steps(b: &BureauResult) -> Vec<(f64, f64)> {
    let end = b.samples.last().map_or(0.0, |s| s.t);
    let mut v = b.options.service_ms as f64;
    let mut pts = vec![(0.0, v)];
    for c in &b.changes {
        if let Some(ms) = c.service_ms {
            pts.push((c.at_s, v));
            v = ms as f64;
            pts.push((c.at_s, v));
        }
    }
    pts.push((end.max(pts[pts.len() - 1].0), v));
    pts
}

/// Drawdown p50/p99 per second beside the bureau's service time and the deadline.
pub fn chart(r: &Results, seconds: f64, max_ms: f64) -> Result<String, Error> {
    let Some(b) = &r.bureau else {
        return Ok(String::new());
    };
    let caption = "Drawdown latency and the bureau's service time";
    charts::svg("bureau", caption, "ms", (seconds, max_ms), |_, chart| {
        let deadline = b.deadline_ms as f64;
        chart
            .draw_series(DashedLineSeries::new(
                [(0.0, deadline), (seconds, deadline)],
                8,
                5,
                BLACK.stroke_width(2),
            ))?
            .label(format!("deadline {} ms", b.deadline_ms))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(2)));
        let purple = RGBColor(148, 103, 189);
        charts::line(chart, "bureau service time", purple, service_steps(b))?;
        type Pick = fn(&crate::results::Percentiles) -> f64;
        let series: [(&str, RGBColor, Pick); 2] = [
            ("drawdown p50", RGBColor(44, 160, 44), |p| p.p50),
            ("drawdown p99", RGBColor(214, 39, 40), |p| p.p99),
        ];
        for (name, colour, f) in series {
            let pts = r
                .seconds
                .iter()
                .filter(|x| x.drawdowns.count > 0)
                .map(|x| (x.t as f64 + 0.5, f(&x.drawdowns.latency_ms)));
            charts::line(chart, name, colour, pts)?;
        }
        Ok(Some(SeriesLabelPosition::UpperLeft))
    })
}

/// The HTML section (empty when the run had no bureau).
pub fn html(r: &Results, seconds: f64, max_ms: f64) -> Result<String, Error> {
    let Some(b) = &r.bureau else {
        return Ok(String::new());
    };
    Ok(format!(
        "<h2>Credit bureau</h2><p>{}</p><p>Gateway settings over its configuration: <code>{}</code></p><h3>Per phase</h3><p>Drawdowns by intended send time, latency from it; \"no decision\" = 429/503/timeout.</p>{}<figure id=\"chart-bureau\">{}</figure><h3>Every 5 s</h3>{}",
        esc(&describe(b)),
        esc(&settings(b)),
        html_table(&phase_spans(r), b.deadline_ms),
        chart(r, seconds, max_ms)?,
        html_table(&time_spans(r, 5), b.deadline_ms),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bureau::Bureau;
    use crate::bureau::BureauOptions;

    #[test]
    fn label_values_and_deltas_read_the_gateway_series() {
        assert_eq!(
            label_values("gateway_bureau_fallbacks_total{kind=\"cached\",cause=\"timeout\"}"),
            "cached/timeout"
        );
        assert_eq!(label_values("gateway_bureau_timeouts_total"), "");
        let stats = Bureau::new(&BureauOptions::default()).unwrap().stats();
        let at = |t: f64, v: &[(&str, f64)]| BureauSample {
            t,
            sim: stats.clone(),
            gateway: v.iter().map(|(k, x)| ((*k).to_owned(), *x)).collect(),
        };
        let a = at(
            0.0,
            &[(
                "gateway_bureau_fallbacks_total{kind=\"cached\",cause=\"timeout\"}",
                2.0,
            )],
        );
        let b = at(
            5.0,
            &[
                (
                    "gateway_bureau_fallbacks_total{kind=\"cached\",cause=\"timeout\"}",
                    7.0,
                ),
                (
                    "gateway_bureau_fallbacks_total{kind=\"unavailable\",cause=\"breaker_open\"}",
                    3.0,
                ),
                ("gateway_bureau_calls_total{result=\"ok\"}", 9.0),
            ],
        );
        let d = deltas(&a, &b, FALLBACKS);
        assert_eq!(d.get("cached/timeout"), Some(&5.0));
        assert_eq!(d.get("unavailable/breaker_open"), Some(&3.0));
        assert_eq!(d.len(), 2);
        assert_eq!(list(&deltas(&a, &b, CALLS)), "ok 9");
        assert_eq!(sample_at(&[a.clone(), b.clone()], 4.0).unwrap().t, 5.0);

        let change = |at_s: f64, service_ms: Option<u64>| crate::bureau::BureauChange {
            at_s,
            service_ms,
            error_rate: Some(0.1),
        };
        let r = BureauResult {
            options: BureauOptions::default(),
            changes: vec![
                change(1.5, Some(400)),
                change(2.0, None),
                change(3.0, Some(20)),
            ],
            deadline_ms: 800,
            gateway_overrides: String::new(),
            samples: vec![a, b],
        };
        assert_eq!(
            service_steps(&r),
            [
                (0.0, 20.0),
                (1.5, 20.0),
                (1.5, 400.0),
                (3.0, 400.0),
                (3.0, 20.0),
                (5.0, 20.0)
            ]
        );
    }
}
