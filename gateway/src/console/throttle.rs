//! Sign-in throttling: sign-in attempts from one client address are limited, so that a
//! token cannot be guessed at speed from one place.
//!
//! governor's keyed GCRA, keyed by the peer's address as the connection limit keys it (an
//! IPv4 address, or the /64 of an IPv6 one): [`BURST`] attempts at once, then one per
//! [`REFILL`]. Every attempt is charged before its token is compared, so a throttled address
//! learns nothing about its guesses; a right token costs an attempt too (operators sign in
//! once per session, far below the rate). Time is the injected clock's.
//!
//! Memory is bounded: at most [`MAX_TRACKED`] addresses (and one shared bucket) are held.
//! Addresses whose bucket is full again carry nothing and are dropped (`retain_recent`) when
//! the table is full; while it is still full (as many addresses failing within [`REFILL`]s),
//! every attempt is charged to one shared bucket: many addresses at once are throttled
//! together rather than tracked without end.
//!
//! The address is the TCP peer's: behind a proxy, every client shares the proxy's address
//! and its allowance.

use crate::clock::SharedClock;
use governor::clock::Clock as _;
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::time::Duration;

/// Attempts allowed at once from one address.
pub const BURST: u32 = 5;
/// One more attempt is allowed after each this long.
pub const REFILL: Duration = Duration::from_secs(60);
/// Addresses tracked at most.
pub const MAX_TRACKED: usize = 10_000;

/// The injected wall clock as governor's clock: the time since the Unix epoch (governor's
/// `Reference` for `Duration`; an instant before the epoch reads as the epoch).
#[derive(Debug, Clone)]
pub(super) struct WallClock(SharedClock);

impl governor::clock::Clock for WallClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        let d = self.0.now().duration_since(jiff::Timestamp::UNIX_EPOCH);
        Duration::try_from(d).unwrap_or(Duration::ZERO)
    }
}

type Limiter = RateLimiter<IpAddr, DashMapStateStore<IpAddr>, WallClock, NoOpMiddleware<Duration>>;

/// The sign-in throttle.
#[derive(Debug)]
pub struct Throttle {
    limiter: Limiter,
    clock: WallClock,
}

/// The key everything past [`MAX_TRACKED`] addresses shares (an address no peer has).
const OVERFLOW: IpAddr = IpAddr::V6(Ipv6Addr::UNSPECIFIED);

/// The key of a peer: an IPv4 address (IPv4-mapped IPv6 included), or an IPv6 /64.
fn key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        v4 => v4,
    }
}

impl Throttle {
    /// A throttle of [`BURST`] attempts, one more per [`REFILL`], on `clock`.
    pub fn new(clock: SharedClock) -> Throttle {
        let burst = NonZeroU32::new(BURST).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(REFILL)
            .unwrap_or_else(|| Quota::per_minute(NonZeroU32::MIN))
            .allow_burst(burst);
        let clock = WallClock(clock);
        Throttle {
            limiter: RateLimiter::dashmap_with_clock(quota, clock.clone()),
            clock,
        }
    }

    /// Charges one sign-in attempt of `peer` (`None`: no address known, charged to the
    /// shared bucket). `Err` holds how long until the next attempt is allowed.
    pub fn attempt(&self, peer: Option<IpAddr>) -> Result<(), Duration> {
        let mut k = peer.map_or(OVERFLOW, key);
        if self.limiter.len() >= MAX_TRACKED {
            self.limiter.retain_recent();
            if self.limiter.len() >= MAX_TRACKED {
                k = OVERFLOW;
            }
        }
        self.limiter
            .check_key(&k)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Addresses tracked.
    pub fn len(&self) -> usize {
        self.limiter.len()
    }

    /// Whether no address is tracked.
    pub fn is_empty(&self) -> bool {
        self.limiter.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::sync::Arc;

    fn throttle() -> (Arc<ManualClock>, Throttle) {
        let clock = Arc::new(ManualClock::new(
            jiff::Timestamp::from_second(1_800_000_000).unwrap(),
        ));
        (clock.clone(), Throttle::new(clock))
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn an_address_gets_its_burst_then_one_attempt_per_refill() {
        let (clock, t) = throttle();
        for _ in 0..BURST {
            assert_eq!(t.attempt(ip("192.0.2.1")), Ok(()));
        }
        assert_eq!(t.attempt(ip("192.0.2.1")), Err(REFILL));
        assert_eq!(t.attempt(ip("192.0.2.2")), Ok(()), "another address");
        clock.advance(REFILL - Duration::from_secs(1));
        assert_eq!(t.attempt(ip("192.0.2.1")), Err(Duration::from_secs(1)));
        clock.advance(Duration::from_secs(1));
        assert_eq!(t.attempt(ip("192.0.2.1")), Ok(()));
        assert!(t.attempt(ip("192.0.2.1")).is_err());
    }

    #[test]
    fn an_ipv6_slash_64_and_a_mapped_ipv4_address_are_one_client() {
        let (_, t) = throttle();
        for n in 0..BURST {
            assert!(t.attempt(ip(&format!("2001:db8::{n}"))).is_ok());
        }
        assert!(t.attempt(ip("2001:db8::ffff:1")).is_err(), "the same /64");
        assert!(t.attempt(ip("2001:db8:0:1::1")).is_ok(), "another /64");
        for _ in 0..BURST {
            assert!(t.attempt(ip("::ffff:192.0.2.9")).is_ok());
        }
        assert!(t.attempt(ip("192.0.2.9")).is_err());
    }

    #[test]
    fn the_table_is_bounded_and_its_overflow_shares_one_bucket() {
        let (clock, t) = throttle();
        for n in 0..MAX_TRACKED {
            let a = u32::try_from(n).unwrap() + 0x0a00_0000;
            assert!(t.attempt(Some(IpAddr::from(a.to_be_bytes()))).is_ok());
        }
        assert_eq!(t.len(), MAX_TRACKED);
        // Full, and every bucket still in use: new addresses share the overflow bucket.
        for n in 0..BURST {
            assert!(t.attempt(ip(&format!("198.51.100.{n}"))).is_ok());
        }
        assert!(t.attempt(ip("198.51.100.200")).is_err());
        assert_eq!(t.len(), MAX_TRACKED + 1);
        // Once the buckets are full again, they carry nothing and make room.
        clock.advance(REFILL * BURST);
        assert!(t.attempt(ip("198.51.100.201")).is_ok());
        assert!(t.len() <= 2, "{} tracked", t.len());
    }
}
