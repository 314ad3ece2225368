//! Evaluation: one pure function from (thresholds, context, user, request) to a decision.
//!
//! # Rules, in precedence order
//! Reasons are listed most decisive first: what no change of amount can fix comes before what
//! a smaller amount fixes.
//!
//! | rule | code | outcome |
//! |---|---|---|
//! | blocklist | `BLOCKLISTED` | reject |
//! | overdue beyond tolerance | `OVERDUE_BALANCE` | reject |
//! | account younger than minimum | `ACCOUNT_TOO_NEW` | reject |
//! | bureau: more overdue accounts elsewhere than tolerated | `BUREAU_OVERDUE` | reject |
//! | bureau: an account elsewhere overdue beyond the tolerance | `BUREAU_OVERDUE` | reject |
//! | bureau: score below `reject_below_score` | `BUREAU_SCORE_LOW` | reject |
//! | login pattern (legacy mode only) | `LOGIN_PATTERN_ANOMALY` | reject |
//! | drawdowns in 24 h at the limit | `VELOCITY_DRAWDOWNS_24H` | reject |
//! | applications in 1 h at the limit | `VELOCITY_APPLICATIONS_1H` | reject |
//! | amount above the available line | `INSUFFICIENT_AVAILABLE_LINE` | reject |
//! | amount above the single-drawdown limit | `SINGLE_DRAWDOWN_LIMIT` | reject |
//! | utilisation after the drawdown above the limit | `UTILISATION_LIMIT` | reject |
//! | frequent logins *and* a new device or an application burst | `LOGIN_PATTERN_REVIEW` | review |
//! | bureau: score below `review_below_score` | `BUREAU_SCORE_REVIEW` | review |
//! | bureau rules on, bureau unavailable, no usable cached answer | `BUREAU_UNAVAILABLE_REVIEW` | review |
//!
//! The bureau rules read [`Context::bureau`]; a profile without bureau rules ignores it, and
//! [`BureauSignal::NotConsulted`] leaves every bureau rule silent. A fresh and a cached answer
//! are judged alike (the gateway only hands over a cached answer young enough to use).
//!
//! When a rule binds only because the active profile is tighter than the base profile (a
//! peak window), its code is `PEAK_WINDOW_TIGHTENED` instead, with the rule named, and the
//! reason says when the window ends. Frequent logins alone never reject (unless an operator
//! chooses the legacy `reject_alone` mode, kept only to reproduce that false positive).
//!
//! Every amount rule is a cap on the amount, so the largest approvable amount is the minimum of
//! the caps: [`quote`] returns it, and [`evaluate`] approves exactly the amounts at or below it.
//!
//! # Layout
//! - [`MAX_REASONS`]: at most this many principal reasons are reported.
//! - [`Context`]: what the engine needs to know about the moment of evaluation.
//! - [`Rule`]: the rule behind a reason.
//! - [`Unit`]: the unit of a reason's figures.
//! - [`Reason`]: one principal reason, with the figures that bound it and what would change …
//! - [`Decision`]: the engine's answer to a drawdown request.
//! - [`Quote`]: what a user could draw now, and what binds it.
//! - [`evaluate`]: decides a drawdown.
//! - [`quote`]: what a drawdown made now could be approved for, and the rules that bind it.

use crate::bureau::BureauSignal;
use crate::domain::{DrawdownRequest, Outcome, UserState};
use crate::money::Fen;
use crate::reason::ReasonCode;
use crate::thresholds::{BureauRules, GradeLimits, LoginMode, Profile, Thresholds};
use arrayvec::ArrayVec;
use jiff::ZonedDateTime;
use std::fmt::Write as _;

/// At most this many principal reasons are reported.
pub const MAX_REASONS: usize = 4;

/// What the engine needs to know about the moment of evaluation.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The threshold profile of the active policy (`normal` outside peak windows).
    pub profile: &'a str,
    /// When the active peak window ends, if one is active.
    pub window_ends_at: Option<&'a ZonedDateTime>,
    /// What the external credit bureau said about the user, or why it said nothing.
    pub bureau: BureauSignal,
}

