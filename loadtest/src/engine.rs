//! The open-loop run: journeys arrive on the scenario's schedule whatever the gateway does;
//! workers, each owning one connection, send the requests (or, with `clients =
//! "per_journey"`, each journey sends its own on a connection of its own); latency counts from each
//! request's *intended* send time (coordinated omission corrected, as wrk2 does).
//!
//! Inside a journey (partly-open, Schroeder et al. NSDI 2006) the drawdown's intended time is
//! the quote's intended time plus the think time, not the quote's completion plus the think
//! time: when the gateway stalls the stall lands in the measured latency instead of quietly
//! spacing the user's requests out.
//!
//! # Layout
//! - [`RunOptions`]: how to run a scenario.
//! - [`BureauHandle`]: the bureau simulator of a run, as the results record it.
//! - [`run`]: runs a scenario against a target and returns its results.
//! - [`run_with_ledger`]: the same, with what clients were told of each drawdown.
//! - [`deadline_ms`]: the drawdowns' `X-Request-Deadline-Ms`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, header};
use http_body_util::Full;
use rand::{Rng, SeedableRng, rngs::StdRng};
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::Error;
use crate::bureau::Bureau;
use crate::bureau::timeline::run_timeline;
use crate::classify::{Answer, Cause, Endpoint};
use crate::client::{Conn, SendError, TargetAddr};
use crate::faults::{FaultSpec, recovery_s, run_schedule};
use crate::ledger::{Ledger, LedgerEntry, SeededUser, Told};
use crate::population::{Behaviour, User, build_users};
use crate::progress::{Live, Observed, Progress};
use crate::recorder::{GroupInfo, JourneyEnd, JourneyOutcome, Recorder};
use crate::results::{BureauResult, PhaseInfo, Results, ScenarioInfo, WindowSpan};
use crate::scenario::{Clients, JourneyConfig, Priority, RetryConfig, Scenario, WindowAction};
use crate::target;
use risk_core::Family;

/// How to run a scenario.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Where to send traffic.
    pub target: TargetAddr,
    /// How the results name the target (`embedded` or the URL).
    pub target_label: String,
    /// Caller API key (`Authorization: Bearer`).
    pub api_key: String,
    /// Admin token (seeding, window actions).
    pub admin_token: String,
    /// The `--scale` already applied to the scenario (recorded in the results).
    pub scale: f64,
    /// RFC 3339 start time for the results.
    pub started_at: String,
    /// Makes idempotency keys unique across runs against the same gateway.
    pub run_nonce: u64,
    /// Draw the live progress line (hidden anyway when stderr is not a terminal).
    pub progress: bool,
    /// The in-process bureau simulator the gateway consults, when the scenario has a
    /// `[bureau]` block: the run applies its `[[bureau.change]]`s and samples it.
    pub bureau: Option<BureauHandle>,
    /// Commands run at set seconds of the run (`--fault`), drawn on the report's timeline.
    pub faults: Vec<FaultSpec>,
}

/// The bureau simulator of a run, as the results record it.
#[derive(Debug, Clone)]
pub struct BureauHandle {
    /// Its state (service time, counters).
    pub bureau: Bureau,
    /// The gateway settings merged over its configuration (TOML), for the results.
    pub gateway_overrides: String,
}

/// One request to send, as scheduled.
struct Attempt {
    intended: Instant,
    /// 0 for a first attempt.
    attempt: u32,
    group: usize,
    endpoint: Endpoint,
    req: Request<Full<Bytes>>,
}

/// An attempt for the pool's workers, and where to answer.
struct Job {
    attempt: Attempt,
    reply: oneshot::Sender<Reply>,
}

struct Reply {
    answer: Answer,
    done: Instant,
    /// A drawdown's `decision_id`, when it was answered with a decision.
    decision_id: Option<String>,
}

