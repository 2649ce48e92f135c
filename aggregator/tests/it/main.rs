//! aggregator's integration tests, against the real local stack.

mod ops;

use clap::Parser;
use reftrack_testkit::{Served, TestStack, serve};

pub fn config(stack: &TestStack) -> aggregator::Config {
    let mut config = aggregator::Config::try_parse_from(["aggregator"]).expect("defaults parse");
    config.common = stack.common();
    config.postgres = stack.postgres.clone();
    config.kafka = stack.kafka.clone();
    config.clickhouse = stack.clickhouse.clone();
    config.redis = stack.redis.clone();
    config
}

pub async fn spawn(config: &aggregator::Config) -> Served {
    let app = aggregator::App::build(config)
        .await
        .expect("aggregator starts");
    serve(move |listener, shutdown| app.serve(listener, shutdown)).await
}
