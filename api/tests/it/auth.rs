//! Who may call what: every promoter route with own, other, missing, expired, alg-none,
//! wrong-key and refresh tokens; every admin route with valid, revoked, events-only,
//! promoter-JWT and missing credentials; and rate limits.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reftrack_store::api_keys::{self, Scope};
use reftrack_testkit::TestStack;
use serde_json::{Value, json};

use crate::{Client, config, key, token};

fn promoter_routes() -> Vec<(&'static str, &'static str, Option<Value>)> {
    vec![
        ("GET", "/referrals/promoter", None),
        (
            "PATCH",
            "/referrals/set-payout-method/",
            Some(json!({"method": "paypal", "payment_address": "me@example.com"})),
        ),
        ("GET", "/referrals/promoter-recent-earnings", None),
        ("GET", "/referrals/", None),
        ("GET", "/referrals/payouts", None),
        (
            "PATCH",
            "/referrals/set-min-withdrawal-balance/",
            Some(json!({"min_withdrawal_balance": 25})),
        ),
        ("POST", "/referrals/withdraw/", None),
    ]
}

fn unsigned(claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{header}.{payload}.")
}

fn signed_with(secret: &str, user_id: i64, ttl: i64) -> String {
    api::auth::Tokens::new(&secrecy::SecretString::from(secret.to_string()), 0).issue(user_id, ttl)
}

#[tokio::test]
async fn promoter_routes_accept_only_valid_access_tokens_and_show_only_the_callers_data() {
    let stack = TestStack::new().await.unwrap();
    let client = Client::new(&config(&stack)).await;
    let now = chrono::Utc::now().timestamp();
    let refresh = {
        let key = jsonwebtoken::EncodingKey::from_secret(api::DEV_JWT_SIGNING_KEY.as_bytes());
        let claims = json!({"token_type": "refresh", "user_id": 1, "exp": now + 3600, "iat": now, "jti": "x"});
        jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
    };
    let admin = key(&stack, &[Scope::Admin]).await;
    let rejected: Vec<(&str, String)> = vec![
        ("expired", signed_with(api::DEV_JWT_SIGNING_KEY, 1, -3600)),
        (
            "alg none",
            unsigned(
                &json!({"token_type": "access", "user_id": 1, "exp": now + 3600, "iat": now, "jti": "x"}),
            ),
        ),
        ("wrong key", signed_with("not-the-signing-key", 1, 3600)),
        ("refresh token", refresh),
        ("admin key", admin),
        ("garbage", "not.a.token".to_string()),
    ];

    for (method, path, body) in promoter_routes() {
        let (status, answer) = client
            .call(method, path, Some(&token(1)), body.clone())
            .await;
        assert!(
            matches!(status, 200 | 201 | 400),
            "own token on {method} {path}: {status} {answer}"
        );
        let (status, answer) = client.call(method, path, None, body.clone()).await;
        assert_eq!(status, 401, "no token on {method} {path}: {answer}");
        assert!(answer["detail"].is_string(), "{answer}");
        for (what, bad) in &rejected {
            let (status, _) = client.call(method, path, Some(bad), body.clone()).await;
            assert_eq!(status, 401, "{what} on {method} {path}");
        }
    }

    // Another user sees their own promoter, never the first one's.
    let (_, mine) = client
        .call("GET", "/referrals/promoter", Some(&token(1)), None)
        .await;
    let (_, theirs) = client
        .call("GET", "/referrals/promoter", Some(&token(2)), None)
        .await;
    assert_eq!(
        (mine["user"].as_i64(), theirs["user"].as_i64()),
        (Some(1), Some(2))
    );
    assert_ne!(mine["id"], theirs["id"]);
    assert_ne!(mine["referralToken"], theirs["referralToken"]);
    assert!(mine["activePayoutMethod"].is_object());
    assert!(theirs.get("activePayoutMethod").is_none(), "{theirs}");
    sqlx::query(
        "INSERT INTO referrals (affiliate_id, user_id, email, status, invitation_method, commission_rate, first_event_id, created_at)
         VALUES ($1, 77, 'x@example.com', 'signup', 'link', 15, 's-77', now())",
    )
    .bind(mine["id"].as_i64().unwrap())
    .execute(&stack.pool)
    .await
    .unwrap();
    let (_, my_referrals) = client
        .call("GET", "/referrals/", Some(&token(1)), None)
        .await;
    let (_, their_referrals) = client
        .call("GET", "/referrals/", Some(&token(2)), None)
        .await;
    assert_eq!(
        (
            my_referrals["count"].as_i64(),
            their_referrals["count"].as_i64()
        ),
        (Some(1), Some(0))
    );
}

