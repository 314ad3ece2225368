//! The shared admission state: limit, in-flight count, the three priority queues, metrics.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::error::{Shed, ShedCause};
use super::request::Priority;
use super::{LimitSource, Limits};

/// Weight of the newest sample in the moving average of service times.
const EWMA_ALPHA: f64 = 0.2;
/// Retry-After advice bounds.
const MIN_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(30);

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
    shed: [[AtomicU64; 3]; 3],
}

struct Waiter {
    id: u64,
    tx: oneshot::Sender<Outcome>,
    deadline: Option<Instant>,
}

struct State {
    limit: usize,
    capacity: usize,
    in_flight: usize,
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
        Self::build(limits, None)
    }

    /// Admission control whose limits follow `source` (checked on every arrival; cheap).
    pub fn with_source(source: impl LimitSource) -> Self {
        let limits = source.limits();
        let version = source.version();
        let admission = Self::build(limits, Some(Box::new(source)));
        admission.inner.applied.store(version, Ordering::Relaxed);
        admission
    }

    /// Admission control following the active peak window's `concurrency` and `queue`.
    pub fn new(policy: &crate::policy::Policy) -> Self {
        Self::with_source(policy.clone())
    }

    fn build(limits: Limits, source: Option<Box<dyn LimitSource>>) -> Self {
        let inner = Inner {
            state: Mutex::new(State {
                limit: limits.concurrency.max(1),
                capacity: limits.queue,
                in_flight: 0,
                queues: Default::default(),
                next_id: 0,
                ewma: None,
            }),
            source,
            applied: AtomicU64::new(u64::MAX),
            overridden: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            limit: AtomicUsize::new(limits.concurrency.max(1)),
            queue_capacity: AtomicUsize::new(limits.queue),
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
    /// again at its next change.
    pub fn set_limits(&self, concurrency: usize, queue: usize) {
        self.inner.overridden.store(true, Ordering::Relaxed);
        self.inner.apply(Limits { concurrency, queue });
    }

    /// Picks up a change of the limit source now (every arrival does this too), e.g. before
    /// reading the gauges.
    pub fn refresh(&self) {
        self.inner.follow_source();
    }

    /// The middleware admitting requests through this controller.
    pub fn layer(&self) -> super::AdmissionLayer {
        super::AdmissionLayer::new(self.clone())
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

    /// Picks up a change of the limit source, then admits, queues or sheds an arrival.
    pub(super) fn arrive(&self, priority: Priority, deadline: Option<Instant>) -> Arrival {
        self.inner.follow_source();
        Inner::arrive(&self.inner, priority, deadline)
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
        st.limit = limits.concurrency.max(1);
        st.capacity = limits.queue;
        tracing::debug!(
            admission.limit = st.limit,
            admission.queue = st.capacity,
            "admission limits changed"
        );
        // A smaller queue sheds from the lowest priority, newest first.
        while st.queued_total() > st.capacity {
            let Some(p) = st.lowest_nonempty(Priority::Critical.index() + 1) else {
                break;
            };
            if let Some(w) = st.queues[p].pop_back() {
                self.shed_waiter(w, Priority::ALL[p], ShedCause::QueueFull);
            }
        }
        self.mirror(&st);
        drop(st);
        // A higher limit admits waiters now.
        self.grant(None);
    }

    fn arrive(this: &Arc<Self>, priority: Priority, deadline: Option<Instant>) -> Arrival {
        let now = Instant::now();
        let mut st = this.lock();
        if deadline.is_some_and(|d| d <= now) {
            return this.shed_arrival(&st, priority, ShedCause::DeadlineUnmeetable);
        }
        if st.in_flight < st.limit {
            st.in_flight += 1;
            this.mirror(&st);
            return Arrival::Admitted(Permit::new(Arc::clone(this), now));
        }
        // Everyone of at least this priority is ahead of it.
        let ahead: usize = st.queues[priority.index()..]
            .iter()
            .map(VecDeque::len)
            .sum();
        if let Some(deadline) = deadline
            && now + st.expected_wait(ahead + 1) > deadline
        {
            return this.shed_arrival(&st, priority, ShedCause::DeadlineUnmeetable);
        }
        if st.queued_total() >= st.capacity {
            // Make room by shedding the newest waiter of the lowest priority below this one;
            // an arrival that is itself the lowest is shed.
            match st.lowest_nonempty(priority.index()) {
                Some(p) if st.capacity > 0 => {
                    if let Some(w) = st.queues[p].pop_back() {
                        this.shed_waiter(w, Priority::ALL[p], ShedCause::QueueFull);
                    }
                }
                _ => return this.shed_arrival(&st, priority, ShedCause::QueueFull),
            }
        }
        let (tx, rx) = oneshot::channel();
        let id = st.next_id;
        st.next_id += 1;
        st.queues[priority.index()].push_back(Waiter { id, tx, deadline });
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
    fn grant(self: &Arc<Self>, released: Option<Instant>) {
        let now = Instant::now();
        let mut st = self.lock();
        if let Some(started) = released {
            st.record(now.saturating_duration_since(started));
            st.in_flight -= 1;
        }
        while st.in_flight < st.limit {
            let Some(p) = st.highest_nonempty() else {
                break;
            };
            let Some(w) = st.queues[p].pop_front() else {
                break;
            };
            if w.deadline.is_some_and(|d| d <= now) {
                self.shed_waiter(w, Priority::ALL[p], ShedCause::DeadlineExpiredInQueue);
                continue;
            }
            st.in_flight += 1;
            if let Err(Ok(mut permit)) = w.tx.send(Ok(Permit::new(Arc::clone(self), now))) {
                // The waiter is gone: take the slot back here, under the lock.
                permit.disarm();
                st.in_flight -= 1;
            }
        }
        self.mirror(&st);
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

impl State {
    fn queued_total(&self) -> usize {
        self.queues.iter().map(VecDeque::len).sum()
    }

    /// The lowest non-empty queue strictly below index `below`.
    fn lowest_nonempty(&self, below: usize) -> Option<usize> {
        (0..below).find(|&p| !self.queues[p].is_empty())
    }

    fn highest_nonempty(&self) -> Option<usize> {
        (0..self.queues.len())
            .rev()
            .find(|&p| !self.queues[p].is_empty())
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
    fn new(inner: Arc<Inner>, started: Instant) -> Self {
        Permit {
            inner: Some(inner),
            started,
        }
    }

    fn disarm(&mut self) {
        self.inner = None;
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            inner.grant(Some(self.started));
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
