//! CPU pressure: how long connections wait for the CPU, and the two things the server does
//! about it: it takes new connections in only while that wait is short, and it drops, unread,
//! a new connection that waited too long for its first turn.
//!
//! # Why a gateway whose own CPU is the bottleneck needs this
//! Admission control (`crate::admission`) sees a request only once its connection has been
//! polled, read and parsed. When the process's CPU is what runs out, the queue forms before
//! that: in the runtime's queue of tasks woken and waiting for a turn, and behind it in the
//! kernel. Every connection accepted then adds work that will be served late, after its
//! client's deadline, while costing as much as one served in time; goodput falls to zero and
//! stays there (measured: BENCHMARKS.md, "CPU-bound step overload"). So the server measures
//! that queue directly and acts at the one place where the excess can cost nothing: the
//! accept. A connection not accepted waits in the kernel's listen backlog (kept short:
//! `server.listen_backlog`), and past it the kernel drops the client's `SYN` without any
//! work by this process; the client's connect retries or times out.
//!
//! # The measurement
//! Every connection's future is polled through a waker that stamps the moment it is woken
//! ([`Stamped`]). At the next poll, `now − stamp` is how long the task waited in the run
//! queue: a socket became readable, a handler finished, and the task waited that long for a
//! turn. [`Pressure::delay`] is an exponentially weighted mean of these waits (weight 1/8;
//! racy updates from several workers lose a sample now and then, which a mean does not mind).
//! While the accept gate is closed the gate's own 1 ms timer is the sample, so the signal
//! keeps moving when no connection is polled.
//!
//! # The actions
//! - **Accept gate** (`accept_delay_ms`): the server accepts a connection only while the
//!   delay is below the target, and yields after each accept so the new connection's first
//!   turn is measured before the next is taken.
//! - **Stale first turn** (`stale_delay_ms`): a connection that has not sent its first
//!   request and whose turn came after more than this is closed unread. Nothing was read, so
//!   nothing was decided; the client sees a closed connection, never a wrong answer. This is
//!   the exit from the state where everything queued is already late: it drops the oldest
//!   work instead of serving it after its deadline.
//! - **Backlog sized to a wait** (`backlog_wait_ms`, [`BacklogSizer`]): while the gate
//!   holds connections back, the listen backlog is set (`listen(2)` again on the bound
//!   socket) to what the server accepts in that time with its gate open, between
//!   [`BACKLOG_LEAST`] and `server.listen_backlog`. The gate holds excess in the backlog,
//!   and a connection there waits its length divided by the accept rate (Little's law); a
//!   fixed count is a wait that grows as the machine slows. Too long a backlog and a new
//!   connection, a user's first request, waits past its client's patience; too short and
//!   what arrives during one pause of a throttled process (up to about 40 ms:
//!   `benches/cpu-step/pauses.py`) is refused; 50 ms sits between the two. Once the gate
//!   has stayed open for [`BACKLOG_QUIET`] the backlog is `server.listen_backlog` again:
//!   without overload nothing waits there but what arrives during a pause. Off by default:
//!   measured at 10 % of a core (about 465 accepts a second), 50 ms halved the admitted p99
//!   under overload at no cost in goodput; at 20 % (about 1,100) it cost 4–20 points of
//!   goodput for no p99 gain, where the fixed 64 is already under 60 ms of accepts
//!   (BENCHMARKS.md, "CPU-bound step overload").
//!
//! Time is tokio's (`tokio::time::pause()` in tests).
//!
//! # Layout
//! - [`PressureConfig`]: the targets (zero: the action is off).
//! - [`Pressure`]: the shared signal, its gate and its metrics.
//! - [`Stamped`]: the waker that stamps when a task is woken.
//! - [`BacklogSizer`]: the listen backlog from the accept rate while the gate closes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Wake, Waker};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use tokio::time::Instant;

