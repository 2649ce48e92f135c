use reftrack_testkit::{TestStack, checks};

#[tokio::test]
async fn health_readiness_and_metrics_are_served_and_shutdown_is_graceful() {
    let stack = TestStack::new().await.unwrap();
    let server = crate::spawn(&crate::config(&stack)).await;
    checks::assert_ops_endpoints(&server, &["postgres", "clickhouse", "kafka"]).await;
    server.stop().await.expect("graceful shutdown");
}

#[test]
fn bad_configuration_stops_start_up_with_one_line_naming_the_variable() {
    checks::assert_bad_config_is_one_line(env!("CARGO_BIN_EXE_aggregator"), "aggregator", None);
}

#[test]
fn an_instance_number_outside_the_instances_is_refused_at_start() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_aggregator"))
        .env("AGGREGATOR_INSTANCE", "2")
        .env("AGGREGATOR_INSTANCES", "2")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8(out.stderr).unwrap().trim_end(),
        "aggregator: bad configuration: AGGREGATOR_INSTANCE: must be below AGGREGATOR_INSTANCES (2): instances are numbered from 0"
    );
}
