//! The console over plain HTTP: sign-in, cookies, sessions, CSRF, language.

use crate::support::{ADMIN, Browser, KEY, TestGateway, csrf_of};
use reqwest::StatusCode;
use std::time::Duration;

fn set_cookies(res: &reqwest::Response) -> Vec<String> {
    res.headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_caller_key_cannot_sign_in_and_the_admin_token_opens_a_session() {
    let t = TestGateway::start().await;
    let mut b = Browser::new(t.gw.base_url());

    // Signed out, every page sends to the sign-in form.
    let (status, _, res) = b.get("/console/appeals").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(res.headers()["location"], "/console/sign-in");

    let (status, page, _) = b.sign_in(KEY).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(page.contains("Caller keys cannot sign in"), "{page}");
    assert!(!b.cookies.iter().any(|(k, _)| k == "lg_console"));

    let (status, page, _) = b.sign_in("not-a-token-at-all-000").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(page.contains("not an admin token"), "{page}");

    let (status, _, res) = b.sign_in(ADMIN).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(res.headers()["location"], "/console/appeals");
    let session = set_cookies(&res)
        .into_iter()
        .find(|c| c.starts_with("lg_console="))
        .expect("a session cookie");
    for attr in [
        "HttpOnly",
        "SameSite=Strict",
        "Path=/console",
        "Max-Age=43200",
    ] {
        assert!(session.contains(attr), "{session} lacks {attr}");
    }
    assert!(!session.contains("Secure"), "plain HTTP: not Secure (auto)");
    let (status, page, res) = b.get("/console/appeals").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("<h1>Appeals</h1>"));
    assert_eq!(res.headers()["cache-control"], "no-store");
    assert!(
        res.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );

    // Refusals are counted by their cause like the API's.
    let metrics = t
        .api
        .get(t.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("gateway_refusals_total{code=\"FORBIDDEN\"} ")),
        "{metrics}"
    );
}

#[tokio::test]
async fn the_session_cookie_is_secure_behind_tls() {
    let t = TestGateway::start().await;
    let b = Browser::new(t.gw.base_url());
    let page = b
        .http
        .get(t.url("/console/sign-in"))
        .header("X-Forwarded-Proto", "https")
        .send()
        .await
        .unwrap();
    let pre = set_cookies(&page);
    assert!(pre.iter().all(|c| c.contains("; Secure")), "{pre:?}");
}

