//! The simulator's answers: a pure function of the user id, so runs are reproducible.
//!
//! The id is hashed with BLAKE3 (stable across Rust versions and platforms, unlike
//! `std`'s `DefaultHasher`); the digest's bytes pick the band and the figures. Bands, by the
//! first 16 bits of the hash taken as a fraction of 10,000 (see `bureau-contract.md`):
//!
//! | share | score | overdue |
//! |---|---|---|
//! | 3 % | any (300..=850) | `overdue_accounts` 1..=3, `max_days_overdue` 1..=90 |
//! | 5 % | 300..=549 | none |
//! | 12 % | 550..=619 | none |
//! | 80 % | 620..=850 | none |

use serde::{Deserialize, Serialize};

/// The body of `200 GET /v1/score/{user_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoreAnswer {
    /// The id asked about, echoed.
    pub user_id: String,
    /// 300..=850, higher is better.
    pub score: u16,
    /// Accounts currently overdue.
    pub overdue_accounts: u32,
    /// The longest current delinquency, days (0 when none).
    pub max_days_overdue: u32,
    /// Credit inquiries in the last 90 days.
    pub inquiries_90d: u32,
    /// When the bureau's record was last updated (RFC 3339 with offset).
    pub as_of: String,
}

/// Shares of the bands, in basis points of 10,000 (the contract's distribution).
const OVERDUE_BP: u64 = 300;
const LOW_BP: u64 = 500;
const MID_BP: u64 = 1_200;

/// The data snapshot's newest update (`as_of` is up to a week before it).
const SNAPSHOT_END_S: i64 = 1_794_326_400; // 2026-11-11T00:00:00+08:00

/// Whether `id` is an id the simulator answers: 1..=64 characters of `[A-Za-z0-9_-]` (the
/// API's user ids, e.g. `u-000123`).
pub fn valid_user_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The answer for `user_id`: the same id always gets the same answer.
pub fn answer_for(user_id: &str) -> ScoreAnswer {
    let digest = blake3::hash(user_id.as_bytes());
    let b = digest.as_bytes();
    let word = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[i * 8..i * 8 + 8]);
        u64::from_le_bytes(w)
    };
    let band = word(0) % 10_000;
    let (w1, w2, w3) = (word(1), word(2), word(3));
    let in_range = |w: u64, lo: u64, hi: u64| lo + w % (hi - lo + 1);
    let (score, overdue_accounts, max_days_overdue) = if band < OVERDUE_BP {
        (
            in_range(w1, 300, 850),
            in_range(w2, 1, 3),
            in_range(w2 >> 8, 1, 90),
        )
    } else if band < OVERDUE_BP + LOW_BP {
        (in_range(w1, 300, 549), 0, 0)
    } else if band < OVERDUE_BP + LOW_BP + MID_BP {
        (in_range(w1, 550, 619), 0, 0)
    } else {
        (in_range(w1, 620, 850), 0, 0)
    };
    // Mostly few inquiries: 0..=2 for three users in four, up to 9 for the rest.
    let inquiries = if w3 % 4 == 0 {
        in_range(w3 >> 2, 0, 9)
    } else {
        in_range(w3 >> 2, 0, 2)
    };
    let back_s = i64::try_from((w3 >> 16) % (7 * 86_400)).unwrap_or(0);
    let as_of = jiff::Timestamp::from_second(SNAPSHOT_END_S - back_s)
        .map(|t| {
            t.to_zoned_datetime(jiff::tz::TimeZone::fixed(jiff::tz::offset(8)))
                .strftime("%Y-%m-%dT%H:%M:%S%:z")
                .to_string()
        })
        .unwrap_or_else(|_| "2026-11-11T00:00:00+08:00".to_owned());
    // Every value above is bounded by its `in_range` (at most 850, 3, 90, 9).
    let small = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
    ScoreAnswer {
        user_id: user_id.to_owned(),
        score: u16::try_from(score).unwrap_or(850),
        overdue_accounts: small(overdue_accounts),
        max_days_overdue: small(max_days_overdue),
        inquiries_90d: small(inquiries),
        as_of,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_id_gets_the_same_body() {
        for id in ["u-000123", "u-demo-a", "x"] {
            let a = serde_json::to_string(&answer_for(id)).unwrap();
            let b = serde_json::to_string(&answer_for(id)).unwrap();
            assert_eq!(a, b);
        }
        assert_ne!(answer_for("u-000001"), answer_for("u-000002"));
    }

    #[test]
    fn figures_stay_in_their_ranges() {
        let end = jiff::Timestamp::from_second(SNAPSHOT_END_S).unwrap();
        assert_eq!(end.to_string(), "2026-11-10T16:00:00Z");
        for i in 0..10_000 {
            let a = answer_for(&format!("u-{i:06}"));
            assert!((300..=850).contains(&a.score), "{a:?}");
            assert!(a.overdue_accounts <= 3 && a.max_days_overdue <= 90, "{a:?}");
            assert_eq!(a.overdue_accounts == 0, a.max_days_overdue == 0, "{a:?}");
            assert!(a.inquiries_90d <= 9, "{a:?}");
            let t: jiff::Timestamp = a.as_of.parse().unwrap();
            assert!(t.as_second() <= SNAPSHOT_END_S, "{a:?}");
            assert!(a.as_of.ends_with("+08:00"), "{a:?}");
        }
    }

    #[test]
    fn ten_thousand_ids_follow_the_contracts_distribution() {
        let n = 10_000;
        let (mut good, mut mid, mut low, mut overdue) = (0, 0, 0, 0);
        for i in 0..n {
            let a = answer_for(&format!("u-{i:06}"));
            if a.overdue_accounts > 0 {
                overdue += 1;
            } else if a.score >= 620 {
                good += 1;
            } else if a.score >= 550 {
                mid += 1;
            } else {
                low += 1;
            }
        }
        let share = |k: i32| f64::from(k) / f64::from(n);
        // Binomial standard deviations at n = 10,000: 0.4, 0.32, 0.22, 0.17 points; the
        // tolerances are about five of them.
        assert!((share(good) - 0.80).abs() < 0.02, "good {}", share(good));
        assert!((share(mid) - 0.12).abs() < 0.016, "550..619 {}", share(mid));
        assert!((share(low) - 0.05).abs() < 0.011, "<550 {}", share(low));
        assert!(
            (share(overdue) - 0.03).abs() < 0.009,
            "overdue {}",
            share(overdue)
        );
    }

    #[test]
    fn ids_are_checked() {
        assert!(valid_user_id("u-000123"));
        assert!(valid_user_id("u_demo-A9"));
        assert!(!valid_user_id(""));
        assert!(!valid_user_id("u/1"));
        assert!(!valid_user_id("u%201"));
        assert!(!valid_user_id(&"a".repeat(65)));
    }
}
