//! W3C Trace Context (Level 1): reading `traceparent` and `tracestate`, writing them on.
//!
//! What the recommendation asks of a service in the middle, and what holds here:
//! - a `traceparent` that does not parse (wrong length, upper-case or non-hex digits, version
//!   `ff`, an all-zero trace id or parent id, a version-`00` header with anything after the
//!   flags, or two `traceparent` headers) is ignored: the request starts a fresh trace, and
//!   its `tracestate` is dropped with it;
//! - a version above `00` is read as far as `00` defines it (a later version may append
//!   fields after a `-`), and what is sent on is version `00`;
//! - a `tracestate` is passed on as received when it is well formed (at most 32 list
//!   members of `key=value`, at most 512 characters); one that is not is dropped, the
//!   `traceparent` kept;
//! - only the `sampled` flag is sent on (the other bits are reserved in `00`).

use axum::http::{HeaderMap, HeaderValue};

/// `traceparent`.
pub const TRACEPARENT: &str = "traceparent";
/// `tracestate`.
pub const TRACESTATE: &str = "tracestate";

/// The `sampled` bit of the trace flags.
pub const SAMPLED: u8 = 0x01;

/// The longest `tracestate` passed on (the recommendation's minimum to propagate).
const MAX_TRACESTATE: usize = 512;
/// The most list members of a `tracestate`.
const MAX_MEMBERS: usize = 32;

/// What a valid `traceparent` said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parent {
    /// The trace id (never all zero).
    pub trace_id: [u8; 16],
    /// The caller's span (never all zero).
    pub span_id: [u8; 8],
    /// The trace flags (only [`SAMPLED`] is kept).
    pub flags: u8,
}

/// The trace context of a request's headers: the parent and its `tracestate`, or `None`
/// (no `traceparent`, or one to ignore: see the module docs).
pub fn extract(headers: &HeaderMap) -> Option<(Parent, Option<HeaderValue>)> {
    let mut values = headers.get_all(TRACEPARENT).iter();
    let first = values.next()?;
    if values.next().is_some() {
        return None;
    }
    let parent = parse_traceparent(first.as_bytes())?;
    Some((parent, tracestate(headers)))
}

/// Reads one `traceparent` value.
pub fn parse_traceparent(v: &[u8]) -> Option<Parent> {
    // version "-" trace-id "-" parent-id "-" flags: 2 + 1 + 32 + 1 + 16 + 1 + 2.
    const LEN: usize = 55;
    if v.len() < LEN || v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    let version = hex::<1>(&v[0..2])?[0];
    match version {
        0xff => return None,
        0 if v.len() != LEN => return None,
        // A later version: what follows the flags starts with '-'.
        _ if v.len() > LEN && v[LEN] != b'-' => return None,
        _ => {}
    }
    let trace_id = hex::<16>(&v[3..35])?;
    let span_id = hex::<8>(&v[36..52])?;
    let flags = hex::<1>(&v[53..55])?[0];
    if trace_id == [0; 16] || span_id == [0; 8] {
        return None;
    }
    Some(Parent {
        trace_id,
        span_id,
        flags: flags & SAMPLED,
    })
}