/// A step's last answer, as [`call`] answers it.
struct Called {
    answer: Answer,
    /// The intended time of the last attempt.
    intended: Instant,
    /// The last answer's `decision_id` (a drawdown answered with a decision).
    decision_id: Option<String>,
    /// Whether some attempt got an answer that may follow a commit (see [`Told::Unknown`]).
    uncertain: bool,
}

pub(crate) struct Shared {
    target: TargetAddr,
    auth: HeaderValue,
    rec: Mutex<Recorder>,
    pub(crate) live: Live,
    jobs: async_channel::Sender<Job>,
    timeout: Duration,
    retry: RetryConfig,
    journey: JourneyConfig,
    behaviours: Vec<Behaviour>,
    /// Each group's `X-Priority`, if it sends one.
    priorities: Vec<Option<Priority>>,
    users: Vec<Vec<User>>,
    in_flight: Vec<AtomicU64>,
    /// `clients = "per_journey"`: the connections a journey may open (`connections` of
    /// them); `None` with the pool.
    journey_conns: Option<Arc<tokio::sync::Semaphore>>,
    /// Connections opened by journeys (`per_journey`).
    journey_opened: AtomicU64,
    retry_deadline: Instant,
    nonce: u64,
    deadline_ms: u64,
    /// What clients were told of each drawdown.
    ledger: Mutex<Vec<LedgerEntry>>,
}

impl Observed for Shared {
    fn live(&self) -> &Live {
        &self.live
    }

    fn recent_p99_ms(&self, now: Instant) -> Option<f64> {
        self.rec().recent_p99_ms(now)
    }
}

impl Shared {
    pub(crate) fn rec(&self) -> MutexGuard<'_, Recorder> {
        // A panic while recording leaves counters at worst one update short; keep going.
        self.rec.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn wait_until(&self, at: Instant) {
        if at > Instant::now() {
            tokio::time::sleep_until(at).await;
            self.rec().timer(at, Instant::now());
        }
    }
}

/// Loopback addresses a journey's connection is opened from, in turn, when the target is
/// on IPv4 loopback (see [`Conn::per_journey`]).
const LOOPBACK_SOURCES: u64 = 16;

/// The address journey `seq` connects from: one of [`LOOPBACK_SOURCES`] loopback addresses
/// when the target is on IPv4 loopback, else the kernel's choice.
fn journey_source(sh: &Shared, seq: u64) -> Option<std::net::IpAddr> {
    match sh.target.addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_loopback() => {
            let n = u8::try_from(1 + seq % LOOPBACK_SOURCES).unwrap_or(1);
            Some(std::net::Ipv4Addr::new(127, 0, 0, n).into())
        }
        _ => None,
    }
}

/// Descriptors kept free of journeys' connections: the generator's own files, its seeding
/// connections and the runtime's.
const SPARE_DESCRIPTORS: usize = 512;

/// The connections journeys may hold at once: `wanted`, or fewer when the process may not
/// open that many descriptors. A connect that fails for want of a descriptor is the
/// generator's shortage, and a journey that retries at once on it would spin; a journey that
/// finds every slot taken is counted as not sent instead.
fn journey_connections(wanted: usize) -> usize {
    match open_files_limit() {
        Some(limit) if limit.saturating_sub(SPARE_DESCRIPTORS) < wanted => {
            let n = limit.saturating_sub(SPARE_DESCRIPTORS).max(1);
            eprintln!(
                "loadtest: {wanted} connections wanted, {limit} descriptors allowed: \
                 journeys hold at most {n} connections (raise `ulimit -n` for more)"
            );
            n
        }
        _ => wanted,
    }
}

/// The soft limit on open files of this process (Linux: `/proc/self/limits`).
fn open_files_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Runs a scenario against a target and returns its results.
pub async fn run(sc: &Scenario, opts: &RunOptions) -> Result<Results, Error> {
    run_with_ledger(sc, opts).await.map(|(r, _)| r)
}

