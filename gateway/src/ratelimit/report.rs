//! Report-only limits: a limit in this mode refuses nothing and counts what it would have
//! refused, in requests and in distinct users (what Envoy calls shadow mode).
//!
//! Each scope ([`Scope::User`], [`Scope::Global`]) is enforced or report-only on its own,
//! switched at run time (`PUT /admin/limit-modes`) and per instance, as a forced window is.
//! A request the limit would refuse does not use up the bucket (as a refused one does not
//! when enforced), so the count is exactly what enforcing would have refused.

use super::{RateLimited, Scope};
use cardinality_estimator::CardinalityEstimator;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// How a limit acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitMode {
    /// Refuses (429).
    Enforce,
    /// Counts what it would have refused; refuses nothing.
    ReportOnly,
}

/// The modes of both scopes, as `GET /admin/limit-modes` answers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitModes {
    /// The per-user limits.
    pub user: LimitMode,
    /// The global limits (local or shared through Redis).
    pub global: LimitMode,
}

/// Requests and distinct users a report-only limit (or anomaly rule) let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct WouldRefuse {
    /// Requests it would have refused (an anomaly rule: or sent to review).
    pub requests: u64,
    /// Distinct users among them (estimated; exact for small sets).
    pub users: u64,
}

#[derive(Default)]
struct Tally {
    requests: u64,
    users: CardinalityEstimator<str>,
}

/// One label, `name="value"`.
type Label = [(&'static str, &'static str); 1];

/// What report-only checks let through, one tally per value of a label (a limit's scope, an
/// anomaly rule): as the admin API answers it ([`WouldRefuse`]) and as two metric families,
/// requests and distinct users, by that label.
pub struct WouldRefuseCounts<const N: usize> {
    labels: [Label; N],
    tallies: [Mutex<Tally>; N],
    requests: Family<Label, Counter>,
    users: Family<Label, Gauge>,
}

impl<const N: usize> WouldRefuseCounts<N> {
    /// Nothing counted, a tally for each of `values` of the label `name`.
    pub fn new(name: &'static str, values: [&'static str; N]) -> Self {
        WouldRefuseCounts {
            labels: values.map(|v| [(name, v)]),
            tallies: std::array::from_fn(|_| Mutex::default()),
            requests: Family::default(),
            users: Family::default(),
        }
    }

    /// Registers the requests as `name` and the distinct users as `name` + `_users`.
    pub fn register(&self, registry: &mut Registry, name: &str, help: &str, users_help: &str) {
        registry.register(name, help, self.requests.clone());
        registry.register(format!("{name}_users"), users_help, self.users.clone());
    }

    /// Counts a request let through at the `i`th value (and its user, when it names one).
    pub fn count(&self, i: usize, user: Option<&str>) {
        let users = {
            let mut t = lock(&self.tallies[i]);
            t.requests += 1;
            if let Some(u) = user {
                t.users.insert(u);
            }
            t.users.estimate()
        };
        self.requests.get_or_create(&self.labels[i]).inc();
        self.users
            .get_or_create(&self.labels[i])
            .set(i64::try_from(users).unwrap_or(i64::MAX));
    }

    /// What the `i`th value counted so far (since the process started).
    pub fn get(&self, i: usize) -> WouldRefuse {
        let t = lock(&self.tallies[i]);
        WouldRefuse {
            requests: t.requests,
            users: t.users.estimate() as u64,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // No code panics while holding these; a poisoned count is still a count.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The modes and what the report-only ones counted.
pub struct ReportOnly {
    user: AtomicBool,
    global: AtomicBool,
    counts: WouldRefuseCounts<2>,
}

impl std::fmt::Debug for ReportOnly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReportOnly")
            .field("modes", &self.modes())
            .finish_non_exhaustive()
    }
}

impl Default for ReportOnly {
    fn default() -> Self {
        ReportOnly {
            user: AtomicBool::new(false),
            global: AtomicBool::new(false),
            counts: WouldRefuseCounts::new(
                "scope",
                [Scope::User, Scope::Global].map(Scope::as_str),
            ),
        }
    }
}

fn index(scope: Scope) -> usize {
    match scope {
        Scope::User => 0,
        Scope::Global => 1,
    }
}

impl ReportOnly {
    /// Both scopes enforced; the metrics registered in `registry`.
    pub fn register(registry: &mut Registry) -> ReportOnly {
        let r = ReportOnly::default();
        r.counts.register(
            registry,
            "gateway_report_only_would_refuse",
            "Requests a report-only rate limit let through that enforcing would have refused, by scope",
            "Distinct users among them (estimated), by scope",
        );
        r
    }

    fn flag(&self, scope: Scope) -> &AtomicBool {
        match scope {
            Scope::User => &self.user,
            Scope::Global => &self.global,
        }
    }

    /// The modes now.
    pub fn modes(&self) -> LimitModes {
        // Relaxed: each flag is read on its own; it publishes no other memory.
        let mode = |on: bool| {
            if on {
                LimitMode::ReportOnly
            } else {
                LimitMode::Enforce
            }
        };
        LimitModes {
            user: mode(self.user.load(Ordering::Relaxed)),
            global: mode(self.global.load(Ordering::Relaxed)),
        }
    }

    /// Sets the modes; answers the previous ones.
    pub fn set(&self, modes: LimitModes) -> LimitModes {
        let before = self.modes();
        // Relaxed: see `modes`.
        self.user
            .store(modes.user == LimitMode::ReportOnly, Ordering::Relaxed);
        self.global
            .store(modes.global == LimitMode::ReportOnly, Ordering::Relaxed);
        before
    }

    /// A limit's refusal: `Err` as is when its scope is enforced; counted (for `user`, when
    /// the request names one) and `Ok` when it reports only.
    pub fn judge(&self, refused: RateLimited, user: Option<&str>) -> Result<(), RateLimited> {
        let scope = refused.scope();
        // Relaxed: see `modes`.
        if !self.flag(scope).load(Ordering::Relaxed) {
            return Err(refused);
        }
        self.counts.count(index(scope), user);
        Ok(())
    }

    /// What `scope` let through so far (since the process started).
    pub fn would_refuse(&self, scope: Scope) -> WouldRefuse {
        self.counts.get(index(scope))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn enforced_scopes_refuse_report_only_ones_count() {
        let r = ReportOnly::default();
        let user = RateLimited::new(Scope::User, Duration::from_secs(1));
        let global = RateLimited::new(Scope::Global, Duration::from_secs(1));
        assert!(r.judge(user, Some("u-1")).is_err());
        r.set(LimitModes {
            user: LimitMode::ReportOnly,
            global: LimitMode::Enforce,
        });
        for u in ["u-1", "u-2", "u-1"] {
            assert!(r.judge(user, Some(u)).is_ok());
        }
        assert!(r.judge(global, Some("u-1")).is_err());
        assert_eq!(
            r.would_refuse(Scope::User),
            WouldRefuse {
                requests: 3,
                users: 2
            }
        );
        assert_eq!(r.would_refuse(Scope::Global).requests, 0);
    }
}
