//! Scenarios: phases with rate shapes and actions, a population with ground truth, and the
//! arithmetic that turns a rate shape into intended send times.
//!
//! A rate is *journeys per second* (a journey is one user intent: query the credit line, think,
//! draw). A shape says how that rate moves over a phase; its integral is the number of journeys
//! the phase starts, and [`Scenario::arrivals`] places each at the time where the cumulative
//! integral reaches it, so the schedule is the shape, not a count of virtual users.
//!
//! # Layout
//! - [`BUILTIN`]: the scenarios shipped in `loadtest/scenarios/`, by name.
//! - [`Scenario`]: a load scenario, as written in TOML.
//! - [`BureauScenario`] (`[bureau]`).
//! - [`Arrivals`]: placement of arrivals inside a shape.
//! - [`Phase`]: one phase of a scenario.
//! - [`Shape`]: a rate over a phase of length `d`, in journeys per second.
//! - [`JourneyConfig`]: what a journey does.
//! - [`RetryConfig`]: how clients retry a transient refusal (429, 503, timeout).
//! - [`WindowAction`]: a peak-window action taken at a phase start.
//! - [`Arrival`]: one journey arrival.

use std::path::Path;
use std::time::Duration;

use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::bureau::{BureauChange, BureauOptions, Jitter};
use crate::population::Population;

/// The scenarios shipped in `loadtest/scenarios/`, by name.
pub const BUILTIN: &[(&str, &str)] = &[
    ("double11", include_str!("../scenarios/double11.toml")),
    (
        "spring-festival",
        include_str!("../scenarios/spring-festival.toml"),
    ),
    (
        "step-overload",
        include_str!("../scenarios/step-overload.toml"),
    ),
    ("steady", include_str!("../scenarios/steady.toml")),
    (
        "steady-bureau",
        include_str!("../scenarios/steady-bureau.toml"),
    ),
    (
        "bureau-slowdown",
        include_str!("../scenarios/bureau-slowdown.toml"),
    ),
    ("cpu-step", include_str!("../scenarios/cpu-step.toml")),
    ("cpu-steady", include_str!("../scenarios/cpu-steady.toml")),
    (
        "fleet-faults",
        include_str!("../scenarios/fleet-faults.toml"),
    ),
];

/// A load scenario, as written in TOML.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name, used in reports.
    pub name: String,
    /// What the scenario rehearses.
    #[serde(default)]
    pub description: String,
    /// Seed for every random choice (user picks, amounts, think times, Poisson arrivals).
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// With `clients = "pool"`: the connections the generator opens (one per worker,
    /// HTTP/1.1 keep-alive). With `clients = "per_journey"`: the most connections open at
    /// once (a journey that finds none free is not sent, and reported so).
    #[serde(default = "default_connections")]
    pub connections: usize,
    /// How requests reach the target: a fixed pool of keep-alive connections, or a
    /// connection per journey, opened as needed (see [`Clients`]).
    #[serde(default)]
    pub clients: Clients,
    /// A request that has not completed after this long counts as a timeout.
    #[serde(default = "default_timeout_ms")]
    pub request_timeout_ms: u64,
    /// How journey arrivals are placed inside the rate shape.
    #[serde(default)]
    pub arrivals: Arrivals,
    /// Who the traffic comes from.
    pub population: Population,
    /// What a journey does.
    #[serde(default)]
    pub journey: JourneyConfig,
    /// How clients retry transient refusals.
    #[serde(default)]
    pub retry: RetryConfig,
    /// The phases, in order.
    #[serde(rename = "phase")]
    pub phases: Vec<Phase>,
    /// A credit-bureau simulator started in-process for the run (the in-process gateway is
    /// pointed at it), and the changes made to it while the run goes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bureau: Option<BureauScenario>,
    /// Settings merged over the in-process gateway's configuration, as in its TOML file
    /// (e.g. `[gateway.bureau]`); `--gateway-set` overrides them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<toml::Table>,
    /// Set by [`Scenario::rates_times`] (`--capacity`), never read from the file: the rates
    /// are multiples of this many journeys per second, and the report's step table states
    /// goodput as a share of it.
    #[serde(skip)]
    pub capacity: Option<f64>,
}

