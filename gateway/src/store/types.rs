//! The records a store keeps, as they go over the wire and into Redis (JSON).

use risk_core::{Category, Outcome, ReasonCode};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A decision exactly as stored and answered: its JSON is the `200` body of
/// `POST /v1/drawdowns`, and a replay answers the stored record unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionRecord {
    /// `dd_` + ULID, minted by [`crate::store::new_decision_id`] so that it names its shard.
    pub decision_id: String,
    /// The user the decision is about.
    pub user_id: String,
    /// Approved, rejected or review.
    pub outcome: Outcome,
    /// The amount asked for, in fen.
    pub amount_fen: u64,
    /// Principal reasons, most decisive first (empty on an approval).
    pub reasons: Vec<ReasonRecord>,
    /// `limit - used` after this decision's reservation; the store sets it at commit.
    pub available_fen: u64,
    /// What a drawdown made now would be approved for; the store caps it at `available_fen`.
    pub drawable_now_fen: u64,
    /// The threshold version the engine decided under.
    pub threshold_version: u64,
    /// The name of the active policy (peak window or `standard`).
    pub policy: String,
    /// When the engine decided, RFC 3339 with offset.
    pub evaluated_at: String,
    /// Whether the decision may be appealed (some reason is appealable).
    pub appealable: bool,
}

impl DecisionRecord {
    /// Appends this record's JSON to `out`: exactly the bytes `serde_json` writes for its
    /// `Serialize` (a test holds the two together), but with the field names written as
    /// constants, because serde_json escapes every name byte by byte. The values go through
    /// serde_json.
    pub fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        fn field<T: Serialize + ?Sized>(
            out: &mut Vec<u8>,
            name: &[u8],
            value: &T,
        ) -> serde_json::Result<()> {
            out.extend_from_slice(name);
            serde_json::to_writer(&mut *out, value)
        }
        field(out, b"{\"decision_id\":", &self.decision_id)?;
        field(out, b",\"user_id\":", &self.user_id)?;
        field(out, b",\"outcome\":", &self.outcome)?;
        field(out, b",\"amount_fen\":", &self.amount_fen)?;
        field(out, b",\"reasons\":", &self.reasons)?;
        field(out, b",\"available_fen\":", &self.available_fen)?;
        field(out, b",\"drawable_now_fen\":", &self.drawable_now_fen)?;
        field(out, b",\"threshold_version\":", &self.threshold_version)?;
        field(out, b",\"policy\":", &self.policy)?;
        field(out, b",\"evaluated_at\":", &self.evaluated_at)?;
        field(out, b",\"appealable\":", &self.appealable)?;
        out.push(b'}');
        Ok(())
    }
}

/// One reason of a decision, with the figures that make its guidance concrete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReasonRecord {
    /// The stable code.
    pub code: ReasonCode,
    /// Always `risk` in a decision.
    pub category: Category,
    /// What happened, in English.
    pub message: String,
    /// What happened, in Chinese.
    pub message_zh: String,
    /// What would change the answer, in English.
    pub guidance: String,
    /// What would change the answer, in Chinese.
    pub guidance_zh: String,
    /// Whether this reason may be appealed.
    pub appealable: bool,
    /// The limit that bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// The value that crossed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual: Option<u64>,
    /// The unit of `limit` and `actual`: `fen`, `count` or `days`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// The amount that would be approved now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suggested_amount_fen: Option<u64>,
    /// When the binding constraint lifts, RFC 3339 with offset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<String>,
}

impl ReasonRecord {
    /// A reason as a decision answers it: its catalogue entry with the figures that bound.
    pub fn of(r: &risk_core::Reason) -> Self {
        let e = r.code.entry();
        ReasonRecord {
            code: r.code,
            category: e.category,
            message: e.message.to_owned(),
            message_zh: e.message_zh.to_owned(),
            guidance: r.guidance(),
            guidance_zh: r.guidance_zh(),
            appealable: e.appealable,
            limit: Some(r.limit),
            actual: Some(r.actual),
            unit: Some(r.unit.as_str().to_owned()),
            suggested_amount_fen: r.suggested_amount.map(|a| a.get()),
            retry_at: r
                .retry_at
                .as_ref()
                .map(|at| crate::clock::rfc3339(at.timestamp(), at.offset())),
        }
    }
}

