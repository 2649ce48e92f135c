//! One smoke test per dependency of the local stack, through the same crates and
//! settings the services use.

use std::time::Duration;

use futures::StreamExt;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use reftrack_testkit::TestStack;

fn consumer(stack: &TestStack, group: &str) -> StreamConsumer {
    stack
        .kafka_client_config()
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("create consumer")
}

/// Reads `n` messages' payloads from `consumer`, committing after each one.
async fn read_and_commit(consumer: &StreamConsumer, n: usize) -> Vec<String> {
    let mut stream = consumer.stream();
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while seen.len() < n {
        let message = match tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("the messages within 60s")
            .expect("stream open")
        {
            Ok(message) => message,
            // A group still forming answers with transient errors: read on.
            Err(error) => {
                eprintln!("reading: {error}; reading on");
                continue;
            }
        };
        seen.push(String::from_utf8(message.payload().unwrap().to_vec()).unwrap());
        consumer
            .commit_message(&message, CommitMode::Sync)
            .expect("commit offset");
    }
    seen
}

#[tokio::test]
async fn tansu_serves_an_idempotent_producer_and_a_consumer_group_with_committed_offsets() {
    let stack = TestStack::new().await.unwrap();
    let topic = stack.kafka.clicks_topic.clone();
    let producer: FutureProducer = reftrack_events::kafka::producer_config(&stack.kafka)
        .create()
        .unwrap();
    for i in 0..10 {
        let payload = format!("m{i}");
        producer
            .send(
                FutureRecord::to(&topic).key("same-key").payload(&payload),
                Duration::from_secs(10),
            )
            .await
            .expect("acknowledged by the broker");
    }

    let group = format!("{}_group", stack.id);
    let first = consumer(&stack, &group);
    first.subscribe(&[&topic]).unwrap();
    let seen = read_and_commit(&first, 6).await;
    assert_eq!(seen, (0..6).map(|i| format!("m{i}")).collect::<Vec<_>>());
    drop(first);

    // A new member of the group resumes after the committed offset.
    let second = consumer(&stack, &group);
    second.subscribe(&[&topic]).unwrap();
    let rest = read_and_commit(&second, 4).await;
    assert_eq!(rest, (6..10).map(|i| format!("m{i}")).collect::<Vec<_>>());

    let mut partitions = TopicPartitionList::new();
    for p in 0..stack.kafka.partitions {
        partitions.add_partition(&topic, p);
    }
    let committed = second
        .committed_offsets(partitions, Duration::from_secs(10))
        .unwrap();
    let total: i64 = committed
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => o,
            _ => 0,
        })
        .sum();
    assert_eq!(
        total, 10,
        "the group's committed offsets cover all ten messages"
    );
}

#[derive(Debug, clickhouse::Row, serde::Serialize, serde::Deserialize, PartialEq)]
struct Probe {
    id: u64,
    name: String,
}

#[tokio::test]
async fn clickhouse_insert_and_select_through_the_crate() {
    let stack = TestStack::new().await.unwrap();
    let client = stack.clickhouse_client();
    client
        .query("CREATE TABLE probe (id UInt64, name String) ENGINE = MergeTree ORDER BY id")
        .execute()
        .await
        .unwrap();
    let mut insert = client.insert::<Probe>("probe").await.unwrap();
    for id in 0..1000u64 {
        insert
            .write(&Probe {
                id,
                name: format!("n{id}"),
            })
            .await
            .unwrap();
    }
    insert.end().await.unwrap();
    let rows = client
        .query("SELECT ?fields FROM probe WHERE id >= ? ORDER BY id")
        .bind(998)
        .fetch_all::<Probe>()
        .await
        .unwrap();
    assert_eq!(
        rows,
        vec![
            Probe {
                id: 998,
                name: "n998".into()
            },
            Probe {
                id: 999,
                name: "n999".into()
            }
        ]
    );
    let tables: Vec<String> = client
        .query("SELECT name FROM system.tables WHERE database = ? ORDER BY name")
        .bind(&stack.id)
        .fetch_all()
        .await
        .unwrap();
    for table in [
        "clicks_raw",
        "clicks_daily",
        "clicks_lifetime",
        "conversions_raw",
        "conversions_daily",
        "conversions_lifetime",
        "sink_offsets",
    ] {
        assert!(
            tables.iter().any(|t| t == table),
            "{table} missing from {tables:?}"
        );
    }
}

#[tokio::test]
async fn postgres_migrations_are_applied_once_and_idempotently() {
    let stack = TestStack::new().await.unwrap();
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&stack.pool)
        .await
        .unwrap();
    assert_eq!(
        applied as usize,
        reftrack_store::postgres::MIGRATOR.iter().count()
    );
    // A second run (another service starting) changes nothing.
    reftrack_store::postgres::migrate(&stack.pool)
        .await
        .unwrap();

    let id: i64 = sqlx::query_scalar(
        "INSERT INTO affiliates (referral_code, commission_rate, min_withdrawal_balance) VALUES ('SMOKE1', 12.5, 20) RETURNING id",
    )
    .fetch_one(&stack.pool)
    .await
    .unwrap();
    let (totals, rates): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM affiliate_totals WHERE affiliate_id = $1), (SELECT count(*) FROM affiliate_terms_history WHERE affiliate_id = $1)",
    )
    .bind(id)
    .fetch_one(&stack.pool)
    .await
    .unwrap();
    assert_eq!(
        (totals, rates),
        (1, 1),
        "triggers create the totals row and the first rate"
    );
    let us: String = sqlx::query_scalar("SELECT name FROM countries WHERE id = 233")
        .fetch_one(&stack.pool)
        .await
        .unwrap();
    assert_eq!(us, "United States");
}

#[tokio::test]
async fn redis_set_and_get_under_the_test_prefix() {
    let stack = TestStack::new().await.unwrap();
    let mut redis = stack.redis_connection().await.unwrap();
    let key = format!("{}smoke", stack.redis.key_prefix);
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("hello")
        .arg("EX")
        .arg(60)
        .query_async(&mut redis)
        .await
        .unwrap();
    let value: String = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(value, "hello");
}