/// Lower-case hex digits into `N` bytes (`None`: anything else).
fn hex<const N: usize>(digits: &[u8]) -> Option<[u8; N]> {
    fn nibble(d: u8) -> Option<u8> {
        match d {
            b'0'..=b'9' => Some(d - b'0'),
            b'a'..=b'f' => Some(d - b'a' + 10),
            _ => None,
        }
    }
    let mut out = [0; N];
    if digits.len() != 2 * N {
        return None;
    }
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

/// The request's `tracestate`, if well formed: one header as it is, several joined by `,`.
fn tracestate(headers: &HeaderMap) -> Option<HeaderValue> {
    let mut values = headers.get_all(TRACESTATE).iter();
    let first = values.next()?;
    let joined = match values.next() {
        None => first.clone(),
        Some(second) => {
            let mut all = first.as_bytes().to_vec();
            for v in std::iter::once(second).chain(values) {
                all.push(b',');
                all.extend_from_slice(v.as_bytes());
            }
            HeaderValue::from_bytes(&all).ok()?
        }
    };
    valid_tracestate(joined.as_bytes()).then_some(joined)
}

/// Whether `v` is a `tracestate` list the recommendation allows (empty members, from
/// `a,,b` or surrounding spaces, are allowed and not counted).
fn valid_tracestate(v: &[u8]) -> bool {
    if v.len() > MAX_TRACESTATE {
        return false;
    }
    let mut members = 0;
    for member in v.split(|&b| b == b',') {
        let member = member.trim_ascii();
        if member.is_empty() {
            continue;
        }
        members += 1;
        let Some(eq) = member.iter().position(|&b| b == b'=') else {
            return false;
        };
        let (key, value) = (&member[..eq], &member[eq + 1..]);
        let key_ok = !key.is_empty()
            && key.len() <= 256
            && (key[0].is_ascii_lowercase() || key[0].is_ascii_digit())
            && key
                .iter()
                .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-*/@".contains(&b));
        // A value: printable ASCII but ',' and '=', not ending in a space.
        let value_ok = !value.is_empty()
            && value.len() <= 256
            && value.last() != Some(&b' ')
            && value
                .iter()
                .all(|&b| (0x20..=0x7e).contains(&b) && b != b',' && b != b'=');
        if !key_ok || !value_ok {
            return false;
        }
    }
    members <= MAX_MEMBERS
}

/// `bytes` as lower-case hex into `out` (twice as long).
pub fn write_hex(bytes: &[u8], out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (b, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 0xf)];
    }
}

/// The `traceparent` of a call made from span `span_id` of `trace_id`.
pub fn traceparent(trace_id: [u8; 16], span_id: [u8; 8], flags: u8) -> HeaderValue {
    let mut v = *b"00-00000000000000000000000000000000-0000000000000000-00";
    write_hex(&trace_id, &mut v[3..35]);
    write_hex(&span_id, &mut v[36..52]);
    write_hex(&[flags & SAMPLED], &mut v[53..55]);
    HeaderValue::from_bytes(&v).expect("hex digits and '-' are a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn a_valid_traceparent_is_read_and_written_back_the_same() {
        let p = parse_traceparent(GOOD.as_bytes()).unwrap();
        assert_eq!(p.flags, SAMPLED);
        assert_eq!(p.span_id, [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]);
        assert_eq!(traceparent(p.trace_id, p.span_id, p.flags), GOOD);
        // Reserved flags are not sent on.
        let p = parse_traceparent(&GOOD.replace("-01", "-ff").into_bytes()).unwrap();
        assert_eq!(p.flags, SAMPLED);
    }

    #[test]
    fn malformed_traceparents_are_ignored() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(parse_traceparent(bad.as_bytes()), None, "{bad:?}");
        }
        // A later version with more fields is read as 00.
        let later = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes";
        assert!(parse_traceparent(later.as_bytes()).is_some());
        // Two traceparent headers: neither is trusted.
        let two = headers(&[(TRACEPARENT, GOOD), (TRACEPARENT, GOOD)]);
        assert_eq!(extract(&two), None);
    }

    #[test]
    fn tracestate_goes_with_a_valid_parent_when_well_formed() {
        let h = headers(&[(TRACEPARENT, GOOD), (TRACESTATE, "congo=t61rcWkgMzE")]);
        let (_, state) = extract(&h).unwrap();
        assert_eq!(state.unwrap(), "congo=t61rcWkgMzE");
        let h = headers(&[
            (TRACEPARENT, GOOD),
            (TRACESTATE, "congo=t61rcWkgMzE"),
            (TRACESTATE, "rojo=00f067aa0ba902b7, tenant@vendor=x"),
        ]);
        let (_, state) = extract(&h).unwrap();
        assert_eq!(
            state.unwrap(),
            "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7, tenant@vendor=x"
        );
        for bad in ["no-equals", "Upper=1", "a=b=c", &"k=v,".repeat(33)] {
            let h = headers(&[(TRACEPARENT, GOOD), (TRACESTATE, bad)]);
            let (parent, state) = extract(&h).unwrap();
            assert!(parent.flags == SAMPLED && state.is_none(), "{bad:?}");
        }
        // Without a valid traceparent, no tracestate.
        let h = headers(&[(TRACESTATE, "congo=t61rcWkgMzE")]);
        assert_eq!(extract(&h), None);
    }
}
