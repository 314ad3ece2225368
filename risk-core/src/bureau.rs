//! The external credit-bureau signal: what the gateway learnt about a user from the bureau,
//! handed to the engine as an explicit input (the engine never calls anything itself).
//!
//! The gateway decides *whether* to ask and *how long* to wait; the engine decides what the
//! answer (or its absence) means under the profile's bureau rules (see
//! [`BureauRules`](crate::thresholds::BureauRules)):
//! - a [`BureauSignal::Fresh`] or [`BureauSignal::Cached`] report is checked against the rules
//!   (score band: reject or review; overdue accounts elsewhere: reject);
//! - [`BureauSignal::Unavailable`] with the rules on sends the drawdown to `review` with
//!   `BUREAU_UNAVAILABLE_REVIEW`: never a silent approval, never a vague refusal;
//! - [`BureauSignal::NotConsulted`] (the bureau is off, or the consult rule skipped this
//!   request) leaves the decision as it was without the bureau.
//!
//! # Layout
//! - [`BureauReport`]: what the bureau reported about a user (the fields of its answer the rules …
//! - [`UnavailableCause`]: why the bureau gave no usable answer for this request.
//! - [`BureauSignal`]: the bureau input of one evaluation.

/// What the bureau reported about a user (the fields of its answer the rules read).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BureauReport {
    /// Credit score, 300 to 850, higher is better.
    pub score: u16,
    /// Accounts with another lender currently overdue.
    pub overdue_accounts: u32,
    /// Days the most overdue of them is overdue (0: none).
    pub max_days_overdue: u32,
    /// Credit inquiries over the last 90 days (reported, not used by a rule yet).
    pub inquiries_90d: u32,
}

/// Why the bureau gave no usable answer for this request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnavailableCause {
    /// It did not answer within the call's budget.
    Timeout,
    /// It answered with an error or an unreadable body, or the connection failed.
    Error,
    /// The circuit breaker is open: it was not asked.
    BreakerOpen,
    /// Every concurrent-call slot was taken: it was not asked.
    BulkheadFull,
    /// The request's remaining deadline left no budget for a call: it was not asked.
    NoBudget,
}

impl UnavailableCause {
    /// A short stable name, e.g. `breaker_open` (a metric label).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Error => "error",
            Self::BreakerOpen => "breaker_open",
            Self::BulkheadFull => "bulkhead_full",
            Self::NoBudget => "no_budget",
        }
    }
}

/// The bureau input of one evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum BureauSignal {
    /// The bureau was not asked (off, or the consult rule skipped this request).
    #[default]
    NotConsulted,
    /// The bureau answered for this request.
    Fresh(BureauReport),
    /// The bureau could not answer; an earlier answer, young enough to use, stands in.
    Cached {
        /// The earlier answer.
        report: BureauReport,
        /// Its age in seconds.
        age_secs: u32,
    },
    /// The bureau could not answer and no usable earlier answer exists.
    Unavailable(UnavailableCause),
}

impl BureauSignal {
    /// The report the rules read, fresh or cached.
    pub const fn report(&self) -> Option<&BureauReport> {
        match self {
            Self::Fresh(r) | Self::Cached { report: r, .. } => Some(r),
            Self::NotConsulted | Self::Unavailable(_) => None,
        }
    }
}