/// The rule behind a reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    /// The user is blocklisted.
    Blocklist,
    /// Overdue tolerance.
    Overdue,
    /// Minimum account age.
    AccountAge,
    /// The login-pattern rule.
    LoginPattern,
    /// Drawdowns in 24 hours.
    Drawdowns24h,
    /// Applications in one hour.
    Applications1h,
    /// The available line.
    AvailableLine,
    /// The single-drawdown limit.
    SingleDrawdown,
    /// The utilisation limit.
    Utilisation,
    /// Bureau: overdue accounts with other lenders.
    BureauOverdueAccounts,
    /// Bureau: days overdue with other lenders.
    BureauOverdueDays,
    /// Bureau: the score band (reject or review).
    BureauScore,
    /// Bureau: no usable answer while the profile's bureau rules are on.
    BureauUnavailable,
}

impl Rule {
    /// A short stable name, e.g. `single_drawdown`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Blocklist => "blocklist",
            Self::Overdue => "overdue",
            Self::AccountAge => "account_age",
            Self::LoginPattern => "login_pattern",
            Self::Drawdowns24h => "drawdowns_24h",
            Self::Applications1h => "applications_1h",
            Self::AvailableLine => "available_line",
            Self::SingleDrawdown => "single_drawdown",
            Self::Utilisation => "utilisation",
            Self::BureauOverdueAccounts => "bureau_overdue_accounts",
            Self::BureauOverdueDays => "bureau_overdue_days",
            Self::BureauScore => "bureau_score",
            Self::BureauUnavailable => "bureau_unavailable",
        }
    }

    /// Whether a smaller amount can satisfy the rule.
    pub const fn is_amount_cap(self) -> bool {
        matches!(
            self,
            Self::AvailableLine | Self::SingleDrawdown | Self::Utilisation
        )
    }
}

/// The unit of a reason's figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Money, in fen.
    Fen,
    /// A count of events.
    Count,
    /// Days.
    Days,
    /// A flag (limit and actual are 0/1).
    Flag,
    /// A credit-bureau score (300 to 850).
    Score,
}

impl Unit {
    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Fen => "fen",
            Self::Count => "count",
            Self::Days => "days",
            Self::Flag => "flag",
            Self::Score => "score",
        }
    }
}

/// One principal reason, with the figures that bound it and what would change the answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Reason {
    /// The code.
    pub code: ReasonCode,
    /// The rule that bound.
    pub rule: Rule,
    /// The limit in force.
    pub limit: u64,
    /// The user's figure against it (for amount caps: the amount asked for).
    pub actual: u64,
    /// The unit of `limit` and `actual`.
    pub unit: Unit,
    /// The largest amount that would be approved now, where a smaller amount helps.
    pub suggested_amount: Option<Fen>,
    /// When the binding peak window ends (the rule relaxes then).
    pub retry_at: Option<ZonedDateTime>,
}

impl Reason {
    /// Guidance with this reason's figures, in English.
    pub fn guidance(&self) -> String {
        self.render(false)
    }

    /// Guidance with this reason's figures, in Chinese.
    pub fn guidance_zh(&self) -> String {
        self.render(true)
    }

