//! `loadtest audit`: after a run, reconciles what its clients were told (`ledger.json`,
//! see [`crate::ledger`]) with what the store holds. Each count is a gate: the command
//! exits with [`GATE_EXIT_CODE`] when any is above zero.
//!
//! In this order:
//! 1. **Unknown outcomes** (a drawdown whose client never learnt the outcome) are sent
//!    again with the same `Idempotency-Key` and body, through the gateway: a replay
//!    (`Idempotent-Replayed: true`) says a decision was stored, a fresh decision says none
//!    was; either is one stored decision now. One still without a decision after
//!    [`RETRIES`] attempts is *unresolved*. An approval learnt this way joins the
//!    acknowledged ones.
//! 2. **Lost acknowledged approvals**: every approval a client was told of must be stored
//!    (its decision key, read on the node of its slot) and in its slot's audit stream.
//! 3. **Over-reservation**: for every user of the run, `used_fen` in the store must equal
//!    the seeded `used_fen` plus the amounts of the user's approvals in the audit streams
//!    (this run's keys only), and never exceed the limit.
//!
//! # Layout
//! - [`AuditReport`]: the counts, written as `audit.json`.
//! - [`audit`]: runs the reconciliation.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gateway::store::{RedisStore, Store};
use http::{Method, Request, header};
use http_body_util::Full;
use risk_core::UserId;
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::client::{Conn, TargetAddr};
use crate::ledger::{Ledger, LedgerEntry, Told};

/// Attempts to resolve an unknown outcome (and to read one store record) before giving up.
pub const RETRIES: u32 = 8;

/// The reconciliation's counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditReport {
    /// Drawdowns in the ledger.
    pub drawdowns: u64,
    /// Approvals clients were told of (with those learnt by resolving unknown outcomes).
    pub acknowledged_approvals: u64,
    /// **Gate.** Acknowledged approvals whose decision the store does not hold.
    pub lost_acknowledged_approvals: u64,
    /// **Gate.** Acknowledged approvals the store holds but no audit stream records.
    pub approvals_missing_from_audit: u64,
    /// Drawdowns whose client never learnt the outcome.
    pub unknown_outcomes: u64,
    /// Of those, resolved to the decision stored before (a replay).
    pub unknown_resolved_stored: u64,
    /// Of those, resolved to no decision stored before (decided now).
    pub unknown_resolved_none: u64,
    /// **Gate.** Of those, still without a decision after every retry.
    pub unknown_unresolved: u64,
    /// Users of the run whose line was checked.
    pub users_checked: u64,
    /// **Gate.** Users whose `used_fen` is not the seeded one plus their stored approvals
    /// (more: a double or phantom reservation; less: a reservation lost with its decision
    /// kept).
    pub reservation_mismatches: u64,
    /// **Gate.** Users whose `used_fen` exceeds their limit.
    pub over_limit: u64,
    /// **Gate.** Records that could not be read (the store or the gateway did not answer):
    /// nothing is known of them.
    pub unreadable: u64,
    /// A few examples of each failed gate, for a person to look up.
    pub examples: Vec<String>,
}