/// Weight of a new sample in the mean: 1 / 2^`EWMA_SHIFT`.
const EWMA_SHIFT: u32 = 3;
/// How often a closed accept gate looks again (and samples its own timer's lateness).
const GATE_TICK: Duration = Duration::from_millis(1);
/// The window over which [`BacklogSizer`] counts accepts: the backlog changes at most this
/// often.
pub const BACKLOG_WINDOW: Duration = Duration::from_millis(100);
/// How long the gate must stay open before the backlog is `server.listen_backlog` again.
pub const BACKLOG_QUIET: Duration = Duration::from_secs(1);
/// The least backlog [`BacklogSizer`] sets (or `server.listen_backlog`, if that is less): a
/// handful of connections arriving together are never refused by the kernel.
pub const BACKLOG_LEAST: u32 = 16;

/// `mean + (sample − mean) / 2^shift`, in unsigned arithmetic: an exponentially weighted
/// mean's step.
fn toward(mean: u64, sample: u64, shift: u32) -> u64 {
    if sample >= mean {
        mean + ((sample - mean) >> shift)
    } else {
        mean - ((mean - sample) >> shift)
    }
}

/// The targets of the CPU-pressure actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PressureConfig {
    /// New connections are accepted only while the mean run-queue wait is below this
    /// (zero: always).
    pub accept_delay: Duration,
    /// A connection whose first turn came after more than this, before its first request,
    /// is closed unread (zero: never).
    pub stale_delay: Duration,
    /// While the accept gate holds connections back, the listen backlog holds about this
    /// long of accepts (zero: it stays `server.listen_backlog`; see [`BacklogSizer`]).
    pub backlog_wait: Duration,
}

impl PressureConfig {
    /// Whether either action is on (else nothing needs measuring).
    pub fn acts(&self) -> bool {
        !self.accept_delay.is_zero() || !self.stale_delay.is_zero()
    }

    /// Whether the backlog is sized to a wait: it needs the accept gate, whose closing is
    /// what says the accept rate is the server's capacity rather than its arrivals.
    pub fn sizes_backlog(&self) -> bool {
        !self.accept_delay.is_zero() && !self.backlog_wait.is_zero()
    }
}

/// Pressure metrics (`gateway_cpu_*`).
#[derive(Debug, Clone, Default)]
struct Metrics {
    gate_waits: Counter,
    stale_closes: Counter,
}

/// The shared run-queue wait of the process's connections, and the actions on it.
#[derive(Debug, Clone)]
pub struct Pressure {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    cfg: PressureConfig,
    epoch: Instant,
    /// The mean wait, in nanoseconds.
    mean_ns: AtomicU64,
    /// The listen backlog in force (as the server last set it; zero: not told).
    backlog: AtomicU32,
    /// Time spent at the closed accept gate, in nanoseconds (added as each wait ends).
    gate_closed_ns: AtomicU64,
    metrics: Metrics,
}

impl Pressure {
    /// A signal with no samples yet (zero wait), its metrics registered under `gateway`.
    pub fn new(cfg: PressureConfig, registry: &mut Registry) -> Self {
        let metrics = Metrics::default();
        let r = registry.sub_registry_with_prefix("gateway");
        r.register(
            "cpu_accept_gate_waits",
            "Times the server held off accepting because connections waited too long for the CPU",
            metrics.gate_waits.clone(),
        );
        r.register(
            "cpu_stale_closes",
            "New connections closed unread because their first turn on the CPU came too late",
            metrics.stale_closes.clone(),
        );
        let pressure = Pressure {
            inner: Arc::new(Inner {
                cfg,
                epoch: Instant::now(),
                mean_ns: AtomicU64::new(0),
                backlog: AtomicU32::new(0),
                gate_closed_ns: AtomicU64::new(0),
                metrics,
            }),
        };
        r.register_collector(Box::new(WaitCollector(pressure.clone())));
        pressure
    }

    /// The targets.
    pub fn config(&self) -> PressureConfig {
        self.inner.cfg
    }

    /// The mean run-queue wait now.
    pub fn delay(&self) -> Duration {
        Duration::from_nanos(self.inner.mean_ns.load(Ordering::Relaxed))
    }

