//! The adaptive concurrency limit: a gradient controller on measured latency, in the family of
//! Envoy's adaptive-concurrency filter and Netflix's concurrency-limits.
//!
//! # Control law
//! Latency samples are the service times of admitted requests (permit held, queue wait not
//! included). Every `interval` with at least `min_samples` samples:
//!
//! ```text
//! sample   = percentile(samples of this interval)           (p50 by default)
//! gradient = clamp(no_load × (1 + buffer) / sample, 0.5, 2.0)
//! target   = gradient × limit + √(gradient × limit)          (headroom)
//! target   = min(target, limit, 2 × peak in-flight)   if peak in-flight < limit / 2 (app-limited)
//! limit   += weight × (clamp(target, min, max) − limit)
//!            weight = 1 for a latency-driven cut, else smoothing
//! ```
//!
//! # Why the onset of overload was the worst moment, and what bounds it
//! Measured under step overload against a 4-slot bureau (BENCHMARKS.md, "overload (session
//! 6)"): while the load was below capacity the limit stayed at its initial 32 (app-limited:
//! no growth, but no decay either), and when the load reached capacity that unused credit
//! was spent at once: ~30 requests went in flight in front of 4 slots, and the limit needed
//! 2–3 s of smoothed halvings (each interval waits for `min_samples` completions, 200 ms at
//! 100 calls/s) to come down to 7–9. The admitted drawdowns' p99 in those seconds was 4×
//! the no-load p99, while at 5× and 10× (the limit already at its knee) it stayed near 2.5×.
//! Two rules bound it: an app-limited limit decays towards twice the concurrency actually
//! in use (as TCP validates an unused congestion window, RFC 7661), so there is little
//! credit to spend when overload begins; and a cut driven by latency applies at once rather
//! than smoothed (queueing costs every admitted request; spare capacity only costs a little
//! throughput until the smoothed growth finds it again).
//!
//! The no-load latency is measured, not inferred: at start and every `min_rtt_interval` the
//! limit is pinned to `min_rtt_limit` until `min_rtt_samples` requests *started* in that
//! window have completed; their percentile is the no-load latency; then the previous limit
//! is restored.
//!
//! # Why this algorithm (and not Gradient2 or Vegas)
//! Two failure modes were measured on this machine with existing Rust limiters (issue 7):
//! - **Gradient2 pinned at its max**: its baseline is a long-window *average* of the very
//!   latency it controls, so a sustained overload becomes the baseline and the gradient reads
//!   "no queueing"; and it grows while the service is app-limited until it sits at max. Here
//!   the baseline is only ever measured with the limit pinned low (a standing queue cannot
//!   leak into it), growth needs the limit to be in use (peak in-flight ≥ limit / 2), and the
//!   gradient applies at every limit, so the limit falls from max as soon as latency rises.
//! - **Vegas settling at 8–25**: it takes the absolute *minimum* RTT as no-load latency, so
//!   with ±1 ms timer jitter on a 2 ms service it sees a 1 ms floor against a 2 ms average
//!   and reads half the in-flight work as queued. Here both no-load and current latency are
//!   the same percentile (p50 by default) of many samples, which jitter does not bias, and a
//!   `buffer` (25 % by default) is allowed on top of the no-load latency before anything
//!   counts as queueing. The unit tests check both: ±1 ms jitter around 2 ms grows to max;
//!   latency that grows with in-flight stops growth and cuts the limit.
//!
//! The price, as in Envoy, is the periodic pinned window (a short dip in admitted
//! concurrency); `min_rtt_interval` and `min_rtt_samples` bound it.
//!
//! # Limits (known, not yet measured end to end)
//! - One limit for all admitted work: the latency samples mix route classes, so a change of
//!   mix (more slow drawdowns, fewer fast queries) looks like a latency change. The median
//!   damps it; a per-class limit would remove it.
//! - Queueing that happens *before* admission (a saturated runtime, the kernel) is not in
//!   the samples: on a CPU-bound gateway the limit does not move (on the memory store it
//!   stays at its initial value; `BENCHMARKS.md`). That overload is the overload actions'
//!   job (`crate::overload`).
//! - With a slow dependency, the pinned window is long (`min_rtt_samples` × latency ÷
//!   `min_rtt_limit`); set `min_rtt_limit` near the dependency's parallelism.
//!
//! # Queue bound (optional: `queue_per_limit`)
//! The admission queue in front of the limit is bounded by the policy's `queue` (256 by
//! default), which is right for a fixed limit of 64 but not for an adaptive one that falls to
//! 7–8 in front of a slow dependency: 256 waiters at ~8 in flight is a wait of 32 service
//! times, far past any deadline, and measured it was what broke the admitted drawdowns' p99
//! under step overload (BENCHMARKS.md). By Little's law a queue longer than about
//! `limit × deadline / latency` only adds waiting that ends in a timeout; with the limit at
//! the knee, a short queue (a fraction of the limit) is enough to absorb arrival jitter and
//! keep the slots busy. So with `queue_per_limit` set the queue capacity is
//!
//! ```text
//! queue = min(policy queue, max(queue_min, ceil(limit × queue_per_limit)))
//! ```
//!
//! recomputed whenever the limit changes ([`AdaptiveLimiter::queue_bound`]). The limit used
//! is the controller's, not the pinned `min_rtt_limit` of a no-load measurement, so the
//! periodic measurement does not shrink the queue. A fixed small queue would instead starve a
//! CPU-bound gateway whose limit sits at 32 or more.
//!
//! Time is passed in (`tokio::time::Instant`), so tests drive the law with synthetic traces.

