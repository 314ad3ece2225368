//! The population: ground truth per user (the gateway never sees it) and client behaviour.
//!
//! # Layout
//! - [`Profile`]: what a user really is.
//! - [`Behaviour`]: how a user's client reacts to 429/503 and timeouts.
//! - [`SeedOverrides`]: seed fields a group sets differently from its profile.
//! - [`profile_seed`]: the seeded state of the `index`-th user of a profile.
//! - [`User`]: one simulated user.
//! - [`Population`]: the population the traffic comes from.
//! - [`Group`]: a group of users with one profile and one client behaviour.
//! - [`build_users`]: the users of a population, grouped.

use serde::{Deserialize, Serialize};

use gateway::request::Priority;
use risk_core::{Fen, RiskGrade, UserState};

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

/// Seed fields a group sets differently from its profile: a table of
/// `PUT /admin/credit-lines` fields (the names of [`UserState`]), checked when the scenario
/// is read by applying it to a profile's state.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct SeedOverrides(serde_json::Map<String, serde_json::Value>);

impl SeedOverrides {
    /// Whether nothing is overridden.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `s` with these fields set; an unknown field or a value of the wrong type is an error.
    pub fn apply(&self, s: &UserState) -> Result<UserState, serde_json::Error> {
        if self.is_empty() {
            return Ok(s.clone());
        }
        let mut fields = match serde_json::to_value(s)? {
            serde_json::Value::Object(m) => m,
            _ => serde_json::Map::new(),
        };
        fields.extend(self.0.clone());
        serde_json::from_value(serde_json::Value::Object(fields))
    }
}

impl<'de> Deserialize<'de> for SeedOverrides {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let o = SeedOverrides(serde_json::Map::deserialize(d)?);
        o.apply(&profile_seed(Profile::Good, 0))
            .map_err(serde::de::Error::custom)?;
        Ok(o)
    }
}

/// An amount written in the source (a literal within [`Fen::MAX`]).
const fn fen(v: u64) -> Fen {
    match Fen::new(v) {
        Some(f) => f,
        None => panic!("a seed amount above Fen::MAX"),
    }
}

/// The seeded state of the `index`-th user of a profile.
pub fn profile_seed(profile: Profile, index: usize) -> UserState {
    let clean = UserState {
        limit: fen(5_000_000),
        used: Fen::ZERO,
        grade: RiskGrade::A,
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
        Profile::FrequentLogin => UserState {
            logins_30d: 120,
            ..clean
        },
        // 75 % used: under every grade-B utilisation cap, so the quote shows room to draw.
        Profile::NearLimit => UserState {
            limit: fen(2_000_000),
            used: fen(1_500_000),
            grade: RiskGrade::B,
            logins_30d: 15,
            account_age_days: 600,
            ..clean
        },
        Profile::Risky => match index % 3 {
            0 => UserState {
                limit: fen(3_000_000),
                used: fen(1_000_000),
                grade: RiskGrade::C,
                days_overdue: 45,
                ..clean
            },
            1 => UserState {
                limit: fen(3_000_000),
                blocklisted: true,
                ..clean
            },
            // Weak grade, already over the grade's utilisation cap, at its daily velocity.
            _ => UserState {
                limit: fen(3_000_000),
                used: fen(1_600_000),
                grade: RiskGrade::E,
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
    /// What gets seeded (the body of `PUT /admin/credit-lines/{user_id}`).
    pub seed: UserState,
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
                    let profile = profile_seed(g.profile, i);
                    // Checked when the scenario was read: the same fields apply to any state.
                    let seed = g.overrides.apply(&profile).unwrap_or(profile);
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
        assert!(r[0].days_overdue > 0 && r[1].blocklisted && r[2].grade == RiskGrade::E);
        let f = profile_seed(Profile::FrequentLogin, 0);
        assert_eq!(f.logins_30d, 120);
        assert!(!f.blocklisted && f.days_overdue == 0 && f.grade == RiskGrade::A);
    }

    #[test]
    fn overrides_apply_on_top_of_the_profile() {
        let o: SeedOverrides = toml::from_str("account_age_days = 1").unwrap();
        let s = o.apply(&profile_seed(Profile::Good, 0)).unwrap();
        assert_eq!(s.account_age_days, 1);
        assert_eq!(s.limit.get(), 5_000_000);
    }

    #[test]
    fn unknown_or_mistyped_overrides_are_refused_when_read() {
        let e = toml::from_str::<SeedOverrides>("limit = 1").unwrap_err();
        assert!(e.to_string().contains("unknown field `limit`"), "{e}");
        let big = format!("limit_fen = {}", Fen::MAX.get() + 1);
        for bad in [
            "risk_grade = \"F\"",
            "used_fen = -1",
            "new_device = 1",
            &big,
        ] {
            assert!(toml::from_str::<SeedOverrides>(bad).is_err(), "{bad}");
        }
    }
}