    /// Folds one observed wait into the mean.
    pub fn observe(&self, wait: Duration) {
        let sample = u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX);
        let mean = &self.inner.mean_ns;
        let old = mean.load(Ordering::Relaxed);
        mean.store(toward(old, sample, EWMA_SHIFT), Ordering::Relaxed);
    }

    /// Whether a new connection may be taken in now.
    pub fn admits_connection(&self) -> bool {
        let target = self.inner.cfg.accept_delay;
        target.is_zero() || self.delay() < target
    }

    /// Resolves once a new connection may be taken in (at once when it may): while the gate
    /// is closed, looks again every millisecond, each look's own lateness a sample.
    pub async fn accept_gate(&self) {
        if self.admits_connection() {
            return;
        }
        self.inner.metrics.gate_waits.inc();
        let closed = Instant::now();
        while !self.admits_connection() {
            let before = Instant::now();
            tokio::time::sleep(GATE_TICK).await;
            self.observe(before.elapsed().saturating_sub(GATE_TICK));
        }
        let waited = u64::try_from(closed.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.inner
            .gate_closed_ns
            .fetch_add(waited, Ordering::Relaxed);
    }

    /// Whether a connection that has not started a request, polled `wait` after it was
    /// woken, is too late to serve.
    pub fn is_stale(&self, wait: Duration) -> bool {
        let stale = self.inner.cfg.stale_delay;
        !stale.is_zero() && wait > stale
    }

    /// Counts a connection closed unread because it was stale.
    pub fn closed_stale(&self) {
        self.inner.metrics.stale_closes.inc();
    }

    /// What the accept gate has done since the start (a wait counts once it has ended).
    pub fn gate_count(&self) -> GateCount {
        GateCount {
            waits: self.inner.metrics.gate_waits.get(),
            closed: Duration::from_nanos(self.inner.gate_closed_ns.load(Ordering::Relaxed)),
        }
    }

    /// Notes the listen backlog in force (`gateway_listen_backlog`).
    pub fn set_backlog(&self, backlog: u32) {
        self.inner.backlog.store(backlog, Ordering::Relaxed);
    }

    /// A stamp for one task's wakes, timed against this signal's clock, that counts the task
    /// as woken now: a connection just accepted waits for its first turn from its accept.
    pub fn stamp(&self) -> Arc<Stamped> {
        let stamp = Stamped {
            epoch: self.inner.epoch,
            woken_ns: AtomicU64::new(0),
            waker: AtomicWaker::new(),
        };
        stamp
            .woken_ns
            .store(stamp.now_ns().saturating_add(1), Ordering::Relaxed);
        Arc::new(stamp)
    }
}

/// `gateway_cpu_run_queue_wait_seconds` and `gateway_listen_backlog`, read at scrape time.
#[derive(Debug)]
struct WaitCollector(Pressure);

impl Collector for WaitCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        crate::metrics::gauge(
            &mut encoder,
            "cpu_run_queue_wait_seconds",
            "Mean wait of a woken connection for its turn on the CPU",
            self.0.delay().as_secs_f64(),
        )?;
        crate::metrics::gauge(
            &mut encoder,
            "listen_backlog",
            "Connections the kernel may hold completed but not yet accepted, as last set",
            i64::from(self.0.inner.backlog.load(Ordering::Relaxed)),
        )
    }
}

/// What the accept gate has done since the start: the times it was found closed and the
/// time spent waiting at it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GateCount {
    /// Times the gate was found closed.
    pub waits: u64,
    /// Time spent waiting at the closed gate.
    pub closed: Duration,
}

/// The listen backlog sized to a wait: what the server accepts in `backlog_wait` while its
/// accept gate closes (see the module docs, "Backlog sized to a wait").
///
/// The accept loop calls [`BacklogSizer::accepted`] as it takes each connection in, saying
/// whether that connection was already queued when the loop asked for it. Accepts are
/// counted over windows of at least [`BACKLOG_WINDOW`]; a window in which the gate closed
/// and at least half the accepts found a connection queued gives a sample of the capacity
/// rate (connections waited for the server, not the server for them), folded into a mean
/// (weight 1/4). The rate is over the window's time with the gate open, the rate at which
/// the server drains the backlog while it takes connections in: over the whole window, a
/// window spent mostly at the gate would read as a slow server. Other windows give none:
/// arrivals below capacity, or a gate closing while the traffic is on connections already
/// open, say nothing of how fast a queue of new connections would drain, and a backlog
/// sized from them would refuse the next burst of connects. Pure: time and the gate's count
/// are passed in.
#[derive(Debug)]
pub struct BacklogSizer {
    wait: Duration,
    most: u32,
    least: u32,
    current: u32,
    window_start: Instant,
    window_gate: GateCount,
    accepts: u32,
    /// Accepts in this window that found a connection already queued.
    queued: u32,
    /// Accepts in `wait` while the gate holds connections back, in thousandths (`None`: not
    /// overloaded lately).
    held_milli: Option<u64>,
    /// When the gate was last seen closed.
    last_gated: Option<Instant>,
}