use serde::{Deserialize, Serialize};
use std::time::Duration;

use tokio::time::Instant;

/// Bounds of the gradient per recalculation (as in Envoy): the limit at most doubles or
/// halves in one interval, before smoothing.
const GRADIENT_MIN: f64 = 0.5;
const GRADIENT_MAX: f64 = 2.0;
/// Samples kept per interval at most (a percentile of more adds nothing but cost).
const MAX_SAMPLES: usize = 4096;

/// `[admission.adaptive]`: settings of the adaptive limiter (validated with the section, see
/// `admission::config`). Durations are written in milliseconds and ratios in whole percent
/// (the key names the unit).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdaptiveConfig {
    /// Lowest limit (at least 1).
    pub min_limit: usize,
    /// Highest limit.
    pub max_limit: usize,
    /// The limit before the first recalculation.
    pub initial_limit: usize,
    /// How often the limit is recalculated (`interval_ms`).
    #[serde(rename = "interval_ms", with = "crate::setting::millis")]
    pub interval: Duration,
    /// Samples needed in an interval before it counts (else the interval is extended).
    pub min_samples: usize,
    /// The latency percentile compared, in (0, 1] (`percentile`, 1 to 100; 50: the median).
    #[serde(with = "crate::setting::percent")]
    pub percentile: f64,
    /// Latency allowed above the no-load latency before it counts as queueing (0.25: 25 %;
    /// `buffer_pct`).
    #[serde(rename = "buffer_pct", with = "crate::setting::percent")]
    pub buffer: f64,
    /// Weight of a new target in the limit, in (0, 1] (1: no smoothing; `smoothing_pct`).
    #[serde(rename = "smoothing_pct", with = "crate::setting::percent")]
    pub smoothing: f64,
    /// How often the no-load latency is re-measured (`min_rtt_interval_ms`).
    #[serde(rename = "min_rtt_interval_ms", with = "crate::setting::millis")]
    pub min_rtt_interval: Duration,
    /// Samples in a no-load measurement.
    pub min_rtt_samples: usize,
    /// The limit while the no-load latency is measured.
    pub min_rtt_limit: usize,
    /// Queue capacity per unit of limit (0.5: half the limit), capped by the policy's
    /// `queue`; `None`: the policy's queue alone (see "Queue bound" in the module docs;
    /// `queue_per_limit_pct`, 0 for none).
    #[serde(
        rename = "queue_per_limit_pct",
        with = "crate::setting::percent_or_off"
    )]
    pub queue_per_limit: Option<f64>,
    /// The smallest queue capacity while `queue_per_limit` is set.
    pub queue_min: usize,
}