/// [`run`], and what clients were told of each drawdown (for `loadtest audit`).
pub async fn run_with_ledger(sc: &Scenario, opts: &RunOptions) -> Result<(Results, Ledger), Error> {
    let users = build_users(&sc.population);
    let all: Vec<User> = users.iter().flatten().cloned().collect();
    // Seeding is not the load: a bounded number of connections whatever the scenario.
    target::seed_users(
        &opts.target,
        &opts.admin_token,
        &all,
        sc.connections.min(256),
    )
    .await?;

    let groups: Vec<GroupInfo> = sc
        .population
        .groups
        .iter()
        .zip(&users)
        .map(|(g, u)| GroupInfo {
            name: g.name.clone(),
            profile: g.profile,
            behaviour: g.behaviour,
            users: u.len(),
        })
        .collect();
    let arrivals = sc.arrivals();
    let duration = sc.duration();
    let think = Duration::from_millis(sc.journey.think_ms);
    let timeout = Duration::from_millis(sc.request_timeout_ms);
    let grace = think.mul_f64(1.5)
        + timeout
        + Duration::from_millis(sc.retry.polite_cap_ms)
        + Duration::from_secs(1);
    let start = Instant::now() + Duration::from_millis(200);
    let (tx, rx) = async_channel::unbounded::<Job>();
    let auth = HeaderValue::from_str(&format!("Bearer {}", opts.api_key))
        .map_err(|e| Error::Target(format!("api key: {e}")))?;
    let sh = Arc::new(Shared {
        target: opts.target.clone(),
        auth,
        rec: Mutex::new(Recorder::new(start, groups.len())),
        live: Live::default(),
        jobs: tx,
        timeout,
        retry: sc.retry.clone(),
        journey: sc.journey.clone(),
        behaviours: sc.population.groups.iter().map(|g| g.behaviour).collect(),
        priorities: sc.population.groups.iter().map(|g| g.priority).collect(),
        users,
        in_flight: groups.iter().map(|_| AtomicU64::new(0)).collect(),
        journey_conns: (sc.clients == Clients::PerJourney).then(|| {
            Arc::new(tokio::sync::Semaphore::new(journey_connections(
                sc.connections,
            )))
        }),
        journey_opened: AtomicU64::new(0),
        retry_deadline: start + duration + grace / 2,
        nonce: opts.run_nonce,
        deadline_ms: deadline_ms(sc),
        ledger: Mutex::new(Vec::new()),
    });
    let faults = (!opts.faults.is_empty()).then(|| {
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(run_schedule(opts.faults.clone(), start, stopped));
        (stop, task)
    });

    let timeline = match (&opts.bureau, &sc.bureau) {
        (Some(h), Some(b)) => {
            let (stop, stopped) = oneshot::channel();
            let task = tokio::spawn(run_timeline(
                h.bureau.clone(),
                b.changes.clone(),
                opts.target.clone(),
                start,
                stopped,
            ));
            Some((stop, task))
        }
        _ => None,
    };

    let mut workers = JoinSet::new();
    if sc.clients == Clients::Pool {
        for _ in 0..sc.connections {
            workers.spawn(worker(sh.clone(), rx.clone()));
        }
    }
    let progress = Progress::start(
        opts.progress,
        sh.clone(),
        sc.phases.iter().map(|p| p.name.clone()).collect(),
    );

    let phase_starts = sc.phase_starts();
    let shares: Vec<f64> = sc.population.groups.iter().map(|g| g.share).collect();
    let share_total: f64 = shares.iter().sum();
    let mut rng = StdRng::seed_from_u64(sc.seed);
    let mut journeys = JoinSet::new();
    let mut windows = WindowTracker::default();
    let mut warnings = Vec::new();
    let mut next_phase = 0;
    let mut per_phase = vec![0u64; sc.phases.len()];

    for (seq, a) in arrivals.iter().enumerate() {
        while next_phase < sc.phases.len() && phase_starts[next_phase] <= a.at {
            sh.wait_until(start + phase_starts[next_phase]).await;
            start_phase(&sh, sc, opts, next_phase, &mut windows, &mut warnings).await;
            next_phase += 1;
        }
        let intended = start + a.at;
        sh.wait_until(intended).await;
        per_phase[a.phase] += 1;
        let group = pick(&shares, share_total, rng.random::<f64>());
        let user = rng.random_range(0..sh.users[group].len());
        sh.in_flight[group].fetch_add(1, Ordering::Relaxed);
        journeys.spawn(journey(
            sh.clone(),
            group,
            user,
            intended,
            seq as u64,
            rng.random(),
        ));
        while journeys.try_join_next().is_some() {}
    }
    while next_phase < sc.phases.len() {
        sh.wait_until(start + phase_starts[next_phase]).await;
        start_phase(&sh, sc, opts, next_phase, &mut windows, &mut warnings).await;
        next_phase += 1;
    }
    sh.wait_until(start + duration).await;

    // Drain: journeys that arrived in time may finish within the grace period.
    let drain_deadline = Instant::now() + grace;
    loop {
        tokio::select! {
            r = journeys.join_next() => if r.is_none() { break },
            () = tokio::time::sleep_until(drain_deadline) => break,
        }
    }
    journeys.abort_all();
    while journeys.join_next().await.is_some() {}
    sh.jobs.close();
    while rx.try_recv().is_ok() {}
    let mut opened = sh.journey_opened.load(Ordering::Relaxed);
    while let Some(r) = workers.join_next().await {
        opened += r.unwrap_or(0);
    }
    progress.finish().await;
    {
        let mut rec = sh.rec();
        for (g, n) in sh.in_flight.iter().enumerate() {
            for _ in 0..n.load(Ordering::Relaxed) {
                rec.journey(
                    g,
                    JourneyOutcome {
                        end: JourneyEnd::Unfinished,
                        drew: false,
                        promised: false,
                    },
                );
            }
        }
    }
    if windows.current.is_some()
        && let Err(e) =
            target::window_action(&opts.target, &opts.admin_token, &WindowAction::Release).await
    {
        warnings.push(format!("releasing the forced window at the end: {e}"));
    }
    let spans = windows.finish(duration.as_secs_f64());
    let bureau_timeline = match timeline {
        Some((stop, task)) => {
            let _ = stop.send(());
            match task.await {
                Ok(tl) => {
                    warnings.extend(tl.warnings);
                    Some(tl.samples)
                }
                Err(e) => {
                    warnings.push(format!("bureau timeline: {e}"));
                    None
                }
            }
        }
        None => None,
    };

    let fault_events = match faults {
        Some((stop, task)) => {
            let _ = stop.send(());
            task.await.unwrap_or_else(|e| {
                warnings.push(format!("fault schedule: {e}"));
                Vec::new()
            })
        }
        None => Vec::new(),
    };
    for ev in &fault_events {
        if ev.exit_code != Some(0) {
            warnings.push(format!(
                "fault {:?} at {:.1} s exited with {:?}",
                ev.command, ev.at_s, ev.exit_code
            ));
        }
    }

    let sh = Arc::into_inner(sh).ok_or_else(|| {
        Error::Serialise("a task still holds the run state after the drain".into())
    })?;
    let rec = sh.rec.into_inner().unwrap_or_else(PoisonError::into_inner);
    let ledger = Ledger {
        key_prefix: key_prefix(sh.nonce),
        users: all
            .iter()
            .map(|u| SeededUser {
                id: u.id.clone(),
                limit_fen: u.seed.limit.get(),
                used_fen: u.seed.used.get(),
            })
            .collect(),
        entries: sh
            .ledger
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner),
    };
    let finished = rec.finish(&groups, sc.connections, opened, arrivals.len() as u64)?;
    let phases = sc
        .phases
        .iter()
        .zip(&phase_starts)
        .enumerate()
        .map(|(i, (p, s))| PhaseInfo {
            name: p.name.clone(),
            start_s: s.as_secs_f64(),
            end_s: s.as_secs_f64() + p.duration_s,
            expected_journeys: sc.expected_journeys(i),
            journeys: per_phase[i],
            force_window: p.force_window.clone(),
        })
        .collect();
    let info = ScenarioInfo {
        name: sc.name.clone(),
        description: sc.description.clone(),
        scale: opts.scale,
        duration_s: duration.as_secs_f64(),
        seed: sc.seed,
        connections: sc.connections,
        capacity: sc.capacity,
    };
    let mut results = finished.into_results(
        info,
        opts.target_label.clone(),
        opts.started_at.clone(),
        phases,
        spans,
        warnings,
    );
    results.faults = fault_events
        .into_iter()
        .map(|mut ev| {
            ev.recovery_s = recovery_s(&results.seconds, ev.at_s);
            ev
        })
        .collect();
    if let (Some(h), Some(b), Some(samples)) = (&opts.bureau, &sc.bureau, bureau_timeline) {
        results.bureau = Some(BureauResult {
            options: b.options(sc.seed),
            changes: b.changes.clone(),
            deadline_ms: deadline_ms(sc),
            gateway_overrides: h.gateway_overrides.clone(),
            samples,
        });
    }
    Ok((results, ledger))
}

