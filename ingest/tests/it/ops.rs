use reftrack_testkit::{TestStack, checks};

#[tokio::test]
async fn health_readiness_and_metrics_are_served_and_shutdown_is_graceful() {
    let stack = TestStack::new().await.unwrap();
    let server = crate::spawn(&crate::config(&stack)).await;
    checks::assert_ops_endpoints(&server, &["postgres", "kafka"]).await;
    server.stop().await.expect("graceful shutdown");
}

#[test]
fn bad_configuration_stops_start_up_with_one_line_naming_the_variable() {
    checks::assert_bad_config_is_one_line(
        env!("CARGO_BIN_EXE_ingest"),
        "ingest",
        Some("VISITOR_HASH_SECRET"),
    );
}
