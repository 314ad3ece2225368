//! The HTML page.

use std::fmt::Write as _;

use super::charts::{self, Scale};
use super::pct;
use crate::Error;
use crate::classify::Cause;
use crate::results::Results;
use risk_core::Family;

const STYLE: &str = "body{font-family:sans-serif;margin:2em;color:#222;max-width:1900px}\
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}\
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}\
.bad{color:#b00;font-weight:bold}.ok{color:#070}figure{margin:1em 0}\
.cols{display:flex;gap:2em;flex-wrap:wrap}.cols>div{flex:1;min-width:700px}\
svg{max-width:100%;height:auto}";

pub(super) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The causes that appear in a population table: the transient and peak causes always,
/// the rest when some group has them.
fn table_causes(runs: &[&Results]) -> Vec<Cause> {
    Cause::ALL
        .iter()
        .copied()
        .filter(|c| {
            matches!(
                c,
                Cause::Coded(
                    Family::Capacity
                        | Family::RateLimit
                        | Family::PeakWindow
                        | Family::Anomaly
                        | Family::Dependency
                )
            ) || runs.iter().any(|r| {
                r.populations
                    .iter()
                    .any(|p| p.refused_by_cause.contains_key(c))
            })
        })
        .collect()
}

fn population_table(r: &Results, causes: &[Cause]) -> String {
    let mut t = String::from(
        "<table class=\"populations\"><tr><th>group</th><th>profile</th><th>client</th><th>users</th>\
         <th>intents</th><th>approved</th><th>review</th><th>refused</th>",
    );
    for c in causes {
        let _ = write!(t, "<th>refused: {}</th>", c.as_str());
    }
    t.push_str("<th>unfinished</th><th>requests / intent</th><th>quota untruthful</th></tr>");
    for p in &r.populations {
        let good = p.profile != "risky";
        let refused_class = if good && p.refused > 0 {
            " class=\"bad\""
        } else {
            ""
        };
        let approved_class = if !good && p.approved > 0 {
            " class=\"bad\""
        } else {
            ""
        };
        let _ = write!(
            t,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td{approved_class}>{}</td><td>{}</td><td{refused_class}>{}</td>",
            esc(&p.name),
            esc(&p.profile),
            esc(&p.behaviour),
            p.users,
            p.intents,
            pct(p.approval_rate),
            pct(if p.intents == 0 {
                0.0
            } else {
                p.review as f64 / p.intents as f64
            }),
            pct(p.refusal_rate),
        );
        for c in causes {
            let _ = write!(
                t,
                "<td>{}</td>",
                pct(p.refusal_rate_by_cause.get(c).copied().unwrap_or(0.0))
            );
        }
        let _ = write!(
            t,
            "<td>{}</td><td>{:.2}</td><td>{} <small>({} of {})</small></td></tr>",
            p.unfinished,
            p.retry_amplification,
            pct(p.quota_untruthful_rate),
            p.promised_refused,
            p.promised
        );
    }
    t.push_str("</table>");
    t
}

fn headline_causes(runs: &[&Results]) -> Vec<Cause> {
    Cause::ALL
        .iter()
        .copied()
        .filter(|c| {
            runs.iter()
                .any(|r| r.totals.good_refusal_rate_by_cause.contains_key(c))
        })
        .collect()
}

fn headline_rows(r: &Results, causes: &[Cause]) -> Vec<(String, String)> {
    let mut rows = vec![(
        "good-user refusal rate".to_owned(),
        pct(r.totals.good_refusal_rate),
    )];
    for c in causes {
        let v = r
            .totals
            .good_refusal_rate_by_cause
            .get(c)
            .copied()
            .unwrap_or(0.0);
        rows.push((format!("&nbsp;&nbsp;of which {}", c.as_str()), pct(v)));
    }
    rows.extend([
        (
            "risky-user approval rate".to_owned(),
            pct(r.totals.risky_approval_rate),
        ),
        (
            "retry amplification (requests / intent)".to_owned(),
            format!("{:.2}", r.totals.retry_amplification),
        ),
        (
            "quota untruthful (promised, then refused)".to_owned(),
            pct(r.totals.quota_untruthful_rate),
        ),
        (
            "latency p50 / p99 / p99.9 (ms, CO-corrected)".to_owned(),
            format!(
                "{:.1} / {:.1} / {:.1}",
                r.latency_ms.percentiles.p50,
                r.latency_ms.percentiles.p99,
                r.latency_ms.percentiles.p999
            ),
        ),
        (
            "service time p50 / p99 (ms, uncorrected)".to_owned(),
            format!(
                "{:.1} / {:.1}",
                r.service_time_ms.percentiles.p50, r.service_time_ms.percentiles.p99
            ),
        ),
        (
            "requests sent".to_owned(),
            r.generator.requests_sent.to_string(),
        ),
        (
            "generator kept up".to_owned(),
            if r.generator.kept_up {
                "yes".to_owned()
            } else {
                "<span class=\"bad\">NO</span>".to_owned()
            },
        ),
    ]);
    rows
}

