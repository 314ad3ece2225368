//! Accounting while a run goes: per-second buckets, HDR histograms, generator health and the
//! per-population ground-truth tallies. Turned into [`Results`] at the end.
//!
//! # Layout
//! - [`LATE_THRESHOLD`]: sends later than this after their intended time count as late.
//! - [`new_histogram`]: a latency histogram.
//! - [`JourneyEnd`]: how a journey ended.
//! - [`JourneyOutcome`]: a finished journey, as the population tally sees it.
//! - [`GroupInfo`]: static facts about a population group, for the results.
//! - [`Recorder`]: the run's accounting.
//! - [`Finished`]: the parts of [`Results`] the recorder computes.
//! - [`totals`]: the headline measures over all groups.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::time::Instant;

use crate::Error;
use crate::classify::{Answer, Cause, Decision, Endpoint};
use crate::results::{
    DrawdownSecond, GeneratorHealth, LatencySummary, Percentiles, PopulationResult, PrioritySecond,
    Results, SecondResult, Totals, encode_histogram,
};
use risk_core::Family;

/// Sends later than this after their intended time count as late.
pub const LATE_THRESHOLD: Duration = Duration::from_millis(10);

/// A latency histogram: 1 µs to 1 hour, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    // Bounds are constants that satisfy the crate's preconditions (low >= 1, high >= 2 * low,
    // sigfig <= 5).
    #[allow(clippy::expect_used)]
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("constant histogram bounds are valid")
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// How a journey ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JourneyEnd {
    /// The drawdown was approved.
    Approved,
    /// The drawdown went to review.
    Review,
    /// The last answer refused it, for this cause.
    Refused(Cause),
    /// Cut by the drain deadline.
    Unfinished,
}

/// A finished journey, as the population tally sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JourneyOutcome {
    /// How it ended.
    pub end: JourneyEnd,
    /// Whether a drawdown was sent.
    pub drew: bool,
    /// Whether the quote before the drawdown said the amount was drawable now.
    pub promised: bool,
}

#[derive(Debug, Default, Clone)]
struct PopTally {
    intents: u64,
    approved: u64,
    review: u64,
    unfinished: u64,
    refused: BTreeMap<Cause, u64>,
    requests: u64,
    drawdowns: u64,
    promised: u64,
    promised_refused: BTreeMap<Cause, u64>,
    /// Users (by index in the group) with a journey refused, by cause, and for any cause.
    refused_users: BTreeMap<Cause, HashSet<u32>>,
    refused_any_user: HashSet<u32>,
}

#[derive(Debug, Clone)]
struct Second {
    offered: u64,
    sent: u64,
    completed: BTreeMap<String, u64>,
    codes: BTreeMap<String, u64>,
    refusals: BTreeMap<Cause, u64>,
    goodput: u64,
    approved: u64,
    hist: Histogram<u64>,
    drawdowns: DrawdownTally,
    priorities: BTreeMap<&'static str, PrioritySecond>,
}

#[derive(Debug, Clone)]
struct DrawdownTally {
    count: u64,
    approved: u64,
    review: u64,
    rejected: u64,
    refused: u64,
    hist: Histogram<u64>,
    in_deadline: u64,
    admitted: u64,
    admitted_hist: Histogram<u64>,
    /// The same attempts from their actual send (what delayed the send left out: the
    /// journey's quote answered after the think time, or the generator's own lateness).
    admitted_sent_hist: Histogram<u64>,
}

impl Second {
    fn new() -> Self {
        Self {
            offered: 0,
            sent: 0,
            completed: BTreeMap::new(),
            codes: BTreeMap::new(),
            refusals: BTreeMap::new(),
            goodput: 0,
            approved: 0,
            hist: new_histogram(),
            drawdowns: DrawdownTally {
                count: 0,
                approved: 0,
                review: 0,
                rejected: 0,
                refused: 0,
                hist: new_histogram(),
                in_deadline: 0,
                admitted: 0,
                admitted_hist: new_histogram(),
                admitted_sent_hist: new_histogram(),
            },
            priorities: BTreeMap::new(),
        }
    }
}

