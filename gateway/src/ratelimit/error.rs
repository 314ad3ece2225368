//! The refusal of a rate limit.

use std::fmt;
use std::time::Duration;

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// The per-user quota (`RATE_LIMITED_USER`).
    User,
    /// The global rate of the route class (`RATE_LIMITED_GLOBAL`).
    Global,
}

impl Scope {
    /// `user` or `global`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Global => "global",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request refused by a rate limit; the edge answers 429 with `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("rate limited ({scope}): retry in {} s", retry_after.as_secs())]
pub struct RateLimited {
    scope: Scope,
    retry_after: Duration,
}

impl RateLimited {
    /// A refusal by `scope` that conforms again after `wait`; the advice is `wait` rounded up
    /// to whole seconds, at least one (what `Retry-After` can say).
    pub fn new(scope: Scope, wait: Duration) -> Self {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        RateLimited {
            scope,
            retry_after: Duration::from_secs(secs.max(1)),
        }
    }

    /// Which limit refused.
    pub const fn scope(&self) -> Scope {
        self.scope
    }

    /// When to retry: whole seconds, at least 1.
    pub const fn retry_after(&self) -> Duration {
        self.retry_after
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let r = |ms| RateLimited::new(Scope::User, Duration::from_millis(ms)).retry_after();
        assert_eq!(r(0), Duration::from_secs(1));
        assert_eq!(r(1), Duration::from_secs(1));
        assert_eq!(r(1000), Duration::from_secs(1));
        assert_eq!(r(1001), Duration::from_secs(2));
        assert_eq!(r(5999), Duration::from_secs(6));
        let e = RateLimited::new(Scope::Global, Duration::from_millis(2500));
        assert_eq!(e.to_string(), "rate limited (global): retry in 3 s");
    }
}
