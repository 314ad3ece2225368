//! Wire types of the v1 API: request bodies with their validation, and response bodies.
//!
//! Request bodies are parsed into permissive shapes (`i64` amounts, plain strings) and then
//! validated field by field, so one 400 names every problem with the field it belongs to.

use super::error::{ApiError, FieldProblem};
use crate::request::Drawdown;
use crate::store::{AppealRecord, DecisionRecord};
use risk_core::{Channel, Fen, RiskGrade, UserId, UserState, validate_id};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Whether `body` is a JSON object (its first byte past blanks is `{`). Every request body
/// of the API is one; serde would otherwise read a struct from an array of its fields too.
pub fn is_json_object(body: &[u8]) -> bool {
    body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

/// Parses a JSON object body, turning serde's message into a field problem.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if !is_json_object(body) {
        return Err(ApiError::invalid(vec![FieldProblem::new(
            "body",
            "must be a JSON object",
        )]));
    }
    serde_json::from_slice(body).map_err(|e| {
        let msg = e.to_string();
        // serde names unknown and missing fields in backticks: report that field.
        let field = msg
            .split('`')
            .nth(1)
            .filter(|_| msg.starts_with("unknown field") || msg.starts_with("missing field"))
            .map_or_else(|| "body".to_owned(), str::to_owned);
        ApiError::invalid(vec![FieldProblem::new(field, msg)])
    })
}

/// A JSON number that is a whole number, `1719` or `1719.0` (JSON Schema's `integer`, which
/// the OpenAPI document states), as `i64`; a fraction is refused. A whole number past `i64`
/// saturates, so the range check names the field.
pub(crate) fn whole_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    use serde::de::Error;
    let n = serde_json::Number::deserialize(d)?;
    if let Some(i) = n.as_i64() {
        return Ok(i);
    }
    if n.as_u64().is_some() {
        return Ok(i64::MAX);
    }
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 =>
        {
            #[allow(
                clippy::cast_possible_truncation,
                reason = "a whole f64; `as` saturates past i64, and the range check reports it"
            )]
            Ok(f as i64)
        }
        _ => Err(D::Error::custom(format!(
            "invalid value: {n}, expected a whole number"
        ))),
    }
}

/// [`whole_number`] for an optional field (`#[serde(default)]`: absent is `None`).
pub(crate) fn some_whole_number<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<i64>, D::Error> {
    whole_number(d).map(Some)
}

fn check_id(field: &'static str, value: &str, problems: &mut Vec<FieldProblem>) {
    if let Err(e) = validate_id(value) {
        problems.push(FieldProblem::new(field, e.to_string()));
    }
}

fn check_amount(field: &'static str, v: i64, min: i64, problems: &mut Vec<FieldProblem>) -> Fen {
    let fen = u64::try_from(v).ok().and_then(Fen::new);
    match fen {
        Some(f) if v >= min => f,
        _ => {
            problems.push(FieldProblem::new(
                field,
                format!("must be between {min} and {} fen (got {v})", Fen::MAX.get()),
            ));
            Fen::ZERO
        }
    }
}

fn check_count(field: &'static str, v: i64, problems: &mut Vec<FieldProblem>) -> u32 {
    u32::try_from(v).unwrap_or_else(|_| {
        problems.push(FieldProblem::new(
            field,
            format!("must be between 0 and {} (got {v})", u32::MAX),
        ));
        0
    })
}

fn done<T>(value: T, problems: Vec<FieldProblem>) -> Result<T, ApiError> {
    if problems.is_empty() {
        Ok(value)
    } else {
        Err(ApiError::invalid(problems))
    }
}

/// `POST /v1/drawdowns` as sent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrawdownBody {
    /// The user.
    pub user_id: String,
    /// The amount, fen.
    #[serde(deserialize_with = "whole_number")]
    pub amount_fen: i64,
    /// `app`, `web` or `partner`.
    pub channel: Channel,
    /// The device, optional.
    #[serde(default)]
    pub device_id: Option<String>,
}

impl DrawdownBody {
    /// Validates every field.
    pub fn validate(self) -> Result<Drawdown, ApiError> {
        let mut p = Vec::new();
        // The id is validated once and kept as sent (`from_string`: no copy).
        let user = UserId::from_string(self.user_id)
            .map_err(|e| p.push(FieldProblem::new("user_id", e.to_string())))
            .ok();
        let amount = check_amount("amount_fen", self.amount_fen, 1, &mut p);
        if let Some(d) = &self.device_id {
            check_id("device_id", d, &mut p);
        }
        match user {
            Some(user) if p.is_empty() => Ok(Drawdown {
                user,
                amount,
                channel: self.channel,
                device_id: self.device_id,
            }),
            _ => Err(ApiError::invalid(p)),
        }
    }
}