/// `[bureau]`: the simulator a scenario starts (see [`crate::bureau`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BureauScenario {
    /// Requests in service at once.
    pub slots: usize,
    /// Base service time at the start, ms.
    pub service_ms: u64,
    /// Added to each service time: `none`, `exp:MEAN`, `uniform:LO-HI` (ms).
    #[serde(default)]
    pub jitter: Jitter,
    /// Injected error probability at the start.
    #[serde(default)]
    pub error_rate: f64,
    /// Longest queue (default: unbounded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_queue: Option<usize>,
    /// Seed of the jitter and error draws (default: the scenario's seed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Changes while the run goes, in time order.
    #[serde(default, rename = "change", skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<BureauChange>,
}

impl BureauScenario {
    /// The simulator's options at the start of a run of scenario seed `seed`.
    pub fn options(&self, seed: u64) -> BureauOptions {
        BureauOptions {
            slots: self.slots,
            service_ms: self.service_ms,
            jitter: self.jitter,
            error_rate: self.error_rate,
            max_queue: self.max_queue,
            seed: self.seed.unwrap_or(seed),
        }
    }
}

fn default_seed() -> u64 {
    1
}
fn default_connections() -> usize {
    128
}
fn default_timeout_ms() -> u64 {
    5_000
}

/// How the generator's requests reach the target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Clients {
    /// `connections` workers, each with one keep-alive connection, take requests from one
    /// queue: a request waits for a free worker (its send delay says how long). Cheap for
    /// the generator; under a target that stalls, the wait is the generator's own queue.
    #[default]
    Pool,
    /// Each journey is an independent user: it opens its own connection when it first
    /// sends, keeps it for its later requests (re-opening it when the target closed it),
    /// and closes it at its end. No request ever waits behind another journey's; what the
    /// generator could not send (no free connection under `connections`, no local port or
    /// descriptor) is counted as not sent, never as latency.
    PerJourney,
}

/// Placement of arrivals inside a shape.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arrivals {
    /// Evenly spaced along the cumulative rate: the count is exactly the integral, rounded.
    #[default]
    Uniform,
    /// A non-homogeneous Poisson process with the shape as its intensity.
    Poisson,
}

/// One phase of a scenario.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Phase {
    /// Name shown in the progress line and the report.
    pub name: String,
    /// Length in seconds (before `--scale`).
    pub duration_s: f64,
    /// Journey arrival rate over the phase.
    pub rate: Shape,
    /// At phase start: force a peak window by name, or `"off"` to return to the calendar.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_window: Option<String>,
}

/// A rate over a phase of length `d`, in journeys per second.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "shape", rename_all = "snake_case", deny_unknown_fields)]
pub enum Shape {
    /// The same rate throughout.
    Constant {
        /// Journeys per second.
        rate: f64,
    },
    /// A straight line from `from` at the start to `to` at the end.
    Ramp {
        /// Rate at the start.
        from: f64,
        /// Rate at the end.
        to: f64,
    },
    /// Equal-length steps, one per level.
    Step {
        /// The rate of each step, in order.
        levels: Vec<f64>,
    },
    /// `base + (peak - base) * 2^(-t / half_life_s)`: a jump to `peak` that decays to `base`.
    Spike {
        /// The rate the spike decays to.
        base: f64,
        /// The rate at the start of the phase.
        peak: f64,
        /// Seconds for the excess over `base` to halve.
        half_life_s: f64,
    },
}

impl Shape {
    /// The rate at `t` seconds into a phase of `d` seconds.
    pub fn rate_at(&self, t: f64, d: f64) -> f64 {
        match self {
            Shape::Constant { rate } => *rate,
            Shape::Ramp { from, to } => from + (to - from) * (t / d),
            Shape::Step { levels } => {
                let seg = d / levels.len() as f64;
                let i = step_index(t, seg, levels.len());
                levels[i]
            }
            Shape::Spike {
                base,
                peak,
                half_life_s,
            } => base + (peak - base) * (-t / half_life_s).exp2(),
        }
    }

    /// Journeys the shape starts between 0 and `t` seconds into a phase of `d` seconds.
    pub fn integral(&self, t: f64, d: f64) -> f64 {
        match self {
            Shape::Constant { rate } => rate * t,
            Shape::Ramp { from, to } => from * t + (to - from) * t * t / (2.0 * d),
            Shape::Step { levels } => {
                let seg = d / levels.len() as f64;
                let i = step_index(t, seg, levels.len());
                let full: f64 = levels[..i].iter().sum::<f64>() * seg;
                full + levels[i] * (t - i as f64 * seg)
            }
            Shape::Spike {
                base,
                peak,
                half_life_s,
            } => {
                base * t
                    + (peak - base) * half_life_s / std::f64::consts::LN_2
                        * (1.0 - (-t / half_life_s).exp2())
            }
        }
    }

