//! ingest's integration tests, against the real local stack.

mod ops;

use clap::Parser;
use reftrack_testkit::{Served, TestStack, serve};

pub fn config(stack: &TestStack) -> ingest::Config {
    let mut config = ingest::Config::try_parse_from(["ingest"]).expect("defaults parse");
    config.common = stack.common();
    config.postgres = stack.postgres.clone();
    config.kafka = stack.kafka.clone();
    config
}

pub async fn spawn(config: &ingest::Config) -> Served {
    let app = ingest::App::build(config).await.expect("ingest starts");
    serve(move |listener, shutdown| app.serve(listener, shutdown)).await
}
