//! The shared admission state: limit, in-flight count, the three priority queues, metrics;
//! and the options: adaptive limit, critical share, sojourn target, retry budget.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tower::retry::budget::{Budget, TpsBudget};

use super::adaptive::{AdaptiveConfig, AdaptiveLimiter, AdaptiveStats};
use super::error::{Shed, ShedCause};
use super::{LimitSource, Limits};
use crate::request::Priority;

/// Weight of the newest sample in the moving average of service times.
const EWMA_ALPHA: f64 = 0.2;
/// Retry-After advice bounds.
const MIN_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(30);

/// Number of shed causes (the width of the shed counters).
const CAUSES: usize = ShedCause::ALL.len();

/// How admission behaves beyond its limits; the default is plain priority queueing with a
/// fixed limit (no adaptive limit, no reserved share, no sojourn target, no retry budget).
#[derive(Debug, Clone, Default)]
pub struct AdmissionOptions {
    /// Adapt the concurrency limit to measured latency (the limit source then only sets
    /// the queue capacity).
    pub adaptive: Option<AdaptiveConfig>,
    /// Share of the limit kept for `critical` work, in [0, 1): `default` and `low` together
    /// hold at most `limit - floor(limit × share)` slots.
    pub critical_share: f64,
    /// CoDel-style sojourn target: when every request leaving the queue for `interval` has
    /// waited more than `target`, the `default` and `low` waiters over `target` are shed.
    pub sojourn: Option<SojournTarget>,
    /// Retries (`X-Retry-Attempt` > 0) draw from this budget; beyond it a retry runs only in
    /// spare capacity (a slot free even for `low` work), else it is shed.
    pub retry_budget: Option<RetryBudgetConfig>,
}

/// A CoDel-style sojourn target (see [`AdmissionOptions::sojourn`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SojournTarget {
    /// Longest acceptable standing wait.
    pub target: Duration,
    /// How long the wait must stay above `target` before shedding.
    pub interval: Duration,
}

/// A retry budget (tower's [`TpsBudget`], after Finagle's RetryBudget).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryBudgetConfig {
    /// How long a first attempt counts towards the budget, within 1..=60 s.
    pub ttl: Duration,
    /// Retries always allowed per second.
    pub min_per_sec: u32,
    /// Retries allowed per first attempt (0.1: 10 %), within 0..=1000.
    pub ratio: f32,
}

impl RetryBudgetConfig {
    fn budget(&self) -> TpsBudget {
        // `TpsBudget::new` asserts these ranges; the config is validated against them, and
        // clamping keeps a hand-built one from panicking.
        let ttl = self
            .ttl
            .clamp(Duration::from_secs(1), Duration::from_secs(60));
        TpsBudget::new(
            ttl,
            self.min_per_sec.min(i32::MAX as u32 - 1),
            self.ratio.clamp(0.0, 1000.0),
        )
    }
}

/// What a queued request is eventually told: a permit, or why it was shed.
pub(super) type Outcome = Result<Permit, ShedCause>;

/// Priority-aware admission control, shared by every clone (see the module docs).
#[derive(Clone)]
pub struct Admission {
    inner: Arc<Inner>,
}

pub(super) struct Inner {
    state: Mutex<State>,
    source: Option<Box<dyn LimitSource>>,
    /// Set once, at build or by [`Admission::configure`].
    retry_budget: OnceLock<TpsBudget>,
    /// Observes each admitted waiter's time in the queue, once metrics are attached.
    sojourn_histogram: OnceLock<Histogram>,
    /// The source version last applied (`u64::MAX`: none yet).
    applied: AtomicU64,
    /// Set by `set_limits`: the source no longer drives the limits until it changes.
    overridden: AtomicBool,
    // Mirrors of the state for metrics, written under the lock, read without it. Relaxed:
    // each is an independent gauge; nothing is ordered by them.
    in_flight: AtomicUsize,
    limit: AtomicUsize,
    queue_capacity: AtomicUsize,
    queued: [AtomicUsize; 3],
    /// `[priority][cause]`, monotonically increasing counters.
    shed: [[AtomicU64; CAUSES]; 3],
}

