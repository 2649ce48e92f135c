//! ingest's OpenAPI document: valid by an independent validator, and every example it
//! documents accepted by the running service.

use reftrack_store::api_keys::Scope;
use reftrack_testkit::{TestStack, python};
use serde_json::Value;

use crate::conversions::key;
use crate::{affiliate, config, http, spawn};

#[tokio::test]
async fn the_document_is_valid_and_every_example_in_it_is_accepted() {
    let stack = TestStack::new().await.unwrap();
    let events_key = key(&stack, &[Scope::Events]).await;
    // The examples name this code and this coupon.
    let id = affiliate(&stack, "JANE_DOE_1").await;
    sqlx::query("INSERT INTO coupons (affiliate_id, code) VALUES ($1, 'SPRING25')")
        .bind(id)
        .execute(&stack.pool)
        .await
        .unwrap();
    let server = spawn(&config(&stack)).await;

    let response = http()
        .get(server.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let text = response.text().await.unwrap();
    let file = std::env::temp_dir().join(format!("ingest-openapi-{}.json", stack.id));
    std::fs::write(&file, &text).unwrap();
    python::run(
        &["-m", "openapi_spec_validator", file.to_str().unwrap()],
        &[],
    );

    let document: Value = serde_json::from_str(&text).unwrap();
    let mut sent = 0;
    for path in ["/v1/conversions", "/v1/conversions/batch"] {
        let operation = &document["paths"][path]["post"];
        for status in ["202", "400", "401", "403", "503"] {
            assert!(
                operation["responses"][status].is_object(),
                "{path} documents {status}"
            );
        }
        let examples = operation["requestBody"]["content"]["application/json"]["examples"]
            .as_object()
            .unwrap_or_else(|| panic!("{path} has examples"));
        for (name, example) in examples {
            let response = http()
                .post(server.url(path))
                .bearer_auth(&events_key)
                .json(&example["value"])
                .send()
                .await
                .unwrap();
            let status = response.status();
            let body = response.text().await.unwrap();
            assert_eq!(status, 202, "{path} example {name:?}: {body}");
            sent += 1;
        }
    }
    assert_eq!(sent, 7, "six single examples and one batch");

    // Every field the service reads is documented.
    let fields = document["components"]["schemas"]["ConversionRequest"]["properties"]
        .as_object()
        .expect("the conversion's schema");
    for field in ingest::conversions::input::FIELDS {
        assert!(fields.contains_key(*field), "{field} is documented");
    }
}