/// Where an appeal stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AppealStatus {
    /// Waiting for a person.
    Open,
    /// The decision stands.
    Upheld,
    /// The decision was wrong.
    Overturned,
}

impl AppealStatus {
    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Upheld => "upheld",
            Self::Overturned => "overturned",
        }
    }
}

/// How a person closes an appeal: an open appeal cannot be "resolved" to open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Resolution {
    /// The decision stands.
    Upheld,
    /// The decision was wrong.
    Overturned,
}

impl From<Resolution> for AppealStatus {
    fn from(r: Resolution) -> AppealStatus {
        match r {
            Resolution::Upheld => AppealStatus::Upheld,
            Resolution::Overturned => AppealStatus::Overturned,
        }
    }
}

/// An appeal against a decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppealRecord {
    /// `ap_` + ULID, minted by [`crate::store::new_appeal_id`].
    pub appeal_id: String,
    /// The decision appealed.
    pub decision_id: String,
    /// The user who appeals; must be the decision's user.
    pub user_id: String,
    /// The user's words (at most 2000 characters, checked by the API).
    pub message: String,
    /// Where it stands.
    pub status: AppealStatus,
    /// When it was filed, RFC 3339 with offset.
    pub created_at: String,
    /// The resolution target, RFC 3339 with offset.
    pub due_at: String,
    /// When it was resolved, RFC 3339 in the offset of `created_at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<String>,
    /// The reviewer's note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution_note: Option<String>,
}

/// A hash of a drawdown request's meaningful fields: the same idempotency key with another
/// fingerprint is another request. The gateway computes it (e.g. with BLAKE3); stores only
/// compare it. Serialised as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// Wraps a 32-byte digest.
    pub const fn from_bytes(bytes: [u8; 32]) -> Fingerprint {
        Fingerprint(bytes)
    }

    /// The digest.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Parses 64 hex digits (either case).
    pub fn from_hex(s: &str) -> Option<Fingerprint> {
        let s = s.as_bytes();
        if s.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (byte, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
            *byte = (hex_digit(pair[0])? << 4) | hex_digit(pair[1])?;
        }
        Some(Fingerprint(out))
    }
}

const fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

