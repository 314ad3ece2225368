//! Domain types: who asks, for how much, and what we know about them.
//!
//! # Layout
//! - [`IdError`]: why an identifier was refused.
//! - [`validate_id`]: checks the identifier rule of the API.
//! - [`UserId`]: a validated user identifier.
//! - [`RiskGrade`]: risk grade from the upstream credit system.
//! - [`Channel`]: where a drawdown comes from.
//! - [`UserState`]: what the engine knows about a user when it decides.
//! - [`DrawdownRequest`]: a request to draw an amount against the line.
//! - [`Outcome`]: the answer of the engine.

use crate::money::Fen;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Why an identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Empty or longer than 64 characters.
    #[error("must be 1 to 64 characters long (got {0})")]
    Length(usize),
    /// A character outside `[A-Za-z0-9_-]`.
    #[error("may contain only A-Z, a-z, 0-9, '_' and '-'")]
    Charset,
}

/// Checks the identifier rule of the API: 1–64 characters of `[A-Za-z0-9_-]`.
pub fn validate_id(s: &str) -> Result<(), IdError> {
    if s.is_empty() || s.len() > 64 {
        return Err(IdError::Length(s.chars().count()));
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(IdError::Charset);
    }
    Ok(())
}

/// A validated user identifier.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct UserId(Box<str>);

impl UserId {
    /// Validates and wraps an identifier.
    pub fn parse(s: &str) -> Result<UserId, IdError> {
        validate_id(s)?;
        Ok(UserId(s.into()))
    }

    /// Validates and wraps an identifier already owned, as [`UserId::parse`] does; the
    /// text is kept, not copied, when `s` has no spare capacity (as a deserialised `String`
    /// has).
    pub fn from_string(s: String) -> Result<UserId, IdError> {
        validate_id(&s)?;
        Ok(UserId(s.into_boxed_str()))
    }

    /// The identifier as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for UserId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        UserId::parse(s)
    }
}

impl<'de> Deserialize<'de> for UserId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        UserId::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Risk grade from the upstream credit system: `A` (best) to `E`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum RiskGrade {
    /// Best.
    A,
    /// Good.
    B,
    /// Fair.
    C,
    /// Weak.
    D,
    /// Worst.
    E,
}

impl RiskGrade {
    /// All grades, best first.
    pub const ALL: [RiskGrade; 5] = [Self::A, Self::B, Self::C, Self::D, Self::E];

    /// Position in [`RiskGrade::ALL`], for table lookups.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The grade's letter.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::A => "A",
            Self::B => "B",
            Self::C => "C",
            Self::D => "D",
            Self::E => "E",
        }
    }
}

impl FromStr for RiskGrade {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Self::ALL.into_iter().find(|g| g.as_str() == s).ok_or(())
    }
}

/// Where a drawdown comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// The mobile app.
    App,
    /// The web site.
    Web,
    /// A partner platform.
    Partner,
}

/// What the engine knows about a user when it decides. Its serde names are the API's
/// (`limit_fen`, `used_fen`, `risk_grade`, …): the gateway answers a stored credit line and
/// the loadtest seeds one in exactly this form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserState {
    /// The credit line.
    #[serde(rename = "limit_fen")]
    pub limit: Fen,
    /// The part of the line already drawn (and reserved).
    #[serde(rename = "used_fen")]
    pub used: Fen,
    /// Grade from the upstream credit system.
    #[serde(rename = "risk_grade")]
    pub grade: RiskGrade,
    /// Logins over the last 30 days.
    pub logins_30d: u32,
    /// Drawdowns over the last 24 hours.
    pub drawdowns_24h: u32,
    /// Credit applications over the last hour.
    pub applications_1h: u32,
    /// Days since the account was opened.
    pub account_age_days: u32,
    /// The current device was first seen recently.
    pub new_device: bool,
    /// Days the oldest unpaid instalment is overdue (0: none).
    pub days_overdue: u32,
    /// On a blocklist.
    pub blocklisted: bool,
}

impl UserState {
    /// A clean user with this line and grade and nothing else notable.
    pub const fn clean(limit: Fen, grade: RiskGrade) -> UserState {
        UserState {
            limit,
            used: Fen::ZERO,
            grade,
            logins_30d: 0,
            drawdowns_24h: 0,
            applications_1h: 0,
            account_age_days: 365,
            new_device: false,
            days_overdue: 0,
            blocklisted: false,
        }
    }

    /// `limit - used`, floored at zero.
    pub const fn available(&self) -> Fen {
        self.limit.saturating_sub(self.used)
    }
}

/// A request to draw an amount against the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrawdownRequest {
    /// The amount asked for; at least one fen.
    pub amount: Fen,
    /// Where it comes from.
    pub channel: Channel,
}

/// The answer of the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Approved: the amount may be reserved.
    Approved,
    /// Refused, with principal reasons.
    Rejected,
    /// Neither: waits for a step-up verification or a person.
    Review,
}

impl Outcome {
    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Approved => "approved",
            Self::Rejected => "rejected",
            Self::Review => "review",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_the_api_rule() {
        assert!(UserId::parse("u-000123").is_ok());
        assert!(UserId::parse(&"a".repeat(64)).is_ok());
        assert_eq!(UserId::parse(""), Err(IdError::Length(0)));
        assert_eq!(UserId::parse(&"a".repeat(65)), Err(IdError::Length(65)));
        assert_eq!(UserId::parse("u 1"), Err(IdError::Charset));
        assert_eq!(UserId::parse("用户"), Err(IdError::Charset));
    }

    #[test]
    fn owned_ids_follow_the_same_rule_and_are_kept() {
        for s in [
            "u-000123",
            "",
            "u 1",
            "用户",
            &"a".repeat(64),
            &"a".repeat(65),
        ] {
            assert_eq!(UserId::from_string(s.to_owned()), UserId::parse(s), "{s:?}");
        }
        let s = String::from("u-1");
        let at = s.as_ptr();
        assert_eq!(UserId::from_string(s).unwrap().as_str().as_ptr(), at);
    }

    #[test]
    fn grades_round_trip() {
        for g in RiskGrade::ALL {
            assert_eq!(g.as_str().parse::<RiskGrade>(), Ok(g));
            assert_eq!(RiskGrade::ALL[g.index()], g);
        }
        assert!("F".parse::<RiskGrade>().is_err());
    }
}