impl Default for AdaptiveConfig {
    fn default() -> Self {
        AdaptiveConfig {
            min_limit: 4,
            max_limit: 1000,
            initial_limit: 32,
            interval: Duration::from_millis(100),
            min_samples: 20,
            percentile: 0.5,
            buffer: 0.25,
            smoothing: 0.5,
            min_rtt_interval: Duration::from_secs(30),
            min_rtt_samples: 25,
            min_rtt_limit: 4,
            queue_per_limit: Some(0.5),
            queue_min: 2,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    /// The no-load latency is being measured with the limit pinned; `resume` is the limit
    /// to restore afterwards.
    Measuring {
        since: Instant,
        resume: f64,
    },
    Normal,
}

/// A snapshot for the metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdaptiveStats {
    /// The limit in force.
    pub limit: usize,
    /// The measured no-load latency (none before the first measurement).
    pub no_load: Option<Duration>,
    /// The latency percentile of the last interval (none before one completed).
    pub current: Option<Duration>,
    /// Whether the no-load latency is being measured (limit pinned).
    pub measuring: bool,
}

/// The adaptive limiter's state (see the module docs). Not thread-safe by itself: admission
/// keeps it under its lock.
#[derive(Debug)]
pub struct AdaptiveLimiter {
    cfg: AdaptiveConfig,
    limit: f64,
    phase: Phase,
    no_load: Option<Duration>,
    current: Option<Duration>,
    samples: Vec<Duration>,
    window_start: Instant,
    peak_in_flight: usize,
    next_measurement: Instant,
}

impl AdaptiveLimiter {
    /// A limiter that starts by measuring the no-load latency at `now`.
    pub fn new(cfg: AdaptiveConfig, now: Instant) -> Self {
        let min = cfg.min_limit.max(1);
        let max = cfg.max_limit.max(min);
        let cfg = AdaptiveConfig {
            min_limit: min,
            max_limit: max,
            initial_limit: cfg.initial_limit.clamp(min, max),
            min_rtt_limit: cfg.min_rtt_limit.max(1),
            min_samples: cfg.min_samples.max(1),
            min_rtt_samples: cfg.min_rtt_samples.max(1),
            ..cfg
        };
        AdaptiveLimiter {
            limit: cfg.initial_limit as f64,
            phase: Phase::Measuring {
                since: now,
                resume: cfg.initial_limit as f64,
            },
            cfg,
            no_load: None,
            current: None,
            samples: Vec::with_capacity(64),
            window_start: now,
            peak_in_flight: 0,
            next_measurement: now,
        }
    }

    /// The settings in force (bounds normalized).
    pub fn config(&self) -> &AdaptiveConfig {
        &self.cfg
    }

    /// The concurrency limit now.
    pub fn limit(&self) -> usize {
        match self.phase {
            Phase::Measuring { .. } => self.cfg.min_rtt_limit,
            Phase::Normal => round_limit(self.limit),
        }
    }

    /// The queue capacity for a policy queue of `policy_queue`: with `queue_per_limit` set,
    /// `min(policy_queue, max(queue_min, ceil(limit × queue_per_limit)))` where `limit` is
    /// the controller's limit (the one restored after a no-load measurement); else
    /// `policy_queue` (see "Queue bound" in the module docs).
    pub fn queue_bound(&self, policy_queue: usize) -> usize {
        let Some(per_limit) = self.cfg.queue_per_limit else {
            return policy_queue;
        };
        let limit = match self.phase {
            Phase::Measuring { resume, .. } => resume,
            Phase::Normal => self.limit,
        };
        let bound = (round_limit(limit) as f64 * per_limit.max(0.0)).ceil();
        // Finite and non-negative; `as` saturates anything beyond usize.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let bound = bound as usize;
        bound.max(self.cfg.queue_min).min(policy_queue)
    }

    /// Metrics snapshot.
    pub fn stats(&self) -> AdaptiveStats {
        AdaptiveStats {
            limit: self.limit(),
            no_load: self.no_load,
            current: self.current,
            measuring: matches!(self.phase, Phase::Measuring { .. }),
        }
    }

    /// Sets the limit (an operator's override), within the bounds.
    pub fn set_limit(&mut self, limit: usize) {
        let limit = limit.clamp(self.cfg.min_limit, self.cfg.max_limit) as f64;
        match &mut self.phase {
            Phase::Measuring { resume, .. } => *resume = limit,
            Phase::Normal => self.limit = limit,
        }
    }

    /// A request was admitted; `in_flight` counts it.
    pub fn on_admit(&mut self, in_flight: usize) {
        self.peak_in_flight = self.peak_in_flight.max(in_flight);
    }