struct Waiter {
    id: u64,
    tx: oneshot::Sender<Outcome>,
    deadline: Option<Instant>,
    enqueued: Instant,
}

struct State {
    limit: usize,
    /// The queue capacity in force: `policy_queue`, or less with an adaptive queue bound.
    capacity: usize,
    /// The queue capacity of the limit source (or of `set_limits`).
    policy_queue: usize,
    in_flight: usize,
    /// In flight by priority (sums to `in_flight`).
    in_flight_by: [usize; 3],
    critical_share: f64,
    adaptive: Option<AdaptiveLimiter>,
    sojourn: Option<SojournTarget>,
    /// Since when every waiter leaving the queue waited more than the sojourn target.
    above_target_since: Option<Instant>,
    /// Indexed by `Priority::index` (0 = low); FIFO within each.
    queues: [VecDeque<Waiter>; 3],
    next_id: u64,
    /// Moving average of service times (none until the first request completes).
    ewma: Option<Duration>,
}

/// The right to be in flight: released (handing the slot to the best waiter) when dropped.
#[must_use = "dropping the permit releases the slot at once"]
pub(super) struct Permit {
    inner: Option<Arc<Inner>>,
    started: Instant,
    priority: Priority,
}

/// A place in the queue: leaves it when dropped before being answered.
pub(super) struct QueueGuard {
    inner: Arc<Inner>,
    id: u64,
    priority: Priority,
    /// Still in the queue as far as this guard knows.
    armed: bool,
}

/// The result of arriving.
pub(super) enum Arrival {
    Admitted(Permit),
    Queued(oneshot::Receiver<Outcome>, QueueGuard),
    Shed(Shed),
}

impl Admission {
    /// Admission control with fixed limits (changed only by [`Admission::set_limits`]).
    pub fn fixed(limits: Limits) -> Self {
        Self::build(limits, None, AdmissionOptions::default())
    }

    /// Fixed limits with `options`.
    pub fn fixed_with(limits: Limits, options: AdmissionOptions) -> Self {
        Self::build(limits, None, options)
    }

    /// Admission control whose limits follow `source` (checked on every arrival; cheap).
    pub fn with_source(source: impl LimitSource) -> Self {
        Self::with_source_and(source, AdmissionOptions::default())
    }

    /// Limits following `source` (with an adaptive limit: only the queue capacity), with
    /// `options`.
    pub fn with_source_and(source: impl LimitSource, options: AdmissionOptions) -> Self {
        let limits = source.limits();
        let version = source.version();
        let admission = Self::build(limits, Some(Box::new(source)), options);
        admission.inner.applied.store(version, Ordering::Relaxed);
        admission
    }

    /// Admission control following the active peak window's `concurrency` and `queue`.
    pub fn new(policy: &crate::policy::Policy) -> Self {
        Self::with_source(policy.clone())
    }

    fn build(limits: Limits, source: Option<Box<dyn LimitSource>>, opts: AdmissionOptions) -> Self {
        let adaptive = opts
            .adaptive
            .map(|cfg| AdaptiveLimiter::new(cfg, Instant::now()));
        let limit = adaptive
            .as_ref()
            .map_or(limits.concurrency, AdaptiveLimiter::limit)
            .max(1);
        let capacity = adaptive
            .as_ref()
            .map_or(limits.queue, |a| a.queue_bound(limits.queue));
        let inner = Inner {
            state: Mutex::new(State {
                limit,
                capacity,
                policy_queue: limits.queue,
                in_flight: 0,
                in_flight_by: [0; 3],
                critical_share: opts.critical_share.clamp(0.0, 0.999),
                adaptive,
                sojourn: opts.sojourn,
                above_target_since: None,
                queues: Default::default(),
                next_id: 0,
                ewma: None,
            }),
            source,
            retry_budget: opts
                .retry_budget
                .as_ref()
                .map(RetryBudgetConfig::budget)
                .map_or_else(OnceLock::new, OnceLock::from),
            sojourn_histogram: OnceLock::new(),
            applied: AtomicU64::new(u64::MAX),
            overridden: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            limit: AtomicUsize::new(limit),
            queue_capacity: AtomicUsize::new(capacity),
            queued: Default::default(),
            shed: Default::default(),
        };
        Admission {
            inner: Arc::new(inner),
        }
    }

