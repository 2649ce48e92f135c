//! Balances, withdrawals and payouts: exact, idempotent, safe under concurrency.

use chrono::{Datelike, Duration, Utc};
use futures::future::join_all;
use reftrack_store::api_keys::Scope;
use reftrack_testkit::TestStack;
use serde_json::{Value, json};

use crate::{Client, config, key, token};

/// A promoter for `user`, with a payout method; returns its affiliate id.
async fn promoter(client: &Client, user: i64) -> i64 {
    let me = token(user);
    let (_, p) = client.promoter(&me).await;
    let body = json!({"method": "paypal", "payment_address": "me@example.com"});
    client.set_payout_method(&me, body).await;
    p["id"].as_i64().unwrap()
}

/// Commission as the aggregator records it: a referral, a purchase, a ledger entry and
/// the totals, consistent with each other.
pub(crate) async fn earn(
    stack: &TestStack,
    affiliate: i64,
    amount: &str,
    days_ago: i64,
    event: &str,
) {
    let at = Utc::now() - Duration::days(days_ago);
    let mut tx = stack.pool.begin().await.unwrap();
    let user: i64 = sqlx::query_scalar("SELECT 100000 + count(*) FROM referrals")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    let referral: i64 = sqlx::query_scalar(
        "INSERT INTO referrals (affiliate_id, user_id, status, invitation_method, commission_rate, commission_amount,
                                commission_status, first_event_id, created_at)
         VALUES ($1, $2, 'converted', 'link', 10, $3::numeric, 'earned', $4, $5) RETURNING id",
    )
    .bind(affiliate)
    .bind(user)
    .bind(amount)
    .bind(event)
    .bind(at)
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO conversions (event_id, kind, affiliate_id, referral_id, user_id, amount, commission, rate, occurred_at,
                                  received_at, kafka_partition, kafka_offset)
         VALUES ($1, 'purchase', $2, $3, $4, $5::numeric * 10, $5::numeric, 10, $6, $6, 0, 0)",
    )
    .bind(event)
    .bind(affiliate)
    .bind(referral)
    .bind(user)
    .bind(amount)
    .bind(at)
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO ledger_entries (affiliate_id, kind, amount, rate, conversion_event_id, occurred_at, available_at)
         VALUES ($1, 'earned', $2::numeric, 10, $3, $4, $4)",
    )
    .bind(affiliate)
    .bind(amount)
    .bind(event)
    .bind(at)
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query(
        "UPDATE affiliate_totals SET earned = earned + $2::numeric WHERE affiliate_id = $1",
    )
    .bind(affiliate)
    .bind(amount)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn fifty_concurrent_withdrawals_of_the_whole_balance_make_one_payout() {
    let stack = TestStack::new().await.unwrap();
    let client = Client::new(&config(&stack)).await;
    let id = promoter(&client, 10).await;
    earn(&stack, id, "100.00", 1, "p-10").await;
    let me = token(10);
    let calls = (0..50).map(|_| client.withdraw(&me));
    let answers = join_all(calls).await;
    let created: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s == 201)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(created.len(), 1, "{answers:?}");
    assert_eq!(created[0]["amount"], 100.0);
    assert!(
        answers.iter().all(|(s, _)| *s == 201 || *s == 400),
        "{answers:?}"
    );
    let refused = answers.iter().find(|(s, _)| *s == 400).unwrap();
    assert!(
        refused.1["non_field_errors"][0]
            .as_str()
            .unwrap()
            .contains("below your minimum"),
        "{}",
        refused.1
    );

    let (payouts, pending): (i64, rust_decimal::Decimal) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM payouts WHERE affiliate_id = $1), (SELECT pending_payouts FROM affiliate_totals WHERE affiliate_id = $1)",
    )
    .bind(id)
    .fetch_one(&stack.pool)
    .await
    .unwrap();
    assert_eq!((payouts, pending.to_string()), (1, "100.00".to_string()));
    let (_, promoter) = client.promoter(&me).await;
    assert_eq!(
        (
            promoter["currentBalance"].as_f64(),
            promoter["totalEarned"].as_f64()
        ),
        (Some(0.0), Some(100.0))
    );
}