/// The prefix of a run's idempotency keys.
fn key_prefix(nonce: u64) -> String {
    format!("lt-{nonce:x}-")
}

/// The drawdowns' `X-Request-Deadline-Ms`.
pub fn deadline_ms(sc: &Scenario) -> u64 {
    sc.journey.deadline_ms.unwrap_or(sc.request_timeout_ms)
}

#[derive(Default)]
struct WindowTracker {
    current: Option<(String, f64)>,
    spans: Vec<WindowSpan>,
}

impl WindowTracker {
    fn apply(&mut self, action: &WindowAction, at: f64) {
        if let Some((name, start_s)) = self.current.take() {
            self.spans.push(WindowSpan {
                name,
                start_s,
                end_s: at,
            });
        }
        if let WindowAction::Force(name) = action {
            self.current = Some((name.clone(), at));
        }
    }

    fn finish(mut self, end: f64) -> Vec<WindowSpan> {
        self.apply(&WindowAction::Release, end);
        self.spans
    }
}

async fn start_phase(
    sh: &Shared,
    sc: &Scenario,
    opts: &RunOptions,
    i: usize,
    windows: &mut WindowTracker,
    warnings: &mut Vec<String>,
) {
    sh.live.phase.store(i, Ordering::Relaxed);
    if let Some(action) = sc.window_action(i) {
        let at: f64 = sc.phases[..i].iter().map(|p| p.duration_s).sum();
        windows.apply(&action, at);
        if let Err(e) = target::window_action(&opts.target, &opts.admin_token, &action).await {
            warnings.push(format!("phase {}: {e}", sc.phases[i].name));
        }
    }
}

