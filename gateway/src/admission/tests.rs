use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tower::{BoxError, Layer, Service, ServiceExt};

use super::*;
use crate::admission::adaptive::AdaptiveConfig;
use crate::clock::ManualClock;
use crate::policy::PolicyConfig;
use crate::request::{Priority, RequestFacts, RouteClass};

/// An inner service that records who it served and finishes a request only when the test
/// hands out a token (or after `work` of virtual time when `work` is set).
#[derive(Clone)]
struct Backend {
    gate: Arc<Semaphore>,
    work: Option<Duration>,
    active: Arc<AtomicUsize>,
    max_active: Arc<AtomicUsize>,
    served: Arc<Mutex<Vec<&'static str>>>,
}

impl Default for Backend {
    fn default() -> Self {
        Backend {
            gate: Arc::new(Semaphore::new(0)),
            work: None,
            active: Arc::default(),
            max_active: Arc::default(),
            served: Arc::default(),
        }
    }
}

impl Backend {
    fn served(&self) -> Vec<&'static str> {
        self.served.lock().unwrap().clone()
    }

    fn finish(&self, n: usize) {
        self.gate.add_permits(n);
    }
}

impl Service<http::Request<&'static str>> for Backend {
    type Response = &'static str;
    type Error = Infallible;
    type Future = std::pin::Pin<Box<dyn Future<Output = Result<&'static str, Infallible>> + Send>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<&'static str>) -> Self::Future {
        let name = *req.body();
        self.served.lock().unwrap().push(name);
        let now = self.active.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_active.fetch_max(now, Ordering::SeqCst);
        let this = self.clone();
        Box::pin(async move {
            match this.work {
                Some(work) => tokio::time::sleep(work).await,
                None => this.gate.acquire().await.unwrap().forget(),
            }
            this.active.fetch_sub(1, Ordering::SeqCst);
            Ok(name)
        })
    }
}

type Svc = AdmissionService<Backend>;

fn setup(concurrency: usize, queue: usize) -> (Admission, Backend, Svc) {
    let admission = Admission::fixed(Limits { concurrency, queue });
    let backend = Backend::default();
    let svc = admission.layer().layer(backend.clone());
    (admission, backend, svc)
}

fn request(
    name: &'static str,
    priority: Priority,
    deadline: Option<Instant>,
) -> http::Request<&'static str> {
    let mut req = http::Request::new(name);
    req.extensions_mut().insert(RequestFacts {
        priority: Some(priority),
        deadline,
        ..RequestFacts::NONE
    });
    req
}

/// Calls the service now (admission is decided in `call`) and drives the response in a task.
async fn send(
    svc: &mut Svc,
    req: http::Request<&'static str>,
) -> JoinHandle<Result<&'static str, BoxError>> {
    let fut = svc.ready().await.unwrap().call(req);
    tokio::spawn(fut)
}

/// Lets spawned tasks run until they block.
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

fn shed_cause(result: Result<&'static str, BoxError>) -> ShedCause {
    let err = result.unwrap_err();
    err.downcast_ref::<Shed>()
        .unwrap_or_else(|| panic!("not a shed: {err}"))
        .cause()
}

