//! Deterministic demo users, one per risk grade and one per story of the README walkthrough.

use risk_core::{Fen, RiskGrade, UserId, UserState};

/// A demo user: its id, its state, and what it shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoUser {
    /// The id, e.g. `u-demo-a`.
    pub id: UserId,
    /// The seeded state.
    pub state: UserState,
    /// One line for the start-up banner: what a drawdown for this user shows.
    pub note: &'static str,
}

fn fen(v: u64) -> Fen {
    Fen::new(v).expect("demo amounts are far below Fen::MAX")
}

fn user(
    id: &'static str,
    limit: u64,
    grade: RiskGrade,
    note: &'static str,
    tweak: impl FnOnce(&mut UserState),
) -> DemoUser {
    let mut state = UserState::clean(fen(limit), grade);
    state.logins_30d = 12;
    state.account_age_days = 800;
    tweak(&mut state);
    DemoUser {
        id: UserId::parse(id).expect("demo ids follow the id rule"),
        state,
        note,
    }
}

/// The demo users, always the same, in banner order.
pub fn demo_users() -> Vec<DemoUser> {
    use RiskGrade::{A, B, C, D, E};
    vec![
        user(
            "u-demo-a",
            5_000_000,
            A,
            "grade A, 50,000.00 line, clean",
            |_| {},
        ),
        user(
            "u-demo-b",
            3_000_000,
            B,
            "grade B, 30,000.00 line, clean",
            |_| {},
        ),
        user(
            "u-demo-c",
            2_000_000,
            C,
            "grade C, 20,000.00 line, 5,000.00 drawn",
            |s| s.used = fen(500_000),
        ),
        user(
            "u-demo-d",
            1_000_000,
            D,
            "grade D, 10,000.00 line, 3 drawdowns today",
            |s| s.drawdowns_24h = 3,
        ),
        user(
            "u-demo-e",
            500_000,
            E,
            "grade E, 45 days overdue: rejected, appealable",
            |s| s.days_overdue = 45,
        ),
        user(
            "u-demo-near-limit",
            2_000_000,
            B,
            "grade B, 19,500.00 of 20,000.00 drawn: a large drawdown is refused with the amount that would pass",
            |s| s.used = fen(1_950_000),
        ),
        user(
            "u-demo-frequent-login",
            3_000_000,
            A,
            "grade A, 120 logins in 30 days, otherwise clean: frequent use is not a risk",
            |s| s.logins_30d = 120,
        ),
        user(
            "u-demo-blocked",
            2_000_000,
            C,
            "grade C, blocklisted: rejected, appealable",
            |s| s.blocklisted = true,
        ),
        user(
            "u-demo-new-account",
            1_000_000,
            B,
            "grade B, account opened 10 days ago",
            |s| s.account_age_days = 10,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_grade_is_there_and_ids_are_unique() {
        let users = demo_users();
        for g in RiskGrade::ALL {
            assert!(users.iter().any(|u| u.state.grade == g), "{g:?}");
        }
        let mut ids: Vec<_> = users.iter().map(|u| u.id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), users.len());
        assert_eq!(demo_users(), users, "deterministic");
    }

    #[test]
    fn the_stories_hold() {
        let by = |id: &str| {
            demo_users()
                .into_iter()
                .find(|u| u.id.as_str() == id)
                .unwrap()
                .state
        };
        let a = by("u-demo-a");
        assert_eq!(
            (a.limit.get(), a.used, a.grade),
            (5_000_000, Fen::ZERO, RiskGrade::A)
        );
        assert!(by("u-demo-e").days_overdue > 0);
        assert!(by("u-demo-blocked").blocklisted);
        let near = by("u-demo-near-limit");
        assert!(near.available().get() * 20 <= near.limit.get());
        let fl = by("u-demo-frequent-login");
        assert_eq!(fl.logins_30d, 120);
        assert!(!fl.blocklisted && fl.days_overdue == 0 && !fl.new_device);
    }
}