    /// Changes the concurrency limit (at least 1) and the queue capacity now: a higher limit
    /// admits waiters at once; a smaller queue sheds its lowest-priority, newest waiters; a
    /// lower limit lets in-flight requests finish. The limit source (the policy) takes over
    /// again at its next change. With an adaptive limit, `concurrency` (within its bounds)
    /// is where it continues from.
    pub fn set_limits(&self, concurrency: usize, queue: usize) {
        self.inner.overridden.store(true, Ordering::Relaxed);
        if let Some(a) = self.inner.lock().adaptive.as_mut() {
            a.set_limit(concurrency);
        }
        self.inner.apply(Limits { concurrency, queue });
    }

    /// Sheds early what admission would shed on arrival now, before the caller spends
    /// anything on the request (the edge calls this before reading the body); changes
    /// nothing otherwise. A `retry` draws from the retry budget here (a first attempt adds
    /// to it), so a request checked here must not carry a
    /// [`crate::request::RequestFacts::retry_attempt`] on.
    ///
    /// Advisory: a request let through is decided again on arrival.
    pub fn precheck(
        &self,
        priority: Priority,
        deadline: Option<Instant>,
        retry: bool,
    ) -> Result<(), Shed> {
        self.inner.follow_source();
        let over_budget = self.inner.spend_retry(retry).err();
        let now = Instant::now();
        let cause = match self
            .inner
            .lock()
            .decide_within(priority, deadline, now, over_budget)
        {
            Decision::Shed(cause) => Some(cause),
            _ => None,
        };
        match cause {
            None => Ok(()),
            Some(cause) => {
                self.inner.count_shed(priority, cause);
                Err(Shed::new(cause, priority, self.inner.retry_after()))
            }
        }
    }

    /// Applies `options` to an admission built without them (at start-up, before traffic):
    /// the adaptive limit starts measuring now, the critical share and sojourn target apply
    /// from the next decision, and a retry budget is installed unless one already is.
    pub fn configure(&self, options: AdmissionOptions) {
        if let Some(budget) = options.retry_budget.as_ref().map(RetryBudgetConfig::budget) {
            let _ = self.inner.retry_budget.set(budget);
        }
        {
            let mut st = self.inner.lock();
            st.critical_share = options.critical_share.clamp(0.0, 0.999);
            st.sojourn = options.sojourn;
            st.adaptive = options
                .adaptive
                .map(|cfg| AdaptiveLimiter::new(cfg, Instant::now()));
            if let Some(a) = &st.adaptive {
                st.limit = a.limit();
            }
            st.capacity = st.bounded_capacity();
            self.inner.shed_excess(&mut st);
            self.inner.mirror(&st);
        }
        self.inner.grant(None);
    }

    /// The adaptive limiter's state (none with a fixed limit).
    pub fn adaptive_stats(&self) -> Option<AdaptiveStats> {
        self.inner
            .lock()
            .adaptive
            .as_ref()
            .map(AdaptiveLimiter::stats)
    }

    /// Observes each admitted waiter's time in the queue into `histogram` (first call wins).
    pub fn observe_sojourn(&self, histogram: Histogram) {
        let _ = self.inner.sojourn_histogram.set(histogram);
    }

    /// Picks up a change of the limit source now (every arrival does this too), e.g. before
    /// reading the gauges.
    pub fn refresh(&self) {
        self.inner.follow_source();
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.inner.in_flight.load(Ordering::Relaxed)
    }

    /// The concurrency limit now.
    pub fn limit(&self) -> usize {
        self.inner.limit.load(Ordering::Relaxed)
    }

    /// The queue capacity now.
    pub fn queue_capacity(&self) -> usize {
        self.inner.queue_capacity.load(Ordering::Relaxed)
    }

