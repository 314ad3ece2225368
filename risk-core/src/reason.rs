//! The reason-code catalogue: every code a caller can see, risk and transient alike.
//!
//! A code is stable: clients switch on it. The text says what happened and what to do next,
//! in English and Chinese. "Comprehensive evaluation" is not a code and never will be.
//!
//! # Layout
//! - [`Category`]: whether a code is a business answer or a passing condition.
//! - [`Family`]: the cause behind a code, the axis the loadtest counts refusals by.
//! - [`CatalogueEntry`]: one row of the catalogue, served as is by `GET /v1/reason-codes`.
//! - [`catalogue`]: the whole catalogue, in precedence order.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Whether a code is a business answer or a passing condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    /// A risk decision (HTTP 200 with `outcome` rejected or review).
    Risk,
    /// A refusal that says nothing about the user (HTTP 429/503, retry later).
    Transient,
}

/// The cause behind a code, the axis the loadtest counts refusals by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// The user may not borrow at all right now (blocklist, overdue, account age).
    Eligibility,
    /// The amount is above what the line and the standing policy allow.
    CreditLine,
    /// A limit tightened for the active peak window binds; it would pass outside it.
    PeakWindow,
    /// An anomaly rule (velocity, login pattern).
    Anomaly,
    /// A rate limit refused the request.
    RateLimit,
    /// Admission control shed the request.
    Capacity,
    /// A dependency (the store) could not answer.
    Dependency,
    /// The request itself did not arrive in time (its body was sent too slowly).
    Request,
    /// Concurrent drawdowns of the same user kept changing the line under the commit.
    Contention,
}

impl Family {
    /// The wire name (serde's).
    pub const fn as_str(self) -> &'static str {
        match self {
            Family::Eligibility => "eligibility",
            Family::CreditLine => "credit_line",
            Family::PeakWindow => "peak_window",
            Family::Anomaly => "anomaly",
            Family::RateLimit => "rate_limit",
            Family::Capacity => "capacity",
            Family::Dependency => "dependency",
            Family::Request => "request",
            Family::Contention => "contention",
        }
    }

    /// Whether a refusal of this family is transient (retry later) rather than a risk answer.
    /// A family's risk codes, where it has any, are reviews, not refusals (the bureau's
    /// absence is `Dependency`, and its code asks for a review).
    pub const fn is_transient(self) -> bool {
        matches!(
            self,
            Family::RateLimit
                | Family::Capacity
                | Family::Dependency
                | Family::Request
                | Family::Contention
        )
    }
}

macro_rules! catalogue {
    ($(
        $(#[$doc:meta])*
        $variant:ident = $code:literal {
            category: $cat:ident, family: $fam:ident, retryable: $retry:literal, appealable: $appeal:literal,
            message: $msg:literal, message_zh: $msg_zh:literal,
            guidance: $guid:literal, guidance_zh: $guid_zh:literal $(,)?
        }
    )*) => {
        /// A stable reason code.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum ReasonCode {
            $( $(#[$doc])* #[serde(rename = $code)] $variant, )*
        }

        impl ReasonCode {
            /// Every code, in precedence order: a rejection lists its reasons in this order.
            pub const ALL: &'static [ReasonCode] = &[$(ReasonCode::$variant),*];

            /// The catalogue entry of this code.
            pub const fn entry(self) -> &'static CatalogueEntry {
                match self {
                    $(ReasonCode::$variant => &CatalogueEntry {
                        code: ReasonCode::$variant,
                        category: Category::$cat,
                        family: Family::$fam,
                        retryable: $retry,
                        appealable: $appeal,
                        message: $msg,
                        message_zh: $msg_zh,
                        guidance: $guid,
                        guidance_zh: $guid_zh,
                    },)*
                }
            }

            /// The wire name, e.g. `PEAK_WINDOW_TIGHTENED`.
            pub const fn as_str(self) -> &'static str {
                match self { $(ReasonCode::$variant => $code,)* }
            }
        }
    };
}

