//! Thresholds: a versioned JSON document of named profiles, validated into a compiled form.
//!
//! Operators write the document (see `thresholds/default.json`); [`Thresholds::from_json`]
//! checks every field and names the first bad one. The compiled [`Thresholds`] is what the
//! engine reads: fixed-size tables per grade, ratios as integer basis points.
//!
//! # Layout
//! - [`DEFAULT_DOCUMENT`]: the built-in document.
//! - [`ThresholdsError`]: a document that failed to parse or validate.
//! - [`ThresholdsDocument`]: the thresholds document as operators write it (and as `GET …
//! - [`ProfileDocument`]: one profile of the document.
//! - [`BureauRulesDocument`]: the credit-bureau rules of a profile as written.
//! - [`LoginPatternDocument`]: the login-pattern rule as written.
//! - [`LoginMode`]: how the login-pattern rule acts.
//! - [`GradeDocument`]: limits for one grade as written.
//! - [`GradeLimits`]: compiled limits for one grade.
//! - [`LoginRule`]: the compiled login-pattern rule.

use crate::domain::RiskGrade;
use crate::money::Fen;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The built-in document: `normal` and `peak` profiles.
pub const DEFAULT_DOCUMENT: &str = include_str!("../thresholds/default.json");

/// A document that failed to parse or validate. `field` is a dotted path into the document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct ThresholdsError {
    field: String,
    problem: String,
}

impl ThresholdsError {
    fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            problem: problem.into(),
        }
    }

    /// The dotted path of the offending field (`profiles.peak.grades.A.max_utilisation`).
    pub fn field(&self) -> &str {
        &self.field
    }

    /// What is wrong with it.
    pub fn problem(&self) -> &str {
        &self.problem
    }
}

/// The largest thresholds version: 2^53 - 1. Redis's Lua compares versions as doubles, and
/// JSON readers in many languages hold numbers as doubles, exact only up to here; a larger
/// version would compare equal to its neighbours (and, at 2^64 - 1, leave no later one).
pub const MAX_VERSION: u64 = (1 << 53) - 1;

/// The thresholds document as operators write it (and as `GET /admin/thresholds` returns it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdsDocument {
    /// Strictly increasing version; an instance refuses a version not above its current one.
    pub version: u64,
    /// The profile in force outside peak windows; peak tightening is measured against it.
    pub base_profile: String,
    /// Profiles by name.
    pub profiles: BTreeMap<String, ProfileDocument>,
}

/// One profile of the document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileDocument {
    /// Accounts younger than this may not draw.
    #[serde(default)]
    pub min_account_age_days: i64,
    /// The login-pattern rule.
    pub login_pattern: LoginPatternDocument,
    /// Limits per grade; every grade A–E must be present.
    pub grades: BTreeMap<String, GradeDocument>,
    /// Rules on the external credit-bureau signal; absent: the bureau is ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bureau: Option<BureauRulesDocument>,
}

/// The credit-bureau rules of a profile as written; each absent field turns its rule off.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BureauRulesDocument {
    /// A bureau score below this (300 to 850) rejects the drawdown (`BUREAU_SCORE_LOW`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reject_below_score: Option<i64>,
    /// A bureau score below this, and not rejected, sends it to review (`BUREAU_SCORE_REVIEW`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review_below_score: Option<i64>,
    /// More overdue accounts elsewhere than this rejects it (`BUREAU_OVERDUE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_overdue_accounts: Option<i64>,
    /// An account elsewhere overdue more days than this rejects it (`BUREAU_OVERDUE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_days_overdue: Option<i64>,
}

/// The login-pattern rule as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginPatternDocument {
    /// What the rule does.
    pub mode: LoginMode,
    /// Logins over 30 days from which the rule considers the pattern unusual.
    pub logins_30d: i64,
    /// With `review_when_combined`: applications in the last hour that, together with frequent
    /// logins, send the drawdown to review (a new device does too).
    #[serde(default = "default_combine_applications")]
    pub combine_applications_1h: i64,
}

fn default_combine_applications() -> i64 {
    3
}

