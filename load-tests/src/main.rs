//! `loadtest`: reftrack's load generator and benchmarks. Run `loadtest --help`.

// A command-line tool whose output is its result: printing is its job.
#![allow(clippy::print_stdout)]

mod bench;
mod bench_aggregator;
mod bench_api;
mod bench_ingest;
mod load;
mod pipeline;
mod stack;

use std::net::SocketAddr;
use std::path::PathBuf;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "loadtest",
    about = "reftrack load generator and benchmarks (against the local stack)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The whole pipeline under realistic traffic, then verified through the public API.
    Run {
        #[command(flatten)]
        args: Box<pipeline::Args>,
        /// Where to write the results as JSON.
        #[arg(long, default_value = "target/loadtest/pipeline.json")]
        json: PathBuf,
        #[command(flatten)]
        stack: Box<stack::StackArgs>,
    },
    /// ingest's redirect against a bare axum server answering the same 302.
    BenchIngest {
        #[command(flatten)]
        args: bench_ingest::Args,
        #[command(flatten)]
        stack: Box<stack::StackArgs>,
    },
    /// The aggregator draining a million clicks, against a plain ClickHouse insert of the same rows.
    BenchAggregator {
        #[command(flatten)]
        args: bench_aggregator::Args,
        #[command(flatten)]
        stack: Box<stack::StackArgs>,
    },
    /// The api's stats answers at fixed rates, against rollups of ten million clicks.
    BenchApi {
        #[command(flatten)]
        args: bench_api::Args,
        #[command(flatten)]
        stack: Box<stack::StackArgs>,
    },
    /// All four: bench-ingest, bench-aggregator, bench-api and a verified run, in one table.
    Bench {
        #[command(flatten)]
        args: Box<bench::Args>,
        #[command(flatten)]
        stack: Box<stack::StackArgs>,
    },
    /// Drive one URL (closed loop, or paced with --rate) and print throughput and latency.
    Hit {
        /// http://HOST:PORT/PATH?QUERY
        #[arg(long)]
        url: String,
        #[arg(long, default_value_t = 32)]
        connections: usize,
        #[arg(long, default_value_t = 10)]
        duration: u64,
        /// Requests per second; omit for as fast as possible.
        #[arg(long)]
        rate: Option<f64>,
        #[arg(
            long,
            default_value = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
        )]
        user_agent: String,
    },
    /// The baseline of bench-ingest: a bare axum server answering a fixed 302.
    BareServer {
        #[arg(long)]
        addr: SocketAddr,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Run { args, json, stack } => {
            let report = pipeline_command(&args, &stack).await?;
            report.print();
            write_json(&json, &report)?;
            ensure_verified(&report)?;
        }
        Command::BenchIngest { args, stack } => {
            let figures = bench_ingest_command(&args, &stack).await?;
            bench_ingest::print(&args, &figures);
        }
        Command::BenchAggregator { args, stack } => {
            bench_aggregator::print(&bench_aggregator_command(&args, &stack).await?);
        }
        Command::BenchApi { args, stack } => {
            bench_api::print(&bench_api_command(&args, &stack).await?);
        }
        Command::Bench { args, stack } => {
            let figures = bench::run(&args, &stack).await?;
            bench::print(&figures);
            write_json(&args.json, &figures)?;
            ensure_verified(&figures.pipeline)?;
        }
        Command::Hit {
            url,
            connections,
            duration,
            rate,
            user_agent,
        } => hit(&url, connections, duration, rate, user_agent).await?,
        Command::BareServer { addr } => bare_server(addr).await?,
    }
    Ok(())
}

/// A verified pipeline run in names of its own, dropped afterwards.
async fn pipeline_command(
    args: &pipeline::Args,
    stack: &stack::StackArgs,
) -> anyhow::Result<pipeline::Report> {
    let stack = stack::Stack::prepare(stack, &unique_name("run")).await?;
    stack.wait_for_quiet_clickhouse().await?;
    let report = pipeline::run(args, &stack).await;
    stack.discard().await?;
    report
}