#[tokio::test(start_paused = true)]
async fn the_limit_holds() {
    let (admission, backend, mut svc) = setup(3, 100);
    let mut handles = Vec::new();
    for _ in 0..20 {
        handles.push(send(&mut svc, request("r", Priority::Default, None)).await);
    }
    settle().await;
    assert_eq!(admission.in_flight(), 3);
    assert_eq!(admission.queued(Priority::Default), 17);
    for _ in 0..20 {
        backend.finish(1);
        settle().await;
        assert!(admission.in_flight() <= 3);
    }
    for h in handles {
        h.await.unwrap().unwrap();
    }
    assert_eq!(backend.max_active.load(Ordering::SeqCst), 3);
    assert_eq!(backend.served().len(), 20);
    assert_eq!(
        (admission.in_flight(), admission.queued(Priority::Default)),
        (0, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn fifo_within_a_priority_and_higher_priorities_first() {
    let (_admission, backend, mut svc) = setup(1, 10);
    let first = send(&mut svc, request("first", Priority::Critical, None)).await;
    let mut handles = vec![first];
    for (name, p) in [
        ("low1", Priority::Low),
        ("d1", Priority::Default),
        ("c1", Priority::Critical),
        ("d2", Priority::Default),
        ("low2", Priority::Low),
        ("c2", Priority::Critical),
    ] {
        handles.push(send(&mut svc, request(name, p, None)).await);
    }
    for _ in 0..handles.len() {
        settle().await;
        backend.finish(1);
    }
    for h in handles {
        h.await.unwrap().unwrap();
    }
    assert_eq!(
        backend.served(),
        ["first", "c1", "c2", "d1", "d2", "low1", "low2"]
    );
}

#[tokio::test(start_paused = true)]
async fn when_full_low_is_shed_before_critical() {
    let (admission, backend, mut svc) = setup(1, 2);
    let running = send(&mut svc, request("running", Priority::Default, None)).await;
    let low = send(&mut svc, request("low", Priority::Low, None)).await;
    let default = send(&mut svc, request("default", Priority::Default, None)).await;
    settle().await;
    // The queue is full; a critical arrival evicts the queued low.
    let critical = send(&mut svc, request("critical", Priority::Critical, None)).await;
    assert_eq!(shed_cause(low.await.unwrap()), ShedCause::QueueFull);
    assert_eq!(admission.queued(Priority::Low), 0);
    assert_eq!(admission.queued(Priority::Critical), 1);
    // A low arrival now is the lowest: shed at once.
    let late_low = send(&mut svc, request("late-low", Priority::Low, None)).await;
    assert_eq!(shed_cause(late_low.await.unwrap()), ShedCause::QueueFull);
    // A default arrival evicts nothing of higher priority and no lower one is queued: shed.
    let late_default = send(&mut svc, request("late-default", Priority::Default, None)).await;
    assert_eq!(
        shed_cause(late_default.await.unwrap()),
        ShedCause::QueueFull
    );
    backend.finish(3);
    for h in [running, critical, default] {
        h.await.unwrap().unwrap();
    }
    assert_eq!(backend.served(), ["running", "critical", "default"]);
    assert_eq!(admission.shed_count(Priority::Low, ShedCause::QueueFull), 2);
    assert_eq!(
        admission.shed_count(Priority::Default, ShedCause::QueueFull),
        1
    );
    assert_eq!(
        admission.shed_count(Priority::Critical, ShedCause::QueueFull),
        0
    );
    let counts: Vec<_> = admission.shed_counts(Priority::Low).collect();
    assert_eq!(
        counts,
        [
            ("queue_full", 2),
            ("deadline_unmeetable", 0),
            ("deadline_expired_in_queue", 0),
            ("sojourn_target", 0),
            ("retry_budget", 0)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_request_whose_deadline_cannot_be_met_is_shed_at_once() {
    let admission = Admission::fixed(Limits {
        concurrency: 1,
        queue: 10,
    });
    let backend = Backend {
        work: Some(Duration::from_millis(100)),
        ..Backend::default()
    };
    let mut svc = admission.layer().layer(backend.clone());
    // A deadline already past is shed even with a free slot.
    let past = send(
        &mut svc,
        request("past", Priority::Critical, Some(Instant::now())),
    )
    .await;
    assert_eq!(
        shed_cause(past.await.unwrap()),
        ShedCause::DeadlineUnmeetable
    );
    // Build a history: service takes 100 ms.
    send(&mut svc, request("warm", Priority::Default, None))
        .await
        .await
        .unwrap()
        .unwrap();
    // One in flight and two queued: a newcomer waits about 3 × 100 ms.
    let mut handles = Vec::new();
    for name in ["a", "b", "c"] {
        handles.push(send(&mut svc, request(name, Priority::Default, None)).await);
    }
    let hurried = Some(Instant::now() + Duration::from_millis(250));
    let tight = send(&mut svc, request("tight", Priority::Default, hurried)).await;
    let err = tight.await.unwrap().unwrap_err();
    let shed = err.downcast_ref::<Shed>().unwrap();
    assert_eq!(shed.cause(), ShedCause::DeadlineUnmeetable);
    assert!(shed.retry_after() >= Duration::from_secs(1));
    // A critical request jumps the default ones: one wait (100 ms) fits in 250 ms.
    let urgent = send(&mut svc, request("urgent", Priority::Critical, hurried)).await;
    urgent.await.unwrap().unwrap();
    for h in handles {
        h.await.unwrap().unwrap();
    }
    assert!(!backend.served().contains(&"tight"));
    assert!(!backend.served().contains(&"past"));
    assert_eq!(
        admission.shed_count(Priority::Default, ShedCause::DeadlineUnmeetable),
        1
    );
    assert_eq!(
        admission.shed_count(Priority::Critical, ShedCause::DeadlineUnmeetable),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn a_waiter_whose_deadline_passes_in_the_queue_is_shed_then() {
    let (admission, backend, mut svc) = setup(1, 10);
    let running = send(&mut svc, request("running", Priority::Default, None)).await;
    let deadline = Some(Instant::now() + Duration::from_secs(1));
    let waiting = send(&mut svc, request("waiting", Priority::Critical, deadline)).await;
    settle().await;
    assert_eq!(admission.queued(Priority::Critical), 1);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        shed_cause(waiting.await.unwrap()),
        ShedCause::DeadlineExpiredInQueue
    );
    assert_eq!(admission.queued(Priority::Critical), 0);
    assert_eq!(
        admission.shed_count(Priority::Critical, ShedCause::DeadlineExpiredInQueue),
        1
    );
    backend.finish(1);
    running.await.unwrap().unwrap();
    assert_eq!(backend.served(), ["running"]);
    assert_eq!(admission.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn permits_are_released_on_drop_and_cancel() {
    let (admission, backend, mut svc) = setup(1, 10);
    // An admitted request whose response future is dropped frees its slot.
    let admitted = svc
        .ready()
        .await
        .unwrap()
        .call(request("a", Priority::Default, None));
    assert_eq!(admission.in_flight(), 1);
    let queued = svc
        .ready()
        .await
        .unwrap()
        .call(request("b", Priority::Default, None));
    let other = svc
        .ready()
        .await
        .unwrap()
        .call(request("c", Priority::Low, None));
    assert_eq!(admission.queued(Priority::Default), 1);
    // Cancelling a queued request leaves the queue.
    drop(other);
    assert_eq!(admission.queued(Priority::Low), 0);
    drop(admitted);
    // The slot passed to the queued request.
    assert_eq!(admission.in_flight(), 1);
    assert_eq!(admission.queued(Priority::Default), 0);
    // Dropping it before it ever ran hands the slot back.
    drop(queued);
    assert_eq!(admission.in_flight(), 0);
    // A request aborted mid-flight releases too.
    let running = send(&mut svc, request("d", Priority::Default, None)).await;
    settle().await;
    assert_eq!(admission.in_flight(), 1);
    running.abort();
    settle().await;
    assert_eq!(admission.in_flight(), 0);
    // Nothing leaked: the full limit is available.
    backend.finish(1);
    send(&mut svc, request("e", Priority::Default, None))
        .await
        .await
        .unwrap()
        .unwrap();
    assert_eq!(admission.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_shed_request_never_reaches_the_inner_service() {
    let (admission, backend, mut svc) = setup(1, 0);
    let running = send(&mut svc, request("running", Priority::Low, None)).await;
    for _ in 0..5 {
        let shed = send(&mut svc, request("shed", Priority::Critical, None)).await;
        assert_eq!(shed_cause(shed.await.unwrap()), ShedCause::QueueFull);
    }
    backend.finish(1);
    running.await.unwrap().unwrap();
    assert_eq!(backend.served(), ["running"]);
    assert_eq!(
        admission.shed_count(Priority::Critical, ShedCause::QueueFull),
        5
    );
}

#[tokio::test(start_paused = true)]
async fn limits_change_at_runtime() {
    let (admission, backend, mut svc) = setup(1, 10);
    let mut handles = Vec::new();
    for name in ["a", "b", "c", "d"] {
        handles.push(send(&mut svc, request(name, Priority::Default, None)).await);
    }
    let low = send(&mut svc, request("low", Priority::Low, None)).await;
    settle().await;
    assert_eq!(admission.in_flight(), 1);
    // A higher limit admits waiters at once.
    admission.set_limits(3, 10);
    settle().await;
    assert_eq!(admission.in_flight(), 3);
    assert_eq!(admission.limit(), 3);
    assert_eq!(backend.served(), ["a", "b", "c"]);
    // A smaller queue sheds the lowest priority first.
    admission.set_limits(3, 1);
    assert_eq!(shed_cause(low.await.unwrap()), ShedCause::QueueFull);
    assert_eq!(admission.queued(Priority::Default), 1);
    // A lower limit lets in-flight requests finish and admits no one until below it.
    admission.set_limits(1, 1);
    backend.finish(1);
    settle().await;
    assert_eq!(admission.in_flight(), 2);
    backend.finish(3);
    for h in handles {
        h.await.unwrap().unwrap();
    }
    assert_eq!(backend.max_active.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn limits_follow_the_policy() {
    let config: PolicyConfig = toml::from_str(
        r#"
        [normal]
        concurrency = 8
        queue = 16
        [[windows]]
        name = "double11"
        start = "2026-11-10T23:30"
        end = "2026-11-11T02:00"
        [windows.limits]
        concurrency = 2
        queue = 4
        "#,
    )
    .unwrap();
    let clock = ManualClock::new("2026-11-10T15:00:00Z".parse().unwrap());
    let policy = Policy::new(&config, clock.shared()).unwrap();
    let admission = Admission::new(&policy);
    assert_eq!((admission.limit(), admission.queue_capacity()), (8, 16));
    let backend = Backend::default();
    let mut svc = admission.layer().layer(backend.clone());
    clock.set("2026-11-10T15:30:00Z".parse().unwrap());
    policy.evaluate();
    // The next arrival picks the window's limits up.
    let mut handles = Vec::new();
    for _ in 0..3 {
        handles.push(send(&mut svc, request("r", Priority::Critical, None)).await);
    }
    settle().await;
    assert_eq!((admission.limit(), admission.queue_capacity()), (2, 4));
    assert_eq!(admission.in_flight(), 2);
    assert_eq!(admission.queued(Priority::Critical), 1);
    // An operator override holds until the policy changes again.
    admission.set_limits(3, 4);
    settle().await;
    assert_eq!(admission.in_flight(), 3);
    backend.finish(3);
    for h in handles {
        h.await.unwrap().unwrap();
    }
    // The window ends: `refresh` applies it without waiting for an arrival.
    clock.set("2026-11-10T18:00:00Z".parse().unwrap());
    policy.evaluate();
    assert_eq!(admission.limit(), 3);
    admission.refresh();
    assert_eq!((admission.limit(), admission.queue_capacity()), (8, 16));
}

#[tokio::test(start_paused = true)]
async fn route_class_sets_the_default_priority() {
    let (admission, backend, mut svc) = setup(1, 1);
    let running = send(&mut svc, request("running", Priority::Default, None)).await;
    let mut query = http::Request::new("query");
    query.extensions_mut().insert(RequestFacts {
        class: Some(RouteClass::CreditLine),
        ..RequestFacts::NONE
    });
    let query = send(&mut svc, query).await;
    let mut drawdown = http::Request::new("drawdown");
    drawdown.extensions_mut().insert(RequestFacts {
        class: Some(RouteClass::Drawdown),
        ..RequestFacts::NONE
    });
    let drawdown = send(&mut svc, drawdown).await;
    // The drawdown (critical by its class) evicted the credit-line query (default).
    assert_eq!(shed_cause(query.await.unwrap()), ShedCause::QueueFull);
    backend.finish(2);
    running.await.unwrap().unwrap();
    drawdown.await.unwrap().unwrap();
    assert_eq!(
        admission.shed_count(Priority::Default, ShedCause::QueueFull),
        1
    );
}

fn setup_with(limits: Limits, options: AdmissionOptions) -> (Admission, Backend, Svc) {
    let admission = Admission::fixed_with(limits, options);
    let backend = Backend::default();
    let svc = admission.layer().layer(backend.clone());
    (admission, backend, svc)
}

#[tokio::test(start_paused = true)]
async fn critical_keeps_its_share_of_the_limit() {
    let options = AdmissionOptions {
        critical_share: 0.5,
        ..AdmissionOptions::default()
    };
    let (admission, backend, mut svc) = setup_with(
        Limits {
            concurrency: 4,
            queue: 10,
        },
        options,
    );
    let mut handles = Vec::new();
    for name in ["d1", "d2", "d3", "l1"] {
        let p = if name == "l1" {
            Priority::Low
        } else {
            Priority::Default
        };
        handles.push(send(&mut svc, request(name, p, None)).await);
    }
    settle().await;
    // default and low hold at most 4 - floor(4 × 0.5) = 2 slots; the other two wait.
    assert_eq!(admission.in_flight(), 2);
    assert_eq!(admission.queued(Priority::Default), 1);
    assert_eq!(admission.queued(Priority::Low), 1);
    // Critical work finds the reserved slots free.
    handles.push(send(&mut svc, request("c1", Priority::Critical, None)).await);
    handles.push(send(&mut svc, request("c2", Priority::Critical, None)).await);
    settle().await;
    assert_eq!(admission.in_flight(), 4);
    assert_eq!(backend.served(), ["d1", "d2", "c1", "c2"]);
    // A fifth is over the limit whatever its priority.
    handles.push(send(&mut svc, request("c3", Priority::Critical, None)).await);
    settle().await;
    assert_eq!(admission.queued(Priority::Critical), 1);
    // As slots free up: the critical waiter first, then default before low, and never more
    // than two non-critical at once.
    backend.finish(1);
    settle().await;
    assert_eq!(backend.served()[4], "c3");
    backend.finish(6);
    for h in handles {
        h.await.unwrap().unwrap();
    }
    assert_eq!(backend.served()[5..], ["d3", "l1"]);
    assert!(backend.max_active.load(Ordering::SeqCst) <= 4);
    assert_eq!(admission.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_standing_queue_sheds_default_and_low_past_the_sojourn_target() {
    let options = AdmissionOptions {
        sojourn: Some(SojournTarget {
            target: Duration::from_millis(10),
            interval: Duration::from_millis(50),
        }),
        ..AdmissionOptions::default()
    };
    let admission = Admission::fixed_with(
        Limits {
            concurrency: 1,
            queue: 100,
        },
        options,
    );
    // Each request takes 20 ms; 12 arrive at once: a queue that drains at 50/s.
    let backend = Backend {
        work: Some(Duration::from_millis(20)),
        ..Backend::default()
    };
    let mut svc2 = admission.layer().layer(backend.clone());
    let mut handles = Vec::new();
    for i in 0..12 {
        let (name, p) = match i % 3 {
            0 => ("critical", Priority::Critical),
            1 => ("default", Priority::Default),
            _ => ("low", Priority::Low),
        };
        handles.push((p, send(&mut svc2, request(name, p, None)).await));
    }
    let mut shed_by = [0usize; 3];
    for (p, h) in handles {
        if let Err(e) = h.await.unwrap() {
            assert_eq!(
                e.downcast_ref::<Shed>().unwrap().cause(),
                ShedCause::SojournTarget
            );
            shed_by[p.index()] += 1;
        }
    }
    // Critical is never shed for sojourn; the others are, once the standing queue lasts.
    assert_eq!(shed_by[Priority::Critical.index()], 0);
    assert!(shed_by[Priority::Low.index()] + shed_by[Priority::Default.index()] > 0);
    assert_eq!(
        admission.shed_count(Priority::Low, ShedCause::SojournTarget)
            + admission.shed_count(Priority::Default, ShedCause::SojournTarget),
        (shed_by[0] + shed_by[1]) as u64
    );
    // Every critical request was served.
    let served = backend.served();
    assert_eq!(served.iter().filter(|n| **n == "critical").count(), 4);
    assert_eq!(admission.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn retries_draw_from_the_budget_and_beyond_it_never_wait() {
    let options = AdmissionOptions {
        retry_budget: Some(RetryBudgetConfig {
            ttl: Duration::from_secs(1),
            min_per_sec: 0,
            ratio: 0.1,
        }),
        ..AdmissionOptions::default()
    };
    let (admission, backend, mut svc) = setup_with(
        Limits {
            concurrency: 1,
            queue: 10,
        },
        options,
    );
    // A free slot: a retry beyond the budget (none deposited yet) runs in it.
    admission.precheck(Priority::Critical, None, true).unwrap();
    assert_eq!(
        admission.shed_count(Priority::Critical, ShedCause::RetryBudget),
        0
    );
    // The slot taken: a retry beyond the budget would wait, so it is shed.
    let running = send(&mut svc, request("running", Priority::Default, None)).await;
    settle().await;
    assert_eq!(admission.in_flight(), 1);
    let e = admission
        .precheck(Priority::Critical, None, true)
        .unwrap_err();
    assert_eq!(e.cause(), ShedCause::RetryBudget);
    // 20 first attempts allow 2 retries (10 %), not 3: those may wait like first attempts.
    for _ in 0..20 {
        admission.precheck(Priority::Critical, None, false).unwrap();
    }
    admission.precheck(Priority::Critical, None, true).unwrap();
    admission.precheck(Priority::Default, None, true).unwrap();
    let e = admission.precheck(Priority::Low, None, true).unwrap_err();
    assert_eq!(e.cause(), ShedCause::RetryBudget);
    assert!(e.retry_after() >= Duration::from_secs(1));
    assert_eq!(
        admission.shed_count(Priority::Critical, ShedCause::RetryBudget),
        1
    );
    assert_eq!(
        admission.shed_count(Priority::Low, ShedCause::RetryBudget),
        1
    );
    // Deposits expire with the window: later, retries are refused again.
    tokio::time::advance(Duration::from_secs(2)).await;
    let e = admission
        .precheck(Priority::Critical, None, true)
        .unwrap_err();
    assert_eq!(e.cause(), ShedCause::RetryBudget);

    // Through the service: the facts' `retry_attempt` marks a retry.
    let retry = |name| {
        let mut req = http::Request::new(name);
        req.extensions_mut().insert(RequestFacts {
            priority: Some(Priority::Critical),
            retry_attempt: Some(1),
            ..RequestFacts::NONE
        });
        req
    };
    let shed = send(&mut svc, retry("shed")).await;
    assert_eq!(shed_cause(shed.await.unwrap()), ShedCause::RetryBudget);
    assert_eq!(admission.queued(Priority::Critical), 0, "it never waited");
    backend.finish(1);
    running.await.unwrap().unwrap();
    // The slot free again: the same retry, still beyond the budget, is served.
    let served = send(&mut svc, retry("free")).await;
    backend.finish(1);
    served.await.unwrap().unwrap();
    assert_eq!(backend.served(), ["running", "free"]);
}

#[tokio::test(start_paused = true)]
async fn a_retry_beyond_the_budget_never_takes_the_share_kept_for_critical() {
    let options = AdmissionOptions {
        critical_share: 0.5,
        retry_budget: Some(RetryBudgetConfig {
            ttl: Duration::from_secs(1),
            min_per_sec: 0,
            ratio: 0.0,
        }),
        ..AdmissionOptions::default()
    };
    let (admission, backend, mut svc) = setup_with(
        Limits {
            concurrency: 2,
            queue: 4,
        },
        options,
    );
    // One slot of two taken by `default` work: the other is kept for `critical`.
    let running = send(&mut svc, request("running", Priority::Default, None)).await;
    settle().await;
    admission.precheck(Priority::Critical, None, false).unwrap();
    let e = admission
        .precheck(Priority::Critical, None, true)
        .unwrap_err();
    assert_eq!(e.cause(), ShedCause::RetryBudget);
    backend.finish(1);
    running.await.unwrap().unwrap();
    // Both free: spare capacity, the retry runs.
    admission.precheck(Priority::Critical, None, true).unwrap();
}

#[tokio::test(start_paused = true)]
async fn precheck_sheds_what_arrival_would_and_changes_nothing_else() {
    let (admission, backend, mut svc) = setup(1, 1);
    // Free slot: let through, nothing taken.
    admission.precheck(Priority::Low, None, false).unwrap();
    assert_eq!(admission.in_flight(), 0);
    let running = send(&mut svc, request("running", Priority::Default, None)).await;
    let queued = send(&mut svc, request("queued", Priority::Default, None)).await;
    settle().await;
    // Full: low and default are refused before any work; critical could evict.
    let e = admission.precheck(Priority::Low, None, false).unwrap_err();
    assert_eq!(e.cause(), ShedCause::QueueFull);
    admission.precheck(Priority::Critical, None, false).unwrap();
    let past = Some(Instant::now());
    let e = admission
        .precheck(Priority::Critical, past, false)
        .unwrap_err();
    assert_eq!(e.cause(), ShedCause::DeadlineUnmeetable);
    assert_eq!(admission.queued(Priority::Default), 1);
    assert_eq!(admission.in_flight(), 1);
    backend.finish(2);
    running.await.unwrap().unwrap();
    queued.await.unwrap().unwrap();
    assert_eq!(admission.shed_count(Priority::Low, ShedCause::QueueFull), 1);
}

#[tokio::test(start_paused = true)]
async fn the_adaptive_limit_follows_the_latency_of_admitted_work() {
    let options = AdmissionOptions {
        adaptive: Some(AdaptiveConfig {
            min_limit: 2,
            max_limit: 64,
            initial_limit: 8,
            min_rtt_limit: 2,
            min_rtt_interval: Duration::from_secs(3600),
            // The policy's queue: this test is about the limit (a shed client would spin).
            queue_per_limit: None,
            ..AdaptiveConfig::default()
        }),
        ..AdmissionOptions::default()
    };
    let admission = Admission::fixed_with(
        Limits {
            concurrency: 1000,
            queue: 1000,
        },
        options,
    );
    // Pinned while the no-load latency is measured; the policy's concurrency is ignored.
    assert_eq!(admission.limit(), 2);
    // A backend with 16 slots of 10 ms: beyond 16 in flight, work queues inside it.
    let slots = Arc::new(Semaphore::new(16));
    let svc = admission
        .layer()
        .layer(tower::service_fn(move |_req: http::Request<()>| {
            let slots = Arc::clone(&slots);
            async move {
                let _slot = slots.acquire().await.unwrap();
                tokio::time::sleep(Duration::from_millis(10)).await;
                Ok::<_, Infallible>(())
            }
        }));
    // 100 closed-loop clients for 5 s of virtual time.
    let end = Instant::now() + Duration::from_secs(5);
    let clients: Vec<_> = (0..100)
        .map(|_| {
            let mut svc = svc.clone();
            tokio::spawn(async move {
                while Instant::now() < end {
                    let mut req = http::Request::new(());
                    req.extensions_mut().insert(RequestFacts {
                        priority: Some(Priority::Critical),
                        ..RequestFacts::NONE
                    });
                    let _ = svc.ready().await.unwrap().call(req).await;
                }
            })
        })
        .collect();
    for c in clients {
        c.await.unwrap();
    }
    let stats = admission.adaptive_stats().unwrap();
    assert_eq!(stats.no_load, Some(Duration::from_millis(10)));
    // It left the pinned value and settled near the backend's 16 slots, not at the max.
    assert!(
        (12..=32).contains(&admission.limit()),
        "limit {}, {stats:?}",
        admission.limit()
    );
}

fn adaptive_with_queue_bound() -> AdaptiveConfig {
    AdaptiveConfig {
        min_limit: 2,
        max_limit: 64,
        initial_limit: 8,
        min_rtt_limit: 2,
        min_rtt_interval: Duration::from_secs(3600),
        queue_per_limit: Some(0.5),
        queue_min: 2,
        ..AdaptiveConfig::default()
    }
}

#[tokio::test(start_paused = true)]
async fn a_queue_bound_that_shrinks_sheds_the_lowest_priority_waiters_first() {
    let options = AdmissionOptions {
        adaptive: Some(adaptive_with_queue_bound()),
        ..AdmissionOptions::default()
    };
    let limits = Limits {
        concurrency: 1000,
        queue: 256,
    };
    let admission = Admission::fixed_with(limits, options);
    let backend = Backend::default();
    let mut svc = admission.layer().layer(backend.clone());
    // Pinned at 2 while the no-load latency is measured; the queue is from the limit to
    // restore: ceil(8 × 0.5) = 4, not from the pin.
    assert_eq!(admission.limit(), 2);
    assert_eq!(admission.queue_capacity(), 4);
    // The limit to restore goes to 40: the queue to 20.
    admission.set_limits(40, 256);
    assert_eq!(admission.queue_capacity(), 20);
    let mut running = Vec::new();
    for _ in 0..2 {
        running.push(send(&mut svc, request("run", Priority::Critical, None)).await);
    }
    let mut waiting = Vec::new();
    for (name, p) in [
        ("critical", Priority::Critical),
        ("default", Priority::Default),
        ("low", Priority::Low),
    ] {
        for _ in 0..6 {
            waiting.push((p, send(&mut svc, request(name, p, None)).await));
        }
    }
    settle().await;
    assert_eq!(admission.queued(Priority::Low), 6);
    // The limit falls to 8: the queue to 4, and the 14 waiters over it are shed at once,
    // lowest priority first, with `queue_full`.
    admission.set_limits(8, 256);
    assert_eq!(admission.queue_capacity(), 4);
    settle().await;
    assert_eq!(admission.shed_count(Priority::Low, ShedCause::QueueFull), 6);
    assert_eq!(
        admission.shed_count(Priority::Default, ShedCause::QueueFull),
        6
    );
    assert_eq!(
        admission.shed_count(Priority::Critical, ShedCause::QueueFull),
        2
    );
    assert_eq!(Priority::ALL.map(|p| admission.queued(p)), [0, 0, 4]);
    let mut shed = [0; 3];
    for (p, w) in waiting.iter_mut() {
        if w.is_finished() {
            assert_eq!(shed_cause(w.await.unwrap()), ShedCause::QueueFull);
            shed[p.index()] += 1;
        }
    }
    assert_eq!(shed, [6, 6, 2]);
    // Up again: the queue follows, within the policy's queue.
    admission.set_limits(40, 256);
    assert_eq!(admission.queue_capacity(), 20);
    admission.set_limits(40, 10);
    assert_eq!(admission.queue_capacity(), 10);
    backend.finish(100);
    for r in running {
        r.await.unwrap().unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn the_queue_bound_follows_the_adaptive_limit_down_and_up() {
    let options = AdmissionOptions {
        adaptive: Some(adaptive_with_queue_bound()),
        ..AdmissionOptions::default()
    };
    let limits = Limits {
        concurrency: 1000,
        queue: 1000,
    };
    let admission = Admission::fixed_with(limits, options);
    let bound = |limit: usize| limit.div_ceil(2).max(2);
    // A backend with 16 slots whose service time the test sets (10 ms, then 40 ms, then
    // 10 ms again).
    let slots = Arc::new(Semaphore::new(16));
    let service_ms = Arc::new(std::sync::atomic::AtomicU64::new(10));
    let svc = {
        let service_ms = Arc::clone(&service_ms);
        admission
            .layer()
            .layer(tower::service_fn(move |_req: http::Request<()>| {
                let slots = Arc::clone(&slots);
                let ms = service_ms.load(Ordering::SeqCst);
                async move {
                    let _slot = slots.acquire().await.unwrap();
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    Ok::<_, Infallible>(())
                }
            }))
    };
    // 100 closed-loop `critical` clients for 9 s of virtual time; a shed one waits 1 ms.
    let end = Instant::now() + Duration::from_secs(9);
    let clients: Vec<_> = (0..100)
        .map(|_| {
            let mut svc = svc.clone();
            tokio::spawn(async move {
                while Instant::now() < end {
                    let mut req = http::Request::new(());
                    req.extensions_mut().insert(RequestFacts {
                        priority: Some(Priority::Critical),
                        ..RequestFacts::NONE
                    });
                    if svc.ready().await.unwrap().call(req).await.is_err() {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let up = admission.limit();
    assert!((12..=32).contains(&up), "limit {up}");
    assert_eq!(admission.queue_capacity(), bound(up));
    // The service slows to 4× its no-load latency: the limit falls to its floor, the queue
    // with it, and the waiters over the new bound are shed (`queue_full`).
    service_ms.store(40, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let down = admission.limit();
    assert!(down <= 4, "limit {down}");
    assert_eq!(admission.queue_capacity(), bound(down));
    assert!(admission.queue_capacity() < bound(up));
    assert!(admission.queued(Priority::Critical) <= admission.queue_capacity());
    assert!(admission.shed_count(Priority::Critical, ShedCause::QueueFull) > 0);
    // It recovers: the limit and the queue grow again.
    service_ms.store(10, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let again = admission.limit();
    assert!(again >= 12, "limit {again}");
    assert_eq!(admission.queue_capacity(), bound(again));
    for c in clients {
        c.await.unwrap();
    }
}
