//! The drain benchmark: a million clicks already in the topic, drained by the aggregator
//! (release build, its own process) into Postgres and ClickHouse, verdicts decided in
//! its memory; and, in the same run, a plain insert of the same rows into an identical
//! ClickHouse table. Also the aggregator's memory once drained: its resident size and
//! what its verdict state holds per visitor remembered.

use std::time::{Duration, Instant};

use futures::future::join_all;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rdkafka::producer::{FutureProducer, FutureRecord};
use reftrack_events::{ClickEvent, ClickMethod, ClickVerdict};
use serde::Serialize;

use crate::stack::Stack;
use reftrack_testkit::procs::{
    Launch, cpu_time, free_addr, http_get, pid_listening_on, sibling_binary,
};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Click events to drain.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: usize,
    /// Affiliates the clicks are spread over.
    #[arg(long, default_value_t = 500)]
    pub affiliates: usize,
    /// Aggregator batch size, also the plain insert's batch size.
    #[arg(long, default_value_t = 20_000)]
    pub batch: usize,
}

#[derive(Debug, Serialize)]
pub struct Figures {
    pub events: usize,
    pub aggregator_events_per_sec: f64,
    pub aggregator_seconds: f64,
    pub plain_insert_rows_per_sec: f64,
    pub plain_insert_seconds: f64,
    pub ratio: f64,
    /// Resident memory of the aggregator process once drained.
    pub aggregator_rss_bytes: u64,
    /// Visitors on codes the verdict state remembers once drained, and its bytes.
    pub verdict_visitors: u64,
    pub verdict_state_bytes: u64,
}

struct Generated {
    /// (partition, key, payload) in production order.
    messages: Vec<(i32, String, Vec<u8>)>,
    ends: Vec<i64>,
}