/// Static facts about a population group, for the results.
#[derive(Debug, Clone)]
pub struct GroupInfo {
    /// Name.
    pub name: String,
    /// Ground truth.
    pub profile: crate::population::Profile,
    /// Client behaviour.
    pub behaviour: crate::population::Behaviour,
    /// Users.
    pub users: usize,
}

/// The run's accounting. Cheap to update; held behind a mutex that is never held across
/// an await.
#[derive(Debug)]
pub struct Recorder {
    start: Instant,
    seconds: Vec<Second>,
    latency: Histogram<u64>,
    service: Histogram<u64>,
    send_delay: Histogram<u64>,
    timer_lag: Histogram<u64>,
    pops: Vec<PopTally>,
    requests_scheduled: u64,
    requests_sent: u64,
    late_sends: u64,
}

impl Recorder {
    /// A recorder for a run starting at `start` with `groups` population groups.
    pub fn new(start: Instant, groups: usize) -> Self {
        Self {
            start,
            seconds: Vec::new(),
            latency: new_histogram(),
            service: new_histogram(),
            send_delay: new_histogram(),
            timer_lag: new_histogram(),
            pops: vec![PopTally::default(); groups],
            requests_scheduled: 0,
            requests_sent: 0,
            late_sends: 0,
        }
    }

    fn second(&mut self, at: Instant) -> &mut Second {
        let idx = usize::try_from(at.saturating_duration_since(self.start).as_secs())
            .unwrap_or(usize::MAX / 2);
        if self.seconds.len() <= idx {
            self.seconds.resize_with(idx + 1, Second::new);
        }
        &mut self.seconds[idx]
    }

    /// A request was scheduled for `intended`.
    pub fn offered(&mut self, intended: Instant) {
        self.requests_scheduled += 1;
        self.second(intended).offered += 1;
    }

    /// A timer meant to fire at `intended` fired at `fired` (the generator's own lag).
    pub fn timer(&mut self, intended: Instant, fired: Instant) {
        let lag = fired.saturating_duration_since(intended);
        self.timer_lag.saturating_record(micros(lag));
    }

    /// A request of `group` intended for `intended` was sent at `sent` and answered at `done`.
    pub fn completed(
        &mut self,
        group: usize,
        intended: Instant,
        sent: Instant,
        done: Instant,
        status: &str,
        answer: &Answer,
    ) {
        self.requests_sent += 1;
        self.pops[group].requests += 1;
        let delay = sent.saturating_duration_since(intended);
        if delay > LATE_THRESHOLD {
            self.late_sends += 1;
        }
        self.send_delay.saturating_record(micros(delay));
        self.second(sent).sent += 1;
        let latency = micros(done.saturating_duration_since(intended));
        self.latency.saturating_record(latency);
        self.service
            .saturating_record(micros(done.saturating_duration_since(sent)));
        let s = self.second(done);
        s.hist.saturating_record(latency);
        *s.completed.entry(status.to_owned()).or_default() += 1;
        if let Some(code) = answer.code_label() {
            *s.codes.entry(code).or_default() += 1;
        }
        match answer.refusal_cause() {
            Some(c) => *s.refusals.entry(c).or_default() += 1,
            None => s.goodput += 1,
        }
        if answer.is_approved() {
            s.approved += 1;
        }
    }

    /// A drawdown attempt intended for `intended` got `answer` at `done` (in addition to
    /// [`Recorder::completed`]): the drawdown-only latency and outcomes, counted in the second
    /// of the *intended* time, so a slow answer stays with the second that asked for it.
    pub fn drawdown(&mut self, intended: Instant, done: Instant, answer: &Answer) {
        let latency = micros(done.saturating_duration_since(intended));
        let d = &mut self.second(intended).drawdowns;
        d.count += 1;
        d.hist.saturating_record(latency);
        if answer.is_approved() {
            d.approved += 1;
        } else if answer.is_review() {
            d.review += 1;
        } else if matches!(
            answer,
            Answer::Decision {
                outcome: Decision::Rejected,
                ..
            }
        ) {
            d.rejected += 1;
        } else {
            d.refused += 1;
        }
    }