impl BacklogSizer {
    /// A sizer holding the backlog at `most` until the gate closes. `gate` is
    /// [`Pressure::gate_count`] now.
    pub fn new(wait: Duration, most: u32, now: Instant, gate: GateCount) -> Self {
        BacklogSizer {
            wait,
            most,
            least: BACKLOG_LEAST.min(most),
            current: most,
            window_start: now,
            window_gate: gate,
            accepts: 0,
            queued: 0,
            held_milli: None,
            last_gated: None,
        }
    }

    /// The backlog in force.
    pub fn backlog(&self) -> u32 {
        self.current
    }

    /// Counts one accept at `now` (`queued`: the connection was queued when the loop asked
    /// for it), `gate` being [`Pressure::gate_count`] now. At the end of a window, returns
    /// the new backlog if it changed (the caller sets it).
    pub fn accepted(&mut self, now: Instant, queued: bool, gate: GateCount) -> Option<u32> {
        self.accepts = self.accepts.saturating_add(1);
        self.queued = self.queued.saturating_add(u32::from(queued));
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed < BACKLOG_WINDOW {
            return None;
        }
        if gate.waits != self.window_gate.waits
            && u64::from(self.queued) * 2 >= u64::from(self.accepts)
        {
            self.last_gated = Some(now);
            // accepts × wait ÷ the time open, in thousandths (the time open at least a
            // tick of the gate: nearly all of a window can be one wait at the gate).
            let open = elapsed
                .saturating_sub(gate.closed.saturating_sub(self.window_gate.closed))
                .max(GATE_TICK);
            let sample = u128::from(self.accepts) * self.wait.as_nanos() * 1_000 / open.as_nanos();
            let sample = u64::try_from(sample).unwrap_or(u64::MAX);
            // A quarter of the way from the mean to the sample.
            self.held_milli = Some(self.held_milli.map_or(sample, |m| toward(m, sample, 2)));
        } else if self
            .last_gated
            .is_none_or(|at| now.saturating_duration_since(at) >= BACKLOG_QUIET)
        {
            self.held_milli = None;
        }
        self.window_start = now;
        self.window_gate = gate;
        self.accepts = 0;
        self.queued = 0;
        let target = match self.held_milli {
            None => self.most,
            // Rounded up.
            Some(milli) => u32::try_from(milli.div_ceil(1_000))
                .unwrap_or(u32::MAX)
                .clamp(self.least, self.most),
        };
        (target != self.current).then(|| {
            self.current = target;
            target
        })
    }
}

/// A waker that notes when its task is woken (the first wake since the last poll), then
/// wakes the task's real waker.
///
/// Use: at each poll, [`Stamped::polled`] with the poll's context; it returns how long ago
/// the task was woken (if it was) and the waker to poll the inner future with.
#[derive(Debug)]
pub struct Stamped {
    epoch: Instant,
    /// When the task was woken, in nanoseconds since `epoch`, plus one (zero: not woken
    /// since the last poll).
    woken_ns: AtomicU64,
    waker: AtomicWaker,
}

impl Stamped {
    fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX - 1)
    }

    /// Called at the start of each poll: registers the poll's waker as the one to wake and
    /// returns how long the task waited since its wake (`None`: not woken through this
    /// stamp, e.g. its first poll).
    pub fn polled(&self, cx: &Context<'_>) -> Option<Duration> {
        self.waker.register(cx.waker());
        match self.woken_ns.swap(0, Ordering::AcqRel) {
            0 => None,
            at => Some(Duration::from_nanos(
                self.now_ns().saturating_sub(at.saturating_sub(1)),
            )),
        }
    }

    /// The waker to poll the inner future with.
    pub fn waker(self: &Arc<Self>) -> Waker {
        Waker::from(Arc::clone(self))
    }
}