    /// A request that started at `started` completed at `now` after `latency`. Returns
    /// whether [`AdaptiveLimiter::limit`] may have changed.
    pub fn on_sample(&mut self, started: Instant, now: Instant, latency: Duration) -> bool {
        match self.phase {
            Phase::Measuring { since, resume } => {
                // Work admitted before the limit was pinned ran at the old concurrency.
                if started < since {
                    return false;
                }
                self.samples.push(latency);
                if self.samples.len() < self.cfg.min_rtt_samples {
                    return false;
                }
                self.no_load = Some(percentile(&mut self.samples, self.cfg.percentile));
                tracing::debug!(
                    admission.no_load_ms = self.no_load.map(|d| d.as_secs_f64() * 1e3),
                    "no-load latency measured"
                );
                self.limit = resume;
                self.phase = Phase::Normal;
                self.next_measurement = now + self.cfg.min_rtt_interval;
                self.start_window(now);
                true
            }
            Phase::Normal => {
                if self.samples.len() < MAX_SAMPLES {
                    self.samples.push(latency);
                }
                if now < self.window_start + self.cfg.interval
                    || self.samples.len() < self.cfg.min_samples
                {
                    return false;
                }
                if now >= self.next_measurement {
                    self.phase = Phase::Measuring {
                        since: now,
                        resume: self.limit,
                    };
                    self.samples.clear();
                    return true;
                }
                self.recalculate(now);
                true
            }
        }
    }

    fn recalculate(&mut self, now: Instant) {
        let sample = percentile(&mut self.samples, self.cfg.percentile);
        self.current = Some(sample);
        // Set when leaving the first measurement, the only way into `Normal`.
        let no_load = self.no_load.unwrap_or(sample);
        let allowed = no_load.as_secs_f64() * (1.0 + self.cfg.buffer);
        let gradient = if sample.is_zero() {
            GRADIENT_MAX
        } else {
            (allowed / sample.as_secs_f64()).clamp(GRADIENT_MIN, GRADIENT_MAX)
        };
        let scaled = gradient * self.limit;
        let mut target = scaled + scaled.sqrt();
        let peak = self.peak_in_flight as f64;
        // Weight of the target: a latency-driven cut applies at once, anything else smoothed.
        let mut weight = if target < self.limit {
            1.0
        } else {
            self.cfg.smoothing
        };
        if peak < self.limit / 2.0 {
            // App-limited: no evidence the limit could be used, so no growth, and a limit
            // far above the work in flight decays (smoothed) towards twice that work.
            target = target.min(self.limit).min(2.0 * peak);
            weight = self.cfg.smoothing;
        }
        let target = target.clamp(self.cfg.min_limit as f64, self.cfg.max_limit as f64);
        self.limit += weight * (target - self.limit);
        self.limit = self
            .limit
            .clamp(self.cfg.min_limit as f64, self.cfg.max_limit as f64);
        self.start_window(now);
    }

    fn start_window(&mut self, now: Instant) {
        self.samples.clear();
        self.window_start = now;
        self.peak_in_flight = 0;
    }
}

fn round_limit(limit: f64) -> usize {
    // Finite and within [min_limit, max_limit] (both usize), so the cast is exact enough.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let l = limit.round() as usize;
    l.max(1)
}

/// The `p` percentile (nearest rank) of `samples` (non-empty); reorders them.
fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    let last = samples.len() - 1;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let rank = ((last as f64) * p.clamp(0.0, 1.0)).round() as usize;
    let (_, nth, _) = samples.select_nth_unstable(rank.min(last));
    *nth
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn cfg() -> AdaptiveConfig {
        AdaptiveConfig {
            min_limit: 2,
            max_limit: 400,
            initial_limit: 10,
            min_rtt_interval: Duration::from_secs(3600),
            ..AdaptiveConfig::default()
        }
    }

    /// A deterministic generator of uniform values in [0, 1) (xorshift).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> f64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    /// Drives the limiter as a closed loop that always has work: every interval, the limit
    /// is fully used and `per_interval` requests complete with the latency `latency(limit)`.
    struct Sim {
        limiter: AdaptiveLimiter,
        now: Instant,
    }

    impl Sim {
        fn new(cfg: AdaptiveConfig) -> Self {
            let now = Instant::now();
            Sim {
                limiter: AdaptiveLimiter::new(cfg, now),
                now,
            }
        }

