//! Attribution: every answer the gateway gives is sorted into success or one true cause of
//! refusal, using the reason-code families of `risk_core` (never a copy of the table).
//!
//! # Layout
//! - [`Cause`]: the true cause of a refusal, the axis the report counts by.
//! - [`Decision`]: a risk decision's outcome.
//! - [`Answer`]: what one request got back, classified.
//! - [`Endpoint`]: which endpoint a request went to.

use std::time::Duration;

use risk_core::{Family, ReasonCode};
use serde::{Deserialize, Serialize};

/// The true cause of a refusal, the axis the report counts by: the family of the reason code
/// the gateway answered with, or what the client saw when there was no code to read. On the
/// wire (results.json) each is its snake_case name, a family's being its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Cause {
    /// The refusal carried a reason code of this family.
    Coded(Family),
    /// A refusal without a code the catalogue knows (the vague answer this project exists
    /// to abolish): 5xx without a code, a rejection without reasons, an unknown code.
    Unexplained,
    /// Another 4xx (a request the gateway found invalid, an unknown user).
    ClientError,
    /// No answer before the request timeout.
    Timeout,
    /// The connection failed.
    Connection,
}

impl Cause {
    /// Every cause, in report order: transient before risk, uncoded last.
    pub const ALL: &'static [Cause] = &[
        Cause::Coded(Family::Capacity),
        Cause::Coded(Family::RateLimit),
        Cause::Coded(Family::PeakWindow),
        Cause::Coded(Family::Anomaly),
        Cause::Coded(Family::Dependency),
        Cause::Coded(Family::Request),
        Cause::Coded(Family::Contention),
        Cause::Coded(Family::Eligibility),
        Cause::Coded(Family::CreditLine),
        Cause::Unexplained,
        Cause::ClientError,
        Cause::Timeout,
        Cause::Connection,
    ];

    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Cause::Coded(family) => family.as_str(),
            Cause::Unexplained => "unexplained",
            Cause::ClientError => "client_error",
            Cause::Timeout => "timeout",
            Cause::Connection => "connection",
        }
    }

    /// Whether a client may retry a request refused for this cause.
    pub const fn is_transient(self) -> bool {
        match self {
            Cause::Coded(family) => family.is_transient(),
            Cause::Timeout | Cause::Connection => true,
            Cause::Unexplained | Cause::ClientError => false,
        }
    }
}

impl From<Family> for Cause {
    fn from(family: Family) -> Self {
        Cause::Coded(family)
    }
}

impl Serialize for Cause {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Cause {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Cause::ALL
            .iter()
            .copied()
            .find(|c| c.as_str() == name)
            .ok_or_else(|| serde::de::Error::unknown_variant(&name, &CAUSE_NAMES))
    }
}

/// The wire names, for the error that names them.
const CAUSE_NAMES: [&str; Cause::ALL.len()] = {
    let mut names = [""; Cause::ALL.len()];
    let mut i = 0;
    while i < names.len() {
        names[i] = Cause::ALL[i].as_str();
        i += 1;
    }
    names
};

/// A risk decision's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// Approved and reserved.
    Approved,
    /// Refused for the listed reasons.
    Rejected,
    /// Waits for step-up verification or a person.
    Review,
}

/// What one request got back, classified.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// `GET /v1/credit-lines/{id}` answered.
    Quote {
        /// What a drawdown made now would be approved for.
        drawable_now_fen: u64,
        /// Line minus used.
        available_fen: u64,
    },
    /// `POST /v1/drawdowns` answered with a decision.
    Decision {
        /// The outcome.
        outcome: Decision,
        /// The most decisive reason, when one was given.
        first_reason: Option<ReasonCode>,
        /// The reason's code as sent, kept when the catalogue does not know it.
        raw_reason: Option<String>,
    },
    /// Any non-200 answer.
    Refused {
        /// HTTP status.
        status: u16,
        /// The error code, when the catalogue knows it.
        code: Option<ReasonCode>,
        /// The error code as sent.
        raw_code: Option<String>,
        /// From `Retry-After` (or the body's `retry_after_s`).
        retry_after: Option<Duration>,
    },
    /// No answer in time.
    Timeout,
    /// Connect, write or read failed.
    Connection,
}

/// Which endpoint a request went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /v1/credit-lines/{user_id}`.
    Quote,
    /// `POST /v1/drawdowns`.
    Drawdown,
}

#[derive(Deserialize)]
struct QuoteBody {
    drawable_now_fen: u64,
    available_fen: u64,
}

#[derive(Deserialize)]
struct ReasonBody {
    code: String,
}

#[derive(Deserialize)]
struct DecisionBody {
    outcome: Decision,
    #[serde(default)]
    reasons: Vec<ReasonBody>,
}

