use std::time::Duration;

use ingest::AttributionPolicy;
use reftrack_events::click::parse_click_id;
use reftrack_events::{ClickMethod, ClickVerdict};
use reftrack_testkit::{TestStack, wait};

use crate::{FIREFOX, LANDING, affiliate, browser_get, clicks, config, http, spawn};

fn cookie_click_id(response: &reqwest::Response) -> Option<uuid::Uuid> {
    parse_click_id(&cookie_value(response)).map(|(_, id)| id)
}

/// The attribution cookie's value (`CODE.CLICK_ID`); empty when none was set.
fn cookie_value(response: &reqwest::Response) -> String {
    let cookie = response.headers().get("set-cookie");
    let cookie = cookie.and_then(|c| c.to_str().ok()).unwrap_or_default();
    let value = cookie.split(';').next().unwrap_or_default();
    value
        .strip_prefix("rt_ref=")
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn a_click_redirects_with_a_cookie_and_records_every_field() {
    let stack = TestStack::new().await.unwrap();
    let id = affiliate(&stack, "ABC123").await;
    let server = spawn(&config(&stack)).await;
    let started = chrono::Utc::now().timestamp_millis();

    let response =
        browser_get(server.url("/?ref=abc123&utm_source=news&utm_campaign=fall%20sale&x"))
            .header("referer", "https://news.example/post")
            .header("cf-ipcountry", "de")
            .send()
            .await
            .unwrap();
    assert_eq!(response.status(), 302);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(cookie.starts_with("rt_ref=ABC123."), "{cookie}");
    // The landing URL carries the cookie's click id too, for a product on another domain.
    assert_eq!(
        response.headers()["location"],
        format!(
            "{LANDING}?utm_source=news&utm_campaign=fall%20sale&x&rt_click={}",
            cookie_value(&response)
        )
        .as_str()
    );
    assert!(
        cookie.ends_with("; Max-Age=5184000; Path=/; Secure; HttpOnly; SameSite=Lax"),
        "{cookie}"
    );
    let click_id = cookie_click_id(&response).unwrap();

    let by_path = browser_get(server.url("/r/ABC123?utm_medium=mail"))
        .send()
        .await
        .unwrap();
    assert_eq!(by_path.status(), 302);
    assert_eq!(
        by_path.headers()["location"],
        format!(
            "{LANDING}?utm_medium=mail&rt_click={}",
            cookie_value(&by_path)
        )
        .as_str()
    );
    let second_click = cookie_click_id(&by_path).unwrap();

    let events = clicks(&stack, 2).await;
    assert_eq!(events.len(), 2, "exactly one event per click");
    let first = &events[0];
    assert_eq!(first.event_id, click_id, "the cookie carries the click id");
    assert_eq!(events[1].event_id, second_click);
    assert_eq!(first.code, "ABC123");
    assert_eq!(first.affiliate_id, Some(id));
    assert!(
        first.received_at_ms >= started
            && first.received_at_ms <= chrono::Utc::now().timestamp_millis()
    );
    assert_ne!(first.visitor, 0);
    assert_eq!(
        first.visitor, events[1].visitor,
        "same IP and agent, same day: same visitor"
    );
    assert_eq!(first.user_agent, FIREFOX);
    assert_eq!(first.referer.as_deref(), Some("https://news.example/post"));
    assert_eq!(first.method, ClickMethod::Get);
    assert_eq!(first.country.as_deref(), Some("DE"));
    assert_eq!(first.verdict, ClickVerdict::Valid);
    assert_eq!(events[1].referer, None);
    assert_eq!(events[1].country, None);
    // Nothing in the event can hold the raw IP.
    let raw = String::from_utf8_lossy(&first.encode()).into_owned();
    assert!(!raw.contains("127.0.0.1"), "{raw}");
}

#[tokio::test]
async fn last_click_replaces_the_cookie_and_first_click_keeps_it() {
    let stack = TestStack::new().await.unwrap();
    affiliate(&stack, "NEWER").await;
    let existing = "rt_ref=OLDER.0190a0b2c3d47e8f9a0b1c2d3e4f5a6b";

    let mut last = config(&stack);
    last.attribution_policy = AttributionPolicy::LastClick;
    last.cookie_domain = Some("product.example".into());
    let server = spawn(&last).await;
    let response = browser_get(server.url("/?ref=NEWER"))
        .header("cookie", existing)
        .send()
        .await
        .unwrap();
    let cookie = response.headers()["set-cookie"].to_str().unwrap();
    assert!(cookie.starts_with("rt_ref=NEWER."), "{cookie}");
    assert!(cookie.contains("; Domain=product.example;"), "{cookie}");
    server.stop().await.unwrap();

    let mut first = config(&stack);
    first.attribution_policy = AttributionPolicy::FirstClick;
    first.attribution_window_days = 30;
    let server = spawn(&first).await;
    let kept = browser_get(server.url("/?ref=NEWER"))
        .header("cookie", format!("theme=dark; {existing}"))
        .send()
        .await
        .unwrap();
    assert_eq!(kept.status(), 302);
    assert!(
        kept.headers().get("set-cookie").is_none(),
        "first click keeps the cookie"
    );
    let fresh = browser_get(server.url("/?ref=NEWER"))
        .header("cookie", "rt_ref=garbage")
        .send()
        .await
        .unwrap();
    let cookie = fresh.headers()["set-cookie"].to_str().unwrap();
    assert!(cookie.contains("Max-Age=2592000"), "{cookie}");
    // Both clicks are still recorded, whatever the cookie decision.
    assert_eq!(clicks(&stack, 3).await.len(), 3);
}

#[tokio::test]
async fn unknown_bot_and_prefetch_clicks_still_redirect_and_are_flagged() {
    let stack = TestStack::new().await.unwrap();
    affiliate(&stack, "REAL").await;
    reftrack_testkit::fixtures::affiliate_with_status(&stack.pool, "PENDING1", "10", "pending")
        .await;
    let server = spawn(&config(&stack)).await;
    let get = |code: &str, ua: &str| {
        http()
            .get(server.url(&format!("/?ref={code}")))
            .header("user-agent", ua)
    };

    let cases = [
        (get("NOPE", FIREFOX), ClickVerdict::UnknownCode, false),
        (get("PENDING1", FIREFOX), ClickVerdict::UnknownCode, false),
        (
            get("bad%20code!", FIREFOX),
            ClickVerdict::UnknownCode,
            false,
        ),
        (
            get("REAL", "Googlebot/2.1 (+http://www.google.com/bot.html)"),
            ClickVerdict::Bot,
            true,
        ),
        (get("REAL", ""), ClickVerdict::Bot, true),
        (
            get("REAL", FIREFOX).header("sec-purpose", "prefetch"),
            ClickVerdict::Prefetch,
            true,
        ),
        (
            get("REAL", FIREFOX).header("purpose", "prefetch"),
            ClickVerdict::Prefetch,
            true,
        ),
        (
            http()
                .head(server.url("/?ref=REAL"))
                .header("user-agent", FIREFOX),
            ClickVerdict::Prefetch,
            true,
        ),
    ];
    let mut expected = Vec::new();
    for (request, verdict, cookie) in cases {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 302);
        assert_eq!(
            response.headers().get("set-cookie").is_some(),
            cookie,
            "{verdict:?}"
        );
        // The click id goes on the landing URL exactly when the cookie has one.
        let landing = match cookie {
            true => format!("{LANDING}?rt_click={}", cookie_value(&response)),
            false => LANDING.to_string(),
        };
        assert_eq!(
            response.headers()["location"],
            landing.as_str(),
            "{verdict:?}"
        );
        expected.push(verdict);
    }
    let events = clicks(&stack, expected.len()).await;
    let verdicts: Vec<_> = events.iter().map(|e| e.verdict).collect();
    assert_eq!(
        verdicts, expected,
        "events come back in click order (UUIDv7)"
    );
    assert!(events[..3].iter().all(|e| e.affiliate_id.is_none()));
    assert_eq!(
        events[2].code, "bad code!",
        "the raw unknown code is kept for audit"
    );
    assert_eq!(events[7].method, reftrack_events::ClickMethod::Head);
}

