//! The audit trail of operator changes: who changed what, when, and the difference.
//!
//! Every admin write (a thresholds version, a forced window, a credit line, an appeal's
//! resolution) appends one [`OperatorChange`] after the change is applied; `GET /admin/audit`
//! pages through them ([`AnyStore::operator_changes`]), oldest first, by an [`AuditCursor`].
//! Decisions have their own audit (the Redis store's per-slot streams); this one is for
//! people.
//!
//! # Layout
//! - [`OperatorChange`], [`FieldChange`]: one entry, and its difference ([`diff`]).
//! - [`AuditEntry`], [`AuditCursor`]: an entry as stored, with the id to page on from.
//! - [`MemoryLog`]: the memory store's log.
//! - `impl AnyStore`: append and page, on either store. The Redis store keeps the log in one
//!   stream, `P:{admin}:audit` (`super::redis::audit`), which the gateway never trims.
//!
//! # Bounds
//! The Redis stream is never trimmed by the gateway (retention is the consumer's call, as for
//! the decision streams). The memory store (development, demos) keeps the last
//! [`MEMORY_LOG_MAX`] entries; past it the oldest go, and every page says how many went
//! (`dropped`), and the drop is logged: nothing goes silently.

use super::{AnyStore, Result, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::VecDeque;
use std::fmt;

/// One operator change, as appended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperatorChange {
    /// The operator whose admin token made the request.
    pub operator: String,
    /// When, by the gateway's clock: RFC 3339, whole seconds.
    pub at: String,
    /// What: `thresholds.publish`, `policy.force`, `credit_line.upsert`, `appeal.resolve`.
    pub action: String,
    /// The route that made it: `PUT /admin/thresholds`, …
    pub route: String,
    /// What it changed: `thresholds`, `policy`, a user id, an appeal id.
    pub target: String,
    /// Each field that differs, before and after (empty: a write that changed nothing).
    pub changes: Vec<FieldChange>,
}

/// One field's difference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldChange {
    /// A JSON pointer (RFC 6901) into the documents compared: `/profiles/peak/max_logins_30d`.
    pub path: String,
    /// The value before (`null`: absent).
    pub before: Value,
    /// The value after (`null`: absent).
    pub after: Value,
}

/// The fields that differ between `before` and `after`: objects are compared key by key
/// (an absent key reads as `null`), everything else (numbers, strings, arrays) as a whole.
/// A `null` against an object lists each of the object's fields, so a record created from
/// nothing shows every field it was created with.
pub fn diff(before: &Value, after: &Value) -> Vec<FieldChange> {
    let mut out = Vec::new();
    diff_into(before, after, &mut String::new(), &mut out);
    out
}

fn diff_into(before: &Value, after: &Value, path: &mut String, out: &mut Vec<FieldChange>) {
    static EMPTY: std::sync::LazyLock<serde_json::Map<String, Value>> =
        std::sync::LazyLock::new(serde_json::Map::new);
    let (b, a) = match (before, after) {
        (Value::Object(b), Value::Object(a)) => (b, a),
        (Value::Null, Value::Object(a)) => (&*EMPTY, a),
        (Value::Object(b), Value::Null) => (b, &*EMPTY),
        _ => {
            if before != after {
                out.push(FieldChange {
                    path: path.clone(),
                    before: before.clone(),
                    after: after.clone(),
                });
            }
            return;
        }
    };
    let mut keys: Vec<&String> = b.keys().chain(a.keys()).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        let len = path.len();
        path.push('/');
        // RFC 6901: `~` and `/` in a key are escaped.
        path.push_str(&key.replace('~', "~0").replace('/', "~1"));
        diff_into(
            b.get(key).unwrap_or(&Value::Null),
            a.get(key).unwrap_or(&Value::Null),
            path,
            out,
        );
        path.truncate(len);
    }
}

/// An entry as stored: its id, then the change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// The entry's id (a Redis stream id, `<ms>-<seq>`; the memory store's are `0-<seq>`):
    /// pass the last one seen as the cursor of the next page.
    pub id: String,
    /// The change.
    #[serde(flatten)]
    pub change: OperatorChange,
}

/// A page of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditPage {
    /// Up to the page's limit of entries after the cursor, oldest first.
    pub entries: Vec<AuditEntry>,
    /// Entries the store dropped for room (only the memory store drops, oldest first).
    pub dropped: u64,
}