    fn render(&self, zh: bool) -> String {
        let mut s = String::with_capacity(160);
        let (l, a) = (self.limit, self.actual);
        let (lf, af) = (fen(l), fen(a));
        // `write!` into a String cannot fail; the results are ignored for that reason.
        let _ = match (self.rule, zh) {
            (Rule::Blocklist, _) => Ok(()),
            (Rule::Overdue, false) => write!(s, "{a} days overdue; the tolerance is {l} days. "),
            (Rule::Overdue, true) => write!(s, "已逾期 {a} 天，容许 {l} 天。"),
            (Rule::AccountAge, false) => {
                write!(s, "The account is {a} days old; the minimum is {l} days. ")
            }
            (Rule::AccountAge, true) => write!(s, "账户已开立 {a} 天，最短要求 {l} 天。"),
            (Rule::LoginPattern, false) => {
                write!(s, "{a} logins in 30 days (the rule looks from {l}). ")
            }
            (Rule::LoginPattern, true) => write!(s, "近30天登录 {a} 次（规则阈值 {l} 次）。"),
            (Rule::Drawdowns24h, false) => {
                write!(s, "{a} drawdowns in the last 24 hours; the limit is {l}. ")
            }
            (Rule::Drawdowns24h, true) => write!(s, "近24小时已借款 {a} 次，上限 {l} 次。"),
            (Rule::Applications1h, false) => {
                write!(s, "{a} applications in the last hour; the limit is {l}. ")
            }
            (Rule::Applications1h, true) => write!(s, "近1小时申请 {a} 次，上限 {l} 次。"),
            (Rule::AvailableLine, false) => {
                write!(s, "Available {lf} yuan, requested {af} yuan. ")
            }
            (Rule::AvailableLine, true) => write!(s, "可用额度 {lf} 元，申请 {af} 元。"),
            (Rule::SingleDrawdown, false) => {
                write!(
                    s,
                    "The single-drawdown limit is {lf} yuan, requested {af} yuan. "
                )
            }
            (Rule::SingleDrawdown, true) => write!(s, "单笔上限 {lf} 元，申请 {af} 元。"),
            (Rule::Utilisation, false) => write!(
                s,
                "At most {lf} yuan of the line may be in use; this would bring it to {af} yuan. "
            ),
            (Rule::Utilisation, true) => {
                write!(s, "额度最多可使用 {lf} 元，本次借款后将达到 {af} 元。")
            }
            (Rule::BureauOverdueAccounts, false) => write!(
                s,
                "The credit bureau reports {a} overdue accounts elsewhere; the tolerance is {l}. "
            ),
            (Rule::BureauOverdueAccounts, true) => {
                write!(s, "征信报告显示其他机构逾期账户 {a} 个，容许 {l} 个。")
            }
            (Rule::BureauOverdueDays, false) => write!(
                s,
                "The credit bureau reports an account {a} days overdue; the tolerance is {l} days. "
            ),
            (Rule::BureauOverdueDays, true) => {
                write!(s, "征信报告显示其他机构账户逾期 {a} 天，容许 {l} 天。")
            }
            (Rule::BureauScore, false) => {
                write!(s, "The credit bureau score is {a}; the threshold is {l}. ")
            }
            (Rule::BureauScore, true) => write!(s, "征信评分 {a}，阈值 {l}。"),
            (Rule::BureauUnavailable, _) => Ok(()),
        };
        match (self.suggested_amount, zh) {
            (Some(a), false) if a > Fen::ZERO => {
                let _ = write!(s, "You can draw up to {a} yuan now. ");
            }
            (Some(a), true) if a > Fen::ZERO => {
                let _ = write!(s, "当前最多可借 {a} 元。");
            }
            _ => {}
        }
        match (&self.retry_at, zh) {
            (Some(t), false) => {
                let _ = write!(
                    s,
                    "This peak-period limit ends at {}. ",
                    t.strftime("%Y-%m-%d %H:%M %:z")
                );
            }
            (Some(t), true) => {
                let _ = write!(
                    s,
                    "高峰时段限额于 {} 结束。",
                    t.strftime("%Y-%m-%d %H:%M %:z")
                );
            }
            _ => {}
        }
        let entry = self.code.entry();
        s.push_str(if zh {
            entry.guidance_zh
        } else {
            entry.guidance
        });
        s
    }
}

fn fen(v: u64) -> Fen {
    // Figures in reasons come from `Fen` values or from limits validated against `Fen::MAX`.
    Fen::new(v).unwrap_or(Fen::MAX)
}

/// The engine's answer to a drawdown request. Borrows the profile name from the thresholds
/// it was evaluated against (no reference count is touched on the hot path: a shared
/// counter would bounce between cores and cap multi-threaded throughput).
#[derive(Debug, Clone, PartialEq)]
pub struct Decision<'t> {
    /// Approved, rejected or review.
    pub outcome: Outcome,
    /// The amount asked for.
    pub amount: Fen,
    /// Principal reasons, most decisive first; empty on approval.
    pub reasons: ArrayVec<Reason, MAX_REASONS>,
    /// The available line before this drawdown.
    pub available: Fen,
    /// The largest amount that would be approved now.
    pub drawable_now: Fen,
    /// The highest `used` this approval allows after reserving: the store refuses the
    /// reservation if a concurrent drawdown moved `used` so that `used + amount` exceeds it.
    pub reserve_ceiling: Fen,
    /// The thresholds version evaluated against.
    pub threshold_version: u64,
    /// The profile evaluated against.
    pub profile: &'t str,
}

impl Decision<'_> {
    /// Whether an appeal may be filed: a refusal or review with an appealable reason.
    pub fn appealable(&self) -> bool {
        self.outcome != Outcome::Approved && self.reasons.iter().any(|r| r.code.entry().appealable)
    }
}

/// What a user could draw now, and what binds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Quote<'t> {
    /// The available line.
    pub available: Fen,
    /// The largest amount a drawdown made now would be approved for (0: none).
    pub drawable_now: Fen,
    /// Rules that hold `drawable_now` below `available`, most decisive first.
    pub constraints: Vec<Reason>,
    /// The thresholds version.
    pub threshold_version: u64,
    /// The profile.
    pub profile: &'t str,
}