#[derive(Deserialize)]
struct ErrorInner {
    code: String,
    #[serde(default)]
    retry_after_s: Option<f64>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorInner,
}

fn known(code: &str) -> Option<ReasonCode> {
    ReasonCode::ALL.iter().copied().find(|c| c.as_str() == code)
}

fn secs(s: f64) -> Option<Duration> {
    (s.is_finite() && s >= 0.0).then(|| Duration::from_secs_f64(s.min(3600.0)))
}

impl Answer {
    /// Classifies a response from its status, `Retry-After` header value and body.
    pub fn from_response(
        endpoint: Endpoint,
        status: u16,
        retry_after: Option<&str>,
        body: &[u8],
    ) -> Answer {
        if status == 200 {
            match endpoint {
                Endpoint::Quote => {
                    if let Ok(q) = serde_json::from_slice::<QuoteBody>(body) {
                        return Answer::Quote {
                            drawable_now_fen: q.drawable_now_fen,
                            available_fen: q.available_fen,
                        };
                    }
                }
                Endpoint::Drawdown => {
                    if let Ok(d) = serde_json::from_slice::<DecisionBody>(body) {
                        let raw = d.reasons.into_iter().next().map(|r| r.code);
                        return Answer::Decision {
                            outcome: d.outcome,
                            first_reason: raw.as_deref().and_then(known),
                            raw_reason: raw,
                        };
                    }
                }
            }
            // A 200 we cannot read: report it as a refusal nobody can explain.
            return Answer::Refused {
                status,
                code: None,
                raw_code: None,
                retry_after: None,
            };
        }
        let err = serde_json::from_slice::<ErrorBody>(body)
            .ok()
            .map(|b| b.error);
        let header = retry_after
            .and_then(|v| v.trim().parse::<f64>().ok())
            .and_then(secs);
        let body_retry = err.as_ref().and_then(|e| e.retry_after_s).and_then(secs);
        let raw_code = err.map(|e| e.code);
        Answer::Refused {
            status,
            code: raw_code.as_deref().and_then(known),
            raw_code,
            retry_after: header.or(body_retry),
        }
    }

    /// `None` for a success (a quote, an approval, a review); else the true cause.
    pub fn refusal_cause(&self) -> Option<Cause> {
        match self {
            Answer::Quote { .. } => None,
            Answer::Decision {
                outcome: Decision::Approved | Decision::Review,
                ..
            } => None,
            Answer::Decision {
                outcome: Decision::Rejected,
                first_reason,
                ..
            } => Some(first_reason.map_or(Cause::Unexplained, |c| c.entry().family.into())),
            Answer::Refused { status, code, .. } => Some(match (status, code) {
                (429, _) => Cause::Coded(Family::RateLimit),
                (503, Some(ReasonCode::CapacityShed)) => Cause::Coded(Family::Capacity),
                (503, Some(ReasonCode::DependencyUnavailable)) => Cause::Coded(Family::Dependency),
                (503, Some(ReasonCode::LineContended)) => Cause::Coded(Family::Contention),
                (400..=499, _) => Cause::ClientError,
                _ => Cause::Unexplained,
            }),
            Answer::Timeout => Some(Cause::Timeout),
            Answer::Connection => Some(Cause::Connection),
        }
    }

    /// The code to count this answer under in the per-second series.
    pub fn code_label(&self) -> Option<String> {
        match self {
            Answer::Decision { raw_reason, .. } => raw_reason.clone(),
            Answer::Refused { raw_code, .. } => raw_code.clone(),
            _ => None,
        }
    }

    /// Whether this is an approved drawdown.
    pub fn is_approved(&self) -> bool {
        matches!(
            self,
            Answer::Decision {
                outcome: Decision::Approved,
                ..
            }
        )
    }

    /// Whether this is a drawdown sent to review.
    pub fn is_review(&self) -> bool {
        matches!(
            self,
            Answer::Decision {
                outcome: Decision::Review,
                ..
            }
        )
    }