#[tokio::test]
async fn a_bare_visit_goes_to_the_landing_page_without_an_event() {
    let stack = TestStack::new().await.unwrap();
    let server = spawn(&config(&stack)).await;
    let response = http()
        .get(server.url("/?utm_source=x"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 302);
    assert_eq!(
        response.headers()["location"],
        format!("{LANDING}?utm_source=x").as_str()
    );
}

/// The click routes are answered before routing: what the router would have answered
/// for other methods and paths, and the request metrics, must stay as they were.
#[tokio::test]
async fn the_click_routes_refuse_other_methods_decode_the_code_and_are_counted() {
    let stack = TestStack::new().await.unwrap();
    affiliate(&stack, "ABC123").await;
    let server = spawn(&config(&stack)).await;

    for path in ["/?ref=ABC123", "/r/ABC123"] {
        let refused = http().post(server.url(path)).send().await.unwrap();
        assert_eq!(refused.status(), 405, "{path}");
        assert_eq!(refused.headers()["allow"], "GET, HEAD");
    }
    for path in ["/r/", "/r/ABC123/more", "/r/%FF"] {
        let status = http().get(server.url(path)).send().await.unwrap().status();
        assert_eq!(status, 404, "{path}");
    }
    let encoded = browser_get(server.url("/r/AB%43123")).send().await.unwrap();
    assert_eq!(encoded.status(), 302);
    assert!(
        cookie_value(&encoded).starts_with("ABC123."),
        "the code is decoded"
    );
    let events = clicks(&stack, 1).await;
    assert_eq!(events[0].code, "ABC123");

    let metrics = server.metrics().await;
    let counted = |route: &str, method: &str, status: u16| {
        metrics.lines().any(|l| {
            l.starts_with("http_requests_total{")
                && l.contains(&format!(r#"route="{route}""#))
                && l.contains(&format!(r#"method="{method}""#))
                && l.contains(&format!(r#"status="{status}""#))
        })
    };
    assert!(counted("/r/{code}", "GET", 302), "{metrics}");
    assert!(counted("/r/{code}", "POST", 405), "{metrics}");
    assert!(counted("/", "POST", 405), "{metrics}");
    assert!(
        metrics.contains(r#"http_request_duration_seconds_count{route="/r/{code}"}"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_new_affiliate_is_attributable_without_a_restart() {
    let stack = TestStack::new().await.unwrap();
    let server = spawn(&config(&stack)).await;
    let before = browser_get(server.url("/?ref=LATER")).send().await.unwrap();
    assert!(before.headers().get("set-cookie").is_none());
    affiliate(&stack, "LATER").await;
    // NOTIFY reaches the directory promptly, but not at once.
    wait::until(
        Duration::from_secs(30),
        "the new code became attributable",
        || async {
            browser_get(server.url("/?ref=LATER"))
                .send()
                .await
                .is_ok_and(|r| r.headers().get("set-cookie").is_some())
        },
    )
    .await
    .unwrap();
}

/// The visitor of clicks sent with each `X-Forwarded-For`, in order.
async fn visitors_behind(trusted: &str, forwarded: &[&str]) -> Vec<u64> {
    let stack = TestStack::new().await.unwrap();
    affiliate(&stack, "PROXY1").await;
    let mut config = config(&stack);
    config.trusted_proxies = trusted
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    let server = spawn(&config).await;
    for xff in forwarded {
        let response = browser_get(server.url("/?ref=PROXY1"))
            .header("x-forwarded-for", *xff)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 302);
    }
    let mut events = clicks(&stack, forwarded.len()).await;
    events.sort_by_key(|e| e.received_at_ms);
    events.iter().map(|e| e.visitor).collect()
}

#[tokio::test]
async fn the_client_address_is_the_rightmost_one_a_trusted_proxy_did_not_add() {
    // Behind a trusted load balancer (loopback here): the client's own claim (leftmost)
    // changes nothing; the address the balancer saw does.
    let v = visitors_behind(
        "127.0.0.1/32",
        &[
            "1.1.1.1, 203.0.113.5",
            "9.9.9.9, 203.0.113.5",
            "203.0.113.77",
        ],
    )
    .await;
    assert_eq!(v[0], v[1], "a forged leftmost entry is not the client");
    assert_ne!(v[0], v[2], "a different client is a different visitor");
    // From a peer that is not trusted, the header is ignored: one peer, one visitor.
    let v = visitors_behind("", &["203.0.113.5", "203.0.113.77"]).await;
    assert_eq!(v[0], v[1], "an untrusted peer cannot choose its address");
}