impl AuditReport {
    /// The gates, by name, with their counts.
    pub fn gates(&self) -> [(&'static str, u64); 6] {
        [
            (
                "lost_acknowledged_approvals",
                self.lost_acknowledged_approvals,
            ),
            (
                "approvals_missing_from_audit",
                self.approvals_missing_from_audit,
            ),
            ("unknown_unresolved", self.unknown_unresolved),
            ("reservation_mismatches", self.reservation_mismatches),
            ("over_limit", self.over_limit),
            ("unreadable", self.unreadable),
        ]
    }

    /// Whether every gate is zero.
    pub fn passed(&self) -> bool {
        self.gates().iter().all(|(_, n)| *n == 0)
    }

    fn example(&mut self, what: String) {
        if self.examples.len() < 20 {
            self.examples.push(what);
        }
    }
}

/// Where the audit reads and asks.
#[derive(Debug, Clone)]
pub struct AuditOptions {
    /// The gateway (the load balancer).
    pub target: TargetAddr,
    /// The run's caller key.
    pub api_key: String,
    /// The store, read directly.
    pub store: RedisStore,
    /// Requests in flight at once.
    pub concurrency: usize,
}

/// How an unknown outcome resolved.
enum Resolved {
    /// Replayed: the decision was stored; `Some` id when an approval.
    Stored(Option<String>),
    /// Decided now: none was stored; `Some` id when an approval.
    None(Option<String>),
    Unresolved(String),
}

#[derive(Deserialize)]
struct DecisionBody {
    decision_id: String,
    outcome: String,
}

/// Sends `entry` again with its key; a decision (replayed or not) resolves it.
async fn resolve(opts: &AuditOptions, conn: &mut Conn, entry: &LedgerEntry) -> Resolved {
    let body = Bytes::from(
        serde_json::json!({
            "user_id": entry.user,
            "amount_fen": entry.amount_fen,
            "channel": "app",
            "device_id": format!("d-{}", entry.user),
        })
        .to_string(),
    );
    let mut last = String::new();
    for attempt in 0..RETRIES {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(100 << attempt.min(5))).await;
        }
        let Ok(req) = Request::builder()
            .method(Method::POST)
            .uri("/v1/drawdowns")
            .header(header::HOST, opts.target.authority.as_str())
            .header(header::AUTHORIZATION, format!("Bearer {}", opts.api_key))
            .header(header::CONTENT_TYPE, "application/json")
            .header("idempotency-key", entry.key.as_str())
            .header("x-retry-attempt", attempt + 1)
            .body(Full::new(body.clone()))
        else {
            return Resolved::Unresolved("the request does not build".into());
        };
        match conn.send(req, Duration::from_secs(5)).await {
            Ok(resp) if resp.status() == 200 => {
                let replayed = resp
                    .headers()
                    .get("idempotent-replayed")
                    .is_some_and(|v| v == "true");
                let Ok(d) = serde_json::from_slice::<DecisionBody>(resp.body()) else {
                    return Resolved::Unresolved("200 without a decision".into());
                };
                let approved = (d.outcome == "approved").then_some(d.decision_id);
                return if replayed {
                    Resolved::Stored(approved)
                } else {
                    Resolved::None(approved)
                };
            }
            Ok(resp) => {
                last = format!(
                    "{} {}",
                    resp.status(),
                    String::from_utf8_lossy(&resp.body()[..resp.body().len().min(200)])
                );
            }
            Err(e) => last = format!("{e:?}"),
        }
    }
    Resolved::Unresolved(last)
}

/// Runs `f` over `items` with `n` at a time, answering in the items' order.
async fn each<T, R, F, Fut>(items: Vec<T>, n: usize, f: F) -> Vec<R>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(T) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send,
{
    let (tx, rx) = async_channel::unbounded::<(usize, T)>();
    let len = items.len();
    for it in items.into_iter().enumerate() {
        let _ = tx.try_send(it);
    }
    tx.close();
    let f = Arc::new(f);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n.clamp(1, 256) {
        let (rx, f) = (rx.clone(), Arc::clone(&f));
        tasks.spawn(async move {
            let mut out = Vec::new();
            while let Ok((i, it)) = rx.recv().await {
                out.push((i, f(it).await));
            }
            out
        });
    }
    let mut all: Vec<(usize, R)> = Vec::with_capacity(len);
    while let Some(r) = tasks.join_next().await {
        all.extend(r.unwrap_or_default());
    }
    all.sort_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, r)| r).collect()
}

/// Reads a store record, retried while the store does not answer (a failover in progress).
async fn read<T, Fut>(f: impl Fn() -> Fut) -> Result<T, String>
where
    Fut: Future<Output = gateway::store::Result<T>>,
{
    let mut last = String::new();
    for attempt in 0..RETRIES {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(100 << attempt.min(5))).await;
        }
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

