//! The audit trail of operator changes on the memory store (the same check runs on Redis in
//! `tests/redis`).

use crate::support::*;

#[path = "../support/admin_audit.rs"]
mod admin_audit;

#[tokio::test]
async fn every_admin_write_is_audited_with_its_operator_and_difference() {
    let mut config = relaxed();
    config.admin.tokens = admin_audit::named_tokens();
    let t = TestGateway::start(config).await;
    admin_audit::every_admin_write_is_audited(
        t.gw.base_url().trim_end_matches('/'),
        ADMIN,
        KEY,
        "2026-06-01T12:00:00+08:00",
    )
    .await;
}
