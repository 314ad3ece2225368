//! A circuit breaker: closed, open after too many failed or slow calls, half-open probes
//! after a cool-down, closed again after enough successful probes.
//!
//! Time comes from the gateway's injected [`Clock`](crate::clock::Clock), so tests open and close it by advancing
//! a [`ManualClock`](crate::clock::ManualClock). The rates are measured over a sliding
//! window of ten buckets. No crate fitted: `failsafe` reads its own clock and is little
//! maintained; the state machine is small.
//!
//! A [`Permit`] dropped without an outcome (the request was cancelled mid-call) counts as a
//! failure, so a half-open probe is never lost.

use super::config::BreakerConfig;
use crate::clock::SharedClock;
use jiff::{SignedDuration, Timestamp};
use std::sync::{Mutex, PoisonError};

/// The breaker's state, as the `gateway_bureau_breaker_state` gauge reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through (gauge 0).
    Closed,
    /// Calls are refused until the cool-down ends (gauge 1).
    Open,
    /// A few probes go through (gauge 2).
    HalfOpen,
}

impl BreakerState {
    /// The gauge value.
    pub const fn gauge(self) -> i64 {
        match self {
            Self::Closed => 0,
            Self::Open => 1,
            Self::HalfOpen => 2,
        }
    }

    /// A short name (`closed`, `open`, `half_open`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

const BUCKETS: usize = 10;

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// Which slice of time this bucket counts (time / bucket width); stale when older.
    epoch: i64,
    calls: u32,
    failures: u32,
    slow: u32,
}

#[derive(Debug)]
enum State {
    Closed,
    Open { until: Timestamp },
    HalfOpen { in_flight: u32, successes: u32 },
}

#[derive(Debug)]
struct Inner {
    state: State,
    buckets: [Bucket; BUCKETS],
}

/// The circuit breaker. Shared by every request; its lock is held for a few instructions
/// and never across an `.await`.
#[derive(Debug)]
pub struct Breaker {
    settings: BreakerConfig,
    clock: SharedClock,
    bucket_ms: i64,
    inner: Mutex<Inner>,
}

/// Leave to make one call. Report its outcome with [`Breaker::record`].
#[derive(Debug)]
pub struct Permit<'a> {
    breaker: &'a Breaker,
    probe: bool,
    done: bool,
}

