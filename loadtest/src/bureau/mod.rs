//! A credit-bureau simulator: the external dependency the gateway consults, with finite
//! capacity, so overload is tested against something that saturates like a real service.
//!
//! It serves the wire contract of `bureau-contract.md` (`GET /v1/score/{user_id}`,
//! `GET /healthz`) plus `GET /stats` and `PUT /admin/service`. Answers are a pure function of
//! the user id ([`answer_for`]); only latency jitter and injected errors are random, from a
//! seeded RNG.
//!
//! # The queueing model
//! [`BureauOptions::slots`] requests are in service at once; the rest wait in FIFO order
//! (tokio's [`Semaphore`] is fair), so once offered concurrency exceeds the slots, latency
//! grows with the queue as it does in front of a saturated dependency. A request's service
//! time is drawn when it takes a slot: the *current* base service time (changeable at run
//! time, [`Bureau::set_service_ms`]) plus a [`Jitter`] sample; it holds the slot for that long
//! whatever the answer (an injected error costs its slot too). A caller that gives up does
//! not free the slot: over HTTP, the work runs in its own task and finishes anyway (counted as
//! `abandoned`), as a real server that cannot see its client leave would.
//! With [`BureauOptions::max_queue`] set, a request that would make the queue longer is
//! refused at once with `503 {"error":"overloaded"}`.
//!
//! # Layout
//! - `answer`: deterministic answers per user id.
//! - `server`: the HTTP server ([`serve`], [`start`] for in-process use).
//! - [`timeline`]: a scenario's changes and once-a-second samples while a run goes.
//!
//! # Example
//! ```no_run
//! # async fn demo() -> Result<(), loadtest::Error> {
//! use loadtest::bureau::{BureauOptions, start};
//! let sim = start(&BureauOptions { slots: 4, service_ms: 20, ..Default::default() }).await?;
//! println!("bureau on {}", sim.base_url());
//! sim.bureau.set_service_ms(400)?; // a slowdown, mid-run
//! println!("{:?}", sim.bureau.stats());
//! sim.shutdown().await;
//! # Ok(()) }
//! ```

mod answer;
mod server;
pub mod timeline;

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, oneshot};

pub use answer::{ScoreAnswer, answer_for, valid_user_id};
pub use server::{RunningBureau, serve, start, start_on};
pub use timeline::{BureauChange, BureauSample};

use crate::Error;

/// The largest base service time accepted (ten minutes): beyond it a typo, not a slowdown.
pub const MAX_SERVICE_MS: u64 = 600_000;
/// The most service slots accepted.
pub const MAX_SLOTS: usize = 100_000;

/// Random time added to the base service time of each request.
///
/// Written `none`, `exp:MEAN` (exponential with mean MEAN ms: a long right tail, as real
/// services have) or `uniform:LO-HI` (uniform between LO and HI ms). Values are milliseconds,
/// fractions allowed.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Jitter {
    /// No jitter: every request takes exactly the base service time.
    #[default]
    None,
    /// Exponential, mean `mean_ms`.
    Exp {
        /// Mean, ms.
        mean_ms: f64,
    },
    /// Uniform in `[lo_ms, hi_ms]`.
    Uniform {
        /// Smallest, ms.
        lo_ms: f64,
        /// Largest, ms.
        hi_ms: f64,
    },
}

/// Longest jitter parameter accepted, ms.
const MAX_JITTER_MS: f64 = 600_000.0;

