//! Store failures in the log at a bounded rate: one request's failure is worth a WARN line,
//! an outage's thousands are not (they would bury everything else, and cost I/O when the
//! process can least afford it). The first failure is logged at once; later ones within
//! [`WARN_EVERY`] are counted and reported with the next line.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// At most one WARN line per this period.
pub const WARN_EVERY: Duration = Duration::from_secs(10);

/// A rate limit on log lines: [`RateLimitedLog::admit`] says whether to log now, and how
/// many were suppressed since the last line.
#[derive(Debug)]
pub struct RateLimitedLog {
    every_ms: u64,
    /// When the last line was logged, in ms since the epoch plus one (0: never).
    last_ms: AtomicU64,
    suppressed: AtomicU64,
}

impl RateLimitedLog {
    /// At most one line per `every`.
    pub const fn new(every: Duration) -> Self {
        // A period over u64 milliseconds is no limit at all; none is configured that long.
        #[allow(clippy::cast_possible_truncation)]
        let every_ms = every.as_millis() as u64;
        RateLimitedLog {
            every_ms,
            last_ms: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Whether to log an event at `now_ms` (any monotonic milliseconds): `Some(n)` with the
    /// number of events suppressed since the last line, or `None` (counted as suppressed).
    /// Relaxed: a race lets two lines through a moment apart, at worst, and loses no count
    /// that matters.
    pub fn admit(&self, now_ms: u64) -> Option<u64> {
        let now = now_ms.saturating_add(1);
        let last = self.last_ms.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < self.every_ms {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        if self
            .last_ms
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(self.suppressed.swap(0, Ordering::Relaxed))
    }
}

/// Milliseconds since the first call (a process-wide monotonic epoch).
fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Logs a request refused because the store could not answer, at most once per
/// [`WARN_EVERY`] (with how many went unlogged since).
pub fn store_unavailable(cause: &super::StoreError) {
    static LOG: RateLimitedLog = RateLimitedLog::new(WARN_EVERY);
    if let Some(suppressed) = LOG.admit(now_ms()) {
        tracing::warn!(
            %cause,
            suppressed,
            "store unavailable (requests refused; repeats within 10 s are counted, not logged)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_period_with_the_count_suppressed() {
        let log = RateLimitedLog::new(Duration::from_secs(10));
        assert_eq!(log.admit(0), Some(0));
        for t in 1..600 {
            assert_eq!(log.admit(t * 5), None, "{t}");
        }
        assert_eq!(log.admit(9_999), None);
        assert_eq!(log.admit(10_000), Some(600));
        assert_eq!(log.admit(10_001), None);
        assert_eq!(log.admit(25_000), Some(1));
        assert_eq!(log.admit(35_000), Some(0));
    }
}
