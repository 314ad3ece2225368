//! Slots and identifiers: how a user, and every record of theirs, maps to one shard.
//!
//! A user id hashes to one of [`SLOTS`] slots. Everything one commit touches (the user's
//! state, idempotency records, decisions) lives in that slot: the memory store keeps a slot in
//! the shard `slot % shards`, the Redis store gives each key the slot as its hash tag, so a
//! commit is one atomic operation on one shard (one Redis Cluster slot).
//!
//! Decision and appeal ids are `dd_` / `ap_` + a ULID whose 10 lowest random bits are the
//! user's slot. They stay valid ULIDs (26 Crockford base-32 characters, time-ordered), and a
//! lookup by id alone ([`crate::store::Store::get_decision`]) finds the shard without a
//! second index, which on Redis Cluster could not be written in the same atomic commit.

use jiff::Timestamp;
use risk_core::UserId;
use std::fmt;
use ulid::Ulid;

/// The number of slots. A power of two: a memory store with `n` shards (`n` dividing
/// `SLOTS`) keeps slot `s` in shard `s % n`.
pub const SLOTS: u16 = 1024;

/// Prefix of a decision id.
pub const DECISION_PREFIX: &str = "dd_";
/// Prefix of an appeal id.
pub const APPEAL_PREFIX: &str = "ap_";

const SLOT_BITS: u32 = SLOTS.trailing_zeros();
const SLOT_MASK: u128 = (1 << SLOT_BITS) - 1;

/// One of [`SLOTS`] partitions of the user space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Slot(u16);

impl Slot {
    /// The slot number, in `0..SLOTS`.
    pub const fn get(self) -> u16 {
        self.0
    }

    /// The slot numbered `n`, if `n < SLOTS`.
    pub const fn new(n: u16) -> Option<Slot> {
        if n < SLOTS { Some(Slot(n)) } else { None }
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}", self.0)
    }
}

/// The slot of a user: FNV-1a (64 bit) of the id's bytes, finished with MurmurHash3's
/// `fmix64` (FNV alone leaves the last bytes of `u-000001`, `u-000002`, … poorly mixed into
/// the high bits), top 10 bits. Stable across processes, versions and platforms: stored ids
/// and Redis keys depend on it.
pub fn user_slot(user: &UserId) -> Slot {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = user
        .as_str()
        .bytes()
        .fold(OFFSET, |h, b| (h ^ u64::from(b)).wrapping_mul(PRIME));
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    // `h >> 54` is below 1024 and fits in a u16.
    #[allow(clippy::cast_possible_truncation)]
    Slot((h >> (64 - SLOT_BITS)) as u16)
}

/// A fresh decision id for `user`: `dd_` + a ULID of `now` that names the user's slot.
pub fn new_decision_id(user: &UserId, now: Timestamp) -> String {
    mint(DECISION_PREFIX, user_slot(user), now)
}

/// A fresh appeal id for `user`: `ap_` + a ULID of `now` that names the user's slot.
pub fn new_appeal_id(user: &UserId, now: Timestamp) -> String {
    mint(APPEAL_PREFIX, user_slot(user), now)
}

fn mint(prefix: &str, slot: Slot, now: Timestamp) -> String {
    let ms = u64::try_from(now.as_millisecond()).unwrap_or(0);
    // Only the random bits of a ULID: `Ulid::new()` would read the clock for nothing.
    let random = (rand::random::<u128>() & !SLOT_MASK) | u128::from(slot.0);
    let mut ulid = [0u8; ulid::ULID_LEN];
    let mut out = String::with_capacity(prefix.len() + ulid::ULID_LEN);
    out.push_str(prefix);
    out.push_str(Ulid::from_parts(ms, random).array_to_str(&mut ulid));
    out
}

/// The slot a decision id (`dd_…`) or appeal id (`ap_…`) names, if it is well formed.
pub fn id_slot(id: &str) -> Option<Slot> {
    let ulid = id
        .strip_prefix(DECISION_PREFIX)
        .or_else(|| id.strip_prefix(APPEAL_PREFIX))?;
    if ulid.len() != ulid::ULID_LEN {
        return None;
    }
    let ulid = Ulid::from_string(ulid).ok()?;
    // Masked to 10 bits: fits in a u16.
    #[allow(clippy::cast_possible_truncation)]
    Some(Slot((ulid.random() & SLOT_MASK) as u16))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(s: &str) -> UserId {
        UserId::parse(s).unwrap()
    }

    #[test]
    fn user_slots_are_stable() {
        // Pinned values: stored ids and Redis keys depend on them, so they never change.
        let pinned: Vec<u16> = ["u-000123", "u-demo-a", "a"]
            .into_iter()
            .map(|s| user_slot(&user(s)).get())
            .collect();
        assert_eq!(pinned, PINNED_SLOTS);
        assert_eq!(Slot::new(SLOTS), None);
        assert_eq!(Slot::new(7).unwrap().to_string(), "0007");
    }

    const PINNED_SLOTS: [u16; 3] = [462, 312, 522];

    #[test]
    fn sequential_ids_spread_evenly_over_slots() {
        let mut counts = vec![0u32; usize::from(SLOTS)];
        let n = 200_000;
        for i in 0..n {
            counts[usize::from(user_slot(&user(&format!("u-{i:06}"))).get())] += 1;
        }
        let mean = n / u32::from(SLOTS);
        let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        // ~195 per slot; a uniform hash stays well within ±40 %.
        assert!(
            *min > mean * 6 / 10 && *max < mean * 14 / 10,
            "{min}..{max}"
        );
    }

    #[test]
    fn ids_name_the_users_slot_and_stay_ulids() {
        let now: Timestamp = "2026-11-10T16:00:03Z".parse().unwrap();
        for name in ["u-000123", "u-demo-a", "u-demo-blocked", "x"] {
            let u = user(name);
            let d = new_decision_id(&u, now);
            let a = new_appeal_id(&u, now);
            assert!(d.starts_with("dd_") && a.starts_with("ap_"));
            assert_eq!(d.len(), 3 + 26);
            assert_eq!(id_slot(&d), Some(user_slot(&u)));
            assert_eq!(id_slot(&a), Some(user_slot(&u)));
            let ulid = Ulid::from_string(&d[3..]).unwrap();
            assert_eq!(
                i64::try_from(ulid.timestamp_ms()).unwrap(),
                now.as_millisecond()
            );
        }
        let u = user("u-1");
        assert_ne!(new_decision_id(&u, now), new_decision_id(&u, now));
    }

    #[test]
    fn malformed_ids_have_no_slot() {
        assert_eq!(id_slot("dd_"), None);
        assert_eq!(id_slot("dd_not-a-ulid-at-all-000000"), None);
        assert_eq!(id_slot("xx_01JD0000000000000000000000"), None);
        assert_eq!(id_slot("dd_01JD00000000000000000000000"), None);
        assert!(id_slot("dd_01JD0000000000000000000000").is_some());
    }
}