fn pick(shares: &[f64], total: f64, u: f64) -> usize {
    let mut acc = 0.0;
    let x = u * total;
    for (i, s) in shares.iter().enumerate() {
        acc += s;
        if x < acc {
            return i;
        }
    }
    shares.len() - 1
}

async fn worker(sh: Arc<Shared>, rx: async_channel::Receiver<Job>) -> u64 {
    let mut conn = Conn::new(sh.target.addr);
    while let Ok(job) = rx.recv().await {
        let reply = exchange(&sh, &mut conn, job.attempt).await;
        // The journey may have been aborted by the drain deadline; nobody to tell then.
        let _ = job.reply.send(reply);
    }
    conn.opened()
}

/// Sends one attempt on `conn` now, classifies and records the answer. An attempt the
/// generator could not send (no local descriptor or port) is recorded as not sent (it stays
/// in the scheduled-but-missed count), never as the target's failure.
async fn exchange(sh: &Shared, conn: &mut Conn, job: Attempt) -> Reply {
    let sent = Instant::now();
    let res = conn.send(job.req, sh.timeout).await;
    let done = Instant::now();
    let mut decision_id = None;
    let (answer, status) = match res {
        Ok(resp) => {
            let st = resp.status().as_u16();
            if job.endpoint == Endpoint::Drawdown && st == 200 {
                decision_id = serde_json::from_slice::<DecisionId>(resp.body())
                    .ok()
                    .map(|d| d.decision_id);
            }
            let ra = resp
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok());
            (
                Answer::from_response(job.endpoint, st, ra, resp.body()),
                st.to_string(),
            )
        }
        Err(SendError::Timeout) => (Answer::Timeout, "timeout".to_owned()),
        Err(SendError::Connection) => (Answer::Connection, "connection".to_owned()),
        Err(SendError::Local) => {
            return Reply {
                answer: Answer::Connection,
                done,
                decision_id: None,
            };
        }
    };
    sh.live.sent.fetch_add(1, Ordering::Relaxed);
    match answer.refusal_cause() {
        Some(c) => {
            let i = Cause::ALL.iter().position(|x| *x == c).unwrap_or(0);
            sh.live.refused[i].fetch_add(1, Ordering::Relaxed);
        }
        None => {
            sh.live.ok.fetch_add(1, Ordering::Relaxed);
        }
    }
    {
        let mut rec = sh.rec();
        rec.completed(job.group, job.intended, sent, done, &status, &answer);
        if job.endpoint == Endpoint::Drawdown {
            rec.drawdown(job.intended, done, &answer);
        }
        let priority = sh.priorities[job.group].map_or(
            match job.endpoint {
                Endpoint::Drawdown => "critical",
                Endpoint::Quote => "default",
            },
            Priority::as_str,
        );
        rec.admission(
            priority,
            job.attempt,
            job.endpoint,
            (job.intended, sent, done),
            &answer,
            Duration::from_millis(sh.deadline_ms),
        );
    }
    Reply {
        answer,
        done,
        decision_id,
    }
}

