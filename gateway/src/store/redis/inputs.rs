//! Decision inputs on Redis ([`crate::store::inputs`]): one capped stream for the store,
//! `P:{din}:inputs`, each entry two fields: `d`, the decision id, and `i`, the inputs as JSON.
//!
//! Written with `XADD … MAXLEN n *` (exact trimming: the bound is the bound,
//! [`crate::store::inputs::bound`]), queued on the commits' batch sender
//! ([`super::coalesce`]) so it leaves with the next batch of commits and no drawdown waits for
//! it; on a cluster, sent by a task of its own. A failed write is counted as nothing: that
//! decision is skipped by a backtest (as not recorded).
//!
//! A backtest selects decisions from the slots' decision streams (`P:{sNNNN}:audit`, written
//! by the commit script), newest first, page by page, then reads the inputs stream newest
//! first, page by page, until it has found every selected decision's inputs or read the whole
//! stream (decoding only the entries it selected).

use super::{RedisStore, SLOTS, Slot, corrupt};
use crate::store::inputs::{DecisionInputs, Selected, Selection, bound, decision_ms};
use crate::store::{Result, StoreError};
use deadpool_redis::redis;
use std::collections::HashMap;

/// Stream entries as `XRANGE` answers them.
type Entries = Vec<(String, Vec<(String, String)>)>;

/// Commands per pipeline when reading the streams of many slots.
const CHUNK: usize = 32;

/// Entries read per slot and page when selecting a time range.
const RANGE_PAGE: usize = 1_000;

/// Entries of the inputs stream read per page (a few MB).
const INPUTS_PAGE: usize = 10_000;

impl RedisStore {
    /// The key of the decision-inputs stream.
    pub fn inputs_key(&self) -> String {
        format!("{}:{{din}}:inputs", self.config().key_prefix)
    }

    /// Keeps the inputs of a committed decision in the stream of at most
    /// [`bound`]`(kept)` entries; sent with the next batch, not awaited. `kept == 0` keeps
    /// nothing.
    pub fn keep_inputs(&self, inputs: &DecisionInputs, kept: usize) {
        let bound = bound(kept);
        if bound == 0 {
            return;
        }
        let Ok(json) = serde_json::to_string(inputs) else {
            return;
        };
        let mut cmd = redis::cmd("XADD");
        cmd.arg(self.inputs_key())
            .arg("MAXLEN")
            .arg(bound)
            .arg("*")
            .arg("d")
            .arg(&inputs.decision_id)
            .arg("i")
            .arg(json);
        if self.is_cluster() {
            let store = self.clone();
            tokio::spawn(async move {
                let _ = store
                    .with_conn(|mut c| async move { cmd.query_async::<redis::Value>(&mut c).await })
                    .await;
            });
        } else {
            self.coalesced_detached(cmd);
        }
    }

    /// The decisions `selection` names (from the slots' decision streams) and the inputs
    /// kept for them, oldest first.
    pub async fn select_inputs(&self, selection: Selection) -> Result<Selected> {
        let ids = self.select_decisions(selection).await?;
        if ids.is_empty() {
            return Ok(Selected::default());
        }
        let mut wanted: HashMap<&str, usize> = ids
            .iter()
            .enumerate()
            .map(|(n, (_, id))| (id.as_str(), n))
            .collect();
        let mut found: Vec<Option<DecisionInputs>> = vec![None; ids.len()];
        // The oldest decision key read; the stream's oldest once it is read to its start.
        let mut oldest_read: Option<u128> = None;
        let mut reached_start = false;
        let mut before: Option<String> = None;
        while !wanted.is_empty() {
            let mut cmd = redis::cmd("XREVRANGE");
            cmd.arg(self.inputs_key())
                .arg(before.as_ref().map_or("+".to_owned(), |b| format!("({b}")))
                .arg("-")
                .arg("COUNT")
                .arg(INPUTS_PAGE);
            let page: Entries = self
                .with_conn(|mut c| async move { cmd.query_async(&mut c).await })
                .await?;
            let last_page = page.len() < INPUTS_PAGE;
            if let Some((id, _)) = page.last() {
                before = Some(id.clone());
            }
            for (_, fields) in page {
                let mut d = None;
                let mut i = None;
                for (f, v) in fields {
                    match f.as_str() {
                        "d" => d = Some(v),
                        "i" => i = Some(v),
                        _ => {}
                    }
                }
                let (Some(d), Some(i)) = (d, i) else {
                    return Err(corrupt("a decision-inputs entry without `d` and `i`"));
                };
                let key = decision_key(&d)?;
                oldest_read = Some(oldest_read.map_or(key, |o| o.min(key)));
                if let Some(n) = wanted.remove(d.as_str()) {
                    let inputs: DecisionInputs = serde_json::from_str(&i)
                        .map_err(|e| corrupt(format!("decision inputs: {e}")))?;
                    found[n] = Some(inputs);
                }
            }
            if last_page {
                reached_start = true;
                break;
            }
        }
        let keys: Vec<u128> = ids.iter().map(|(k, _)| *k).collect();
        // Read to its start when something was not found: the oldest held then tells which of
        // those were pushed out. Stopped early, everything was found: nothing is skipped.
        let oldest_held = if reached_start { oldest_read } else { None };
        let inputs = found.into_iter().flatten().collect();
        Ok(Selected::new(&keys, oldest_held, inputs))
    }