impl Wake for Stamped {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // The first wake since the last poll is the one the task waits from.
        let _ = self.woken_ns.compare_exchange(
            0,
            self.now_ns().saturating_add(1),
            Ordering::AcqRel,
            Ordering::Relaxed,
        );
        self.waker.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn pressure(accept: u32, stale: u32) -> Pressure {
        Pressure::new(
            PressureConfig {
                accept_delay: accept * MS,
                stale_delay: stale * MS,
                backlog_wait: 50 * MS,
            },
            &mut Registry::default(),
        )
    }

    /// A sizer (50 ms, at most `most`) driven by a made-up accept loop.
    struct Loop {
        sizer: BacklogSizer,
        gate: GateCount,
        now: Instant,
    }

    impl Loop {
        fn new(most: u32) -> Self {
            let now = Instant::now();
            Loop {
                sizer: BacklogSizer::new(50 * MS, most, now, GateCount::default()),
                gate: GateCount::default(),
                now,
            }
        }

        /// For `span`, one accept each `every` (its connection queued when `queued`), the
        /// gate found closed every 50 ms when `gated` (briefly: its closed time is
        /// `closed_pct` % of each interval); returns every backlog the sizer set.
        fn run(
            &mut self,
            span: Duration,
            every: Duration,
            gated: bool,
            queued: bool,
            closed_pct: u32,
        ) -> Vec<u32> {
            let (end, mut last_closing, mut set) = (self.now + span, self.now, Vec::new());
            while self.now < end {
                self.now += every;
                if gated && self.now.duration_since(last_closing) >= BACKLOG_WINDOW / 2 {
                    self.gate.waits += 1;
                    last_closing = self.now;
                }
                self.gate.closed += every * closed_pct / 100;
                set.extend(self.sizer.accepted(self.now, queued, self.gate));
            }
            set
        }

        /// [`Loop::run`] under overload (the gate closing, every connection queued) or not
        /// (the gate open, none queued).
        fn overloaded(&mut self, overloaded: bool, span: Duration, every: Duration) -> Vec<u32> {
            self.run(span, every, overloaded, overloaded, 0)
        }
    }

    const NONE: Vec<u32> = Vec::new();

    #[test]
    fn the_backlog_stays_at_its_most_while_the_gate_stays_open() {
        let mut l = Loop::new(64);
        assert_eq!(l.overloaded(false, 2 * BACKLOG_QUIET, MS), NONE);
        assert_eq!(
            l.sizer.backlog(),
            64,
            "arrivals below capacity size nothing"
        );
    }

    #[test]
    fn a_gate_closing_while_connections_arrive_slowly_sizes_nothing() {
        // The traffic on connections already open closes the gate now and then, and the few
        // new connections find the server waiting for them: their rate is not the capacity.
        let mut l = Loop::new(64);
        assert_eq!(l.run(2 * BACKLOG_QUIET, 20 * MS, true, false, 0), NONE);
        assert_eq!(l.sizer.backlog(), 64);
    }

    #[test]
    fn while_the_gate_holds_back_the_backlog_holds_the_wait_at_the_accept_rate() {
        // 500 accepts a second: 50 ms of them is 25 connections.
        let mut l = Loop::new(64);
        let set = l.overloaded(true, BACKLOG_QUIET, 2 * MS);
        assert_eq!(
            set.first(),
            Some(&25),
            "the first window's rate is taken as it is"
        );
        assert_eq!(l.sizer.backlog(), 25);
        // Twice as fast (another machine, or more of the quota): twice the connections.
        let mut fast = Loop::new(64);
        fast.overloaded(true, BACKLOG_QUIET, MS);
        assert_eq!(fast.sizer.backlog(), 50);
    }

