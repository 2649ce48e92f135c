//! A topic that comes back as another log (a broker restarted empty, a topic re-created)
//! is applied as a new epoch from its first record: none of it skipped for sitting below
//! the old positions, nothing counted twice.

use std::time::Duration;

use chrono::Utc;
use reftrack_testkit::kafka::PrivateBroker;
use reftrack_testkit::{TestStack, metric, wait};
use rust_decimal::Decimal;
use serde_json::json;

use crate::{Producer, affiliate, config, conversion, rollup, spawn};

/// Clicks for visitors `from..to`, and a purchase of `amount`.
async fn traffic(
    producer: &Producer,
    config: &aggregator::Config,
    id: i64,
    from: u64,
    to: u64,
    amount: &str,
) {
    producer
        .send_valid_clicks(&config.kafka.clicks_topic, "EPOCH", id, from..to)
        .await;
    let (key, payload) = conversion(json!({
        "event_id": format!("p-{to}"), "type": "purchase", "amount": amount, "currency": "USD",
        "user_id": 7, "referral_code": "EPOCH", "method": "email",
        "occurred_at": Utc::now(), "received_at": Utc::now(),
    }));
    producer
        .send(&config.kafka.conversions_topic, &key, &payload)
        .await;
}

async fn counted(stack: &TestStack, id: i64, clicks: u64, purchases: u64) {
    wait::until(
        Duration::from_secs(120),
        "every click and purchase counted",
        || async {
            let stats = rollup(stack, id).await;
            stats.raw_clicks >= clicks && stats.purchases >= purchases
        },
    )
    .await
    .unwrap();
}

async fn earned(stack: &TestStack, id: i64) -> Decimal {
    sqlx::query_scalar("SELECT earned FROM affiliate_totals WHERE affiliate_id = $1")
        .bind(id)
        .fetch_one(&stack.pool)
        .await
        .unwrap()
}

async fn restart_empty(broker: &mut PrivateBroker, config: &aggregator::Config) {
    broker.stop();
    broker.start().unwrap();
    // As ingest does when it finds its topics gone.
    let kafka = &config.kafka;
    reftrack_events::kafka::ensure_topics(kafka, &[&kafka.clicks_topic, &kafka.conversions_topic])
        .await
        .unwrap();
}

/// The aggregator is away while the broker restarts: with it running, librdkafka 2.12's
/// consumer can crash on tansu's metadata for a topic being re-created (a topic without
/// a name), which would take the test process down with it. A crash is one more restart:
/// the check below is the one every (re)start makes.
#[tokio::test]
async fn a_broker_back_empty_is_a_new_epoch_applied_from_its_start() {
    let stack = TestStack::new().await.unwrap();
    let id = affiliate(&stack, "EPOCH", "10").await;
    let mut broker = PrivateBroker::launch().unwrap();
    let mut config = config(&stack);
    config.kafka.brokers = broker.brokers();
    config.kafka.idempotence = true;

    // The first log: 300 clicks and a purchase, applied.
    let server = spawn(&config).await;
    traffic(&Producer::on(&config.kafka), &config, id, 0, 300, "100.00").await;
    counted(&stack, id, 300, 1).await;
    server.stop().await.unwrap();

    // Each new log gets a producer of its own (the broker forgot the old one's idempotent
    // identity). The second outgrows the old positions: 600 clicks in the partition that
    // held 300, so its record at the last applied offset is another one. The third is
    // shorter than the positions: the last applied offset is past its end.
    let mut epochs = 0.0;
    for (from, to, amount) in [(300, 900, "50.00"), (900, 1_000, "20.00")] {
        restart_empty(&mut broker, &config).await;
        traffic(&Producer::on(&config.kafka), &config, id, from, to, amount).await;
        let server = spawn(&config).await;
        counted(&stack, id, to, 1 + epochs as u64 / 2 + 1).await;
        epochs += 2.0;
        let metrics = server.metrics().await;
        assert_eq!(
            metric(&metrics, "aggregator_topic_epochs_total"),
            epochs,
            "one new epoch in the clicks partition and one in the conversions partition \
             per restart, no more: {metrics}"
        );
        server.stop().await.unwrap();
    }

    // Once more, to catch anything counted twice: a restart on the same log changes nothing.
    let server = spawn(&config).await;
    let producer = Producer::on(&config.kafka);
    traffic(&producer, &config, id, 1_000, 1_001, "10.00").await;
    counted(&stack, id, 1_001, 4).await;
    let stats = rollup(&stack, id).await;
    assert_eq!(
        (stats.raw_clicks, stats.valid_clicks, stats.purchases),
        (1_001, 1_001, 4)
    );
    // 10 % of 100 + 50 + 20 + 10.
    assert_eq!(earned(&stack, id).await, Decimal::new(1800, 2));
    let metrics = server.metrics().await;
    assert_eq!(metric(&metrics, "aggregator_topic_epochs_total"), epochs);
    server.stop().await.unwrap();
}