impl FromStr for Jitter {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ms = |v: &str| -> Result<f64, String> {
            let x: f64 = v
                .trim()
                .parse()
                .map_err(|_| format!("jitter {s:?}: {v:?} is not a number of ms"))?;
            if x.is_finite() && (0.0..=MAX_JITTER_MS).contains(&x) {
                Ok(x)
            } else {
                Err(format!(
                    "jitter {s:?}: {v} must be within 0..={MAX_JITTER_MS} ms"
                ))
            }
        };
        let s_trim = s.trim();
        if s_trim == "none" {
            return Ok(Jitter::None);
        }
        if let Some(mean) = s_trim.strip_prefix("exp:") {
            return Ok(Jitter::Exp { mean_ms: ms(mean)? });
        }
        if let Some(range) = s_trim.strip_prefix("uniform:") {
            let (lo, hi) = range
                .split_once('-')
                .ok_or_else(|| format!("jitter {s:?}: write uniform:LO-HI"))?;
            let (lo_ms, hi_ms) = (ms(lo)?, ms(hi)?);
            if lo_ms > hi_ms {
                return Err(format!("jitter {s:?}: LO must not exceed HI"));
            }
            return Ok(Jitter::Uniform { lo_ms, hi_ms });
        }
        Err(format!(
            "jitter {s:?}: expected none, exp:MEAN or uniform:LO-HI (milliseconds)"
        ))
    }
}

impl fmt::Display for Jitter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Jitter::None => f.write_str("none"),
            Jitter::Exp { mean_ms } => write!(f, "exp:{mean_ms}"),
            Jitter::Uniform { lo_ms, hi_ms } => write!(f, "uniform:{lo_ms}-{hi_ms}"),
        }
    }
}

impl TryFrom<String> for Jitter {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Jitter> for String {
    fn from(j: Jitter) -> Self {
        j.to_string()
    }
}

impl Jitter {
    /// One sample.
    fn sample(&self, rng: &mut StdRng) -> Duration {
        let ms = match *self {
            Jitter::None => 0.0,
            // Inverse CDF; `1 - u` is in (0, 1], so the logarithm is finite.
            Jitter::Exp { mean_ms } => -mean_ms * (1.0 - rng.random::<f64>()).ln(),
            Jitter::Uniform { lo_ms, hi_ms } => lo_ms + (hi_ms - lo_ms) * rng.random::<f64>(),
        };
        Duration::from_secs_f64(ms.max(0.0) / 1_000.0)
    }
}

/// How the simulator behaves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BureauOptions {
    /// Requests in service at once (1..=[`MAX_SLOTS`]).
    pub slots: usize,
    /// Base service time, ms (0..=[`MAX_SERVICE_MS`]); changeable at run time.
    pub service_ms: u64,
    /// Added to the base service time of each request.
    pub jitter: Jitter,
    /// Probability (0..=1) that a request is answered `500 {"error":"injected"}` after its
    /// service time; changeable at run time.
    pub error_rate: f64,
    /// Longest FIFO queue; a request beyond it gets `503 overloaded` at once. `None`: unbounded.
    pub max_queue: Option<usize>,
    /// Seed of the RNG that draws jitter and injected errors.
    pub seed: u64,
}

impl Default for BureauOptions {
    fn default() -> Self {
        Self {
            slots: 8,
            service_ms: 20,
            jitter: Jitter::None,
            error_rate: 0.0,
            max_queue: None,
            seed: 1,
        }
    }
}

fn check_service_ms(ms: u64) -> Result<(), Error> {
    if ms > MAX_SERVICE_MS {
        return Err(Error::Bureau(format!(
            "service_ms {ms} is above the limit of {MAX_SERVICE_MS}"
        )));
    }
    Ok(())
}

fn check_error_rate(p: f64) -> Result<(), Error> {
    if !(p.is_finite() && (0.0..=1.0).contains(&p)) {
        return Err(Error::Bureau(format!(
            "error_rate {p} must be a probability within 0..=1"
        )));
    }
    Ok(())
}

impl BureauOptions {
    /// Checks every field; the error names the field.
    pub fn validate(&self) -> Result<(), Error> {
        if !(1..=MAX_SLOTS).contains(&self.slots) {
            return Err(Error::Bureau(format!(
                "slots {} must be within 1..={MAX_SLOTS}",
                self.slots
            )));
        }
        check_service_ms(self.service_ms)?;
        check_error_rate(self.error_rate)
    }
}

