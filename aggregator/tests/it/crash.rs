//! The aggregator is killed (SIGKILL) in the middle of its work, again and again, and
//! restarted; at the end, ClickHouse rollups and the Postgres ledger must equal what the
//! produced events say, exactly. The ground truth is computed here from the events,
//! with its own simple implementation of the rules.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chrono::{DateTime, Duration as Span, DurationRound, Utc};
use futures::future::join_all;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reftrack_domain::Money;
use reftrack_events::{
    ClickEvent, ClickMethod, ClickVerdict, ConversionEvent, ConversionKind, InvitationMethod,
};
use reftrack_store::stats::Stats;
use reftrack_testkit::TestStack;
use rust_decimal::{Decimal, RoundingStrategy};
use uuid::Uuid;

use crate::{Producer, affiliate, behind, drained, rollup};

const AFFILIATES: usize = 40;
const WAVES: usize = 10;
const CLICKS_PER_WAVE: usize = 18_000;
const USERS_PER_WAVE: usize = 700;
const RATE_LIMIT: u32 = 20;
const WINDOW_MS: i64 = 3_600_000;
/// SIGKILLs over the run, spread over the waves, each while the aggregator is behind.
const KILLS: usize = 30;

/// One message to produce, with its partition.
#[derive(Clone)]
enum Message {
    Click {
        partition: i32,
        code: String,
        event: Vec<u8>,
    },
    Conversion {
        partition: i32,
        event: ConversionEvent,
    },
}

struct World {
    codes: Vec<String>,
    ids: HashMap<String, i64>,
    /// Per affiliate: (rate before the change, rate after, change time).
    rates: HashMap<i64, (Decimal, Decimal, DateTime<Utc>)>,
    /// Per affiliate: days its commissions are held (the program holds none here; every
    /// third affiliate holds its own for a week).
    holding_days: HashMap<i64, i64>,
    partitions: i32,
    /// Where the events' times start.
    start: DateTime<Utc>,
}

impl World {
    fn rate(&self, affiliate: i64, at: DateTime<Utc>) -> Decimal {
        let (before, after, changed) = self.rates[&affiliate];
        if at < changed { before } else { after }
    }
}

#[tokio::test]
async fn ledger_and_rollups_are_exact_after_thirty_kill_9s() {
    let stack = TestStack::new().await.unwrap();
    let world = setup(&stack).await;
    let waves = generate(&world, 0x5eed);
    let total: usize = waves.iter().map(Vec::len).sum();
    assert!(total >= 200_000, "{total} events");

    let producer = Producer::new(&stack);
    let mut rng = StdRng::seed_from_u64(7);
    let mut aggregator = start(&stack);
    let mut kills = 0;
    for (i, wave) in waves.iter().enumerate() {
        produce(&producer, &stack, wave).await;
        // Pull the plug mid-batch, again and again while this wave is being drained
        // (a wave drained early passes its kills on to the next).
        let due = (KILLS * (i + 1)).div_ceil(WAVES);
        while kills < due {
            tokio::time::sleep(Duration::from_millis(rng.random_range(150..900))).await;
            if behind(&stack, &producer.ends()).await == 0 {
                break;
            }
            aggregator.kill();
            kills += 1;
            aggregator = start(&stack);
        }
    }
    // With static assignment, the last instance drains alone, with no manual step, however
    // many members of it were killed (no group coordinator to wait for).
    drained(&stack, &producer.ends()).await;
    aggregator.kill();
    assert!(
        kills >= KILLS,
        "only {kills} kills while the aggregator was behind"
    );

    let truth = ground_truth(&world, &waves);
    compare(&stack, &world, &truth).await;
}

/// The aggregator process; killed when dropped, so a failing test leaves none behind.
struct Aggregator(Child);