    /// A request sent with admission `priority` (attempt 0 = first), intended for `intended`
    /// and sent at `sent`, got `answer` at `done`; `deadline` is the client's budget. For the
    /// step table: shed and success by priority, retry amplification, and for drawdowns the
    /// goodput (decisions within the deadline) and the latency of admitted attempts.
    pub fn admission(
        &mut self,
        priority: &'static str,
        attempt: u32,
        endpoint: Endpoint,
        timing: (Instant, Instant, Instant),
        answer: &Answer,
        deadline: Duration,
    ) {
        let (intended, sent, done) = timing;
        let elapsed = done.saturating_duration_since(intended);
        let served = match answer {
            Answer::Quote { .. } => true,
            Answer::Decision { raw_reason, .. } => {
                raw_reason.as_deref() != Some("BUREAU_UNAVAILABLE_REVIEW")
            }
            _ => false,
        };
        let ok = served && elapsed <= deadline;
        let shed = answer.refusal_cause() == Some(Cause::Coded(Family::Capacity));
        let s = self.second(done);
        let p = s.priorities.entry(priority).or_default();
        p.sent += 1;
        if attempt == 0 {
            p.first += 1;
        }
        if shed {
            p.shed += 1;
        }
        if ok {
            p.ok += 1;
        }
        if endpoint == Endpoint::Drawdown {
            let d = &mut s.drawdowns;
            if ok {
                d.in_deadline += 1;
            }
            if !shed {
                d.admitted += 1;
                d.admitted_hist.saturating_record(micros(elapsed));
                d.admitted_sent_hist
                    .saturating_record(micros(done.saturating_duration_since(sent)));
            }
        }
    }

    /// A journey of user `user` (its index in `group`) ended: counted as [`Recorder::journey`]
    /// counts one, and a refusal also counts its user, once per cause.
    pub fn journey_of(&mut self, group: usize, user: usize, o: JourneyOutcome) {
        if let JourneyEnd::Refused(c) = o.end {
            let p = &mut self.pops[group];
            let user = u32::try_from(user).unwrap_or(u32::MAX);
            p.refused_users.entry(c).or_default().insert(user);
            p.refused_any_user.insert(user);
        }
        self.journey(group, o);
    }

    /// A journey of `group` ended.
    pub fn journey(&mut self, group: usize, o: JourneyOutcome) {
        let p = &mut self.pops[group];
        p.intents += 1;
        match o.end {
            JourneyEnd::Approved => p.approved += 1,
            JourneyEnd::Review => p.review += 1,
            JourneyEnd::Refused(c) => *p.refused.entry(c).or_default() += 1,
            JourneyEnd::Unfinished => p.unfinished += 1,
        }
        if o.drew {
            p.drawdowns += 1;
        }
        if o.promised {
            p.promised += 1;
            if let JourneyEnd::Refused(c) = o.end {
                *p.promised_refused.entry(c).or_default() += 1;
            }
        }
    }

    /// The p99 (ms) of the last complete second before `now`, for the progress line.
    pub fn recent_p99_ms(&self, now: Instant) -> Option<f64> {
        let idx = usize::try_from(now.saturating_duration_since(self.start).as_secs()).ok()?;
        let s = self.seconds.get(idx.checked_sub(1)?)?;
        (!s.hist.is_empty()).then(|| s.hist.value_at_quantile(0.99) as f64 / 1000.0)
    }