impl Serialize for Fingerprint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Fingerprint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Fingerprint::from_hex(&s)
            .ok_or_else(|| serde::de::Error::custom("a fingerprint is 64 hex digits"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason() -> ReasonRecord {
        let e = ReasonCode::InsufficientAvailableLine.entry();
        ReasonRecord {
            code: e.code,
            category: e.category,
            message: e.message.into(),
            message_zh: e.message_zh.into(),
            guidance: e.guidance.into(),
            guidance_zh: e.guidance_zh.into(),
            appealable: e.appealable,
            limit: Some(100),
            actual: Some(150),
            unit: Some("fen".into()),
            suggested_amount_fen: None,
            retry_at: None,
        }
    }

    #[test]
    fn reasons_skip_absent_figures() {
        let json = serde_json::to_value(reason()).unwrap();
        let obj = json.as_object().unwrap();
        assert_eq!(obj["code"], "INSUFFICIENT_AVAILABLE_LINE");
        assert_eq!(obj["category"], "risk");
        assert_eq!(obj["limit"], 100);
        assert!(!obj.contains_key("suggested_amount_fen"));
        assert!(!obj.contains_key("retry_at"));
        let back: ReasonRecord = serde_json::from_value(json).unwrap();
        assert_eq!(back, reason());
    }

    #[test]
    fn decisions_round_trip_as_the_api_body() {
        let d = DecisionRecord {
            decision_id: "dd_01JD0000000000000000000000".into(),
            user_id: "u-1".into(),
            outcome: Outcome::Rejected,
            amount_fen: 150,
            reasons: vec![reason()],
            available_fen: 100,
            drawable_now_fen: 100,
            threshold_version: 7,
            policy: "double11".into(),
            evaluated_at: "2026-11-11T00:00:03+08:00".into(),
            appealable: false,
        };
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(json["outcome"], "rejected");
        assert_eq!(json["reasons"][0]["unit"], "fen");
        assert_eq!(serde_json::from_value::<DecisionRecord>(json).unwrap(), d);
    }

    #[test]
    fn decisions_write_the_json_serde_writes() {
        let mut odd = reason();
        odd.message = "quote \" backslash \\ newline \n tab \t nul \u{0} del \u{7f}".into();
        odd.message_zh = "额度不足，请稍后再试 😀 \u{2028}".into();
        odd.limit = None;
        odd.unit = None;
        odd.suggested_amount_fen = Some(0);
        odd.retry_at = Some("2026-11-11T00:00:03+08:00".into());
        let approval = DecisionRecord {
            decision_id: "dd_01JD0000000000000000000000".into(),
            user_id: "u-1".into(),
            outcome: Outcome::Approved,
            amount_fen: 100,
            reasons: vec![],
            available_fen: u64::MAX,
            drawable_now_fen: 0,
            threshold_version: 1,
            policy: "standard".into(),
            evaluated_at: "2026-11-11T00:00:03+08:00".into(),
            appealable: false,
        };
        let rejection = DecisionRecord {
            user_id: "u\"<odd>\\".into(),
            outcome: Outcome::Rejected,
            reasons: vec![reason(), odd],
            policy: String::new(),
            evaluated_at: "\u{1f}".into(),
            appealable: true,
            ..approval.clone()
        };
        let review = DecisionRecord {
            outcome: Outcome::Review,
            reasons: vec![reason()],
            ..approval.clone()
        };
        for d in [approval, rejection, review] {
            let mut out = b"prefix".to_vec();
            d.write_json(&mut out).unwrap();
            let want = [b"prefix".as_slice(), &serde_json::to_vec(&d).unwrap()].concat();
            assert_eq!(
                String::from_utf8(out).unwrap(),
                String::from_utf8(want).unwrap()
            );
        }
    }

    #[test]
    fn appeal_status_is_lowercase_and_skips_unresolved_fields() {
        let a = AppealRecord {
            appeal_id: "ap_x".into(),
            decision_id: "dd_x".into(),
            user_id: "u-1".into(),
            message: "m".into(),
            status: AppealStatus::Open,
            created_at: "2026-11-11T00:00:03+08:00".into(),
            due_at: "2026-11-26T00:00:03+08:00".into(),
            resolved_at: None,
            resolution_note: None,
        };
        let json = serde_json::to_value(&a).unwrap();
        assert_eq!(json["status"], "open");
        assert!(!json.as_object().unwrap().contains_key("resolved_at"));
        assert_eq!(
            serde_json::to_value(AppealStatus::Overturned).unwrap(),
            "overturned"
        );
        assert_eq!(AppealStatus::from(Resolution::Upheld).as_str(), "upheld");
    }

    #[test]
    fn fingerprints_are_hex_on_the_wire() {
        let mut bytes = [0u8; 32];
        bytes[0] = 0xab;
        bytes[31] = 0x01;
        let fp = Fingerprint::from_bytes(bytes);
        let json = serde_json::to_string(&fp).unwrap();
        assert_eq!(json.len(), 66);
        assert!(json.starts_with("\"ab00"));
        assert!(json.ends_with("01\""));
        assert_eq!(serde_json::from_str::<Fingerprint>(&json).unwrap(), fp);
        assert_eq!(
            Fingerprint::from_hex(&fp.to_string().to_uppercase()),
            Some(fp)
        );
        assert!(serde_json::from_str::<Fingerprint>("\"abc\"").is_err());
        assert!(Fingerprint::from_hex(&"g".repeat(64)).is_none());
    }
}
