//! The audit trail of operator changes on Redis ([`crate::store::audit`]): one stream,
//! `P:{admin}:audit`, its own hash tag (on a cluster it lives on the node owning that slot;
//! operator changes are few, so one stream holds them all in order).
//!
//! Each entry is `XADD … *` (the id is Redis' own, so entries are ordered across instances)
//! with the fields `operator`, `at` (the gateway's clock), `action`, `route`, `target` and
//! `changes` (JSON: `[{"path", "before", "after"}, …]`). Nothing trims it (no `MAXLEN`);
//! a consumer archives and trims with `XTRIM MINID`. Read it with
//! `XRANGE P:{admin}:audit - +`, or through `GET /admin/audit`.

use super::{RedisStore, Way, corrupt};
use crate::store::Result;
use crate::store::audit::{AuditCursor, AuditEntry, AuditPage, OperatorChange};
use deadpool_redis::redis;
use std::collections::HashMap;

impl RedisStore {
    /// The operator audit stream's key.
    pub fn operator_audit_key(&self) -> String {
        format!("{}:{{admin}}:audit", self.config().key_prefix)
    }

    /// `XADD` of one change; answers its id.
    pub(crate) async fn append_operator_change(&self, change: &OperatorChange) -> Result<String> {
        let changes = serde_json::to_string(&change.changes)
            .map_err(|e| crate::store::invalid(format!("changes: {e}")))?;
        let mut cmd = redis::cmd("XADD");
        cmd.arg(self.operator_audit_key())
            .arg("*")
            .arg("operator")
            .arg(&change.operator)
            .arg("at")
            .arg(&change.at)
            .arg("action")
            .arg(&change.action)
            .arg("route")
            .arg(&change.route)
            .arg("target")
            .arg(&change.target)
            .arg("changes")
            .arg(changes);
        self.with_conn(|mut c| async move { cmd.query_async::<String>(&mut c).await })
            .await
    }

    /// Up to `limit` entries after `after`, oldest first (`XRANGE (after + COUNT limit`).
    pub(crate) async fn operator_changes(
        &self,
        after: AuditCursor,
        limit: usize,
    ) -> Result<AuditPage> {
        let after = (after != AuditCursor::START).then(|| after.to_string());
        page(
            self.stream_page(
                self.operator_audit_key(),
                after.as_deref(),
                Way::Forward,
                limit,
            )
            .await?,
        )
    }
}

impl RedisStore {
    /// Up to `limit` entries before `before` (`None`: the newest), newest first
    /// (`XREVRANGE (before - COUNT limit`).
    pub(crate) async fn operator_changes_back(
        &self,
        before: Option<AuditCursor>,
        limit: usize,
    ) -> Result<AuditPage> {
        let before = before.map(|b| b.to_string());
        page(
            self.stream_page(
                self.operator_audit_key(),
                before.as_deref(),
                Way::Back,
                limit,
            )
            .await?,
        )
    }
}

/// A page of the operator log from a stream read.
fn page(raw: Vec<(String, Vec<(String, String)>)>) -> Result<AuditPage> {
    let entries = raw
        .into_iter()
        .map(|(id, fields)| entry(id, fields.into_iter().collect()))
        .collect::<Result<_>>()?;
    Ok(AuditPage {
        entries,
        dropped: 0,
    })
}

fn entry(id: String, mut f: HashMap<String, String>) -> Result<AuditEntry> {
    let mut take = |name: &str| {
        f.remove(name)
            .ok_or_else(|| corrupt(format!("operator audit entry {id}: no field {name}")))
    };
    let changes = take("changes")?;
    let change = OperatorChange {
        operator: take("operator")?,
        at: take("at")?,
        action: take("action")?,
        route: take("route")?,
        target: take("target")?,
        changes: serde_json::from_str(&changes)
            .map_err(|e| corrupt(format!("operator audit entry {id}: changes: {e}")))?,
    };
    Ok(AuditEntry { id, change })
}
