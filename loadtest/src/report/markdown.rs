//! The Markdown summaries (for a pull request).

use std::fmt::Write as _;

use super::pct;
use crate::classify::Cause;
use crate::results::{PopulationResult, Results};
use risk_core::Family;

const TABLE_CAUSES: &[Cause] = &[
    Cause::Coded(Family::Capacity),
    Cause::Coded(Family::RateLimit),
    Cause::Coded(Family::PeakWindow),
    Cause::Coded(Family::Anomaly),
    Cause::Coded(Family::Dependency),
];

fn other_refused(p: &PopulationResult) -> f64 {
    p.refusal_rate_by_cause
        .iter()
        .filter(|(c, _)| !TABLE_CAUSES.contains(c))
        .fold(0.0, |acc, (_, v)| acc + v)
}

fn headline(r: &Results) -> Vec<(&'static str, String)> {
    vec![
        ("good-user refusal rate", pct(r.totals.good_refusal_rate)),
        (
            "risky-user approval rate",
            pct(r.totals.risky_approval_rate),
        ),
        (
            "retry amplification (requests / intent)",
            format!("{:.2}", r.totals.retry_amplification),
        ),
        (
            "quota untruthful (promised, then refused)",
            pct(r.totals.quota_untruthful_rate),
        ),
        (
            "latency p50 (ms)",
            format!("{:.1}", r.latency_ms.percentiles.p50),
        ),
        (
            "latency p99 (ms)",
            format!("{:.1}", r.latency_ms.percentiles.p99),
        ),
        (
            "latency p99.9 (ms)",
            format!("{:.1}", r.latency_ms.percentiles.p999),
        ),
        ("requests sent", r.generator.requests_sent.to_string()),
        (
            "generator kept up",
            if r.generator.kept_up {
                "yes".into()
            } else {
                "NO".into()
            },
        ),
    ]
}

fn population_rows(s: &mut String, r: &Results) {
    s.push_str("| group | profile | client | intents | approved | refused | capacity | rate limit | peak window | anomaly | dependency | other | req/intent | quota untruthful |\n");
    s.push_str("|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n");
    for p in &r.populations {
        let by = |c: Cause| pct(p.refusal_rate_by_cause.get(&c).copied().unwrap_or(0.0));
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.2} | {} |",
            p.name,
            p.profile,
            p.behaviour,
            p.intents,
            pct(p.approval_rate),
            pct(p.refusal_rate),
            by(Cause::Coded(Family::Capacity)),
            by(Cause::Coded(Family::RateLimit)),
            by(Cause::Coded(Family::PeakWindow)),
            by(Cause::Coded(Family::Anomaly)),
            by(Cause::Coded(Family::Dependency)),
            pct(other_refused(p)),
            p.retry_amplification,
            pct(p.quota_untruthful_rate),
        );
    }
}

fn gates(s: &mut String, r: &Results) {
    if r.gates.is_empty() {
        return;
    }
    s.push_str("\n**Gates**\n\n");
    for g in &r.gates {
        let _ = writeln!(
            s,
            "- {}: {:.4} (limit {}) — {}",
            g.name,
            g.value,
            g.limit,
            if g.passed { "pass" } else { "**FAIL**" }
        );
    }
}

fn faults(s: &mut String, r: &Results) {
    if r.faults.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "\n**Faults** (recovery: until goodput is back to 95 % of the {} s before)\n\n\
         | fault | at (s) | exit | recovery (s) |\n|---|--:|--:|--:|",
        crate::faults::BASELINE_S
    );
    for f in &r.faults {
        let _ = writeln!(
            s,
            "| {} | {:.1} | {} | {} |",
            f.label(),
            f.at_s,
            f.exit_code
                .map_or_else(|| "none".to_owned(), |c| c.to_string()),
            f.recovery_s
                .map_or_else(|| "not within the run".to_owned(), |x| format!("{x:.1}"))
        );
    }
}

/// The Markdown summary of one run.
pub fn summary_markdown(r: &Results) -> String {
    let mut s = format!(
        "## loadtest `{}` against {}\n\n{} — scale {}, {:.0} s, started {}\n\n| measure | value |\n|---|--:|\n",
        r.scenario.name,
        r.target,
        r.scenario.description,
        r.scenario.scale,
        r.scenario.duration_s,
        r.started_at
    );
    for (k, v) in headline(r) {
        let _ = writeln!(s, "| {k} | {v} |");
    }
    for (c, v) in &r.totals.good_refusal_rate_by_cause {
        let _ = writeln!(s, "| good users refused: {} | {} |", c.as_str(), pct(*v));
    }
    s.push_str(
        "\n**Per population** (rates over user intents; ground truth the gateway never saw)\n\n",
    );
    population_rows(&mut s, r);
    s.push_str(&super::steps::markdown(r));
    s.push_str(&super::bureau::markdown(r));
    faults(&mut s, r);
    gates(&mut s, r);
    if !r.warnings.is_empty() {
        s.push_str("\n**Warnings**\n\n");
        for w in &r.warnings {
            let _ = writeln!(s, "- {w}");
        }
    }
    s
}

/// The Markdown comparison of two runs.
pub fn compare_markdown(a: &Results, b: &Results) -> String {
    compare_markdown_led(a, b, "compare", "")
}

/// [`compare_markdown`] titled `what`, with `lead` (Markdown) before the headline table.
pub(super) fn compare_markdown_led(a: &Results, b: &Results, what: &str, lead: &str) -> String {
    let mut s = format!(
        "## loadtest {what}: `{}` A = {} vs B = {}\n\n{lead}| measure | A | B |\n|---|--:|--:|\n",
        a.scenario.name, a.target, b.target
    );
    for ((k, va), (_, vb)) in headline(a).into_iter().zip(headline(b)) {
        let _ = writeln!(s, "| {k} | {va} | {vb} |");
    }
    let mut causes: Vec<Cause> = a
        .totals
        .good_refusal_rate_by_cause
        .keys()
        .chain(b.totals.good_refusal_rate_by_cause.keys())
        .copied()
        .collect();
    causes.sort();
    causes.dedup();
    for c in causes {
        let g = |r: &Results| {
            pct(r
                .totals
                .good_refusal_rate_by_cause
                .get(&c)
                .copied()
                .unwrap_or(0.0))
        };
        let _ = writeln!(
            s,
            "| good users refused: {} | {} | {} |",
            c.as_str(),
            g(a),
            g(b)
        );
    }
    let delta = b.totals.good_refusal_rate - a.totals.good_refusal_rate;
    let _ = writeln!(
        s,
        "\nGood-user refusals: {} → {} ({}{:.1} points).",
        pct(a.totals.good_refusal_rate),
        pct(b.totals.good_refusal_rate),
        if delta >= 0.0 { "+" } else { "" },
        delta * 100.0
    );
    s.push_str("\n**A per population**\n\n");
    population_rows(&mut s, a);
    s.push_str("\n**B per population**\n\n");
    population_rows(&mut s, b);
    for (name, r) in [("A", a), ("B", b)] {
        let section = super::bureau::markdown(r);
        if !section.is_empty() {
            let _ = write!(s, "\n### {name}\n{section}");
        }
    }
    s
}
