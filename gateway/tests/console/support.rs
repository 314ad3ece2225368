//! A gateway with demo users, a manual clock and known credentials; a small cookie-keeping
//! client for the plain HTTP tests.

use gateway::clock::ManualClock;
use gateway::config::Config;
use gateway::embedded::{EmbeddedGateway, EmbeddedOptions, start};
use gateway::policy::LimitsPatch;
use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};

pub const KEY: &str = "console-caller-key-0001";
pub const ADMIN: &str = "console-admin-token-001";

/// 2026-06-01 12:00 Asia/Shanghai: no window of the default configuration is active.
pub fn quiet_noon() -> jiff::Timestamp {
    jiff::civil::date(2026, 6, 1)
        .at(12, 0, 0, 0)
        .in_tz("Asia/Shanghai")
        .unwrap()
        .timestamp()
}

pub struct TestGateway {
    pub gw: EmbeddedGateway,
    pub clock: ManualClock,
    pub api: Client,
}

impl TestGateway {
    pub async fn start() -> TestGateway {
        let mut config = Config {
            api_keys: vec![KEY.into()],
            admin_token: ADMIN.into(),
            seed_demo_users: Some(true),
            ..Config::default()
        };
        config.policy.normal = LimitsPatch::unlimited();
        config.server.overload.stale_delay = std::time::Duration::ZERO;
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
            clock,
            api: Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.gw.base_url())
    }

    /// A rejected drawdown of `u-demo-e` (overdue balance: appealable) and its appeal;
    /// answers (decision id, appeal id).
    pub async fn rejected_and_appealed(&self, key: &str) -> (String, String) {
        let d: Value = self
            .api
            .post(self.url("/v1/drawdowns"))
            .bearer_auth(KEY)
            .header("Idempotency-Key", key)
            .json(&json!({"user_id": "u-demo-e", "amount_fen": 10_000, "channel": "app"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(d["outcome"], "rejected", "{d}");
        let decision = d["decision_id"].as_str().unwrap().to_owned();
        let a: Value = self
            .api
            .post(self.url("/v1/appeals"))
            .bearer_auth(KEY)
            .json(&json!({"decision_id": decision, "user_id": "u-demo-e",
                          "message": "I repaid on Monday."}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (decision, a["appeal_id"].as_str().unwrap().to_owned())
    }

    /// An appeal as the caller's JSON API answers it.
    pub async fn appeal_json(&self, id: &str) -> Value {
        self.api
            .get(self.url(&format!("/v1/appeals/{id}")))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// `GET /admin/audit`: the operator changes recorded so far.
    pub async fn audit_json(&self) -> Value {
        self.api
            .get(self.url("/admin/audit"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn policy_json(&self) -> Value {
        self.api
            .get(self.url("/admin/policy"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

/// A browser-like client without a cookie store: it keeps the console's cookies itself, so
/// a test sees every `Set-Cookie` (reqwest is built here without its cookie feature).
pub struct Browser {
    pub http: Client,
    pub cookies: Vec<(String, String)>,
    pub base: String,
}

impl Browser {
    pub fn new(base: String) -> Browser {
        Browser {
            http: Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: Vec::new(),
            base,
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep(&mut self, res: &Response) {
        for v in res.headers().get_all(reqwest::header::SET_COOKIE) {
            let v = v.to_str().unwrap();
            let (pair, _) = v.split_once(';').unwrap_or((v, ""));
            let (k, val) = pair.split_once('=').unwrap();
            self.cookies.retain(|(n, _)| n != k);
            if !v.contains("Max-Age=0") {
                self.cookies.push((k.to_owned(), val.to_owned()));
            }
        }
    }

    pub async fn get(&mut self, path: &str) -> (StatusCode, String, Response) {
        let res = self
            .http
            .get(format!("{}{path}", self.base))
            .header("Cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        self.keep(&res);
        let status = res.status();
        let headers = res.headers().clone();
        let body = res.text().await.unwrap();
        (status, body, rebuilt(status, headers))
    }

    pub async fn post(
        &mut self,
        path: &str,
        form: &[(&str, &str)],
    ) -> (StatusCode, String, Response) {
        let res = self
            .http
            .post(format!("{}{path}", self.base))
            .header("Cookie", self.cookie_header())
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(form).unwrap())
            .send()
            .await
            .unwrap();
        self.keep(&res);
        let status = res.status();
        let headers = res.headers().clone();
        let body = res.text().await.unwrap();
        (status, body, rebuilt(status, headers))
    }

    /// Signs in with `token` through the form; answers the sign-in's response.
    pub async fn sign_in(&mut self, token: &str) -> (StatusCode, String, Response) {
        let (_, page, _) = self.get("/console/sign-in").await;
        let csrf = csrf_of(&page);
        self.post("/console/sign-in", &[("csrf", &csrf), ("token", token)])
            .await
    }
}

/// A response carrying only the status and headers (the body was read).
fn rebuilt(status: StatusCode, headers: reqwest::header::HeaderMap) -> Response {
    let mut b = http::Response::builder().status(status.as_u16());
    for (k, v) in &headers {
        b = b.header(k.as_str(), v.as_bytes());
    }
    Response::from(b.body(Vec::<u8>::new()).unwrap())
}

/// The first `csrf` hidden field of a page.
pub fn csrf_of(page: &str) -> String {
    let at = page
        .find("name=\"csrf\" value=\"")
        .expect("the page has a csrf field");
    let rest = &page[at + "name=\"csrf\" value=\"".len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}