    /// Requests of `priority` waiting now.
    pub fn queued(&self, priority: Priority) -> usize {
        self.inner.queued[priority.index()].load(Ordering::Relaxed)
    }

    /// Requests of `priority` shed so far for `cause`.
    pub fn shed_count(&self, priority: Priority, cause: ShedCause) -> u64 {
        self.inner.shed[priority.index()][cause.index()].load(Ordering::Relaxed)
    }

    /// Requests of `priority` shed so far, by cause label.
    pub fn shed_counts(&self, priority: Priority) -> impl Iterator<Item = (&'static str, u64)> {
        ShedCause::ALL
            .into_iter()
            .map(move |c| (c.as_str(), self.shed_count(priority, c)))
    }

    /// Picks up a change of the limit source, then admits, queues or sheds an arrival; a
    /// retry (`attempt` `Some(true)`) first draws from the retry budget, a first attempt
    /// (`Some(false)`) adds to it, `None` leaves it alone.
    pub(super) fn arrive(
        &self,
        priority: Priority,
        deadline: Option<Instant>,
        attempt: Option<bool>,
    ) -> Arrival {
        self.inner.follow_source();
        let over_budget = attempt.and_then(|retry| self.inner.spend_retry(retry).err());
        Inner::arrive(&self.inner, priority, deadline, over_budget)
    }
}