#[derive(serde::Deserialize)]
struct DecisionId {
    decision_id: String,
}

/// Whether an answer may follow a commit the client never heard of: no answer, a reset, or
/// a server-side failure (the store's, or a 5xx).
fn may_have_committed(a: &Answer) -> bool {
    match a {
        Answer::Timeout | Answer::Connection => true,
        Answer::Refused { status, .. } => {
            *status >= 500 && *status != 503
                || a.refusal_cause() == Some(Cause::Coded(Family::Dependency))
        }
        Answer::Quote { .. } | Answer::Decision { .. } => false,
    }
}

/// Sends one step, retrying transient refusals as the group's clients do. Returns the last
/// answer and the intended time of the last attempt.
async fn call(
    sh: &Shared,
    mut conn: Option<&mut Conn>,
    group: usize,
    endpoint: Endpoint,
    build: impl Fn(u32) -> Result<Request<Full<Bytes>>, http::Error>,
    mut intended: Instant,
) -> Called {
    let behaviour = sh.behaviours[group];
    let max = match behaviour {
        Behaviour::RetryStorm => sh.retry.storm_max_attempts,
        Behaviour::Polite => sh.retry.polite_max_attempts,
    };
    let mut attempt = 0;
    let mut uncertain = false;
    let called = |answer, intended, decision_id, uncertain| Called {
        answer,
        intended,
        decision_id,
        uncertain,
    };
    loop {
        let Ok(req) = build(attempt).map(|mut r| {
            if let Some(p) = sh.priorities[group] {
                r.headers_mut()
                    .insert("x-priority", HeaderValue::from_static(p.as_str()));
            }
            r
        }) else {
            return called(Answer::Connection, intended, None, uncertain);
        };
        sh.rec().offered(intended);
        sh.live.offered.fetch_add(1, Ordering::Relaxed);
        let job = Attempt {
            intended,
            attempt,
            group,
            endpoint,
            req,
        };
        let reply = match conn.as_deref_mut() {
            // A journey of its own: sent now, on its own connection.
            Some(conn) => exchange(sh, conn, job).await,
            None => {
                let (tx, rx) = oneshot::channel();
                if sh
                    .jobs
                    .try_send(Job {
                        attempt: job,
                        reply: tx,
                    })
                    .is_err()
                {
                    return called(Answer::Connection, intended, None, uncertain);
                }
                let Ok(reply) = rx.await else {
                    return called(Answer::Connection, intended, None, uncertain);
                };
                reply
            }
        };
        attempt += 1;
        uncertain |= may_have_committed(&reply.answer);
        let transient = reply
            .answer
            .refusal_cause()
            .is_some_and(Cause::is_transient);
        if !transient || attempt >= max || reply.done >= sh.retry_deadline {
            return called(reply.answer, intended, reply.decision_id, uncertain);
        }
        intended = match behaviour {
            Behaviour::RetryStorm => reply.done,
            Behaviour::Polite => {
                let backoff = Duration::from_millis(
                    sh.retry
                        .polite_backoff_ms
                        .saturating_mul(1 << (attempt - 1).min(16)),
                );
                let wait = reply
                    .answer
                    .retry_after()
                    .unwrap_or(backoff)
                    .min(Duration::from_millis(sh.retry.polite_cap_ms));
                reply.done + wait
            }
        };
        sh.wait_until(intended).await;
    }
}

