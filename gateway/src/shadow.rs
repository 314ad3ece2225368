//! Shadow candidates: a thresholds document staged beside the live one, evaluated on every
//! drawdown and credit-line quote, never answered.
//!
//! An operator stages a candidate (`PUT /admin/shadow`); from then on each drawdown is also
//! decided against it, on the same state, request, policy profile and bureau answer as the
//! live decision (no extra call, no extra round trip), and each quote is also quoted against
//! it. The client's answer is the live one, untouched. The candidate's [`Tally`] counts the
//! outcome changes (approved → rejected, rejected → approved, → review, …) by reason code,
//! risk grade and channel, in requests and in distinct users (a bounded HyperLogLog++ sketch,
//! `cardinality-estimator`: exact for small sets, about 1.6 % standard error for large ones,
//! a few KB at most per counted key), and keeps the first [`MAX_SAMPLES`] changed decisions
//! with both explanations. Promotion publishes the candidate as the next live version;
//! discarding drops it.
//!
//! The candidate itself is the store's ([`crate::store::candidate`]): staged on one instance,
//! it is the one every instance of the fleet evaluates, reports, promotes and discards, and a
//! restart keeps it. Each instance follows the store ([`Shadow::follow`]): before an admin
//! route acts, and on Redis with the thresholds refresher (on the change's notice and every
//! `threshold_poll_ms`). The counts are the instance's, of the traffic it served since it took
//! the candidate (a restart starts them afresh); on Redis the distinct users of each outcome
//! change are also counted across the fleet (`shared_users`).
//!
//! # Layout
//! - [`Shadow`]: the staged candidate (lock-free to read: [`arc_swap`]) and its metrics.
//! - [`Candidate`]: the compiled document, who staged it, and its [`Tally`].
//! - [`Verdict`]: what the candidate said about one drawdown, kept until the commit.
//! - [`Report`]: the tally as `GET /admin/shadow` answers it.
//!
//! # Cost
//! With nothing staged, a drawdown pays one atomic load. With a candidate, one more
//! evaluation (pure, no allocation when the outcomes agree) and one relaxed atomic add; a
//! changed outcome takes the tally's lock to count it.

use crate::request::Drawdown;
use crate::store::{DecisionRecord, ReasonRecord};
use arc_swap::ArcSwapOption;
use arrayvec::ArrayVec;
use cardinality_estimator::CardinalityEstimator;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use risk_core::{Decision, MAX_REASONS, Outcome, RiskGrade, Thresholds};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Changed decisions kept, with both explanations, per candidate.
pub const MAX_SAMPLES: usize = 20;

/// A distinct-user sketch: HyperLogLog++ with 2^12 registers of 6 bits (at most about 3 KB;
/// a handful of users take a few bytes and are counted exactly).
type Users = CardinalityEstimator<str>;

/// A live outcome and the candidate's, when they differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Transition {
    /// Live approved, the candidate rejects.
    ApprovedToRejected,
    /// Live approved, the candidate sends to review.
    ApprovedToReview,
    /// Live rejected, the candidate approves.
    RejectedToApproved,
    /// Live rejected, the candidate sends to review.
    RejectedToReview,
    /// Live review, the candidate approves.
    ReviewToApproved,
    /// Live review, the candidate rejects.
    ReviewToRejected,
}

impl Transition {
    /// Every transition.
    pub const ALL: [Transition; 6] = [
        Transition::ApprovedToRejected,
        Transition::ApprovedToReview,
        Transition::RejectedToApproved,
        Transition::RejectedToReview,
        Transition::ReviewToApproved,
        Transition::ReviewToRejected,
    ];

