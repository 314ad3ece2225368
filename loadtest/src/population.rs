//! The population: ground truth per user (the gateway never sees it) and client behaviour.
//!
//! # Layout
//! - [`Profile`]: what a user really is.
//! - [`Behaviour`]: how a user's client reacts to 429/503 and timeouts.
//! - [`CreditLineSeed`]: the body of `PUT /admin/credit-lines/{user_id}`.
//! - [`SeedOverrides`]: seed fields a group sets differently from its profile (all optional).
//! - [`profile_seed`]: the seeded state of the `index`-th user of a profile.
//! - [`User`]: one simulated user.
//! - [`Population`]: the population the traffic comes from.
//! - [`Group`]: a group of users with one profile and one client behaviour.
//! - [`build_users`]: the users of a population, grouped.

use serde::{Deserialize, Serialize};

use gateway::request::Priority;

/// What a user really is. The report judges the gateway against this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    /// Clean history, ample line: every refusal is a wrong answer.
    Good,
    /// Clean, ample line, but 120 logins in 30 days: the classic false positive.
    FrequentLogin,
    /// Clean, three quarters of the line used; draws within what the quote shows.
    NearLimit,
    /// Overdue, blocklisted or weak grade (rotating): should be refused.
    Risky,
}

impl Profile {
    /// Whether every refusal of this user counts against the gateway.
    pub const fn should_be_approved(self) -> bool {
        !matches!(self, Profile::Risky)
    }

    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Profile::Good => "good",
            Profile::FrequentLogin => "frequent_login",
            Profile::NearLimit => "near_limit",
            Profile::Risky => "risky",
        }
    }
}

/// How a user's client reacts to 429/503 and timeouts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Behaviour {
    /// Honours `Retry-After`, else backs off exponentially, capped; few attempts.
    #[default]
    Polite,
    /// Retries at once, many times.
    RetryStorm,
}

impl Behaviour {
    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Behaviour::Polite => "polite",
            Behaviour::RetryStorm => "retry_storm",
        }
    }
}

/// The body of `PUT /admin/credit-lines/{user_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreditLineSeed {
    /// Credit line.
    pub limit_fen: u64,
    /// Already drawn.
    pub used_fen: u64,
    /// `A` (best) to `E`.
    pub risk_grade: String,
    /// Logins over 30 days.
    pub logins_30d: u32,
    /// Drawdowns over 24 hours.
    pub drawdowns_24h: u32,
    /// Credit applications over the last hour.
    pub applications_1h: u32,
    /// Account age.
    pub account_age_days: u32,
    /// Whether the device is new.
    pub new_device: bool,
    /// Days an instalment is overdue.
    pub days_overdue: u32,
    /// On a blocklist.
    pub blocklisted: bool,
}

/// Seed fields a group sets differently from its profile (all optional).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct SeedOverrides {
    pub limit_fen: Option<u64>,
    pub used_fen: Option<u64>,
    pub risk_grade: Option<String>,
    pub logins_30d: Option<u32>,
    pub drawdowns_24h: Option<u32>,
    pub applications_1h: Option<u32>,
    pub account_age_days: Option<u32>,
    pub new_device: Option<bool>,
    pub days_overdue: Option<u32>,
    pub blocklisted: Option<bool>,
}

impl SeedOverrides {
    /// Whether nothing is overridden.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    fn apply(&self, s: &mut CreditLineSeed) {
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(v) = &self.$f { s.$f = v.clone(); } )* };
        }
        set!(
            limit_fen,
            used_fen,
            risk_grade,
            logins_30d,
            drawdowns_24h,
            applications_1h,
            account_age_days,
            new_device,
            days_overdue,
            blocklisted
        );
    }
}

