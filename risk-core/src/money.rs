//! Money as integer minor units (fen): no floating point, checked arithmetic.
//!
//! # Layout
//! - [`Fen`]: an amount of money in fen, never negative.
//! - [`TooLarge`]: an amount above [`Fen::MAX`], refused when one is read.

use serde::{Deserialize, Serialize};
use std::fmt;

/// An amount of money in fen (1 yuan = 100 fen). Never negative.
///
/// Arithmetic is checked or saturating by name; there is no `Add` impl, so an
/// overflow can never pass silently.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(try_from = "u64", into = "u64")]
pub struct Fen(u64);

/// An amount above [`Fen::MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0} fen is more than the largest amount, 10^15 fen")]
pub struct TooLarge(pub u64);

/// Read as [`Fen::new`] reads it: an amount above [`Fen::MAX`] is refused, so no `Fen`
/// deserialized from a document breaks the bound the engine's arithmetic relies on.
impl TryFrom<u64> for Fen {
    type Error = TooLarge;

    fn try_from(fen: u64) -> Result<Fen, TooLarge> {
        Fen::new(fen).ok_or(TooLarge(fen))
    }
}

impl From<Fen> for u64 {
    fn from(fen: Fen) -> u64 {
        fen.0
    }
}

impl Fen {
    /// Zero fen.
    pub const ZERO: Fen = Fen(0);
    /// The largest amount the engine accepts: 10^15 fen (10 trillion yuan), far above any
    /// credit line, and small enough that `limit * 10_000` never overflows a `u64`.
    pub const MAX: Fen = Fen(1_000_000_000_000_000);

    /// An amount, if it is within `0..=Fen::MAX`.
    pub const fn new(fen: u64) -> Option<Fen> {
        if fen <= Self::MAX.0 {
            Some(Fen(fen))
        } else {
            None
        }
    }

    /// The amount in fen.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// `self + rhs`, or `None` past [`Fen::MAX`].
    pub const fn checked_add(self, rhs: Fen) -> Option<Fen> {
        match self.0.checked_add(rhs.0) {
            Some(v) => Fen::new(v),
            None => None,
        }
    }

    /// `self - rhs`, or `None` below zero.
    pub const fn checked_sub(self, rhs: Fen) -> Option<Fen> {
        match self.0.checked_sub(rhs.0) {
            Some(v) => Some(Fen(v)),
            None => None,
        }
    }

    /// `self - rhs`, floored at zero.
    pub const fn saturating_sub(self, rhs: Fen) -> Fen {
        Fen(self.0.saturating_sub(rhs.0))
    }

    /// `self * bps / 10_000`, rounded down: a share of an amount in basis points.
    pub const fn share_bps(self, bps: u16) -> Fen {
        // self <= 10^15 and bps <= 10^4, so the product fits in u64 (< 1.9e19).
        Fen(self.0 * bps as u64 / 10_000)
    }

    /// The smaller of two amounts.
    pub fn min(self, other: Fen) -> Fen {
        Ord::min(self, other)
    }
}

impl fmt::Display for Fen {
    /// Formats as yuan with two decimals, e.g. `5000.00`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.0 / 100, self.0 % 100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_enforced() {
        assert_eq!(Fen::new(0), Some(Fen::ZERO));
        assert_eq!(Fen::new(Fen::MAX.get()), Some(Fen::MAX));
        assert_eq!(Fen::new(Fen::MAX.get() + 1), None);
        assert_eq!(Fen::MAX.checked_add(Fen(1)), None);
        assert_eq!(Fen(5).checked_sub(Fen(6)), None);
        assert_eq!(Fen(5).saturating_sub(Fen(6)), Fen::ZERO);
    }

    #[test]
    fn share_rounds_down_and_cannot_overflow() {
        assert_eq!(Fen(999).share_bps(5_000), Fen(499));
        assert_eq!(Fen::MAX.share_bps(10_000), Fen::MAX);
    }

    #[test]
    fn displays_as_yuan() {
        assert_eq!(Fen(500_000).to_string(), "5000.00");
        assert_eq!(Fen(7).to_string(), "0.07");
    }
}
