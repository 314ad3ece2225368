//! Request extensions the limit layers read.
//!
//! An earlier layer (authentication, routing, deadline) puts these into
//! `http::Request::extensions_mut()`; the rate-limit and admission layers only read them.
//! Each is optional: a missing [`RouteClass`] is not globally limited, a missing [`UserKey`]
//! skips the per-user limit, a missing [`UserGrade`] uses the window's default user quota,
//! a missing [`Priority`] means [`Priority::Default`], a missing [`Deadline`] means no deadline.

use std::fmt;
use std::sync::Arc;

use risk_core::RiskGrade;
use serde::{Deserialize, Serialize};

/// Which kind of route a request is for: the unit of global rate limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteClass {
    /// `POST /v1/drawdowns`.
    Drawdown,
    /// `GET /v1/credit-lines/{user}`.
    CreditLine,
    /// `POST /v1/appeals` and appeal look-ups.
    Appeal,
    /// The reason-code catalogue (not globally limited).
    ReasonCodes,
    /// `/admin/*` (not globally limited).
    Admin,
    /// Health, readiness, metrics, OpenAPI (not globally limited).
    Ops,
}

impl RouteClass {
    /// The class's name as used in metrics labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Drawdown => "drawdown",
            Self::CreditLine => "credit_line",
            Self::Appeal => "appeal",
            Self::ReasonCodes => "reason_codes",
            Self::Admin => "admin",
            Self::Ops => "ops",
        }
    }

    /// The priority a request of this class gets unless the caller lowers it: drawdowns are
    /// critical, everything else default.
    pub const fn default_priority(self) -> Priority {
        match self {
            Self::Drawdown => Priority::Critical,
            _ => Priority::Default,
        }
    }
}

impl fmt::Display for RouteClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The user a request acts for (the `user_id` of the body or path), the key of per-user
/// limits. Never derived from client-supplied forwarding headers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserKey(pub Arc<str>);

impl UserKey {
    /// A key from a user id.
    pub fn new(user: &str) -> Self {
        UserKey(Arc::from(user))
    }
}

/// The user's risk grade when the gateway already knows it (a hint: per-grade quotas).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserGrade(pub RiskGrade);

/// Admission priority. Ordered: `Critical > Default > Low`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Shed first (a caller's `X-Priority: low`).
    Low,
    /// Credit-line queries, appeals.
    Default,
    /// Drawdowns.
    Critical,
}

impl Priority {
    /// All priorities, lowest first (the order of [`Priority::index`]).
    pub const ALL: [Priority; 3] = [Self::Low, Self::Default, Self::Critical];

    /// Position in [`Priority::ALL`] (0 = low), for per-priority tables.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The name as used in metrics labels and `X-Priority`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Default => "default",
            Self::Critical => "critical",
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The caller's `X-Retry-Attempt` (0: a first attempt, which adds to the retry budget; above
/// 0: a retry, which draws from it). Without it the admission layer leaves the budget alone
/// (the edge settles it in `Admission::precheck` before the body is read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAttempt(pub u32);

/// The instant by which the caller needs an answer (from `X-Request-Deadline-Ms` or the
/// configured default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Deadline(pub tokio::time::Instant);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_order_and_index() {
        assert!(Priority::Critical > Priority::Default);
        assert!(Priority::Default > Priority::Low);
        for (i, p) in Priority::ALL.into_iter().enumerate() {
            assert_eq!(p.index(), i);
        }
        assert_eq!(RouteClass::Drawdown.default_priority(), Priority::Critical);
        assert_eq!(RouteClass::Appeal.default_priority(), Priority::Default);
    }
}