/// bench-ingest in its own names, kept between runs (one affiliate).
async fn bench_ingest_command(
    args: &bench_ingest::Args,
    stack: &stack::StackArgs,
) -> anyhow::Result<bench_ingest::Figures> {
    bench_ingest::run(args, &stack::Stack::prepare(stack, "bench_ingest").await?).await
}

/// bench-aggregator in names of its own, dropped afterwards.
async fn bench_aggregator_command(
    args: &bench_aggregator::Args,
    stack: &stack::StackArgs,
) -> anyhow::Result<bench_aggregator::Figures> {
    let stack = stack::Stack::prepare(stack, &unique_name("bench_agg")).await?;
    stack.wait_for_quiet_clickhouse().await?;
    let figures = bench_aggregator::run(args, &stack).await;
    stack.discard().await?;
    figures
}

/// bench-api in names of its own, dropped afterwards.
async fn bench_api_command(
    args: &bench_api::Args,
    stack: &stack::StackArgs,
) -> anyhow::Result<bench_api::Figures> {
    let stack = stack::Stack::prepare(stack, &unique_name("bench_api")).await?;
    let figures = bench_api::run(args, &stack).await;
    stack.discard().await?;
    figures
}

fn ensure_verified(report: &pipeline::Report) -> anyhow::Result<()> {
    anyhow::ensure!(
        report.verification.passed,
        "verification failed: api does not report what was sent"
    );
    Ok(())
}

/// `prefix_` and 8 hex digits: names for a run's schema, database, topics and keys.
fn unique_name(prefix: &str) -> String {
    format!(
        "{prefix}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// Writes `value` as pretty JSON to `path` (folders created) and says where.
fn write_json(path: &std::path::Path, value: &impl serde::Serialize) -> anyhow::Result<()> {
    if let Some(folder) = path.parent() {
        std::fs::create_dir_all(folder)?;
    }
    std::fs::write(path, serde_json::to_string_pretty(value)?)?;
    println!("\nresults written to {}", path.display());
    Ok(())
}

async fn hit(
    url: &str,
    connections: usize,
    duration: u64,
    rate: Option<f64>,
    user_agent: String,
) -> anyhow::Result<()> {
    let uri: hyper::Uri = url.parse()?;
    let authority = uri
        .authority()
        .ok_or_else(|| anyhow::anyhow!("{url} has no host:port"))?;
    let target = tokio::net::lookup_host(authority.as_str())
        .await?
        .next()
        .ok_or_else(|| anyhow::anyhow!("{authority} does not resolve"))?;
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    let shot: load::ShotFn = std::sync::Arc::new(move |_| load::Shot {
        method: hyper::Method::GET,
        path: path.clone(),
        headers: vec![("user-agent", user_agent.clone())],
        body: None,
    });
    let limit = load::Limit::Duration(std::time::Duration::from_secs(duration));
    let outcome = load::run(&load::Load::new(target, connections, limit, shot).paced(rate)).await?;
    println!(
        "{:.0} req/s  p50 {:.3} ms  p90 {:.3} ms  p99 {:.3} ms  max {:.3} ms  statuses {:?}  errors {}",
        outcome.rps(),
        outcome.quantile_ms(0.5),
        outcome.quantile_ms(0.9),
        outcome.quantile_ms(0.99),
        outcome.latency_us.max() as f64 / 1000.0,
        outcome.by_status,
        outcome.errors()
    );
    Ok(())
}

/// The same 302 ingest answers (Location, Cache-Control, Set-Cookie), with no work behind it.
async fn bare_server(addr: SocketAddr) -> anyhow::Result<()> {
    async fn redirect() -> impl IntoResponse {
        (
            StatusCode::FOUND,
            [
                (
                    header::LOCATION,
                    HeaderValue::from_static("https://product.example/welcome?utm_source=bench"),
                ),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
                (
                    header::SET_COOKIE,
                    HeaderValue::from_static(
                        "rt_ref=BENCH.0190a0b2c3d47e8f9a0b1c2d3e4f5a6b; Max-Age=5184000; Path=/; Secure; HttpOnly; SameSite=Lax",
                    ),
                ),
            ],
        )
    }
    let router = Router::new()
        .route("/", get(redirect))
        .route("/healthz", get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, router).await?;
    Ok(())
}