    /// The server's `Retry-After`, when it gave one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Answer::Refused { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cause_round_trips_by_its_wire_name_and_an_unknown_name_is_refused() {
        for c in Cause::ALL {
            let json = serde_json::to_string(c).unwrap();
            assert_eq!(json, format!("\"{}\"", c.as_str()));
            assert_eq!(serde_json::from_str::<Cause>(&json).unwrap(), *c);
        }
        let map: std::collections::BTreeMap<Cause, u64> =
            serde_json::from_str(r#"{"capacity":2,"timeout":1}"#).unwrap();
        assert_eq!(map[&Cause::Coded(Family::Capacity)], 2);
        let err = serde_json::from_str::<Cause>(r#""overload""#).unwrap_err();
        assert!(
            err.to_string().contains("unknown variant `overload`"),
            "{err}"
        );
    }

    fn refusal(status: u16, code: &str) -> Answer {
        let body =
            format!(r#"{{"error":{{"code":"{code}","category":"transient","retry_after_s":3}}}}"#);
        Answer::from_response(Endpoint::Drawdown, status, None, body.as_bytes())
    }

    fn rejected(code: &str) -> Answer {
        let body = format!(
            r#"{{"decision_id":"dd_1","outcome":"rejected","amount_fen":1,"reasons":[{{"code":"{code}","category":"risk"}},{{"code":"BLOCKLISTED"}}]}}"#
        );
        Answer::from_response(Endpoint::Drawdown, 200, None, body.as_bytes())
    }

    #[test]
    fn each_refusal_goes_to_its_true_cause() {
        assert_eq!(
            refusal(503, "CAPACITY_SHED").refusal_cause(),
            Some(Cause::Coded(Family::Capacity))
        );
        assert_eq!(
            refusal(503, "DEPENDENCY_UNAVAILABLE").refusal_cause(),
            Some(Cause::Coded(Family::Dependency))
        );
        assert_eq!(
            refusal(429, "RATE_LIMITED_USER").refusal_cause(),
            Some(Cause::Coded(Family::RateLimit))
        );
        assert_eq!(
            refusal(429, "RATE_LIMITED_GLOBAL").refusal_cause(),
            Some(Cause::Coded(Family::RateLimit))
        );
        assert_eq!(
            refusal(404, "USER_NOT_FOUND").refusal_cause(),
            Some(Cause::ClientError)
        );
        assert_eq!(
            refusal(503, "SOMETHING_NEW").refusal_cause(),
            Some(Cause::Unexplained)
        );
        assert_eq!(
            rejected("PEAK_WINDOW_TIGHTENED").refusal_cause(),
            Some(Cause::Coded(Family::PeakWindow))
        );
        assert_eq!(
            rejected("LOGIN_PATTERN_ANOMALY").refusal_cause(),
            Some(Cause::Coded(Family::Anomaly))
        );
        assert_eq!(
            rejected("VELOCITY_DRAWDOWNS_24H").refusal_cause(),
            Some(Cause::Coded(Family::Anomaly))
        );
        assert_eq!(
            rejected("OVERDUE_BALANCE").refusal_cause(),
            Some(Cause::Coded(Family::Eligibility))
        );
        assert_eq!(
            rejected("UTILISATION_LIMIT").refusal_cause(),
            Some(Cause::Coded(Family::CreditLine))
        );
        assert_eq!(
            rejected("NOT_A_CODE").refusal_cause(),
            Some(Cause::Unexplained)
        );
        assert_eq!(Answer::Timeout.refusal_cause(), Some(Cause::Timeout));
    }

    #[test]
    fn the_first_reason_decides_and_every_family_maps() {
        // BLOCKLISTED is listed second, so it does not decide.
        assert_eq!(
            rejected("PEAK_WINDOW_TIGHTENED").code_label().as_deref(),
            Some("PEAK_WINDOW_TIGHTENED")
        );
        for code in ReasonCode::ALL {
            let c: Cause = code.entry().family.into();
            assert_eq!(
                c.as_str(),
                serde_json::to_value(code.entry().family).unwrap()
            );
        }
    }

    #[test]
    fn successes_are_not_refusals() {
        let ok = Answer::from_response(
            Endpoint::Drawdown,
            200,
            None,
            br#"{"outcome":"approved","reasons":[]}"#,
        );
        assert!(ok.is_approved() && ok.refusal_cause().is_none());
        let rv = Answer::from_response(
            Endpoint::Drawdown,
            200,
            None,
            br#"{"outcome":"review","reasons":[{"code":"LOGIN_PATTERN_REVIEW"}]}"#,
        );
        assert!(rv.is_review() && rv.refusal_cause().is_none());
        let q = Answer::from_response(
            Endpoint::Quote,
            200,
            None,
            br#"{"drawable_now_fen":5,"available_fen":9,"constraints":[]}"#,
        );
        assert_eq!(
            q,
            Answer::Quote {
                drawable_now_fen: 5,
                available_fen: 9
            }
        );
        let garbage = Answer::from_response(Endpoint::Quote, 200, None, b"oops");
        assert_eq!(garbage.refusal_cause(), Some(Cause::Unexplained));
    }

    #[test]
    fn retry_after_prefers_the_header() {
        let a = Answer::from_response(
            Endpoint::Drawdown,
            429,
            Some("1"),
            br#"{"error":{"code":"RATE_LIMITED_USER","retry_after_s":3}}"#,
        );
        assert_eq!(a.retry_after(), Some(Duration::from_secs(1)));
        assert_eq!(
            refusal(503, "CAPACITY_SHED").retry_after(),
            Some(Duration::from_secs(3))
        );
    }
}
