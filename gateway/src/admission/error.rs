//! The refusal of admission control.

use std::fmt;
use std::time::Duration;

use crate::request::Priority;

/// Why a request was shed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ShedCause {
    /// The queue was full of requests of at least this priority, or a higher-priority
    /// arrival took this request's place, or the queue shrank.
    QueueFull,
    /// The deadline had passed, or the expected wait in the queue would pass it.
    DeadlineUnmeetable,
    /// The deadline passed while the request waited in the queue.
    DeadlineExpiredInQueue,
    /// A `default` or `low` request waited past the sojourn target in a standing queue.
    SojournTarget,
    /// A retry (`X-Retry-Attempt` > 0) found the retry budget spent.
    RetryBudget,
}

impl ShedCause {
    /// Every cause, in the order of [`ShedCause::index`].
    pub const ALL: [ShedCause; 5] = [
        Self::QueueFull,
        Self::DeadlineUnmeetable,
        Self::DeadlineExpiredInQueue,
        Self::SojournTarget,
        Self::RetryBudget,
    ];

    /// Position in [`ShedCause::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }

    /// `queue_full`, `deadline_unmeetable`, `deadline_expired_in_queue`, `sojourn_target`,
    /// `retry_budget` (metrics labels).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::QueueFull => "queue_full",
            Self::DeadlineUnmeetable => "deadline_unmeetable",
            Self::DeadlineExpiredInQueue => "deadline_expired_in_queue",
            Self::SojournTarget => "sojourn_target",
            Self::RetryBudget => "retry_budget",
        }
    }
}

impl fmt::Display for ShedCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request shed by admission control; the edge answers 503 `CAPACITY_SHED` with
/// `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("shed by admission control ({cause}, priority {priority}): retry in {} s", retry_after.as_secs())]
pub struct Shed {
    cause: ShedCause,
    priority: Priority,
    retry_after: Duration,
}

impl Shed {
    pub(super) const fn new(cause: ShedCause, priority: Priority, retry_after: Duration) -> Self {
        Shed {
            cause,
            priority,
            retry_after,
        }
    }

    /// Why.
    pub const fn cause(&self) -> ShedCause {
        self.cause
    }

    /// The request's priority.
    pub const fn priority(&self) -> Priority {
        self.priority
    }

    /// When to retry: whole seconds, at least 1 (an estimate of the time to drain the queue).
    pub const fn retry_after(&self) -> Duration {
        self.retry_after
    }
}
