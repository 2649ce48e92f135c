use reftrack_testkit::{TestStack, checks};

#[tokio::test]
async fn health_readiness_and_metrics_are_served_and_shutdown_is_graceful() {
    let stack = TestStack::new().await.unwrap();
    let server = crate::spawn(&crate::config(&stack)).await;
    checks::assert_ops_endpoints(&server, &["postgres", "clickhouse", "redis"]).await;
    server.stop().await.expect("graceful shutdown");
}

#[test]
fn bad_configuration_stops_start_up_with_one_line_naming_the_variable() {
    checks::assert_bad_config_is_one_line(
        env!("CARGO_BIN_EXE_api"),
        "api",
        Some("JWT_SIGNING_KEY"),
    );
}

#[tokio::test]
async fn the_promoter_api_answers_preflights_from_configured_origins_only() {
    let stack = TestStack::new().await.unwrap();
    let mut config = crate::config(&stack);
    let app = "https://app.product.example";
    config.cors_allowed_origins = vec![app.parse().unwrap()];
    let server = crate::spawn(&config).await;
    let http = reqwest::Client::new();
    let preflight = |path: &'static str, origin: &'static str| {
        http.request(reqwest::Method::OPTIONS, server.url(path))
            .header("origin", origin)
            .header("access-control-request-method", "PATCH")
            .header(
                "access-control-request-headers",
                "authorization,content-type",
            )
            .send()
    };
    let answer = preflight("/referrals/set-payout-method/", app)
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let h = answer.headers();
    assert_eq!(h["access-control-allow-origin"], app);
    assert!(
        h["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("PATCH")
    );
    let allowed = h["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        allowed.contains("authorization") && allowed.contains("content-type"),
        "{allowed}"
    );

    let stranger = preflight("/referrals/set-payout-method/", "https://evil.example")
        .await
        .unwrap();
    assert!(
        !stranger
            .headers()
            .contains_key("access-control-allow-origin"),
        "another origin is not allowed"
    );
    let admin = preflight("/api/v1/affiliate/affiliates/", app)
        .await
        .unwrap();
    assert!(
        !admin.headers().contains_key("access-control-allow-origin"),
        "the admin API is not for browsers"
    );
    // The real request carries the header too, with the request id exposed.
    let answer = http
        .get(server.url("/referrals/promoter"))
        .header("origin", app)
        .bearer_auth(crate::token(1))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["access-control-allow-origin"], app);
    assert!(answer.headers().contains_key("x-request-id"));
}