    /// Turns the tallies into results; fields about the run itself are filled by the caller.
    pub fn finish(
        self,
        groups: &[GroupInfo],
        connections: usize,
        connections_opened: u64,
        journeys: u64,
    ) -> Result<Finished, Error> {
        let seconds = self
            .seconds
            .iter()
            .enumerate()
            .map(|(t, s)| {
                Ok(SecondResult {
                    t: t as u64,
                    offered: s.offered,
                    sent: s.sent,
                    completed: s.completed.clone(),
                    codes: s.codes.clone(),
                    refusals: s.refusals.clone(),
                    goodput: s.goodput,
                    approved: s.approved,
                    latency_ms: Percentiles::of(&s.hist),
                    histogram: encode_histogram(&s.hist)?,
                    drawdowns: drawdown_second(&s.drawdowns)?,
                    priorities: s
                        .priorities
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), v.clone()))
                        .collect(),
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let populations: Vec<PopulationResult> = groups
            .iter()
            .zip(&self.pops)
            .map(|(g, p)| population_result(g, p))
            .collect();
        let missed = self.requests_scheduled.saturating_sub(self.requests_sent);
        let unfinished: u64 = self.pops.iter().map(|p| p.unfinished).sum();
        let timer_lag = Percentiles::of(&self.timer_lag);
        let generator = GeneratorHealth {
            journeys,
            journeys_unfinished: unfinished,
            requests_scheduled: self.requests_scheduled,
            requests_sent: self.requests_sent,
            missed_sends: missed,
            late_sends: self.late_sends,
            late_threshold_ms: LATE_THRESHOLD.as_secs_f64() * 1000.0,
            timer_lag_ms: timer_lag,
            timer_lag_max_ms: self.timer_lag.max() as f64 / 1000.0,
            send_delay_ms: Percentiles::of(&self.send_delay),
            send_delay_max_ms: self.send_delay.max() as f64 / 1000.0,
            connections,
            connections_opened,
            kept_up: missed == 0 && timer_lag.p99 <= LATE_THRESHOLD.as_secs_f64() * 1000.0,
        };
        let totals = totals(groups, &populations);
        Ok(Finished {
            seconds,
            latency_ms: LatencySummary::of(&self.latency)?,
            service_time_ms: LatencySummary::of(&self.service)?,
            generator,
            populations,
            totals,
        })
    }
}

fn drawdown_second(d: &DrawdownTally) -> Result<DrawdownSecond, Error> {
    Ok(DrawdownSecond {
        count: d.count,
        approved: d.approved,
        review: d.review,
        rejected: d.rejected,
        refused: d.refused,
        latency_ms: Percentiles::of(&d.hist),
        histogram: if d.count == 0 {
            String::new()
        } else {
            encode_histogram(&d.hist)?
        },
        in_deadline: d.in_deadline,
        admitted: d.admitted,
        admitted_histogram: if d.admitted == 0 {
            String::new()
        } else {
            encode_histogram(&d.admitted_hist)?
        },
        admitted_sent_histogram: if d.admitted == 0 {
            String::new()
        } else {
            encode_histogram(&d.admitted_sent_hist)?
        },
    })
}

/// The parts of [`Results`] the recorder computes.
#[derive(Debug)]
#[allow(missing_docs)]
pub struct Finished {
    pub seconds: Vec<SecondResult>,
    pub latency_ms: LatencySummary,
    pub service_time_ms: LatencySummary,
    pub generator: GeneratorHealth,
    pub populations: Vec<PopulationResult>,
    pub totals: Totals,
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

fn population_result(g: &GroupInfo, p: &PopTally) -> PopulationResult {
    let refused: u64 = p.refused.values().sum();
    let promised_refused: u64 = p.promised_refused.values().sum();
    PopulationResult {
        name: g.name.clone(),
        profile: g.profile.as_str().to_owned(),
        behaviour: g.behaviour.as_str().to_owned(),
        users: g.users,
        intents: p.intents,
        approved: p.approved,
        review: p.review,
        refused,
        unfinished: p.unfinished,
        refusal_rate: ratio(refused, p.intents),
        refused_by_cause: p.refused.clone(),
        refusal_rate_by_cause: p
            .refused
            .iter()
            .map(|(c, n)| (*c, ratio(*n, p.intents)))
            .collect(),
        approval_rate: ratio(p.approved, p.intents),
        requests_sent: p.requests,
        retry_amplification: ratio(p.requests, p.intents),
        drawdowns: p.drawdowns,
        promised: p.promised,
        promised_refused,
        promised_refused_by_cause: p.promised_refused.clone(),
        quota_untruthful_rate: ratio(promised_refused, p.promised),
        refused_users: len(&p.refused_any_user),
        refused_users_by_cause: p
            .refused_users
            .iter()
            .map(|(c, users)| (*c, len(users)))
            .collect(),
    }
}

fn len(users: &HashSet<u32>) -> u64 {
    u64::try_from(users.len()).unwrap_or(u64::MAX)
}

/// The headline measures over all groups.
pub fn totals(groups: &[GroupInfo], pops: &[PopulationResult]) -> Totals {
    let mut good_intents = 0;
    let mut good_refused = 0;
    let mut good_by_cause: BTreeMap<Cause, u64> = BTreeMap::new();
    // Groups have users of their own: distinct users add up over groups.
    let (mut good_users, mut good_refused_users) = (0u64, 0u64);
    let mut good_users_by_cause: BTreeMap<Cause, u64> = BTreeMap::new();
    let (mut risky_intents, mut risky_approved) = (0, 0);
    for (g, p) in groups.iter().zip(pops) {
        if g.profile.should_be_approved() {
            good_intents += p.intents;
            good_refused += p.refused;
            good_users += u64::try_from(p.users).unwrap_or(u64::MAX);
            good_refused_users += p.refused_users;
            for (c, n) in &p.refused_by_cause {
                *good_by_cause.entry(*c).or_default() += n;
            }
            for (c, n) in &p.refused_users_by_cause {
                *good_users_by_cause.entry(*c).or_default() += n;
            }
        } else {
            risky_intents += p.intents;
            risky_approved += p.approved;
        }
    }
    let intents: u64 = pops.iter().map(|p| p.intents).sum();
    let requests: u64 = pops.iter().map(|p| p.requests_sent).sum();
    let promised: u64 = pops.iter().map(|p| p.promised).sum();
    let promised_refused: u64 = pops.iter().map(|p| p.promised_refused).sum();
    Totals {
        good_refusal_rate: ratio(good_refused, good_intents),
        good_refusal_rate_by_cause: good_by_cause
            .iter()
            .map(|(c, n)| (*c, ratio(*n, good_intents)))
            .collect(),
        good_refused_by_cause: good_by_cause,
        good_users,
        good_refused_users,
        good_refused_users_by_cause: good_users_by_cause,
        risky_approval_rate: ratio(risky_approved, risky_intents),
        retry_amplification: ratio(requests, intents),
        quota_untruthful_rate: ratio(promised_refused, promised),
        good_intents,
    }
}

impl Finished {
    /// Fills a [`Results`] with the run's own facts.
    #[allow(clippy::too_many_arguments)]
    pub fn into_results(
        self,
        scenario: crate::results::ScenarioInfo,
        target: String,
        started_at: String,
        phases: Vec<crate::results::PhaseInfo>,
        windows: Vec<crate::results::WindowSpan>,
        warnings: Vec<String>,
    ) -> Results {
        Results {
            schema_version: crate::results::SCHEMA_VERSION,
            scenario,
            target,
            started_at,
            phases,
            windows,
            seconds: self.seconds,
            latency_ms: self.latency_ms,
            service_time_ms: self.service_time_ms,
            generator: self.generator,
            populations: self.populations,
            totals: self.totals,
            gates: Vec::new(),
            warnings,
            bureau: None,
            faults: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::Endpoint;
    use crate::population::{Behaviour, Profile};
    use crate::results::decode_histogram;

    fn groups() -> Vec<GroupInfo> {
        vec![
            GroupInfo {
                name: "good".into(),
                profile: Profile::Good,
                behaviour: Behaviour::Polite,
                users: 10,
            },
            GroupInfo {
                name: "fl".into(),
                profile: Profile::FrequentLogin,
                behaviour: Behaviour::RetryStorm,
                users: 10,
            },
            GroupInfo {
                name: "risky".into(),
                profile: Profile::Risky,
                behaviour: Behaviour::Polite,
                users: 5,
            },
        ]
    }

    #[test]
    fn ground_truth_attribution_per_population() {
        let mut r = Recorder::new(Instant::now(), 3);
        let j = |end, promised| JourneyOutcome {
            end,
            drew: true,
            promised,
        };
        // good: 2 approved, 1 shed, 1 rate limited; the shed one had been promised.
        r.journey(0, j(JourneyEnd::Approved, true));
        r.journey(0, j(JourneyEnd::Approved, true));
        r.journey(
            0,
            j(JourneyEnd::Refused(Cause::Coded(Family::Capacity)), true),
        );
        r.journey(
            0,
            j(JourneyEnd::Refused(Cause::Coded(Family::RateLimit)), false),
        );
        // frequent_login: refused by the anomaly rule after a quote that promised.
        r.journey(
            1,
            j(JourneyEnd::Refused(Cause::Coded(Family::Anomaly)), true),
        );
        r.journey(1, j(JourneyEnd::Review, true));
        // risky: one approved (bad), one refused for eligibility.
        r.journey(2, j(JourneyEnd::Approved, false));
        r.journey(
            2,
            j(
                JourneyEnd::Refused(Cause::Coded(Family::Eligibility)),
                false,
            ),
        );
        let f = r.finish(&groups(), 4, 4, 8).unwrap();
        let good = &f.populations[0];
        assert_eq!((good.intents, good.approved, good.refused), (4, 2, 2));
        assert_eq!(good.refusal_rate, 0.5);
        assert_eq!(
            good.refusal_rate_by_cause[&Cause::Coded(Family::Capacity)],
            0.25
        );
        assert_eq!(good.quota_untruthful_rate, 1.0 / 3.0);
        let fl = &f.populations[1];
        assert_eq!(fl.refused_by_cause[&Cause::Coded(Family::Anomaly)], 1);
        assert_eq!(fl.review, 1);
        assert_eq!(f.totals.good_intents, 6);
        assert_eq!(f.totals.good_refusal_rate, 3.0 / 6.0);
        assert_eq!(
            f.totals.good_refusal_rate_by_cause[&Cause::Coded(Family::Anomaly)],
            1.0 / 6.0
        );
        assert_eq!(f.totals.risky_approval_rate, 0.5);
        assert_eq!(f.totals.quota_untruthful_rate, 2.0 / 5.0);
    }

    #[test]
    fn per_second_histograms_merge_into_the_whole_run() {
        let start = Instant::now();
        let mut r = Recorder::new(start, 1);
        let ok = Answer::from_response(
            Endpoint::Drawdown,
            200,
            None,
            br#"{"outcome":"approved","reasons":[]}"#,
        );
        for i in 0..3000u64 {
            let intended = start + Duration::from_millis(i);
            r.offered(intended);
            let done = intended + Duration::from_micros(100 + i * 7);
            r.completed(0, intended, intended, done, "200", &ok);
        }
        let f = r.finish(&groups()[..1], 1, 1, 0).unwrap();
        assert_eq!(f.seconds.len(), 4);
        let mut merged = new_histogram();
        for s in &f.seconds {
            merged.add(decode_histogram(&s.histogram).unwrap()).unwrap();
        }
        let whole = decode_histogram(&f.latency_ms.histogram).unwrap();
        assert_eq!(merged.len(), 3000);
        assert_eq!(merged, whole);
        assert_eq!(f.seconds.iter().map(|s| s.approved).sum::<u64>(), 3000);
        assert_eq!(f.generator.missed_sends, 0);
    }
}
