//! Reloading the configuration file without a restart (`POST /admin/reload`, as `SIGHUP`).

use crate::support::*;
use gateway::config::Config;
use gateway::embedded::{EmbeddedOptions, start};
use reqwest::StatusCode;
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Duration;

/// `config` as a file, with the credentials (which the TOML printer leaves out).
fn write(path: &std::path::Path, config: &Config) {
    let text = format!(
        "api_keys = [\"{KEY}\", \"{KEY2}\"]\nadmin_token = \"{ADMIN}\"\n{}",
        toml::to_string(config).unwrap()
    );
    std::fs::write(path, text).unwrap();
}

struct FileGateway {
    t: TestGateway,
    path: std::path::PathBuf,
    _dir: TempDir,
}

/// A directory removed when dropped.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn from_file(config: &Config) -> FileGateway {
    let dir = std::env::temp_dir().join(format!(
        "lg-reload-{}-{}",
        std::process::id(),
        ulid::Ulid::new()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("gateway.toml");
    write(&path, config);
    let clock = gateway::clock::ManualClock::new(quiet_noon());
    let gw = start(EmbeddedOptions {
        config_path: Some(path.clone()),
        clock: Some(clock.shared()),
        ..EmbeddedOptions::default()
    })
    .await
    .unwrap();
    FileGateway {
        t: TestGateway {
            gw,
            client: reqwest::Client::new(),
            clock,
        },
        path,
        _dir: TempDir(dir),
    }
}

async fn reload(t: &TestGateway) -> (StatusCode, Value) {
    let r = t
        .client
        .post(t.url("/admin/reload"))
        .bearer_auth(ADMIN)
        .header("Content-Type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap())
}

/// The per-user quota of the normal policy, per minute and burst.
fn with_user_quota(mut c: Config, per_minute: u32, burst: u32) -> Config {
    c.policy.normal.user.per_minute = Some(per_minute);
    c.policy.normal.user.burst = Some(burst);
    c
}

#[tokio::test]
async fn a_reload_changes_a_per_user_limit_without_dropping_a_request_of_a_steady_stream() {
    let f = from_file(&relaxed()).await;
    let t = Arc::new(f.t);
    // 0 before the reload is asked for, 1 while it runs, 2 once it answered.
    let phase = Arc::new(AtomicU8::new(0));
    // Four clients ask for one user's credit line, one request after another each, until
    // told to stop; every answer is kept with the phase when it was sent and when it came.
    let mut streams = Vec::new();
    let stop = Arc::new(AtomicBool::new(false));
    for _ in 0..4 {
        let (t, phase, stop) = (Arc::clone(&t), Arc::clone(&phase), Arc::clone(&stop));
        streams.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let sent = phase.load(Ordering::SeqCst);
                let r = t
                    .client
                    .get(t.url("/v1/credit-lines/u-demo-c"))
                    .bearer_auth(KEY)
                    .send()
                    .await
                    .expect("no request is dropped");
                let status = r.status();
                let body: Value = r.json().await.expect("every answer is whole");
                let came = phase.load(Ordering::SeqCst);
                seen.push(((sent, came), status, body["error"]["code"].clone()));
            }
            seen
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // 2 a minute, a burst of 2: the stream runs dry at once.
    write(&f.path, &with_user_quota(relaxed(), 2, 2));
    phase.store(1, Ordering::SeqCst);
    let (status, report) = reload(&t).await;
    phase.store(2, Ordering::SeqCst);
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["applied"], serde_json::json!(["policy"]));
    assert_eq!(report["needs_restart"], serde_json::json!([]));
    assert_eq!(report["policy_window"], "normal");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    let mut seen = Vec::new();
    for s in streams {
        seen.extend(s.await.unwrap());
    }
    let before: Vec<_> = seen.iter().filter(|(p, ..)| *p == (0, 0)).collect();
    let after: Vec<_> = seen.iter().filter(|(p, ..)| p.0 == 2).collect();
    assert!(before.len() >= 8 && after.len() >= 8, "{seen:?}");
    // Before the reload every request is served, after it the new quota answers: at most
    // its burst is served, the rest is refused by the per-user limit, and nothing else.
    assert!(
        before.iter().all(|(_, s, _)| *s == StatusCode::OK),
        "{before:?}"
    );
    let served = after
        .iter()
        .filter(|(_, s, _)| *s == StatusCode::OK)
        .count();
    assert!(served <= 2, "{after:?}");
    assert!(
        after.iter().all(|(_, s, code)| *s == StatusCode::OK
            || (*s == StatusCode::TOO_MANY_REQUESTS && code == "RATE_LIMITED_USER")),
        "{after:?}"
    );
    // The policy the admin API shows is the file's.
    let policy: Value = t.get("/admin/policy", ADMIN).await.json().await.unwrap();
    assert_eq!(policy["limits"]["user"]["per_minute"], 2);
    // The reload is in the audit trail as the operator's, naming what it applied.
    let audit: Value = t.get("/admin/audit", ADMIN).await.json().await.unwrap();
    let entry = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "config.reload")
        .unwrap_or_else(|| panic!("no config.reload in {audit}"));
    assert_eq!(entry["operator"], "admin");
    assert!(
        entry["changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["path"] == "/applied" && c["after"] == serde_json::json!(["policy"])),
        "{entry}"
    );
}

#[tokio::test]
async fn a_bad_file_changes_nothing_and_says_why() {
    let f = from_file(&with_user_quota(relaxed(), 600, 600)).await;
    let t = &f.t;
    let generation = |p: &Value| p["generation"].as_u64().unwrap();
    let before: Value = t.get("/admin/policy", ADMIN).await.json().await.unwrap();

    // Not TOML.
    std::fs::write(&f.path, "[policy\n").unwrap();
    let (status, body) = reload(t).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "CONFIG_INVALID");
    assert_eq!(body["error"]["details"][0]["field"], ".");
    assert!(body["error"]["request_id"].is_string());
    // A value out of range: named by its key.
    let mut bad = relaxed();
    bad.policy.normal.user.per_minute = Some(0);
    write(&f.path, &bad);
    let (status, body) = reload(t).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]["details"][0]["field"]
            .as_str()
            .unwrap()
            .contains("per_minute"),
        "{body}"
    );
    // A file that is gone.
    std::fs::remove_file(&f.path).unwrap();
    let (status, body) = reload(t).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let after: Value = t.get("/admin/policy", ADMIN).await.json().await.unwrap();
    assert_eq!(after, before, "nothing changed");

    // A good file with a restart-only change: reported, the live part applied.
    let mut next = with_user_quota(relaxed(), 60, 10);
    next.server.max_connections = 77;
    write(&f.path, &next);
    let (status, body) = reload(t).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["applied"], serde_json::json!(["policy"]));
    assert_eq!(body["needs_restart"], serde_json::json!(["server"]));
    let after: Value = t.get("/admin/policy", ADMIN).await.json().await.unwrap();
    assert_eq!(generation(&after), generation(&before) + 1);
    assert_eq!(after["limits"]["user"]["per_minute"], 60);
    // The same file again: nothing more to apply, the restart still pending.
    let (_, body) = reload(t).await;
    assert_eq!(body["applied"], serde_json::json!([]));
    assert_eq!(body["needs_restart"], serde_json::json!(["server"]));
}

#[tokio::test]
async fn new_api_keys_are_honoured_at_once_and_old_ones_refused() {
    let f = from_file(&relaxed()).await;
    let t = &f.t;
    let text = std::fs::read_to_string(&f.path).unwrap();
    let replaced = text.replace(KEY2, "test-caller-key-000003");
    std::fs::write(&f.path, replaced).unwrap();
    let (status, body) = reload(t).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["applied"], serde_json::json!(["api_keys"]));
    let ask = |key: &'static str| {
        t.client
            .get(t.url("/v1/credit-lines/u-demo-a"))
            .bearer_auth(key)
            .send()
    };
    assert_eq!(ask(KEY).await.unwrap().status(), StatusCode::OK);
    assert_eq!(
        ask("test-caller-key-000003").await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(ask(KEY2).await.unwrap().status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_gateway_without_a_file_has_nothing_to_reload() {
    let t = TestGateway::start(relaxed()).await;
    let (status, body) = reload(&t).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "RELOAD_UNAVAILABLE");
    // Admin only.
    let r = t
        .client
        .post(t.url("/admin/reload"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}