/// How the login-pattern rule acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoginMode {
    /// Frequent logins never refuse; combined with a new device or an application burst they
    /// send the drawdown to review. The default.
    ReviewWhenCombined,
    /// Legacy behaviour, kept only to reproduce the classic false positive in the loadtest's
    /// naive configuration: frequent logins alone reject.
    RejectAlone,
    /// The rule is off.
    Off,
}

/// Limits for one grade as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GradeDocument {
    /// Largest single drawdown, in fen.
    pub max_single_fen: i64,
    /// Largest share of the line that may be in use after a drawdown, 0 to 1.
    pub max_utilisation: f64,
    /// A drawdown is refused once this many were made in the last 24 hours.
    pub max_drawdowns_24h: i64,
    /// A drawdown is refused once this many applications were made in the last hour.
    pub max_applications_1h: i64,
    /// Largest tolerated overdue, in days.
    pub max_days_overdue: i64,
}

/// Compiled limits for one grade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GradeLimits {
    /// Largest single drawdown.
    pub max_single: Fen,
    /// Largest utilisation after a drawdown, in basis points (10,000 = the whole line).
    pub max_utilisation_bps: u16,
    /// Velocity: drawdowns in 24 h at which a new one is refused.
    pub max_drawdowns_24h: u32,
    /// Velocity: applications in 1 h at which a drawdown is refused.
    pub max_applications_1h: u32,
    /// Overdue tolerance in days.
    pub max_days_overdue: u32,
}

/// The compiled login-pattern rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginRule {
    /// What it does.
    pub mode: LoginMode,
    /// Threshold on logins over 30 days.
    pub logins_30d: u32,
    /// Applications in 1 h that count as a second signal.
    pub combine_applications_1h: u32,
}

/// The compiled credit-bureau rules of a profile (`None`: that rule is off).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BureauRules {
    /// Scores below this reject.
    pub reject_below_score: Option<u16>,
    /// Scores below this (and not rejected) go to review.
    pub review_below_score: Option<u16>,
    /// More overdue accounts than this reject.
    pub max_overdue_accounts: Option<u32>,
    /// An account overdue more days than this rejects.
    pub max_days_overdue: Option<u32>,
}

impl BureauRules {
    /// Whether any rule reads the bureau: only then does its unavailability matter.
    pub const fn is_on(&self) -> bool {
        self.reject_below_score.is_some()
            || self.review_below_score.is_some()
            || self.max_overdue_accounts.is_some()
            || self.max_days_overdue.is_some()
    }
}

/// A compiled profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    name: Box<str>,
    /// Minimum account age in days.
    pub min_account_age_days: u32,
    /// The login-pattern rule.
    pub login: LoginRule,
    /// The credit-bureau rules (all off when the document has no `bureau`).
    pub bureau: BureauRules,
    grades: [GradeLimits; 5],
}

impl Profile {
    /// The profile's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Limits for a grade.
    pub fn grade(&self, grade: RiskGrade) -> &GradeLimits {
        &self.grades[grade.index()]
    }
}

/// A validated, compiled thresholds document: what the engine evaluates against.
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    version: u64,
    base: usize,
    profiles: Box<[Profile]>,
    document: ThresholdsDocument,
}

impl Thresholds {
    /// Parses and validates a JSON document.
    pub fn from_json(json: &str) -> Result<Thresholds, ThresholdsError> {
        let doc: ThresholdsDocument = serde_json::from_str(json).map_err(|e| {
            ThresholdsError::new("document", format!("not a valid thresholds document: {e}"))
        })?;
        Thresholds::compile(doc)
    }

    /// The built-in default (`normal` and `peak`), version 1.
    pub fn embedded_default() -> Thresholds {
        Thresholds::from_json(DEFAULT_DOCUMENT)
            .expect("the embedded thresholds document is valid: a unit test parses it")
    }

