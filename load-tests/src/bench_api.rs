//! The api benchmark: stats answers against rollups of real size. ClickHouse gets ten
//! million clicks (and their conversions) spread over a thousand affiliates and 90 days,
//! written into the raw tables so that the rollups fill as in production; Postgres gets
//! the affiliates as promoters. Then the api (release build, its own process, the rate
//! limit raised) is driven at a fixed rate per endpoint — the admin list, an affiliate's
//! performance, the promoter's own record — and p50/p99 latency is measured from when each
//! request was due: first with the stats cache off (every answer computed from the
//! rollups), then with it on (`STATS_CACHE_SECS=30`, the default, after a warm-up).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use reftrack_store::api_keys::{self, Scope};
use serde::Serialize;

use crate::load::{self, Limit, Load, Shot};
use crate::stack::Stack;
use reftrack_testkit::procs::{Launch, free_addr, sibling_binary};

const JWT_KEY: &str = "reftrack-bench-api-signing-key-0123456789";

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Affiliates (each also a promoter).
    #[arg(long, default_value_t = 1_000)]
    pub affiliates: usize,
    /// Clicks written into ClickHouse.
    #[arg(long, default_value_t = 10_000_000)]
    pub clicks: u64,
    /// Days the clicks are spread over, ending today.
    #[arg(long, default_value_t = 90)]
    pub days: u64,
    /// Seconds each endpoint is driven (after a 2 s warm-up).
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Requests per second of the admin endpoints.
    #[arg(long, default_value_t = 200.0)]
    pub admin_rate: f64,
    /// Requests per second of the promoter endpoint.
    #[arg(long, default_value_t = 1_000.0)]
    pub promoter_rate: f64,
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
}

#[derive(Debug, Serialize)]
pub struct Row {
    pub endpoint: &'static str,
    /// Stats cache on (30 s), warmed up.
    pub cached: bool,
    pub rate_asked: f64,
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Answers other than 200, and requests without an answer.
    pub failed: u64,
}

#[derive(Debug, Serialize)]
pub struct Figures {
    pub clicks: u64,
    pub affiliates: usize,
    pub seed_seconds: f64,
    pub rows: Vec<Row>,
}

pub async fn run(args: &Args, stack: &Stack) -> anyhow::Result<Figures> {
    let started = Instant::now();
    let ids = seed_affiliates(stack, args.affiliates).await?;
    eprintln!(
        "writing {} clicks over {} days into ClickHouse",
        args.clicks, args.days
    );
    seed_clickhouse(stack, &ids, args.clicks, args.days).await?;
    let seed_seconds = started.elapsed().as_secs_f64();
    eprintln!("  seeded in {seed_seconds:.0} s");
    let admin = api_keys::create(&stack.pool, "bench@example.com", &[Scope::Admin])
        .await?
        .0
        .key;
    let tokens = promoter_tokens(args.affiliates);

    let today = Utc::now().date_naive();
    let from = today - chrono::Days::new(29);
    let pages = args.affiliates.div_ceil(20).max(1) as u64;
    let bearer = |token: &str| vec![("authorization", format!("Bearer {token}"))];
    let admin_header = bearer(&admin);
    let list: load::ShotFn = Arc::new(move |n| Shot {
        method: hyper::Method::GET,
        path: format!(
            "/api/v1/affiliate/affiliates/?page={}&page_size=20",
            n % pages + 1
        ),
        headers: admin_header.clone(),
        body: None,
    });
    let admin_header = bearer(&admin);
    let performance_ids = ids.clone();
    let performance: load::ShotFn = Arc::new(move |n| Shot {
        method: hyper::Method::GET,
        path: format!(
            "/api/v1/affiliate/affiliates/{}/performance/?date_from={from}&date_to={today}",
            performance_ids[n as usize % performance_ids.len()]
        ),
        headers: admin_header.clone(),
        body: None,
    });
    let promoter: load::ShotFn = Arc::new(move |n| Shot {
        method: hyper::Method::GET,
        path: "/referrals/promoter".to_string(),
        headers: vec![(
            "authorization",
            format!("Bearer {}", tokens[n as usize % tokens.len()]),
        )],
        body: None,
    });

    let mut rows = Vec::new();
    for cache_secs in [0, 30] {
        stack.wait_for_quiet_clickhouse().await?;
        let addr = free_addr()?;
        let env: Vec<(&str, String)> = [
            ("API_ADDR", addr.to_string()),
            ("JWT_SIGNING_KEY", JWT_KEY.to_string()),
            ("API_RATE_LIMIT_PER_MINUTE", "1000000".to_string()),
            ("STATS_CACHE_SECS", cache_secs.to_string()),
            ("RUST_LOG", "warn".to_string()),
        ]
        .into_iter()
        .chain(stack.env())
        .collect();
        let api = Launch::new("api", &sibling_binary("api")?, addr)
            .env(env)
            .start()?;
        let cached = cache_secs > 0;
        let scenarios = [
            ("admin list (page of 20)", &list, args.admin_rate),
            ("admin performance (30 days)", &performance, args.admin_rate),
            ("promoter GET", &promoter, args.promoter_rate),
        ];
        for (endpoint, shot, rate) in scenarios {
            if cached && endpoint == "promoter GET" {
                continue; // no stats: the same with the cache on
            }
            let load = |secs| {
                Load::new(
                    api.addr,
                    args.connections,
                    Limit::Duration(Duration::from_secs(secs)),
                    shot.clone(),
                )
                .paced(Some(rate))
            };
            load::run(&load(if cached { 6 } else { 2 })).await?;
            let outcome = load::run(&load(args.seconds)).await?;
            let ok = outcome
                .by_status
                .iter()
                .filter(|(status, _)| *status == 200)
                .map(|(_, n)| n)
                .sum::<u64>();
            rows.push(Row {
                endpoint,
                cached,
                rate_asked: rate,
                rps: outcome.rps(),
                p50_ms: outcome.quantile_ms(0.5),
                p99_ms: outcome.quantile_ms(0.99),
                failed: outcome.sent() - ok,
            });
        }
    }
    Ok(Figures {
        clicks: args.clicks,
        affiliates: args.affiliates,
        seed_seconds,
        rows,
    })
}