/// What one request got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `200` with the user's record.
    Score(ScoreAnswer),
    /// `500 {"error":"injected"}`: an injected failure.
    Injected,
    /// `503 {"error":"overloaded"}`: the queue was full.
    Overloaded,
}

/// Counters and settings, as `GET /stats` shows them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BureauStats {
    /// Service slots.
    pub slots: usize,
    /// Current base service time, ms.
    pub service_ms: u64,
    /// Jitter added to it.
    pub jitter: Jitter,
    /// Current injected error probability.
    pub error_rate: f64,
    /// Score requests received.
    pub received: u64,
    /// Answered `200`.
    pub served: u64,
    /// Answered `500 injected`.
    pub errors: u64,
    /// Refused `503 overloaded` (queue full).
    pub overloaded: u64,
    /// Finished after their caller had gone (over HTTP only).
    pub abandoned: u64,
    /// In service now.
    pub in_service: u64,
    /// Waiting for a slot now.
    pub queued_now: u64,
    /// The longest the queue has been.
    pub max_queue: u64,
}

/// Counters. Relaxed everywhere: each is a statistic on its own, no other memory is published
/// through them, and read-modify-write operations on one atomic are totally ordered, so the
/// queue length seen by `fetch_add` is exact.
#[derive(Debug, Default)]
struct Counters {
    received: AtomicU64,
    served: AtomicU64,
    errors: AtomicU64,
    overloaded: AtomicU64,
    abandoned: AtomicU64,
    in_service: AtomicU64,
    queued: AtomicU64,
    max_queue: AtomicU64,
}

#[derive(Debug)]
struct Inner {
    slots: Semaphore,
    slot_count: usize,
    service_ms: AtomicU64,
    /// `f64::to_bits` of the error probability.
    error_rate: AtomicU64,
    jitter: Jitter,
    max_queue: Option<u64>,
    rng: Mutex<StdRng>,
    n: Counters,
}

/// The simulator's state: slots, settings that change at run time, counters. Cheap to clone
/// (one `Arc`); every clone is the same bureau.
#[derive(Debug, Clone)]
pub struct Bureau {
    inner: Arc<Inner>,
}

/// Decrements a gauge when dropped, so a caller that gives up while waiting or in service
/// leaves the gauge right.
struct Gauge<'a>(&'a AtomicU64);

impl Drop for Gauge<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Bureau {
    /// A bureau with these options (validated).
    pub fn new(opts: &BureauOptions) -> Result<Self, Error> {
        opts.validate()?;
        Ok(Self {
            inner: Arc::new(Inner {
                slots: Semaphore::new(opts.slots),
                slot_count: opts.slots,
                service_ms: AtomicU64::new(opts.service_ms),
                error_rate: AtomicU64::new(opts.error_rate.to_bits()),
                jitter: opts.jitter,
                max_queue: opts.max_queue.map(|q| u64::try_from(q).unwrap_or(u64::MAX)),
                rng: Mutex::new(StdRng::seed_from_u64(opts.seed)),
                n: Counters::default(),
            }),
        })
    }

    /// Sets the base service time for requests that take a slot from now on (requests in
    /// service keep the time they drew).
    pub fn set_service_ms(&self, ms: u64) -> Result<(), Error> {
        check_service_ms(ms)?;
        self.inner.service_ms.store(ms, Ordering::Relaxed);
        Ok(())
    }

    /// Sets the injected error probability for requests that take a slot from now on.
    pub fn set_error_rate(&self, p: f64) -> Result<(), Error> {
        check_error_rate(p)?;
        self.inner.error_rate.store(p.to_bits(), Ordering::Relaxed);
        Ok(())
    }

    /// The current base service time, ms.
    pub fn service_ms(&self) -> u64 {
        self.inner.service_ms.load(Ordering::Relaxed)
    }