/// The caps and blockers that do not depend on the amount.
struct Assessment<'t> {
    profile: &'t Profile,
    limits: &'t GradeLimits,
    base: &'t GradeLimits,
    base_min_age: u32,
    base_bureau: BureauRules,
    tightened: bool,
    available: Fen,
    single: Fen,
    /// Largest amount the utilisation limit allows now.
    utilisation: Fen,
    /// Highest `used` the utilisation limit allows.
    utilisation_ceiling: Fen,
    base_utilisation: Fen,
    /// Amount-independent refusal.
    blocked: bool,
    /// Some review rule holds (login pattern, bureau band, bureau unavailable).
    review: bool,
    login_review: bool,
    bureau: BureauVerdict,
}

/// What the bureau rules make of the signal.
#[derive(Default)]
struct BureauVerdict {
    overdue_accounts: bool,
    overdue_days: bool,
    score_low: bool,
    score_review: bool,
    unavailable: bool,
}

impl BureauVerdict {
    fn of(rules: &BureauRules, signal: &BureauSignal) -> BureauVerdict {
        match signal.report() {
            Some(r) => {
                let below = |t: Option<u16>| t.is_some_and(|t| r.score < t);
                let score_low = below(rules.reject_below_score);
                BureauVerdict {
                    overdue_accounts: rules
                        .max_overdue_accounts
                        .is_some_and(|m| r.overdue_accounts > m),
                    overdue_days: rules
                        .max_days_overdue
                        .is_some_and(|m| r.max_days_overdue > m),
                    score_low,
                    score_review: !score_low && below(rules.review_below_score),
                    unavailable: false,
                }
            }
            None => BureauVerdict {
                unavailable: rules.is_on() && matches!(signal, BureauSignal::Unavailable(_)),
                ..BureauVerdict::default()
            },
        }
    }

    fn blocks(&self) -> bool {
        self.overdue_accounts || self.overdue_days || self.score_low
    }

    fn reviews(&self) -> bool {
        self.score_review || self.unavailable
    }
}

impl Assessment<'_> {
    fn drawable_now(&self) -> Fen {
        if self.blocked || self.review {
            Fen::ZERO
        } else {
            self.caps()
        }
    }

    /// The smallest amount cap: what could be drawn if nothing else blocked.
    fn caps(&self) -> Fen {
        self.available.min(self.single).min(self.utilisation)
    }
}

fn assess<'t>(thresholds: &'t Thresholds, ctx: &Context<'_>, user: &UserState) -> Assessment<'t> {
    let base_profile = thresholds.base();
    // The gateway checks that every window's profile exists before it publishes thresholds;
    // should one still be missing, the base profile applies and the decision names it.
    let profile = thresholds.profile(ctx.profile).unwrap_or(base_profile);
    let limits = profile.grade(user.grade);
    let base = base_profile.grade(user.grade);
    let utilisation_ceiling = user.limit.share_bps(limits.max_utilisation_bps);
    let base_ceiling = user.limit.share_bps(base.max_utilisation_bps);
    let login = &profile.login;
    let frequent = login.mode != LoginMode::Off && user.logins_30d >= login.logins_30d;
    let blocked = user.blocklisted
        || user.days_overdue > limits.max_days_overdue
        || user.account_age_days < profile.min_account_age_days
        || (frequent && login.mode == LoginMode::RejectAlone)
        || user.drawdowns_24h >= limits.max_drawdowns_24h
        || user.applications_1h >= limits.max_applications_1h;
    let login_review = frequent
        && login.mode == LoginMode::ReviewWhenCombined
        && (user.new_device || user.applications_1h >= login.combine_applications_1h);
    let bureau = BureauVerdict::of(&profile.bureau, &ctx.bureau);
    let blocked = blocked || bureau.blocks();
    let review = login_review || bureau.reviews();
    Assessment {
        profile,
        limits,
        base,
        base_min_age: base_profile.min_account_age_days,
        base_bureau: base_profile.bureau,
        tightened: !std::ptr::eq(profile, base_profile),
        available: user.available(),
        single: limits.max_single,
        utilisation: utilisation_ceiling.saturating_sub(user.used),
        utilisation_ceiling,
        base_utilisation: base_ceiling.saturating_sub(user.used),
        blocked,
        review,
        login_review,
        bureau,
    }
}