        fn run(&mut self, intervals: usize, mut latency: impl FnMut(usize) -> Duration) {
            let per_interval = 50;
            let step = self.limiter.cfg.interval / per_interval;
            for _ in 0..intervals {
                for _ in 0..per_interval {
                    self.now += step;
                    let in_flight = self.limiter.limit();
                    self.limiter.on_admit(in_flight);
                    let lat = latency(in_flight);
                    // Started after any measurement began: samples are taken as they come.
                    self.limiter.on_sample(self.now, self.now, lat);
                }
            }
        }

        fn limit(&self) -> usize {
            self.limiter.limit()
        }
    }

    /// A backend with `slots` parallel servers of `service` each: beyond `slots` in flight,
    /// work queues and latency grows in proportion.
    fn slots(slots: usize, service: Duration) -> impl FnMut(usize) -> Duration {
        move |in_flight| service.mul_f64((in_flight as f64 / slots as f64).max(1.0))
    }

    #[test]
    fn starts_pinned_and_measures_the_no_load_latency() {
        let mut sim = Sim::new(cfg());
        assert_eq!(sim.limit(), AdaptiveConfig::default().min_rtt_limit);
        sim.run(1, |_| 2 * MS);
        let stats = sim.limiter.stats();
        assert_eq!(stats.no_load, Some(2 * MS));
        assert!(!stats.measuring);
        assert!(sim.limit() >= 10, "limit restored: {}", sim.limit());
    }

    #[test]
    fn rises_while_latency_does_not_grow() {
        let mut sim = Sim::new(cfg());
        sim.run(50, slots(10_000, 2 * MS));
        assert_eq!(sim.limit(), 400, "grows to the max without queueing");
    }

    #[test]
    fn settles_near_capacity_when_latency_grows_with_in_flight() {
        let mut sim = Sim::new(cfg());
        sim.run(200, slots(50, 2 * MS));
        let limit = sim.limit();
        // Above the knee (50) by at most the buffer plus headroom, far below max.
        assert!((50..=90).contains(&limit), "limit {limit}");
        let current = sim.limiter.stats().current.unwrap();
        assert!(current <= MS * 3, "latency held near no-load: {current:?}");
    }

    #[test]
    fn falls_from_max_when_queueing_appears_and_recovers_after() {
        let mut sim = Sim::new(cfg());
        sim.run(50, slots(10_000, 2 * MS));
        assert_eq!(sim.limit(), 400);
        // The dependency slows down: capacity drops to 20 slots.
        sim.run(100, slots(20, 2 * MS));
        let during = sim.limit();
        assert!(during <= 40, "cut from max to near capacity: {during}");
        // It recovers.
        sim.run(100, slots(10_000, 2 * MS));
        assert_eq!(sim.limit(), 400, "recovers to max");
    }