/// The seeded state of the `index`-th user of a profile.
pub fn profile_seed(profile: Profile, index: usize) -> CreditLineSeed {
    let clean = CreditLineSeed {
        limit_fen: 5_000_000,
        used_fen: 0,
        risk_grade: "A".into(),
        logins_30d: 12,
        drawdowns_24h: 0,
        applications_1h: 0,
        account_age_days: 800,
        new_device: false,
        days_overdue: 0,
        blocklisted: false,
    };
    match profile {
        Profile::Good => clean,
        Profile::FrequentLogin => CreditLineSeed {
            logins_30d: 120,
            ..clean
        },
        // 75 % used: under every grade-B utilisation cap, so the quote shows room to draw.
        Profile::NearLimit => CreditLineSeed {
            limit_fen: 2_000_000,
            used_fen: 1_500_000,
            risk_grade: "B".into(),
            logins_30d: 15,
            account_age_days: 600,
            ..clean
        },
        Profile::Risky => match index % 3 {
            0 => CreditLineSeed {
                limit_fen: 3_000_000,
                used_fen: 1_000_000,
                risk_grade: "C".into(),
                days_overdue: 45,
                ..clean
            },
            1 => CreditLineSeed {
                limit_fen: 3_000_000,
                blocklisted: true,
                ..clean
            },
            // Weak grade, already over the grade's utilisation cap, at its daily velocity.
            _ => CreditLineSeed {
                limit_fen: 3_000_000,
                used_fen: 1_600_000,
                risk_grade: "E".into(),
                drawdowns_24h: 2,
                ..clean
            },
        },
    }
}

/// One simulated user.
#[derive(Debug, Clone)]
pub struct User {
    /// `user_id` on the wire.
    pub id: String,
    /// Index into the scenario's groups.
    pub group: usize,
    /// What gets seeded.
    pub seed: CreditLineSeed,
}

/// The population the traffic comes from. The gateway never sees the ground truth.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Population {
    /// Number of distinct users, split over the groups by share.
    pub users: usize,
    /// The groups.
    #[serde(rename = "group")]
    pub groups: Vec<Group>,
}

/// A group of users with one profile and one client behaviour.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    /// Name in the report (unique).
    pub name: String,
    /// The ground truth of these users.
    pub profile: Profile,
    /// How their client retries.
    #[serde(default)]
    pub behaviour: Behaviour,
    /// Share of the users and of the journeys.
    pub share: f64,
    /// Seeded fields that differ from the profile's defaults.
    #[serde(default, skip_serializing_if = "SeedOverrides::is_empty")]
    pub overrides: SeedOverrides,
    /// `X-Priority` on every request of these users (absent: none sent, so the gateway's
    /// default applies: drawdowns `critical`, credit-line queries `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
}

/// The users of a population, grouped: `result[g]` holds group `g`'s users.
pub fn build_users(population: &Population) -> Vec<Vec<User>> {
    let groups = &population.groups;
    let total_share: f64 = groups.iter().map(|g| g.share).sum();
    groups
        .iter()
        .enumerate()
        .map(|(gi, g)| {
            let want = (population.users as f64 * g.share / total_share).round();
            // A finite, non-negative count no larger than `users`.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let n = (want as usize).max(1);
            let tag: String = g
                .name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                        c
                    } else {
                        '_'
                    }
                })
                .take(40)
                .collect();
            (0..n)
                .map(|i| {
                    let mut seed = profile_seed(g.profile, i);
                    g.overrides.apply(&mut seed);
                    User {
                        id: format!("u-{tag}-{i:06}"),
                        group: gi,
                        seed,
                    }
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn risky_users_rotate_their_reason_and_frequent_login_is_clean() {
        let r: Vec<_> = (0..3).map(|i| profile_seed(Profile::Risky, i)).collect();
        assert!(r[0].days_overdue > 0 && r[1].blocklisted && r[2].risk_grade == "E");
        let f = profile_seed(Profile::FrequentLogin, 0);
        assert_eq!(f.logins_30d, 120);
        assert!(!f.blocklisted && f.days_overdue == 0 && f.risk_grade == "A");
    }

    #[test]
    fn overrides_apply_on_top_of_the_profile() {
        let o = SeedOverrides {
            account_age_days: Some(1),
            ..SeedOverrides::default()
        };
        let mut s = profile_seed(Profile::Good, 0);
        o.apply(&mut s);
        assert_eq!(s.account_age_days, 1);
        assert_eq!(s.limit_fen, 5_000_000);
    }
}