#[tokio::test]
async fn the_sign_in_form_needs_its_csrf_token() {
    let t = TestGateway::start().await;
    let mut b = Browser::new(t.gw.base_url());
    let (_, page, _) = b.get("/console/sign-in").await;
    let good = csrf_of(&page);
    let (status, page, _) = b
        .post(
            "/console/sign-in",
            &[("csrf", "0".repeat(64).as_str()), ("token", ADMIN)],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(page.contains("security token"), "{page}");
    assert!(!b.cookies.iter().any(|(k, _)| k == "lg_console"));
    let (status, _, _) = b
        .post("/console/sign-in", &[("csrf", &good), ("token", ADMIN)])
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_write_without_the_csrf_token_is_refused_and_changes_nothing() {
    let t = TestGateway::start().await;
    let (_, appeal) = t.rejected_and_appealed("csrf-1").await;
    let mut b = Browser::new(t.gw.base_url());
    b.sign_in(ADMIN).await;
    let (_, page, _) = b.get(&format!("/console/appeals/{appeal}")).await;
    let csrf = csrf_of(&page);
    let resolve = format!("/console/appeals/{appeal}/resolve");

    for form in [
        vec![("resolution", "overturned"), ("note", "no token")],
        vec![
            ("csrf", ""),
            ("resolution", "overturned"),
            ("note", "empty token"),
        ],
        vec![
            ("csrf", &csrf[..63]),
            ("resolution", "overturned"),
            ("note", "short token"),
        ],
    ] {
        let (status, page, _) = b.post(&resolve, &form).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{form:?}");
        assert!(page.contains("nothing was changed"), "{page}");
    }
    assert_eq!(t.appeal_json(&appeal).await["status"], "open");

    // Another session's token does not do either.
    let mut other = Browser::new(t.gw.base_url());
    other.sign_in(ADMIN).await;
    let (_, page, _) = other.get("/console/policy").await;
    let theirs = csrf_of(&page);
    assert_ne!(theirs, csrf);
    let (status, _, _) = b
        .post(
            "/console/policy/force",
            &[("csrf", &theirs), ("window", "double11")],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(t.policy_json().await["window"], "normal");

    // With its own token the same write goes through.
    let (status, _, res) = b
        .post(
            &resolve,
            &[
                ("csrf", &csrf),
                ("resolution", "upheld"),
                ("note", "checked"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(
        res.headers()["location"]
            .to_str()
            .unwrap()
            .ends_with("?done=resolved")
    );
    let a = t.appeal_json(&appeal).await;
    assert_eq!(
        (&a["status"], &a["resolution_note"]),
        (&"upheld".into(), &"checked".into())
    );
    // Recorded in the audit trail as the signed-in operator, as the admin route records.
    let audit = t.audit_json().await;
    let entry = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "appeal.resolve")
        .unwrap_or_else(|| panic!("no appeal.resolve in {audit}"));
    assert_eq!(
        (&entry["operator"], &entry["target"]),
        (&"admin".into(), &appeal.as_str().into()),
        "{entry}"
    );

    // A second resolution is the API's 409, shown as a page.
    let (status, page, _) = b
        .post(&resolve, &[("csrf", &csrf), ("resolution", "overturned")])
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(page.contains("APPEAL_ALREADY_RESOLVED"), "{page}");
}

#[tokio::test]
async fn sessions_expire_and_sign_out_ends_them() {
    let t = TestGateway::start().await;
    let mut b = Browser::new(t.gw.base_url());
    b.sign_in(ADMIN).await;
    t.clock.advance(Duration::from_secs(29 * 60));
    assert_eq!(b.get("/console/policy").await.0, StatusCode::OK);
    t.clock.advance(Duration::from_secs(30 * 60 + 1));
    let (status, _, res) = b.get("/console/policy").await;
    assert_eq!(status, StatusCode::SEE_OTHER, "idle for more than 30 min");
    assert_eq!(res.headers()["location"], "/console/sign-in");

    b.sign_in(ADMIN).await;
    let (_, page, _) = b.get("/console/policy").await;
    let csrf = csrf_of(&page);
    let kept = b.cookies.clone();
    let (status, _, _) = b.post("/console/sign-out", &[("csrf", &csrf)]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    // The old cookie, replayed, no longer opens anything.
    b.cookies = kept;
    assert_eq!(b.get("/console/policy").await.0, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn pages_speak_the_language_asked_for() {
    let t = TestGateway::start().await;
    let mut b = Browser::new(t.gw.base_url());
    b.sign_in(ADMIN).await;
    let zh = b
        .http
        .get(t.url("/console/policy"))
        .header(
            "Cookie",
            b.cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; "),
        )
        .header("Accept-Language", "zh-CN,zh;q=0.9")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(zh.contains("<html lang=\"zh-CN\">") && zh.contains("<h1>高峰时段</h1>"));
    let (_, en, res) = b.get("/console/policy?lang=en").await;
    assert!(en.contains("<html lang=\"en\">") && en.contains("<h1>Peak windows</h1>"));
    assert!(
        set_cookies(&res)
            .iter()
            .any(|c| c.starts_with("lg_console_lang=en;"))
    );
    let (_, zh, _) = b.get("/console/customers?user=u-demo-a&lang=zh").await;
    assert!(zh.contains("现在可提"), "{zh}");
    // The language links keep the page's query (askama writes `&` as `&#38;`).
    assert!(
        zh.contains("href=\"/console/customers?user=u-demo-a&#38;lang=en\""),
        "{zh}"
    );
}

#[tokio::test]
async fn the_console_can_be_turned_off() {
    let mut config = gateway::config::Config::default();
    config.console.enabled = false;
    let gw = gateway::embedded::start(gateway::embedded::EmbeddedOptions {
        config: Some(config),
        ..Default::default()
    })
    .await
    .unwrap();
    let res = reqwest::get(format!("{}/console/sign-in", gw.base_url()))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    gw.shutdown().await;
}

#[tokio::test]
async fn the_customer_page_shows_recent_decisions_and_transient_refusals() {
    let t = TestGateway::start().await;
    let (decision, appeal) = t.rejected_and_appealed("trail-1").await;
    // A 503 for the same user: the store is down, nothing is recorded in it.
    let gateway::store::AnyStore::Memory(memory) = &t.gw.app.store else {
        panic!("the test gateway runs on the memory store")
    };
    memory.faults().set_unavailable(true);
    let refused = t
        .api
        .post(t.url("/v1/drawdowns"))
        .bearer_auth(KEY)
        .header("Idempotency-Key", "trail-2")
        .json(&serde_json::json!({"user_id": "u-demo-e", "amount_fen": 10_000, "channel": "app"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    memory.faults().set_unavailable(false);

    let mut b = Browser::new(t.gw.base_url());
    b.sign_in(ADMIN).await;
    let (status, page, _) = b.get("/console/customers?user=u-demo-e").await;
    assert_eq!(status, StatusCode::OK);
    let trail = &page[page.find("id=\"trail\"").expect("a trail table")..];
    let refusal = trail
        .find("DEPENDENCY_UNAVAILABLE · drawdown")
        .expect("the 503");
    let rejection = trail.find(&decision).expect("the decision");
    assert!(refusal < rejection, "newest first");
    assert!(trail.contains("Refused 503") && trail.contains("OVERDUE_BALANCE"));
    assert!(page.contains(&appeal), "the user's appeals");

    // The decision opens on its own page, whichever caller made it.
    let (status, page, _) = b.get(&format!("/console/decisions/{decision}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("OVERDUE_BALANCE") && page.contains("存在逾期未还的款项。"));
    let (status, _, _) = b.get("/console/decisions/dd_nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_thresholds_page_shows_the_staged_candidates_report() {
    use serde_json::{Value, json};
    let t = TestGateway::start().await;
    let mut b = Browser::new(t.gw.base_url());
    b.sign_in(ADMIN).await;
    let (status, page, _) = b.get("/console/thresholds?lang=en").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("id=\"candidate-none\""), "{page}");

    let admin = |r: reqwest::RequestBuilder| r.bearer_auth(ADMIN).send();
    let live: Value = admin(t.api.get(t.url("/admin/thresholds")))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // The candidate rejects frequent logins alone: two frequent users would be refused.
    let mut candidate = live.clone();
    candidate["profiles"]["normal"]["login_pattern"]["mode"] = json!("reject_alone");
    let r = admin(t.api.put(t.url("/admin/shadow")).json(&candidate))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    for (user, logins) in [
        ("u-cs-freq-1", 120),
        ("u-cs-freq-2", 120),
        ("u-cs-quiet", 5),
    ] {
        let r = admin(
            t.api
                .put(t.url(&format!("/admin/credit-lines/{user}")))
                .json(
                    &json!({"limit_fen": 1_000_000, "used_fen": 0, "risk_grade": "B",
                    "account_age_days": 400, "logins_30d": logins}),
                ),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        for n in 0..2 {
            let r = t
                .api
                .post(t.url("/v1/drawdowns"))
                .bearer_auth(KEY)
                .header("Idempotency-Key", format!("{user}-{n}"))
                .json(&json!({"user_id": user, "amount_fen": 10_000, "channel": "app"}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK);
        }
    }

    let (status, page, _) = b.get("/console/thresholds?lang=en").await;
    assert_eq!(status, StatusCode::OK);
    let section = &page[page
        .find("id=\"candidate\"")
        .expect("the candidate's report")..];
    let section = &section[..section.find("</div>").unwrap()];
    assert!(section.contains("Staged by admin"), "{section}");
    assert!(
        section.contains("drawdowns / quotes: <strong>6</strong> / <strong>0</strong>"),
        "{section}"
    );
    let row = section
        .split("<tr>")
        .find(|r| r.contains("Approved → Rejected"))
        .unwrap_or_else(|| panic!("an approved → rejected row: {section}"));
    let cells: Vec<&str> = row
        .split("<td")
        .skip(1)
        .map(|c| &c[c.find('>').unwrap() + 1..c.find("</td>").unwrap()])
        .collect();
    // Four drawdowns of two users would change.
    assert_eq!(cells, ["Approved → Rejected", "4", "2"], "{row}");
    let (_, zh, _) = b.get("/console/thresholds?lang=zh").await;
    assert!(
        zh.contains("影子候选") && zh.contains("已批准 → 已拒绝"),
        "{zh}"
    );
}

#[tokio::test]
async fn the_thresholds_page_shows_each_version_from_the_audit_trail() {
    use serde_json::{Value, json};
    let t = TestGateway::start().await;
    let mut b = Browser::new(t.gw.base_url());
    b.sign_in(ADMIN).await;
    let (status, page, _) = b.get("/console/thresholds").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("No version was published"), "{page}");

    let live: Value = t
        .api
        .get(t.url("/admin/thresholds"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // Version 2 by publication, version 3 by promotion of a shadow candidate.
    let mut v2 = live.clone();
    v2["version"] = json!(2);
    v2["profiles"]["normal"]["login_pattern"]["logins_30d"] = json!(75);
    let r = t
        .api
        .put(t.url("/admin/thresholds"))
        .bearer_auth(ADMIN)
        .json(&v2)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    let mut candidate = v2.clone();
    candidate["profiles"]["normal"]["min_account_age_days"] = json!(7);
    let r = t
        .api
        .put(t.url("/admin/shadow"))
        .bearer_auth(ADMIN)
        .json(&candidate)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    let r = t
        .api
        .post(t.url("/admin/shadow/promote"))
        .bearer_auth(ADMIN)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());

    let (status, page, _) = b.get("/console/thresholds?lang=en").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("id=\"thresholds-version\">3<"), "{page}");
    let history = &page[page.find("id=\"history\"").expect("a history table")..];
    let history = &history[..history.find("</table>").unwrap()];
    let rows: Vec<&str> = history.split("<tr").skip(2).collect();
    assert_eq!(rows.len(), 2, "{history}");
    // Newest first: 3 (promoted, live), then 2 (published), each with who, when and what.
    assert!(rows[0].contains("<strong>3</strong>") && rows[0].contains("class=\"active\""));
    assert!(rows[0].contains("promoted from shadow") && rows[0].contains("admin"));
    assert!(
        rows[0].contains("/profiles/normal/min_account_age_days</code>: 0 → 7"),
        "{}",
        rows[0]
    );
    assert!(rows[1].contains("<strong>2</strong>") && rows[1].contains("published"));
    assert!(
        rows[1].contains("/profiles/normal/login_pattern/logins_30d</code>: 60 → 75"),
        "{}",
        rows[1]
    );
    assert!(rows[1].contains("2026-06-01 12:00:00+08:00"), "{}", rows[1]);
    // In Chinese too.
    let (_, page, _) = b.get("/console/thresholds?lang=zh").await;
    assert!(page.contains("由影子候选提升") && page.contains("历史版本"));

    // The store down: the live version still shows, and the history's absence is said.
    let gateway::store::AnyStore::Memory(memory) = &t.gw.app.store else {
        panic!("the test gateway runs on the memory store")
    };
    memory.faults().set_unavailable(true);
    let (status, page, _) = b.get("/console/thresholds?lang=en").await;
    memory.faults().set_unavailable(false);
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("The audit trail could not be read"), "{page}");
    assert!(page.contains("id=\"thresholds-version\">3<"));
}

#[tokio::test]
async fn the_live_page_charts_refusals_by_cause_from_the_counters() {
    let t = TestGateway::start().await;
    let mut b = Browser::new(t.gw.base_url());
    b.sign_in(ADMIN).await;
    // A sample before, then refusals of two causes, then a sample 10 s later.
    t.gw.console.sample_now();
    t.rejected_and_appealed("live-1").await;
    let gateway::store::AnyStore::Memory(memory) = &t.gw.app.store else {
        panic!("the test gateway runs on the memory store")
    };
    memory.faults().set_unavailable(true);
    for n in 0..3 {
        let r = t
            .api
            .get(t.url("/v1/credit-lines/u-demo-a"))
            .bearer_auth(KEY)
            .header("Idempotency-Key", format!("live-503-{n}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    memory.faults().set_unavailable(false);
    t.clock.advance(Duration::from_secs(10));
    t.gw.console.sample_now();

    let (status, page, res) = b.get("/console/live?lang=en").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("<h1>Live refusals</h1>"));
    let csp = res.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    let chart = |id: &str| -> String {
        let at = page
            .find(&format!("<figure class=\"card chart-card\" id=\"{id}\">"))
            .unwrap_or_else(|| panic!("a chart {id}"));
        let rest = &page[at..];
        rest[..rest.find("</figure>").unwrap()].to_owned()
    };
    // The 503s are counted under their cause, drawn as one bar, and named for screen readers.
    let dep = chart("dependency-unavailable");
    assert!(
        dep.contains("3 in the last 10 min · at most 3 in 10 s"),
        "{dep}"
    );
    assert_eq!(dep.matches("<rect").count(), 1, "{dep}");
    assert!(dep.contains("role=\"img\""), "{dep}");
    let rejected = chart("risk-rejected");
    assert!(rejected.contains("1 in the last 10 min"), "{rejected}");
    let shed = chart("capacity-shed");
    assert!(shed.contains("0 in the last 10 min"), "{shed}");
    assert_eq!(shed.matches("<rect").count(), 0);
    assert!(chart("admission-limit").contains("<polyline"));
    // No Grafana URL configured: no links.
    assert!(!page.contains("Open in Grafana"));
    // In Chinese.
    let (_, page, _) = b.get("/console/live?lang=zh").await;
    assert!(page.contains("<h1>实时拒绝</h1>") && page.contains("最近 10 分钟共 3 次"));
    // The refresh script is served from the binary.
    let (status, script, res) = b.get("/console/assets/live.js").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    assert!(script.contains("getElementById(\"live\")"));
}

#[tokio::test]
async fn the_live_page_links_each_chart_to_grafana_when_configured() {
    let mut config = gateway::config::Config {
        api_keys: vec![KEY.into()],
        admin_token: ADMIN.into(),
        ..gateway::config::Config::default()
    };
    config.console.grafana_url = Some("http://grafana.test:3000/".into());
    let gw = gateway::embedded::start(gateway::embedded::EmbeddedOptions {
        config: Some(config.clone()),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut b = Browser::new(gw.base_url());
    b.sign_in(ADMIN).await;
    let (status, page, _) = b.get("/console/live?lang=en").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page.matches("Open in Grafana</a>").count(), 12, "{page}");
    assert!(
        page.contains(
            "href=\"http://grafana.test:3000/d/loan-gateway/loan-gateway?orgId=1&#38;from=now-15m&#38;to=now&#38;viewPanel=4\""
        ),
        "{}",
        &page[page.find("Open in Grafana").unwrap() - 300..]
    );
    gw.shutdown().await;
    // A URL that is not one is refused at start, naming the key.
    config.console.grafana_url = Some("grafana:3000".into());
    let e = gateway::embedded::start(gateway::embedded::EmbeddedOptions {
        config: Some(config),
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert!(e.to_string().contains("console.grafana_url"), "{e}");
}

#[tokio::test]
async fn repeated_sign_ins_from_one_address_are_refused_for_a_while() {
    use gateway::console::throttle::{BURST, REFILL};
    let t = TestGateway::start().await;
    let mut b = Browser::new(t.gw.base_url());
    for _ in 0..BURST {
        let (status, _, _) = b.sign_in("not-a-token-at-all-000").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    // The right token is refused too now, unread: a throttled address learns nothing.
    let (status, page, res) = b.sign_in(ADMIN).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        page.contains("Too many sign-in attempts from this address. Try again in 60 s."),
        "{page}"
    );
    assert_eq!(res.headers()["retry-after"], "60");
    assert!(!b.cookies.iter().any(|(k, _)| k == "lg_console"));
    let (status, page, _) = b.get("/console/sign-in?lang=zh").await;
    assert_eq!(status, StatusCode::OK, "the form itself is not throttled");
    let csrf = crate::support::csrf_of(&page);
    let (status, page, _) = b
        .post("/console/sign-in", &[("csrf", &csrf), ("token", ADMIN)])
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(page.contains("此地址的登录尝试过多"), "{page}");
    // A while later (the injected clock), one more attempt is allowed, and it signs in.
    t.clock.advance(REFILL);
    let (status, _, res) = b.sign_in(ADMIN).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(res.headers()["location"], "/console/appeals");
}

#[tokio::test]
async fn the_thresholds_history_says_when_it_searched_only_the_newest_changes() {
    use gateway::store::OperatorChange;
    let t = TestGateway::start().await;
    let change = |action: &str, n: usize| OperatorChange {
        operator: "alice".into(),
        at: "2026-06-01T12:00:00+08:00".into(),
        action: action.into(),
        route: "PUT /admin/thresholds".into(),
        target: "thresholds".into(),
        changes: vec![gateway::store::FieldChange {
            path: "/version".into(),
            before: serde_json::json!(n),
            after: serde_json::json!(n + 1),
        }],
    };
    // A publication, then more other changes than the page searches.
    let store = &t.gw.app.store;
    store
        .append_operator_change(change("thresholds.publish", 1))
        .await
        .unwrap();
    for n in 0..5_000 {
        store
            .append_operator_change(change("credit_line.upsert", n))
            .await
            .unwrap();
    }
    let mut b = Browser::new(t.gw.base_url());
    b.sign_in(ADMIN).await;
    let (status, page, _) = b.get("/console/thresholds?lang=en").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Only the newest 5,000 operator changes were searched"));
    assert!(
        !page.contains("id=\"history\""),
        "the publication is past the search"
    );
    assert!(
        !page.contains("No version was published"),
        "not said when the search was cut"
    );
    // One more publication, within reach: listed, and the search still said to be cut.
    store
        .append_operator_change(change("thresholds.publish", 7))
        .await
        .unwrap();
    let (_, page, _) = b.get("/console/thresholds?lang=en").await;
    assert!(page.contains("<strong>8</strong>"), "{page}");
    assert!(page.contains("Only the newest 5,000 operator changes were searched"));
}