    /// Validates a parsed document and compiles it.
    pub fn compile(doc: ThresholdsDocument) -> Result<Thresholds, ThresholdsError> {
        if doc.version == 0 {
            return Err(ThresholdsError::new("version", "must be at least 1"));
        }
        if doc.version > MAX_VERSION {
            return Err(ThresholdsError::new(
                "version",
                "must be at most 9007199254740991 (2^53 - 1, the largest integer every store \
                 and JSON reader holds exactly)",
            ));
        }
        if doc.profiles.is_empty() {
            return Err(ThresholdsError::new(
                "profiles",
                "at least one profile is required",
            ));
        }
        let mut profiles = Vec::with_capacity(doc.profiles.len());
        for (name, p) in &doc.profiles {
            profiles.push(compile_profile(name, p)?);
        }
        let base = profiles
            .iter()
            .position(|p| *p.name == *doc.base_profile)
            .ok_or_else(|| {
                ThresholdsError::new(
                    "base_profile",
                    format!("profile {:?} is not defined in profiles", doc.base_profile),
                )
            })?;
        Ok(Thresholds {
            version: doc.version,
            base,
            profiles: profiles.into(),
            document: doc,
        })
    }

    /// Checks that every named profile exists (the gateway checks its peak windows' profiles).
    pub fn require_profiles<'a>(
        &self,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), ThresholdsError> {
        for name in names {
            if self.profile(name).is_none() {
                return Err(ThresholdsError::new(
                    format!("profiles.{name}"),
                    "missing: a peak window of the gateway's policy uses this profile",
                ));
            }
        }
        Ok(())
    }

    /// The document's version.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// A profile by name.
    pub fn profile(&self, name: &str) -> Option<&Profile> {
        self.profiles.iter().find(|p| &*p.name == name)
    }

    /// The base profile (in force outside peak windows).
    pub fn base(&self) -> &Profile {
        &self.profiles[self.base]
    }

    /// The document this was compiled from.
    pub fn document(&self) -> &ThresholdsDocument {
        &self.document
    }
}

fn non_negative_u32(field: &str, v: i64) -> Result<u32, ThresholdsError> {
    u32::try_from(v).map_err(|_| {
        if v < 0 {
            ThresholdsError::new(field, format!("must not be negative (got {v})"))
        } else {
            ThresholdsError::new(field, format!("too large (got {v}, at most {})", u32::MAX))
        }
    })
}

fn compile_profile(name: &str, p: &ProfileDocument) -> Result<Profile, ThresholdsError> {
    let at = |f: &str| format!("profiles.{name}.{f}");
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(ThresholdsError::new(
            format!("profiles.{name:?}"),
            "a profile name is 1 or more characters of A-Z, a-z, 0-9, '_' and '-'",
        ));
    }
    let login = LoginRule {
        mode: p.login_pattern.mode,
        logins_30d: non_negative_u32(&at("login_pattern.logins_30d"), p.login_pattern.logins_30d)?,
        combine_applications_1h: non_negative_u32(
            &at("login_pattern.combine_applications_1h"),
            p.login_pattern.combine_applications_1h,
        )?,
    };
    if login.mode != LoginMode::Off && login.logins_30d == 0 {
        return Err(ThresholdsError::new(
            at("login_pattern.logins_30d"),
            "must be at least 1 (0 would flag every user); use mode \"off\" to disable the rule",
        ));
    }
    for key in p.grades.keys() {
        if key.parse::<RiskGrade>().is_err() {
            return Err(ThresholdsError::new(
                at(&format!("grades.{key}")),
                "unknown grade (expected one of A, B, C, D, E)",
            ));
        }
    }
    let mut grades = [GradeLimits {
        max_single: Fen::ZERO,
        max_utilisation_bps: 0,
        max_drawdowns_24h: 0,
        max_applications_1h: 0,
        max_days_overdue: 0,
    }; 5];
    for grade in RiskGrade::ALL {
        let g_at = |f: &str| at(&format!("grades.{}.{f}", grade.as_str()));
        let g = p.grades.get(grade.as_str()).ok_or_else(|| {
            ThresholdsError::new(at(&format!("grades.{}", grade.as_str())), "missing")
        })?;
        let max_single = u64::try_from(g.max_single_fen)
            .ok()
            .and_then(Fen::new)
            .ok_or_else(|| {
                ThresholdsError::new(
                    g_at("max_single_fen"),
                    format!(
                        "must be between 0 and {} fen (got {})",
                        Fen::MAX.get(),
                        g.max_single_fen
                    ),
                )
            })?;
        if !(0.0..=1.0).contains(&g.max_utilisation) {
            return Err(ThresholdsError::new(
                g_at("max_utilisation"),
                format!(
                    "must be a ratio between 0 and 1 (got {})",
                    g.max_utilisation
                ),
            ));
        }
        // In [0, 10_000] after the range check above, so the cast neither truncates nor wraps.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let max_utilisation_bps = (g.max_utilisation * 10_000.0).round() as u16;
        grades[grade.index()] = GradeLimits {
            max_single,
            max_utilisation_bps,
            max_drawdowns_24h: non_negative_u32(&g_at("max_drawdowns_24h"), g.max_drawdowns_24h)?,
            max_applications_1h: non_negative_u32(
                &g_at("max_applications_1h"),
                g.max_applications_1h,
            )?,
            max_days_overdue: non_negative_u32(&g_at("max_days_overdue"), g.max_days_overdue)?,
        };
    }
    Ok(Profile {
        name: name.into(),
        min_account_age_days: non_negative_u32(
            &at("min_account_age_days"),
            p.min_account_age_days,
        )?,
        login,
        bureau: compile_bureau(name, p.bureau.as_ref())?,
        grades,
    })
}

