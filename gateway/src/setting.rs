//! What every subsystem's configuration type shares: the serde forms of its units, and the
//! error of a value out of range.
//!
//! A TOML key keeps its unit in its name (`idle_timeout_ms`, `buffer_pct`,
//! `idempotency_retention_hours`) and holds a whole number; the field behind it holds the
//! typed value (`Duration`, a ratio). Each form below reads and writes one such unit, for
//! `#[serde(with = "…")]`:
//!
//! ```
//! use std::time::Duration;
//! #[derive(serde::Deserialize)]
//! struct Section {
//!     #[serde(rename = "idle_timeout_ms", with = "gateway::setting::millis")]
//!     idle_timeout: Duration,
//! }
//! let s: Section = toml::from_str("idle_timeout_ms = 1500").unwrap();
//! assert_eq!(s.idle_timeout, Duration::from_millis(1500));
//! ```
//!
//! # Layout
//! - [`millis`], [`hours`], [`days`]: a `Duration` as a whole number of the unit.
//! - [`percent`]: a ratio as whole percent (`50` is 0.5).
//! - [`percent_or_off`]: an optional ratio as whole percent, `0` for none.
//! - [`Invalid`]: a value out of range, naming its dotted key.

use serde::{Deserialize, Deserializer, Serializer};
use std::time::Duration;

/// A value out of range: its dotted key (within the section that checked it, until
/// [`Invalid::under`] names the section) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct Invalid {
    key: String,
    problem: String,
}

impl Invalid {
    /// `key` is wrong: `problem`.
    pub fn new(key: impl Into<String>, problem: impl Into<String>) -> Self {
        Invalid {
            key: key.into(),
            problem: problem.into(),
        }
    }

    /// The same error with its key inside `section` (`lag_low_ms` under `server.overload`).
    #[must_use]
    pub fn under(mut self, section: &str) -> Self {
        self.key = format!("{section}.{}", self.key);
        self
    }

    /// The dotted key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// What is wrong with it.
    pub fn problem(&self) -> &str {
        &self.problem
    }
}

/// Checks that each `(key, value)` is not zero (a count of at least 1, a positive duration).
pub fn at_least_one<'a>(values: impl IntoIterator<Item = (&'a str, u128)>) -> Result<(), Invalid> {
    match values.into_iter().find(|(_, v)| *v == 0) {
        Some((key, _)) => Err(Invalid::new(key, "must be at least 1")),
        None => Ok(()),
    }
}

/// `d` in whole units of `unit_ms` milliseconds (saturating).
fn write_in<S: Serializer>(d: Duration, unit_ms: u64, s: S) -> Result<S::Ok, S::Error> {
    let units = d.as_millis() / u128::from(unit_ms);
    s.serialize_u64(u64::try_from(units).unwrap_or(u64::MAX))
}

/// Whole units of `unit_ms` milliseconds; a number past what a `Duration` holds is refused.
fn read_in<'de, D: Deserializer<'de>>(unit_ms: u64, d: D) -> Result<Duration, D::Error> {
    let n = u64::deserialize(d)?;
    n.checked_mul(unit_ms)
        .map(Duration::from_millis)
        .ok_or_else(|| serde::de::Error::custom(format!("{n} is too large")))
}

/// A module of `serialize`/`deserialize` for a `Duration` in whole units of `$ms`
/// milliseconds.
macro_rules! duration_in {
    ($(#[$doc:meta])* $name:ident, $ms:expr) => {
        $(#[$doc])*
        pub mod $name {
            use super::*;

            /// Writes whole units (saturating).
            pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
                write_in(*d, $ms, s)
            }

            /// Reads whole units.
            pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
                read_in($ms, d)
            }
        }
    };
}

duration_in!(
    /// A `Duration` as whole milliseconds.
    millis,
    1
);
duration_in!(
    /// A `Duration` as whole hours.
    hours,
    3_600_000
);
duration_in!(
    /// A `Duration` as whole days.
    days,
    86_400_000
);

/// A ratio as whole percent: `50` is 0.5.
pub mod percent {
    use super::*;

    /// Writes the nearest whole percent.
    pub fn serialize<S: Serializer>(ratio: &f64, s: S) -> Result<S::Ok, S::Error> {
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "`as` saturates: a ratio read from whole percent writes back the same"
        )]
        s.serialize_u32((ratio * 100.0).round() as u32)
    }

    /// Reads whole percent.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        u32::deserialize(d).map(|p| f64::from(p) / 100.0)
    }
}

/// An optional ratio as whole percent, `0` for none.
pub mod percent_or_off {
    use super::*;

    /// Writes the nearest whole percent, `0` for none.
    pub fn serialize<S: Serializer>(ratio: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
        percent::serialize(&ratio.unwrap_or(0.0), s)
    }

    /// Reads whole percent, `0` as none.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        percent::deserialize(d).map(|r| (r > 0.0).then_some(r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Units {
        #[serde(with = "millis")]
        ms: Duration,
        #[serde(with = "hours")]
        h: Duration,
        #[serde(with = "days")]
        d: Duration,
        #[serde(with = "percent")]
        pct: f64,
        #[serde(with = "percent_or_off")]
        off: Option<f64>,
        #[serde(with = "percent_or_off")]
        on: Option<f64>,
    }

    #[test]
    fn each_unit_reads_and_writes_back_the_same_number() {
        let text = "ms = 1500\nh = 24\nd = 30\npct = 40\noff = 0\non = 90\n";
        let u: Units = toml::from_str(text).unwrap();
        assert_eq!(
            u,
            Units {
                ms: Duration::from_millis(1500),
                h: Duration::from_secs(24 * 3600),
                d: Duration::from_secs(30 * 86_400),
                pct: 0.4,
                off: None,
                on: Some(0.9),
            }
        );
        assert_eq!(toml::to_string(&u).unwrap(), text);
    }

    #[test]
    fn a_negative_or_oversized_number_is_refused() {
        assert!(
            toml::from_str::<Units>("ms = -1\nh = 1\nd = 1\npct = 1\noff = 0\non = 0\n").is_err()
        );
        let e = toml::from_str::<Units>(
            "ms = 1\nh = 1\nd = 999999999999999\npct = 1\noff = 0\non = 0\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("999999999999999"), "{e}");
    }

    #[test]
    fn invalid_names_its_key_within_the_section() {
        let e = at_least_one([("a", 1), ("b", 0)])
            .unwrap_err()
            .under("server");
        assert_eq!(e.to_string(), "server.b: must be at least 1");
        assert!(at_least_one([("a", 1)]).is_ok());
    }
}