    #[test]
    fn the_rate_is_taken_over_the_time_the_gate_was_open() {
        // 250 accepts a second over windows spent half at the closed gate: the server
        // drains the backlog at 500 a second when it takes connections in, and that is what
        // a pause's arrivals must be held against: 25 connections in 50 ms.
        let mut l = Loop::new(64);
        l.run(BACKLOG_QUIET, 4 * MS, true, true, 50);
        assert_eq!(l.sizer.backlog(), 25);
    }

    #[test]
    fn the_sized_backlog_stays_between_the_least_and_the_most() {
        let mut slow = Loop::new(64);
        slow.overloaded(true, BACKLOG_QUIET, 10 * MS);
        assert_eq!(slow.sizer.backlog(), BACKLOG_LEAST, "100/s would be 5");
        let mut fast = Loop::new(64);
        fast.overloaded(true, BACKLOG_QUIET, MS / 10);
        assert_eq!(fast.sizer.backlog(), 64, "10,000/s would be 500");
        let mut short = Loop::new(8);
        short.overloaded(true, BACKLOG_QUIET, 10 * MS);
        assert_eq!(
            short.sizer.backlog(),
            8,
            "never above server.listen_backlog"
        );
    }

    #[test]
    fn the_backlog_is_its_most_again_once_the_gate_stays_open() {
        let mut l = Loop::new(64);
        l.overloaded(true, BACKLOG_QUIET, 2 * MS);
        assert_eq!(l.sizer.backlog(), 25);
        let lull = l.overloaded(false, BACKLOG_QUIET / 2, 2 * MS);
        assert_eq!(lull, NONE, "a lull shorter than BACKLOG_QUIET keeps it");
        assert_eq!(l.overloaded(false, BACKLOG_QUIET, 2 * MS), vec![64]);
    }

    #[test]
    fn the_mean_moves_an_eighth_of_the_way_to_each_sample() {
        let p = pressure(10, 0);
        p.observe(80 * MS);
        assert_eq!(p.delay(), 10 * MS);
        p.observe(10 * MS);
        assert_eq!(p.delay(), 10 * MS);
        p.observe(Duration::ZERO);
        assert_eq!(p.delay(), Duration::from_micros(8_750));
    }

    #[test]
    fn the_gate_is_open_below_the_target_and_always_when_off() {
        let p = pressure(10, 0);
        assert!(p.admits_connection());
        for _ in 0..40 {
            p.observe(20 * MS);
        }
        assert!(!p.admits_connection());
        let off = pressure(0, 0);
        off.observe(Duration::from_secs(10));
        assert!(off.admits_connection());
    }

    #[test]
    fn stale_only_past_the_limit_and_never_when_off() {
        assert!(!pressure(10, 200).is_stale(200 * MS));
        assert!(pressure(10, 200).is_stale(201 * MS));
        assert!(!pressure(10, 0).is_stale(Duration::from_secs(60)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_closed_gate_opens_once_the_wait_falls() {
        let p = pressure(10, 0);
        for _ in 0..40 {
            p.observe(50 * MS);
        }
        assert!(!p.admits_connection());
        // With the clock paused the gate's own timer is never late: its samples are zero
        // and pull the mean under the target.
        tokio::time::timeout(Duration::from_secs(1), p.accept_gate())
            .await
            .expect("the gate opens");
        assert!(p.admits_connection());
    }

    #[tokio::test(start_paused = true)]
    async fn a_stamp_measures_from_the_wake_to_the_next_poll() {
        let p = pressure(10, 0);
        let stamp = p.stamp();
        let cx = Context::from_waker(Waker::noop());
        tokio::time::advance(2 * MS).await;
        assert_eq!(stamp.polled(&cx), Some(2 * MS), "made as woken");
        assert_eq!(stamp.polled(&cx), None, "not woken since");
        stamp.waker().wake_by_ref();
        tokio::time::advance(7 * MS).await;
        // A second wake does not move the stamp: the task waits from the first.
        stamp.waker().wake_by_ref();
        tokio::time::advance(3 * MS).await;
        assert_eq!(stamp.polled(&cx), Some(10 * MS));
        assert_eq!(stamp.polled(&cx), None, "the stamp is cleared by the poll");
    }
}
