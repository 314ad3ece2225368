//! Debian's Chromium, driven over WebDriver (chromedriver) through a real gateway: the
//! journeys of the console's issue, screenshots of every page at 1280 and 390 px in both
//! languages (into `target/console-screenshots/`), and in-page accessibility and layout
//! checks (`a11y.js`).
//!
//! Skipped, saying so, when `chromium` or `chromedriver` is not installed, unless
//! `CONSOLE_BROWSER_TESTS=require` (CI sets it after installing both): then their absence
//! fails the test.

use crate::support::{ADMIN, KEY, TestGateway};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const A11Y: &str = include_str!("a11y.js");
const WIDTHS: [u32; 2] = [1280, 390];

fn find(name: &str, env: &str) -> Option<PathBuf> {
    if let Ok(p) = std::env::var(env) {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// chromedriver on a free loopback port; stopped (by its own pid) when dropped.
struct Driver {
    child: Child,
    url: String,
    profile: PathBuf,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

async fn driver(chromedriver: &Path) -> Driver {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(chromedriver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let url = format!("http://127.0.0.1:{port}");
    let profile =
        std::env::temp_dir().join(format!("console-chromium-{}-{port}", std::process::id()));
    let d = Driver {
        child,
        url,
        profile,
    };
    let started = Instant::now();
    loop {
        if let Ok(r) = reqwest::get(format!("{}/status", d.url)).await
            && r.status().is_success()
        {
            return d;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "chromedriver did not answer within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn browser(d: &Driver, chromium: &Path) -> Client {
    let caps = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": chromium,
            // Headless, and nothing that reaches for the network (the machine has none).
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                     "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync",
                     "--disable-dev-shm-usage", "--hide-scrollbars", "--lang=en-US",
                     format!("--user-data-dir={}", d.profile.display())]
        }
    });
    let Value::Object(caps) = caps else {
        unreachable!()
    };
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&d.url)
        .await
        .expect("a WebDriver session")
}

fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = target.join("console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The window's width so that the page's viewport is `width` CSS pixels; answers the
/// window's width.
async fn viewport(c: &Client, width: u32) -> u32 {
    c.set_window_size(width, 900).await.unwrap();
    let inner = c
        .execute("return window.innerWidth;", vec![])
        .await
        .unwrap()
        .as_u64()
        .unwrap();
    let inner = u32::try_from(inner).unwrap();
    if inner == width {
        return width;
    }
    // Headful builds count the window's frame; make up the difference once.
    let outer = width + (width - inner.min(width));
    c.set_window_size(outer, 900).await.unwrap();
    outer
}

/// Checks the page now shown at every width and in both languages, and screenshots it.
async fn check_page(c: &Client, path: &str, name: &str, shots: &Path) {
    for lang in ["en", "zh"] {
        for width in WIDTHS {
            let outer = viewport(c, width).await;
            let sep = if path.contains('?') { '&' } else { '?' };
            c.goto(&format!("{path}{sep}lang={lang}")).await.unwrap();
            let r = c.execute(A11Y, vec![]).await.unwrap();
            let problems = r["problems"].as_array().unwrap();
            assert!(
                problems.is_empty(),
                "{name} ({lang}, {width} px): {problems:?}"
            );
            assert_eq!(
                r["innerWidth"].as_u64(),
                Some(u64::from(width)),
                "{name}: the viewport is {width} px"
            );
            assert!(
                r["scrollWidth"].as_u64() <= r["clientWidth"].as_u64(),
                "{name} ({lang}, {width} px) scrolls horizontally: {r}"
            );
            // The whole page in the screenshot: the window as tall as the page and its frame
            // (bounded).
            let height = c
                .execute(
                    "return Math.max(0, window.outerHeight - window.innerHeight) + \
                     Math.ceil(Math.max(document.body.scrollHeight, \
                     document.documentElement.scrollHeight));",
                    vec![],
                )
                .await
                .unwrap()
                .as_u64()
                .unwrap();
            c.set_window_size(outer, u32::try_from(height.min(4000)).unwrap())
                .await
                .unwrap();
            let png = c.screenshot().await.unwrap();
            std::fs::write(shots.join(format!("{name}-{width}-{lang}.png")), png).unwrap();
        }
    }
    viewport(c, 1280).await;
    c.goto(&format!(
        "{path}{}lang=en",
        if path.contains('?') { '&' } else { '?' }
    ))
    .await
    .unwrap();
}

/// The text of `css` once the page shows it (after a form's submission the next page loads
/// while the driver answers).
async fn text_when(c: &Client, css: &str) -> String {
    c.wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css} never showed: {e}"))
        .text()
        .await
        .unwrap()
}

async fn text_of(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn fill(c: &Client, css: &str, value: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .send_keys(value)
        .await
        .unwrap();
}

async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

async fn drawable_now(c: &Client, base: &str) -> u64 {
    c.goto(&format!("{base}/console/customers?user=u-demo-c"))
        .await
        .unwrap();
    c.find(Locator::Id("drawable-now"))
        .await
        .unwrap()
        .attr("data-fen")
        .await
        .unwrap()
        .unwrap()
        .parse()
        .unwrap()
}

/// Seven samples 10 s apart on the test's clock, with six 503s (the store down) and six
/// risk rejections between them, for the live page's charts.
async fn live_traffic(t: &TestGateway) {
    let gateway::store::AnyStore::Memory(memory) = &t.gw.app.store else {
        panic!("the test gateway runs on the memory store")
    };
    t.gw.console.sample_now();
    for n in 0..6u64 {
        t.clock.advance(Duration::from_secs(10));
        memory.faults().set_unavailable(true);
        for _ in 0..(n % 3) {
            let r = t
                .api
                .get(t.url("/v1/credit-lines/u-demo-a"))
                .bearer_auth(KEY)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 503);
        }
        memory.faults().set_unavailable(false);
        let d: Value = t
            .api
            .post(t.url("/v1/drawdowns"))
            .bearer_auth(KEY)
            .header("Idempotency-Key", format!("live-{n}"))
            .json(&json!({"user_id": "u-demo-e", "amount_fen": 10_000, "channel": "app"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(d["outcome"], "rejected", "{d}");
        t.gw.console.sample_now();
    }
}

#[tokio::test]
async fn an_operator_works_the_console_in_chromium() {
    let (Some(chromium), Some(chromedriver)) = (
        find("chromium", "CHROMIUM"),
        find("chromedriver", "CHROMEDRIVER"),
    ) else {
        assert_ne!(
            std::env::var("CONSOLE_BROWSER_TESTS").as_deref(),
            Ok("require"),
            "CONSOLE_BROWSER_TESTS=require, but chromium or chromedriver is not installed"
        );
        eprintln!(
            "skipped: chromium and chromedriver are not installed (apt-get install chromium chromium-driver)"
        );
        return;
    };
    let t = TestGateway::start().await;
    let base = t.gw.base_url();
    // An appeal filed 16 days ago (past its due date), and a fresh one.
    let (_, overdue) = t.rejected_and_appealed("browser-1").await;
    t.clock.advance(Duration::from_secs(16 * 24 * 3600));
    let (decision, fresh) = t.rejected_and_appealed("browser-2").await;
    // Something in u-demo-c's trail: an approval.
    let approved: Value = t
        .api
        .post(t.url("/v1/drawdowns"))
        .bearer_auth(KEY)
        .header("Idempotency-Key", "browser-3")
        .json(&json!({"user_id": "u-demo-c", "amount_fen": 100_000, "channel": "app"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(approved["outcome"], "approved", "{approved}");

    let d = driver(&chromedriver).await;
    let c = browser(&d, &chromium).await;
    let shots = screenshot_dir();
    let journey = async {
        // A caller key is refused at sign-in.
        c.goto(&format!("{base}/console/sign-in?lang=en"))
            .await
            .unwrap();
        check_page(&c, &format!("{base}/console/sign-in"), "sign-in", &shots).await;
        fill(&c, "#token", KEY).await;
        click(&c, "form.card button[type=submit]").await;
        assert!(
            text_when(&c, "[role=alert]")
                .await
                .contains("Caller keys cannot sign in")
        );
        assert!(
            c.current_url()
                .await
                .unwrap()
                .path()
                .ends_with("/console/sign-in")
        );

        // The admin token signs in, onto the appeals queue.
        fill(&c, "#token", ADMIN).await;
        click(&c, "form.card button[type=submit]").await;
        text_when(&c, "form.filters").await;
        assert_eq!(c.current_url().await.unwrap().path(), "/console/appeals");

        // The queue: both appeals, the overdue one marked.
        let row = c
            .find(Locator::XPath(&format!("//tr[.//a[text()='{overdue}']]")))
            .await
            .unwrap();
        assert_eq!(row.attr("class").await.unwrap().as_deref(), Some("overdue"));
        assert!(row.text().await.unwrap().contains("Overdue"));
        check_page(&c, &format!("{base}/console/appeals"), "appeals", &shots).await;

        // The fresh appeal opens its decision: the reasons, with figures, in both languages.
        click(&c, &format!("a[href='/console/appeals/{fresh}']")).await;
        text_when(&c, "#resolve-h").await;
        let page = text_of(&c, "main").await;
        assert!(page.contains(&decision), "{page}");
        assert!(page.contains("OVERDUE_BALANCE"), "{page}");
        assert!(page.contains("An instalment is overdue."), "{page}");
        assert!(page.contains("存在逾期未还的款项。"), "{page}");
        assert!(page.contains("actual 45 days"), "the figures: {page}");
        check_page(
            &c,
            &format!("{base}/console/appeals/{fresh}"),
            "appeal",
            &shots,
        )
        .await;

        // Overturn it, with a note.
        click(&c, "#r-overturned").await;
        fill(&c, "#note", "Repaid on Monday; the overdue flag was stale.").await;
        click(&c, "form.card button[type=submit]").await;
        assert!(text_when(&c, "[role=status]").await.contains("resolved"));
        // ... and the JSON API says so.
        let a = t.appeal_json(&fresh).await;
        assert_eq!(a["status"], "overturned", "{a}");
        assert_eq!(
            a["resolution_note"],
            "Repaid on Monday; the overdue flag was stale."
        );
        let listed: Value = t
            .api
            .get(t.url("/admin/appeals?status=overturned"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(listed["appeals"][0]["appeal_id"], fresh.as_str());

        // Force Double 11 and see the quote change.
        let before = drawable_now(&c, &base).await;
        assert!(text_of(&c, "#trail").await.contains("Approved"));
        check_page(
            &c,
            &format!("{base}/console/customers?user=u-demo-c"),
            "customer",
            &shots,
        )
        .await;
        c.goto(&format!("{base}/console/policy")).await.unwrap();
        check_page(&c, &format!("{base}/console/policy"), "policy", &shots).await;
        click(&c, "a[href='/console/policy/force?window=double11']").await;
        text_when(&c, "form.inline-actions").await;
        let confirm = text_of(&c, "main").await;
        assert!(
            confirm.contains("double11") && confirm.contains("peak"),
            "{confirm}"
        );
        check_page(
            &c,
            &format!("{base}/console/policy/force?window=double11"),
            "policy-confirm",
            &shots,
        )
        .await;
        click(&c, "form.inline-actions button[type=submit]").await;
        assert!(text_when(&c, "[role=status]").await.contains("changed"));
        assert!(text_of(&c, "#now-h").await.contains("double11"));
        assert_eq!(t.policy_json().await["window"], "double11");
        let after = drawable_now(&c, &base).await;
        assert!(
            after < before,
            "the quote under Double 11 ({after}) is below normal ({before})"
        );

        // A version published through the admin API: live, with its history.
        let mut v2: Value = t
            .api
            .get(t.url("/admin/thresholds"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
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
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        // A candidate that rejects frequent logins alone, and a frequent user's drawdown
        // that it would refuse: the page shows the candidate's report.
        // (Every profile's rule: the Double 11 window is still forced here.)
        let mut candidate = v2.clone();
        for profile in candidate["profiles"].as_object_mut().unwrap().values_mut() {
            profile["login_pattern"]["mode"] = json!("reject_alone");
        }
        let r = t
            .api
            .put(t.url("/admin/shadow"))
            .bearer_auth(ADMIN)
            .json(&candidate)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        let r = t
            .api
            .put(t.url("/admin/credit-lines/u-browser-freq"))
            .bearer_auth(ADMIN)
            .json(
                &json!({"limit_fen": 1_000_000, "used_fen": 0, "risk_grade": "B",
                          "account_age_days": 400, "logins_30d": 120}),
            )
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        let r = t
            .api
            .post(t.url("/v1/drawdowns"))
            .bearer_auth(KEY)
            .header("Idempotency-Key", "browser-freq-1")
            .json(&json!({"user_id": "u-browser-freq", "amount_fen": 10_000, "channel": "app"}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        c.goto(&format!("{base}/console/thresholds")).await.unwrap();
        assert_eq!(text_of(&c, "#thresholds-version").await, "2");
        let changes = text_of(&c, "#candidate-changes").await;
        assert!(changes.contains("Approved → Rejected"), "{changes}");
        let history = text_of(&c, "#history").await;
        assert!(
            history.contains("/profiles/normal/login_pattern/logins_30d: 60 → 75"),
            "{history}"
        );
        check_page(
            &c,
            &format!("{base}/console/thresholds"),
            "thresholds",
            &shots,
        )
        .await;

        // Back to the calendar.
        c.goto(&format!("{base}/console/policy/force?window="))
            .await
            .unwrap();
        click(&c, "form.inline-actions button[type=submit]").await;
        text_when(&c, "[role=status]").await;
        assert_eq!(t.policy_json().await["window"], "normal");

        // Live refusals: a minute of samples, with 503s and a risk rejection among them.
        live_traffic(&t).await;
        c.goto(&format!("{base}/console/live")).await.unwrap();
        let dep = text_of(&c, "#dependency-unavailable").await;
        // (The peak per period is not asserted: the gateway's own sampler may also tick, on
        // real time, between two of these samples.)
        assert!(dep.contains("6 in the last 10 min"), "{dep}");
        // The refresh script shows its pause button, which says whether it is pressed.
        let pause = c.find(Locator::Id("live-pause")).await.unwrap();
        assert!(pause.is_displayed().await.unwrap());
        pause.click().await.unwrap();
        assert_eq!(
            pause.attr("aria-pressed").await.unwrap().as_deref(),
            Some("true")
        );
        check_page(&c, &format!("{base}/console/live"), "live", &shots).await;
    };
    // The session is closed (chromedriver then ends Chromium) whatever happened, a failed
    // assertion too, then any failure is raised: killing chromedriver alone would leave
    // Chromium running.
    let outcome = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(
        tokio::time::timeout(Duration::from_secs(120), journey),
    ))
    .await;
    let _ = c.close().await;
    match outcome {
        Ok(finished) => finished.expect("the browser journey finishes within 2 minutes"),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}