fn base_request(sh: &Shared, method: Method, path: &str) -> http::request::Builder {
    Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, sh.target.authority.as_str())
        .header(header::AUTHORIZATION, sh.auth.clone())
}

async fn journey(
    sh: Arc<Shared>,
    group: usize,
    user_idx: usize,
    intended: Instant,
    seq: u64,
    seed: u64,
) {
    let outcome = match &sh.journey_conns {
        None => run_journey(&sh, None, group, user_idx, intended, seq, seed).await,
        Some(slots) => match Arc::clone(slots).try_acquire_owned() {
            Ok(_slot) => {
                let mut conn = Conn::per_journey(sh.target.addr, journey_source(&sh, seq));
                let o =
                    run_journey(&sh, Some(&mut conn), group, user_idx, intended, seq, seed).await;
                sh.journey_opened
                    .fetch_add(conn.opened(), Ordering::Relaxed);
                o
            }
            Err(_) => {
                // Every connection the generator may open is in use: the journey's first
                // request is offered and not sent (counted as missed).
                sh.rec().offered(intended);
                sh.live.offered.fetch_add(1, Ordering::Relaxed);
                JourneyOutcome {
                    end: JourneyEnd::Refused(Cause::Connection),
                    drew: false,
                    promised: false,
                }
            }
        },
    };
    sh.rec().journey_of(group, user_idx, outcome);
    sh.in_flight[group].fetch_sub(1, Ordering::Relaxed);
}

