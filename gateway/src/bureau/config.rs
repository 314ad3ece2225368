//! `[bureau]`: where the credit bureau is, when to ask it, and how long to wait.

use crate::setting::{self, Invalid};
use risk_core::{Fen, RiskGrade};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// When a drawdown consults the bureau.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsultRule {
    /// Every drawdown (the default).
    Always,
    /// Drawdowns of users whose grade is in `grades`.
    Grades,
    /// Drawdowns above `amount_above_fen`.
    AmountAbove,
}

/// `[bureau.breaker]`: the circuit breaker (with `guard = true`). Durations are written in
/// milliseconds (the key names the unit).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// The sliding window the rates are measured over (`window_ms`).
    #[serde(rename = "window_ms", with = "setting::millis")]
    pub window: Duration,
    /// Fewest calls in the window before the breaker may open.
    pub min_calls: u32,
    /// Share of failed calls (errors and timeouts) in the window that opens it, 0 to 1.
    pub error_rate: f64,
    /// A call taking at least this long counts as slow (`slow_call_ms`).
    #[serde(rename = "slow_call_ms", with = "setting::millis")]
    pub slow_call: Duration,
    /// Share of slow calls in the window that opens it, 0 to 1.
    pub slow_rate: f64,
    /// How long it stays open before letting probes through (`open_ms`).
    #[serde(rename = "open_ms", with = "setting::millis")]
    pub open_for: Duration,
    /// Successful probes in a row that close it again (also the most probes in flight).
    pub probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            window: Duration::from_secs(10),
            min_calls: 20,
            error_rate: 0.5,
            slow_call: Duration::from_millis(100),
            slow_rate: 0.8,
            open_for: Duration::from_secs(5),
            probes: 3,
        }
    }
}

/// `[bureau]`: the external credit bureau (off unless `url` is set).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BureauConfig {
    /// Base URL, e.g. `http://127.0.0.1:9100` or `https://bureau.internal`
    /// (`GET {url}/v1/score/{user_id}`). Absent: the bureau is off. `GATEWAY_BUREAU_URL`
    /// overrides it.
    pub url: Option<String>,
    /// With an `https://` URL: the CA certificates (PEM) the bureau's certificate is checked
    /// against, instead of the system's trust store (relative: to the working directory).
    pub tls_ca_file: Option<std::path::PathBuf>,
    /// When to consult it: `always`, `grades` or `amount_above`.
    pub consult: ConsultRule,
    /// With `consult = "grades"`: the grades consulted (e.g. `["D", "E"]`).
    pub grades: Vec<RiskGrade>,
    /// With `consult = "amount_above"`: drawdowns above this many fen are consulted.
    pub amount_above_fen: u64,
    /// Guarded mode: per-call budget, bulkhead and circuit breaker. `false` is the naive
    /// baseline of the loadtest demonstration: every call waits up to `unguarded_timeout_ms`.
    pub guard: bool,
    /// Longest a call may take; the budget is the smaller of this and the request's
    /// remaining deadline less `reserve` (`timeout_cap_ms`).
    #[serde(rename = "timeout_cap_ms", with = "setting::millis")]
    pub timeout_cap: Duration,
    /// What of the request's deadline is kept for evaluation and the commit (`reserve_ms`).
    #[serde(rename = "reserve_ms", with = "setting::millis")]
    pub reserve: Duration,
    /// With `guard = false`: how long a call may take (`unguarded_timeout_ms`).
    #[serde(rename = "unguarded_timeout_ms", with = "setting::millis")]
    pub unguarded_timeout: Duration,
    /// Bulkhead: calls in flight at most; a call finding every slot taken is not made.
    pub max_concurrent: u32,
    /// An answer younger than this is reused without a call (`cache_ttl_ms`; zero: never).
    #[serde(rename = "cache_ttl_ms", with = "setting::millis")]
    pub cache_ttl: Duration,
    /// When the bureau cannot answer, an answer younger than this stands in
    /// (`stale_max_age_ms`; zero: never); older, the drawdown goes to review
    /// (`BUREAU_UNAVAILABLE_REVIEW`).
    #[serde(rename = "stale_max_age_ms", with = "setting::millis")]
    pub stale_max_age: Duration,
    /// Most users whose answer is kept.
    pub cache_max_users: u64,
    /// The circuit breaker.
    pub breaker: BreakerConfig,
}

impl Default for BureauConfig {
    fn default() -> Self {
        BureauConfig {
            url: None,
            tls_ca_file: None,
            consult: ConsultRule::Always,
            grades: Vec::new(),
            amount_above_fen: 0,
            guard: true,
            timeout_cap: Duration::from_millis(150),
            reserve: Duration::from_millis(50),
            unguarded_timeout: Duration::from_secs(30),
            max_concurrent: 64,
            cache_ttl: Duration::from_secs(60),
            stale_max_age: Duration::from_secs(3600),
            cache_max_users: 100_000,
            breaker: BreakerConfig::default(),
        }
    }
}