impl fmt::Debug for Admission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admission")
            .field("limit", &self.limit())
            .field("in_flight", &self.in_flight())
            .field("queue_capacity", &self.queue_capacity())
            .field("queued", &Priority::ALL.map(|p| self.queued(p)))
            .field("source", &self.inner.source)
            .finish()
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the state consistent before it can panic (the only
        // panics possible are allocation failures), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A first attempt adds to the retry budget; a retry draws from it, or is over budget
    /// (the cause returned): it may then run only in spare capacity, never wait for a slot
    /// (see [`State::decide_within`]).
    fn spend_retry(&self, retry: bool) -> Result<(), ShedCause> {
        let Some(budget) = self.retry_budget.get() else {
            return Ok(());
        };
        if !retry {
            budget.deposit();
            Ok(())
        } else if budget.withdraw() {
            Ok(())
        } else {
            Err(ShedCause::RetryBudget)
        }
    }

    fn follow_source(self: &Arc<Self>) {
        let Some(source) = &self.source else { return };
        let version = source.version();
        if version != self.applied.load(Ordering::Acquire) {
            self.applied.store(version, Ordering::Release);
            self.overridden.store(false, Ordering::Relaxed);
            self.apply(source.limits());
        }
    }

    fn apply(self: &Arc<Self>, limits: Limits) {
        let mut st = self.lock();
        st.limit = match &st.adaptive {
            Some(a) => a.limit(),
            None => limits.concurrency.max(1),
        };
        st.policy_queue = limits.queue;
        st.capacity = st.bounded_capacity();
        tracing::debug!(
            admission.limit = st.limit,
            admission.queue = st.capacity,
            "admission limits changed"
        );
        self.shed_excess(&mut st);
        self.mirror(&st);
        drop(st);
        // A higher limit admits waiters now.
        self.grant(None);
    }

    /// Admits, queues or sheds an arrival; a retry `over_budget` is admitted only into spare
    /// capacity, else shed with that cause.
    fn arrive(
        this: &Arc<Self>,
        priority: Priority,
        deadline: Option<Instant>,
        over_budget: Option<ShedCause>,
    ) -> Arrival {
        let now = Instant::now();
        let mut st = this.lock();
        match st.decide_within(priority, deadline, now, over_budget) {
            Decision::Shed(cause) => return this.shed_arrival(&st, priority, cause),
            Decision::Admit => {
                st.admit(priority);
                this.mirror(&st);
                return Arrival::Admitted(Permit::new(Arc::clone(this), now, priority));
            }
            Decision::Queue { evict: Some(p) } => {
                if let Some(w) = st.queues[p].pop_back() {
                    this.shed_waiter(w, Priority::ALL[p], ShedCause::QueueFull);
                }
            }
            Decision::Queue { evict: None } => {}
        }
        let (tx, rx) = oneshot::channel();
        let id = st.next_id;
        st.next_id += 1;
        st.queues[priority.index()].push_back(Waiter {
            id,
            tx,
            deadline,
            enqueued: now,
        });
        this.mirror(&st);
        let guard = QueueGuard {
            inner: Arc::clone(this),
            id,
            priority,
            armed: true,
        };
        Arrival::Queued(rx, guard)
    }

    /// Hands free slots to the best waiters: highest priority first, FIFO within one.
    /// `released` is a slot given back by a finished request (still counted in flight).
    fn grant(self: &Arc<Self>, released: Option<(Instant, Priority)>) {
        let now = Instant::now();
        let mut st = self.lock();
        if let Some((started, priority)) = released {
            let latency = now.saturating_duration_since(started);
            st.record(latency);
            st.release(priority);
            if let Some(a) = st.adaptive.as_mut()
                && a.on_sample(started, now, latency)
            {
                st.limit = a.limit();
                // The queue bound follows the limit; a lower one sheds the excess now
                // (those waiters would mostly time out in the queue anyway).
                st.capacity = st.bounded_capacity();
                self.shed_excess(&mut st);
            }
        }
        while let Some(p) = st.highest_admissible() {
            let Some(w) = st.queues[p].pop_front() else {
                break;
            };
            let priority = Priority::ALL[p];
            if w.deadline.is_some_and(|d| d <= now) {
                self.shed_waiter(w, priority, ShedCause::DeadlineExpiredInQueue);
                continue;
            }
            let sojourn = now.saturating_duration_since(w.enqueued);
            if let Some(h) = self.sojourn_histogram.get() {
                h.observe(sojourn.as_secs_f64());
            }
            if st.standing_queue(sojourn, now) {
                self.shed_over_target(&mut st, now);
            }
            st.admit(priority);
            if let Err(Ok(mut permit)) = w.tx.send(Ok(Permit::new(Arc::clone(self), now, priority)))
            {
                // The waiter is gone: take the slot back here, under the lock.
                permit.disarm();
                st.release(priority);
            }
        }
        if st.queued_total() == 0 {
            // CoDel leaves its dropping state when the queue empties.
            st.above_target_since = None;
        }
        self.mirror(&st);
    }

    /// A smaller queue sheds from the lowest priority, newest first, down to its capacity
    /// (cause `queue_full`).
    fn shed_excess(&self, st: &mut State) {
        while st.queued_total() > st.capacity {
            let Some(p) = st.lowest_nonempty(Priority::Critical.index() + 1) else {
                break;
            };
            if let Some(w) = st.queues[p].pop_back() {
                self.shed_waiter(w, Priority::ALL[p], ShedCause::QueueFull);
            }
        }
    }

    /// A standing queue: sheds the `default` and `low` waiters that waited past the target
    /// (`critical` ones wait for their deadline).
    fn shed_over_target(&self, st: &mut State, now: Instant) {
        let Some(SojournTarget { target, .. }) = st.sojourn else {
            return;
        };
        for p in [Priority::Low, Priority::Default] {
            let queue = &mut st.queues[p.index()];
            // FIFO: the oldest are at the front.
            while queue
                .front()
                .is_some_and(|w| now.saturating_duration_since(w.enqueued) > target)
            {
                if let Some(w) = queue.pop_front() {
                    self.shed_waiter(w, p, ShedCause::SojournTarget);
                }
            }
        }
    }

    fn shed_waiter(&self, waiter: Waiter, priority: Priority, cause: ShedCause) {
        self.count_shed(priority, cause);
        // A waiter that is gone needs no answer.
        let _ = waiter.tx.send(Err(cause));
    }

    fn shed_arrival(&self, st: &State, priority: Priority, cause: ShedCause) -> Arrival {
        self.count_shed(priority, cause);
        Arrival::Shed(Shed::new(cause, priority, st.retry_after()))
    }

    fn count_shed(&self, priority: Priority, cause: ShedCause) {
        self.shed[priority.index()][cause.index()].fetch_add(1, Ordering::Relaxed);
    }

    fn mirror(&self, st: &State) {
        self.in_flight.store(st.in_flight, Ordering::Relaxed);
        self.limit.store(st.limit, Ordering::Relaxed);
        self.queue_capacity.store(st.capacity, Ordering::Relaxed);
        for (gauge, queue) in self.queued.iter().zip(&st.queues) {
            gauge.store(queue.len(), Ordering::Relaxed);
        }
    }

    /// The retry advice for a request shed now.
    pub(super) fn retry_after(&self) -> Duration {
        self.lock().retry_after()
    }
}

