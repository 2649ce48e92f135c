//! `to=` deep links must never send a visitor off the allowed hosts, however the
//! target is disguised.

use reftrack_testkit::TestStack;
use url::Url;

use crate::{affiliate, browser_get, config, spawn};

const EVIL_HOSTS: &[&str] = &[
    "evil.example",
    "evil.example.",
    "EVIL.example",
    "évil.example",
    "xn--vil-bma.example",
    "127.0.0.1",
    "[::1]",
    "2130706433",
    "0x7f.1",
    "product.example.evil.example",
    "evil.example?product.example",
    "evil.example#product.example",
    "evil.example\\product.example",
    "evil.example%2fproduct.example",
];

const DISGUISES: &[&str] = &[
    "//",
    "///",
    "////",
    "\\\\",
    "\\/",
    "/\\",
    "/\\/",
    "https://",
    "http://",
    "HtTpS://",
    "HTTP://",
    "https:",
    "https:/",
    "https:\\\\",
    "https:/\\",
    "//product.example@",
    "https://product.example@",
    "https://product.example:443@",
    "https://user:pass@",
    " //",
    "\t//",
    "%20//",
    "/%2F",
    "%2F%2F",
    "/%5C",
    "%5C%5C",
    "\r\n//",
    "%0d%0a//",
    "/%09/",
    "//%09",
    "ftp://",
    "javascript://%0a",
    "https://docs.product.example.",
    "//docs.product.example@",
];

const PLAIN_ATTACKS: &[&str] = &[
    "javascript:alert(1)",
    "JaVaScRiPt:alert(document.cookie)",
    "data:text/html,<script>alert(1)</script>",
    "vbscript:msgbox(1)",
    "/%0d%0aSet-Cookie:%20evil=1",
    "/\r\nSet-Cookie: evil=1",
    "/\r\nLocation: https://evil.example",
    "%0d%0aLocation:%20https://evil.example",
    "https://evil.example/https://product.example",
    "https://product.example.evil.example/",
    "//evil.example/%2e%2e",
    "https://evil.example:443",
    "https://evil。example",
    "https://evil%2Eexample",
    "/.evil.example",
    "http:evil.example",
];

fn payloads() -> Vec<String> {
    let mut out: Vec<String> = DISGUISES
        .iter()
        .flat_map(|d| EVIL_HOSTS.iter().map(move |h| format!("{d}{h}")))
        .collect();
    out.extend(PLAIN_ATTACKS.iter().map(|s| s.to_string()));
    out
}

#[tokio::test]
async fn hundreds_of_open_redirect_payloads_never_leave_the_allowlist() {
    let stack = TestStack::new().await.unwrap();
    affiliate(&stack, "SAFE").await;
    // No click id on the landing URL here, so that the pass-through query ends it.
    let mut config = config(&stack);
    config.click_id_param = String::new();
    let server = spawn(&config).await;
    let payloads = payloads();
    assert!(payloads.len() >= 200, "{} payloads", payloads.len());

    let allowed = ["product.example", "docs.product.example"];
    let mut followed = 0;
    for payload in &payloads {
        let to: String = url::form_urlencoded::byte_serialize(payload.as_bytes()).collect();
        let response = browser_get(server.url(&format!("/?ref=SAFE&to={to}&utm_source=t")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 302, "{payload:?}");
        let location = response.headers()["location"].to_str().unwrap();
        let target =
            Url::parse(location).unwrap_or_else(|e| panic!("{payload:?} gave {location:?}: {e}"));
        assert!(
            matches!(target.scheme(), "http" | "https"),
            "{payload:?} → {location}"
        );
        assert!(
            allowed.contains(&target.host_str().unwrap_or_default()),
            "{payload:?} escaped to {location}"
        );
        assert!(
            target.username().is_empty() && target.password().is_none(),
            "{payload:?} → {location}"
        );
        assert!(
            !location.contains(['\r', '\n', ' ']),
            "{payload:?} → {location:?}"
        );
        let cookies: Vec<_> = response.headers().get_all("set-cookie").iter().collect();
        assert_eq!(cookies.len(), 1, "{payload:?} injected a header");
        assert!(
            location.ends_with("utm_source=t") || location.contains("utm_source=t#"),
            "{location}"
        );
        if location != "https://product.example/welcome?utm_source=t" {
            followed += 1;
        }
    }
    // Some disguises are harmless relative paths on the landing host; those are followed.
    assert!(
        followed > 0 && followed < payloads.len(),
        "{followed} followed"
    );

    let good = browser_get(server.url("/?ref=SAFE&to=https%3A%2F%2Fdocs.product.example%2Fguide"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        good.headers()["location"],
        "https://docs.product.example/guide"
    );
}