impl BureauConfig {
    /// Checks every value types alone do not, naming the key within `[bureau]`.
    pub fn validate(&self) -> Result<(), Invalid> {
        let bad = |key: &str, problem: &str| Invalid::new(key, problem);
        if let Some(url) = &self.url {
            super::client::base_url(url).map_err(|p| bad("url", &p))?;
        }
        if self.tls_ca_file.is_some()
            && !self.url.as_ref().is_some_and(|u| u.starts_with("https://"))
        {
            return Err(bad("tls_ca_file", "only with an https:// url"));
        }
        let b = &self.breaker;
        setting::at_least_one([
            ("timeout_cap_ms", self.timeout_cap.as_nanos()),
            ("unguarded_timeout_ms", self.unguarded_timeout.as_nanos()),
            ("max_concurrent", u128::from(self.max_concurrent)),
            ("cache_max_users", u128::from(self.cache_max_users)),
            ("breaker.window_ms", b.window.as_nanos()),
            ("breaker.min_calls", u128::from(b.min_calls)),
            ("breaker.slow_call_ms", b.slow_call.as_nanos()),
            ("breaker.open_ms", b.open_for.as_nanos()),
            ("breaker.probes", u128::from(b.probes)),
        ])?;
        for (key, v) in [
            ("breaker.error_rate", self.breaker.error_rate),
            ("breaker.slow_rate", self.breaker.slow_rate),
        ] {
            if !(v > 0.0 && v <= 1.0) {
                return Err(bad(
                    key,
                    &format!("must be a ratio above 0, at most 1 (got {v})"),
                ));
            }
        }
        if self.consult == ConsultRule::Grades && self.grades.is_empty() {
            return Err(bad(
                "grades",
                "consult = \"grades\" needs at least one grade (A to E)",
            ));
        }
        if Fen::new(self.amount_above_fen).is_none() {
            return Err(bad("amount_above_fen", "above the largest amount in fen"));
        }
        if !self.stale_max_age.is_zero() && self.stale_max_age < self.cache_ttl {
            return Err(bad(
                "stale_max_age_ms",
                "must be 0 or at least cache_ttl_ms (a stale answer is an older fresh one)",
            ));
        }
        Ok(())
    }

    /// Whether a drawdown of `amount` by a user of `grade` consults the bureau.
    pub fn consults(&self, grade: RiskGrade, amount: Fen) -> bool {
        match self.consult {
            ConsultRule::Always => true,
            ConsultRule::Grades => self.grades.contains(&grade),
            ConsultRule::AmountAbove => amount.get() > self.amount_above_fen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: &BureauConfig) -> String {
        c.validate().unwrap_err().under("bureau").key().to_owned()
    }

    #[test]
    fn defaults_validate_and_bad_values_name_their_key() {
        BureauConfig::default().validate().unwrap();
        let with = |f: fn(&mut BureauConfig)| {
            let mut c = BureauConfig::default();
            f(&mut c);
            key(&c)
        };
        assert_eq!(with(|c| c.url = Some("ftp://x".into())), "bureau.url");
        assert_eq!(
            with(|c| c.tls_ca_file = Some("ca.pem".into())),
            "bureau.tls_ca_file"
        );
        assert_eq!(
            with(|c| c.timeout_cap = Duration::ZERO),
            "bureau.timeout_cap_ms"
        );
        assert_eq!(with(|c| c.max_concurrent = 0), "bureau.max_concurrent");
        assert_eq!(
            with(|c| c.breaker.error_rate = 1.5),
            "bureau.breaker.error_rate"
        );
        assert_eq!(
            with(|c| c.breaker.slow_rate = 0.0),
            "bureau.breaker.slow_rate"
        );
        assert_eq!(with(|c| c.breaker.probes = 0), "bureau.breaker.probes");
        assert_eq!(with(|c| c.consult = ConsultRule::Grades), "bureau.grades");
        assert_eq!(
            with(|c| c.stale_max_age = c.cache_ttl - Duration::from_millis(1)),
            "bureau.stale_max_age_ms"
        );
        let mut c = BureauConfig {
            url: Some("http://127.0.0.1:9100/".into()),
            ..BureauConfig::default()
        };
        c.validate().unwrap();
        c.stale_max_age = Duration::ZERO;
        c.validate().unwrap();
    }

    #[test]
    fn the_consult_rule() {
        let amount = |v| Fen::new(v).unwrap();
        let mut c = BureauConfig::default();
        assert!(c.consults(RiskGrade::A, amount(1)));
        c.consult = ConsultRule::Grades;
        c.grades = vec![RiskGrade::D, RiskGrade::E];
        assert!(!c.consults(RiskGrade::C, amount(1)));
        assert!(c.consults(RiskGrade::D, amount(1)));
        c.consult = ConsultRule::AmountAbove;
        c.amount_above_fen = 100_000;
        assert!(!c.consults(RiskGrade::E, amount(100_000)));
        assert!(c.consults(RiskGrade::A, amount(100_001)));
    }
}