    pub(crate) fn of(live: Outcome, candidate: Outcome) -> Option<Transition> {
        use Outcome::*;
        Some(match (live, candidate) {
            (Approved, Rejected) => Transition::ApprovedToRejected,
            (Approved, Review) => Transition::ApprovedToReview,
            (Rejected, Approved) => Transition::RejectedToApproved,
            (Rejected, Review) => Transition::RejectedToReview,
            (Review, Approved) => Transition::ReviewToApproved,
            (Review, Rejected) => Transition::ReviewToRejected,
            _ => return None,
        })
    }

    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Transition::ApprovedToRejected => "approved_to_rejected",
            Transition::ApprovedToReview => "approved_to_review",
            Transition::RejectedToApproved => "rejected_to_approved",
            Transition::RejectedToReview => "rejected_to_review",
            Transition::ReviewToApproved => "review_to_approved",
            Transition::ReviewToRejected => "review_to_rejected",
        }
    }
}

/// Requests and distinct users.
#[derive(Default)]
struct Count {
    requests: u64,
    users: Users,
}

impl Count {
    fn add(&mut self, user: &str) {
        self.requests += 1;
        self.users.insert(user);
    }

    fn report(&self) -> CountReport {
        CountReport {
            requests: self.requests,
            users: self.users.estimate() as u64,
        }
    }
}

/// Requests and distinct users, as reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CountReport {
    /// Requests.
    pub requests: u64,
    /// Distinct users (estimated; exact for small sets).
    pub users: u64,
}

/// One changed decision, both explanations side by side.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// The live decision's id.
    pub decision_id: String,
    /// The user.
    pub user_id: String,
    /// The user's risk grade.
    pub risk_grade: RiskGrade,
    /// The channel.
    pub channel: &'static str,
    /// The amount asked for.
    pub amount_fen: u64,
    /// The live outcome and its reasons (as answered).
    pub live: Explanation,
    /// The candidate's outcome and its reasons.
    pub candidate: Explanation,
}

/// An outcome and its reasons.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    /// The outcome.
    pub outcome: Outcome,
    /// Its reasons, most decisive first.
    pub reasons: Vec<ReasonRecord>,
}

/// What a candidate (or a backtest) has counted.
#[derive(Default)]
pub(crate) struct Tally {
    by_transition: BTreeMap<Transition, Count>,
    by_reason: BTreeMap<(Transition, &'static str), Count>,
    by_grade: BTreeMap<(Transition, RiskGrade), Count>,
    by_channel: BTreeMap<(Transition, &'static str), Count>,
    quotes_lower: Count,
    quotes_higher: Count,
    samples: Vec<Sample>,
}

impl Tally {
    /// Counts one changed decision of `user`; `sample` builds its sample while fewer than
    /// [`MAX_SAMPLES`] are kept. Answers the transition's distinct-user estimate when it
    /// moved (the gauge is set only then: a label look-up per change).
    pub(crate) fn change(
        &mut self,
        t: Transition,
        reason: &'static str,
        grade: RiskGrade,
        channel: &'static str,
        user: &str,
        sample: impl FnOnce() -> Sample,
    ) -> Option<usize> {
        let before = self.by_transition.get(&t).map(|c| c.users.estimate());
        let count = self.by_transition.entry(t).or_default();
        count.add(user);
        let now = count.users.estimate();
        self.by_reason.entry((t, reason)).or_default().add(user);
        self.by_grade.entry((t, grade)).or_default().add(user);
        self.by_channel.entry((t, channel)).or_default().add(user);
        if self.samples.len() < MAX_SAMPLES {
            self.samples.push(sample());
        }
        (before != Some(now)).then_some(now)
    }

    /// The report of these counts under `header`.
    pub(crate) fn report(&self, header: Header, drawdowns: u64, quotes: u64) -> Report {
        let keyed = |t: &Transition, key: String, c: &Count| Keyed {
            transition: *t,
            key,
            count: c.report(),
        };
        Report {
            candidate_version: header.candidate_version,
            staged_by: header.staged_by,
            staged_at: header.staged_at,
            drawdowns_evaluated: drawdowns,
            quotes_evaluated: quotes,
            changes: self
                .by_transition
                .iter()
                .map(|(t, c)| keyed(t, t.as_str().to_owned(), c))
                .collect(),
            by_reason: self
                .by_reason
                .iter()
                .map(|((t, r), c)| keyed(t, (*r).to_owned(), c))
                .collect(),
            by_grade: self
                .by_grade
                .iter()
                .map(|((t, g), c)| keyed(t, g.as_str().to_owned(), c))
                .collect(),
            by_channel: self
                .by_channel
                .iter()
                .map(|((t, ch), c)| keyed(t, (*ch).to_owned(), c))
                .collect(),
            quotes_lower: self.quotes_lower.report(),
            quotes_higher: self.quotes_higher.report(),
            samples: self.samples.clone(),
            shared_users: None,
        }
    }
}

/// Who a report is of: the candidate's version, who staged it and when.
#[derive(Debug, Clone)]
pub struct Header {
    /// The candidate's document version as staged.
    pub candidate_version: u64,
    /// Who staged it.
    pub staged_by: String,
    /// When.
    pub staged_at: String,
}

/// The principal reason of the stricter decision of a transition: the candidate's when it
/// refuses or sends to review what live approved (or moves a review to a rejection); live's
/// when the candidate lets through what live held.
pub(crate) fn stricter_reason(
    t: Transition,
    live: Option<risk_core::ReasonCode>,
    candidate: Option<risk_core::ReasonCode>,
) -> &'static str {
    let stricter = match t {
        Transition::RejectedToApproved
        | Transition::ReviewToApproved
        | Transition::RejectedToReview => live,
        _ => candidate,
    };
    stricter.map_or("NONE", risk_core::ReasonCode::as_str)
}

/// A staged candidate.
pub struct Candidate {
    /// The store's id of it ([`crate::store::StagedCandidate::id`]).
    id: String,
    thresholds: Thresholds,
    /// A digest of the document: names its shared distinct-user sketches on Redis.
    digest: String,
    /// The operator who staged it.
    pub staged_by: String,
    /// When (RFC 3339, the gateway's clock).
    pub staged_at: String,
    drawdowns: AtomicU64,
    quotes: AtomicU64,
    tally: Mutex<Tally>,
}

impl std::fmt::Debug for Candidate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Candidate")
            .field("staged_by", &self.staged_by)
            .field("staged_at", &self.staged_at)
            .finish_non_exhaustive()
    }
}

