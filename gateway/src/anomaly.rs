//! Report-only anomaly rules: an anomaly rule of the engine (the login pattern, the 24-hour
//! drawdown velocity, the one-hour application velocity) set to report only refuses nothing
//! and counts what it would have refused, in requests and distinct users, in metrics and in
//! `GET /admin/rule-modes`.
//!
//! Each rule is enforced or report-only on its own, switched at run time
//! (`PUT /admin/rule-modes`) and per instance, as the rate limits' modes are. With a rule
//! report-only, the live decision (and the quote) is made on the thresholds in force with that
//! rule switched off (login pattern `off`, the velocity limit out of reach), compiled once per
//! thresholds version and modes; a drawdown is also decided with the rules enforced, and when
//! that decision is stricter (a rejection or review where live approved, a rejection where
//! live sent to review), each report-only rule among its reasons is counted.
//!
//! # Cost
//! With every rule enforced, a drawdown pays one atomic load. With one report-only, one more
//! evaluation (pure); a would-be refusal takes the rule's tally lock.

use crate::ratelimit::{LimitMode, WouldRefuse, WouldRefuseCounts};
use arc_swap::ArcSwapOption;
use prometheus_client::registry::Registry;
use risk_core::{Decision, LoginMode, Outcome, Rule, Thresholds, ThresholdsError};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};

/// The modes of the anomaly rules, as `GET /admin/rule-modes` answers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleModes {
    /// The login-pattern rule (`LOGIN_PATTERN_ANOMALY`, `LOGIN_PATTERN_REVIEW`).
    pub login_pattern: LimitMode,
    /// Drawdowns in 24 hours (`VELOCITY_DRAWDOWNS_24H`).
    pub drawdowns_24h: LimitMode,
    /// Applications in one hour (`VELOCITY_APPLICATIONS_1H`).
    pub applications_1h: LimitMode,
}

impl RuleModes {
    /// Every rule enforced.
    pub const ENFORCE: RuleModes = RuleModes {
        login_pattern: LimitMode::Enforce,
        drawdowns_24h: LimitMode::Enforce,
        applications_1h: LimitMode::Enforce,
    };

    fn report_only(&self, rule: Rule) -> bool {
        let mode = match rule {
            Rule::LoginPattern => self.login_pattern,
            Rule::Drawdowns24h => self.drawdowns_24h,
            Rule::Applications1h => self.applications_1h,
            _ => return false,
        };
        mode == LimitMode::ReportOnly
    }

    /// `thresholds` with the report-only rules switched off, at the same version.
    fn relax(&self, thresholds: &Thresholds) -> Result<Thresholds, ThresholdsError> {
        let mut doc = thresholds.document().clone();
        for p in doc.profiles.values_mut() {
            if self.login_pattern == LimitMode::ReportOnly {
                p.login_pattern.mode = LoginMode::Off;
            }
            for g in p.grades.values_mut() {
                if self.drawdowns_24h == LimitMode::ReportOnly {
                    g.max_drawdowns_24h = i64::from(u32::MAX);
                }
                if self.applications_1h == LimitMode::ReportOnly {
                    g.max_applications_1h = i64::from(u32::MAX);
                }
            }
        }
        Thresholds::compile(doc)
    }
}

/// The report-only rules a drawdown would have been refused by (a bit per rule of [`RULES`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flagged(u8);

/// The rules counted, in report order.
const RULES: [Rule; 3] = [Rule::LoginPattern, Rule::Drawdowns24h, Rule::Applications1h];

/// The relaxed thresholds of one live version under one set of modes.
struct Relaxed {
    modes: RuleModes,
    /// The live thresholds they were compiled from (compared by address).
    source: Arc<Thresholds>,
    relaxed: Arc<Thresholds>,
}

/// The thresholds a drawdown is decided on, and those it would have been decided on with
/// every rule enforced (`None`: every rule is enforced).
#[derive(Debug)]
pub struct Live {
    /// What the decision and the quote are made on.
    pub decide: Arc<Thresholds>,
    /// The thresholds in force, when some rule is report-only.
    pub enforcing: Option<Arc<Thresholds>>,
}

/// The anomaly rules' modes on this instance and what the report-only ones counted.
pub struct AnomalyModes {
    modes: Mutex<RuleModes>,
    relaxed: ArcSwapOption<Relaxed>,
    counts: WouldRefuseCounts<3>,
}

