//! `loadtest run`: the whole pipeline under realistic traffic, measured and verified.
//!
//! ingest, aggregator and api run as release-built processes of their own against a
//! private slice of the local stack. Clicks go to ingest open loop (Zipf-popular codes,
//! bots, prefetches, repeat visitors, unknown codes); the product's backend reports
//! signups, purchases and refunds alongside; a probe measures how soon a click shows in
//! api's stats. Then everything api reports, per promoter, must equal what was sent.

pub mod model;

mod conversions;
mod probe;
mod public_api;
mod report;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use futures::{StreamExt, TryStreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use reftrack_store::api_keys::{self, Scope};

use crate::load::{self, Limit, Load, Shot};
use crate::stack::Stack;
use conversions::Reporter;
use model::{ClickKind, Expected, Journey, Mix, Model};
use public_api::{Promoter, PublicApi};
use reftrack_testkit::metric;
use reftrack_testkit::procs::{Launch, Process, free_addr, http_get, sibling_binary};
pub use report::Report;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Clicks to send (unless --duration is given).
    #[arg(long, default_value_t = 100_000)]
    pub clicks: u64,
    /// Send for this many seconds instead of a count of clicks.
    #[arg(long)]
    pub duration: Option<u64>,
    /// Clicks per second, open loop; 0 sends as fast as ingest answers.
    #[arg(long, default_value_t = 10_000.0)]
    pub rate: f64,
    /// Concurrent keep-alive connections to ingest.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Promoters the clicks are spread over.
    #[arg(long, default_value_t = 200)]
    pub affiliates: usize,
    /// Exponent of the codes' Zipf popularity (higher: more skewed).
    #[arg(long, default_value_t = 1.1)]
    pub zipf: f64,
    #[command(flatten)]
    pub mix: Mix,
    /// Conversion journeys reported concurrently.
    #[arg(long, default_value_t = 16)]
    pub senders: usize,
    /// Seconds to wait after the traffic for api to show everything that was sent.
    #[arg(long, default_value_t = 300)]
    pub settle: u64,
    /// Seed of the traffic: the same seed sends the same traffic.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

/// The three services of one run.
struct Services {
    ingest: Process,
    _aggregator: Process,
    api: Process,
}

const LANDING: &str = "https://product.example/welcome";

async fn start_services(stack: &Stack, jwt_key: &str) -> anyhow::Result<Services> {
    let env = |extra: &[(&'static str, String)]| -> Vec<(&'static str, String)> {
        let mut env = stack.env();
        env.push(("RUST_LOG", "warn".into()));
        env.extend_from_slice(extra);
        env
    };
    let spill = std::env::temp_dir().join(format!("reftrack-run-spill-{}", stack.name));
    let (ingest_addr, aggregator_addr, api_addr) = (free_addr()?, free_addr()?, free_addr()?);
    let aggregator = Launch::new(
        "aggregator",
        &sibling_binary("aggregator")?,
        aggregator_addr,
    )
    .env(env(&[("AGGREGATOR_ADDR", aggregator_addr.to_string())]))
    .start()?;
    let api = Launch::new("api", &sibling_binary("api")?, api_addr)
        .env(env(&[
            ("API_ADDR", api_addr.to_string()),
            ("JWT_SIGNING_KEY", jwt_key.to_string()),
            ("PUBLIC_LINK_BASE", format!("http://{ingest_addr}/")),
            // The load tool reads a lot, and freshness is measured on the stats themselves.
            ("API_RATE_LIMIT_PER_MINUTE", "1000000".into()),
            ("STATS_CACHE_SECS", "0".into()),
        ]))
        .start()?;
    let ingest = Launch::new("ingest", &sibling_binary("ingest")?, ingest_addr)
        .env(env(&[
            ("INGEST_ADDR", ingest_addr.to_string()),
            ("LANDING_URL", LANDING.into()),
            ("TRUSTED_PROXIES", "127.0.0.1".into()),
            ("SPILL_DIR", spill.display().to_string()),
        ]))
        .start()?;
    Ok(Services {
        ingest,
        _aggregator: aggregator,
        api,
    })
}

/// Request `n` of the traffic as ingest receives it.
fn shot(model: &Model, codes: &[String], n: u64) -> Shot {
    let click = model.click(n);
    let code = match click.kind {
        ClickKind::Unknown => format!("NOSUCH{:04}", n % 10_000),
        _ => codes[click.code].clone(),
    };
    // Both link forms: the query (most links) and the path.
    let path = if n.is_multiple_of(4) {
        format!("/r/{code}")
    } else {
        format!("/?ref={code}&utm_source=loadtest")
    };
    let mut headers = vec![
        ("user-agent", click.user_agent.to_string()),
        (
            "x-forwarded-for",
            std::net::Ipv4Addr::from(click.ip).to_string(),
        ),
    ];
    // Prefetches: half HEAD, half a browser's speculative GET.
    let method = if click.kind == ClickKind::Prefetch && n.is_multiple_of(2) {
        hyper::Method::HEAD
    } else {
        if click.kind == ClickKind::Prefetch {
            headers.push(("sec-purpose", "prefetch".into()));
        }
        hyper::Method::GET
    };
    Shot {
        method,
        path,
        headers,
        body: None,
    }
}

pub async fn run(args: &Args, stack: &Stack) -> anyhow::Result<Report> {
    let jwt_key = uuid::Uuid::new_v4().simple().to_string();
    let services = start_services(stack, &jwt_key).await?;
    let admin_key = api_keys::create(&stack.pool, "loadtest@example.com", &[Scope::Admin])
        .await?
        .0
        .key;
    let events_key = api_keys::create(&stack.pool, "loadtest@example.com", &[Scope::Events])
        .await?
        .0
        .key;
    let api = PublicApi::new(
        services.api.addr,
        admin_key,
        api::auth::Tokens::new(&secrecy::SecretString::from(jwt_key), 0),
    );

    eprintln!(
        "creating {} promoters through the promoter API",
        args.affiliates + 1
    );
    let mut promoters: Vec<Promoter> = futures::stream::iter(1..=args.affiliates as i64 + 1)
        .map(|user| api.promoter(user))
        .buffered(8)
        .try_collect()
        .await?;
    // Every other promoter's commissions are payable at once; the others' are held for
    // the program's holding period, so the run checks both sides of the lifecycle.
    for promoter in promoters.iter_mut().step_by(2) {
        api.pay_at_once(promoter).await?;
    }
    let (probe_promoter, promoters) = promoters.split_last().context("promoters")?;
    wait_for_directory(&services.ingest, promoters.len() + 1).await?;

    let model = Arc::new(Model::new(args.seed, promoters.len(), args.zipf, args.mix)?);
    let codes: Arc<Vec<String>> = Arc::new(promoters.iter().map(|p| p.code.clone()).collect());
    let limit = match args.duration {
        Some(secs) => Limit::Duration(Duration::from_secs(secs)),
        None => Limit::Requests(args.clicks),
    };
    let rate = (args.rate > 0.0).then_some(args.rate);
    let load = {
        let (model, codes) = (model.clone(), codes.clone());
        Load::new(
            services.ingest.addr,
            args.connections,
            limit,
            Arc::new(move |n| shot(&model, &codes, n)),
        )
        .paced(rate)
    };

    let from = Utc::now().date_naive();
    let stop_probe = Arc::new(AtomicBool::new(false));
    let probe = tokio::spawn(probe::run(
        services.ingest.addr,
        api.clone(),
        probe_promoter.clone(),
        stop_probe.clone(),
    ));
    let reporter = Reporter::new(
        services.ingest.addr,
        events_key,
        codes.clone(),
        format!("run{}", args.seed),
    );
    let issued = Arc::new(AtomicU64::new(u64::MAX));
    let journeys = tokio::spawn(report_journeys(
        model.clone(),
        reporter.clone(),
        load.answered.clone(),
        issued.clone(),
        args.senders,
    ));
    let progress = progress_bar(args, &load, &reporter);

    let started = Instant::now();
    let outcome = load::run(&load).await?;
    let sending = started.elapsed();
    issued.store(outcome.sent(), Ordering::Relaxed);
    progress.finish_and_clear();
    eprintln!(
        "{} clicks answered in {:.1} s; finishing the conversions",
        outcome.requests,
        sending.as_secs_f64()
    );
    let delivered = journeys.await??;

    eprintln!(
        "waiting for api to show everything that was sent (up to {} s)",
        args.settle
    );
    let mut unanswered = outcome.unanswered.iter().copied().peekable();
    let answered = (0..outcome.sent()).filter(move |n| {
        if unanswered.peek() == Some(n) {
            unanswered.next();
            false
        } else {
            true
        }
    });
    let rates: Vec<_> = promoters.iter().map(|p| p.commission_rate).collect();
    let expected = model::expected(&model, answered, &delivered, &rates);
    stop_probe.store(true, Ordering::Relaxed);
    let probe = probe.await??;
    let mut checks: Vec<(Promoter, Expected)> = promoters.iter().cloned().zip(expected).collect();
    let probes = probe.delays.len() as u64;
    checks.push((
        probe.promoter.clone(),
        Expected {
            raw_clicks: probes,
            valid_clicks: probes,
            unique_clicks: probes,
            ..Expected::default()
        },
    ));
    let verification = settle(&api, &checks, from, Duration::from_secs(args.settle)).await?;

    Ok(Report::new(
        args,
        &outcome,
        sending,
        &reporter.counters,
        delivered.len(),
        &probe.delays,
        verification,
    ))
}

/// Until ingest's directory holds every promoter's code (it learns them from Postgres).
async fn wait_for_directory(ingest: &Process, codes: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = http_get(ingest.addr, "/metrics")
            .map(|(_, b)| b)
            .unwrap_or_default();
        if metric(&text, "ingest_directory_codes") >= codes as f64 {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "ingest did not learn the {codes} codes within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Reports the journeys of answered clicks as the clicks go out, `senders` at a time;
/// returns those delivered (all of them, or an error).
async fn report_journeys(
    model: Arc<Model>,
    reporter: Reporter,
    answered: Arc<AtomicU64>,
    issued: Arc<AtomicU64>,
    senders: usize,
) -> anyhow::Result<Vec<Journey>> {
    let due = futures::stream::unfold(0u64, move |mut n| {
        let (model, answered, issued) = (model.clone(), answered.clone(), issued.clone());
        async move {
            loop {
                let total = issued.load(Ordering::Relaxed);
                let upto = if total == u64::MAX {
                    answered.load(Ordering::Relaxed)
                } else {
                    total
                };
                while n < upto {
                    n += 1;
                    if let Some(journey) = model.journey(n - 1) {
                        return Some((journey, n));
                    }
                }
                if total != u64::MAX {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    });
    due.map(|journey| {
        let reporter = reporter.clone();
        async move { reporter.report(&journey).await.map(|()| journey) }
    })
    .buffer_unordered(senders)
    .try_collect()
    .await
}

fn progress_bar(args: &Args, load: &Load, reporter: &Reporter) -> ProgressBar {
    let length = match args.duration {
        Some(secs) if args.rate > 0.0 => (secs as f64 * args.rate) as u64,
        Some(_) => 0,
        None => args.clicks,
    };
    let bar = ProgressBar::new(length);
    bar.set_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{bar:32}] {human_pos}/{human_len} clicks · {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let (bar2, answered, counters) = (
        bar.clone(),
        load.answered.clone(),
        reporter.counters.clone(),
    );
    tokio::spawn(async move {
        while !bar2.is_finished() {
            let clicks = answered.load(Ordering::Relaxed);
            bar2.set_position(clicks);
            bar2.set_message(format!(
                "{:.0}/s · {} conversions accepted, {} retried",
                clicks as f64 / bar2.elapsed().as_secs_f64().max(0.001),
                counters.accepted.load(Ordering::Relaxed),
                counters.retried.load(Ordering::Relaxed)
            ));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    bar
}

/// What the verification found.
#[derive(Debug, serde::Serialize)]
pub struct Verification {
    pub affiliates: usize,
    /// What all promoters together must show (and, when passed, showed).
    pub expected: Expected,
    pub passed: bool,
    /// Seconds after the traffic until api showed everything (or the limit).
    pub settled_after_secs: f64,
    pub mismatches: Vec<String>,
}

fn total<'a>(each: impl Iterator<Item = &'a Expected>) -> Expected {
    each.fold(Expected::default(), |sum, e| Expected {
        raw_clicks: sum.raw_clicks + e.raw_clicks,
        valid_clicks: sum.valid_clicks + e.valid_clicks,
        unique_clicks: sum.unique_clicks + e.unique_clicks,
        signups: sum.signups + e.signups,
        purchases: sum.purchases + e.purchases,
        net_sales_cents: sum.net_sales_cents + e.net_sales_cents,
        earned_cents: sum.earned_cents + e.earned_cents,
        reversed_cents: sum.reversed_cents + e.reversed_cents,
    })
}

/// Reads every promoter's figures through the public API until they all match, or
/// `limit` passes.
async fn settle(
    api: &PublicApi,
    checks: &[(Promoter, Expected)],
    from: chrono::NaiveDate,
    limit: Duration,
) -> anyhow::Result<Verification> {
    let started = Instant::now();
    loop {
        let to = Utc::now().date_naive();
        let mismatches: Vec<String> = futures::stream::iter(checks)
            .map(|(promoter, expected)| async move {
                let observed = api.observe(promoter, from, to).await?;
                anyhow::Ok(
                    observed
                        .mismatches(expected, promoter.payable_at_once)
                        .into_iter()
                        .map(|m| format!("promoter {} ({}): {m}", promoter.user_id, promoter.code))
                        .collect::<Vec<_>>(),
                )
            })
            .buffer_unordered(16)
            .try_collect::<Vec<_>>()
            .await?
            .into_iter()
            .flatten()
            .collect();
        if mismatches.is_empty() || started.elapsed() > limit {
            return Ok(Verification {
                affiliates: checks.len(),
                expected: total(checks.iter().map(|(_, e)| e)),
                passed: mismatches.is_empty(),
                settled_after_secs: started.elapsed().as_secs_f64(),
                mismatches,
            });
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}
