//! The decision events of the slots' audit streams (`P:{sNNNN}:audit`), packed and read.
//!
//! The commit script appends each event as one field, `p`, holding the event's values as
//! consecutive netstrings (`<byte length>:<bytes>,`, djb's format: any text, no escaping), in
//! the order of [`FIELDS`]. One field rather than eleven: each field is one more argument
//! the script takes and hands to `XADD`, and the stream stores it; see BENCHMARKS.md, "Redis
//! store". Events appended before were one stream field per value, named as in [`FIELDS`];
//! [`fields`] reads both forms to the same map.

use super::corrupt;
use crate::store::Result;
use std::collections::HashMap;
use std::fmt::Write as _;

/// The packed event's field.
pub(super) const PACKED: &str = "p";

/// The values of an event, in their packed order. The last two are the line after the
/// commit (an unchecked commit's script appends them, see `scripts::COMMIT`).
pub(super) const FIELDS: [&str; 11] = [
    "decision_id",
    "user",
    "caller",
    "idempotency_key",
    "outcome",
    "amount_fen",
    "threshold_version",
    "policy",
    "evaluated_at",
    "used_fen",
    "available_fen",
];

/// Appends `value` to `out` as one netstring.
pub(super) fn push(out: &mut String, value: &str) {
    // Writing to a String does not fail.
    let _ = write!(out, "{}:{value},", value.len());
}

/// `values` (in the order of [`FIELDS`], all of them or all but the last two) packed.
pub(super) fn pack<'a>(values: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = String::with_capacity(160);
    for v in values {
        push(&mut out, v);
    }
    out
}

/// An event's fields by name, from either form: the packed field, or one field per value
/// (written before). `Corrupt` when the packed field does not hold the [`FIELDS`].
pub(super) fn fields(raw: Vec<(String, String)>) -> Result<HashMap<String, String>> {
    let packed = match <[_; 1]>::try_from(raw) {
        Ok([(f, v)]) if f == PACKED => v,
        Ok([one]) => return Ok(HashMap::from([one])),
        Err(raw) => return Ok(raw.into_iter().collect()),
    };
    let bad = || corrupt(format!("a packed decision event: {packed:?}"));
    let mut out = HashMap::with_capacity(FIELDS.len());
    let mut rest = packed.as_str();
    for name in FIELDS {
        let (len, tail) = rest.split_once(':').ok_or_else(bad)?;
        let len: usize = len.parse().map_err(|_| bad())?;
        let value = tail.get(..len).ok_or_else(bad)?;
        rest = tail
            .get(len..)
            .and_then(|t| t.strip_prefix(','))
            .ok_or_else(bad)?;
        out.insert(name.to_owned(), value.to_owned());
    }
    if !rest.is_empty() {
        return Err(bad());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> [&'static str; 11] {
        [
            "dd_0462_01JEXAMPLE",
            "u-1",
            "caller:{x},3:y",
            "key with spaces, commas: and 4:colons",
            "approved",
            "4000",
            "3",
            "",
            "2026-12-05T19:00:00.000+08:00",
            "4000",
            "6000",
        ]
    }

    #[test]
    fn a_packed_event_reads_back_whatever_its_text() {
        let read = fields(vec![(PACKED.to_owned(), pack(values()))]).unwrap();
        for (name, value) in FIELDS.iter().zip(values()) {
            assert_eq!(read[*name], value, "{name}");
        }
        assert_eq!(read.len(), FIELDS.len());
    }

    #[test]
    fn an_event_written_field_by_field_reads_as_before() {
        let raw: Vec<(String, String)> = FIELDS
            .iter()
            .zip(values())
            .map(|(f, v)| ((*f).to_owned(), v.to_owned()))
            .collect();
        let read = fields(raw.clone()).unwrap();
        assert_eq!(read, raw.into_iter().collect::<HashMap<_, _>>());
    }

    #[test]
    fn a_truncated_or_padded_event_is_corrupt() {
        let full = pack(values());
        for broken in [
            full[..full.len() - 1].to_owned(),
            format!("{full}1:x,"),
            pack(values().into_iter().take(9)),
            full.replacen("3:u-1,", "4:u-1,", 1),
            full.replacen("4000,", "4000;", 1),
        ] {
            assert!(
                fields(vec![(PACKED.to_owned(), broken.clone())]).is_err(),
                "{broken}"
            );
        }
    }
}
