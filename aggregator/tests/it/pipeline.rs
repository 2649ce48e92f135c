use chrono::{DateTime, Duration, DurationRound, Utc};
use reftrack_events::ClickVerdict;
use reftrack_testkit::{TestStack, wait};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use serde_json::json;

use crate::{Producer, affiliate, click, config, conversion, drained, link_clicked, rollup, spawn};

#[tokio::test]
async fn clicks_are_counted_with_their_final_verdicts() {
    let stack = TestStack::new().await.unwrap();
    let id = affiliate(&stack, "CLICKY", "10").await;
    let mut config = config(&stack);
    config.rate_limit_per_minute = 30;
    config.dedupe_window_secs = 3600;
    let server = spawn(&config).await;
    let producer = Producer::new(&stack);
    let topic = &stack.kafka.clicks_topic;
    // On a minute boundary, so the burst below falls within one rate-limit minute.
    let t0 = Utc::now().duration_trunc(Duration::minutes(1)).unwrap() - Duration::minutes(90);
    let at = |secs: i64| t0 + Duration::seconds(secs);
    let send = |visitor: u64, secs: i64, verdict: ClickVerdict| {
        let payload = click("CLICKY", Some(id), visitor, at(secs), verdict);
        let producer = &producer;
        async move { producer.send(topic, "CLICKY", &payload).await }
    };

    // Visitor 1: first click valid, two repeats within the hour duplicates, and 61
    // minutes later a new window (valid again, still one unique visitor).
    send(1, 0, ClickVerdict::Valid).await;
    send(1, 10, ClickVerdict::Valid).await;
    send(1, 3000, ClickVerdict::Valid).await;
    send(1, 3660, ClickVerdict::Valid).await;
    // Visitor 2: one valid click; ingest's verdicts pass through untouched.
    send(2, 5, ClickVerdict::Valid).await;
    send(3, 5, ClickVerdict::Bot).await;
    send(4, 5, ClickVerdict::Prefetch).await;
    // Visitor 5 hammers: 35 clicks within one minute. 1 valid, 29 duplicates, 5 limited.
    for i in 0..35 {
        send(5, 120 + i, ClickVerdict::Valid).await;
    }
    // An unknown code (affiliate 0).
    let unknown = click("NOPE", None, 6, at(1), ClickVerdict::UnknownCode);
    producer.send(topic, "NOPE", &unknown).await;

    drained(&stack, &producer.ends()).await;
    let stats = rollup(&stack, id).await;
    assert_eq!(stats.raw_clicks, 42);
    assert_eq!(stats.valid_clicks, 4, "v1 twice (two windows), v2, v5 once");
    assert_eq!(stats.unique_clicks, 3, "visitors 1, 2 and 5");
    assert_eq!(stats.duplicate_clicks, 2 + 29);
    assert_eq!(stats.rate_limited_clicks, 5);
    assert_eq!((stats.bot_clicks, stats.prefetch_clicks), (1, 1));
    assert_eq!(rollup(&stack, 0).await.unknown_code_clicks, 1);
    let link_clicked = link_clicked(&stack, id).await;
    assert_eq!(link_clicked, 4, "linkClicked counts valid clicks");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn verdicts_rebuilt_from_clickhouse_match_those_decided_in_memory() {
    use aggregator::clicks::ClickRow;
    use aggregator::clicks::verdicts::{Candidate, Verdicts};
    use reftrack_events::ClickEvent;
    let stack = TestStack::new().await.unwrap();
    let topic = "t_replay";
    // 600 clicks over 3 hours on 4 codes by 30 visitors: windows open and close,
    // minutes fill up past the limit, and clicks come slightly out of time order.
    let start = Utc::now().timestamp_millis() - 4 * 3_600_000;
    let events: Vec<ClickEvent<'static>> = (0..600u64)
        .map(|i| {
            let at = start + (i as i64) * 18_000 - (i as i64 % 7) * 5_000;
            let code = format!("C{}", i % 4);
            let payload = click(
                &code,
                Some(1),
                i * 7 % 30,
                DateTime::from_timestamp_millis(at).unwrap(),
                ClickVerdict::Valid,
            );
            ClickEvent::decode(&payload).unwrap().into_owned()
        })
        .collect();
    fn candidate<'e>(e: &'e ClickEvent<'static>) -> Option<Candidate<'e>> {
        Some(Candidate {
            code: e.code.as_ref(),
            visitor: e.visitor,
            received_at_ms: e.received_at_ms,
        })
    }
    let mut first_pass = Verdicts::new(3600, 3);
    let decided: Vec<ClickVerdict> = events
        .iter()
        .enumerate()
        .map(|(offset, e)| first_pass.decide(0, offset as i64, candidate(e)).unwrap())
        .collect();
    assert!(decided.contains(&ClickVerdict::Duplicate));
    // A burst to reach the rate limit is not in this data; the unit tests cover it.

    // ClickHouse holds the first 400, with their verdicts (as the sink writes them).
    let clickhouse = stack.clickhouse_client();
    let mut insert = clickhouse
        .insert::<ClickRow<'_>>("clicks_raw")
        .await
        .unwrap();
    for (offset, e) in events.iter().enumerate().take(400) {
        insert
            .write(&ClickRow::from_event(
                topic,
                0,
                offset as i64,
                e,
                decided[offset],
            ))
            .await
            .unwrap();
    }
    insert.end().await.unwrap();

    // After a crash, a replay from anywhere the sinks may stand decides as the first pass.
    for from in [0usize, 1, 150, 399, 400] {
        let mut replay = Verdicts::new(3600, 3);
        replay
            .rebuild(&clickhouse, topic, 0, from as i64)
            .await
            .unwrap();
        let again: Vec<ClickVerdict> = events
            .iter()
            .enumerate()
            .skip(from)
            .map(|(offset, e)| replay.decide(0, offset as i64, candidate(e)).unwrap())
            .collect();
        assert_eq!(again, decided[from..], "replayed from offset {from}");
    }
}

async fn ledger_sums(stack: &TestStack, affiliate: i64) -> (Decimal, Decimal) {
    sqlx::query_as(
        "SELECT COALESCE(sum(amount) FILTER (WHERE kind = 'earned'), 0), COALESCE(sum(amount) FILTER (WHERE kind = 'reversed'), 0)
         FROM ledger_entries WHERE affiliate_id = $1",
    )
    .bind(affiliate)
    .fetch_one(&stack.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn conversions_build_an_exact_ledger() {
    let stack = TestStack::new().await.unwrap();
    let id = affiliate(&stack, "LEDGER", "15").await;
    let server = spawn(&config(&stack)).await;
    let producer = Producer::new(&stack);
    let topic = &stack.kafka.conversions_topic;
    let before = (Utc::now() - Duration::hours(1)).to_rfc3339();
    let event = |body: serde_json::Value| {
        let mut base = json!({"user_id": 42, "referral_code": "LEDGER", "method": "email",
                              "occurred_at": before, "received_at": before});
        for (k, v) in body.as_object().unwrap() {
            base[k] = v.clone();
        }
        conversion(base)
    };
    let send = |(key, payload): (String, Vec<u8>)| {
        let producer = &producer;
        async move { producer.send(topic, &key, &payload).await }
    };

    send(event(
        json!({"event_id": "s-1", "type": "signup", "email": "buyer@example.com"}),
    ))
    .await;
    // 19.99 × 15% = 2.9985 → 3.00 (half-even to cents).
    send(event(
        json!({"event_id": "p-1", "type": "purchase", "amount": "19.99", "currency": "USD"}),
    ))
    .await;
    // Redelivered: counted once.
    send(event(
        json!({"event_id": "p-1", "type": "purchase", "amount": "19.99", "currency": "USD"}),
    ))
    .await;
    drained(&stack, &producer.ends()).await;

    // The rate changes; a purchase after the change earns the new rate.
    sqlx::query("UPDATE affiliates SET commission_rate = 20 WHERE id = $1")
        .bind(id)
        .execute(&stack.pool)
        .await
        .unwrap();
    let after = (Utc::now() + Duration::seconds(1)).to_rfc3339();
    send(event(json!({"event_id": "p-2", "type": "purchase", "amount": "100.00", "currency": "USD", "occurred_at": after}))).await;
    // A partial refund of the first purchase: 10.00 of 19.99 at its 15% → 1.50 back.
    send(event(json!({"event_id": "r-1", "type": "refund", "amount": "10.00", "currency": "USD", "original_event_id": "p-1"}))).await;
    drained(&stack, &producer.ends()).await;

    let entries: Vec<(String, Decimal, Decimal)> = sqlx::query_as(
        "SELECT kind, amount, rate FROM ledger_entries WHERE affiliate_id = $1 ORDER BY id",
    )
    .bind(id)
    .fetch_all(&stack.pool)
    .await
    .unwrap();
    assert_eq!(
        entries,
        vec![
            ("earned".into(), dec!(3.00), dec!(15.00)),
            ("earned".into(), dec!(20.00), dec!(20.00)),
            ("reversed".into(), dec!(1.50), dec!(15.00)),
        ]
    );
    let totals: (Decimal, Decimal, Decimal) = sqlx::query_as(
        "SELECT earned, reversed, earned - reversed - paid - pending_payouts FROM affiliate_totals WHERE affiliate_id = $1",
    )
    .bind(id)
    .fetch_one(&stack.pool)
    .await
    .unwrap();
    assert_eq!(
        totals,
        (dec!(23.00), dec!(1.50), dec!(21.50)),
        "the clawback nets against the balance"
    );
    assert_eq!(
        ledger_sums(&stack, id).await,
        (dec!(23.00), dec!(1.50)),
        "totals equal the ledger"
    );

    let referral: (i64, String, String, String, Decimal, Decimal, Option<String>) = sqlx::query_as(
        "SELECT user_id, email, status, invitation_method, commission_rate, commission_amount, commission_status
         FROM referrals WHERE affiliate_id = $1",
    )
    .bind(id)
    .fetch_one(&stack.pool)
    .await
    .unwrap();
    assert_eq!(
        referral,
        (
            42,
            "buyer@example.com".into(),
            "converted".into(),
            "email".into(),
            dec!(15.00),
            dec!(21.50),
            Some("earned".into())
        )
    );

    let stats = rollup(&stack, id).await;
    assert_eq!((stats.signups, stats.purchases, stats.refunds), (1, 2, 1));
    assert_eq!((stats.sales_cents, stats.refunded_cents), (11_999, 1_000));
    assert_eq!((stats.commission_cents, stats.reversed_cents), (2_300, 150));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn bad_and_unattributable_events_are_parked_and_never_block() {
    let stack = TestStack::new().await.unwrap();
    let id = affiliate(&stack, "GOOD", "10").await;
    let server = spawn(&config(&stack)).await;
    let producer = Producer::new(&stack);
    let conversions = &stack.kafka.conversions_topic;
    let now = Utc::now().to_rfc3339();
    let signup = |event_id: &str, code: &str, user: i64| {
        conversion(
            json!({"event_id": event_id, "type": "signup", "user_id": user, "referral_code": code,
                          "occurred_at": now, "received_at": now}),
        )
    };

    producer.send(conversions, "GOOD", b"{not json").await;
    let (key, payload) = signup("s-unknown", "NOBODY", 1);
    producer.send(conversions, &key, &payload).await;
    let (key, payload) = conversion(
        json!({"event_id": "r-x", "type": "refund", "user_id": 2, "referral_code": "GOOD",
        "amount": "5", "currency": "USD", "original_event_id": "never", "occurred_at": now, "received_at": now}),
    );
    producer.send(conversions, &key, &payload).await;
    let (key, payload) = signup("s-good", "GOOD", 3);
    producer.send(conversions, &key, &payload).await;
    producer
        .send(&stack.kafka.clicks_topic, "GOOD", b"\xff\xfe garbage")
        .await;
    drained(&stack, &producer.ends()).await;

    let parked: Vec<(String, String)> =
        sqlx::query_as("SELECT topic, reason FROM parked_events ORDER BY topic, reason")
            .fetch_all(&stack.pool)
            .await
            .unwrap();
    let clicks = stack.kafka.clicks_topic.clone();
    let conversions = stack.kafka.conversions_topic.clone();
    assert_eq!(
        parked,
        vec![
            (clicks, "undecodable".into()),
            (
                conversions.clone(),
                "refund waiting for its purchase".into()
            ),
            (conversions.clone(), "undecodable".into()),
            (conversions, "unknown referral code".into()),
        ]
    );
    assert_eq!(
        rollup(&stack, id).await.signups,
        1,
        "the good event after the bad ones went through"
    );
    let verdicts: Vec<(String, u64)> = stack
        .clickhouse_client()
        .query("SELECT toString(verdict), count() FROM conversions_raw GROUP BY verdict ORDER BY verdict")
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(
        verdicts,
        vec![
            ("valid".into(), 1),
            ("unattributed".into(), 2),
            ("invalid".into(), 1)
        ]
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_restart_resumes_from_the_sinks_without_recounting() {
    let stack = TestStack::new().await.unwrap();
    let id = affiliate(&stack, "AGAIN", "10").await;
    let producer = Producer::new(&stack);
    producer
        .send_valid_clicks(&stack.kafka.clicks_topic, "AGAIN", id, 0..50)
        .await;
    let config = config(&stack);
    let first = spawn(&config).await;
    drained(&stack, &producer.ends()).await;
    first.stop().await.unwrap();
    // The same consumer group restarts, and a brand-new group too (no Kafka offsets at
    // all): both resume from what the sinks hold. Each gets one new click, and once it
    // has written that one, it has passed the old ones too.
    let mut expected = 50;
    for (visitor, group) in [
        (50, config.group.clone()),
        (51, format!("{}-fresh", config.group)),
    ] {
        let mut again = config.clone();
        again.group = group;
        let server = spawn(&again).await;
        let payload = click("AGAIN", Some(id), visitor, Utc::now(), ClickVerdict::Valid);
        producer
            .send(&stack.kafka.clicks_topic, "AGAIN", &payload)
            .await;
        expected += 1;
        drained(&stack, &producer.ends()).await;
        server.stop().await.unwrap();
        let stats = rollup(&stack, id).await;
        assert_eq!((stats.raw_clicks, stats.valid_clicks), (expected, expected));
    }
}

#[tokio::test]
async fn an_event_beyond_the_ledger_is_parked_and_the_batch_goes_on() {
    let stack = TestStack::new().await.unwrap();
    let id = affiliate(&stack, "HUGE", "10").await;
    let server = spawn(&config(&stack)).await;
    let producer = Producer::new(&stack);
    let conversions = &stack.kafka.conversions_topic;
    let now = Utc::now().to_rfc3339();
    // Written as raw JSON, as another producer of the topic might: the event type
    // itself refuses the amount.
    let purchase = |event_id: &str, amount: &str| {
        json!({"event_id": event_id, "type": "purchase", "user_id": 9, "referral_code": "HUGE",
            "amount": amount, "currency": "USD", "occurred_at": now, "received_at": now})
        .to_string()
        .into_bytes()
    };
    // Between two good purchases, in one batch, one beyond the ledger's NUMERIC(12, 2)
    // (ingest refuses such amounts; another producer of the topic may not).
    for (event_id, amount) in [
        ("p-1", "10.00"),
        ("p-huge", "99999999999.99"),
        ("p-2", "30.00"),
    ] {
        producer
            .send(conversions, "HUGE", &purchase(event_id, amount))
            .await;
    }
    drained(&stack, &producer.ends()).await;

    let parked: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT reason, event_id FROM parked_events")
            .fetch_all(&stack.pool)
            .await
            .unwrap();
    // Money refuses the amount as the message is decoded (before the domain types, it
    // reached Postgres and was parked as "rejected by the database").
    assert_eq!(parked, vec![("undecodable".into(), None)]);
    assert_eq!(ledger_sums(&stack, id).await, (dec!(4.00), dec!(0)));
    assert_eq!(rollup(&stack, id).await.purchases, 2);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn two_instances_given_the_same_partitions_never_count_twice() {
    let stack = TestStack::new().await.unwrap();
    let id = affiliate(&stack, "TWICE", "10").await;
    // Both are instance 0 of 1: both claim every partition.
    let config = config(&stack);
    let first = spawn(&config).await;
    let second = spawn(&config).await;
    let producer = Producer::new(&stack);
    let topic = &stack.kafka.clicks_topic;
    producer
        .send_valid_clicks(topic, "TWICE", id, 0..1_500)
        .await;
    drained(&stack, &producer.ends()).await;
    // The first stops; the second, which waited for the partitions, takes over.
    first.stop().await.unwrap();
    producer
        .send_valid_clicks(topic, "TWICE", id, 1_500..2_000)
        .await;
    drained(&stack, &producer.ends()).await;
    second.stop().await.unwrap();

    let stats = rollup(&stack, id).await;
    assert_eq!((stats.raw_clicks, stats.valid_clicks), (2_000, 2_000));
    let link_clicked = link_clicked(&stack, id).await;
    assert_eq!(link_clicked, 2_000);
}

#[tokio::test]
async fn an_instance_that_loses_its_hold_on_its_partitions_stops() {
    let stack = TestStack::new().await.unwrap();
    let id = affiliate(&stack, "HOLD", "10").await;
    let server = spawn(&config(&stack)).await;
    let producer = Producer::new(&stack);
    let topic = &stack.kafka.clicks_topic;
    let payload = click("HOLD", Some(id), 1, Utc::now(), ClickVerdict::Valid);
    producer.send(topic, "HOLD", &payload).await;
    drained(&stack, &producer.ends()).await;

    // Postgres drops the connection that holds this instance's partition locks (a
    // failover, a network cut): another instance may take them now, so this one stops.
    let terminated: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_locks
         WHERE locktype = 'advisory' AND objsubid = 2
           AND classid = (hashtext($1)::bigint & 4294967295)::oid",
    )
    .bind(topic)
    .fetch_all(&stack.pool)
    .await
    .unwrap();
    assert!(!terminated.is_empty(), "the hold's connection was found");
    let payload = click("HOLD", Some(id), 2, Utc::now(), ClickVerdict::Valid);
    producer.send(topic, "HOLD", &payload).await;
    let healthz = server.url("/healthz");
    wait::until(
        std::time::Duration::from_secs(60),
        "the instance stops by itself",
        || {
            let healthz = healthz.clone();
            async move { reqwest::get(&healthz).await.is_err() }
        },
    )
    .await
    .unwrap();
    let stopped = server.stop().await.unwrap_err();
    assert!(
        format!("{stopped:#}").contains("lost the Postgres connection"),
        "{stopped:#}"
    );
}

#[tokio::test]
async fn a_click_written_twice_counts_once_even_across_a_restart() {
    let stack = TestStack::new().await.unwrap();
    let id = affiliate(&stack, "TWICE", "10").await;
    let producer = Producer::new(&stack);
    let topic = &stack.kafka.clicks_topic;
    let clicks: Vec<Vec<u8>> = (0..20)
        .map(|visitor| click("TWICE", Some(id), visitor, Utc::now(), ClickVerdict::Valid))
        .collect();
    // Each click written twice (a producer retry after a lost answer): the copies end
    // the batch, so ClickHouse's progress must pass them without rows.
    let config = config(&stack);
    let first = spawn(&config).await;
    for payload in clicks.iter().chain(&clicks) {
        producer.send(topic, "TWICE", payload).await;
    }
    drained(&stack, &producer.ends()).await;
    first.stop().await.unwrap();
    let stats = rollup(&stack, id).await;
    assert_eq!((stats.raw_clicks, stats.valid_clicks), (20, 20));
    assert_eq!(link_clicked(&stack, id).await, 20);

    // A new instance remembers them from ClickHouse: more copies, and one new click.
    let second = spawn(&config).await;
    for payload in &clicks[..5] {
        producer.send(topic, "TWICE", payload).await;
    }
    let new = click("TWICE", Some(id), 99, Utc::now(), ClickVerdict::Valid);
    producer.send(topic, "TWICE", &new).await;
    drained(&stack, &producer.ends()).await;
    second.stop().await.unwrap();
    let stats = rollup(&stack, id).await;
    assert_eq!((stats.raw_clicks, stats.valid_clicks), (21, 21));
    assert_eq!(stats.duplicate_clicks, 0, "a copy is not a duplicate click");
    assert_eq!(link_clicked(&stack, id).await, 21);

    // Copies from further back than an instance remembers: those ingest re-sent from its
    // spill are marked, and found in ClickHouse.
    let mut forgetful = config.clone();
    forgetful.click_copy_window = 3;
    let third = spawn(&forgetful).await;
    for payload in clicks.iter().take(4) {
        producer.send_resent(topic, "TWICE", payload).await;
    }
    drained(&stack, &producer.ends()).await;
    third.stop().await.unwrap();
    let stats = rollup(&stack, id).await;
    assert_eq!((stats.raw_clicks, stats.valid_clicks), (21, 21));
    assert_eq!(link_clicked(&stack, id).await, 21);
}