/// `PUT /admin/credit-lines/{user_id}` as sent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreditLineBody {
    /// The line.
    #[serde(deserialize_with = "whole_number")]
    pub limit_fen: i64,
    /// Already drawn.
    #[serde(deserialize_with = "whole_number")]
    pub used_fen: i64,
    /// `A`..`E`.
    pub risk_grade: String,
    /// Logins over 30 days.
    #[serde(default, deserialize_with = "whole_number")]
    pub logins_30d: i64,
    /// Drawdowns over 24 hours.
    #[serde(default, deserialize_with = "whole_number")]
    pub drawdowns_24h: i64,
    /// Applications over 1 hour.
    #[serde(default, deserialize_with = "whole_number")]
    pub applications_1h: i64,
    /// Account age in days.
    #[serde(default, deserialize_with = "whole_number")]
    pub account_age_days: i64,
    /// New device.
    #[serde(default)]
    pub new_device: bool,
    /// Days overdue.
    #[serde(default, deserialize_with = "whole_number")]
    pub days_overdue: i64,
    /// Blocklisted.
    #[serde(default)]
    pub blocklisted: bool,
}

impl CreditLineBody {
    /// Validates every field.
    pub fn validate(self) -> Result<UserState, ApiError> {
        let mut p = Vec::new();
        let limit = check_amount("limit_fen", self.limit_fen, 0, &mut p);
        // `used_fen` may exceed `limit_fen`: a line the upstream system cut below what is
        // drawn. Nothing is then available (`UserState::available` saturates at zero).
        let used = check_amount("used_fen", self.used_fen, 0, &mut p);
        let grade = self.risk_grade.parse::<RiskGrade>().unwrap_or_else(|()| {
            p.push(FieldProblem::new(
                "risk_grade",
                "must be one of A, B, C, D, E",
            ));
            RiskGrade::E
        });
        let state = UserState {
            limit,
            used,
            grade,
            logins_30d: check_count("logins_30d", self.logins_30d, &mut p),
            drawdowns_24h: check_count("drawdowns_24h", self.drawdowns_24h, &mut p),
            applications_1h: check_count("applications_1h", self.applications_1h, &mut p),
            account_age_days: check_count("account_age_days", self.account_age_days, &mut p),
            new_device: self.new_device,
            days_overdue: check_count("days_overdue", self.days_overdue, &mut p),
            blocklisted: self.blocklisted,
        };
        done(state, p)
    }
}

/// The stored state of a user, as `PUT /admin/credit-lines` answers it: the user and the
/// state's own fields ([`UserState`]'s serde names are the wire names).
#[derive(Debug, Serialize)]
pub struct CreditLineState<'a> {
    /// The user.
    pub user_id: &'a UserId,
    /// The state.
    #[serde(flatten)]
    pub state: &'a UserState,
}

/// `POST /v1/appeals` as sent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppealBody {
    /// The decision appealed.
    pub decision_id: String,
    /// The user it concerns.
    pub user_id: String,
    /// Why, at most 2,000 characters.
    pub message: String,
}

/// Longest appeal message, in characters.
pub const MAX_APPEAL_MESSAGE: usize = 2_000;

impl AppealBody {
    /// Validates every field.
    pub fn validate(self) -> Result<(String, UserId, String), ApiError> {
        let mut p = Vec::new();
        // In characters, as the document's `maxLength` counts (not bytes).
        let n = self.decision_id.chars().count();
        if n == 0 || n > 64 {
            p.push(FieldProblem::new(
                "decision_id",
                format!("must be 1 to 64 characters (got {n})"),
            ));
        }
        check_id("user_id", &self.user_id, &mut p);
        let n = self.message.chars().count();
        if n == 0 || n > MAX_APPEAL_MESSAGE {
            p.push(FieldProblem::new(
                "message",
                format!("must be 1 to {MAX_APPEAL_MESSAGE} characters (got {n})"),
            ));
        }
        match UserId::parse(&self.user_id) {
            Ok(user) if p.is_empty() => Ok((self.decision_id, user, self.message)),
            _ => Err(ApiError::invalid(p)),
        }
    }
}

/// `POST /admin/appeals/{id}/resolve` as sent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolveBody {
    /// `upheld` or `overturned`.
    pub resolution: crate::store::Resolution,
    /// The resolution note.
    #[serde(default)]
    pub note: String,
}

/// `PUT /admin/policy/force` as sent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForceBody {
    /// A window name, or `null` to return to the calendar. Required: `{}` is not taken for
    /// `null` (serde would default a missing `Option`; a `deserialize_with` makes it required).
    #[serde(deserialize_with = "present")]
    pub window: Option<String>,
}

/// An `Option` field that must be present, `null` or a value.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Option::<String>::deserialize(d)
}

/// `GET /v1/credit-lines/{user_id}`.
#[derive(Debug, Serialize)]
pub struct CreditLineQuote {
    /// The user.
    pub user_id: String,
    /// The line.
    pub limit_fen: u64,
    /// Drawn.
    pub used_fen: u64,
    /// Line minus drawn.
    pub available_fen: u64,
    /// What a drawdown made now would be approved for.
    pub drawable_now_fen: u64,
    /// Rules that hold `drawable_now_fen` below `available_fen`.
    pub constraints: Vec<crate::store::ReasonRecord>,
    /// The active policy (window name, or `normal`).
    pub policy: String,
    /// The thresholds version.
    pub threshold_version: u64,
    /// When.
    pub as_of: String,
}