pub fn print(f: &Figures) {
    println!();
    println!(
        "api benchmark — {} clicks over {} affiliates in the rollups",
        f.clicks, f.affiliates
    );
    println!(
        "{:<30} {:>6} {:>10} {:>10} {:>9} {:>9} {:>7}",
        "endpoint", "cache", "asked/s", "answered/s", "p50 ms", "p99 ms", "failed"
    );
    for r in &f.rows {
        println!(
            "{:<30} {:>6} {:>10.0} {:>10.0} {:>9.2} {:>9.2} {:>7}",
            r.endpoint,
            if r.cached { "30 s" } else { "off" },
            r.rate_asked,
            r.rps,
            r.p50_ms,
            r.p99_ms,
            r.failed
        );
    }
}

/// Approved affiliates, each the promoter of product user `1..=n`; their ids.
async fn seed_affiliates(stack: &Stack, n: usize) -> anyhow::Result<Vec<i64>> {
    let ids: Vec<i64> = sqlx::query_scalar(
        "INSERT INTO affiliates (referral_code, user_id, name, email, status, commission_rate, min_withdrawal_balance, approved_at)
         SELECT 'BENCHAPI' || g, g, 'Affiliate ' || g, 'affiliate' || g || '@example.com', 'approved', 10, 20, now()
         FROM generate_series(1, $1::int) AS g
         ON CONFLICT (referral_code) DO UPDATE SET referral_code = EXCLUDED.referral_code
         RETURNING id",
    )
    .bind(n as i32)
    .fetch_all(&stack.pool)
    .await
    .context("seed the affiliates")?;
    Ok(ids)
}

/// Clicks (90 % valid, 500,000 visitors) and one purchase per hundred clicks, written
/// by ClickHouse itself from `numbers()`, a million rows per statement.
async fn seed_clickhouse(stack: &Stack, ids: &[i64], clicks: u64, days: u64) -> anyhow::Result<()> {
    let client = stack.args.clickhouse.connect_and_migrate().await?;
    let ids = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    let span = days * 86_400;
    let now = Utc::now().timestamp() as u64;
    let chunk = 1_000_000;
    let mut start = 0;
    while start < clicks {
        let n = chunk.min(clicks - start);
        client
            .query(&format!(
                "INSERT INTO clicks_raw (event_id, kafka_topic, kafka_partition, kafka_offset, received_at, received_at_ms,
                                         affiliate_id, code, visitor, user_agent, referer, method, country, verdict)
                 SELECT generateUUIDv4(), 'bench', 0, n, toDateTime(t), t * 1000,
                        [{ids}][n % {count} + 1], 'BENCHAPI', cityHash64(n) % 500000, 'Mozilla/5.0', '', 'GET', 'DE',
                        if(n % 10 = 0, 'duplicate', 'valid')
                 FROM (SELECT number + {start} AS n, {now} - cityHash64(number + {start}, 1) % {span} AS t
                       FROM numbers({n}))",
                count = ids.split(',').count()
            ))
            .execute()
            .await
            .context("seed clicks")?;
        client
            .query(&format!(
                "INSERT INTO conversions_raw (event_id, kafka_topic, kafka_partition, kafka_offset, kind, verdict,
                                              affiliate_id, code, user_id, amount_cents, commission_amount_cents,
                                              occurred_at, received_at)
                 SELECT toString(n), 'bench', 0, n, 'purchase', 'valid', [{ids}][n % {count} + 1], 'BENCHAPI', n,
                        5000, 500, toDateTime(t), toDateTime(t)
                 FROM (SELECT number * 100 + {start} AS n, {now} - cityHash64(number, 2) % {span} AS t
                       FROM numbers({purchases}))",
                count = ids.split(',').count(),
                purchases = (n / 100).max(1)
            ))
            .execute()
            .await
            .context("seed conversions")?;
        start += n;
        eprint!("\r  {start} clicks");
    }
    eprintln!();
    // A bulk load leaves many parts that background merges combine within minutes in
    // production; the benchmark measures that steady state at once.
    for table in [
        "clicks_daily",
        "clicks_lifetime",
        "conversions_daily",
        "conversions_lifetime",
    ] {
        client
            .query(&format!("OPTIMIZE TABLE {table} FINAL"))
            .execute()
            .await
            .with_context(|| format!("merge {table}"))?;
    }
    Ok(())
}

/// Access tokens of product users `1..=n`, signed with the key the api is given.
fn promoter_tokens(n: usize) -> Vec<String> {
    let tokens = api::auth::Tokens::new(&secrecy::SecretString::from(JWT_KEY.to_string()), 0);
    (1..=n as i64)
        .map(|user| tokens.issue(user, 3600))
        .collect()
}
