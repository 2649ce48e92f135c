//! The performance endpoint against hand-computed values, and its cache.

use reftrack_store::api_keys::Scope;
use reftrack_testkit::TestStack;
use serde_json::json;

use crate::{Client, config, key};

/// Clicks (`n`, from `visitors` distinct visitors) and purchases at `day` noon, straight
/// into the raw tables, so the rollups are filled as the aggregator would fill them.
async fn activity(
    stack: &TestStack,
    affiliate: i64,
    day: &str,
    clicks: u64,
    visitors: u64,
    purchases: u64,
    commission_cents: i64,
) {
    let ch = stack.clickhouse_client();
    ch.query(&format!(
        "INSERT INTO clicks_raw (event_id, kafka_topic, kafka_partition, kafka_offset, received_at, received_at_ms, affiliate_id,
                                 code, visitor, user_agent, referer, method, country, verdict)
         SELECT generateUUIDv4(), 'test', 0, number, toDateTime('{day} 12:00:00'), 0, {affiliate}, 'X', number % {visitors},
                '', '', 'GET', '', 'valid'
         FROM numbers({clicks})"
    ))
    .execute()
    .await
    .unwrap();
    // ClickHouse 18.16 reads numbers(0) as "without end".
    if purchases == 0 {
        return;
    }
    ch.query(&format!(
        "INSERT INTO conversions_raw (event_id, kafka_topic, kafka_partition, kafka_offset, kind, verdict, affiliate_id, code,
                                      user_id, amount_cents, commission_amount_cents, occurred_at, received_at)
         SELECT toString(generateUUIDv4()), 'test', 0, number, 'purchase', 'valid', {affiliate}, 'X', number, 10000,
                {commission_cents}, toDateTime('{day} 12:00:00'), toDateTime('{day} 12:00:00')
         FROM numbers({purchases})"
    ))
    .execute()
    .await
    .unwrap();
}

#[tokio::test]
async fn performance_and_trends_match_hand_computed_values() {
    let stack = TestStack::new().await.unwrap();
    let mut config = config(&stack);
    config.stats_cache_secs = 0;
    let client = Client::new(&config).await;
    let admin = key(&stack, &[Scope::Admin]).await;
    let (_, created) = client
        .create_affiliate(&admin, json!({"name": "Perf", "email": "perf@example.com"}))
        .await;
    let id = created["data"]["id"].as_i64().unwrap();
    // The week asked for, and the week before it (the comparison period).
    activity(&stack, id, "2024-03-10", 115, 100, 8, 1525).await;
    activity(&stack, id, "2024-03-03", 100, 80, 10, 1000).await;
    // Outside both periods: ignored.
    activity(&stack, id, "2024-02-01", 999, 999, 99, 99_999).await;

    let week = "date_from=2024-03-08&date_to=2024-03-14";
    let (status, answer) = client.performance(&admin, id, week).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer,
        json!({"success": true, "data": {
            "affiliate_id": id,
            "period": {"start_date": "2024-03-08", "end_date": "2024-03-14"},
            // 8 purchases of 100.00 at 15.25 commission each; 8 per 100 unique clicks.
            "metrics": {"total_clicks": 115, "unique_clicks": 100, "conversions": 8, "conversion_rate": 8.0,
                        "total_sales": 800, "total_commissions": 122, "average_order_value": 100},
            // 115 vs 100 clicks; 8 vs 10 purchases; 122.00 vs 100.00 commission.
            "trending": {"clicks_trend": "+15%", "conversion_trend": "-20%", "commission_trend": "+22%"}
        }})
    );
}

#[tokio::test]
async fn stats_answers_are_cached_briefly() {
    let stack = TestStack::new().await.unwrap();
    let mut config = config(&stack);
    config.stats_cache_secs = 60;
    let client = Client::new(&config).await;
    let admin = key(&stack, &[Scope::Admin]).await;
    let (_, created) = client
        .create_affiliate(
            &admin,
            json!({"name": "Cache", "email": "cache@example.com"}),
        )
        .await;
    let id = created["data"]["id"].as_i64().unwrap();
    let week = "date_from=2024-03-08&date_to=2024-03-14";
    activity(&stack, id, "2024-03-10", 10, 10, 0, 0).await;
    let (_, first) = client.performance(&admin, id, week).await;
    activity(&stack, id, "2024-03-10", 10, 10, 0, 0).await;
    let (_, second) = client.performance(&admin, id, week).await;
    assert_eq!(first["data"]["metrics"]["total_clicks"], 10);
    assert_eq!(second, first, "served from the cache");
    let other = "date_from=2024-03-09&date_to=2024-03-14";
    let (_, fresh) = client.performance(&admin, id, other).await;
    assert_eq!(fresh["data"]["metrics"]["total_clicks"], 20);
}