    /// The largest rate over the phase (for chart scales and connection sizing).
    pub fn max_rate(&self) -> f64 {
        match self {
            Shape::Constant { rate } => *rate,
            Shape::Ramp { from, to } => from.max(*to),
            Shape::Step { levels } => levels.iter().copied().fold(0.0, f64::max),
            Shape::Spike { base, peak, .. } => base.max(*peak),
        }
    }

    fn rates(&self) -> Vec<f64> {
        match self {
            Shape::Constant { rate } => vec![*rate],
            Shape::Ramp { from, to } => vec![*from, *to],
            Shape::Step { levels } => levels.clone(),
            Shape::Spike {
                base,
                peak,
                half_life_s,
            } => vec![*base, *peak, *half_life_s],
        }
    }
}

fn step_index(t: f64, seg: f64, n: usize) -> usize {
    let raw = (t / seg).floor();
    if raw <= 0.0 {
        0
    } else {
        // `raw` is a finite, non-negative count of segments; clamp before the cast.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let i = raw.min((n - 1) as f64) as usize;
        i
    }
}

/// An `X-Priority` a group's clients send: the gateway's own admission priorities.
pub use gateway::request::Priority;

/// What a journey does.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JourneyConfig {
    /// Mean time between seeing the quote and drawing (uniform between half and 1.5 times).
    pub think_ms: u64,
    /// Smallest amount a user wants.
    pub amount_min_fen: u64,
    /// Largest amount a user wants.
    pub amount_max_fen: u64,
    /// The drawdown's `X-Request-Deadline-Ms` (the budget the gateway works within), also
    /// sent on the quote when set; default
    /// `request_timeout_ms`. Smaller than the timeout, the client keeps waiting past its
    /// deadline, so a late answer is measured rather than cut.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
}

impl Default for JourneyConfig {
    fn default() -> Self {
        Self {
            think_ms: 500,
            amount_min_fen: 50_000,
            amount_max_fen: 500_000,
            deadline_ms: None,
        }
    }
}

/// How clients retry a transient refusal (429, 503, timeout).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts (first try included) a `retry_storm` client makes.
    pub storm_max_attempts: u32,
    /// Attempts (first try included) a `polite` client makes.
    pub polite_max_attempts: u32,
    /// First backoff of a polite client when no `Retry-After` is given; doubles each time.
    pub polite_backoff_ms: u64,
    /// A polite client never waits longer than this, whatever `Retry-After` says.
    pub polite_cap_ms: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            storm_max_attempts: 6,
            polite_max_attempts: 3,
            polite_backoff_ms: 200,
            polite_cap_ms: 2_000,
        }
    }
}

/// A peak-window action taken at a phase start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WindowAction {
    /// `PUT /admin/policy/force {"window": name}`.
    Force(String),
    /// `PUT /admin/policy/force {"window": null}`.
    Release,
}

/// One journey arrival: its offset from the run start and its phase.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Arrival {
    /// Intended start, from the run start.
    pub at: Duration,
    /// Index into [`Scenario::phases`].
    pub phase: usize,
}

impl Scenario {
    /// Parses a scenario from TOML text and validates it.
    pub fn from_toml(name: &str, text: &str) -> Result<Self, Error> {
        let s: Scenario = toml::from_str(text).map_err(|e| Error::scenario(name, e.to_string()))?;
        s.validate()?;
        Ok(s)
    }