    #[test]
    fn is_not_fooled_by_jitter_around_a_2ms_service() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut sim = Sim::new(cfg());
        // Uniform in [1, 3] ms whatever the concurrency (no queueing at all).
        sim.run(100, |_| MS + (2 * MS).mul_f64(rng.next()));
        assert_eq!(sim.limit(), 400, "jitter is not queueing");
        // Same jitter, but a knee at 60 in flight: it still finds the knee.
        let mut rng = Rng(42);
        let mut knee = slots(60, 2 * MS);
        sim.run(200, |n| {
            (knee(n) + MS.mul_f64(2.0 * rng.next())).saturating_sub(MS)
        });
        let limit = sim.limit();
        assert!((60..=110).contains(&limit), "limit {limit}");
    }

    #[test]
    fn respects_bounds() {
        let mut sim = Sim::new(AdaptiveConfig {
            min_limit: 5,
            max_limit: 30,
            ..cfg()
        });
        sim.run(50, slots(10_000, 2 * MS));
        assert_eq!(sim.limit(), 30);
        // Latency explodes whatever the concurrency: the floor holds.
        sim.run(50, |_| 500 * MS);
        assert_eq!(sim.limit(), 5);
    }

    #[test]
    fn does_not_grow_while_app_limited_and_decays_towards_the_work_in_flight() {
        let mut sim = Sim::new(AdaptiveConfig {
            initial_limit: 32,
            ..cfg()
        });
        sim.run(1, |_| 2 * MS);
        // Only 3 in flight at a time, far below the limit: no evidence it could use more.
        let step = sim.limiter.cfg.interval / 50;
        let app_limited = |sim: &mut Sim, n| {
            for _ in 0..n {
                sim.now += step;
                sim.limiter.on_admit(3);
                sim.limiter.on_sample(sim.now, sim.now, 2 * MS);
            }
        };
        // The interval in progress saw the limit in use; from the next one on, it is not.
        app_limited(&mut sim, 50);
        let mut last = sim.limit();
        for _ in 0..20 {
            app_limited(&mut sim, 50);
            assert!(
                sim.limit() <= last,
                "never grows: {last} -> {}",
                sim.limit()
            );
            last = sim.limit();
        }
        // Twice the 3 in flight, not the initial 32: no unused credit left to spend at
        // once when the load arrives.
        assert_eq!(sim.limit(), 6);
    }

    #[test]
    fn a_latency_driven_cut_applies_at_once() {
        let mut sim = Sim::new(cfg());
        sim.run(50, slots(10_000, 2 * MS));
        assert_eq!(sim.limit(), 400);
        // The dependency saturates at 20: each interval at most halves the limit (the
        // gradient's bound), unsmoothed, so 400 -> ~20 takes about five intervals.
        sim.run(5, slots(20, 2 * MS));
        let limit = sim.limit();
        assert!(limit <= 40, "limit after 5 intervals: {limit}");
    }

    #[test]
    fn remeasures_the_no_load_latency_periodically() {
        let mut sim = Sim::new(AdaptiveConfig {
            min_rtt_interval: Duration::from_secs(2),
            ..cfg()
        });
        sim.run(10, slots(10_000, 2 * MS));
        assert_eq!(sim.limiter.stats().no_load, Some(2 * MS));
        // The dependency's no-load latency doubles for good; after the next measurement
        // the limiter takes 4 ms as normal and grows again.
        sim.run(100, slots(10_000, 4 * MS));
        assert_eq!(sim.limiter.stats().no_load, Some(4 * MS));
        assert_eq!(sim.limit(), 400);
        // Samples of work admitted before a measurement began are ignored by it.
        let mut l = AdaptiveLimiter::new(cfg(), sim.now);
        for _ in 0..100 {
            l.on_sample(sim.now - MS, sim.now, 100 * MS);
        }
        assert_eq!(l.stats().no_load, None);
        assert!(l.stats().measuring);
    }

    #[test]
    fn the_queue_bound_follows_the_limit_down_and_up() {
        let mut sim = Sim::new(AdaptiveConfig {
            queue_per_limit: Some(0.5),
            queue_min: 2,
            ..cfg()
        });
        // Pinned to `min_rtt_limit` (4) while measuring: the bound is from the limit to
        // restore (10), not from the pin.
        assert_eq!(sim.limit(), 4);
        assert_eq!(sim.limiter.queue_bound(256), 5);
        sim.run(50, slots(10_000, 2 * MS));
        assert_eq!(sim.limit(), 400);
        // ceil(400 × 0.5) = 200, under the policy's 256; a smaller policy queue wins.
        assert_eq!(sim.limiter.queue_bound(256), 200);
        assert_eq!(sim.limiter.queue_bound(64), 64);
        // Capacity drops to 6 slots: the limit falls near it and the queue with it.
        sim.run(100, slots(6, 2 * MS));
        let down = sim.limit();
        assert!(down <= 12, "limit {down}");
        assert_eq!(sim.limiter.queue_bound(256), down.div_ceil(2).max(2));
        assert!(sim.limiter.queue_bound(256) <= 6);
        // At the floor the queue keeps `queue_min`.
        sim.limiter.set_limit(2);
        assert_eq!(sim.limiter.queue_bound(256), 2);
        // It recovers, and so does the queue.
        sim.run(100, slots(10_000, 2 * MS));
        assert_eq!(sim.limit(), 400);
        assert_eq!(sim.limiter.queue_bound(256), 200);
        // Without `queue_per_limit` the policy's queue stands whatever the limit.
        let plain = AdaptiveLimiter::new(
            AdaptiveConfig {
                queue_per_limit: None,
                ..cfg()
            },
            sim.now,
        );
        assert_eq!(plain.queue_bound(256), 256);
    }

    #[test]
    fn percentile_is_nearest_rank() {
        let mut v: Vec<Duration> = (1..=100).map(|i| i * MS).collect();
        assert_eq!(percentile(&mut v, 0.5), 51 * MS);
        assert_eq!(percentile(&mut v, 1.0), 100 * MS);
        assert_eq!(percentile(&mut v, 0.0), MS);
        assert_eq!(percentile(&mut [], 0.5), Duration::ZERO);
    }
}
