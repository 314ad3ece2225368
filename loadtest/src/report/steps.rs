//! The step table of an overload run (`step-overload`): one row per phase with the measures
//! issue 7 judges admission control by — goodput (answers within the deadline: quotes and
//! drawdown decisions) as a share of the capacity the rates were scaled by (`--capacity`
//! journeys/s, i.e. twice as many requests/s: a journey is a quote and a drawdown, and
//! `steady` measures capacity as the peak of the same goodput), the latency of the drawdowns
//! the gateway admitted, the shed rate and success rate by admission priority, and retry
//! amplification — plus whether the generator sent what the step offered.
//!
//! Seconds are assigned to a phase by completion time, so a step's first second still carries
//! some answers to the step before; the table shows what a client saw, transitions included.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;

use super::pct;
use crate::recorder::new_histogram;
use crate::results::{Percentiles, PrioritySecond, Results, SecondResult, decode_histogram};

/// A journey is a credit-line quote and a drawdown: capacity in journeys/s is half the
/// capacity in answers/s.
pub const REQUESTS_PER_JOURNEY: f64 = 2.0;

/// Requests sent under this share of those offered in a step: the generator fell short.
const SENT_SHORT: f64 = 0.95;

/// One phase's measures.
#[derive(Debug, Clone, PartialEq)]
pub struct StepRow {
    /// Phase name.
    pub name: String,
    /// Journeys per second the phase offered.
    pub offered_rate: f64,
    /// `offered_rate / capacity`, when the run had a capacity.
    pub load: Option<f64>,
    /// Requests sent over requests scheduled in the phase's seconds.
    pub sent_share: f64,
    /// Answers within the deadline (quotes and drawdown decisions), per second.
    pub goodput_rate: f64,
    /// `goodput_rate / (REQUESTS_PER_JOURNEY × capacity)`.
    pub goodput_share: Option<f64>,
    /// Drawdown decisions within the deadline, per second.
    pub drawdown_goodput_rate: f64,
    /// Latency of the admitted drawdown attempts, ms.
    pub admitted: Percentiles,
    /// The same from their actual send (what the generator's lateness does not explain), ms.
    pub admitted_sent: Percentiles,
    /// Admitted drawdown attempts.
    pub admitted_count: u64,
    /// By priority: the phase's sums.
    pub priorities: BTreeMap<String, PrioritySecond>,
    /// Attempts over first attempts, all priorities.
    pub retry_amplification: f64,
}

impl StepRow {
    /// Shed attempts over attempts of `priority` (0 when none were sent).
    pub fn shed_rate(&self, priority: &str) -> f64 {
        self.priorities
            .get(priority)
            .map_or(0.0, |p| ratio(p.shed, p.sent))
    }

