//! api's integration tests, against the real local stack.

mod ops;

use clap::Parser;
use reftrack_testkit::{Served, TestStack, serve};

pub fn config(stack: &TestStack) -> api::Config {
    let mut config = api::Config::try_parse_from(["api"]).expect("defaults parse");
    config.common = stack.common();
    config.postgres = stack.postgres.clone();
    config.clickhouse = stack.clickhouse.clone();
    config.redis = stack.redis.clone();
    config
}

pub async fn spawn(config: &api::Config) -> Served {
    let app = api::App::build(config).await.expect("api starts");
    serve(move |listener, shutdown| app.serve(listener, shutdown)).await
}
