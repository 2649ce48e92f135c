//! Parked events that come back: a refund read before its purchase waits for it, and an
//! operator re-drives what was parked once its cause is fixed.

use reftrack_testkit::TestStack;
use serde_json::json;

use crate::{Producer, affiliate, config, conversion, drained, rollup, spawn};

fn event(body: &serde_json::Value) -> (String, Vec<u8>) {
    let now = chrono::Utc::now();
    let mut base = json!({"user_id": 7, "referral_code": "HOLD", "method": "link",
                          "currency": "USD", "occurred_at": now, "received_at": now});
    for (k, v) in body.as_object().unwrap() {
        base[k] = v.clone();
    }
    conversion(base)
}

/// Affiliate HOLD, deactivated: its conversions are parked.
async fn inactive_affiliate(stack: &TestStack) -> i64 {
    let id = affiliate(stack, "HOLD", "10").await;
    sqlx::query("UPDATE affiliates SET active = false WHERE id = $1")
        .bind(id)
        .execute(&stack.pool)
        .await
        .unwrap();
    id
}

async fn totals(stack: &TestStack, id: i64) -> (String, String) {
    sqlx::query_as(
        "SELECT earned::text, reversed::text FROM affiliate_totals WHERE affiliate_id = $1",
    )
    .bind(id)
    .fetch_one(&stack.pool)
    .await
    .unwrap()
}