catalogue! {
    /// The user is on a blocklist.
    Blocklisted = "BLOCKLISTED" {
        category: Risk, family: Eligibility, retryable: false, appealable: true,
        message: "Drawdowns are suspended for this account.",
        message_zh: "该账户的借款功能已暂停。",
        guidance: "Contact customer service; if you believe this is a mistake, file an appeal.",
        guidance_zh: "请联系客服；如认为有误，可提交申诉。",
    }
    /// An instalment is overdue beyond the tolerance.
    OverdueBalance = "OVERDUE_BALANCE" {
        category: Risk, family: Eligibility, retryable: false, appealable: true,
        message: "An instalment is overdue.",
        message_zh: "存在逾期未还的款项。",
        guidance: "Repay the overdue instalment; drawdowns reopen once it is settled.",
        guidance_zh: "请先归还逾期款项，结清后即可再次借款。",
    }
    /// The account is younger than the minimum age.
    AccountTooNew = "ACCOUNT_TOO_NEW" {
        category: Risk, family: Eligibility, retryable: false, appealable: false,
        message: "The account is too new for a drawdown.",
        message_zh: "账户开立时间过短，暂不能借款。",
        guidance: "Drawdowns open once the account reaches the minimum age.",
        guidance_zh: "账户达到最短开户时间后即可借款。",
    }
    /// The credit bureau reports an account with another lender overdue beyond the tolerance.
    BureauOverdue = "BUREAU_OVERDUE" {
        category: Risk, family: Eligibility, retryable: false, appealable: true,
        message: "The credit bureau reports an overdue account with another lender.",
        message_zh: "征信报告显示您在其他机构有逾期账户。",
        guidance: "Settle the overdue account with the other lender; if the report is wrong, file an appeal.",
        guidance_zh: "请先结清在其他机构的逾期款项；如征信报告有误，可提交申诉。",
    }
    /// The credit bureau's score is below the profile's minimum.
    BureauScoreLow = "BUREAU_SCORE_LOW" {
        category: Risk, family: Eligibility, retryable: false, appealable: true,
        message: "The credit bureau score is below the minimum for a drawdown.",
        message_zh: "征信评分低于借款的最低要求。",
        guidance: "Drawdowns reopen once the bureau score reaches the minimum; if the report is wrong, file an appeal.",
        guidance_zh: "征信评分达到最低要求后即可借款；如征信报告有误，可提交申诉。",
    }
    /// The amount exceeds the available line.
    InsufficientAvailableLine = "INSUFFICIENT_AVAILABLE_LINE" {
        category: Risk, family: CreditLine, retryable: false, appealable: false,
        message: "The amount exceeds the available credit line.",
        message_zh: "借款金额超过可用额度。",
        guidance: "Draw at most the available amount, or repay to free up the line.",
        guidance_zh: "请在可用额度内借款，或还款后再借。",
    }
    /// The amount exceeds the single-drawdown limit of the user's grade.
    SingleDrawdownLimit = "SINGLE_DRAWDOWN_LIMIT" {
        category: Risk, family: CreditLine, retryable: false, appealable: false,
        message: "The amount exceeds the limit for a single drawdown.",
        message_zh: "借款金额超过单笔借款上限。",
        guidance: "Draw at most the single-drawdown limit.",
        guidance_zh: "请将单笔借款金额控制在上限以内。",
    }
    /// Drawing the amount would use more of the line than the grade allows.
    UtilisationLimit = "UTILISATION_LIMIT" {
        category: Risk, family: CreditLine, retryable: false, appealable: false,
        message: "The drawdown would use more of the credit line than allowed.",
        message_zh: "本次借款后额度使用比例将超过上限。",
        guidance: "Draw a smaller amount, or repay part of the balance first.",
        guidance_zh: "请减少借款金额，或先归还部分欠款。",
    }
    /// A limit tightened for the active peak window binds; outside the window it would pass.
    PeakWindowTightened = "PEAK_WINDOW_TIGHTENED" {
        category: Risk, family: PeakWindow, retryable: false, appealable: false,
        message: "A limit tightened for the current peak period applies.",
        message_zh: "当前为高峰时段，相关限额临时收紧。",
        guidance: "Draw a smaller amount now, or the full amount after the peak period ends.",
        guidance_zh: "可现在借较小金额，或在高峰时段结束后再借全额。",
    }
    /// Too many drawdowns over the last 24 hours.
    VelocityDrawdowns24h = "VELOCITY_DRAWDOWNS_24H" {
        category: Risk, family: Anomaly, retryable: false, appealable: true,
        message: "Too many drawdowns in the last 24 hours.",
        message_zh: "24小时内借款次数过多。",
        guidance: "Try again tomorrow; if this is wrong, file an appeal.",
        guidance_zh: "请明天再试；如认为有误，可提交申诉。",
    }
    /// Too many credit applications over the last hour.
    VelocityApplications1h = "VELOCITY_APPLICATIONS_1H" {
        category: Risk, family: Anomaly, retryable: false, appealable: true,
        message: "Too many credit applications in the last hour.",
        message_zh: "近1小时内申请次数过多。",
        guidance: "Try again in an hour; if this is wrong, file an appeal.",
        guidance_zh: "请1小时后再试；如认为有误，可提交申诉。",
    }
    /// Legacy rule (off by default): frequent logins alone refuse the drawdown.
    LoginPatternAnomaly = "LOGIN_PATTERN_ANOMALY" {
        category: Risk, family: Anomaly, retryable: false, appealable: true,
        message: "Unusual login activity on this account.",
        message_zh: "账户登录行为异常。",
        guidance: "File an appeal; frequent use of the app is not by itself a risk.",
        guidance_zh: "请提交申诉；频繁使用App本身不构成风险。",
    }
    /// Frequent logins together with another signal: the drawdown waits for verification.
    LoginPatternReview = "LOGIN_PATTERN_REVIEW" {
        category: Risk, family: Anomaly, retryable: false, appealable: true,
        message: "The drawdown needs a quick identity check.",
        message_zh: "本次借款需要完成身份验证。",
        guidance: "Complete the verification in the app; the drawdown continues once it succeeds.",
        guidance_zh: "请在App内完成身份验证，验证通过后借款将继续处理。",
    }
    /// The credit bureau's score is in the review band: a person looks at the drawdown.
    BureauScoreReview = "BUREAU_SCORE_REVIEW" {
        category: Risk, family: Eligibility, retryable: false, appealable: true,
        message: "The drawdown needs a review of the external credit record.",
        message_zh: "本次借款需要人工审核外部征信记录。",
        guidance: "A reviewer checks the drawdown; you are notified of the result, nothing else is needed from you.",
        guidance_zh: "审核人员将核查本次借款并通知您结果，您无需另行操作。",
    }
    /// The credit bureau could not answer in time and no recent answer was at hand: the
    /// drawdown waits for a person instead of being approved or refused without it.
    BureauUnavailableReview = "BUREAU_UNAVAILABLE_REVIEW" {
        category: Risk, family: Dependency, retryable: false, appealable: false,
        message: "The external credit check could not be completed; the drawdown waits for a review.",
        message_zh: "外部征信查询暂时无法完成，本次借款转入人工审核。",
        guidance: "Nothing is refused: a reviewer completes the check and you are notified of the result.",
        guidance_zh: "本次借款未被拒绝：审核人员将完成核查并通知您结果。",
    }
    /// A per-user rate limit refused the request.
    RateLimitedUser = "RATE_LIMITED_USER" {
        category: Transient, family: RateLimit, retryable: true, appealable: false,
        message: "Too many requests for this user.",
        message_zh: "该用户请求过于频繁。",
        guidance: "Retry after the time in Retry-After; this is not a credit decision.",
        guidance_zh: "请按 Retry-After 所示时间后重试；这不是授信决定。",
    }
    /// A global rate limit refused the request.
    RateLimitedGlobal = "RATE_LIMITED_GLOBAL" {
        category: Transient, family: RateLimit, retryable: true, appealable: false,
        message: "The service is receiving more requests than it accepts right now.",
        message_zh: "当前请求量超过服务上限。",
        guidance: "Retry after the time in Retry-After; this is not a credit decision.",
        guidance_zh: "请按 Retry-After 所示时间后重试；这不是授信决定。",
    }
    /// Admission control shed the request under load.
    CapacityShed = "CAPACITY_SHED" {
        category: Transient, family: Capacity, retryable: true, appealable: false,
        message: "The service is at capacity.",
        message_zh: "服务繁忙。",
        guidance: "Retry after the time in Retry-After; this is not a credit decision.",
        guidance_zh: "请按 Retry-After 所示时间后重试；这不是授信决定。",
    }
    /// A dependency could not answer; nothing was written.
    DependencyUnavailable = "DEPENDENCY_UNAVAILABLE" {
        category: Transient, family: Dependency, retryable: true, appealable: false,
        message: "A dependency is unavailable; nothing was recorded.",
        message_zh: "依赖服务暂不可用，本次请求未做任何记录。",
        guidance: "Retry after the time in Retry-After with the same Idempotency-Key.",
        guidance_zh: "请按 Retry-After 所示时间后使用相同的 Idempotency-Key 重试。",
    }
    /// The client's own upload took longer than the body read timeout or the request's
    /// deadline: nothing was done, and the service's capacity had no part in it.
    RequestTimeout = "REQUEST_TIMEOUT" {
        category: Transient, family: Request, retryable: true, appealable: false,
        message: "The request body did not arrive in time; nothing was recorded.",
        message_zh: "请求体未能在规定时间内送达，本次请求未做任何记录。",
        guidance: "Send the whole request promptly (or with a longer X-Request-Deadline-Ms) and retry with the same Idempotency-Key.",
        guidance_zh: "请及时发送完整请求（或设置更长的 X-Request-Deadline-Ms），并使用相同的 Idempotency-Key 重试。",
    }
    /// Concurrent drawdowns of the same user changed the line under every commit attempt;
    /// nothing was written.
    LineContended = "LINE_CONTENDED" {
        category: Transient, family: Contention, retryable: true, appealable: false,
        message: "Too many concurrent drawdowns for this user; nothing was recorded.",
        message_zh: "该用户同时发起的借款过多，本次请求未做任何记录。",
        guidance: "Retry after the time in Retry-After with the same Idempotency-Key; this is not a credit decision.",
        guidance_zh: "请按 Retry-After 所示时间后使用相同的 Idempotency-Key 重试；这不是授信决定。",
    }
}