impl Aggregator {
    /// SIGKILL, like a crash.
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Aggregator {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The aggregator binary against this test's slice of the stack.
fn start(stack: &TestStack) -> Aggregator {
    let child = Command::new(env!("CARGO_BIN_EXE_aggregator"))
        .envs(stack.service_env())
        .env("RUST_LOG", "info")
        .env("AGGREGATOR_ADDR", "127.0.0.1:0")
        .env("KAFKA_SESSION_TIMEOUT_MS", "6000")
        .env("RATE_LIMIT_PER_MINUTE", RATE_LIMIT.to_string())
        .env("DEDUPE_WINDOW_SECS", (WINDOW_MS / 1000).to_string())
        .env("BATCH_MAX_EVENTS", "3000")
        .env("BATCH_MAX_WAIT_MS", "100")
        .stdout(log(stack))
        .stderr(log(stack))
        .spawn()
        .expect("start the aggregator binary");
    Aggregator(child)
}

/// The aggregator's log, appended across restarts (kept for a failing run).
fn log(stack: &TestStack) -> Stdio {
    let path = std::env::temp_dir().join(format!("reftrack-crash-{}.log", stack.id));
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_or_else(|_| Stdio::null(), Stdio::from)
}

async fn setup(stack: &TestStack) -> World {
    let mut world = World {
        codes: Vec::new(),
        ids: HashMap::new(),
        rates: HashMap::new(),
        holding_days: HashMap::new(),
        partitions: stack.kafka.partitions,
        start: events_start(),
    };
    // The program pays at once; every third affiliate holds its commissions for a week.
    // Set before any event, as terms in force from the beginning.
    sqlx::query("UPDATE program_rules SET holding_days = 0")
        .execute(&stack.pool)
        .await
        .unwrap();
    for i in 0..AFFILIATES {
        let code = format!("AFF{i:03}");
        let rate = Decimal::new(500 + (i as i64 % 7) * 250 + (i as i64 % 3) * 33, 2);
        let id = affiliate(stack, &code, &rate.to_string()).await;
        let mut after = rate;
        if i % 4 == 0 {
            after = rate + Decimal::new(275, 2);
            sqlx::query("UPDATE affiliates SET commission_rate = $2 WHERE id = $1")
                .bind(id)
                .bind(after)
                .execute(&stack.pool)
                .await
                .unwrap();
        }
        let changed: DateTime<Utc> = sqlx::query_scalar(
            "SELECT max(valid_from) FROM affiliate_terms_history WHERE affiliate_id = $1",
        )
        .bind(id)
        .fetch_one(&stack.pool)
        .await
        .unwrap();
        world.rates.insert(
            id,
            (
                rate,
                after,
                if i % 4 == 0 {
                    changed
                } else {
                    DateTime::<Utc>::MAX_UTC
                },
            ),
        );
        let holding = if i % 3 == 0 { 7 } else { 0 };
        if holding > 0 {
            sqlx::query(
                "UPDATE affiliate_terms_history SET holding_days = $2 WHERE affiliate_id = $1",
            )
            .bind(id)
            .bind(holding as i32)
            .execute(&stack.pool)
            .await
            .unwrap();
        }
        world.holding_days.insert(id, holding);
        world.ids.insert(code.clone(), id);
        world.codes.push(code);
    }
    world
}

/// Events happen from four hours ago (on the hour) on.
fn events_start() -> DateTime<Utc> {
    Utc::now().duration_trunc(Span::hours(1)).unwrap() - Span::hours(4)
}

/// Ten waves of clicks and conversions. Visitors stay within one partition's codes (the
/// verdicts, per visitor and code, never depend on how partitions interleave anyway).
fn generate(world: &World, seed: u64) -> Vec<Vec<Message>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let by_partition: BTreeMap<i32, Vec<&String>> =
        world.codes.iter().fold(BTreeMap::new(), |mut m, c| {
            m.entry(reftrack_testkit::kafka::partition_of(c, world.partitions))
                .or_default()
                .push(c);
            m
        });
    let partitions: Vec<i32> = by_partition.keys().copied().collect();
    let start = world.start;
    let mut user = 1_000i64;
    let mut sent: Vec<Message> = Vec::new();
    let mut waves = Vec::new();
    for wave in 0..WAVES {
        let mut messages = Vec::new();
        let wave_start = start + Span::minutes(20 * wave as i64);
        for n in 0..CLICKS_PER_WAVE {
            let partition = partitions[rng.random_range(0..partitions.len())];
            let codes = &by_partition[&partition];
            // Visitor ids carry their partition, so a visitor never crosses partitions.
            let visitor = (rng.random_range(0..400u64) << 8) | partition as u64;
            let heavy = rng.random_ratio(1, 200);
            let code = if rng.random_ratio(1, 50) {
                format!("UNKNOWN{}", rng.random_range(0..5))
            } else {
                codes[rng.random_range(0..codes.len())].clone()
            };
            let at = wave_start + Span::milliseconds((n as i64) * 60);
            let burst = if heavy { 25 } else { 1 };
            for b in 0..burst {
                let affiliate = world.ids.get(&code).copied();
                let verdict = match (affiliate, rng.random_range(0..100)) {
                    (None, _) => ClickVerdict::UnknownCode,
                    (_, 0..=6) => ClickVerdict::Bot,
                    (_, 7..=9) => ClickVerdict::Prefetch,
                    _ => ClickVerdict::Valid,
                };
                let event = ClickEvent {
                    event_id: Uuid::now_v7(),
                    code: code.as_str().into(),
                    affiliate_id: affiliate,
                    received_at_ms: (at + Span::milliseconds(b * 5)).timestamp_millis(),
                    visitor,
                    user_agent: "Mozilla/5.0".into(),
                    referer: None,
                    method: ClickMethod::Get,
                    country: None,
                    verdict,
                }
                .encode();
                // Clicks go to their visitor's partition (the code's partition when known).
                messages.push(Message::Click {
                    partition,
                    code: code.clone(),
                    event,
                });
            }
        }
        for _ in 0..USERS_PER_WAVE {
            user += 1;
            let partition = partitions[rng.random_range(0..partitions.len())];
            let codes = &by_partition[&partition];
            let code = if rng.random_ratio(1, 30) {
                "NOSUCHCODE".to_string()
            } else {
                codes[rng.random_range(0..codes.len())].to_string()
            };
            let affiliate = world.ids.get(&code).copied();
            let before_change = affiliate
                .map(|a| world.rates[&a].2)
                .unwrap_or(DateTime::<Utc>::MAX_UTC);
            // Around the rate change: some conversions before it, some after.
            let base = if rng.random_bool(0.5) && before_change != DateTime::<Utc>::MAX_UTC {
                before_change + Span::seconds(rng.random_range(1..3_000))
            } else {
                wave_start + Span::seconds(rng.random_range(0..1_000))
            };
            let mut t = base;
            let convert = |kind,
                           amount: Option<Decimal>,
                           original: Option<String>,
                           t: DateTime<Utc>| ConversionEvent {
                event_id: format!("{}-{user}-{}", kind_tag(kind), Uuid::new_v4().simple()),
                kind,
                user_id: user,
                email: Some(format!("u{user}@example.com")),
                referral_code: code.clone(),
                coupon: None,
                click_id: None,
                amount: amount.map(|a| Money::new(a).unwrap()),
                currency: amount.map(|_| "USD".to_string()),
                original_event_id: original,
                method: InvitationMethod::Link,
                occurred_at: t,
                received_at: t,
            };
            let mut events = vec![convert(ConversionKind::Signup, None, None, t)];
            for _ in 0..rng.random_range(0..4) {
                t += Span::seconds(rng.random_range(1..600));
                let amount = Decimal::new(rng.random_range(100..50_000), 2);
                let purchase = convert(ConversionKind::Purchase, Some(amount), None, t);
                let purchase_id = purchase.event_id.clone();
                events.push(purchase);
                if rng.random_ratio(1, 4) {
                    t += Span::seconds(rng.random_range(1..600));
                    let refund = if rng.random_bool(0.5) {
                        amount
                    } else {
                        (amount * Decimal::new(rng.random_range(1..100), 2))
                            .round_dp(2)
                            .max(Decimal::new(1, 2))
                    };
                    events.push(convert(
                        ConversionKind::Refund,
                        Some(refund),
                        Some(purchase_id),
                        t,
                    ));
                }
            }
            for event in events {
                messages.push(Message::Conversion { partition, event });
            }
        }
        // 5 % of the conversions sent so far come again, exactly (same event id), later
        // in the stream: a sender's retry. (Click ids are minted unique by ingest.)
        let conversions: Vec<Message> = sent
            .iter()
            .chain(&messages)
            .filter(|m| matches!(m, Message::Conversion { .. }))
            .cloned()
            .collect();
        for _ in 0..conversions.len() / 20 {
            messages.push(conversions[rng.random_range(0..conversions.len())].clone());
        }
        sent.extend(messages.iter().cloned());
        waves.push(messages);
    }
    waves
}

fn kind_tag(kind: ConversionKind) -> &'static str {
    match kind {
        ConversionKind::Signup => "s",
        ConversionKind::Purchase => "p",
        ConversionKind::Refund => "r",
    }
}