    /// Loads a shipped scenario by name, or a file by path.
    pub fn load(name_or_path: &str) -> Result<Self, Error> {
        let path = Path::new(name_or_path);
        if path.is_file() {
            let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
            return Self::from_toml(name_or_path, &text);
        }
        match BUILTIN.iter().find(|(n, _)| *n == name_or_path) {
            Some((n, text)) => Self::from_toml(n, text),
            None => Err(Error::scenario(
                name_or_path,
                format!(
                    "no such file and no shipped scenario of that name (shipped: {})",
                    BUILTIN
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
        }
    }

    /// Checks every field a run depends on; the error names the field.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |p: String| Err(Error::scenario(&self.name, p));
        if self.phases.is_empty() {
            return bad("needs at least one [[phase]]".into());
        }
        if self.connections == 0 {
            return bad("connections must be at least 1".into());
        }
        if self.request_timeout_ms == 0 {
            return bad("request_timeout_ms must be at least 1".into());
        }
        for p in &self.phases {
            if !(p.duration_s.is_finite() && p.duration_s > 0.0) {
                return bad(format!("phase {}: duration_s must be > 0", p.name));
            }
            if let Shape::Step { levels } = &p.rate
                && levels.is_empty()
            {
                return bad(format!("phase {}: step needs at least one level", p.name));
            }
            if let Shape::Spike { half_life_s, .. } = &p.rate
                && (half_life_s.is_nan() || *half_life_s <= 0.0)
            {
                return bad(format!("phase {}: half_life_s must be > 0", p.name));
            }
            if p.rate.rates().iter().any(|r| !(r.is_finite() && *r >= 0.0)) {
                return bad(format!("phase {}: rates must be finite and >= 0", p.name));
            }
        }
        let groups = &self.population.groups;
        if groups.is_empty() {
            return bad("population needs at least one [[population.group]]".into());
        }
        if self.population.users < groups.len() {
            return bad("population.users must be at least the number of groups".into());
        }
        for g in groups {
            if !(g.share.is_finite() && g.share > 0.0) {
                return bad(format!("group {}: share must be > 0", g.name));
            }
            if groups.iter().filter(|o| o.name == g.name).count() > 1 {
                return bad(format!("group {}: names must be unique", g.name));
            }
        }
        let j = &self.journey;
        if j.amount_min_fen == 0 || j.amount_min_fen > j.amount_max_fen {
            return bad("journey: need 0 < amount_min_fen <= amount_max_fen".into());
        }
        if self.retry.storm_max_attempts == 0 || self.retry.polite_max_attempts == 0 {
            return bad("retry: max attempts must be at least 1".into());
        }
        if j.deadline_ms == Some(0) {
            return bad("journey: deadline_ms must be at least 1".into());
        }
        if let Some(b) = &self.bureau {
            if let Err(e) = b.options(self.seed).validate() {
                return bad(format!("[bureau]: {e}"));
            }
            let end = self.phases.iter().map(|p| p.duration_s).sum::<f64>();
            let mut last = 0.0;
            for (i, c) in b.changes.iter().enumerate() {
                let at = format!("[[bureau.change]] #{} (at_s = {})", i + 1, c.at_s);
                if !(c.at_s.is_finite() && c.at_s >= last && c.at_s <= end) {
                    return bad(format!(
                        "{at}: at_s must be within the run (0..={end}) and in time order"
                    ));
                }
                last = c.at_s;
                if c.service_ms.is_none() && c.error_rate.is_none() {
                    return bad(format!("{at}: give service_ms and/or error_rate"));
                }
                let check = BureauOptions {
                    service_ms: c.service_ms.unwrap_or(0),
                    error_rate: c.error_rate.unwrap_or(0.0),
                    ..b.options(self.seed)
                };
                if let Err(e) = check.validate() {
                    return bad(format!("{at}: {e}"));
                }
            }
        }
        Ok(())
    }

    /// Stretches (f > 1) or shrinks (f < 1) time: phase lengths, spike half-lives and think
    /// times. Rates stay the same, so the run sends `f` times as many journeys.
    pub fn scaled(mut self, f: f64) -> Result<Self, Error> {
        if !(f.is_finite() && f > 0.0) {
            return Err(Error::scenario(&self.name, "--scale must be > 0"));
        }
        for p in &mut self.phases {
            p.duration_s *= f;
            if let Shape::Spike { half_life_s, .. } = &mut p.rate {
                *half_life_s *= f;
            }
        }
        self.journey.think_ms = scale_ms(self.journey.think_ms, f);
        if let Some(b) = &mut self.bureau {
            for c in &mut b.changes {
                c.at_s *= f;
            }
        }
        Ok(self)
    }

    /// Multiplies every rate by `c` (`--capacity`: a scenario whose rates are multiples of
    /// the capacity measured with `steady`, such as `step-overload`).
    pub fn rates_times(mut self, c: f64) -> Result<Self, Error> {
        if !(c.is_finite() && c > 0.0) {
            return Err(Error::scenario(&self.name, "--capacity must be > 0"));
        }
        for p in &mut self.phases {
            match &mut p.rate {
                Shape::Constant { rate } => *rate *= c,
                Shape::Ramp { from, to } => {
                    *from *= c;
                    *to *= c;
                }
                Shape::Step { levels } => levels.iter_mut().for_each(|l| *l *= c),
                Shape::Spike { base, peak, .. } => {
                    *base *= c;
                    *peak *= c;
                }
            }
        }
        self.capacity = Some(c);
        Ok(self)
    }

    /// Total length of the phases.
    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.phases.iter().map(|p| p.duration_s).sum())
    }