async fn run_journey(
    sh: &Shared,
    mut conn: Option<&mut Conn>,
    group: usize,
    user_idx: usize,
    intended: Instant,
    seq: u64,
    seed: u64,
) -> JourneyOutcome {
    let user = &sh.users[group][user_idx];
    let mut rng = StdRng::seed_from_u64(seed);
    let j = &sh.journey;
    let desired =
        (rng.random_range(j.amount_min_fen..=j.amount_max_fen) / 100 * 100).max(j.amount_min_fen);
    let think = Duration::from_millis(j.think_ms).mul_f64(rng.random_range(0.5..1.5));

    let quote_path = format!("/v1/credit-lines/{}", user.id);
    let quote_deadline = j.deadline_ms.map(|d| d.to_string());
    let Called {
        answer: quote,
        intended: quote_intended,
        ..
    } = call(
        sh,
        conn.as_deref_mut(),
        group,
        Endpoint::Quote,
        |attempt| {
            let mut b =
                base_request(sh, Method::GET, &quote_path).header("x-retry-attempt", attempt);
            // A scenario that sets a deadline gives the quote the same budget.
            if let Some(d) = &quote_deadline {
                b = b.header("x-request-deadline-ms", d.as_str());
            }
            b.body(Full::new(Bytes::new()))
        },
        intended,
    )
    .await;
    let drawable = match quote {
        Answer::Quote {
            drawable_now_fen, ..
        } => drawable_now_fen,
        other => {
            return JourneyOutcome {
                end: JourneyEnd::Refused(other.refusal_cause().unwrap_or(Cause::Unexplained)),
                drew: false,
                promised: false,
            };
        }
    };
    let amount = if drawable > 0 {
        desired.min(drawable)
    } else {
        desired
    };
    let promised = drawable >= amount;

    let next = quote_intended + think;
    sh.wait_until(next).await;
    let key = format!("{}{seq}", key_prefix(sh.nonce));
    let body = Bytes::from(
        serde_json::json!({
            "user_id": user.id,
            "amount_fen": amount,
            "channel": "app",
            "device_id": format!("d-{}", user.id),
        })
        .to_string(),
    );
    let deadline = sh.deadline_ms.to_string();
    let drawdown = call(
        sh,
        conn,
        group,
        Endpoint::Drawdown,
        |attempt| {
            base_request(sh, Method::POST, "/v1/drawdowns")
                .header(header::CONTENT_TYPE, "application/json")
                .header("idempotency-key", key.as_str())
                .header("x-retry-attempt", attempt)
                .header("x-request-deadline-ms", deadline.as_str())
                .body(Full::new(body.clone()))
        },
        next,
    )
    .await;
    let answer = drawdown.answer;
    let told = match (&answer, drawdown.decision_id) {
        (a, Some(decision_id)) if a.is_approved() => Told::Approved { decision_id },
        // An approval whose id could not be read: its key finds it.
        (a, None) if a.is_approved() => Told::Unknown,
        (Answer::Decision { .. }, _) => Told::Decided,
        _ if drawdown.uncertain => Told::Unknown,
        _ => Told::Refused,
    };
    sh.ledger
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(LedgerEntry {
            key: key.clone(),
            user: user.id.clone(),
            amount_fen: amount,
            told,
        });
    let end = if answer.is_approved() {
        JourneyEnd::Approved
    } else if answer.is_review() {
        JourneyEnd::Review
    } else {
        JourneyEnd::Refused(answer.refusal_cause().unwrap_or(Cause::Unexplained))
    };
    JourneyOutcome {
        end,
        drew: true,
        promised,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_picked_by_share() {
        let shares = [0.5, 0.25, 0.25];
        let mut counts = [0; 3];
        for i in 0..1000 {
            counts[pick(&shares, 1.0, f64::from(i) / 1000.0)] += 1;
        }
        assert_eq!(counts, [500, 250, 250]);
    }

    #[test]
    fn window_spans_close_on_release_and_at_the_end() {
        let mut w = WindowTracker::default();
        w.apply(&WindowAction::Force("double11".into()), 10.0);
        w.apply(&WindowAction::Release, 30.0);
        w.apply(&WindowAction::Force("spring".into()), 40.0);
        let spans = w.finish(50.0);
        assert_eq!(spans.len(), 2);
        assert_eq!((spans[0].start_s, spans[0].end_s), (10.0, 30.0));
        assert_eq!((spans[1].name.as_str(), spans[1].end_s), ("spring", 50.0));
    }
}
