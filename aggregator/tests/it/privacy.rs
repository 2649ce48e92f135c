//! Personal data kept no longer than needed: expired raw clicks purged, a referred user's
//! email erased from every place the pipeline put it.

use chrono::{TimeZone, Utc};
use reftrack_testkit::TestStack;
use serde_json::json;

use crate::{Producer, affiliate, config, conversion, drained, spawn};

#[tokio::test]
async fn expired_raw_clicks_are_purged_and_the_rollups_stay() {
    let stack = TestStack::new().await.unwrap();
    let client = stack.clickhouse_client();
    // Clicks in three months: two before the cutoff's month, and either side of the cutoff.
    let rows = [
        ("2026-01-15 10:00:00", 1),
        ("2026-02-03 10:00:00", 2),
        ("2026-03-09 10:00:00", 3),
        ("2026-03-20 10:00:00", 4),
    ];
    let values: Vec<String> = rows
        .iter()
        .map(|(at, i)| {
            format!("('00000000-0000-4000-8000-{i:012}', 'clicks', 0, {i}, '{at}', 0, 7, 'C7', {i}, 'ua', '', 'GET', 'DE', 'valid')")
        })
        .collect();
    client
        .query(&format!(
            "INSERT INTO clicks_raw (event_id, kafka_topic, kafka_partition, kafka_offset, received_at, received_at_ms, affiliate_id, code, visitor, user_agent, referer, method, country, verdict) VALUES {}",
            values.join(", ")
        ))
        .execute()
        .await
        .unwrap();
    let cutoff = Utc.with_ymd_and_hms(2026, 3, 15, 0, 0, 0).unwrap();
    let purged = aggregator::privacy::purge_clicks(&client, &stack.clickhouse.database, cutoff)
        .await
        .unwrap();
    assert_eq!(purged.partitions, ["202601", "202602"]);
    assert!(purged.deleted_in_cutoff_month);
    // The mutation runs in the background; wait for it.
    let left = reftrack_testkit::wait::until(
        std::time::Duration::from_secs(30),
        "the cutoff month's old rows deleted",
        || async {
            let n: u64 = client
                .query("SELECT count() FROM clicks_raw")
                .fetch_one()
                .await
                .unwrap();
            n == 1
        },
    )
    .await;
    assert!(left.is_ok());
    let kept: u64 = client
        .query("SELECT visitor FROM clicks_raw")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(kept, 4, "the click after the cutoff is kept");
    let counted: u64 = client
        .query("SELECT sumMerge(raw_clicks) FROM clicks_lifetime WHERE affiliate_id = 7")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(counted, 4, "the stats still count every click");
    // Nothing left to purge: a second run changes nothing.
    let again = aggregator::privacy::purge_clicks(&client, &stack.clickhouse.database, cutoff)
        .await
        .unwrap();
    assert_eq!(again, Default::default());
}

/// Rows of every table of the test's schema whose text contains `needle`.
async fn rows_containing(stack: &TestStack, needle: &str) -> Vec<String> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables
         WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'",
    )
    .fetch_all(&stack.pool)
    .await
    .unwrap();
    let mut found = Vec::new();
    for table in tables {
        let n: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM {table} t WHERE t::text ILIKE '%' || $1 || '%'"
        ))
        .bind(needle)
        .fetch_one(&stack.pool)
        .await
        .unwrap();
        if n > 0 {
            found.push(format!("{table}: {n}"));
        }
    }
    // Byte payloads print as hex in a row's text: read them as text too.
    let parked: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM parked_events WHERE convert_from(payload, 'UTF8') ILIKE '%' || $1 || '%'",
    )
    .bind(needle)
    .fetch_one(&stack.pool)
    .await
    .unwrap();
    if parked > 0 {
        found.push(format!("parked_events payload: {parked}"));
    }
    found
}

#[tokio::test]
async fn erasing_a_referred_user_leaves_their_email_nowhere() {
    let stack = TestStack::new().await.unwrap();
    affiliate(&stack, "PRIV", "10").await;
    let server = spawn(&config(&stack)).await;
    let producer = Producer::new(&stack);
    let topic = &stack.kafka.conversions_topic;
    let now = Utc::now();
    let events = [
        json!({"event_id": "e-s", "type": "signup", "user_id": 41, "email": "Erin.Secret@example.com"}),
        json!({"event_id": "e-p", "type": "purchase", "user_id": 41, "amount": "80.00", "currency": "USD"}),
        // Parked: a refund of a purchase never seen, carrying the email too.
        json!({"event_id": "e-r", "type": "refund", "user_id": 41, "email": "erin.secret@example.com",
               "amount": "5.00", "currency": "USD", "original_event_id": "nope"}),
        json!({"event_id": "o-s", "type": "signup", "user_id": 42, "email": "other@example.com"}),
    ];
    for body in events {
        let mut event = json!({"referral_code": "PRIV", "method": "link", "occurred_at": now, "received_at": now});
        for (k, v) in body.as_object().unwrap() {
            event[k] = v.clone();
        }
        let (key, payload) = conversion(event);
        producer.send(topic, &key, &payload).await;
    }
    drained(&stack, &producer.ends()).await;
    let before = rows_containing(&stack, "erin.secret@example.com").await;
    assert!(
        before.iter().any(|t| t.starts_with("referrals"))
            && before.iter().any(|t| t.starts_with("webhook_events"))
            && before.iter().any(|t| t.starts_with("parked_events")),
        "the email went to the referral, a webhook event and a parked event: {before:?}"
    );

    let erased = aggregator::privacy::erase_user(&stack.pool, 41)
        .await
        .unwrap();
    assert_eq!(
        (
            erased.referrals,
            erased.webhook_events,
            erased.parked_events
        ),
        (1, 1, 1)
    );
    assert_eq!(
        rows_containing(&stack, "erin.secret@example.com").await,
        Vec::<String>::new()
    );
    assert!(
        !rows_containing(&stack, "other@example.com")
            .await
            .is_empty(),
        "only that user is erased"
    );
    // The money stays exact: the ledger keeps the purchase's commission.
    let earned: String = sqlx::query_scalar("SELECT earned::text FROM affiliate_totals t JOIN affiliates a ON a.id = t.affiliate_id WHERE a.referral_code = 'PRIV'")
        .fetch_one(&stack.pool)
        .await
        .unwrap();
    assert_eq!(earned, "8.00");
    server.stop().await.unwrap();
}
