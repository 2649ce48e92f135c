//! aggregator's integration tests, against the real local stack.

mod crash;
mod epochs;
mod ops;
mod outage;
mod parked;
mod pipeline;
mod privacy;

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::Parser;
use rdkafka::producer::{FutureProducer, FutureRecord};
use reftrack_events::{ClickEvent, ClickMethod, ClickVerdict, ConversionEvent};
use reftrack_store::stats::{self, Stats};
use reftrack_testkit::{Served, TestStack, serve, wait};

pub fn config(stack: &TestStack) -> aggregator::Config {
    let mut config = aggregator::Config::try_parse_from(["aggregator"]).expect("defaults parse");
    config.common = stack.common();
    config.postgres = stack.postgres.clone();
    config.kafka = stack.kafka.clone();
    config.clickhouse = stack.clickhouse.clone();
    config.batch_max_wait_ms = 100;
    config.batch_max_events = 5_000;
    config
}

pub async fn spawn(config: &aggregator::Config) -> Served {
    let app = aggregator::App::build(config)
        .await
        .expect("aggregator starts");
    serve(move |listener, shutdown| app.serve(listener, shutdown)).await
}

/// An approved affiliate with `code` and `rate` percent; returns its id.
pub async fn affiliate(stack: &TestStack, code: &str, rate: &str) -> i64 {
    reftrack_testkit::fixtures::affiliate(&stack.pool, code, rate).await
}

/// Produces test events and counts them per partition: the test knows every topic's end
/// without asking the broker (tansu 0.6 reports wrong high watermarks).
pub struct Producer {
    producer: FutureProducer,
    stack_partitions: i32,
    ends: Mutex<Ends>,
}

/// (topic, partition) → next offset, counted by the test as it produces.
pub type Ends = HashMap<(String, i32), i64>;

impl Producer {
    pub fn new(stack: &TestStack) -> Self {
        Self::on(&stack.kafka)
    }

    pub fn on(kafka: &reftrack_events::kafka::KafkaConfig) -> Self {
        Self {
            producer: reftrack_events::kafka::producer_config(kafka)
                .create()
                .unwrap(),
            stack_partitions: kafka.partitions,
            ends: Mutex::default(),
        }
    }

    pub fn ends(&self) -> Ends {
        self.ends.lock().unwrap().clone()
    }

    /// The partition a code's events go to (all of one code's events in one partition).
    pub fn partition_of(&self, code: &str) -> i32 {
        reftrack_testkit::kafka::partition_of(code, self.stack_partitions)
    }

    pub async fn send(&self, topic: &str, key: &str, payload: &[u8]) {
        self.send_to(topic, self.partition_of(key), key, payload)
            .await;
    }

    pub async fn send_to(&self, topic: &str, partition: i32, key: &str, payload: &[u8]) {
        let record = FutureRecord::to(topic)
            .key(key)
            .payload(payload)
            .partition(partition);
        self.deliver(topic, partition, record).await;
    }

    /// As ingest sends a click again from its spill.
    pub async fn send_resent(&self, topic: &str, key: &str, payload: &[u8]) {
        let partition = self.partition_of(key);
        let record = FutureRecord::to(topic)
            .key(key)
            .payload(payload)
            .partition(partition)
            .headers(
                rdkafka::message::OwnedHeaders::new().insert(rdkafka::message::Header {
                    key: reftrack_events::kafka::RESENT_HEADER,
                    value: Some("1"),
                }),
            );
        self.deliver(topic, partition, record).await;
    }

    /// A valid click on `code` (of `affiliate`), now, from each visitor in `visitors`.
    pub async fn send_valid_clicks(
        &self,
        topic: &str,
        code: &str,
        affiliate: i64,
        visitors: Range<u64>,
    ) {
        for visitor in visitors {
            let payload = click(
                code,
                Some(affiliate),
                visitor,
                Utc::now(),
                ClickVerdict::Valid,
            );
            self.send(topic, code, &payload).await;
        }
    }

    async fn deliver(&self, topic: &str, partition: i32, record: FutureRecord<'_, str, [u8]>) {
        self.producer
            .send(record, Duration::from_secs(30))
            .await
            .expect("the broker takes the event");
        *self
            .ends
            .lock()
            .unwrap()
            .entry((topic.to_string(), partition))
            .or_default() += 1;
    }
}

/// A click as ingest would produce it.
pub fn click(
    code: &str,
    affiliate: Option<i64>,
    visitor: u64,
    at: DateTime<Utc>,
    verdict: ClickVerdict,
) -> Vec<u8> {
    ClickEvent {
        event_id: uuid::Uuid::now_v7(),
        code: code.into(),
        affiliate_id: affiliate,
        received_at_ms: at.timestamp_millis(),
        visitor,
        user_agent: "Mozilla/5.0".into(),
        referer: None,
        method: ClickMethod::Get,
        country: Some("DE".into()),
        verdict,
    }
    .encode()
}

pub fn conversion(json: serde_json::Value) -> (String, Vec<u8>) {
    let event: ConversionEvent = serde_json::from_value(json).expect("a valid test conversion");
    (event.referral_code.clone(), event.encode())
}

/// Waits until both sinks hold every message produced (`ends`).
pub async fn drained(stack: &TestStack, ends: &Ends) {
    wait::until(
        Duration::from_secs(180),
        "the aggregator drained",
        || async { behind(stack, ends).await == 0 },
    )
    .await
    .unwrap();
}

/// How many produced messages some sink does not hold yet.
pub async fn behind(stack: &TestStack, ends: &Ends) -> i64 {
    let pg: Vec<(String, i32, i64)> =
        sqlx::query_as("SELECT topic, kafka_partition, next_offset FROM consumer_offsets")
            .fetch_all(&stack.pool)
            .await
            .unwrap();
    let ch: Vec<(String, u16, u64)> = stack
        .clickhouse_client()
        .query("SELECT topic, kafka_partition, maxMerge(next_offset) FROM sink_offsets GROUP BY topic, kafka_partition")
        .fetch_all()
        .await
        .unwrap();
    ends.iter()
        .map(|((topic, partition), end)| {
            let at_pg = pg
                .iter()
                .find(|(t, p, _)| t == topic && p == partition)
                .map_or(0, |r| r.2);
            let at_ch = ch
                .iter()
                .find(|(t, p, _)| t == topic && i32::from(*p) == *partition)
                .map_or(0, |r| r.2 as i64);
            end - at_pg.min(at_ch)
        })
        .sum()
}

/// The affiliate's linkClicked count, as Postgres holds it.
pub async fn link_clicked(stack: &TestStack, affiliate: i64) -> i64 {
    sqlx::query_scalar("SELECT link_clicked FROM affiliate_totals WHERE affiliate_id = $1")
        .bind(affiliate)
        .fetch_one(&stack.pool)
        .await
        .unwrap()
}

/// Rollup stats of one affiliate, over two days either side of today.
pub async fn rollup(stack: &TestStack, affiliate: i64) -> Stats {
    let today = Utc::now().date_naive();
    stats::days(
        &stack.clickhouse_client(),
        affiliate,
        today - chrono::Days::new(2),
        today + chrono::Days::new(2),
    )
    .await
    .unwrap()
}