    /// Successes over first attempts of `priority`: the success rate per intent.
    pub fn success_rate(&self, priority: &str) -> f64 {
        self.priorities
            .get(priority)
            .map_or(0.0, |p| ratio(p.ok, p.first))
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

fn in_phase(s: &SecondResult, start: f64, end: f64) -> bool {
    let t = s.t as f64;
    t >= start.floor() && t < end.ceil().max(start.floor() + 1.0)
}

/// One row per phase.
pub fn step_rows(r: &Results) -> Vec<StepRow> {
    let capacity = r.scenario.capacity;
    r.phases
        .iter()
        .map(|p| {
            let secs: Vec<&SecondResult> = r
                .seconds
                .iter()
                .filter(|s| in_phase(s, p.start_s, p.end_s))
                .collect();
            let duration = (p.end_s - p.start_s).max(1e-9);
            let offered: u64 = secs.iter().map(|s| s.offered).sum();
            let sent: u64 = secs.iter().map(|s| s.sent).sum();
            let good: u64 = secs.iter().map(|s| s.drawdowns.in_deadline).sum();
            let mut hist: Histogram<u64> = new_histogram();
            let mut sent_hist: Histogram<u64> = new_histogram();
            let mut admitted_count = 0;
            let mut priorities: BTreeMap<String, PrioritySecond> = BTreeMap::new();
            for s in &secs {
                admitted_count += s.drawdowns.admitted;
                if !s.drawdowns.admitted_histogram.is_empty()
                    && let Ok(h) = decode_histogram(&s.drawdowns.admitted_histogram)
                {
                    // Same bounds on both sides; an add that does not fit is left out.
                    let _ = hist.add(&h);
                }
                if !s.drawdowns.admitted_sent_histogram.is_empty()
                    && let Ok(h) = decode_histogram(&s.drawdowns.admitted_sent_histogram)
                {
                    let _ = sent_hist.add(&h);
                }
                for (k, v) in &s.priorities {
                    let e = priorities.entry(k.clone()).or_default();
                    e.first += v.first;
                    e.sent += v.sent;
                    e.shed += v.shed;
                    e.ok += v.ok;
                }
            }
            let first: u64 = priorities.values().map(|v| v.first).sum();
            let all: u64 = priorities.values().map(|v| v.sent).sum();
            let offered_rate = p.expected_journeys / duration;
            let ok: u64 = priorities.values().map(|v| v.ok).sum();
            let goodput_rate = ok as f64 / duration;
            StepRow {
                name: p.name.clone(),
                offered_rate,
                load: capacity.map(|c| offered_rate / c),
                sent_share: if offered == 0 {
                    1.0
                } else {
                    sent as f64 / offered as f64
                },
                goodput_rate,
                goodput_share: capacity.map(|c| goodput_rate / (REQUESTS_PER_JOURNEY * c)),
                drawdown_goodput_rate: good as f64 / duration,
                admitted: Percentiles::of(&hist),
                admitted_sent: Percentiles::of(&sent_hist),
                admitted_count,
                priorities,
                retry_amplification: ratio(all, first),
            }
        })
        .collect()
}

/// The best `window`-second mean of goodput (answers within the deadline per second): the
/// capacity a `steady` ramp measures (in journeys/s: divide by [`REQUESTS_PER_JOURNEY`]).
pub fn peak_goodput(r: &Results, window: usize) -> f64 {
    let g: Vec<u64> = r
        .seconds
        .iter()
        .map(|s| s.priorities.values().map(|p| p.ok).sum())
        .collect();
    if g.is_empty() || window == 0 {
        return 0.0;
    }
    let w = window.min(g.len());
    g.windows(w)
        .map(|x| x.iter().sum::<u64>() as f64 / w as f64)
        .fold(0.0, f64::max)
}

/// A rate of `priority` as a percentage, or "–" when its denominator is zero.
fn rate(
    row: &StepRow,
    priority: &str,
    f: fn(&StepRow, &str) -> f64,
    denominator: fn(&PrioritySecond) -> u64,
) -> String {
    match row.priorities.get(priority).map(denominator) {
        Some(n) if n > 0 => pct(f(row, priority)),
        _ => "–".into(),
    }
}

/// The Markdown step table (empty unless the run recorded admission priorities).
pub fn markdown(r: &Results) -> String {
    if r.seconds.iter().all(|s| s.priorities.is_empty()) {
        return String::new();
    }
    let mut s = String::from("\n**Steps** (admission under load)\n\n");
    let peak = peak_goodput(r, 3);
    let _ = writeln!(
        s,
        "Peak goodput (best 3 s, answers within the deadline): {peak:.1}/s = {:.1} journeys/s{}.\n",
        peak / REQUESTS_PER_JOURNEY,
        r.scenario
            .capacity
            .map(|c| format!("; rates are multiples of capacity {c:.1} journeys/s"))
            .unwrap_or_default()
    );
    s.push_str("| step | offered/s | × capacity | sent/offered | goodput/s | goodput / capacity | drawdowns in deadline/s | admitted drawdowns p50 / p99 / p99.9 ms | from the send p50 / p99 ms | shed low | shed default | shed critical | success low | success critical | retry ampl. |\n");
    s.push_str("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n");
    for row in step_rows(r) {
        let opt = |x: Option<f64>, f: &dyn Fn(f64) -> String| x.map_or("–".into(), f);
        let _ = writeln!(
            s,
            "| {} | {:.0} | {} | {}{} | {:.1} | {} | {:.1} | {} | {} | {} | {} | {} | {} | {} | {:.2} |",
            row.name,
            row.offered_rate,
            opt(row.load, &|x| format!("{x:.1}")),
            pct(row.sent_share),
            if row.sent_share < SENT_SHORT {
                " (generator short)"
            } else {
                ""
            },
            row.goodput_rate,
            opt(row.goodput_share, &pct),
            row.drawdown_goodput_rate,
            if row.admitted_count == 0 {
                "– (none)".to_owned()
            } else {
                format!(
                    "{:.0} / {:.0} / {:.0}",
                    row.admitted.p50, row.admitted.p99, row.admitted.p999
                )
            },
            if row.admitted_count == 0 {
                "–".to_owned()
            } else {
                format!(
                    "{:.0} / {:.0}",
                    row.admitted_sent.p50, row.admitted_sent.p99
                )
            },
            rate(&row, "low", StepRow::shed_rate, |p| p.sent),
            rate(&row, "default", StepRow::shed_rate, |p| p.sent),
            rate(&row, "critical", StepRow::shed_rate, |p| p.sent),
            rate(&row, "low", StepRow::success_rate, |p| p.first),
            rate(&row, "critical", StepRow::success_rate, |p| p.first),
            row.retry_amplification,
        );
    }
    s.push_str(
        "\nGoodput: answers within the deadline (quotes and drawdown decisions; bureau-fallback \
         reviews left out), as a share of 2 × capacity answers/s (a journey is a quote and a \
         drawdown). Admitted: drawdown attempts not shed with 503 `CAPACITY_SHED` (a timeout \
         counts at the time the client gave up). Shed: attempts shed over attempts of that \
         priority. Success: answers within the deadline over first attempts (per intent). \
         Retry amplification: attempts over first attempts.\n",
    );
    s
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::Instant;

    use super::*;
    use crate::classify::{Answer, Endpoint};
    use crate::population::{Behaviour, Profile};
    use crate::recorder::{GroupInfo, Recorder};
    use crate::results::{PhaseInfo, ScenarioInfo};

    fn drawdown(outcome: &str, reason: Option<&str>) -> Answer {
        let reasons = reason.map_or(String::new(), |r| format!(r#"{{"code":"{r}"}}"#));
        Answer::from_response(
            Endpoint::Drawdown,
            200,
            None,
            format!(r#"{{"outcome":"{outcome}","reasons":[{reasons}]}}"#).as_bytes(),
        )
    }

    fn shed() -> Answer {
        Answer::from_response(
            Endpoint::Drawdown,
            503,
            None,
            br#"{"error":{"code":"CAPACITY_SHED","message":"shed"}}"#,
        )
    }

    /// Two 2-second phases at capacity 10 journeys/s: the first all served in time, the second
    /// with shed low drawdowns, a late critical one, a bureau-fallback review and retries.
    #[test]
    fn step_rows_count_goodput_shed_success_and_retries_per_phase() {
        let start = Instant::now();
        let mut r = Recorder::new(start, 1);
        let deadline = Duration::from_millis(1000);
        let ms = Duration::from_millis;
        // `took` from the intended send `at`; the generator sends 5 ms late.
        let mut send = |at: Duration, took: Duration, prio, attempt, ep, a: &Answer| {
            r.admission(
                prio,
                attempt,
                ep,
                (start + at, start + at + ms(5), start + at + took),
                a,
                deadline,
            );
        };
        let quote = Answer::Quote {
            drawable_now_fen: 1,
            available_fen: 1,
        };
        let ok = drawdown("approved", None);
        // Phase 1 (0..2 s): 4 journeys, quote and drawdown each, 20 ms.
        for i in 0..4 {
            let at = ms(100 + i * 400);
            send(at, ms(20), "default", 0, Endpoint::Quote, &quote);
            send(at + ms(50), ms(20), "critical", 0, Endpoint::Drawdown, &ok);
        }
        // Phase 2 (2..4 s): low drawdown shed, then its retry shed too; a critical drawdown
        // answered after 1.5 s (late); a critical one that got the bureau-fallback review;
        // a critical one in time.
        send(ms(2100), ms(1), "low", 0, Endpoint::Drawdown, &shed());
        send(ms(2101), ms(1), "low", 1, Endpoint::Drawdown, &shed());
        send(ms(2200), ms(1500), "critical", 0, Endpoint::Drawdown, &ok);
        let fallback = drawdown("review", Some("BUREAU_UNAVAILABLE_REVIEW"));
        send(
            ms(2300),
            ms(30),
            "critical",
            0,
            Endpoint::Drawdown,
            &fallback,
        );
        send(ms(2400), ms(40), "critical", 0, Endpoint::Drawdown, &ok);

        let groups = [GroupInfo {
            name: "g".into(),
            profile: Profile::Good,
            behaviour: Behaviour::Polite,
            users: 1,
        }];
        let phase = |name: &str, start_s: f64| PhaseInfo {
            name: name.into(),
            start_s,
            end_s: start_s + 2.0,
            expected_journeys: 20.0,
            journeys: 0,
            force_window: None,
        };
        let info = ScenarioInfo {
            name: "step-overload".into(),
            description: String::new(),
            scale: 1.0,
            duration_s: 4.0,
            seed: 1,
            connections: 1,
            capacity: Some(10.0),
        };
        let results = r.finish(&groups, 1, 1, 0).unwrap().into_results(
            info,
            "t".into(),
            "s".into(),
            vec![phase("1x", 0.0), phase("2x", 2.0)],
            Vec::new(),
            Vec::new(),
        );
        let rows = step_rows(&results);
        assert_eq!(rows.len(), 2);
        let (a, b) = (&rows[0], &rows[1]);
        assert_eq!((a.offered_rate, a.load), (10.0, Some(1.0)));
        // 8 answers in time over 2 s = 4/s, of 2 x 10 answers/s capacity.
        assert_eq!((a.goodput_rate, a.goodput_share), (4.0, Some(0.2)));
        assert_eq!(a.drawdown_goodput_rate, 2.0);
        assert_eq!(a.retry_amplification, 1.0);
        assert_eq!(a.success_rate("critical"), 1.0);
        assert_eq!(a.admitted_count, 4);
        assert!((a.admitted.p99 - 20.0).abs() < 0.1, "{:?}", a.admitted);
        // From the actual send: the generator's 5 ms left out.
        assert!(
            (a.admitted_sent.p99 - 15.0).abs() < 0.1,
            "{:?}",
            a.admitted_sent
        );
        // Phase 2: only the last drawdown is goodput; both low attempts shed; the late one is
        // admitted (and sets p99), the shed ones are not.
        assert_eq!(b.goodput_rate, 0.5);
        assert_eq!(b.shed_rate("low"), 1.0);
        assert_eq!(b.shed_rate("critical"), 0.0);
        assert_eq!(b.success_rate("low"), 0.0);
        assert!((b.success_rate("critical") - 1.0 / 3.0).abs() < 1e-9);
        assert_eq!(b.admitted_count, 3);
        assert!((b.admitted.p999 - 1500.0).abs() < 2.0, "{:?}", b.admitted);
        assert!((b.retry_amplification - 5.0 / 4.0).abs() < 1e-9);
        let md = markdown(&results);
        assert!(md.contains("| 2x | 10 | 1.0 |"), "{md}");
        assert!(peak_goodput(&results, 1) >= 4.0);
    }
}
