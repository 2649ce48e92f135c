//! ingest with its broker gone: conversions are refused (503) and clicks keep being
//! served, wait in the spill, and all arrive exactly once when the broker is back, even
//! when it comes back without its topics (the private broker runs on memory storage).

use std::collections::HashSet;
use std::time::Duration;

use futures::StreamExt;
use reftrack_events::ClickEvent;
use reftrack_store::api_keys::Scope;
use reftrack_testkit::kafka::{PrivateBroker, read_topic_async};
use reftrack_testkit::{TestStack, metric, wait};
use serde_json::{Value, json};

use crate::{FIREFOX, affiliate, config, http, spawn};

fn on_private_broker(stack: &TestStack, broker: &PrivateBroker) -> ingest::Config {
    let mut config = config(stack);
    config.kafka.brokers = broker.brokers();
    // Idempotent, as against Apache Kafka: the producer whose identity the emptied broker
    // forgot must be replaced.
    config.kafka.idempotence = true;
    config.spill_after_ms = 1_000;
    config.conversion_ack_timeout_ms = 1_000;
    config
}

#[tokio::test]
async fn conversions_are_503_with_retry_after_while_the_broker_is_down() {
    let stack = TestStack::new().await.unwrap();
    let key = crate::conversions::key(&stack, &[Scope::Events]).await;
    let mut broker = PrivateBroker::launch().unwrap();
    let server = spawn(&on_private_broker(&stack, &broker)).await;
    broker.stop();

    let started = std::time::Instant::now();
    let response = http()
        .post(server.url("/v1/conversions"))
        .bearer_auth(&key)
        .json(
            &json!({"event_id": "s-1", "type": "signup", "user_id": 1, "referral_code": "ABC123"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    // The ack timeout is 1 s; the margin is for a busy machine, not a hung request.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "answered soon after the ack timeout"
    );
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["error"]["code"], "broker_unavailable");

    // Redirects are unaffected.
    let click = http().get(server.url("/?ref=ANY")).send().await.unwrap();
    assert_eq!(click.status(), 302);
    let ready: Value = http()
        .get(server.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "degraded", "{ready}");
}

#[tokio::test]
async fn ten_thousand_clicks_during_an_outage_all_arrive_once_on_a_broker_back_empty() {
    const CLICKS: usize = 10_000;
    let stack = TestStack::new().await.unwrap();
    affiliate(&stack, "OUTAGE").await;
    let key = crate::conversions::key(&stack, &[Scope::Events]).await;
    let mut broker = PrivateBroker::launch().unwrap();
    let config = on_private_broker(&stack, &broker);
    let server = spawn(&config).await;
    broker.stop();

    let client = http();
    let url = server.url("/?ref=OUTAGE");
    let statuses: Vec<u16> = futures::stream::iter(0..CLICKS)
        .map(|i| {
            let request = client
                .get(&url)
                .header("user-agent", format!("{FIREFOX} #{i}"));
            async move {
                request
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0)
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    assert!(
        statuses.iter().all(|s| *s == 302),
        "every click was redirected during the outage"
    );

    // The producer gives up on the broker after SPILL_AFTER_MS and spills.
    wait::until(
        Duration::from_secs(60),
        "clicks wait in this instance's spill",
        || async { spilled_bytes(&config.spill_dir) > 0 },
    )
    .await
    .unwrap();

    broker.start().unwrap();
    // The broker is back without topics: ingest creates them again by itself, and takes
    // conversions once they are there.
    let signup =
        json!({"event_id": "after-1", "type": "signup", "user_id": 1, "referral_code": "OUTAGE"});
    wait::until(
        Duration::from_secs(60),
        "a conversion is accepted again",
        || async {
            let response = http()
                .post(server.url("/v1/conversions"))
                .bearer_auth(&key)
                .json(&signup)
                .send()
                .await;
            response.is_ok_and(|r| r.status() == 202)
        },
    )
    .await
    .unwrap();
    let conversions = read_all(&broker, &config.kafka.conversions_topic, &config, 1).await;
    assert_eq!(
        conversions.len(),
        1,
        "the accepted conversion is on its topic"
    );

    let records = read_all(&broker, &config.kafka.clicks_topic, &config, CLICKS).await;
    let ids: HashSet<_> = records
        .iter()
        .map(|r| ClickEvent::decode(&r.payload).unwrap().event_id)
        .collect();
    assert_eq!(records.len(), CLICKS, "no click twice");
    assert_eq!(ids.len(), CLICKS, "no click lost");

    assert_eq!(
        spilled_bytes(&config.spill_dir),
        0,
        "the spill was replayed and emptied"
    );
    let metrics = server.metrics().await;
    assert!(
        metric(&metrics, "ingest_events_replayed_total") > 0.0,
        "{metrics}"
    );
    assert_eq!(metric(&metrics, "ingest_events_dropped_total"), 0.0);
    assert!(
        metric(&metrics, "ingest_topics_recreated_total") >= 2.0,
        "both topics were created again: {metrics}"
    );
    server.stop().await.unwrap();
}

async fn read_all(
    broker: &PrivateBroker,
    topic: &str,
    config: &ingest::Config,
    expected: usize,
) -> Vec<reftrack_testkit::kafka::Record> {
    read_topic_async(
        &broker.brokers(),
        topic,
        config.kafka.partitions,
        expected,
        Duration::from_secs(120),
        Duration::from_secs(3),
    )
    .await
    .unwrap()
}

fn spilled_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}
