//! The console and the portal in a real headless Chromium (Debian's, over chromedriver),
//! against the three services: what an admin and a promoter do, page by page. Each page
//! is kept as a screenshot in `target/screenshots/` (test artifacts, not committed).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::{Program, money, purchase, signup};

/// chromedriver on a port of its own, stopped when dropped.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver runs (scripts/stack deps installs chromium-driver)");
        Self { child, port }
    }

    /// A headless Chromium of a phone's width or a laptop's.
    async fn browser(&self, width: u32) -> Client {
        let caps = json!({"goog:chromeOptions": {"args": [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            format!("--window-size={width},1000"),
        ]}});
        let caps: serde_json::Map<String, serde_json::Value> = caps.as_object().unwrap().clone();
        for _ in 0..50 {
            // chromedriver on loopback: plain HTTP, no TLS stack needed.
            let http = hyper_util::client::legacy::connect::HttpConnector::new();
            if let Ok(client) = ClientBuilder::new(http)
                .capabilities(caps.clone())
                .connect(&format!("http://127.0.0.1:{}", self.port))
                .await
            {
                return client;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("chromedriver did not answer");
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn screenshot_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn snap(browser: &Client, name: &str) {
    let png = browser.screenshot().await.unwrap();
    std::fs::write(screenshot_dir().join(format!("{name}.png")), png).unwrap();
}

/// The text of `css`; a page without it fails the test with the page's own text.
async fn text_of(browser: &Client, css: &str) -> String {
    // A page a form led to may still be arriving: look again for a few seconds.
    for _ in 0..50 {
        if let Ok(element) = browser.find(Locator::Css(css)).await
            && let Ok(text) = element.text().await
        {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    match browser.find(Locator::Css(css)).await {
        Ok(element) => element.text().await.unwrap(),
        Err(_) => {
            let page = browser.find(Locator::Css("main")).await.unwrap();
            let url = browser.current_url().await.unwrap();
            panic!("no {css} on {url}: {}", page.text().await.unwrap());
        }
    }
}

/// Reloads until `css` contains `wanted` (the aggregator applies within a second or two).
async fn reload_until(browser: &Client, css: &str, wanted: &str) {
    for _ in 0..60 {
        if let Ok(element) = browser.find(Locator::Css(css)).await
            && element.text().await.unwrap_or_default().contains(wanted)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        browser.refresh().await.unwrap();
    }
    panic!(
        "{css} never showed {wanted:?}: {}",
        browser.source().await.unwrap()
    );
}

/// The figures a chart was drawn from (its `data-chart`).
async fn chart_figures(browser: &Client, css: &str) -> serde_json::Value {
    let element = browser.find(Locator::Css(css)).await.unwrap();
    let figures = element.attr("data-chart").await.unwrap().unwrap();
    serde_json::from_str(&figures).unwrap()
}

async fn fill(browser: &Client, css: &str, value: &str) {
    let field = browser.find(Locator::Css(css)).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys(value).await.unwrap();
}

/// Clicks `css`, which loads another page, and waits until that page replaced this one.
async fn submit(browser: &Client, css: &str) {
    let before = browser.find(Locator::Css("html")).await.unwrap();
    click(browser, css).await;
    for _ in 0..100 {
        if before.text().await.is_err() {
            return loaded(browser).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("clicking {css} loaded no page");
}

/// Waits until the current page is wholly parsed.
async fn loaded(browser: &Client) {
    for _ in 0..100 {
        let state = browser.execute("return document.readyState", vec![]).await;
        if state.is_ok_and(|s| s == "complete") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the page never finished loading");
}

async fn click(browser: &Client, css: &str) {
    browser
        .find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

async fn start() -> Program {
    let program = Program::start_with(|c| {
        c.promoters.web_cookie_secure = false;
        c.promoters.payout_review_hours = 0;
    })
    .await;
    // Commissions payable at once, so that a purchase can be withdrawn in the test.
    program
        .admin(
            "PUT",
            "/api/v1/affiliate/program/",
            Some(json!({"holding_days": 0})),
        )
        .await;
    program
}

#[tokio::test(flavor = "multi_thread")]
async fn a_promoter_copies_the_link_sets_a_method_sees_earnings_and_withdraws() {
    let program = start().await;
    let driver = Driver::start();
    let browser = driver.browser(390).await; // a phone
    let token = crate::promoter_token(501);

    browser
        .goto(&program.api_url(&format!("/portal/login?token={token}")))
        .await
        .unwrap();
    assert_eq!(
        browser.current_url().await.unwrap().path(),
        "/portal/",
        "the token left the address bar"
    );
    let link = browser
        .find(Locator::Id("referral-link"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap()
        .unwrap();
    assert!(link.contains("?ref="), "{link}");
    click(&browser, "[data-copy=referral-link]").await;
    reload_free_wait(&browser, ".copied", "Copied").await;
    snap(&browser, "portal-1-link-copied").await;

    // A bad address gets the API's message; a good one is saved.
    fill(&browser, "#payment-address", "not-an-email").await;
    submit(&browser, "form[action='/portal/payout-method'] button").await;
    assert!(
        text_of(&browser, "[role=alert]")
            .await
            .contains("valid email"),
        "the field's message"
    );
    snap(&browser, "portal-2-method-error").await;
    fill(&browser, "#payment-address", "ada@example.com").await;
    submit(&browser, "form[action='/portal/payout-method'] button").await;
    assert_eq!(
        text_of(&browser, "[role=status].done").await,
        "Payout method saved."
    );

    let code = link.rsplit("ref=").next().unwrap().to_string();
    program.accepted(signup("pb-s", 8101, &code)).await;
    program
        .accepted(purchase("pb-p", 8101, &code, "200.00"))
        .await;
    reload_until(&browser, "#payable", "30").await;
    let figures = chart_figures(&browser, "#earnings-chart").await.to_string();
    assert!(
        figures.contains("30"),
        "today's earnings are on the chart: {figures}"
    );
    snap(&browser, "portal-3-earnings").await;

    submit(&browser, "form[action='/portal/withdraw'] button").await;
    assert!(
        text_of(&browser, "[role=status].done")
            .await
            .starts_with("Withdrawal requested")
    );
    assert_eq!(money(&json!(text_of(&browser, "#payable").await)), 0.0);
    assert!(
        text_of(&browser, "#payouts-title + .scroll tbody")
            .await
            .contains("pending")
    );
    snap(&browser, "portal-4-withdrawn").await;
    browser.close().await.unwrap();
}

/// Waits (without reloading) until `css` shows `wanted`: for what a page's script does.
async fn reload_free_wait(browser: &Client, css: &str, wanted: &str) {
    for _ in 0..40 {
        if text_of(browser, css).await.contains(wanted) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{css} never showed {wanted:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_finds_approves_charts_and_pays() {
    let program = start().await;
    let created = program
        .admin(
            "POST",
            "/api/v1/affiliate/affiliates/",
            Some(json!({"name": "Grace Hopper", "email": "grace@example.com",
                        "payment_methods": [{"type": "paypal", "email": "grace@example.com"}]})),
        )
        .await;
    let id = created["id"].as_i64().unwrap();
    // A promoter with a payout waiting, for the payouts page.
    let p = program.promoter(502).await;
    program.accepted(signup("ab-s", 8201, &p.code)).await;
    program
        .accepted(purchase("ab-p", 8201, &p.code, "200.00"))
        .await;
    program
        .balance_once(p.id, |b| money(&b["withdrawable"]) == 30.0)
        .await;
    let (status, payout) = program
        .api("POST", "/referrals/withdraw/", &p.token, None)
        .await;
    assert_eq!(status, 201, "{payout}");

    let driver = Driver::start();
    let browser = driver.browser(1280).await;
    browser.goto(&program.api_url("/console/")).await.unwrap();
    assert_eq!(
        browser.current_url().await.unwrap().path(),
        "/console/login"
    );
    fill(&browser, "#key", "sk_live_not_a_real_key").await;
    submit(&browser, "form button").await;
    assert!(
        text_of(&browser, "[role=alert]")
            .await
            .contains("admin scope")
    );
    fill(&browser, "#key", &program.admin).await;
    submit(&browser, "form button").await;
    snap(&browser, "console-1-affiliates").await;

    fill(&browser, "#search", "grace").await;
    submit(&browser, "form.filters button").await;
    let rows = browser.find_all(Locator::Css("tbody tr")).await.unwrap();
    assert_eq!(rows.len(), 1, "search finds Grace alone");
    submit(&browser, "tbody tr a").await;
    assert!(text_of(&browser, "#status").await.contains("Pending"));
    click(
        &browser,
        &format!("form[action='/console/affiliates/{id}/approve'] button"),
    )
    .await;
    assert_eq!(text_of(&browser, "[role=status].done").await, "Approved.");
    assert!(text_of(&browser, "#status").await.contains("Approved"));

    // Clicks on Grace's link reach the chart.
    let code = text_of(&browser, ".facts code").await;
    for _ in 0..3 {
        program.click(&code).await;
    }
    for _ in 0..60 {
        let chart = chart_figures(&browser, "#affiliate-chart").await;
        let clicks: f64 = chart["series"][0]["values"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(serde_json::Value::as_f64)
            .sum();
        if clicks >= 3.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        browser.refresh().await.unwrap();
    }
    // uPlot drew it: a canvas in the chart.
    browser
        .find(Locator::Css("#affiliate-chart canvas"))
        .await
        .expect("the chart is drawn");
    snap(&browser, "console-2-affiliate-chart").await;

    submit(&browser, "a[href='/console/payouts']").await;
    snap(&browser, "console-3-payouts").await;
    click(
        &browser,
        &format!("button[aria-label='Mark payout {} paid']", payout["id"]),
    )
    .await;
    assert_eq!(
        text_of(&browser, "[role=status].done").await,
        "Marked paid."
    );
    let (_, history) = program
        .api("GET", "/referrals/payouts", &p.token, None)
        .await;
    assert_eq!(history[0]["status"], "paid", "{history}");
    snap(&browser, "console-4-paid").await;

    for (path, name) in [
        ("/console/webhooks", "console-5-webhooks"),
        ("/console/parked", "console-6-parked"),
    ] {
        browser.goto(&program.api_url(path)).await.unwrap();
        snap(&browser, name).await;
    }
    browser.close().await.unwrap();
}