/// Visits every binding reason in precedence order. `amount` is the amount asked for, or
/// `None` for a quote (then the amount caps bind when they hold the quote below `available`).
fn for_each_reason(
    a: &Assessment<'_>,
    ctx: &Context<'_>,
    user: &UserState,
    amount: Option<Fen>,
    include_review: bool,
    mut emit: impl FnMut(Reason),
) {
    let drawable = a.drawable_now();
    let l = a.limits;
    let reason = |code, rule, limit: u64, actual: u64, unit| Reason {
        code,
        rule,
        limit,
        actual,
        unit,
        suggested_amount: None,
        retry_at: None,
    };
    // A rule that would pass under the base profile is a peak-window tightening.
    let peak = |mut r: Reason, passes_under_base: bool| {
        if a.tightened && passes_under_base {
            r.code = ReasonCode::PeakWindowTightened;
            r.retry_at = ctx.window_ends_at.cloned();
        }
        r
    };
    if user.blocklisted {
        emit(reason(
            ReasonCode::Blocklisted,
            Rule::Blocklist,
            0,
            1,
            Unit::Flag,
        ));
    }
    if user.days_overdue > l.max_days_overdue {
        emit(reason(
            ReasonCode::OverdueBalance,
            Rule::Overdue,
            l.max_days_overdue.into(),
            user.days_overdue.into(),
            Unit::Days,
        ));
    }
    let min_age = a.profile.min_account_age_days;
    if user.account_age_days < min_age {
        let r = reason(
            ReasonCode::AccountTooNew,
            Rule::AccountAge,
            min_age.into(),
            user.account_age_days.into(),
            Unit::Days,
        );
        emit(peak(r, user.account_age_days >= a.base_min_age));
    }
    emit_bureau_refusals(a, ctx, &mut emit);
    let login = &a.profile.login;
    if login.mode == LoginMode::RejectAlone && user.logins_30d >= login.logins_30d {
        emit(reason(
            ReasonCode::LoginPatternAnomaly,
            Rule::LoginPattern,
            login.logins_30d.into(),
            user.logins_30d.into(),
            Unit::Count,
        ));
    }
    if user.drawdowns_24h >= l.max_drawdowns_24h {
        let r = reason(
            ReasonCode::VelocityDrawdowns24h,
            Rule::Drawdowns24h,
            l.max_drawdowns_24h.into(),
            user.drawdowns_24h.into(),
            Unit::Count,
        );
        emit(peak(r, user.drawdowns_24h < a.base.max_drawdowns_24h));
    }
    if user.applications_1h >= l.max_applications_1h {
        let r = reason(
            ReasonCode::VelocityApplications1h,
            Rule::Applications1h,
            l.max_applications_1h.into(),
            user.applications_1h.into(),
            Unit::Count,
        );
        emit(peak(r, user.applications_1h < a.base.max_applications_1h));
    }
    // Amount caps: with an amount, a cap binds when the amount is above it; in a quote, when
    // it holds the drawable amount below the available line.
    let probe = amount.unwrap_or(a.available);
    let suggested = Some(drawable);
    if amount.is_some() && probe > a.available {
        let mut r = reason(
            ReasonCode::InsufficientAvailableLine,
            Rule::AvailableLine,
            a.available.get(),
            probe.get(),
            Unit::Fen,
        );
        r.suggested_amount = suggested;
        emit(r);
    }
    if probe > a.single {
        let mut r = reason(
            ReasonCode::SingleDrawdownLimit,
            Rule::SingleDrawdown,
            a.single.get(),
            probe.get(),
            Unit::Fen,
        );
        r.suggested_amount = suggested;
        emit(peak(r, probe <= a.base.max_single));
    }
    // At 100 % utilisation the rule is the available line itself: say it once.
    if probe > a.utilisation && a.utilisation < a.available {
        let mut r = reason(
            ReasonCode::UtilisationLimit,
            Rule::Utilisation,
            a.utilisation_ceiling.get(),
            user.used.get().saturating_add(probe.get()),
            Unit::Fen,
        );
        r.suggested_amount = suggested;
        emit(peak(r, probe <= a.base_utilisation));
    }
    if a.review && !a.blocked && include_review {
        if a.login_review {
            emit(reason(
                ReasonCode::LoginPatternReview,
                Rule::LoginPattern,
                login.logins_30d.into(),
                user.logins_30d.into(),
                Unit::Count,
            ));
        }
        if let (true, Some(r), Some(t)) = (
            a.bureau.score_review,
            ctx.bureau.report(),
            a.profile.bureau.review_below_score,
        ) {
            emit(reason(
                ReasonCode::BureauScoreReview,
                Rule::BureauScore,
                t.into(),
                r.score.into(),
                Unit::Score,
            ));
        }
        if a.bureau.unavailable {
            emit(reason(
                ReasonCode::BureauUnavailableReview,
                Rule::BureauUnavailable,
                0,
                1,
                Unit::Flag,
            ));
        }
    }
}

