//! Console sessions: random ids in a bounded table, each with its CSRF token, expiring by
//! the injected clock.

use crate::clock::SharedClock;
use jiff::{SignedDuration, Timestamp};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use subtle::ConstantTimeEq;

/// A signed-in operator's session, as a page sees it.
#[derive(Debug, Clone)]
pub struct Session {
    /// Who signed in (the operator the token maps to).
    pub operator: Arc<str>,
    /// The token every write of this session carries in its form (`csrf`).
    pub csrf: String,
}

impl Session {
    /// Whether `token` is this session's CSRF token (constant time).
    pub fn csrf_matches(&self, token: &str) -> bool {
        self.csrf.len() == token.len() && bool::from(self.csrf.as_bytes().ct_eq(token.as_bytes()))
    }
}

#[derive(Debug)]
struct Entry {
    session: Session,
    created: Timestamp,
    last_seen: Timestamp,
}

/// The session table. Keys are a hash of the cookie's id, so the table never holds a
/// usable id; ids are 256 random bits, so one cannot be guessed.
///
/// Bounded: at `max` sessions a sign-in first drops the expired ones, then the least
/// recently used. A `std` mutex, held only for a map operation and never across an await.
#[derive(Debug)]
pub struct Sessions {
    table: Mutex<HashMap<[u8; 32], Entry>>,
    clock: SharedClock,
    idle: SignedDuration,
    max_age: SignedDuration,
    max: usize,
}

/// 32 random bytes as 64 hex digits.
pub(super) fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn key(id: &str) -> [u8; 32] {
    *blake3::hash(id.as_bytes()).as_bytes()
}

impl Sessions {
    /// A table of at most `max` sessions, each ending `idle` after its last use or
    /// `max_age` after sign-in, whichever comes first.
    pub fn new(
        clock: SharedClock,
        idle: std::time::Duration,
        max_age: std::time::Duration,
        max: usize,
    ) -> Self {
        let signed = |d: std::time::Duration| {
            SignedDuration::try_from(d).unwrap_or(SignedDuration::from_hours(24 * 365))
        };
        Sessions {
            table: Mutex::new(HashMap::new()),
            clock,
            idle: signed(idle),
            max_age: signed(max_age),
            max: max.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Entry>> {
        // A panic while holding the lock leaves a map that is still consistent (every
        // operation is a single insert or remove).
        self.table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn live(&self, e: &Entry, now: Timestamp) -> bool {
        now < e.last_seen + self.idle && now < e.created + self.max_age
    }

    /// Starts a session for `operator`; answers its id (the cookie's value).
    pub fn start(&self, operator: Arc<str>) -> String {
        let now = self.clock.now();
        let id = random_token();
        let mut table = self.lock();
        if table.len() >= self.max {
            table.retain(|_, e| self.live(e, now));
        }
        while table.len() >= self.max {
            let Some(oldest) = table
                .iter()
                .min_by_key(|(_, e)| e.last_seen)
                .map(|(k, _)| *k)
            else {
                break;
            };
            table.remove(&oldest);
        }
        table.insert(
            key(&id),
            Entry {
                session: Session {
                    operator,
                    csrf: random_token(),
                },
                created: now,
                last_seen: now,
            },
        );
        id
    }

    /// The live session of cookie value `id`, marked as used now; an expired one is dropped.
    pub fn get(&self, id: &str) -> Option<Session> {
        let now = self.clock.now();
        let k = key(id);
        let mut table = self.lock();
        let live = self.live(table.get(&k)?, now);
        if !live {
            table.remove(&k);
            return None;
        }
        let e = table.get_mut(&k)?;
        e.last_seen = now;
        Some(e.session.clone())
    }

    /// Ends the session of cookie value `id`, if any.
    pub fn end(&self, id: &str) {
        self.lock().remove(&key(id));
    }

    /// Sessions held (live or not yet dropped).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no session is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::time::Duration;

    fn table(max: usize) -> (Arc<ManualClock>, Sessions) {
        let clock = Arc::new(ManualClock::new(
            Timestamp::from_second(1_800_000_000).unwrap(),
        ));
        let sessions = Sessions::new(
            clock.clone(),
            Duration::from_secs(60),
            Duration::from_secs(300),
            max,
        );
        (clock, sessions)
    }

    #[test]
    fn sessions_expire_when_idle_and_at_their_maximum_age() {
        let (clock, s) = table(8);
        let id = s.start("admin".into());
        assert_eq!(id.len(), 64);
        let csrf = s.get(&id).unwrap().csrf;
        assert_ne!(csrf, id);
        clock.advance(Duration::from_secs(59));
        assert!(s.get(&id).is_some(), "used within the idle time");
        for _ in 0..4 {
            clock.advance(Duration::from_secs(59));
            assert!(s.get(&id).is_some());
        }
        clock.advance(Duration::from_secs(59));
        assert!(s.get(&id).is_none(), "past the maximum age, however used");
        assert!(s.is_empty(), "an expired session is dropped when met");

        let id = s.start("admin".into());
        clock.advance(Duration::from_secs(60));
        assert!(s.get(&id).is_none(), "idle too long");
    }

    #[test]
    fn the_table_is_bounded_and_sign_out_ends_a_session() {
        let (clock, s) = table(2);
        let a = s.start("admin".into());
        clock.advance(Duration::from_secs(1));
        let b = s.start("admin".into());
        clock.advance(Duration::from_secs(1));
        assert!(s.get(&a).is_some(), "a is now the most recently used");
        let c = s.start("admin".into());
        assert_eq!(s.len(), 2);
        assert!(s.get(&b).is_none(), "the least recently used went");
        assert!(s.get(&a).is_some() && s.get(&c).is_some());
        s.end(&a);
        assert!(s.get(&a).is_none());
        assert!(s.get("not-a-session").is_none());
    }

    #[test]
    fn csrf_tokens_compare_whole() {
        let (_, s) = table(2);
        let id = s.start("admin".into());
        let session = s.get(&id).unwrap();
        assert!(session.csrf_matches(&session.csrf.clone()));
        assert!(!session.csrf_matches(&session.csrf[..63]));
        assert!(!session.csrf_matches(""));
    }
}