    /// A snapshot of the counters and settings.
    pub fn stats(&self) -> BureauStats {
        let i = &self.inner;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        BureauStats {
            slots: i.slot_count,
            service_ms: get(&i.service_ms),
            jitter: i.jitter,
            error_rate: f64::from_bits(get(&i.error_rate)),
            received: get(&i.n.received),
            served: get(&i.n.served),
            errors: get(&i.n.errors),
            overloaded: get(&i.n.overloaded),
            abandoned: get(&i.n.abandoned),
            in_service: get(&i.n.in_service),
            queued_now: get(&i.n.queued),
            max_queue: get(&i.n.max_queue),
        }
    }

    /// Serves one request: waits for a slot (FIFO), holds it for the drawn service time, then
    /// answers. Dropping the future gives the place in the queue, or the slot, back.
    pub async fn call(&self, user_id: &str) -> Reply {
        let i = &self.inner;
        i.n.received.fetch_add(1, Ordering::Relaxed);
        // A free slot is taken at once (the fair semaphore hands released slots to waiters
        // first, so this never jumps the queue); otherwise the request joins the queue.
        let _permit = match i.slots.try_acquire() {
            Ok(permit) => permit,
            Err(_) => {
                let depth = i.n.queued.fetch_add(1, Ordering::Relaxed) + 1;
                let queued = Gauge(&i.n.queued);
                if i.max_queue.is_some_and(|max| depth > max) {
                    drop(queued);
                    i.n.overloaded.fetch_add(1, Ordering::Relaxed);
                    return Reply::Overloaded;
                }
                i.n.max_queue.fetch_max(depth, Ordering::Relaxed);
                // The semaphore lives as long as `inner` and is never closed.
                let Ok(permit) = i.slots.acquire().await else {
                    unreachable!("the bureau's slot semaphore is never closed")
                };
                drop(queued);
                permit
            }
        };
        i.n.in_service.fetch_add(1, Ordering::Relaxed);
        let _serving = Gauge(&i.n.in_service);
        let (service, fail) = {
            // Held for two draws, never across an await; a panic while drawing cannot leave
            // the RNG inconsistent, so a poisoned lock is taken as is.
            let mut rng = i.rng.lock().unwrap_or_else(PoisonError::into_inner);
            let base = Duration::from_millis(i.service_ms.load(Ordering::Relaxed));
            let p = f64::from_bits(i.error_rate.load(Ordering::Relaxed));
            let service = base + i.jitter.sample(&mut rng);
            (service, rng.random::<f64>() < p)
        };
        tokio::time::sleep(service).await;
        if fail {
            i.n.errors.fetch_add(1, Ordering::Relaxed);
            Reply::Injected
        } else {
            i.n.served.fetch_add(1, Ordering::Relaxed);
            Reply::Score(answer_for(user_id))
        }
    }