/// `GET /v1/reason-codes`.
#[derive(Debug, Serialize)]
pub struct ReasonCodes {
    /// The catalogue, in precedence order.
    pub reason_codes: Vec<&'static risk_core::CatalogueEntry>,
}

/// `GET /admin/appeals`.
#[derive(Debug, Serialize)]
pub struct AppealList {
    /// Oldest first.
    pub appeals: Vec<AppealRecord>,
}

/// A decision response (the stored record as is).
pub type DecisionResponse = DecisionRecord;

#[cfg(test)]
mod tests {
    use super::*;

    fn drawdown(json: &str) -> Result<Drawdown, ApiError> {
        parse_json::<DrawdownBody>(json.as_bytes())?.validate()
    }

    /// The body of `PUT /admin/credit-lines` is the state as answered, less the user id: a
    /// state written out with every field set reads back as itself.
    #[test]
    fn a_credit_line_body_is_the_state_as_answered() {
        let state = UserState {
            limit: Fen::new(1_000_000).unwrap(),
            used: Fen::new(2_500).unwrap(),
            grade: RiskGrade::C,
            logins_30d: 1,
            drawdowns_24h: 2,
            applications_1h: 3,
            account_age_days: 4,
            new_device: true,
            days_overdue: 5,
            blocklisted: true,
        };
        let user = UserId::parse("u-1").unwrap();
        let mut answered = serde_json::to_value(CreditLineState {
            user_id: &user,
            state: &state,
        })
        .unwrap();
        assert_eq!(answered["user_id"], "u-1");
        answered.as_object_mut().unwrap().remove("user_id");
        let body: CreditLineBody = serde_json::from_value(answered).unwrap();
        assert_eq!(body.validate().unwrap(), state);
    }

    #[test]
    fn a_valid_drawdown_parses() {
        let d = drawdown(r#"{"user_id":"u-1","amount_fen":500,"channel":"app","device_id":"d-1"}"#)
            .unwrap();
        assert_eq!(d.amount.get(), 500);
    }

    /// Found by the OpenAPI fuzzer: `1719.0` is an integer to JSON Schema (and to the
    /// document), and was refused.
    #[test]
    fn whole_numbers_written_with_a_fraction_part_are_integers() {
        let d = drawdown(r#"{"user_id":"u-1","amount_fen":1719.0,"channel":"app"}"#).unwrap();
        assert_eq!(d.amount.get(), 1719);
        let e = format!(
            "{:?}",
            drawdown(r#"{"user_id":"u-1","amount_fen":1719.5,"channel":"app"}"#)
        );
        assert!(e.contains("whole number"), "{e}");
        let e = format!(
            "{:?}",
            drawdown(r#"{"user_id":"u-1","amount_fen":1e300,"channel":"app"}"#)
        );
        assert!(e.contains("amount_fen"), "{e}");
        let b: CreditLineBody =
            parse_json(br#"{"limit_fen":100.0,"used_fen":0,"risk_grade":"A","logins_30d":3.0}"#)
                .unwrap();
        assert_eq!(b.validate().unwrap().logins_30d, 3);
    }

    #[test]
    fn each_bad_field_is_named() {
        let e = drawdown(r#"{"user_id":"u 1","amount_fen":0,"channel":"app"}"#).unwrap_err();
        assert_eq!(e.code(), super::super::error::ErrorCode::InvalidRequest);
        let e = format!("{e:?}");
        assert!(e.contains("user_id") && e.contains("amount_fen"), "{e}");
        let e = format!(
            "{:?}",
            drawdown(r#"{"user_id":"u1","amount_fen":-5,"channel":"app"}"#)
        );
        assert!(e.contains("got -5"), "{e}");
        let e = format!(
            "{:?}",
            drawdown(r#"{"user_id":"u1","amount_fen":5,"channel":"app","x":1}"#)
        );
        assert!(e.contains("field: \"x\""), "{e}");
        let e = format!(
            "{:?}",
            drawdown(r#"{"user_id":"u1","amount_fen":5,"channel":"fax"}"#)
        );
        assert!(e.contains("fax"), "{e}");
        let e = format!("{:?}", drawdown("{"));
        assert!(e.contains("field: \"body\""), "{e}");
    }

    #[test]
    fn credit_line_accepts_a_line_cut_below_what_is_drawn() {
        let b: CreditLineBody =
            parse_json(br#"{"limit_fen":100,"used_fen":101,"risk_grade":"A"}"#).unwrap();
        let state = b.validate().unwrap();
        assert_eq!(state.available(), Fen::ZERO);
        let b: CreditLineBody =
            parse_json(br#"{"limit_fen":100,"used_fen":1,"risk_grade":"Z"}"#).unwrap();
        assert!(format!("{:?}", b.validate()).contains("risk_grade"));
    }
}