/// Where a page starts: after this entry id (`<number>-<number>`, as the ids are).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct AuditCursor {
    ms: u64,
    seq: u64,
}

impl AuditCursor {
    /// Before the first entry.
    pub const START: AuditCursor = AuditCursor { ms: 0, seq: 0 };

    /// Parses an entry id; `None` when it is not `<number>-<number>`.
    pub fn parse(text: &str) -> Option<AuditCursor> {
        let (ms, seq) = text.split_once('-')?;
        let number = |s: &str| {
            (!s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse::<u64>().ok())
                .flatten()
        };
        Some(AuditCursor {
            ms: number(ms)?,
            seq: number(seq)?,
        })
    }
}

impl fmt::Display for AuditCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// The most entries the memory store keeps.
pub const MEMORY_LOG_MAX: usize = 100_000;

/// The memory store's log: entries in order, ids `0-<seq>` from `0-1`.
#[derive(Debug, Default)]
pub struct MemoryLog {
    entries: VecDeque<(u64, OperatorChange)>,
    next_seq: u64,
    dropped: u64,
}

impl MemoryLog {
    fn append(&mut self, change: OperatorChange) -> String {
        self.next_seq += 1;
        if self.entries.len() >= MEMORY_LOG_MAX {
            self.entries.pop_front();
            self.dropped += 1;
            // Logged at the first drop and every 1,000th after: bounded, never silent.
            if self.dropped % 1_000 == 1 {
                tracing::warn!(
                    dropped = self.dropped,
                    "operator audit log full: the oldest entries are dropped (the memory store keeps {MEMORY_LOG_MAX})"
                );
            }
        }
        self.entries.push_back((self.next_seq, change));
        memory_cursor(self.next_seq).to_string()
    }

    fn page(&self, after: AuditCursor, limit: usize) -> AuditPage {
        let first = self
            .entries
            .partition_point(|(seq, _)| memory_cursor(*seq) <= after);
        self.page_of(self.entries.range(first..).take(limit))
    }

    /// `entries` as a page, each with its id.
    fn page_of<'a>(&self, entries: impl Iterator<Item = &'a (u64, OperatorChange)>) -> AuditPage {
        AuditPage {
            entries: entries
                .map(|(seq, change)| AuditEntry {
                    id: memory_cursor(*seq).to_string(),
                    change: change.clone(),
                })
                .collect(),
            dropped: self.dropped,
        }
    }
}

/// The id of the memory log's entry `seq` (the memory store has no clock part).
fn memory_cursor(seq: u64) -> AuditCursor {
    AuditCursor { ms: 0, seq }
}

impl MemoryLog {
    fn page_back(&self, before: Option<AuditCursor>, limit: usize) -> AuditPage {
        let end = match before {
            None => self.entries.len(),
            Some(b) => self
                .entries
                .partition_point(|(seq, _)| memory_cursor(*seq) < b),
        };
        self.page_of(self.entries.range(end.saturating_sub(limit)..end).rev())
    }
}

impl AnyStore {
    /// Appends one change to the operator audit log; answers its id. One round trip; never
    /// trims the log (see the module docs for the memory store's bound).
    pub async fn append_operator_change(&self, change: OperatorChange) -> Result<String> {
        match self {
            AnyStore::Memory(m) => Ok(m.operator_log()?.append(change)),
            AnyStore::Redis(r) => r.append_operator_change(&change).await,
        }
    }

    /// Up to `limit` entries after `after`, oldest first. One round trip.
    pub async fn operator_changes(&self, after: AuditCursor, limit: usize) -> Result<AuditPage> {
        match self {
            AnyStore::Memory(m) => Ok(m.operator_log()?.page(after, limit)),
            AnyStore::Redis(r) => r.operator_changes(after, limit).await,
        }
    }

    /// Up to `limit` entries before `before` (`None`: the newest), newest first: the way
    /// back through the log for a page that shows recent changes. One round trip.
    pub async fn operator_changes_back(
        &self,
        before: Option<AuditCursor>,
        limit: usize,
    ) -> Result<AuditPage> {
        match self {
            AnyStore::Memory(m) => Ok(m.operator_log()?.page_back(before, limit)),
            AnyStore::Redis(r) => r.operator_changes_back(before, limit).await,
        }
    }
}