    /// Offset of each phase's start from the run start.
    pub fn phase_starts(&self) -> Vec<Duration> {
        let mut acc = 0.0;
        self.phases
            .iter()
            .map(|p| {
                let s = acc;
                acc += p.duration_s;
                Duration::from_secs_f64(s)
            })
            .collect()
    }

    /// The journeys a phase's shape implies (its integral).
    pub fn expected_journeys(&self, phase: usize) -> f64 {
        let p = &self.phases[phase];
        p.rate.integral(p.duration_s, p.duration_s)
    }

    /// The action a phase takes at its start.
    pub fn window_action(&self, phase: usize) -> Option<WindowAction> {
        self.phases[phase].force_window.as_deref().map(|w| match w {
            "off" | "" => WindowAction::Release,
            name => WindowAction::Force(name.to_owned()),
        })
    }

    /// Every journey arrival of the run, in time order.
    pub fn arrivals(&self) -> Vec<Arrival> {
        let mut rng = StdRng::seed_from_u64(self.seed ^ 0xA5A5_5A5A);
        let mut out = Vec::new();
        for (i, (p, start)) in self.phases.iter().zip(self.phase_starts()).enumerate() {
            let d = p.duration_s;
            let total = p.rate.integral(d, d);
            let mut lo = 0.0;
            let mut push = |target: f64, lo: &mut f64| {
                let t = invert(&p.rate, d, target, *lo);
                *lo = t;
                out.push(Arrival {
                    at: start + Duration::from_secs_f64(t),
                    phase: i,
                });
            };
            match self.arrivals {
                Arrivals::Uniform => {
                    let mut k = 0.5;
                    while k < total {
                        push(k, &mut lo);
                        k += 1.0;
                    }
                }
                Arrivals::Poisson => {
                    let mut acc = 0.0;
                    loop {
                        let u: f64 = rng.random_range(f64::MIN_POSITIVE..1.0);
                        acc -= u.ln();
                        if acc >= total {
                            break;
                        }
                        push(acc, &mut lo);
                    }
                }
            }
        }
        out
    }
}

fn scale_ms(ms: u64, f: f64) -> u64 {
    let v = (ms as f64 * f).round();
    // Finite and non-negative: `ms` is a u64 and `f` was checked > 0.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let out = v as u64;
    out
}

