use std::time::Duration;

use reftrack_events::{ConversionEvent, ConversionKind};
use reftrack_store::api_keys::{self, Scope};
use reftrack_testkit::TestStack;
use reftrack_testkit::kafka::read_topic_async;
use serde_json::{Value, json};

use crate::{config, http, spawn};

pub async fn key(stack: &TestStack, scopes: &[Scope]) -> String {
    api_keys::create(&stack.pool, "backend@product.example", scopes)
        .await
        .unwrap()
        .0
        .key
}

async fn conversions_on_topic(stack: &TestStack, n: usize) -> Vec<ConversionEvent> {
    read_topic_async(
        &stack.kafka.brokers,
        &stack.kafka.conversions_topic,
        stack.kafka.partitions,
        n,
        Duration::from_secs(60),
        Duration::from_millis(300),
    )
    .await
    .unwrap()
    .iter()
    .map(|r| {
        assert_eq!(r.key, b"ABC123", "keyed by referral code");
        ConversionEvent::decode(&r.payload).unwrap()
    })
    .collect()
}

#[tokio::test]
async fn a_conversion_is_acknowledged_only_once_it_is_on_the_topic() {
    let stack = TestStack::new().await.unwrap();
    let events_key = key(&stack, &[Scope::Events]).await;
    let server = spawn(&config(&stack)).await;
    let click = uuid::Uuid::now_v7();
    let body = json!({
        "event_id": "order-1001", "type": "purchase", "user_id": 42, "email": "buyer@example.com",
        "click_id": format!("ABC123.{}", click.simple()), "amount": "49.90", "currency": "USD",
        "method": "coupon", "occurred_at": "2024-09-08T09:00:00Z"
    });
    let response = http()
        .post(server.url("/v1/conversions"))
        .bearer_auth(&events_key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["success"], true);
    assert_eq!(
        answer["data"],
        json!({"event_id": "order-1001", "status": "accepted"})
    );
    assert_eq!(answer["api_version"], "1.0");
    assert!(answer["timestamp"].is_i64());

    // 202 means the broker already has it: it is readable at once.
    let events = conversions_on_topic(&stack, 1).await;
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(event.event_id, "order-1001");
    assert_eq!(event.kind, ConversionKind::Purchase);
    assert_eq!(event.user_id, 42);
    assert_eq!(event.email.as_deref(), Some("buyer@example.com"));
    assert_eq!(event.referral_code, "ABC123");
    assert_eq!(event.click_id, Some(click));
    assert_eq!(event.amount.unwrap().to_string(), "49.90");
    assert_eq!(event.currency.as_deref(), Some("USD"));
    assert_eq!(event.method, reftrack_events::InvitationMethod::Coupon);
    assert_eq!(event.occurred_at.to_rfc3339(), "2024-09-08T09:00:00+00:00");
}

#[tokio::test]
async fn bad_keys_are_401_or_403_and_bad_fields_are_named() {
    let stack = TestStack::new().await.unwrap();
    let events_key = key(&stack, &[Scope::Events]).await;
    let admin_key = key(&stack, &[Scope::Admin]).await;
    let revoked = key(&stack, &[Scope::Events]).await;
    api_keys::revoke(&stack.pool, &revoked).await.unwrap();
    let server = spawn(&config(&stack)).await;
    let body =
        json!({"event_id": "s-1", "type": "signup", "user_id": 1, "referral_code": "ABC123"});
    let post = |key: Option<&str>| {
        let request = http().post(server.url("/v1/conversions")).json(&body);
        match key {
            Some(key) => request.bearer_auth(key),
            None => request,
        }
    };
    for (key, status) in [
        (None, 401),
        (
            Some("sk_live_0000000000000000000000000000000000000000"),
            401,
        ),
        (Some(revoked.as_str()), 401),
        (Some("eyJhbGciOiJIUzI1NiJ9.eyJ1c2VyX2lkIjoxfQ.x"), 401),
        (Some(admin_key.as_str()), 403),
    ] {
        let response = post(key).send().await.unwrap();
        assert_eq!(response.status(), status, "{key:?}");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["success"], false);
        assert!(answer["error"]["message"].as_str().unwrap().len() > 10);
    }

    let response = http()
        .post(server.url("/v1/conversions"))
        .bearer_auth(&events_key)
        .json(&json!({"event_id": "p-1", "type": "purchase", "user_id": 1, "referral_code": "ABC123", "amount": 10.005, "currency": "USD"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["error"]["code"], "validation_error");
    assert_eq!(
        answer["error"]["details"],
        json!({"amount": ["must have at most 2 decimal places"]})
    );

    let response = http()
        .post(server.url("/v1/conversions"))
        .bearer_auth(&events_key)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let answer: Value = response.json().await.unwrap();
    assert!(
        answer["error"]["details"]["body"][0]
            .as_str()
            .unwrap()
            .starts_with("is not valid JSON")
    );
}

#[tokio::test]
async fn a_batch_is_all_or_nothing() {
    let stack = TestStack::new().await.unwrap();
    let events_key = key(&stack, &[Scope::Events]).await;
    let server = spawn(&config(&stack)).await;
    let signup = |i: i64| json!({"event_id": format!("s-{i}"), "type": "signup", "user_id": i, "referral_code": "ABC123"});

    let bad = json!({"events": [signup(1), {"event_id": "s-2", "type": "signup", "user_id": 0, "referral_code": "ABC123"}]});
    let response = http()
        .post(server.url("/v1/conversions/batch"))
        .bearer_auth(&events_key)
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let answer: Value = response.json().await.unwrap();
    assert!(
        answer["error"]["details"]["events[1].user_id"].is_array(),
        "{answer}"
    );

    let good = json!({"events": [signup(1), signup(2), signup(3)]});
    let response = http()
        .post(server.url("/v1/conversions/batch"))
        .bearer_auth(&events_key)
        .json(&good)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["data"]["accepted"], 3);
    let on_topic = conversions_on_topic(&stack, 3).await;
    assert_eq!(on_topic.len(), 3, "only the good batch reached the topic");
}