#[tokio::test]
async fn admin_routes_need_an_active_admin_key() {
    let stack = TestStack::new().await.unwrap();
    let client = Client::new(&config(&stack)).await;
    let valid = key(&stack, &[Scope::Admin]).await;
    let revoked = key(&stack, &[Scope::Admin]).await;
    api_keys::revoke(&stack.pool, &revoked).await.unwrap();
    let events_only = key(&stack, &[Scope::Events]).await;
    let (_, created) = client
        .call(
            "POST",
            "/api/v1/affiliate/affiliates/",
            Some(&valid),
            Some(json!({"name": "A B", "email": "ab@example.com"})),
        )
        .await;
    let id = created["data"]["id"].as_i64().unwrap();
    let payout: i64 = sqlx::query_scalar(
        "INSERT INTO payouts (affiliate_id, amount, method, address) VALUES ($1, 5, 'wise', 'a@b.co') RETURNING id",
    )
    .bind(id)
    .fetch_one(&stack.pool)
    .await
    .unwrap();
    let routes: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", "/api/v1/affiliate/affiliates/".into(), None),
        (
            "POST",
            "/api/v1/affiliate/affiliates/".into(),
            Some(json!({"name": "C D", "email": "cd@example.com"})),
        ),
        ("GET", format!("/api/v1/affiliate/affiliates/{id}/"), None),
        (
            "PUT",
            format!("/api/v1/affiliate/affiliates/{id}/"),
            Some(json!({"tier": 2})),
        ),
        (
            "POST",
            format!("/api/v1/affiliate/affiliates/{id}/approve/"),
            Some(json!({})),
        ),
        (
            "POST",
            format!("/api/v1/affiliate/affiliates/{id}/reject/"),
            Some(json!({"reason": "spam"})),
        ),
        (
            "POST",
            format!("/api/v1/affiliate/affiliates/{id}/deactivate/"),
            None,
        ),
        (
            "GET",
            format!("/api/v1/affiliate/affiliates/{id}/performance/"),
            None,
        ),
        ("GET", "/api/v1/affiliate/payouts/".into(), None),
        (
            "POST",
            format!("/api/v1/affiliate/payouts/{payout}/mark-paid/"),
            None,
        ),
        (
            "POST",
            format!("/api/v1/affiliate/payouts/{payout}/cancel/"),
            None,
        ),
        (
            "DELETE",
            format!("/api/v1/affiliate/affiliates/{id}/"),
            None,
        ),
    ];
    let promoter = token(1);
    let refused: [(&str, Option<&str>, u16); 5] = [
        ("missing", None, 401),
        ("revoked", Some(&revoked), 401),
        ("garbage", Some("sk_live_nope"), 401),
        ("promoter JWT", Some(&promoter), 403),
        ("events-only key", Some(&events_only), 403),
    ];
    for (method, path, body) in &routes {
        for (what, credential, expected) in refused {
            let (status, answer) = client.call(method, path, credential, body.clone()).await;
            assert_eq!(status, expected, "{what} on {method} {path}: {answer}");
            assert_eq!(answer["success"], false, "{answer}");
            assert!(answer["error"]["message"].is_string(), "{answer}");
        }
        let (status, answer) = client.call(method, path, Some(&valid), body.clone()).await;
        assert!(
            !matches!(status, 401 | 403),
            "valid key on {method} {path}: {status} {answer}"
        );
        assert!(status < 500, "{method} {path}: {status} {answer}");
    }
}

#[tokio::test]
async fn callers_over_their_rate_limit_get_429_with_retry_after() {
    let stack = TestStack::new().await.unwrap();
    let mut config = config(&stack);
    config.rate_limit_per_minute = 3;
    let client = Client::new(&config).await;
    let admin = key(&stack, &[Scope::Admin]).await;
    for (path, credential) in [
        ("/referrals/promoter", token(5)),
        ("/api/v1/affiliate/affiliates/", admin),
    ] {
        let mut limited = None;
        // Ten calls: even across a minute boundary, at most six fit in two windows.
        for _ in 0..10 {
            let response = client
                .http
                .get(client.server.url(path))
                .bearer_auth(&credential)
                .send()
                .await
                .unwrap();
            if response.status() == 429 {
                limited = Some(response);
                break;
            }
        }
        let response = limited.unwrap_or_else(|| panic!("{path} was never limited"));
        let retry: u64 = response.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&retry), "{retry}");
    }
    // Another promoter has a budget of its own.
    let (status, _) = client
        .call("GET", "/referrals/promoter", Some(&token(6)), None)
        .await;
    assert_eq!(status, 200);
}