    /// The ids of the decisions `selection` names, oldest first with their ULIDs' time
    /// (ms): the decision streams read backwards from their ends, all slots at once, page by
    /// page, until no slot can hold another selected decision. A slot's stream is in commit
    /// order, which is its ids' order up to the clock skew between instances.
    async fn select_decisions(&self, selection: Selection) -> Result<Vec<(u128, String)>> {
        struct Cursor {
            slot: Slot,
            /// The stream id to read before (`None`: from the end).
            before: Option<String>,
            /// The oldest id key read so far.
            oldest: Option<u128>,
            done: bool,
        }
        let page = match selection {
            // Twice an even share per slot, so most slots are read once.
            Selection::Last(n) => (2 * n.div_ceil(usize::from(SLOTS))).clamp(8, RANGE_PAGE),
            Selection::Range { .. } => RANGE_PAGE,
        };
        let mut cursors: Vec<Cursor> = (0..SLOTS)
            .filter_map(Slot::new)
            .map(|slot| Cursor {
                slot,
                before: None,
                oldest: None,
                done: false,
            })
            .collect();
        let mut got: Vec<(u128, String)> = Vec::new();
        loop {
            // The key the last selection must reach: a slot whose oldest read is older
            // holds nothing more that is selected.
            let floor: Option<u128> = match selection {
                Selection::Last(0) => break,
                Selection::Last(n) if got.len() >= n => {
                    got.select_nth_unstable_by(n - 1, |a, b| b.0.cmp(&a.0));
                    got.truncate(n);
                    got.iter().map(|(k, _)| *k).min()
                }
                Selection::Last(_) => None,
                Selection::Range { from, .. } => {
                    Some(u128::from(u64::try_from(from.as_millisecond()).unwrap_or(0)) << 80)
                }
            };
            let active: Vec<usize> = cursors
                .iter()
                .enumerate()
                .filter(|(_, c)| !c.done && floor.is_none_or(|f| c.oldest.is_none_or(|o| o > f)))
                .map(|(i, _)| i)
                .collect();
            if active.is_empty() {
                break;
            }
            let cmds: Vec<redis::Cmd> = active
                .iter()
                .map(|&i| {
                    let c = &cursors[i];
                    let mut cmd = redis::cmd("XREVRANGE");
                    cmd.arg(self.audit_key(c.slot))
                        .arg(
                            c.before
                                .as_ref()
                                .map_or("+".to_owned(), |b| format!("({b}")),
                        )
                        .arg("-")
                        .arg("COUNT")
                        .arg(page);
                    cmd
                })
                .collect();
            let pages: Vec<Entries> = self.query_chunked(cmds).await?;
            for (&i, entries) in active.iter().zip(pages) {
                let c = &mut cursors[i];
                c.done = entries.len() < page;
                if let Some((id, _)) = entries.last() {
                    c.before = Some(id.clone());
                }
                for (_, fields) in entries {
                    let Some(id) = super::events::fields(fields)?.remove("decision_id") else {
                        return Err(corrupt("a decision event without its decision_id"));
                    };
                    let key = decision_key(&id)?;
                    c.oldest = Some(c.oldest.map_or(key, |o| o.min(key)));
                    let ms = decision_ms(&id).unwrap_or(0);
                    if selection.admits(ms) {
                        got.push((key, id));
                    }
                }
            }
        }
        got.sort_unstable_by_key(|(k, _)| *k);
        if let Selection::Last(n) = selection {
            got.drain(..got.len().saturating_sub(n));
        }
        Ok(got)
    }
}

impl RedisStore {
    /// [`RedisStore::query_each`] in pipelines of [`CHUNK`] commands, one after another:
    /// each answer (up to a few MB of stream entries) arrives within the command timeout.
    async fn query_chunked<T>(&self, cmds: Vec<redis::Cmd>) -> Result<Vec<T>>
    where
        T: redis::FromRedisValue + Send + 'static,
    {
        let mut out = Vec::with_capacity(cmds.len());
        for chunk in cmds.chunks(CHUNK) {
            out.extend(self.query_each(chunk.to_vec()).await?);
        }
        Ok(out)
    }
}

/// A decision id's ULID as a number (its time in the top 48 bits).
fn decision_key(id: &str) -> Result<u128> {
    id.strip_prefix(crate::store::ids::DECISION_PREFIX)
        .and_then(|u| ulid::Ulid::from_string(u).ok())
        .map(u128::from)
        .ok_or_else(|| StoreError::Corrupt(format!("decision stream names {id:?}")))
}