impl std::fmt::Debug for AnomalyModes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnomalyModes")
            .field("modes", &self.modes())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // No code panics while holding these; a poisoned count is still a count.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl AnomalyModes {
    /// Every rule enforced; the metrics registered in `registry`.
    pub fn register(registry: &mut Registry) -> AnomalyModes {
        let m = AnomalyModes {
            modes: Mutex::new(RuleModes::ENFORCE),
            relaxed: ArcSwapOption::empty(),
            counts: WouldRefuseCounts::new("rule", RULES.map(Rule::as_str)),
        };
        m.counts.register(
            registry,
            "gateway_report_only_rule_would_refuse",
            "Drawdowns a report-only anomaly rule let through that enforcing would have refused or sent to review, by rule",
            "Distinct users among them (estimated), by rule",
        );
        m
    }

    /// The modes in force.
    pub fn modes(&self) -> RuleModes {
        *lock(&self.modes)
    }

    /// Sets the modes (checked against `live`: the relaxed thresholds must compile); answers
    /// the modes before.
    pub fn set(
        &self,
        modes: RuleModes,
        live: &Arc<Thresholds>,
    ) -> Result<RuleModes, ThresholdsError> {
        let mut current = lock(&self.modes);
        if modes == RuleModes::ENFORCE {
            self.relaxed.store(None);
        } else {
            let relaxed = modes.relax(live)?;
            self.relaxed.store(Some(Arc::new(Relaxed {
                modes,
                source: Arc::clone(live),
                relaxed: Arc::new(relaxed),
            })));
        }
        Ok(std::mem::replace(&mut *current, modes))
    }

    /// The thresholds to decide on, given the thresholds in force.
    pub fn live(&self, live: Arc<Thresholds>) -> Live {
        let guard = self.relaxed.load();
        let Some(r) = guard.as_ref() else {
            return Live {
                decide: live,
                enforcing: None,
            };
        };
        if Arc::ptr_eq(&r.source, &live) {
            return Live {
                decide: Arc::clone(&r.relaxed),
                enforcing: Some(live),
            };
        }
        // A new live version: relaxed again, once (a concurrent request may do it too).
        let modes = r.modes;
        match modes.relax(&live) {
            Ok(relaxed) => {
                let relaxed = Arc::new(relaxed);
                self.relaxed.store(Some(Arc::new(Relaxed {
                    modes,
                    source: Arc::clone(&live),
                    relaxed: Arc::clone(&relaxed),
                })));
                Live {
                    decide: relaxed,
                    enforcing: Some(live),
                }
            }
            Err(e) => {
                // A live document always compiles with a rule switched off; should it not,
                // the rules are enforced rather than guessed.
                tracing::warn!(cause = %e, "report-only rules: the live thresholds did not relax; enforcing");
                Live {
                    decide: live,
                    enforcing: None,
                }
            }
        }
    }

    /// The report-only rules that would have made a drawdown decided `live` stricter: those
    /// among the reasons of `enforced` (its decision with every rule enforced), when that is
    /// a rejection or review where live approved, or a rejection where live sent to review.
    /// Kept until the commit: only a committed decision is counted ([`AnomalyModes::count`]).
    pub fn would_refuse_rules(&self, live: Outcome, enforced: &Decision<'_>) -> Flagged {
        let stricter = matches!(
            (live, enforced.outcome),
            (Outcome::Approved, Outcome::Rejected | Outcome::Review)
                | (Outcome::Review, Outcome::Rejected)
        );
        if !stricter {
            return Flagged(0);
        }
        let modes = self.modes();
        let mut bits = 0u8;
        for (i, rule) in RULES.iter().enumerate() {
            if modes.report_only(*rule) && enforced.reasons.iter().any(|r| r.rule == *rule) {
                bits |= 1 << i;
            }
        }
        Flagged(bits)
    }

    /// Counts a committed drawdown of `user` against the rules `flagged`.
    pub fn count(&self, flagged: Flagged, user: &str) {
        for i in 0..RULES.len() {
            if flagged.0 & (1 << i) != 0 {
                self.counts.count(i, Some(user));
            }
        }
    }

    /// What each rule counted since the process started, by rule name.
    pub fn would_refuse(&self) -> std::collections::BTreeMap<&'static str, WouldRefuse> {
        RULES
            .iter()
            .enumerate()
            .map(|(i, rule)| (rule.as_str(), self.counts.get(i)))
            .collect()
    }
}