fn generator_section(r: &Results) -> String {
    let g = &r.generator;
    format!(
        "<table><tr><th>journeys</th><td>{}</td></tr><tr><th>unfinished journeys</th><td>{}</td></tr>\
         <tr><th>requests scheduled / sent / missed</th><td>{} / {} / {}</td></tr>\
         <tr><th>late sends (&gt; {} ms)</th><td>{}</td></tr>\
         <tr><th>timer lag p50 / p99 / max (ms)</th><td>{:.2} / {:.2} / {:.2}</td></tr>\
         <tr><th>send delay p50 / p99 / max (ms)</th><td>{:.2} / {:.2} / {:.2}</td></tr>\
         <tr><th>connections (opened)</th><td>{} ({})</td></tr></table>",
        g.journeys,
        g.journeys_unfinished,
        g.requests_scheduled,
        g.requests_sent,
        g.missed_sends,
        g.late_threshold_ms,
        g.late_sends,
        g.timer_lag_ms.p50,
        g.timer_lag_ms.p99,
        g.timer_lag_max_ms,
        g.send_delay_ms.p50,
        g.send_delay_ms.p99,
        g.send_delay_max_ms,
        g.connections,
        g.connections_opened
    )
}

fn gates_and_warnings(r: &Results) -> String {
    let mut s = String::new();
    if !r.gates.is_empty() {
        s.push_str("<h2>Gates</h2><table><tr><th>gate</th><th>limit</th><th>value</th><th>result</th></tr>");
        for g in &r.gates {
            let _ = write!(
                s,
                "<tr><td>{}</td><td>{}</td><td>{:.4}</td><td class=\"{}\">{}</td></tr>",
                esc(&g.name),
                g.limit,
                g.value,
                if g.passed { "ok" } else { "bad" },
                if g.passed { "pass" } else { "FAIL" }
            );
        }
        s.push_str("</table>");
    }
    if !r.warnings.is_empty() {
        s.push_str("<h2>Warnings</h2><ul>");
        for w in &r.warnings {
            let _ = write!(s, "<li>{}</li>", esc(w));
        }
        s.push_str("</ul>");
    }
    s
}

struct Charts {
    offered: String,
    refusals: String,
    latency: String,
}

fn charts(r: &Results, s: &Scale) -> Result<Charts, Error> {
    Ok(Charts {
        offered: charts::offered_vs_goodput(r, s)?,
        refusals: charts::refusals_by_cause(r, s)?,
        latency: charts::latency_over_time(r, s)?,
    })
}

fn title(r: &Results) -> String {
    format!(
        "{} &middot; {} &middot; {}",
        esc(&r.scenario.name),
        esc(&r.target),
        esc(&r.started_at)
    )
}

/// The fault schedule as it ran, with each fault's recovery time (red lines on the charts).
fn faults_table(r: &Results) -> String {
    if r.faults.is_empty() {
        return String::new();
    }
    let mut h = format!(
        "<h2>Faults</h2><p>Recovery: seconds from the fault until goodput per second is back to \
         95 % of its mean over the {} s before it.</p><table id=\"faults\"><tr><th>fault</th>\
         <th>at (s)</th><th>command took (s)</th><th>exit</th><th>recovery (s)</th></tr>",
        crate::faults::BASELINE_S
    );
    for f in &r.faults {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{:.1}</td><td>{:.1}</td><td>{}</td><td>{}</td></tr>",
            esc(&f.label()),
            f.at_s,
            f.took_s,
            f.exit_code
                .map_or_else(|| "none".to_owned(), |c| c.to_string()),
            f.recovery_s
                .map_or_else(|| "not within the run".to_owned(), |s| format!("{s:.1}"))
        );
    }
    h.push_str("</table>");
    h
}

