//! The console's and portal's guards over plain HTTP (the pages themselves are driven in a
//! browser by e2e/tests/lifecycle/browser.rs): no page without a session, no form
//! without its CSRF token, no portal without a valid promoter token.

use reftrack_store::api_keys::Scope;
use reftrack_testkit::TestStack;

use crate::{config, key, spawn, token};

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

#[tokio::test]
async fn pages_need_a_session_and_forms_their_csrf_token() {
    let stack = TestStack::new().await.unwrap();
    let mut config = config(&stack);
    config.promoters.web_cookie_secure = false;
    let server = spawn(&config).await;
    let http = no_redirects();
    let home = http.get(server.url("/console/")).send().await.unwrap();
    assert_eq!(
        (
            home.status().as_u16(),
            home.headers()["location"].to_str().unwrap()
        ),
        (303, "/console/login")
    );
    // A promoter-scoped key is not an admin.
    let events = key(&stack, &[Scope::Events]).await;
    let refused = http
        .post(server.url("/console/login"))
        .form(&[("key", events.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);

    let admin = key(&stack, &[Scope::Admin]).await;
    let signed_in = http
        .post(server.url("/console/login"))
        .form(&[("key", admin.as_str())])
        .send()
        .await
        .unwrap();
    let cookie = signed_in.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict")
            && cookie.contains("Path=/console"),
        "{cookie}"
    );
    let session = cookie.split(';').next().unwrap().to_string();
    let page = http
        .get(server.url("/console/payouts"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let body = page.text().await.unwrap();
    assert!(
        body.contains("name=\"csrf\""),
        "every form carries the token"
    );

    let forged = http
        .post(server.url("/console/payout-batches"))
        .header("cookie", &session)
        .form(&[("method", "paypal")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403, "a form without the token is refused");

    // With its token, a re-drive request marks the parked events for the aggregator.
    sqlx::query(
        "INSERT INTO parked_events (topic, kafka_partition, kafka_offset, reason, event_id, payload)
         VALUES ('conversions', 0, 7, 'affiliate not active', 'p-1', '{}'::bytea)",
    )
    .execute(&stack.pool)
    .await
    .unwrap();
    let csrf = body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_string();
    let asked = http
        .post(server.url("/console/parked/redrive"))
        .header("cookie", &session)
        .form(&[("csrf", csrf.as_str()), ("reason", "affiliate not active")])
        .send()
        .await
        .unwrap();
    assert_eq!(asked.status(), 303);
    assert_eq!(asked.headers()["location"], "/console/parked?done=redrive");
    let by: Option<String> =
        sqlx::query_scalar("SELECT redrive_requested_by FROM parked_events WHERE event_id = 'p-1'")
            .fetch_one(&stack.pool)
            .await
            .unwrap();
    assert_eq!(by.as_deref(), Some("admin@rebusai.com"));

    // Hostile input comes back escaped, and a form's numbers reach the API as numbers.
    let client = crate::Client {
        http: reqwest::Client::new(),
        server,
    };
    let (status, created) = client
        .create_affiliate(
            &admin,
            serde_json::json!({"name": "<script>alert(1)</script>", "email": "x@example.com"}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["data"]["id"].as_i64().unwrap();
    let list = http
        .get(client.server.url("/console/?search=example.com"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        list.contains("&lt;script&gt;alert(1)&lt;/script&gt;") && !list.contains("<script>alert"),
        "names are escaped"
    );
    let saved = http
        .post(
            client
                .server
                .url(&format!("/console/affiliates/{id}/update")),
        )
        .header("cookie", &session)
        .form(&[
            ("csrf", csrf.as_str()),
            ("tier", "3"),
            ("commission_rate", ""),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(saved.status(), 303);
    let (_, detail) = client.affiliate(&admin, id).await;
    assert_eq!(detail["data"]["tier"], 3, "{detail}");
}

#[tokio::test]
async fn the_portal_takes_a_valid_promoter_token_only() {
    let stack = TestStack::new().await.unwrap();
    let mut config = config(&stack);
    config.promoters.web_cookie_secure = true;
    let server = spawn(&config).await;
    let http = no_redirects();
    let bad = http
        .get(server.url("/portal/login?token=not.a.token"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    let good = http
        .get(server.url(&format!("/portal/login?token={}", token(77))))
        .send()
        .await
        .unwrap();
    assert_eq!(good.status(), 303);
    assert_eq!(
        good.headers()["location"],
        "/portal/",
        "the token leaves the address bar"
    );
    assert_eq!(good.headers()["referrer-policy"], "no-referrer");
    let cookie = good.headers()["set-cookie"].to_str().unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("Secure"),
        "{cookie}"
    );
    let without = http.get(server.url("/portal/")).send().await.unwrap();
    assert_eq!(without.status(), 401);
}
