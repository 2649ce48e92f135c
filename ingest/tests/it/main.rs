//! ingest's integration tests, against the real local stack and real HTTP.

mod bots;
mod clicks;
mod conversions;
mod open_redirect;
mod openapi;
mod ops;
mod outage;

use std::time::Duration;

use clap::Parser;
use reftrack_events::ClickEvent;
use reftrack_testkit::kafka::read_topic_async;
use reftrack_testkit::{Served, TestStack, serve};

pub const LANDING: &str = "https://product.example/welcome";
pub const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";

pub fn config(stack: &TestStack) -> ingest::Config {
    let mut config = ingest::Config::try_parse_from(["ingest"]).expect("defaults parse");
    config.common = stack.common();
    config.postgres = stack.postgres.clone();
    config.kafka = stack.kafka.clone();
    config.landing_url = LANDING.parse().unwrap();
    config.redirect_allowed_hosts = vec!["docs.product.example".into()];
    config.spill_dir = std::env::temp_dir().join(format!("reftrack-spill-{}", stack.id));
    config
}

pub async fn spawn(config: &ingest::Config) -> Served {
    let app = ingest::App::build(config).await.expect("ingest starts");
    serve(move |listener, shutdown| app.serve(listener, shutdown)).await
}

/// An HTTP client that shows redirects instead of following them.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A GET as a browser sends it: Firefox's user agent, so the click is not judged a bot.
pub fn browser_get(url: impl reqwest::IntoUrl) -> reqwest::RequestBuilder {
    http().get(url).header("user-agent", FIREFOX)
}

/// An approved, active affiliate with `code`; returns its id.
pub async fn affiliate(stack: &TestStack, code: &str) -> i64 {
    reftrack_testkit::fixtures::affiliate(&stack.pool, code, "10").await
}

/// The first `n` clicks on the test's topic, decoded.
pub async fn clicks(stack: &TestStack, n: usize) -> Vec<ClickEvent<'static>> {
    let records = read_topic_async(
        &stack.kafka.brokers,
        &stack.kafka.clicks_topic,
        stack.kafka.partitions,
        n,
        Duration::from_secs(60),
        Duration::from_millis(300),
    )
    .await
    .unwrap();
    let mut events: Vec<ClickEvent<'static>> = records
        .iter()
        .map(|r| ClickEvent::decode(&r.payload).unwrap().into_owned())
        .collect();
    events.sort_by_key(|e| e.event_id);
    events
}
