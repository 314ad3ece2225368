use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tower::{BoxError, Layer, Service, ServiceExt};

use super::*;
use crate::clock::ManualClock;
use crate::policy::PolicyConfig;

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
    req.extensions_mut().insert(priority);
    if let Some(d) = deadline {
        req.extensions_mut().insert(Deadline(d));
    }
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
            ("deadline_expired_in_queue", 0)
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
    query.extensions_mut().insert(RouteClass::CreditLine);
    let query = send(&mut svc, query).await;
    let mut drawdown = http::Request::new("drawdown");
    drawdown.extensions_mut().insert(RouteClass::Drawdown);
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