pub async fn run(args: &Args, stack: &Stack) -> anyhow::Result<Figures> {
    let partitions = stack.args.kafka.partitions;
    reftrack_events::kafka::ensure_topics(
        &stack.args.kafka,
        &[
            &stack.args.kafka.clicks_topic,
            &stack.args.kafka.conversions_topic,
        ],
    )
    .await?;
    let mut ids = Vec::with_capacity(args.affiliates);
    for i in 0..args.affiliates {
        ids.push((
            format!("DRAIN{i:05}"),
            stack.seed_affiliate(&format!("DRAIN{i:05}")).await?,
        ));
    }
    eprintln!("generating {} clicks", args.events);
    let generated = generate(args.events, &ids, partitions);
    eprintln!("producing them to {}", stack.args.kafka.clicks_topic);
    produce(stack, &generated).await?;

    let addr = free_addr()?;
    let env: Vec<(&str, String)> = [
        ("AGGREGATOR_ADDR", addr.to_string()),
        ("BATCH_MAX_EVENTS", args.batch.to_string()),
        ("BATCH_MAX_WAIT_MS", "200".to_string()),
        ("RUST_LOG", "warn".to_string()),
    ]
    .into_iter()
    .chain(stack.env())
    .collect();
    let aggregator = Launch::new("aggregator", &sibling_binary("aggregator")?, addr)
        .env(env)
        .start()?;
    eprintln!("draining with the aggregator");
    let processes = cpu_processes(aggregator.pid(), &stack.args.kafka.brokers);
    let before: Vec<Duration> = processes
        .iter()
        .map(|(_, pids)| pids.iter().map(|p| cpu_time(*p)).sum())
        .collect();
    let (aggregator_seconds, _) = drain_time(stack, &generated.ends).await?;
    for ((name, pids), before) in processes.iter().zip(before) {
        let used = pids
            .iter()
            .map(|p| cpu_time(*p))
            .sum::<Duration>()
            .saturating_sub(before);
        eprintln!("  CPU of {name}: {:.2} s", used.as_secs_f64());
    }
    let exposition = http_get(aggregator.addr, "/metrics")
        .map(|(_, body)| body)
        .unwrap_or_default();
    let aggregator_rss_bytes = reftrack_testkit::procs::rss_of(aggregator.pid());
    let verdict_visitors =
        reftrack_testkit::metric(&exposition, "aggregator_verdict_visitors") as u64;
    let verdict_state_bytes =
        reftrack_testkit::metric(&exposition, "aggregator_verdict_state_bytes") as u64;
    drop(aggregator);
    for sink in ["postgres", "clickhouse"] {
        let seconds: f64 = exposition
            .lines()
            .filter(|l| {
                l.starts_with("aggregator_sink_write_seconds_sum")
                    && l.contains(&format!("sink=\"{sink}\""))
                    && l.contains("topic=\"clicks\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        eprintln!("  time in {sink}: {seconds:.2} s");
    }
    let batches = reftrack_testkit::metric(&exposition, "aggregator_batch_size_count");
    eprintln!(
        "  batches: {batches:.0}, {:.0} events each",
        reftrack_testkit::metric(&exposition, "aggregator_batch_size_sum") / batches.max(1.0)
    );

    stack.wait_for_quiet_clickhouse().await?;
    eprintln!("plain insert of the same rows");
    let clickhouse = pid_listening_on(8123);
    let clickhouse_before = clickhouse.map(cpu_time).unwrap_or_default();
    let plain_insert_seconds = plain_insert(args, stack, &generated).await?;
    if let Some(pid) = clickhouse {
        let used = cpu_time(pid).saturating_sub(clickhouse_before);
        eprintln!("  CPU of clickhouse: {:.2} s", used.as_secs_f64());
    }
    let aggregator_events_per_sec = args.events as f64 / aggregator_seconds;
    let plain_insert_rows_per_sec = args.events as f64 / plain_insert_seconds;
    Ok(Figures {
        events: args.events,
        aggregator_events_per_sec,
        aggregator_seconds,
        plain_insert_rows_per_sec,
        plain_insert_seconds,
        ratio: aggregator_events_per_sec / plain_insert_rows_per_sec,
        aggregator_rss_bytes,
        verdict_visitors,
        verdict_state_bytes,
    })
}

pub fn print(f: &Figures) {
    println!();
    println!(
        "aggregator drain benchmark — {} click events already in the topic, one machine",
        f.events
    );
    println!("{:<40} {:>12} {:>10}", "", "events/s", "seconds");
    println!(
        "{:<40} {:>12.0} {:>10.2}",
        "aggregator (Postgres + ClickHouse)", f.aggregator_events_per_sec, f.aggregator_seconds
    );
    println!(
        "{:<40} {:>12.0} {:>10.2}",
        "plain ClickHouse insert of the same rows",
        f.plain_insert_rows_per_sec,
        f.plain_insert_seconds
    );
    println!(
        "{:<40} {:>12.3}",
        "ratio aggregator / plain insert", f.ratio
    );
    println!(
        "aggregator memory once drained: {:.0} MiB resident; verdict state {} visitors on codes, {:.1} MiB, {:.0} bytes each",
        f.aggregator_rss_bytes as f64 / 1_048_576.0,
        f.verdict_visitors,
        f.verdict_state_bytes as f64 / 1_048_576.0,
        f.verdict_state_bytes as f64 / f.verdict_visitors.max(1) as f64
    );
}

/// Clicks as ingest makes them: Zipf-like spread over affiliates, repeat visitors, some bots.
fn generate(events: usize, ids: &[(String, i64)], partitions: i32) -> Generated {
    let mut rng = StdRng::seed_from_u64(42);
    let now = chrono::Utc::now().timestamp_millis();
    let mut ends = vec![0i64; partitions as usize];
    let mut messages = Vec::with_capacity(events);
    for n in 0..events {
        // Popular affiliates get most clicks: index ~ affiliates * u^3.
        let u: f64 = rng.random();
        let (code, id) = &ids[((u * u * u) * ids.len() as f64) as usize % ids.len()];
        let partition = (*id % i64::from(partitions)) as i32;
        let verdict = match rng.random_range(0..100) {
            0..=7 => ClickVerdict::Bot,
            8..=9 => ClickVerdict::Prefetch,
            _ => ClickVerdict::Valid,
        };
        let event = ClickEvent {
            event_id: uuid::Uuid::now_v7(),
            code: code.as_str().into(),
            affiliate_id: Some(*id),
            received_at_ms: now - 3_600_000 + (n as i64 * 3_600_000 / events as i64),
            visitor: rng.random_range(0..200_000u64),
            user_agent: "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
                .into(),
            referer: Some("https://news.example/".into()),
            method: ClickMethod::Get,
            country: Some("DE".into()),
            verdict,
        };
        ends[partition as usize] += 1;
        messages.push((partition, code.clone(), event.encode()));
    }
    Generated { messages, ends }
}

async fn produce(stack: &Stack, generated: &Generated) -> anyhow::Result<()> {
    let producer: FutureProducer = reftrack_events::kafka::producer_config(&stack.args.kafka)
        .set("queue.buffering.max.messages", "1000000")
        .set("linger.ms", "20")
        .create()?;
    let started = Instant::now();
    for chunk in generated.messages.chunks(50_000) {
        let sends = chunk.iter().map(|(partition, key, payload)| {
            producer.send(
                FutureRecord::to(&stack.args.kafka.clicks_topic)
                    .partition(*partition)
                    .key(key)
                    .payload(payload),
                Duration::from_secs(60),
            )
        });
        for outcome in join_all(sends).await {
            outcome.map_err(|(err, _)| anyhow::anyhow!("produce: {err}"))?;
        }
    }
    eprintln!("  produced in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// The processes whose CPU the drain uses: the aggregator and the stores on this machine.
fn cpu_processes(aggregator: u32, brokers: &str) -> Vec<(&'static str, Vec<u32>)> {
    let postgres: Vec<u32> = std::process::Command::new("pgrep")
        .args(["-x", "postgres"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect()
        })
        .unwrap_or_default();
    vec![
        ("aggregator", vec![aggregator]),
        ("clickhouse", pid_listening_on(8123).into_iter().collect()),
        (
            "tansu",
            pid_listening_on(crate::bench_ingest::broker_port(brokers))
                .into_iter()
                .collect(),
        ),
        ("postgres", postgres),
    ]
}

/// Seconds from the first progress to both sinks holding every event (start-up and the
/// consumer group join are not counted).
async fn drain_time(stack: &Stack, ends: &[i64]) -> anyhow::Result<(f64, f64)> {
    let total: i64 = ends.iter().sum();
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut first_progress: Option<Instant> = None;
    loop {
        let done = applied(stack, ends).await?;
        if done > 0 && first_progress.is_none() {
            first_progress = Some(Instant::now());
        }
        if done >= total {
            let started = first_progress.unwrap_or_else(Instant::now);
            return Ok((started.elapsed().as_secs_f64().max(1e-3), done as f64));
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "not drained within 10 minutes ({done} of {total})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Events both sinks hold, over all partitions of the clicks topic.
async fn applied(stack: &Stack, ends: &[i64]) -> anyhow::Result<i64> {
    let topic = &stack.args.kafka.clicks_topic;
    let pg: Vec<(i32, i64)> = sqlx::query_as(
        "SELECT kafka_partition, next_offset FROM consumer_offsets WHERE topic = $1",
    )
    .bind(topic)
    .fetch_all(&stack.pool)
    .await?;
    let ch: Vec<(u16, u64)> = stack.args.clickhouse.client()
        .query("SELECT kafka_partition, maxMerge(next_offset) FROM sink_offsets WHERE topic = ? GROUP BY kafka_partition")
        .bind(topic.as_str())
        .fetch_all()
        .await?;
    Ok((0..ends.len())
        .map(|p| {
            let at_pg = pg.iter().find(|r| r.0 == p as i32).map_or(0, |r| r.1);
            let at_ch = ch
                .iter()
                .find(|r| r.0 as usize == p)
                .map_or(0, |r| r.1 as i64);
            at_pg.min(at_ch)
        })
        .sum())
}

/// The same rows, inserted into an identical table (with its materialized views) in a
/// database of its own, in batches of the same size, one after the other.
async fn plain_insert(args: &Args, stack: &Stack, generated: &Generated) -> anyhow::Result<f64> {
    let mut config = stack.args.clickhouse.clone();
    config.database = format!("{}_plain", config.database);
    reftrack_store::clickhouse::ensure_schema(&config).await?;
    let client = config.client();
    let events: Vec<ClickEvent<'_>> = generated
        .messages
        .iter()
        .map(|(_, _, payload)| ClickEvent::decode(payload))
        .collect::<Result<_, _>>()?;
    let topic = "plain";
    let started = Instant::now();
    for (chunk_index, chunk) in events.chunks(args.batch).enumerate() {
        let mut insert = client
            .insert::<aggregator::clicks::ClickRow<'_>>("clicks_raw")
            .await?;
        for (i, event) in chunk.iter().enumerate() {
            let offset = (chunk_index * args.batch + i) as i64;
            insert
                .write(&aggregator::clicks::ClickRow::from_event(
                    topic,
                    0,
                    offset,
                    event,
                    event.verdict,
                ))
                .await?;
        }
        insert.end().await?;
    }
    Ok(started.elapsed().as_secs_f64())
}