    /// [`Bureau::call`] in a task of its own: the work finishes even if this future is dropped
    /// (the caller went away), and is then counted as abandoned.
    pub async fn call_detached(&self, user_id: &str) -> Reply {
        let (tx, rx) = oneshot::channel();
        let me = self.clone();
        let id = user_id.to_owned();
        tokio::spawn(async move {
            let reply = me.call(&id).await;
            if tx.send(reply).is_err() {
                me.inner.n.abandoned.fetch_add(1, Ordering::Relaxed);
            }
        });
        // The task only ends without sending if it panicked; answer as a failure then.
        rx.await.unwrap_or(Reply::Injected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    fn opts(slots: usize, service_ms: u64) -> BureauOptions {
        BureauOptions {
            slots,
            service_ms,
            ..Default::default()
        }
    }

    #[test]
    fn jitter_parses_prints_and_names_the_problem() {
        for s in ["none", "exp:5", "uniform:2-10", "uniform:0.5-1.5"] {
            let j: Jitter = s.parse().unwrap();
            assert_eq!(j.to_string(), s);
        }
        assert_eq!(
            "exp:5".parse::<Jitter>().unwrap(),
            Jitter::Exp { mean_ms: 5.0 }
        );
        for bad in [
            "",
            "exp",
            "exp:-1",
            "exp:x",
            "uniform:5",
            "uniform:9-3",
            "gauss:3",
        ] {
            let err = bad.parse::<Jitter>().unwrap_err();
            assert!(err.contains("jitter"), "{bad}: {err}");
        }
    }

    #[test]
    fn jitter_samples_have_the_stated_mean_and_range() {
        let mut rng = StdRng::seed_from_u64(3);
        let n = 20_000;
        let exp = Jitter::Exp { mean_ms: 10.0 };
        let mean: f64 = (0..n)
            .map(|_| exp.sample(&mut rng).as_secs_f64() * 1_000.0)
            .sum::<f64>()
            / f64::from(n);
        // Standard error 10 / sqrt(20,000) = 0.07 ms.
        assert!((mean - 10.0).abs() < 0.4, "exp mean {mean}");
        let uni = Jitter::Uniform {
            lo_ms: 2.0,
            hi_ms: 4.0,
        };
        for _ in 0..1_000 {
            let ms = uni.sample(&mut rng).as_secs_f64() * 1_000.0;
            assert!((2.0..=4.0 + 1e-6).contains(&ms), "{ms}");
        }
        assert_eq!(Jitter::None.sample(&mut rng), Duration::ZERO);
    }

    #[test]
    fn invalid_options_are_refused_by_name() {
        for (o, field) in [
            (opts(0, 20), "slots"),
            (opts(2, MAX_SERVICE_MS + 1), "service_ms"),
            (
                BureauOptions {
                    error_rate: 1.5,
                    ..Default::default()
                },
                "error_rate",
            ),
            (
                BureauOptions {
                    error_rate: f64::NAN,
                    ..Default::default()
                },
                "error_rate",
            ),
        ] {
            let err = Bureau::new(&o).unwrap_err().to_string();
            assert!(err.contains(field), "{err}");
        }
        let b = Bureau::new(&opts(1, 20)).unwrap();
        assert!(b.set_service_ms(MAX_SERVICE_MS + 1).is_err());
        assert!(b.set_error_rate(-0.1).is_err());
        // A refused change changes nothing.
        assert_eq!(b.service_ms(), 20);
        assert_eq!(b.stats().error_rate, 0.0);
    }

    /// With tokio's clock paused, time only moves when every task waits on a timer, so these
    /// figures are exact.
    #[tokio::test(start_paused = true)]
    async fn requests_beyond_the_slots_wait_in_fifo_order() {
        let b = Bureau::new(&opts(2, 20)).unwrap();
        let t0 = Instant::now();
        let mut tasks = Vec::new();
        for k in 0..8 {
            let b = b.clone();
            tasks.push(tokio::spawn(async move {
                let r = b.call(&format!("u-{k:06}")).await;
                assert!(matches!(r, Reply::Score(_)));
                Instant::now() - t0
            }));
        }
        let mut done = Vec::new();
        for t in tasks {
            done.push(t.await.unwrap());
        }
        let ms: Vec<u128> = done.iter().map(Duration::as_millis).collect();
        // Two at a time, in the order they came: four rounds of 20 ms.
        assert_eq!(ms, [20, 20, 40, 40, 60, 60, 80, 80]);
        let s = b.stats();
        assert_eq!(s.max_queue, 6, "six waited while the first two were served");
        assert_eq!((s.queued_now, s.in_service, s.served), (0, 0, 8));
    }

    #[tokio::test(start_paused = true)]
    async fn requests_within_the_slots_do_not_queue() {
        let b = Bureau::new(&opts(2, 20)).unwrap();
        let t0 = Instant::now();
        let (x, y) = tokio::join!(b.call("u-1"), b.call("u-2"));
        assert!(matches!((x, y), (Reply::Score(_), Reply::Score(_))));
        assert_eq!(Instant::now() - t0, Duration::from_millis(20));
        let s = b.stats();
        assert_eq!((s.served, s.max_queue), (2, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_service_time_change_applies_to_the_next_request() {
        let b = Bureau::new(&opts(1, 20)).unwrap();
        let t0 = Instant::now();
        b.call("u-1").await;
        assert_eq!(Instant::now() - t0, Duration::from_millis(20));
        b.set_service_ms(400).unwrap();
        assert_eq!(b.stats().service_ms, 400);
        let t1 = Instant::now();
        b.call("u-1").await;
        assert_eq!(Instant::now() - t1, Duration::from_millis(400));
    }

    #[tokio::test(start_paused = true)]
    async fn injected_errors_follow_the_rate_and_the_seed() {
        let count = |seed: u64, p: f64| async move {
            let b = Bureau::new(&BureauOptions {
                slots: 1,
                service_ms: 0,
                error_rate: p,
                seed,
                ..Default::default()
            })
            .unwrap();
            let mut errors = 0u32;
            for k in 0..10_000 {
                if b.call(&format!("u-{k}")).await == Reply::Injected {
                    errors += 1;
                }
            }
            assert_eq!(u64::from(errors), b.stats().errors);
            assert_eq!(b.stats().served + b.stats().errors, 10_000);
            errors
        };
        let e = count(9, 0.2).await;
        // Binomial(10,000, 0.2): standard deviation 40.
        assert!((1_800..=2_200).contains(&e), "{e} errors of 10,000 at 0.2");
        assert_eq!(
            count(9, 0.2).await,
            e,
            "the same seed injects the same errors"
        );
        assert_eq!(count(9, 0.0).await, 0);
        assert_eq!(count(9, 1.0).await, 10_000);
    }

    #[tokio::test(start_paused = true)]
    async fn a_bounded_queue_refuses_the_overflow_at_once() {
        let b = Bureau::new(&BureauOptions {
            slots: 1,
            service_ms: 50,
            max_queue: Some(2),
            ..Default::default()
        })
        .unwrap();
        let t0 = Instant::now();
        let calls: Vec<_> = (0..5)
            .map(|k| {
                let b = b.clone();
                tokio::spawn(async move { (b.call(&format!("u-{k}")).await, Instant::now() - t0) })
            })
            .collect();
        let mut out = Vec::new();
        for c in calls {
            out.push(c.await.unwrap());
        }
        let refused: Vec<_> = out
            .iter()
            .filter(|(r, _)| *r == Reply::Overloaded)
            .collect();
        assert_eq!(refused.len(), 2, "{out:?}");
        assert!(refused.iter().all(|(_, t)| *t == Duration::ZERO));
        let s = b.stats();
        assert_eq!((s.served, s.overloaded, s.received), (3, 2, 5));
    }

    #[tokio::test(start_paused = true)]
    async fn a_caller_that_gives_up_frees_its_place_in_the_queue() {
        let b = Bureau::new(&opts(1, 100)).unwrap();
        let first = tokio::spawn({
            let b = b.clone();
            async move { b.call("u-1").await }
        });
        tokio::task::yield_now().await;
        let gave_up = tokio::time::timeout(Duration::from_millis(10), b.call("u-2")).await;
        assert!(gave_up.is_err());
        assert_eq!(b.stats().queued_now, 0);
        assert!(matches!(first.await.unwrap(), Reply::Score(_)));
        assert_eq!(b.stats().in_service, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn detached_work_finishes_after_its_caller_left() {
        let b = Bureau::new(&opts(1, 100)).unwrap();
        let gave_up = tokio::time::timeout(Duration::from_millis(10), b.call_detached("u-1")).await;
        assert!(gave_up.is_err());
        assert_eq!(b.stats().in_service, 1, "the slot is still held");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let s = b.stats();
        assert_eq!((s.served, s.abandoned, s.in_service), (1, 1, 0));
    }
}