/// One row of the catalogue, served as is by `GET /v1/reason-codes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CatalogueEntry {
    /// The code.
    pub code: ReasonCode,
    /// Risk decision or transient refusal.
    pub category: Category,
    /// The cause it belongs to.
    pub family: Family,
    /// Whether the same request may succeed later unchanged.
    pub retryable: bool,
    /// Whether a decision with this reason may be appealed.
    pub appealable: bool,
    /// What happened, in English.
    pub message: &'static str,
    /// What happened, in Chinese.
    pub message_zh: &'static str,
    /// What to do next, in English (a decision's reason adds its own figures).
    pub guidance: &'static str,
    /// What to do next, in Chinese.
    pub guidance_zh: &'static str,
}

/// The whole catalogue, in precedence order.
pub fn catalogue() -> impl Iterator<Item = &'static CatalogueEntry> {
    ReasonCode::ALL.iter().map(|c| c.entry())
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_match_serde() {
        for code in ReasonCode::ALL {
            let json = serde_json::to_value(code).unwrap();
            assert_eq!(json, serde_json::Value::String(code.as_str().to_owned()));
            assert_eq!(code.entry().code, *code);
        }
    }

    #[test]
    fn a_transient_code_is_of_a_transient_family_and_each_such_family_has_one() {
        for e in catalogue() {
            if e.category == Category::Transient {
                assert!(e.family.is_transient(), "{}", e.code);
            }
            let json = serde_json::to_value(e.family).unwrap();
            assert_eq!(
                json,
                serde_json::Value::String(e.family.as_str().to_owned())
            );
        }
        for family in catalogue().map(|e| e.family).filter(|f| f.is_transient()) {
            assert!(
                catalogue().any(|e| e.family == family && e.category == Category::Transient),
                "{family:?}"
            );
        }
    }

    #[test]
    fn transient_codes_are_retryable_and_never_appealable() {
        for e in catalogue() {
            if e.category == Category::Transient {
                assert!(e.retryable && !e.appealable, "{}", e.code);
            } else {
                assert!(!e.retryable, "{}", e.code);
            }
            assert!(!e.message.to_lowercase().contains("comprehensive"));
        }
    }

    #[test]
    fn the_api_codes_exist() {
        let names: Vec<_> = ReasonCode::ALL.iter().map(|c| c.as_str()).collect();
        for required in [
            "RATE_LIMITED_USER",
            "RATE_LIMITED_GLOBAL",
            "CAPACITY_SHED",
            "DEPENDENCY_UNAVAILABLE",
            "LINE_CONTENDED",
            "PEAK_WINDOW_TIGHTENED",
        ] {
            assert!(names.contains(&required), "{required}");
        }
    }
}