async fn produce(producer: &Producer, stack: &TestStack, wave: &[Message]) {
    for chunk in wave.chunks(5_000) {
        let sends = chunk.iter().map(|message| {
            let (topic, partition, key, payload) = match message {
                Message::Click {
                    partition,
                    code,
                    event,
                } => (
                    &stack.kafka.clicks_topic,
                    *partition,
                    code.clone(),
                    event.clone(),
                ),
                Message::Conversion { partition, event } => (
                    &stack.kafka.conversions_topic,
                    *partition,
                    event.referral_code.clone(),
                    event.encode(),
                ),
            };
            async move { producer.send_to(topic, partition, &key, &payload).await }
        });
        join_all(sends).await;
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Truth {
    stats: HashMap<i64, Stats>,
    visitors: HashMap<i64, HashSet<u64>>,
    unknown_clicks: u64,
    clicks: u64,
    conversions: u64,
    parked: BTreeMap<String, u64>,
    referrals: HashMap<i64, u64>,
    /// Per affiliate: (when payable, earned or reversed, amount) of every ledger entry.
    ledger: HashMap<i64, Vec<(DateTime<Utc>, bool, Decimal)>>,
}

impl Truth {
    /// Per affiliate, what is still held at `at`: earned less reversed among entries not
    /// yet payable.
    fn held_at(&self, affiliate: i64, at: DateTime<Utc>) -> Decimal {
        self.ledger
            .get(&affiliate)
            .into_iter()
            .flatten()
            .filter(|(available, _, _)| *available > at)
            .map(|(_, earned, amount)| if *earned { *amount } else { -*amount })
            .sum()
    }
}

/// Whole cents of an exact amount.
fn cents(amount: Decimal) -> i64 {
    Money::new(amount).unwrap().cents()
}

fn commission(amount: Decimal, rate: Decimal) -> Decimal {
    (amount * rate / Decimal::ONE_HUNDRED)
        .round_dp_with_strategy(2, RoundingStrategy::MidpointNearestEven)
}

/// What the events say, by the rules, computed independently of the aggregator.
fn ground_truth(world: &World, waves: &[Vec<Message>]) -> Truth {
    let mut truth = Truth::default();
    // Clicks: each partition in offset order (production order within a partition).
    // Per visitor on a code: its latest minute and the clicks in it (a late click in an
    // earlier minute counts alone).
    let mut rate_counts: HashMap<(String, u64), (i64, u32)> = HashMap::new();
    let mut first_click: HashMap<(String, u64), i64> = HashMap::new();
    // Conversions.
    let mut seen: HashSet<String> = HashSet::new();
    let mut referred: HashMap<i64, i64> = HashMap::new();
    let mut purchases: HashMap<String, (i64, Decimal, Decimal, Decimal, DateTime<Utc>)> =
        HashMap::new();
    for message in waves.iter().flatten() {
        match message {
            Message::Click { event, .. } => {
                truth.clicks += 1;
                let e = ClickEvent::decode(event).unwrap();
                let mut verdict = e.verdict;
                if verdict == ClickVerdict::Valid {
                    let minute = e.received_at_ms.div_euclid(60_000);
                    let key = (e.code.to_string(), e.visitor);
                    let latest = rate_counts.entry(key.clone()).or_insert((minute, 0));
                    let count = if minute == latest.0 {
                        latest.1 += 1;
                        latest.1
                    } else if minute > latest.0 {
                        *latest = (minute, 1);
                        1
                    } else {
                        1
                    };
                    if count > RATE_LIMIT {
                        verdict = ClickVerdict::RateLimited;
                    } else {
                        match first_click.get(&key) {
                            Some(first) if (e.received_at_ms - first).abs() < WINDOW_MS => {
                                verdict = ClickVerdict::Duplicate;
                            }
                            _ => {
                                let opened = first_click.entry(key).or_insert(e.received_at_ms);
                                *opened = (*opened).max(e.received_at_ms);
                            }
                        }
                    }
                }
                let Some(affiliate) = e.affiliate_id else {
                    truth.unknown_clicks += 1;
                    continue;
                };
                let s = truth.stats.entry(affiliate).or_default();
                s.raw_clicks += 1;
                match verdict {
                    ClickVerdict::Valid => {
                        s.valid_clicks += 1;
                        truth
                            .visitors
                            .entry(affiliate)
                            .or_default()
                            .insert(e.visitor);
                    }
                    ClickVerdict::Bot => s.bot_clicks += 1,
                    ClickVerdict::Prefetch => s.prefetch_clicks += 1,
                    ClickVerdict::Duplicate => s.duplicate_clicks += 1,
                    ClickVerdict::RateLimited => s.rate_limited_clicks += 1,
                    ClickVerdict::UnknownCode => {}
                }
            }
            Message::Conversion { event, .. } => {
                truth.conversions += 1;
                if !seen.insert(event.event_id.clone()) {
                    continue;
                }
                let mut park =
                    |reason: &str| *truth.parked.entry(reason.to_string()).or_default() += 1;
                match event.kind {
                    ConversionKind::Signup => match world.ids.get(&event.referral_code) {
                        None => park("unknown referral code"),
                        Some(&affiliate) => {
                            referred.insert(event.user_id, affiliate);
                            *truth.referrals.entry(affiliate).or_default() += 1;
                            truth.stats.entry(affiliate).or_default().signups += 1;
                        }
                    },
                    ConversionKind::Purchase => match referred.get(&event.user_id) {
                        None => park("unknown referral code"),
                        Some(&affiliate) => {
                            let amount = event.amount.unwrap().amount();
                            let rate = world.rate(affiliate, event.occurred_at);
                            let earned = commission(amount, rate);
                            let available =
                                event.occurred_at + Span::days(world.holding_days[&affiliate]);
                            if earned > Decimal::ZERO {
                                truth
                                    .ledger
                                    .entry(affiliate)
                                    .or_default()
                                    .push((available, true, earned));
                            }
                            purchases.insert(
                                event.event_id.clone(),
                                (affiliate, amount, rate, earned, available),
                            );
                            let s = truth.stats.entry(affiliate).or_default();
                            s.purchases += 1;
                            s.sales_cents += cents(amount);
                            s.commission_cents += cents(earned);
                        }
                    },
                    ConversionKind::Refund => {
                        match purchases.get(event.original_event_id.as_ref().unwrap()) {
                            None => park("refund waiting for its purchase"),
                            Some(&(affiliate, amount, rate, earned, available)) => {
                                let refund = event.amount.unwrap().amount();
                                let back = if refund == amount {
                                    earned
                                } else {
                                    commission(refund, rate).min(earned)
                                };
                                if back > Decimal::ZERO {
                                    truth
                                        .ledger
                                        .entry(affiliate)
                                        .or_default()
                                        .push((available, false, back));
                                }
                                let s = truth.stats.entry(affiliate).or_default();
                                s.refunds += 1;
                                s.refunded_cents += cents(refund);
                                s.reversed_cents += cents(back);
                            }
                        }
                    }
                }
            }
        }
    }
    for (affiliate, visitors) in &truth.visitors {
        truth.stats.entry(*affiliate).or_default().unique_clicks = visitors.len() as u64;
    }
    truth
}

async fn compare(stack: &TestStack, world: &World, truth: &Truth) {
    let ch = stack.clickhouse_client();
    // Every message is in ClickHouse exactly once.
    let (clicks, distinct): (u64, u64) = ch
        .query("SELECT count(), uniqExact(kafka_partition, kafka_offset) FROM clicks_raw")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(
        (clicks, distinct),
        (truth.clicks, truth.clicks),
        "raw clicks, once each"
    );
    let (conversions, distinct): (u64, u64) = ch
        .query("SELECT count(), uniqExact(kafka_partition, kafka_offset) FROM conversions_raw")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(
        (conversions, distinct),
        (truth.conversions, truth.conversions),
        "raw conversions, once each"
    );
    assert_eq!(
        rollup(stack, 0).await.unknown_code_clicks,
        truth.unknown_clicks
    );

    for (code, id) in &world.ids {
        let expected = truth.stats.get(id).copied().unwrap_or_default();
        let actual = rollup(stack, *id).await;
        assert_eq!(actual, expected, "ClickHouse rollup of {code}");

        let (earned, reversed, link_clicked): (Decimal, Decimal, i64) = sqlx::query_as(
            "SELECT earned, reversed, link_clicked FROM affiliate_totals WHERE affiliate_id = $1",
        )
        .bind(id)
        .fetch_one(&stack.pool)
        .await
        .unwrap();
        assert_eq!(
            (cents(earned), cents(reversed), link_clicked as u64),
            (
                expected.commission_cents,
                expected.reversed_cents,
                expected.valid_clicks
            ),
            "Postgres totals of {code}"
        );
        let (ledger_earned, ledger_reversed, referrals, referral_commission): (Decimal, Decimal, i64, Decimal) = sqlx::query_as(
            "SELECT (SELECT COALESCE(sum(amount), 0) FROM ledger_entries WHERE affiliate_id = $1 AND kind = 'earned'),
                    (SELECT COALESCE(sum(amount), 0) FROM ledger_entries WHERE affiliate_id = $1 AND kind = 'reversed'),
                    (SELECT count(*) FROM referrals WHERE affiliate_id = $1),
                    (SELECT COALESCE(sum(commission_amount), 0) FROM referrals WHERE affiliate_id = $1)",
        )
        .bind(id)
        .fetch_one(&stack.pool)
        .await
        .unwrap();
        assert_eq!(
            (ledger_earned, ledger_reversed),
            (earned, reversed),
            "ledger of {code} sums to its totals"
        );
        assert_eq!(
            referrals as u64,
            truth.referrals.get(id).copied().unwrap_or(0),
            "referrals of {code}"
        );
        assert_eq!(
            cents(referral_commission),
            expected.commission_cents - expected.reversed_cents,
            "referral commissions of {code}"
        );
        // The lifecycle: at moments before, inside and after the holding periods, what is
        // held (pending) and what is payable, as the api computes them.
        for at in [
            world.start,
            world.start + Span::days(7) + Span::hours(2),
            world.start + Span::days(8),
        ] {
            let (held, payable): (Decimal, Decimal) = sqlx::query_as(&format!(
                "SELECT {held}, t.earned - t.reversed - t.paid - t.pending_payouts - {held}
                 FROM affiliate_totals t WHERE t.affiliate_id = $1",
                held = reftrack_store::ledger::held_sql("$1", "$2")
            ))
            .bind(id)
            .bind(at)
            .fetch_one(&stack.pool)
            .await
            .unwrap();
            let truth_held = truth.held_at(*id, at);
            assert_eq!(
                (held, payable),
                (truth_held, earned - reversed - truth_held),
                "pending and payable of {code} at {at}"
            );
        }
    }
    let parked: Vec<(String, i64)> = sqlx::query_as(
        "SELECT reason, count(*) FROM parked_events WHERE topic = $1 GROUP BY reason ORDER BY reason",
    )
    .bind(&stack.kafka.conversions_topic)
    .fetch_all(&stack.pool)
    .await
    .unwrap();
    let expected: Vec<(String, i64)> = truth
        .parked
        .iter()
        .map(|(r, n)| (r.clone(), *n as i64))
        .collect();
    // Repeats of parked events are parked again (each message once): compare the distinct ones.
    let parked_distinct: Vec<(String, i64)> = sqlx::query_as(
        "SELECT reason, count(DISTINCT event_id) FROM parked_events WHERE topic = $1 GROUP BY reason ORDER BY reason",
    )
    .bind(&stack.kafka.conversions_topic)
    .fetch_all(&stack.pool)
    .await
    .unwrap();
    assert_eq!(
        parked_distinct, expected,
        "parked conversions (all: {parked:?})"
    );
}