/// The bureau's amount-independent refusals, in precedence order. A rule that would pass
/// under the base profile's bureau rules is a peak-window tightening, like every other rule.
fn emit_bureau_refusals(a: &Assessment<'_>, ctx: &Context<'_>, emit: &mut impl FnMut(Reason)) {
    let Some(report) = ctx.bureau.report() else {
        return;
    };
    let rules = &a.profile.bureau;
    let base = BureauVerdict::of(&a.base_bureau, &ctx.bureau);
    let mut bound = |code, rule, limit: u64, actual: u64, unit, passes_under_base: bool| {
        let tightened = a.tightened && passes_under_base;
        emit(Reason {
            code: if tightened {
                ReasonCode::PeakWindowTightened
            } else {
                code
            },
            rule,
            limit,
            actual,
            unit,
            suggested_amount: None,
            retry_at: if tightened {
                ctx.window_ends_at.cloned()
            } else {
                None
            },
        });
    };
    if let (true, Some(m)) = (a.bureau.overdue_accounts, rules.max_overdue_accounts) {
        bound(
            ReasonCode::BureauOverdue,
            Rule::BureauOverdueAccounts,
            m.into(),
            report.overdue_accounts.into(),
            Unit::Count,
            !base.overdue_accounts,
        );
    }
    if let (true, Some(m)) = (a.bureau.overdue_days, rules.max_days_overdue) {
        bound(
            ReasonCode::BureauOverdue,
            Rule::BureauOverdueDays,
            m.into(),
            report.max_days_overdue.into(),
            Unit::Days,
            !base.overdue_days,
        );
    }
    if let (true, Some(t)) = (a.bureau.score_low, rules.reject_below_score) {
        bound(
            ReasonCode::BureauScoreLow,
            Rule::BureauScore,
            t.into(),
            report.score.into(),
            Unit::Score,
            !base.score_low,
        );
    }
}

/// Whether a code sends a drawdown to review (rather than refusing it).
const fn is_review(code: ReasonCode) -> bool {
    matches!(
        code,
        ReasonCode::LoginPatternReview
            | ReasonCode::BureauScoreReview
            | ReasonCode::BureauUnavailableReview
    )
}

/// Decides a drawdown. Pure and deterministic; allocates nothing on the approve path.
pub fn evaluate<'t>(
    thresholds: &'t Thresholds,
    ctx: &Context<'_>,
    user: &UserState,
    request: &DrawdownRequest,
) -> Decision<'t> {
    let a = assess(thresholds, ctx, user);
    let drawable_now = a.drawable_now();
    let outcome = if request.amount <= drawable_now && request.amount > Fen::ZERO {
        Outcome::Approved
    } else if a.review && !a.blocked && request.amount <= a.caps() {
        Outcome::Review
    } else {
        Outcome::Rejected
    };
    let mut reasons = ArrayVec::new();
    if outcome != Outcome::Approved {
        // A review lists only what sent it to review; a rejection only what refused it.
        let review = outcome == Outcome::Review;
        for_each_reason(&a, ctx, user, Some(request.amount), review, |r| {
            if review && !is_review(r.code) {
                return;
            }
            // Reasons come in precedence order; past MAX_REASONS the least decisive are dropped.
            let _ = reasons.try_push(r);
        });
    }
    Decision {
        outcome,
        amount: request.amount,
        reasons,
        available: a.available,
        drawable_now,
        reserve_ceiling: user.limit.min(a.utilisation_ceiling),
        threshold_version: thresholds.version(),
        profile: a.profile.name(),
    }
}

/// What a drawdown made now could be approved for, and the rules that bind it.
pub fn quote<'t>(thresholds: &'t Thresholds, ctx: &Context<'_>, user: &UserState) -> Quote<'t> {
    let a = assess(thresholds, ctx, user);
    let mut constraints = Vec::new();
    for_each_reason(&a, ctx, user, None, true, |r| constraints.push(r));
    Quote {
        available: a.available,
        drawable_now: a.drawable_now(),
        constraints,
        threshold_version: thresholds.version(),
        profile: a.profile.name(),
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