/// What an arrival would get now.
enum Decision {
    Admit,
    /// Wait, after evicting the newest waiter of queue `evict` to make room.
    Queue {
        evict: Option<usize>,
    },
    Shed(ShedCause),
}

impl State {
    /// The decision for an arrival now, where a retry `over_budget` runs only in a slot free
    /// even for `low` work (spare capacity, not the share kept for `critical`), else is shed
    /// with that cause (changes nothing).
    fn decide_within(
        &self,
        priority: Priority,
        deadline: Option<Instant>,
        now: Instant,
        over_budget: Option<ShedCause>,
    ) -> Decision {
        match over_budget {
            None => self.decide(priority, deadline, now),
            Some(cause) => match self.decide(Priority::Low, deadline, now) {
                Decision::Admit => Decision::Admit,
                _ => Decision::Shed(cause),
            },
        }
    }

    /// The decision for an arrival of `priority` with `deadline` at `now` (changes nothing).
    fn decide(&self, priority: Priority, deadline: Option<Instant>, now: Instant) -> Decision {
        if deadline.is_some_and(|d| d <= now) {
            return Decision::Shed(ShedCause::DeadlineUnmeetable);
        }
        if self.can_admit(priority) {
            return Decision::Admit;
        }
        // Everyone of at least this priority is ahead of it.
        let ahead: usize = self.queues[priority.index()..]
            .iter()
            .map(VecDeque::len)
            .sum();
        if let Some(deadline) = deadline
            && now + self.expected_wait(ahead + 1) > deadline
        {
            return Decision::Shed(ShedCause::DeadlineUnmeetable);
        }
        if self.queued_total() < self.capacity {
            return Decision::Queue { evict: None };
        }
        // Make room by shedding the newest waiter of the lowest priority below this one; an
        // arrival that is itself the lowest is shed.
        match self.lowest_nonempty(priority.index()) {
            Some(p) if self.capacity > 0 => Decision::Queue { evict: Some(p) },
            _ => Decision::Shed(ShedCause::QueueFull),
        }
    }

    /// The queue capacity for the policy's queue and the limit now (see
    /// [`AdaptiveLimiter::queue_bound`]).
    fn bounded_capacity(&self) -> usize {
        self.adaptive
            .as_ref()
            .map_or(self.policy_queue, |a| a.queue_bound(self.policy_queue))
    }

    fn queued_total(&self) -> usize {
        self.queues.iter().map(VecDeque::len).sum()
    }

    /// The lowest non-empty queue strictly below index `below`.
    fn lowest_nonempty(&self, below: usize) -> Option<usize> {
        (0..below).find(|&p| !self.queues[p].is_empty())
    }

    /// The highest non-empty queue whose head may be admitted now.
    fn highest_admissible(&self) -> Option<usize> {
        (0..self.queues.len())
            .rev()
            .find(|&p| !self.queues[p].is_empty() && self.can_admit(Priority::ALL[p]))
    }

    /// Whether a request of `priority` may start now: under the limit, and `default` and
    /// `low` under their part of it (the critical share is kept free for `critical`).
    fn can_admit(&self, priority: Priority) -> bool {
        if self.in_flight >= self.limit {
            return false;
        }
        if priority == Priority::Critical {
            return true;
        }
        // floor(limit × share) < limit since share < 1: the rest is at least one slot.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let reserved = (self.limit as f64 * self.critical_share).floor() as usize;
        let others = self.in_flight - self.in_flight_by[Priority::Critical.index()];
        others < self.limit - reserved.min(self.limit - 1)
    }