/// The HTML report of one run.
pub fn report_html(r: &Results) -> Result<String, Error> {
    let scale = Scale::fitting(&[r]);
    let c = charts(r, &scale)?;
    let causes = table_causes(&[r]);
    let mut h = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>loadtest {}</title><style>{STYLE}</style></head><body>",
        esc(&r.scenario.name)
    );
    let _ = write!(
        h,
        "<h1>Surge report: {}</h1><p>{} (scale {}, {:.0} s, {} connections)</p>",
        title(r),
        esc(&r.scenario.description),
        r.scenario.scale,
        r.scenario.duration_s,
        r.scenario.connections
    );
    h.push_str("<h2>Headline</h2><table id=\"headline\">");
    for (k, v) in headline_rows(r, &headline_causes(&[r])) {
        let _ = write!(h, "<tr><th>{k}</th><td>{v}</td></tr>");
    }
    h.push_str("</table><h2>Per population (ground truth the gateway never saw)</h2>");
    h.push_str(&population_table(r, &causes));
    let _ = write!(
        h,
        "<figure id=\"chart-offered-goodput\">{}</figure><figure id=\"chart-refusals-by-cause\">{}</figure><figure id=\"chart-latency\">{}</figure>",
        c.offered, c.refusals, c.latency
    );
    h.push_str(&faults_table(r));
    h.push_str(&super::bureau::html(
        r,
        scale.seconds,
        super::bureau::chart_max_ms(&[r]),
    )?);
    h.push_str("<h2>Generator health</h2>");
    h.push_str(&generator_section(r));
    h.push_str(&gates_and_warnings(r));
    h.push_str("</body></html>\n");
    Ok(h)
}

/// Two runs side by side: A on the left, B on the right, on the same axes.
pub fn compare_html(a: &Results, b: &Results) -> Result<String, Error> {
    compare_page(a, b, "Compare", "")
}

/// [`compare_html`] under the heading `heading`, with `lead` (HTML) between the runs' names
/// and the headline.
pub(super) fn compare_page(
    a: &Results,
    b: &Results,
    heading: &str,
    lead: &str,
) -> Result<String, Error> {
    let scale = Scale::fitting(&[a, b]);
    let (ca, cb) = (charts(a, &scale)?, charts(b, &scale)?);
    let causes = table_causes(&[a, b]);
    let mut h = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>loadtest {}</title><style>{STYLE}</style></head><body>\
         <h1>{}</h1><p>A: {}<br>B: {}</p>{lead}<h2>Headline</h2><table id=\"headline\"><tr><th>measure</th><th>A</th><th>B</th></tr>",
        esc(&heading.to_lowercase()),
        esc(heading),
        title(a),
        title(b)
    );
    let hc = headline_causes(&[a, b]);
    for ((k, va), (_, vb)) in headline_rows(a, &hc).into_iter().zip(headline_rows(b, &hc)) {
        let _ = write!(h, "<tr><th>{k}</th><td>{va}</td><td>{vb}</td></tr>");
    }
    h.push_str("</table>");
    let _ = write!(
        h,
        "<div class=\"cols\"><div><h2>A</h2>{}</div><div><h2>B</h2>{}</div></div>",
        population_table(a, &causes),
        population_table(b, &causes)
    );
    for (id, la, lb) in [
        ("chart-offered-goodput", &ca.offered, &cb.offered),
        ("chart-refusals-by-cause", &ca.refusals, &cb.refusals),
        ("chart-latency", &ca.latency, &cb.latency),
    ] {
        let _ = write!(
            h,
            "<div class=\"cols\" id=\"{id}\"><figure><figcaption>A</figcaption>{la}</figure><figure><figcaption>B</figcaption>{lb}</figure></div>"
        );
    }
    let max_ms = super::bureau::chart_max_ms(&[a, b]);
    for (name, r) in [("A", a), ("B", b)] {
        let section = super::bureau::html(r, scale.seconds, max_ms)?;
        if !section.is_empty() {
            let _ = write!(
                h,
                "<div id=\"bureau-{name}\"><h2>{name}</h2>{section}</div>"
            );
        }
    }
    let _ = writeln!(
        h,
        "<div class=\"cols\"><div><h2>A generator</h2>{}{}</div><div><h2>B generator</h2>{}{}</div></div></body></html>",
        generator_section(a),
        gates_and_warnings(a),
        generator_section(b),
        gates_and_warnings(b)
    );
    Ok(h)
}
