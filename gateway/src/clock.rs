//! Wall-clock time behind a trait, so tests and the loadtest drive peak windows.
//!
//! Everything in the gateway that needs to know *what time it is* (which peak window is
//! active, when it ends) asks a [`Clock`]. [`SystemClock`] is the only place that reads the
//! system clock; [`ManualClock`] is set and advanced by tests and by the loadtest's rehearsal
//! of a surge.
//!
//! Monotonic durations (rate-limit buckets, admission deadlines) use `tokio::time::Instant`
//! instead, which tests pause and advance with `tokio::time::pause()`.
//!
//! # Example
//! ```
//! use std::time::Duration;
//! use gateway::clock::{Clock, ManualClock};
//!
//! let clock = ManualClock::new("2026-11-10T15:29:00Z".parse().unwrap());
//! clock.advance(Duration::from_secs(60));
//! assert_eq!(clock.now().to_string(), "2026-11-10T15:30:00Z");
//! ```
//!
//! # Layout
//! - [`Clock`]: a source of wall-clock time.
//! - [`SharedClock`]: a clock shared between the policy scheduler, handlers and tests.
//! - [`SystemClock`]: the system's real-time clock.
//! - [`ManualClock`]: a clock that only moves when told to.
//! - [`rfc3339`]: the form of every timestamp the API answers.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use jiff::fmt::temporal::DateTimePrinter;
use jiff::tz::Offset;
use jiff::{SignedDuration, Timestamp};

/// A source of wall-clock time.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current instant.
    fn now(&self) -> Timestamp;
}

/// A clock shared between the policy scheduler, handlers and tests.
pub type SharedClock = Arc<dyn Clock>;

/// The system's real-time clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl SystemClock {
    /// The system clock as a [`SharedClock`].
    pub fn shared() -> SharedClock {
        Arc::new(SystemClock)
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that only moves when told to. Clones share the same time.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<Mutex<Timestamp>>,
}

impl ManualClock {
    /// A clock reading `start` until it is set or advanced.
    pub fn new(start: Timestamp) -> Self {
        ManualClock {
            now: Arc::new(Mutex::new(start)),
        }
    }

    /// Sets the time (it may go backwards; the policy copes).
    pub fn set(&self, now: Timestamp) {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner) = now;
    }

    /// Moves the time forward by `by` (saturating at the largest timestamp).
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(PoisonError::into_inner);
        let by = SignedDuration::try_from(by).unwrap_or(SignedDuration::MAX);
        *now = now.checked_add(by).unwrap_or(Timestamp::MAX);
    }

    /// This clock as a [`SharedClock`] (sharing the same time).
    pub fn shared(&self) -> SharedClock {
        Arc::new(self.clone())
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// `at` as RFC 3339 in whole seconds with the numeric `offset` (`2026-11-11T00:00:00+08:00`),
/// the form of every timestamp the API answers: jiff's printer, its fraction of a second
/// truncated (jiff's default form would add it, and the zone's name for a zoned time).
pub fn rfc3339(at: Timestamp, offset: Offset) -> String {
    const PRINTER: DateTimePrinter = DateTimePrinter::new().precision(Some(0));
    PRINTER.timestamp_with_offset_to_string(&at, offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_is_shared_between_clones() {
        let start: Timestamp = "2026-11-10T15:00:00Z".parse().unwrap();
        let clock = ManualClock::new(start);
        let shared = clock.shared();
        clock.advance(Duration::from_secs(90));
        assert_eq!(shared.now(), "2026-11-10T15:01:30Z".parse().unwrap());
        clock.set(start);
        assert_eq!(shared.now(), start);
    }

    #[test]
    fn system_clock_moves_forward() {
        let a = SystemClock.now();
        let b = SystemClock.now();
        assert!(b >= a);
    }

    #[test]
    fn rfc3339_is_whole_seconds_with_the_numeric_offset() {
        let at: Timestamp = "2026-11-10T16:00:00.999Z".parse().unwrap();
        let tz = jiff::tz::TimeZone::get("Asia/Shanghai").unwrap();
        assert_eq!(rfc3339(at, tz.to_offset(at)), "2026-11-11T00:00:00+08:00");
        assert_eq!(rfc3339(at, Offset::UTC), "2026-11-10T16:00:00+00:00");
        let st_johns = jiff::tz::TimeZone::get("America/St_Johns").unwrap();
        assert_eq!(
            rfc3339(at, st_johns.to_offset(at)),
            "2026-11-10T12:30:00-03:30"
        );
        // Before 1970 the fraction is truncated towards the past, as the second it is in.
        let before: Timestamp = "1969-12-31T23:59:59.5Z".parse().unwrap();
        assert_eq!(rfc3339(before, Offset::UTC), "1969-12-31T23:59:59+00:00");
    }
}
