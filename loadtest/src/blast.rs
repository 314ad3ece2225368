//! Raw mode and the trivial server, for measuring the generator itself.
//!
//! `blast` is the same open-loop discipline without journeys: worker `i` of `C` sends its
//! `k`-th request at `start + (i + k·C) / rate` (as wrk2 spreads a rate over connections),
//! latency counts from that intended time, and each worker keeps its own histogram so the hot
//! path shares nothing.
//!
//! # Layout
//! - [`BlastOptions`]: what to blast.
//! - [`BlastReport`]: what a blast measured.
//! - [`blast`]: runs the raw open-loop generator.
//! - [`serve_trivial`]: serves `200 ok` to every request on `listener` (after `delay`, when given) …

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, Uri, header};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::Error;
use crate::client::{Conn, TargetAddr};
use crate::recorder::new_histogram;
use crate::results::LatencySummary;

/// What to blast.
#[derive(Debug, Clone)]
pub struct BlastOptions {
    /// The server.
    pub target: TargetAddr,
    /// Path to GET.
    pub path: String,
    /// Requests per second over all connections.
    pub rate: f64,
    /// How long to send.
    pub duration: Duration,
    /// Connections (one worker each).
    pub connections: usize,
    /// Per-request timeout.
    pub timeout: Duration,
}

/// What a blast measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BlastReport {
    /// Requests the schedule asked for within the duration.
    pub scheduled: u64,
    /// Answers received (any status).
    pub completed: u64,
    /// 2xx answers.
    pub ok: u64,
    /// Timeouts and connection errors.
    pub errors: u64,
    /// Scheduled but not sent before the duration ended (the generator or server fell behind).
    pub missed: u64,
    /// `completed / duration`.
    pub achieved_rps: f64,
    /// Latency from intended send time, ms.
    pub latency_ms: LatencySummary,
    /// Latency from actual send time, ms (not corrected).
    pub service_time_ms: LatencySummary,
}

struct WorkerTally {
    scheduled: u64,
    completed: u64,
    ok: u64,
    errors: u64,
    latency: hdrhistogram::Histogram<u64>,
    service: hdrhistogram::Histogram<u64>,
}

/// Runs the raw open-loop generator.
pub async fn blast(opts: &BlastOptions) -> Result<BlastReport, Error> {
    if !(opts.rate.is_finite() && opts.rate > 0.0) || opts.connections == 0 {
        return Err(Error::Target(
            "blast needs --rate > 0 and --connections >= 1".into(),
        ));
    }
    let start = Instant::now() + Duration::from_millis(50);
    let end = start + opts.duration;
    let mut set = JoinSet::new();
    for i in 0..opts.connections {
        set.spawn(blast_worker(opts.clone(), i, start, end));
    }
    let mut latency = new_histogram();
    let mut service = new_histogram();
    let (mut scheduled, mut completed, mut ok, mut errors) = (0, 0, 0, 0);
    while let Some(r) = set.join_next().await {
        let t = r.map_err(|e| Error::Target(format!("blast worker: {e}")))?;
        scheduled += t.scheduled;
        completed += t.completed;
        ok += t.ok;
        errors += t.errors;
        latency
            .add(&t.latency)
            .map_err(|e| Error::Serialise(format!("{e:?}")))?;
        service
            .add(&t.service)
            .map_err(|e| Error::Serialise(format!("{e:?}")))?;
    }
    let expected = (opts.rate * opts.duration.as_secs_f64()).floor();
    // `expected` is a finite, non-negative count.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let expected = expected as u64;
    Ok(BlastReport {
        scheduled: expected,
        completed,
        ok,
        errors,
        missed: expected.saturating_sub(scheduled),
        achieved_rps: completed as f64 / opts.duration.as_secs_f64(),
        latency_ms: LatencySummary::of(&latency)?,
        service_time_ms: LatencySummary::of(&service)?,
    })
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

async fn blast_worker(opts: BlastOptions, i: usize, start: Instant, end: Instant) -> WorkerTally {
    let mut conn = Conn::new(opts.target.addr);
    let step = Duration::from_secs_f64(opts.connections as f64 / opts.rate);
    let mut intended = start + Duration::from_secs_f64(i as f64 / opts.rate);
    let mut t = WorkerTally {
        scheduled: 0,
        completed: 0,
        ok: 0,
        errors: 0,
        latency: new_histogram(),
        service: new_histogram(),
    };
    // Parsed once: the hot loop only clones them.
    let (Ok(uri), Ok(host)) = (
        opts.path.parse::<Uri>(),
        HeaderValue::from_str(&opts.target.authority),
    ) else {
        t.errors += 1;
        return t;
    };
    // One timer for the whole worker instead of one per request: a request still open when
    // the run's end plus the timeout passes is abandoned.
    let stop = tokio::time::sleep_until(end + opts.timeout);
    tokio::pin!(stop);
    while intended < end {
        let now = Instant::now();
        if now >= end {
            break;
        }
        if intended > now {
            tokio::time::sleep_until(intended).await;
        }
        t.scheduled += 1;
        let mut req = Request::new(Full::new(Bytes::new()));
        *req.uri_mut() = uri.clone();
        req.headers_mut().insert(header::HOST, host.clone());
        let sent = Instant::now();
        let res = tokio::select! {
            biased;
            r = conn.send_raw(req) => r,
            () = &mut stop => {
                conn.reset();
                t.errors += 1;
                break;
            }
        };
        match res {
            Ok(resp) => {
                t.completed += 1;
                if resp.status().is_success() {
                    t.ok += 1;
                }
            }
            Err(_) => t.errors += 1,
        }
        let done = Instant::now();
        t.latency
            .saturating_record(micros(done.saturating_duration_since(intended)));
        t.service
            .saturating_record(micros(done.saturating_duration_since(sent)));
        intended += step;
    }
    t
}

/// Serves `200 ok` to every request on `listener` (after `delay`, when given) until
/// `shutdown` resolves.
pub async fn serve_trivial(
    listener: TcpListener,
    delay: Option<Duration>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = accepted?;
                let _ = stream.set_nodelay(true);
                tokio::spawn(async move {
                    let svc = service_fn(move |_req| async move {
                        if let Some(d) = delay {
                            tokio::time::sleep(d).await;
                        }
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                    });
                    // A client closing its connection mid-request is not the server's concern.
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
            () = &mut shutdown => return Ok(()),
        }
    }
}