async fn parked(stack: &TestStack) -> Vec<(String, Option<String>, Option<String>)> {
    sqlx::query_as(
        "SELECT event_id, reason, resolution FROM (
             SELECT event_id, CASE WHEN resolved_at IS NULL THEN reason END AS reason, resolution,
                    kafka_partition, kafka_offset
             FROM parked_events) p
         ORDER BY event_id, kafka_partition, kafka_offset",
    )
    .fetch_all(&stack.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_refund_read_before_its_purchase_waits_and_is_applied_with_it() {
    let stack = TestStack::new().await.unwrap();
    let id = affiliate(&stack, "HOLD", "10").await;
    let server = spawn(&config(&stack)).await;
    let producer = Producer::new(&stack);
    let topic = &stack.kafka.conversions_topic;
    let home = producer.partition_of("HOLD");
    let elsewhere = (home + 1) % stack.kafka.partitions;

    // The refund comes first, on another partition (as a purchase retried after a 503
    // would leave it): it waits.
    let (key, refund) = event(
        &json!({"event_id": "r-1", "type": "refund", "amount": "40.00",
                                     "original_event_id": "p-1"}),
    );
    producer.send_to(topic, elsewhere, &key, &refund).await;
    drained(&stack, &producer.ends()).await;
    assert_eq!(
        parked(&stack).await,
        vec![(
            "r-1".into(),
            Some("refund waiting for its purchase".into()),
            None
        )]
    );
    assert_eq!(totals(&stack, id).await, ("0.00".into(), "0.00".into()));

    // Its purchase arrives: both are applied, in both stores, and the refund is resolved.
    for (key, payload) in [
        event(&json!({"event_id": "s-1", "type": "signup"})),
        event(&json!({"event_id": "p-1", "type": "purchase", "amount": "100.00"})),
    ] {
        producer.send_to(topic, home, &key, &payload).await;
    }
    drained(&stack, &producer.ends()).await;
    assert_eq!(totals(&stack, id).await, ("10.00".into(), "4.00".into()));
    assert_eq!(
        parked(&stack).await,
        vec![("r-1".into(), None, Some("applied".into()))]
    );
    let stats = rollup(&stack, id).await;
    assert_eq!(
        (stats.purchases, stats.refunds, stats.refunded_cents),
        (1, 1, 4000)
    );
    assert_eq!((stats.commission_cents, stats.reversed_cents), (1000, 400));

    // A later copy of the refund changes nothing (its event id was applied).
    producer.send_to(topic, elsewhere, &key, &refund).await;
    drained(&stack, &producer.ends()).await;
    assert_eq!(totals(&stack, id).await, ("10.00".into(), "4.00".into()));
    assert_eq!(rollup(&stack, id).await.refunds, 1);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn parked_conversions_are_listed_and_re_driven_once_their_cause_is_fixed() {
    let stack = TestStack::new().await.unwrap();
    let id = inactive_affiliate(&stack).await;
    let config = config(&stack);
    let server = spawn(&config).await;
    let producer = Producer::new(&stack);
    let topic = &stack.kafka.conversions_topic;
    for (key, payload) in [
        event(&json!({"event_id": "s-1", "type": "signup"})),
        event(&json!({"event_id": "p-1", "type": "purchase", "amount": "50.00"})),
    ] {
        producer.send(topic, &key, &payload).await;
    }
    producer.send(topic, "HOLD", b"not an event").await;
    drained(&stack, &producer.ends()).await;

    let pool = &stack.pool;
    let listed = aggregator::cli::list(pool, None, false, 100).await.unwrap();
    let reasons: Vec<(Option<&str>, &str)> = listed
        .iter()
        .map(|r| (r.event_id.as_deref(), r.reason.as_str()))
        .collect();
    assert_eq!(
        reasons,
        vec![
            (Some("s-1"), "affiliate not active"),
            (Some("p-1"), "affiliate not active"),
            (None, "undecodable"),
        ]
    );
    let line = listed[0].to_string();
    assert!(
        line.starts_with(&format!("{topic}\t")) && line.ends_with("\ts-1\taffiliate not active"),
        "{line}"
    );

    // The cause is fixed; the inactive ones are re-driven (the undecodable one cannot be).
    sqlx::query("UPDATE affiliates SET active = true WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await
        .unwrap();
    let rows = aggregator::cli::redrivable(pool, topic, Some("affiliate not active"), &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    let kafka = reftrack_events::kafka::producer_config(&stack.kafka)
        .create()
        .unwrap();
    let sent = aggregator::cli::redrive(pool, &kafka, topic, &rows)
        .await
        .unwrap();
    assert_eq!(sent, 2);
    // Re-driving again finds nothing left, and a re-sent copy would count once anyway.
    assert!(
        aggregator::cli::redrivable(pool, topic, Some("affiliate not active"), &[])
            .await
            .unwrap()
            .is_empty()
    );

    reftrack_testkit::wait::until(
        std::time::Duration::from_secs(60),
        "the re-driven purchase is applied in both stores",
        // Postgres commits before ClickHouse has the rows: wait for both.
        || async {
            totals(&stack, id).await.0 == "5.00" && rollup(&stack, id).await.purchases == 1
        },
    )
    .await
    .unwrap();
    let stats = rollup(&stack, id).await;
    assert_eq!(
        (stats.signups, stats.purchases, stats.commission_cents),
        (1, 1, 500)
    );
    let still: Vec<_> = aggregator::cli::list(pool, None, false, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.reason)
        .collect();
    assert_eq!(still, vec!["undecodable".to_string()]);
    server.stop().await.unwrap();
}

#[test]
fn the_redrive_command_needs_a_reason_or_event_ids() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_aggregator"))
        .args(["parked", "redrive"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("--reason"), "{stderr}");
}

#[tokio::test]
async fn the_running_aggregator_re_drives_what_the_console_asked_for() {
    let stack = TestStack::new().await.unwrap();
    let id = inactive_affiliate(&stack).await;
    let server = spawn(&config(&stack)).await;
    let producer = Producer::new(&stack);
    let topic = &stack.kafka.conversions_topic;
    for (key, payload) in [
        event(&json!({"event_id": "s-9", "type": "signup"})),
        event(&json!({"event_id": "p-9", "type": "purchase", "amount": "70.00"})),
    ] {
        producer.send(topic, &key, &payload).await;
    }
    drained(&stack, &producer.ends()).await;
    assert_eq!(parked(&stack).await.len(), 2);

    // The cause is fixed, and an admin asks the console to re-drive (what it writes).
    sqlx::query("UPDATE affiliates SET active = true WHERE id = $1")
        .bind(id)
        .execute(&stack.pool)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE parked_events SET redrive_requested_at = now(), redrive_requested_by = 'admin@example.com'
         WHERE reason = 'affiliate not active'",
    )
    .execute(&stack.pool)
    .await
    .unwrap();
    reftrack_testkit::wait::until(
        std::time::Duration::from_secs(60),
        "the requested events are re-driven and applied",
        || async { totals(&stack, id).await.0 == "7.00" },
    )
    .await
    .unwrap();
    assert_eq!(
        parked(&stack).await,
        vec![
            ("p-9".into(), None, Some("redriven".into())),
            ("s-9".into(), None, Some("redriven".into())),
        ]
    );
    server.stop().await.unwrap();
}
