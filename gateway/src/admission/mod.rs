//! Priority-aware admission control: a concurrency limit (fixed or adaptive) with a bounded
//! priority queue, a share reserved for critical work, a sojourn target and a retry budget.
//!
//! At most `limit` requests are in flight; up to `queue` more wait, `critical` before
//! `default` before `low` ([`Priority`], from the request's [`RequestFacts`], else the
//! [`RouteClass`]'s default), first come first served within a priority. An admitted request
//! holds its slot until its response future completes or is dropped; the slot then goes to
//! the best waiter that may take it. With a critical share ([`AdmissionOptions`]),
//! `default` and `low` together hold at most `limit − ⌊limit × share⌋` slots, so drawdowns
//! always find room the others cannot take.
//!
//! The gateway's configuration turns everything below on by default (issue 23: adaptive
//! limit with a queue that follows it, critical share, sojourn target, retry budget; README
//! "Configuration" says what each default protects against); [`AdmissionOptions::default`]
//! is the bare library's plain priority queue with a fixed limit.
//!
//! The limit is fixed (the policy's, or [`Admission::set_limits`]) or adaptive
//! ([`adaptive`]: a gradient on the latency of admitted work against a periodically
//! re-measured no-load latency; why this algorithm is in that module's docs).
//!
//! Shedding, always a fast typed [`Shed`] (the edge answers 503 `CAPACITY_SHED` with
//! `Retry-After`), never a request left to time out:
//! - queue full: the newest waiter of the lowest priority below the arrival's makes room;
//!   an arrival that is itself of the lowest priority present is shed ([`ShedCause::QueueFull`]);
//! - a [`Deadline`] already past, or closer than the expected wait (a moving average of
//!   recent service times × the requests ahead ÷ the limit) is shed at once
//!   ([`ShedCause::DeadlineUnmeetable`]); with no history yet only past deadlines are;
//! - a waiter whose deadline passes in the queue is shed then
//!   ([`ShedCause::DeadlineExpiredInQueue`]);
//! - with a sojourn target (CoDel's test: every request leaving the queue for an interval
//!   waited longer than the target), the `default` and `low` waiters over the target are shed
//!   ([`ShedCause::SojournTarget`]); `critical` ones wait for their deadline;
//! - with a retry budget (tower's `TpsBudget`: e.g. 10 % of recent first attempts plus a
//!   floor per second), a retry ([`RequestFacts::retry_attempt`] > 0) beyond it runs only
//!   in spare capacity, a slot free even for `low` work; otherwise it is shed
//!   ([`ShedCause::RetryBudget`]). Retries cannot then multiply an overload that admission
//!   sees (the limit is full), and where the overload is before admission (the gateway's
//!   own CPU, see [`crate::pressure`]) a retry that got this far costs about as much refused
//!   as served, and only a served one helps anyone.
//!
//! Shedding is cheap: the edge calls [`Admission::precheck`] after authentication and
//! before the body is read, so a request that would be shed on arrival is refused without
//! reading or parsing its body (the retry budget is spent there too); the check is
//! advisory, the layer decides again on arrival.
//!
//! Limits come from a [`LimitSource`] (the [`Policy`]: `concurrency` and `queue` of the
//! active window), checked on every arrival, or are set with [`Admission::set_limits`]; with
//! an adaptive limit the source only sets the queue capacity (with `queue_per_limit` an
//! upper bound of it: the queue follows the limit, see [`adaptive`]). Metrics: limit, in flight,
//! queued, shed by priority and cause, the queue sojourn histogram
//! ([`Admission::observe_sojourn`]), the no-load and sampled latency
//! ([`Admission::adaptive_stats`]).
//!
//! Priority and deadline are only known per request, so admission is decided in `call`,
//! not reserved in `poll_ready` (STYLE rule 5 does not fit); `poll_ready` only forwards the
//! inner service's readiness, and a queued request carries the ready inner service into its
//! future (`mem::replace` with a fresh clone), so clones start unready.
//!
//! # Layout
//! - `control.rs`: [`Admission`], the shared state behind a briefly held mutex, and its
//!   [`AdmissionOptions`].
//! - `adaptive.rs`: the adaptive limit's control law (pure; time passed in).
//! - `config.rs`: [`AdmissionConfig`], the `[admission]` section, and its options.
//! - `layer.rs`, `service.rs`, `future.rs`, `error.rs`: the middleware.
//!
//! # Example
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use gateway::admission::{Admission, Limits};
//! use gateway::request::{Priority, RequestFacts};
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! let admission = Admission::fixed(Limits { concurrency: 64, queue: 256 });
//! let mut svc = ServiceBuilder::new()
//!     .layer(admission.layer())
//!     .service_fn(|_req: http::Request<()>| async { Ok::<_, std::convert::Infallible>("ok") });
//! let mut req = http::Request::new(());
//! req.extensions_mut().insert(RequestFacts {
//!     priority: Some(Priority::Critical),
//!     ..RequestFacts::NONE
//! });
//! assert_eq!(svc.ready().await.unwrap().call(req).await.unwrap(), "ok");
//! assert_eq!(admission.in_flight(), 0);
//!
//! admission.set_limits(32, 128); // e.g. from an adaptive limiter
//! assert_eq!(admission.limit(), 32);
//! # }
//! ```

pub mod adaptive;
mod config;
mod control;
mod error;
mod future;
mod layer;
mod service;

use std::fmt;

pub use self::adaptive::{AdaptiveConfig, AdaptiveStats};
pub use self::config::{AdmissionConfig, AdmissionMode, RetryBudgetSettings};
pub use self::control::{Admission, AdmissionOptions, RetryBudgetConfig, SojournTarget};
pub use self::error::{Shed, ShedCause};
pub use self::future::ResponseFuture;
pub use self::layer::AdmissionLayer;
pub use self::service::AdmissionService;
use crate::policy::Policy;
#[cfg(doc)]
use crate::request::{Deadline, Priority, RequestFacts, RouteClass};

/// A concurrency limit and a queue capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Requests in flight at once (at least 1; 0 is taken as 1).
    pub concurrency: usize,
    /// Requests that may wait (0: none).
    pub queue: usize,
}

/// Where admission control takes its limits from: the policy today, an adaptive limiter
/// later. Called on every arrival, so `version` must be cheap.
pub trait LimitSource: Send + Sync + fmt::Debug + 'static {
    /// Changes whenever [`LimitSource::limits`] may answer differently.
    fn version(&self) -> u64;
    /// The limits now.
    fn limits(&self) -> Limits;
}

/// The active window's `concurrency` and `queue`; the version is the policy generation.
impl LimitSource for Policy {
    fn version(&self) -> u64 {
        self.load().generation
    }

    fn limits(&self) -> Limits {
        let snapshot = self.load();
        Limits {
            concurrency: usize::try_from(snapshot.limits.concurrency).unwrap_or(usize::MAX),
            queue: usize::try_from(snapshot.limits.queue).unwrap_or(usize::MAX),
        }
    }
}

#[cfg(test)]
mod tests;
