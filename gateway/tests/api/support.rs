//! Starting a gateway for a test, and small request helpers.

use gateway::clock::ManualClock;
use gateway::config::Config;
use gateway::embedded::{EmbeddedGateway, EmbeddedOptions, start};
use gateway::policy::LimitsPatch;
use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};

pub const KEY: &str = "test-caller-key-000001";
pub const KEY2: &str = "test-caller-key-000002";
pub const ADMIN: &str = "test-admin-token-00001";

/// [`relaxed`] with the policy's fixed concurrency limit instead of the adaptive default,
/// for tests that set `policy.normal.concurrency` and `queue` to build a known state.
pub fn relaxed_fixed() -> Config {
    let mut c = relaxed();
    c.admission.mode = gateway::admission::AdmissionMode::Fixed;
    c
}

/// A gateway on a loopback port with a manual clock set outside every peak window.
pub struct TestGateway {
    pub gw: EmbeddedGateway,
    pub client: Client,
    pub clock: ManualClock,
}

/// 2026-06-01 12:00 Asia/Shanghai: no window of the default configuration is active.
pub fn quiet_noon() -> jiff::Timestamp {
    jiff::civil::date(2026, 6, 1)
        .at(12, 0, 0, 0)
        .in_tz("Asia/Shanghai")
        .unwrap()
        .timestamp()
}

/// Defaults with rate limits out of the way (tests that want them set them).
pub fn relaxed() -> Config {
    let mut c = Config {
        api_keys: vec![KEY.into(), KEY2.into()],
        admin_token: ADMIN.into(),
        seed_demo_users: Some(true),
        ..Config::default()
    };
    c.policy.normal = LimitsPatch::unlimited();
    // A debug build on a loaded machine can give a new connection its first turn late; the
    // tests that are about it turn the stale close back on.
    c.server.overload.stale_delay = std::time::Duration::ZERO;
    c
}

impl TestGateway {
    pub async fn start(config: Config) -> TestGateway {
        let clock = ManualClock::new(quiet_noon());
        let gw = start(EmbeddedOptions {
            config: Some(config),
            clock: Some(clock.shared()),
            ..EmbeddedOptions::default()
        })
        .await
        .expect("the test gateway starts");
        TestGateway {
            gw,
            client: Client::new(),
            clock,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.gw.base_url())
    }

    pub async fn put_user(&self, user: &str, body: Value) -> Response {
        self.client
            .put(self.url(&format!("/admin/credit-lines/{user}")))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// A clean grade-A user with this line.
    pub async fn user(&self, user: &str, limit_fen: u64) {
        let r = self.put_user(user, json!({"limit_fen": limit_fen, "used_fen": 0, "risk_grade": "A", "account_age_days": 400})).await;
        assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    }

    pub async fn drawdown(&self, key: &str, user: &str, amount: i64) -> Response {
        self.client
            .post(self.url("/v1/drawdowns"))
            .bearer_auth(KEY)
            .header("Idempotency-Key", key)
            .json(&json!({"user_id": user, "amount_fen": amount, "channel": "app"}))
            .send()
            .await
            .unwrap()
    }

    /// The thresholds document in force.
    pub async fn thresholds(&self) -> Value {
        self.get("/admin/thresholds", ADMIN)
            .await
            .json()
            .await
            .unwrap()
    }

    /// `PUT /admin/thresholds` with this document.
    pub async fn put_thresholds(&self, th: &Value) -> Response {
        self.client
            .put(self.url("/admin/thresholds"))
            .bearer_auth(ADMIN)
            .json(th)
            .send()
            .await
            .unwrap()
    }

    /// Publishes the document in force with `change` applied, as the next version.
    pub async fn publish_thresholds(&self, change: impl FnOnce(&mut Value)) {
        let mut th = self.thresholds().await;
        th["version"] = json!(th["version"].as_u64().unwrap() + 1);
        change(&mut th);
        let r = self
            .client
            .put(self.url("/admin/thresholds"))
            .bearer_auth(ADMIN)
            .json(&th)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    }

    /// The `/metrics` page as text.
    pub async fn metrics(&self) -> String {
        let r = self.client.get(self.url("/metrics")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r.text().await.unwrap()
    }

    pub async fn get(&self, path: &str, token: &str) -> Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }
}

/// The error code of an error response.
pub async fn error_code(r: Response) -> (StatusCode, String, Value) {
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    (
        status,
        body["error"]["code"]
            .as_str()
            .unwrap_or("<none>")
            .to_owned(),
        body,
    )
}

/// The fault switches of the test gateway's memory store.
pub fn faults(t: &TestGateway) -> &gateway::store::Faults {
    #[allow(
        irrefutable_let_patterns,
        reason = "the Redis store will add a variant"
    )]
    let gateway::store::AnyStore::Memory(m) = &t.gw.app.store else {
        panic!("fault injection needs the memory store")
    };
    m.faults()
}

/// Waits (polling, bounded) until `cond` holds: for a request to be in flight, say.
pub async fn eventually(what: &str, cond: impl Fn() -> bool) {
    let start = std::time::Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
}
