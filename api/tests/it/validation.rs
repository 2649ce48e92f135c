//! Bad input gets a 400 that names the field, in each API's style.

use reftrack_store::api_keys::Scope;
use reftrack_testkit::TestStack;
use serde_json::{Value, json};

use crate::{Client, config, key, token};

#[tokio::test]
async fn the_admin_api_names_every_bad_field() {
    let stack = TestStack::new().await.unwrap();
    let client = Client::new(&config(&stack)).await;
    let admin = key(&stack, &[Scope::Admin]).await;
    let admin = Some(admin.as_str());
    let (_, created) = client
        .call(
            "POST",
            "/api/v1/affiliate/affiliates/",
            admin,
            Some(json!({"name": "Val Id", "email": "val@example.com"})),
        )
        .await;
    let id = created["data"]["id"].as_i64().unwrap();

    let cases: Vec<(&str, String, Option<Value>, &str)> = vec![
        (
            "GET",
            "/api/v1/affiliate/affiliates/?page_size=101".into(),
            None,
            "page_size",
        ),
        (
            "GET",
            "/api/v1/affiliate/affiliates/?page_size=0".into(),
            None,
            "page_size",
        ),
        (
            "GET",
            "/api/v1/affiliate/affiliates/?tier=0".into(),
            None,
            "tier",
        ),
        (
            "GET",
            "/api/v1/affiliate/affiliates/?tier=6".into(),
            None,
            "tier",
        ),
        (
            "GET",
            "/api/v1/affiliate/affiliates/?status=unknown".into(),
            None,
            "status",
        ),
        (
            "GET",
            "/api/v1/affiliate/affiliates/?page=0".into(),
            None,
            "page",
        ),
        (
            "GET",
            "/api/v1/affiliate/affiliates/?active=maybe".into(),
            None,
            "active",
        ),
        (
            "POST",
            "/api/v1/affiliate/affiliates/".into(),
            Some(json!({"name": "X", "email": "not-an-email"})),
            "email",
        ),
        (
            "POST",
            "/api/v1/affiliate/affiliates/".into(),
            Some(json!({"name": "Y", "email": "val@example.com"})),
            "email",
        ),
        (
            "POST",
            "/api/v1/affiliate/affiliates/".into(),
            Some(
                json!({"name": "Z", "email": "z@example.com", "address": {"country_id": 233, "state_id": 999}}),
            ),
            "address.state_id",
        ),
        (
            "PUT",
            format!("/api/v1/affiliate/affiliates/{id}/"),
            Some(json!({"commission_rate": -1})),
            "commission_rate",
        ),
        (
            "PUT",
            format!("/api/v1/affiliate/affiliates/{id}/"),
            Some(json!({"commission_rate": "NaN"})),
            "commission_rate",
        ),
        (
            "PUT",
            format!("/api/v1/affiliate/affiliates/{id}/"),
            Some(json!({"commission_rate": 12.345})),
            "commission_rate",
        ),
        (
            "PUT",
            format!("/api/v1/affiliate/affiliates/{id}/"),
            Some(json!({"tier": 0})),
            "tier",
        ),
        (
            "PUT",
            format!("/api/v1/affiliate/affiliates/{id}/"),
            Some(json!({"tier": 6})),
            "tier",
        ),
        (
            "PUT",
            format!("/api/v1/affiliate/affiliates/{id}/"),
            Some(json!({"payment_methods": [{"type": "cheque", "email": "a@b.co"}]})),
            "payment_methods[0].type",
        ),
        (
            "POST",
            format!("/api/v1/affiliate/affiliates/{id}/approve/"),
            Some(json!({"tier": 9})),
            "tier",
        ),
        (
            "GET",
            format!("/api/v1/affiliate/affiliates/{id}/performance/?date_from=2024-13-01"),
            None,
            "date_from",
        ),
        (
            "GET",
            "/api/v1/affiliate/payouts/?status=lost".into(),
            None,
            "status",
        ),
    ];
    for (method, path, body, field) in cases {
        let (status, answer) = client.call(method, &path, admin, body).await;
        assert_eq!(status, 400, "{method} {path}: {answer}");
        assert_eq!(answer["success"], false);
        assert_eq!(answer["error"]["code"], "validation_error", "{answer}");
        assert!(
            answer["error"]["details"][field].is_array(),
            "{method} {path} does not name {field}: {answer}"
        );
    }
    let (status, answer) = client
        .call("GET", "/api/v1/affiliate/affiliates/abc/", admin, None)
        .await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
}

#[tokio::test]
async fn the_promoter_api_names_every_bad_field() {
    let stack = TestStack::new().await.unwrap();
    let client = Client::new(&config(&stack)).await;
    let me = token(3);
    let cases: Vec<(&str, &str, Value, &str)> = vec![
        (
            "PATCH",
            "/referrals/set-min-withdrawal-balance/",
            json!({"min_withdrawal_balance": -5}),
            "min_withdrawal_balance",
        ),
        (
            "PATCH",
            "/referrals/set-min-withdrawal-balance/",
            json!({"min_withdrawal_balance": "NaN"}),
            "min_withdrawal_balance",
        ),
        (
            "PATCH",
            "/referrals/set-min-withdrawal-balance/",
            json!({"min_withdrawal_balance": 50.123}),
            "min_withdrawal_balance",
        ),
        (
            "PATCH",
            "/referrals/set-min-withdrawal-balance/",
            json!({"min_withdrawal_balance": 1000000}),
            "min_withdrawal_balance",
        ),
        (
            "PATCH",
            "/referrals/set-min-withdrawal-balance/",
            json!({}),
            "min_withdrawal_balance",
        ),
        (
            "PATCH",
            "/referrals/set-payout-method/",
            json!({"method": "cheque", "payment_address": "x"}),
            "method",
        ),
        (
            "PATCH",
            "/referrals/set-payout-method/",
            json!({"method": "wise", "payment_address": "nope"}),
            "payment_address",
        ),
        (
            "PATCH",
            "/referrals/set-payout-method/",
            json!({"method": "crypto", "payment_address": "0x12"}),
            "payment_address",
        ),
        (
            "PATCH",
            "/referrals/set-payout-method/",
            json!({"payment_address": "a@b.co"}),
            "method",
        ),
    ];
    for (method, path, body, field) in cases {
        let (status, answer) = client
            .call(method, path, Some(&me), Some(body.clone()))
            .await;
        assert_eq!(status, 400, "{path} {body}: {answer}");
        assert!(
            answer[field][0].is_string(),
            "{path} {body} does not name {field}: {answer}"
        );
    }
    let (status, answer) = client
        .call("GET", "/referrals/?page=abc", Some(&me), None)
        .await;
    assert_eq!(status, 400);
    assert!(answer["page"][0].is_string(), "{answer}");
    let (status, answer) = client
        .call("GET", "/referrals/?page=9", Some(&me), None)
        .await;
    assert_eq!(
        (status, answer["detail"].as_str()),
        (404, Some("Not found."))
    );
    let response = client
        .http
        .patch(client.server.url("/referrals/set-payout-method/"))
        .bearer_auth(&me)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let answer: Value = response.json().await.unwrap();
    assert!(
        answer["detail"]
            .as_str()
            .unwrap()
            .starts_with("JSON parse error"),
        "{answer}"
    );
}