/// The bureau's score range.
const SCORE_RANGE: std::ops::RangeInclusive<i64> = 300..=850;

fn compile_bureau(
    name: &str,
    doc: Option<&BureauRulesDocument>,
) -> Result<BureauRules, ThresholdsError> {
    let Some(doc) = doc else {
        return Ok(BureauRules::default());
    };
    let at = |f: &str| format!("profiles.{name}.bureau.{f}");
    let score = |f: &str, v: Option<i64>| -> Result<Option<u16>, ThresholdsError> {
        v.map(|v| {
            u16::try_from(v)
                .ok()
                .filter(|_| SCORE_RANGE.contains(&v))
                .ok_or_else(|| {
                    ThresholdsError::new(
                        at(f),
                        format!("must be a bureau score between 300 and 850 (got {v})"),
                    )
                })
        })
        .transpose()
    };
    let count = |f: &str, v: Option<i64>| v.map(|v| non_negative_u32(&at(f), v)).transpose();
    let rules = BureauRules {
        reject_below_score: score("reject_below_score", doc.reject_below_score)?,
        review_below_score: score("review_below_score", doc.review_below_score)?,
        max_overdue_accounts: count("max_overdue_accounts", doc.max_overdue_accounts)?,
        max_days_overdue: count("max_days_overdue", doc.max_days_overdue)?,
    };
    if let (Some(reject), Some(review)) = (rules.reject_below_score, rules.review_below_score)
        && reject > review
    {
        return Err(ThresholdsError::new(
            at("reject_below_score"),
            format!("must not exceed review_below_score ({reject} > {review})"),
        ));
    }
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> serde_json::Value {
        serde_json::from_str(DEFAULT_DOCUMENT).unwrap()
    }

    fn err(v: serde_json::Value) -> ThresholdsError {
        Thresholds::from_json(&v.to_string()).unwrap_err()
    }

    #[test]
    fn the_default_document_compiles() {
        let t = Thresholds::embedded_default();
        assert_eq!(t.version(), 1);
        assert_eq!(t.base().name(), "normal");
        let peak = t.profile("peak").unwrap();
        assert_eq!(peak.grade(RiskGrade::A).max_utilisation_bps, 9_000);
        assert!(t.require_profiles(["normal", "peak"]).is_ok());
        assert_eq!(
            t.require_profiles(["holiday"]).unwrap_err().field(),
            "profiles.holiday"
        );
    }

    #[test]
    fn a_negative_limit_names_its_field() {
        let mut v = doc();
        v["profiles"]["normal"]["grades"]["B"]["max_single_fen"] = (-5).into();
        let e = err(v);
        assert_eq!(e.field(), "profiles.normal.grades.B.max_single_fen");
        assert!(e.problem().contains("-5"), "{e}");
    }

    #[test]
    fn a_ratio_above_one_names_its_field() {
        let mut v = doc();
        v["profiles"]["peak"]["grades"]["A"]["max_utilisation"] = 1.2.into();
        assert_eq!(err(v).field(), "profiles.peak.grades.A.max_utilisation");
    }

    #[test]
    fn a_missing_or_unknown_grade_is_refused() {
        let mut v = doc();
        v["profiles"]["normal"]["grades"]
            .as_object_mut()
            .unwrap()
            .remove("C");
        assert_eq!(err(v).to_string(), "profiles.normal.grades.C: missing");
        let mut v = doc();
        let a = v["profiles"]["normal"]["grades"]["A"].clone();
        v["profiles"]["normal"]["grades"]["F"] = a;
        assert_eq!(err(v).field(), "profiles.normal.grades.F");
    }

    #[test]
    fn a_missing_base_profile_is_refused() {
        let mut v = doc();
        v["base_profile"] = "holiday".into();
        assert_eq!(err(v).field(), "base_profile");
    }

    #[test]
    fn unknown_fields_and_version_zero_are_refused() {
        let mut v = doc();
        v["profiles"]["normal"]["grades"]["A"]["max_singel_fen"] = 1.into();
        let e = err(v);
        assert!(e.problem().contains("max_singel_fen"), "{e}");
        let mut v = doc();
        v["version"] = 0.into();
        assert_eq!(err(v).field(), "version");
        for too_big in [MAX_VERSION + 1, u64::MAX] {
            let mut v = doc();
            v["version"] = too_big.into();
            assert_eq!(err(v).field(), "version", "{too_big}");
        }
        let mut v = doc();
        v["version"] = MAX_VERSION.into();
        assert_eq!(
            Thresholds::from_json(&v.to_string()).unwrap().version(),
            MAX_VERSION
        );
    }

    #[test]
    fn bureau_rules_are_optional_and_validated_with_their_field() {
        let t = Thresholds::embedded_default();
        assert!(t.base().bureau.is_on());
        let mut v = doc();
        v["profiles"]["normal"]
            .as_object_mut()
            .unwrap()
            .remove("bureau");
        let t = Thresholds::from_json(&v.to_string()).unwrap();
        assert_eq!(t.base().bureau, BureauRules::default());
        assert!(!t.base().bureau.is_on());

        let mut v = doc();
        v["profiles"]["normal"]["bureau"] = serde_json::json!({ "max_days_overdue": 30 });
        let t = Thresholds::from_json(&v.to_string()).unwrap();
        assert_eq!(t.base().bureau.max_days_overdue, Some(30));
        assert!(t.base().bureau.is_on());

        let bad = |rules: serde_json::Value| {
            let mut v = doc();
            v["profiles"]["peak"]["bureau"] = rules;
            err(v)
        };
        let e = bad(serde_json::json!({ "review_below_score": 299 }));
        assert_eq!(e.field(), "profiles.peak.bureau.review_below_score");
        assert!(e.problem().contains("299"), "{e}");
        assert_eq!(
            bad(serde_json::json!({ "reject_below_score": 851 })).field(),
            "profiles.peak.bureau.reject_below_score"
        );
        assert_eq!(
            bad(serde_json::json!({ "max_overdue_accounts": -1 })).field(),
            "profiles.peak.bureau.max_overdue_accounts"
        );
        let e = bad(serde_json::json!({ "reject_below_score": 600, "review_below_score": 550 }));
        assert_eq!(e.field(), "profiles.peak.bureau.reject_below_score");
        let e = bad(serde_json::json!({ "min_score": 600 }));
        assert!(e.problem().contains("min_score"), "{e}");
        // Equal bounds are allowed: no review band.
        let mut v = doc();
        v["profiles"]["peak"]["bureau"] =
            serde_json::json!({ "reject_below_score": 600, "review_below_score": 600 });
        assert!(Thresholds::from_json(&v.to_string()).is_ok());
    }

    #[test]
    fn a_zero_login_threshold_is_refused_unless_off() {
        let mut v = doc();
        v["profiles"]["normal"]["login_pattern"]["logins_30d"] = 0.into();
        assert_eq!(
            err(v.clone()).field(),
            "profiles.normal.login_pattern.logins_30d"
        );
        v["profiles"]["normal"]["login_pattern"]["mode"] = "off".into();
        assert!(Thresholds::from_json(&v.to_string()).is_ok());
    }
}