/// A poisoned log lock, as the store error it answers.
pub(super) fn poisoned<T>(_: std::sync::PoisonError<T>) -> StoreError {
    StoreError::Corrupt("the operator audit log's lock was poisoned by a panic".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn diff_lists_each_changed_leaf() {
        let before =
            json!({"version": 1, "profiles": {"normal": {"max": 5, "ok": true}}, "gone": 1});
        let after =
            json!({"version": 2, "profiles": {"normal": {"max": 3, "ok": true}}, "new/key": [1]});
        let d = diff(&before, &after);
        let paths: Vec<&str> = d.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(
            paths,
            ["/gone", "/new~1key", "/profiles/normal/max", "/version"]
        );
        assert_eq!(d[0].after, Value::Null);
        assert_eq!(d[2].before, json!(5));
        assert_eq!(d[2].after, json!(3));
        assert!(diff(&after, &after).is_empty());
        // A record created from nothing: every field, before null.
        let created = diff(&Value::Null, &json!({"a": 1, "b": {"c": 2}}));
        assert_eq!(created.len(), 2);
        assert_eq!(created[1].path, "/b/c");
        assert_eq!(created[1].before, Value::Null);
    }

    #[test]
    fn cursors_parse_as_stream_ids() {
        assert_eq!(AuditCursor::parse("0-0"), Some(AuditCursor::START));
        let c = AuditCursor::parse("1733412345123-7").unwrap();
        assert_eq!(c.to_string(), "1733412345123-7");
        assert!(AuditCursor::parse("1-2") < AuditCursor::parse("2-0"));
        for bad in [
            "",
            "-",
            "1",
            "1-",
            "-1",
            "a-1",
            "1-1-1",
            "+1-1",
            "99999999999999999999-0",
        ] {
            assert_eq!(AuditCursor::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_memory_log_pages_and_counts_what_it_drops() {
        let change = |n: usize| OperatorChange {
            operator: "alice".into(),
            at: "2026-06-01T12:00:00+08:00".into(),
            action: "policy.force".into(),
            route: "PUT /admin/policy/force".into(),
            target: format!("t{n}"),
            changes: vec![],
        };
        let mut log = MemoryLog::default();
        for n in 0..3 {
            log.append(change(n));
        }
        let page = log.page(AuditCursor::START, 2);
        assert_eq!(page.entries.len(), 2);
        assert_eq!(page.entries[0].change.target, "t0");
        let next = AuditCursor::parse(&page.entries[1].id).unwrap();
        let page = log.page(next, 2);
        assert_eq!(page.entries.len(), 1);
        assert_eq!(page.entries[0].change.target, "t2");
        assert_eq!(page.dropped, 0);
        for n in 3..MEMORY_LOG_MAX + 2 {
            log.append(change(n));
        }
        let page = log.page(AuditCursor::START, 1);
        assert_eq!(page.dropped, 2);
        assert_eq!(page.entries[0].change.target, "t2");
    }

    #[test]
    fn the_memory_log_pages_back_from_the_newest() {
        let change = |n: usize| OperatorChange {
            operator: "alice".into(),
            at: "2026-06-01T12:00:00+08:00".into(),
            action: "thresholds.publish".into(),
            route: "PUT /admin/thresholds".into(),
            target: format!("t{n}"),
            changes: vec![],
        };
        let mut log = MemoryLog::default();
        assert!(log.page_back(None, 5).entries.is_empty());
        for n in 0..5 {
            log.append(change(n));
        }
        let targets = |p: &AuditPage| {
            p.entries
                .iter()
                .map(|e| e.change.target.clone())
                .collect::<Vec<_>>()
        };
        let page = log.page_back(None, 2);
        assert_eq!(targets(&page), ["t4", "t3"]);
        let next = AuditCursor::parse(&page.entries[1].id);
        let page = log.page_back(next, 2);
        assert_eq!(targets(&page), ["t2", "t1"]);
        let next = AuditCursor::parse(&page.entries[1].id);
        assert_eq!(targets(&log.page_back(next, 2)), ["t0"]);
        assert!(
            log.page_back(AuditCursor::parse("0-1"), 2)
                .entries
                .is_empty()
        );
    }
}