impl Candidate {
    /// The store's id of the candidate.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The candidate's compiled thresholds.
    pub fn thresholds(&self) -> &Thresholds {
        &self.thresholds
    }

    fn tally(&self) -> std::sync::MutexGuard<'_, Tally> {
        // A panic while counting leaves counts that are at worst one short: keep counting.
        self.tally
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// What the candidate said about one drawdown, held from the evaluation to the commit: only
/// a committed decision is counted (a retried commit evaluates again; a replay counts
/// nothing). Two words: it is kept across the commit's await.
#[derive(Debug, Default)]
pub enum Verdict {
    /// Nothing staged.
    #[default]
    None,
    /// The candidate agrees with the live outcome.
    Same(Arc<Candidate>),
    /// It does not: its outcome and reasons (rendered only if the decision is sampled).
    Changed(
        Box<(
            Arc<Candidate>,
            Outcome,
            ArrayVec<risk_core::Reason, MAX_REASONS>,
        )>,
    ),
}

/// The shadow candidate of this instance, and its metrics.
#[derive(Debug)]
pub struct Shadow {
    current: ArcSwapOption<Candidate>,
    metrics: ShadowMetrics,
    /// On Redis: the distinct users of each outcome change are also counted there, across
    /// instances ([`Shadow::share_users`]).
    shared: Option<crate::store::RedisStore>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChangeLabels {
    transition: &'static str,
    reason: &'static str,
    grade: &'static str,
    channel: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransitionLabels {
    transition: &'static str,
}

#[derive(Debug)]
struct ShadowMetrics {
    evaluated: Family<RouteLabels, Counter>,
    changes: Family<ChangeLabels, Counter>,
    users: Family<TransitionLabels, Gauge>,
    staged: Gauge,
}

impl Shadow {
    /// Nothing staged; the metrics registered in `registry`.
    pub fn register(registry: &mut Registry) -> Shadow {
        let metrics = ShadowMetrics {
            evaluated: Family::default(),
            changes: Family::default(),
            users: Family::default(),
            staged: Gauge::default(),
        };
        registry.register(
            "gateway_shadow_evaluated",
            "Drawdowns and quotes also evaluated against the staged candidate, by route",
            metrics.evaluated.clone(),
        );
        registry.register(
            "gateway_shadow_outcome_changes",
            "Drawdowns the staged candidate would have decided otherwise, by transition, the principal reason of the stricter decision, grade and channel",
            metrics.changes.clone(),
        );
        registry.register(
            "gateway_shadow_affected_users",
            "Distinct users whose drawdowns the staged candidate would have decided otherwise (estimated), by transition",
            metrics.users.clone(),
        );
        registry.register(
            "gateway_shadow_staged",
            "1 while a shadow candidate is staged",
            metrics.staged.clone(),
        );
        Shadow {
            current: ArcSwapOption::empty(),
            metrics,
            shared: None,
        }
    }

    /// Counts the distinct users of each outcome change on `redis` too, shared by every
    /// instance that stages the same candidate document (`shared_users` in the report).
    pub fn share_users(&mut self, redis: crate::store::RedisStore) {
        self.shared = Some(redis);
    }

    /// `report` with `shared_users` filled in from Redis, when shared (one round trip).
    pub async fn with_shared_users(
        &self,
        candidate: &Candidate,
        mut report: Report,
    ) -> crate::store::Result<Report> {
        let Some(redis) = &self.shared else {
            return Ok(report);
        };
        let keys = Transition::ALL
            .iter()
            .map(|t| redis.shared_users_key(&candidate.digest, t.as_str()))
            .collect();
        let counts = redis.shared_users(keys).await?;
        report.shared_users = Some(
            Transition::ALL
                .iter()
                .zip(counts)
                .filter(|(_, users)| *users > 0)
                .map(|(t, users)| SharedCount {
                    transition: *t,
                    users,
                })
                .collect(),
        );
        Ok(report)
    }

    /// The staged candidate.
    pub fn current(&self) -> Option<Arc<Candidate>> {
        self.current.load_full()
    }

    /// Stages `thresholds` as the candidate `id` (replacing any candidate and its counts).
    pub fn stage(
        &self,
        id: &str,
        thresholds: Thresholds,
        staged_by: &str,
        staged_at: String,
    ) -> Arc<Candidate> {
        let digest = serde_json::to_vec(thresholds.document())
            .map(|json| blake3::hash(&json).to_hex()[..16].to_owned())
            .unwrap_or_default();
        let c = Arc::new(Candidate {
            id: id.to_owned(),
            thresholds,
            digest,
            staged_by: staged_by.to_owned(),
            staged_at,
            drawdowns: AtomicU64::new(0),
            quotes: AtomicU64::new(0),
            tally: Mutex::default(),
        });
        self.current.store(Some(Arc::clone(&c)));
        self.reset_metrics();
        self.metrics.staged.set(1);
        c
    }

    /// Follows the store: the candidate it holds (`None`: none) becomes this instance's.
    /// The same id keeps the candidate and its counts; another is compiled by `compile` and
    /// staged afresh. A document that does not compile (a fleet mid-reload whose policies
    /// differ) leaves this instance without a candidate: the error says why.
    pub fn follow(
        &self,
        stored: Option<&crate::store::StagedCandidate>,
        compile: impl FnOnce(&str) -> Result<Thresholds, String>,
    ) -> Result<Option<Arc<Candidate>>, String> {
        let held = self.current();
        match (stored, held) {
            (None, None) => Ok(None),
            (None, Some(_)) => {
                self.discard();
                Ok(None)
            }
            (Some(s), Some(c)) if c.id == s.id => Ok(Some(c)),
            (Some(s), _) => match compile(&s.document) {
                Ok(th) => Ok(Some(self.stage(
                    &s.id,
                    th,
                    &s.staged_by,
                    s.staged_at.clone(),
                ))),
                Err(e) => {
                    self.discard();
                    Err(e)
                }
            },
        }
    }

    /// Drops the candidate; answers it.
    pub fn discard(&self) -> Option<Arc<Candidate>> {
        let old = self.current.swap(None);
        self.reset_metrics();
        old
    }

    fn reset_metrics(&self) {
        self.metrics.evaluated.clear();
        self.metrics.changes.clear();
        self.metrics.users.clear();
        self.metrics.staged.set(0);
    }

    /// The candidate's verdict on a drawdown the live thresholds decided `live`: evaluated
    /// with the live decision's own context, state and request.
    pub fn evaluate(
        &self,
        ctx: &risk_core::Context<'_>,
        state: &risk_core::UserState,
        request: &risk_core::DrawdownRequest,
        live: Outcome,
    ) -> Verdict {
        let guard = self.current.load();
        let Some(c) = guard.as_ref() else {
            return Verdict::None;
        };
        let d: Decision<'_> = risk_core::evaluate(&c.thresholds, ctx, state, request);
        if d.outcome == live {
            Verdict::Same(Arc::clone(c))
        } else {
            Verdict::Changed(Box::new((Arc::clone(c), d.outcome, d.reasons)))
        }
    }

    /// Counts a committed decision's verdict; `render` writes a candidate's reason as the
    /// API answers one (only for the decisions sampled: rendering guidance is costly).
    pub fn record(
        &self,
        verdict: Verdict,
        stored: &DecisionRecord,
        grade: RiskGrade,
        req: &Drawdown,
        render: impl Fn(&risk_core::Reason) -> ReasonRecord,
    ) {
        let (c, outcome, reasons) = match verdict {
            Verdict::None => return,
            Verdict::Same(c) => {
                // Relaxed: a count read on its own (the report), ordering nothing else.
                c.drawdowns.fetch_add(1, Ordering::Relaxed);
                self.metrics
                    .evaluated
                    .get_or_create(&RouteLabels { route: "drawdown" })
                    .inc();
                return;
            }
            Verdict::Changed(b) => *b,
        };
        c.drawdowns.fetch_add(1, Ordering::Relaxed);
        self.metrics
            .evaluated
            .get_or_create(&RouteLabels { route: "drawdown" })
            .inc();
        let Some(t) = Transition::of(stored.outcome, outcome) else {
            return;
        };
        let reason = stricter_reason(
            t,
            stored.reasons.first().map(|r| r.code),
            reasons.first().map(|r| r.code),
        );
        let channel = channel_name(req.channel);
        let user = stored.user_id.as_str();
        let users = c
            .tally()
            .change(t, reason, grade, channel, user, || Sample {
                decision_id: stored.decision_id.clone(),
                user_id: stored.user_id.clone(),
                risk_grade: grade,
                channel,
                amount_fen: stored.amount_fen,
                live: Explanation {
                    outcome: stored.outcome,
                    reasons: stored.reasons.clone(),
                },
                candidate: Explanation {
                    outcome,
                    reasons: reasons.iter().map(&render).collect(),
                },
            });
        if let Some(redis) = &self.shared {
            redis.add_shared_user(redis.shared_users_key(&c.digest, t.as_str()), user);
        }
        self.metrics
            .changes
            .get_or_create(&ChangeLabels {
                transition: t.as_str(),
                reason,
                grade: grade.as_str(),
                channel,
            })
            .inc();
        if let Some(users) = users {
            self.metrics
                .users
                .get_or_create(&TransitionLabels {
                    transition: t.as_str(),
                })
                .set(i64::try_from(users).unwrap_or(i64::MAX));
        }
    }

    /// Counts a quote: the live `drawable_now` against the candidate's, for the same state
    /// and context.
    pub fn quote(
        &self,
        ctx: &risk_core::Context<'_>,
        state: &risk_core::UserState,
        user: &str,
        live_drawable: risk_core::Fen,
    ) {
        let guard = self.current.load();
        let Some(c) = guard.as_ref() else {
            return;
        };
        let q = risk_core::quote(&c.thresholds, ctx, state);
        // Relaxed: a count read on its own (the report), ordering nothing else.
        c.quotes.fetch_add(1, Ordering::Relaxed);
        self.metrics
            .evaluated
            .get_or_create(&RouteLabels {
                route: "credit_line",
            })
            .inc();
        if q.drawable_now != live_drawable {
            let mut tally = c.tally();
            if q.drawable_now < live_drawable {
                tally.quotes_lower.add(user);
            } else {
                tally.quotes_higher.add(user);
            }
        }
    }
}

pub(crate) fn channel_name(c: risk_core::Channel) -> &'static str {
    match c {
        risk_core::Channel::App => "app",
        risk_core::Channel::Web => "web",
        risk_core::Channel::Partner => "partner",
    }
}

/// One counted key of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Keyed {
    /// The transition.
    pub transition: Transition,
    /// The reason code, grade or channel.
    pub key: String,
    /// Requests and distinct users.
    #[serde(flatten)]
    pub count: CountReport,
}

/// The report of a candidate, as `GET /admin/shadow` answers it.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The candidate's document version as staged.
    pub candidate_version: u64,
    /// Who staged it.
    pub staged_by: String,
    /// When.
    pub staged_at: String,
    /// Drawdowns evaluated against it (committed decisions only).
    pub drawdowns_evaluated: u64,
    /// Credit-line quotes evaluated against it.
    pub quotes_evaluated: u64,
    /// Outcome changes by transition.
    pub changes: Vec<Keyed>,
    /// By the principal reason code of the stricter decision.
    pub by_reason: Vec<Keyed>,
    /// By risk grade.
    pub by_grade: Vec<Keyed>,
    /// By channel.
    pub by_channel: Vec<Keyed>,
    /// Quotes whose `drawable_now_fen` the candidate lowers.
    pub quotes_lower: CountReport,
    /// Quotes whose `drawable_now_fen` the candidate raises.
    pub quotes_higher: CountReport,
    /// The first changed decisions, both explanations side by side.
    pub samples: Vec<Sample>,
    /// On Redis: distinct users per transition over every instance that staged the same
    /// document (estimated), where any were counted. Absent on the memory store and in
    /// backtests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shared_users: Option<Vec<SharedCount>>,
}