/// How a call went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    /// It answered in time and not slowly.
    Success,
    /// It answered, but slower than the slow-call threshold.
    Slow,
    /// It failed or timed out.
    Failure,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(settings: BreakerConfig, clock: SharedClock) -> Breaker {
        let window_ms = i64::try_from(settings.window.as_millis()).unwrap_or(i64::MAX);
        Breaker {
            settings,
            clock,
            bucket_ms: (window_ms / BUCKETS as i64).max(1),
            inner: Mutex::new(Inner {
                state: State::Closed,
                buckets: [Bucket::default(); BUCKETS],
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The state now (an open breaker whose cool-down ended reads half-open).
    pub fn state(&self) -> BreakerState {
        let now = self.clock.now();
        match self.lock().state {
            State::Closed => BreakerState::Closed,
            State::Open { until } if now < until => BreakerState::Open,
            State::Open { .. } | State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Leave to call now, or `None` while open (or while every probe slot is taken).
    pub fn try_acquire(&self) -> Option<Permit<'_>> {
        let now = self.clock.now();
        let mut inner = self.lock();
        let probe = match &mut inner.state {
            State::Closed => false,
            State::Open { until } if now < *until => return None,
            State::Open { .. } => {
                tracing::debug!(
                    bureau.breaker = "half_open",
                    "bureau breaker lets probes through"
                );
                inner.state = State::HalfOpen {
                    in_flight: 1,
                    successes: 0,
                };
                true
            }
            State::HalfOpen { in_flight, .. } => {
                if *in_flight >= self.settings.probes {
                    return None;
                }
                *in_flight += 1;
                true
            }
        };
        Some(Permit {
            breaker: self,
            probe,
            done: false,
        })
    }

    /// Reports how the call made under `permit` went.
    pub fn record(&self, mut permit: Permit<'_>, outcome: CallOutcome) {
        permit.done = true;
        self.finish(permit.probe, outcome);
    }

    fn finish(&self, probe: bool, outcome: CallOutcome) {
        let now = self.clock.now();
        let mut inner = self.lock();
        let s = &self.settings;
        match (&mut inner.state, probe) {
            (
                State::HalfOpen {
                    in_flight,
                    successes,
                },
                true,
            ) => {
                *in_flight = in_flight.saturating_sub(1);
                if outcome == CallOutcome::Success {
                    *successes += 1;
                    if *successes >= s.probes {
                        tracing::debug!(bureau.breaker = "closed", "bureau breaker closed");
                        inner.state = State::Closed;
                        inner.buckets = [Bucket::default(); BUCKETS];
                    }
                } else {
                    self.open(&mut inner, now);
                }
            }
            (State::Closed, false) => {
                let epoch = now.as_millisecond().div_euclid(self.bucket_ms);
                // Reduced modulo BUCKETS, so it fits in usize on every target.
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let slot = epoch.rem_euclid(BUCKETS as i64) as usize;
                let b = &mut inner.buckets[slot];
                if b.epoch != epoch {
                    *b = Bucket {
                        epoch,
                        ..Bucket::default()
                    };
                }
                b.calls += 1;
                b.failures += u32::from(outcome == CallOutcome::Failure);
                b.slow += u32::from(outcome == CallOutcome::Slow);
                let oldest = epoch - (BUCKETS as i64 - 1);
                let (calls, failures, slow) = inner
                    .buckets
                    .iter()
                    .filter(|b| b.epoch >= oldest && b.epoch <= epoch)
                    .fold((0u32, 0u32, 0u32), |(c, f, sl), b| {
                        (c + b.calls, f + b.failures, sl + b.slow)
                    });
                if calls >= s.min_calls {
                    let rate = |n: u32| f64::from(n) / f64::from(calls);
                    if rate(failures) >= s.error_rate || rate(slow) >= s.slow_rate {
                        self.open(&mut inner, now);
                    }
                }
            }
            // A call that started under an earlier state: its outcome is no longer evidence.
            _ => {}
        }
    }

    fn open(&self, inner: &mut Inner, now: Timestamp) {
        let cool = SignedDuration::try_from(self.settings.open_for).unwrap_or(SignedDuration::MAX);
        tracing::debug!(bureau.breaker = "open", "bureau breaker opened");
        inner.state = State::Open {
            until: now.checked_add(cool).unwrap_or(Timestamp::MAX),
        };
        inner.buckets = [Bucket::default(); BUCKETS];
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.done {
            // Cancelled mid-call: count it as a failure so a probe slot is not lost.
            self.breaker.finish(self.probe, CallOutcome::Failure);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::time::Duration;

    fn settings() -> BreakerConfig {
        BreakerConfig {
            window: Duration::from_secs(10),
            min_calls: 4,
            slow_call: Duration::from_millis(100),
            error_rate: 0.5,
            slow_rate: 0.75,
            open_for: Duration::from_secs(5),
            probes: 2,
        }
    }

    /// A breaker on a manual clock, and a function that sets the clock `secs` after start.
    fn breaker() -> (Breaker, impl Fn(i64)) {
        let start = Timestamp::from_second(1_800_000_000).unwrap();
        let clock = ManualClock::new(start);
        let b = Breaker::new(settings(), clock.shared());
        (b, move |secs| {
            clock.set(Timestamp::from_second(1_800_000_000 + secs).unwrap());
        })
    }

    fn call(b: &Breaker, outcome: CallOutcome) -> bool {
        match b.try_acquire() {
            Some(p) => {
                b.record(p, outcome);
                true
            }
            None => false,
        }
    }

    fn call_at(b: &Breaker, at: &impl Fn(i64), secs: i64, outcome: CallOutcome) -> bool {
        at(secs);
        call(b, outcome)
    }

    fn state_at(b: &Breaker, at: &impl Fn(i64), secs: i64) -> BreakerState {
        at(secs);
        b.state()
    }

    fn acquire_at<'b>(b: &'b Breaker, at: &impl Fn(i64), secs: i64) -> Option<Permit<'b>> {
        at(secs);
        b.try_acquire()
    }

    #[test]
    fn opens_on_the_error_rate_only_after_the_minimum_of_calls() {
        let (b, at) = breaker();
        assert!(call_at(&b, &at, 0, CallOutcome::Failure));
        assert!(call_at(&b, &at, 0, CallOutcome::Failure));
        assert!(call_at(&b, &at, 0, CallOutcome::Failure));
        assert_eq!(
            state_at(&b, &at, 0),
            BreakerState::Closed,
            "3 calls < min_calls"
        );
        assert!(call_at(&b, &at, 0, CallOutcome::Success));
        // 3 failures of 4 = 75 % >= 50 %.
        assert_eq!(state_at(&b, &at, 0), BreakerState::Open);
        assert!(acquire_at(&b, &at, 4).is_none());
    }

    #[test]
    fn stays_closed_below_the_rates() {
        let (b, at) = breaker();
        for i in 0..20 {
            let o = if i % 3 == 2 {
                CallOutcome::Failure
            } else {
                CallOutcome::Success
            };
            assert!(call_at(&b, &at, 0, o));
        }
        assert_eq!(state_at(&b, &at, 0), BreakerState::Closed);
    }

    #[test]
    fn opens_on_the_slow_rate() {
        let (b, at) = breaker();
        for _ in 0..3 {
            call_at(&b, &at, 0, CallOutcome::Slow);
        }
        call_at(&b, &at, 0, CallOutcome::Success);
        assert_eq!(state_at(&b, &at, 0), BreakerState::Open);
    }

    #[test]
    fn old_calls_leave_the_window() {
        let (b, at) = breaker();
        for _ in 0..3 {
            call_at(&b, &at, 0, CallOutcome::Failure);
        }
        // 11 s later the failures are out of the 10 s window: 1 failure of 4 now.
        call_at(&b, &at, 11, CallOutcome::Failure);
        for _ in 0..3 {
            call_at(&b, &at, 11, CallOutcome::Success);
        }
        assert_eq!(state_at(&b, &at, 11), BreakerState::Closed);
    }

    #[test]
    fn half_open_probes_close_it_or_open_it_again() {
        let (b, at) = breaker();
        for _ in 0..4 {
            call_at(&b, &at, 0, CallOutcome::Failure);
        }
        assert_eq!(state_at(&b, &at, 4), BreakerState::Open);
        assert_eq!(state_at(&b, &at, 5), BreakerState::HalfOpen);
        // Two probes at most in flight.
        let p1 = acquire_at(&b, &at, 5).unwrap();
        let p2 = acquire_at(&b, &at, 5).unwrap();
        assert!(acquire_at(&b, &at, 5).is_none());
        b.record(p1, CallOutcome::Success);
        // A failed probe opens it again for a full cool-down.
        b.record(p2, CallOutcome::Failure);
        assert_eq!(state_at(&b, &at, 9), BreakerState::Open);
        assert_eq!(state_at(&b, &at, 10), BreakerState::HalfOpen);
        assert!(call_at(&b, &at, 10, CallOutcome::Success));
        assert_eq!(state_at(&b, &at, 10), BreakerState::HalfOpen);
        assert!(call_at(&b, &at, 10, CallOutcome::Success));
        assert_eq!(state_at(&b, &at, 10), BreakerState::Closed);
        // Closed with a clean window: one failure does not reopen it.
        assert!(call_at(&b, &at, 10, CallOutcome::Failure));
        assert_eq!(state_at(&b, &at, 10), BreakerState::Closed);
    }

    #[test]
    fn a_slow_probe_does_not_close_it() {
        let (b, at) = breaker();
        for _ in 0..4 {
            call_at(&b, &at, 0, CallOutcome::Failure);
        }
        assert!(call_at(&b, &at, 5, CallOutcome::Slow));
        assert_eq!(state_at(&b, &at, 5), BreakerState::Open);
    }

    #[test]
    fn a_dropped_probe_frees_its_slot() {
        let (b, at) = breaker();
        for _ in 0..4 {
            call_at(&b, &at, 0, CallOutcome::Failure);
        }
        let p = acquire_at(&b, &at, 5).unwrap();
        drop(p);
        // Counted as a failed probe: open again, probes resume after a new cool-down.
        assert!(acquire_at(&b, &at, 9).is_none());
        assert!(acquire_at(&b, &at, 10).is_some());
    }
}