    fn admit(&mut self, priority: Priority) {
        self.in_flight += 1;
        self.in_flight_by[priority.index()] += 1;
        if let Some(a) = self.adaptive.as_mut() {
            a.on_admit(self.in_flight);
        }
    }

    fn release(&mut self, priority: Priority) {
        self.in_flight -= 1;
        self.in_flight_by[priority.index()] -= 1;
    }

    /// CoDel's test on a waiter leaving the queue after `sojourn`: true once every waiter
    /// leaving it for the whole interval waited more than the target.
    fn standing_queue(&mut self, sojourn: Duration, now: Instant) -> bool {
        let Some(SojournTarget { target, interval }) = self.sojourn else {
            return false;
        };
        if sojourn <= target {
            self.above_target_since = None;
            return false;
        }
        match self.above_target_since {
            None => {
                self.above_target_since = Some(now);
                false
            }
            Some(since) => now.saturating_duration_since(since) >= interval,
        }
    }

    fn record(&mut self, sample: Duration) {
        self.ewma = Some(match self.ewma {
            None => sample,
            Some(avg) => avg.mul_f64(1.0 - EWMA_ALPHA) + sample.mul_f64(EWMA_ALPHA),
        });
    }

    /// Time until `releases` slots have freed up, at the recent pace (zero without history).
    fn expected_wait(&self, releases: usize) -> Duration {
        match self.ewma {
            None => Duration::ZERO,
            Some(avg) => avg.mul_f64(releases as f64 / self.limit as f64),
        }
    }

    /// The expected time for everything queued and in flight to drain, in whole seconds
    /// within 1..=30.
    fn retry_after(&self) -> Duration {
        let wait = self.expected_wait(self.in_flight + self.queued_total());
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        Duration::from_secs(secs).clamp(MIN_RETRY, MAX_RETRY)
    }
}

impl Permit {
    fn new(inner: Arc<Inner>, started: Instant, priority: Priority) -> Self {
        Permit {
            inner: Some(inner),
            started,
            priority,
        }
    }

    fn disarm(&mut self) {
        self.inner = None;
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            inner.grant(Some((self.started, self.priority)));
        }
    }
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("started", &self.started)
            .finish()
    }
}

impl QueueGuard {
    /// The request was answered (admitted or shed): it is no longer in the queue.
    pub(super) fn disarm(&mut self) {
        self.armed = false;
    }

    /// The deadline passed while waiting: leave the queue, counted as shed. Returns false
    /// when the request had already been answered (the answer is in its channel).
    pub(super) fn expire(&mut self) -> bool {
        if !std::mem::replace(&mut self.armed, false) {
            return false;
        }
        let mut st = self.inner.lock();
        let queue = &mut st.queues[self.priority.index()];
        let Some(at) = queue.iter().position(|w| w.id == self.id) else {
            return false;
        };
        queue.remove(at);
        self.inner
            .count_shed(self.priority, ShedCause::DeadlineExpiredInQueue);
        self.inner.mirror(&st);
        true
    }

    /// The refusal of this request for `cause`, counted in the metrics when `count` (a shed
    /// told through the channel was counted by whoever shed it).
    pub(super) fn shed(&self, cause: ShedCause, count: bool) -> Shed {
        if count {
            self.inner.count_shed(self.priority, cause);
        }
        Shed::new(cause, self.priority, self.inner.retry_after())
    }
}

impl Drop for QueueGuard {
    fn drop(&mut self) {
        // Cancelled while waiting: leave the queue (not a shed).
        if self.armed {
            let mut st = self.inner.lock();
            let queue = &mut st.queues[self.priority.index()];
            if let Some(at) = queue.iter().position(|w| w.id == self.id) {
                queue.remove(at);
                self.inner.mirror(&st);
            }
        }
    }
}

impl fmt::Debug for QueueGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueGuard")
            .field("id", &self.id)
            .field("priority", &self.priority)
            .finish()
    }
}