/// Distinct users of one transition, over every instance.
#[derive(Debug, Clone, Serialize)]
pub struct SharedCount {
    /// The transition.
    pub transition: Transition,
    /// Distinct users (estimated).
    pub users: u64,
}

impl Candidate {
    /// Who the candidate is, for a report.
    pub fn header(&self) -> Header {
        Header {
            candidate_version: self.thresholds.version(),
            staged_by: self.staged_by.clone(),
            staged_at: self.staged_at.clone(),
        }
    }

    /// The report so far.
    pub fn report(&self) -> Report {
        self.tally().report(
            self.header(),
            self.drawdowns.load(Ordering::Relaxed),
            self.quotes.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_users_are_exact_for_small_sets() {
        let mut c = Count::default();
        for round in 0..5 {
            for u in 0..40 {
                c.add(&format!("u-{u}"));
            }
            assert_eq!(c.report().users, 40, "round {round}");
        }
        assert_eq!(c.report().requests, 200);
    }

    #[test]
    fn distinct_users_stay_close_for_large_sets() {
        let mut c = Count::default();
        for u in 0..100_000 {
            c.add(&format!("u-{u}"));
        }
        let users = c.report().users;
        assert!((95_000..=105_000).contains(&users), "{users}");
    }

    #[test]
    fn transitions_are_the_six_changes() {
        use Outcome::*;
        let all = [Approved, Rejected, Review];
        let n = all
            .iter()
            .flat_map(|a| all.iter().map(move |b| Transition::of(*a, *b)))
            .flatten()
            .count();
        assert_eq!(n, 6);
        assert_eq!(Transition::of(Approved, Approved), None);
    }
}