/// The time in `[lo, d]` where the shape's integral reaches `target` (bisection: the
/// integral is non-decreasing because rates are >= 0).
fn invert(shape: &Shape, d: f64, target: f64, lo: f64) -> f64 {
    let (mut a, mut b) = (lo, d);
    for _ in 0..64 {
        let m = 0.5 * (a + b);
        if shape.integral(m, d) < target {
            a = m;
        } else {
            b = m;
        }
        if b - a < 1e-7 {
            break;
        }
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_split_by_share_with_valid_ids() {
        let sc = Scenario::load("double11").unwrap();
        let users = crate::population::build_users(&sc.population);
        let total: usize = users.iter().map(Vec::len).sum();
        assert!(total.abs_diff(sc.population.users) <= sc.population.groups.len());
        for u in users.iter().flatten() {
            assert!(risk_core::validate_id(&u.id).is_ok(), "{}", u.id);
        }
    }

    fn numeric_integral(s: &Shape, d: f64) -> f64 {
        let n = 100_000;
        let h = d / n as f64;
        (0..n).map(|i| s.rate_at((i as f64 + 0.5) * h, d) * h).sum()
    }

    fn shapes() -> Vec<Shape> {
        vec![
            Shape::Constant { rate: 200.0 },
            Shape::Ramp {
                from: 50.0,
                to: 450.0,
            },
            Shape::Step {
                levels: vec![100.0, 200.0, 500.0, 1000.0],
            },
            Shape::Spike {
                base: 40.0,
                peak: 400.0,
                half_life_s: 3.0,
            },
        ]
    }

    fn one_phase(shape: Shape, arrivals: Arrivals) -> Scenario {
        let mut s = Scenario::load("steady").unwrap();
        s.arrivals = arrivals;
        s.phases = vec![Phase {
            name: "p".into(),
            duration_s: 20.0,
            rate: shape,
            force_window: None,
        }];
        s
    }

    #[test]
    fn integrals_match_the_rate_they_integrate() {
        for s in shapes() {
            let exact = s.integral(20.0, 20.0);
            let num = numeric_integral(&s, 20.0);
            assert!((exact - num).abs() / num < 1e-6, "{s:?}: {exact} vs {num}");
        }
    }

    #[test]
    fn a_phase_sends_what_its_shape_implies_within_one_percent() {
        for shape in shapes() {
            for mode in [Arrivals::Uniform, Arrivals::Poisson] {
                let sc = one_phase(shape.clone(), mode);
                let expected = sc.expected_journeys(0);
                let got = sc.arrivals().len() as f64;
                assert!(
                    (got - expected).abs() / expected < 0.01,
                    "{shape:?} {mode:?}: {got} vs {expected}"
                );
            }
        }
    }

    #[test]
    fn arrivals_follow_the_shape_second_by_second() {
        let shape = Shape::Ramp {
            from: 0.0,
            to: 400.0,
        };
        let sc = one_phase(shape.clone(), Arrivals::Uniform);
        let arr = sc.arrivals();
        for sec in 0..20u64 {
            let n = arr.iter().filter(|a| a.at.as_secs() == sec).count() as f64;
            let want = shape.integral(sec as f64 + 1.0, 20.0) - shape.integral(sec as f64, 20.0);
            assert!((n - want).abs() <= 1.0, "second {sec}: {n} vs {want}");
        }
        assert!(arr.windows(2).all(|w| w[0].at <= w[1].at));
    }

    #[test]
    fn scale_stretches_time_not_rate() {
        let sc = Scenario::load("double11").unwrap();
        let base = sc.arrivals().len() as f64;
        let dur = sc.duration();
        let twice = sc.clone().scaled(2.0).unwrap();
        assert_eq!(twice.duration(), dur * 2);
        let n = twice.arrivals().len() as f64;
        assert!((n / base - 2.0).abs() < 0.01, "{n} vs 2 x {base}");
        assert!(sc.scaled(0.0).is_err());
    }

    #[test]
    fn capacity_multiplies_rates_and_priorities_parse() {
        let sc = Scenario::load("step-overload").unwrap();
        assert_eq!(sc.capacity, None);
        let rates: Vec<f64> = sc.phases.iter().map(|p| p.rate.max_rate()).collect();
        let times = sc.clone().rates_times(40.0).unwrap();
        assert_eq!(times.capacity, Some(40.0));
        let scaled: Vec<f64> = times.phases.iter().map(|p| p.rate.max_rate()).collect();
        assert_eq!(scaled, rates.iter().map(|r| r * 40.0).collect::<Vec<_>>());
        assert!((times.arrivals().len() as f64 / sc.arrivals().len() as f64 - 40.0).abs() < 1.0);
        assert!(sc.clone().rates_times(0.0).is_err());
        let prios: Vec<_> = sc.population.groups.iter().map(|g| g.priority).collect();
        assert!(prios.contains(&Some(Priority::Low)) && prios.contains(&None));
        let err = Scenario::from_toml(
            "x",
            "name='x'\n[population]\nusers=1\n[[population.group]]\nname='g'\nprofile='good'\nshare=1\npriority='urgent'\n[[phase]]\nname='p'\nduration_s=1\nrate={shape='constant',rate=1}\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("urgent"), "{err}");
    }

    #[test]
    fn shipped_scenarios_parse_and_finish_under_two_minutes() {
        for (name, _) in BUILTIN {
            let sc = Scenario::load(name).unwrap();
            assert!(sc.duration() < Duration::from_secs(120), "{name}");
            assert_eq!(&sc.name, name);
        }
    }

    #[test]
    fn invalid_fields_are_named() {
        let err = Scenario::from_toml(
            "x",
            "name='x'\n[population]\nusers=1\n[[population.group]]\nname='g'\nprofile='good'\nshare=1\n[[phase]]\nname='p'\nduration_s=0\nrate={shape='constant',rate=1}\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("duration_s"), "{err}");
        let err = Scenario::from_toml("x", "name='x'\nbogus=1").unwrap_err();
        assert!(err.to_string().contains("bogus"), "{err}");
    }

    #[test]
    fn window_actions_read_off_as_release() {
        let sc = Scenario::load("double11").unwrap();
        let actions: Vec<_> = (0..sc.phases.len()).map(|i| sc.window_action(i)).collect();
        assert!(actions.contains(&Some(WindowAction::Force("double11".into()))));
        assert!(actions.contains(&Some(WindowAction::Release)));
    }
}
