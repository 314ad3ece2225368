//! The live progress line: phase, offered and achieved rate, successes, refusals by kind,
//! current p99. indicatif hides it when stderr is not a terminal.
//!
//! # Layout
//! - `Live`: live counters for the progress line.
//! - `Observed`: what the progress line shows.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::classify::Cause;
use risk_core::Family;

/// Live counters for the progress line. Relaxed everywhere: they are statistics read by one
/// display task, and no other memory depends on their order.
#[derive(Debug, Default)]
pub(crate) struct Live {
    pub(crate) phase: AtomicUsize,
    pub(crate) offered: AtomicU64,
    pub(crate) sent: AtomicU64,
    pub(crate) ok: AtomicU64,
    pub(crate) refused: [AtomicU64; Cause::ALL.len()],
}

impl Live {
    pub(crate) fn refused(&self, c: Cause) -> u64 {
        let i = Cause::ALL.iter().position(|x| *x == c).unwrap_or(0);
        self.refused[i].load(Ordering::Relaxed)
    }
}

/// What the progress line shows: the live counters and the recent p99 (the run's state).
pub(crate) trait Observed: Send + Sync + 'static {
    /// The live counters.
    fn live(&self) -> &Live;
    /// The p99 latency of recent answers, ms (`None` before any).
    fn recent_p99_ms(&self, now: Instant) -> Option<f64>;
}

pub(crate) struct Progress {
    bar: ProgressBar,
    task: Option<JoinHandle<()>>,
}

impl Progress {
    pub(crate) fn start(enabled: bool, sh: Arc<impl Observed>, phases: Vec<String>) -> Self {
        let target = if enabled {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(None, target);
        if bar.is_hidden() {
            return Self { bar, task: None };
        }
        if let Ok(style) = ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}") {
            bar.set_style(style);
        }
        let b = bar.clone();
        let task = tokio::spawn(async move {
            let tick = Duration::from_millis(500);
            let mut last = (Instant::now(), 0u64, 0u64);
            loop {
                tokio::time::sleep(tick).await;
                let now = Instant::now();
                let l = sh.live();
                let offered = l.offered.load(Ordering::Relaxed);
                let sent = l.sent.load(Ordering::Relaxed);
                let dt = now.duration_since(last.0).as_secs_f64().max(1e-3);
                let off_rate = (offered - last.1) as f64 / dt;
                let sent_rate = (sent - last.2) as f64 / dt;
                last = (now, offered, sent);
                let phase = phases
                    .get(l.phase.load(Ordering::Relaxed))
                    .map_or("-", String::as_str);
                let p99 = sh
                    .recent_p99_ms(now)
                    .map_or_else(|| "-".to_owned(), |v| format!("{v:.1}ms"));
                let r = |c| l.refused(c);
                b.set_message(format!(
                    "{phase} | offered {off_rate:.0}/s achieved {sent_rate:.0}/s | ok {} | shed {} rate {} peak {} anomaly {} dep {} other {} | p99 {p99}",
                    l.ok.load(Ordering::Relaxed),
                    r(Cause::Coded(Family::Capacity)),
                    r(Cause::Coded(Family::RateLimit)),
                    r(Cause::Coded(Family::PeakWindow)),
                    r(Cause::Coded(Family::Anomaly)),
                    r(Cause::Coded(Family::Dependency)),
                    r(Cause::Coded(Family::Eligibility))
                        + r(Cause::Coded(Family::CreditLine))
                        + r(Cause::Unexplained)
                        + r(Cause::ClientError)
                        + r(Cause::Coded(Family::Request))
                        + r(Cause::Timeout)
                        + r(Cause::Connection)
                        + r(Cause::Coded(Family::Contention)),
                ));
                b.tick();
            }
        });
        Self {
            bar,
            task: Some(task),
        }
    }

    pub(crate) async fn finish(self) {
        if let Some(t) = self.task {
            t.abort();
            let _ = t.await;
        }
        self.bar.finish_and_clear();
    }
}