/// Reconciles `ledger` with the store.
pub async fn audit(ledger: &Ledger, opts: &AuditOptions) -> Result<AuditReport, Error> {
    let mut report = AuditReport {
        drawdowns: ledger.entries.len() as u64,
        ..AuditReport::default()
    };
    // (decision id, user, amount) of every acknowledged approval.
    let mut approvals: Vec<(String, String, u64)> = Vec::new();
    let mut unknown = Vec::new();
    for e in &ledger.entries {
        match &e.told {
            Told::Approved { decision_id } => {
                approvals.push((decision_id.clone(), e.user.clone(), e.amount_fen));
            }
            Told::Unknown => unknown.push(e.clone()),
            Told::Decided | Told::Refused => {}
        }
    }

    // 1. Unknown outcomes, asked again with their keys.
    report.unknown_outcomes = unknown.len() as u64;
    let o = opts.clone();
    let resolved = each(unknown.clone(), opts.concurrency, move |e: LedgerEntry| {
        let o = o.clone();
        async move {
            let mut conn = Conn::new(o.target.addr);
            resolve(&o, &mut conn, &e).await
        }
    })
    .await;
    for (e, r) in unknown.iter().zip(resolved) {
        let approved = match r {
            Resolved::Stored(approved) => {
                report.unknown_resolved_stored += 1;
                approved
            }
            Resolved::None(approved) => {
                report.unknown_resolved_none += 1;
                approved
            }
            Resolved::Unresolved(why) => {
                report.unknown_unresolved += 1;
                report.example(format!("key {} ({}): unresolved: {why}", e.key, e.user));
                None
            }
        };
        if let Some(id) = approved {
            approvals.push((id, e.user.clone(), e.amount_fen));
        }
    }
    report.acknowledged_approvals = approvals.len() as u64;

    // 2. Every acknowledged approval stored, and in the audit streams.
    let store = opts.store.clone();
    let stored = each(
        approvals.iter().map(|(id, _, _)| id.clone()).collect(),
        opts.concurrency,
        move |id: String| {
            let store = store.clone();
            async move { read(|| store.decision_stored(&id)).await }
        },
    )
    .await;
    let events = read(|| opts.store.read_all_audit())
        .await
        .map_err(|e| Error::Target(format!("reading the audit streams: {e}")))?;
    let mut in_audit = HashSet::new();
    // Per user: the amounts of this run's approvals in the audit streams.
    let mut approved_by_user: HashMap<String, u64> = HashMap::new();
    for ev in &events {
        let f = &ev.fields;
        let ours = f
            .get("idempotency_key")
            .is_some_and(|k| k.starts_with(&ledger.key_prefix));
        if !ours || f.get("outcome").map(String::as_str) != Some("approved") {
            continue;
        }
        if let Some(id) = f.get("decision_id") {
            in_audit.insert(id.clone());
        }
        let amount = f
            .get("amount_fen")
            .and_then(|a| a.parse::<u64>().ok())
            .ok_or_else(|| Error::Target(format!("audit event {} without amount_fen", ev.id)))?;
        if let Some(u) = f.get("user") {
            *approved_by_user.entry(u.clone()).or_default() += amount;
        }
    }
    for ((id, user, amount), stored) in approvals.iter().zip(stored) {
        match stored {
            Ok(true) => {
                if !in_audit.contains(id) {
                    report.approvals_missing_from_audit += 1;
                    report.example(format!("approval {id} ({user}) not in the audit streams"));
                }
            }
            Ok(false) => {
                report.lost_acknowledged_approvals += 1;
                report.example(format!(
                    "acknowledged approval {id} ({user}, {amount} fen) is not stored"
                ));
            }
            Err(e) => {
                report.unreadable += 1;
                report.example(format!("decision {id}: {e}"));
            }
        }
    }

    // 3. Every user's line: seeded + stored approvals == used <= limit.
    let users: Vec<_> = {
        let drew: HashSet<&str> = ledger.entries.iter().map(|e| e.user.as_str()).collect();
        ledger
            .users
            .iter()
            .filter(|u| drew.contains(u.id.as_str()))
            .cloned()
            .collect()
    };
    report.users_checked = users.len() as u64;
    let store = opts.store.clone();
    let states = each(
        users.iter().map(|u| u.id.clone()).collect(),
        opts.concurrency,
        move |id: String| {
            let store = store.clone();
            async move {
                let user = UserId::parse(&id).map_err(|e| format!("user id {id}: {e}"))?;
                read(|| store.load("", &user, None)).await.map(|l| l.user)
            }
        },
    )
    .await;
    let mut mismatched: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for (u, state) in users.iter().zip(states) {
        match state {
            Ok(Some(s)) => {
                let used = s.used.get();
                let want = u.used_fen + approved_by_user.get(&u.id).copied().unwrap_or(0);
                if used != want {
                    report.reservation_mismatches += 1;
                    mismatched.insert(u.id.clone(), (used, want));
                }
                if used > s.limit.get() {
                    report.over_limit += 1;
                    report.example(format!(
                        "user {}: used {used} fen over the limit {} fen",
                        u.id,
                        s.limit.get()
                    ));
                }
            }
            Ok(None) => {
                report.unreadable += 1;
                report.example(format!("user {} is not in the store", u.id));
            }
            Err(e) => {
                report.unreadable += 1;
                report.example(format!("user {}: {e}", u.id));
            }
        }
    }
    for (id, (used, want)) in mismatched.into_iter().take(10) {
        report.example(format!(
            "user {id}: used {used} fen, seeded plus stored approvals {want} fen"
        ));
    }
    Ok(report)
}