#[tokio::test]
async fn a_repeated_idempotency_key_answers_with_the_same_payout() {
    let stack = TestStack::new().await.unwrap();
    let client = Client::new(&config(&stack)).await;
    let id = promoter(&client, 11).await;
    earn(&stack, id, "60.00", 1, "p-11").await;
    let send = |key: &'static str| {
        client
            .http
            .post(client.server.url("/referrals/withdraw/"))
            .bearer_auth(token(11))
            .header("Idempotency-Key", key)
            .send()
    };
    let first = send("order-abc").await.unwrap();
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    let again = send("order-abc").await.unwrap();
    assert_eq!(again.status(), 201);
    assert_eq!(
        again.json::<Value>().await.unwrap(),
        first,
        "the same response"
    );

    earn(&stack, id, "25.00", 0, "p-11b").await;
    let answers = join_all((0..10).map(|_| send("order-xyz"))).await;
    let ids: Vec<Value> = join_all(
        answers
            .into_iter()
            .map(|r| async { r.unwrap().json::<Value>().await.unwrap()["id"].clone() }),
    )
    .await;
    assert!(
        ids.iter().all(|i| *i == ids[0] && *i != first["id"]),
        "{ids:?}"
    );
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM payouts WHERE affiliate_id = $1")
        .bind(id)
        .fetch_one(&stack.pool)
        .await
        .unwrap();
    assert_eq!(count, 2);
}

#[tokio::test]
async fn paying_a_payout_debits_the_ledger_and_cancelling_returns_the_balance() {
    let stack = TestStack::new().await.unwrap();
    // Withdrawals right after setting the address are not held for review here.
    let mut config = config(&stack);
    config.promoters.payout_review_hours = 0;
    let client = Client::new(&config).await;
    let admin = key(&stack, &[Scope::Admin]).await;
    let id = promoter(&client, 12).await;
    let me = token(12);
    earn(&stack, id, "40.00", 2, "p-12").await;
    let (_, paid) = client.withdraw(&me).await;
    earn(&stack, id, "30.00", 1, "p-12b").await;
    let (_, cancelled) = client.withdraw(&me).await;

    let (status, listed) = client.list_payouts(&admin, "status=pending").await;
    assert_eq!(
        (status, listed["data"]["pagination"]["total_count"].as_i64()),
        (200, Some(2))
    );
    let (status, answer) = client.payout_action(&admin, &paid["id"], "mark-paid").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        (
            answer["data"]["status"].as_str(),
            answer["data"]["paid_by"].as_str()
        ),
        (Some("paid"), Some("admin@rebusai.com"))
    );
    let (status, _) = client
        .payout_action(&admin, &cancelled["id"], "cancel")
        .await;
    assert_eq!(status, 200);
    let (status, answer) = client
        .payout_action(&admin, &cancelled["id"], "cancel")
        .await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (409, Some("conflict"))
    );

    let (_, promoter) = client.promoter(&me).await;
    assert_eq!(
        (
            promoter["totalPaid"].as_f64(),
            promoter["currentBalance"].as_f64(),
            promoter["totalEarned"].as_f64()
        ),
        (Some(40.0), Some(30.0), Some(70.0))
    );
    let paid_entries: rust_decimal::Decimal = sqlx::query_scalar(
        "SELECT sum(amount) FROM ledger_entries WHERE affiliate_id = $1 AND kind = 'paid'",
    )
    .bind(id)
    .fetch_one(&stack.pool)
    .await
    .unwrap();
    assert_eq!(paid_entries.to_string(), "40.00");
    let (_, payouts) = client.promoter_payouts(&me).await;
    assert_eq!(
        payouts.as_array().unwrap().len(),
        1,
        "cancelled payouts are not in the history: {payouts}"
    );
}

#[tokio::test]
async fn recent_earnings_are_seven_days_zero_filled_ending_today() {
    let stack = TestStack::new().await.unwrap();
    let client = Client::new(&config(&stack)).await;
    let id = promoter(&client, 13).await;
    for (days_ago, amount, event) in [
        (6, "50", "a"),
        (4, "30", "b"),
        (3, "70", "c"),
        (2, "20", "d"),
        (0, "10", "e"),
        (8, "999", "old"),
    ] {
        earn(&stack, id, amount, days_ago, event).await;
    }
    let (status, days) = client.recent_earnings(&token(13)).await;
    assert_eq!(status, 200);
    let today = Utc::now().date_naive();
    let expected: Vec<Value> = [50, 0, 30, 70, 20, 0, 10]
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let day = today - chrono::Days::new(6 - i as u64);
            // Money prints as the promoter API document shows it: 50, 0.
            json!({"day": day.weekday().to_string(), "value": v})
        })
        .collect();
    assert_eq!(days, Value::Array(expected));
    // Seven consecutive days always include a week boundary (Sun → Mon), except when
    // today is a Sunday; either way the labels run in order and end today.
    let labels: Vec<&str> = days
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["day"].as_str().unwrap())
        .collect();
    assert_eq!(
        labels.last().copied(),
        Some(today.weekday().to_string().as_str())
    );
}
