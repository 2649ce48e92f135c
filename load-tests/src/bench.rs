//! `loadtest bench`: the four measurements in one run, on one machine, each against
//! its baseline measured in the same run, printed as one table of figures and ratios.

use std::path::PathBuf;

use serde::Serialize;

use crate::stack::StackArgs;
use crate::{bench_aggregator, bench_api, bench_ingest, pipeline};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Seconds of each measured ingest and bare-axum run.
    #[arg(long, default_value_t = 10)]
    pub ingest_seconds: u64,
    /// Interleaved runs per server in the ingest benchmark, at peak and at half rate.
    #[arg(long, default_value_t = 3)]
    pub ingest_rounds: usize,
    /// Click events the aggregator drains (and ClickHouse takes as a plain insert).
    #[arg(long, default_value_t = 1_000_000)]
    pub drain_events: usize,
    /// Clicks in the rollups the api benchmark reads.
    #[arg(long, default_value_t = 10_000_000)]
    pub api_clicks: u64,
    /// The full-pipeline run (`loadtest run` options).
    #[command(flatten)]
    pub pipeline: pipeline::Args,
    /// Where to write all figures as JSON.
    #[arg(long, default_value = "target/loadtest/bench.json")]
    pub json: PathBuf,
}

#[derive(Debug, Serialize)]
pub struct Figures {
    pub ingest: bench_ingest::Figures,
    pub aggregator: bench_aggregator::Figures,
    pub api: bench_api::Figures,
    pub pipeline: pipeline::Report,
}

pub async fn run(args: &Args, stack: &StackArgs) -> anyhow::Result<Figures> {
    let ingest_args = bench_ingest::Args {
        duration: args.ingest_seconds,
        rounds: args.ingest_rounds,
        ..defaults()
    };
    eprintln!("1/4 ingest redirect benchmark");
    let ingest = crate::bench_ingest_command(&ingest_args, stack).await?;
    bench_ingest::print(&ingest_args, &ingest);

    eprintln!("\n2/4 aggregator drain benchmark");
    let aggregator_args = bench_aggregator::Args {
        events: args.drain_events,
        ..defaults()
    };
    let aggregator = crate::bench_aggregator_command(&aggregator_args, stack).await?;
    bench_aggregator::print(&aggregator);

    eprintln!("\n3/4 api benchmark");
    let api_args = bench_api::Args {
        clicks: args.api_clicks,
        ..defaults()
    };
    let api = crate::bench_api_command(&api_args, stack).await?;
    bench_api::print(&api);

    eprintln!("\n4/4 full-pipeline run with verification");
    let pipeline = crate::pipeline_command(&args.pipeline, stack).await?;
    pipeline.print();
    Ok(Figures {
        ingest,
        aggregator,
        api,
        pipeline,
    })
}

/// A command's options as its defaults set them.
fn defaults<T: clap::Args + clap::FromArgMatches>() -> T {
    let command = T::augment_args(clap::Command::new("defaults"));
    T::from_arg_matches(&command.get_matches_from(["defaults"]))
        .expect("every option has a default")
}

pub fn print(f: &Figures) {
    let (i, a, p) = (&f.ingest, &f.aggregator, &f.pipeline);
    println!("\nreftrack bench — one run, one machine");
    println!(
        "  {:<36} {:>14} {:>30} {:>7}",
        "measure", "reftrack", "baseline (same run)", "ratio"
    );
    let line = |measure: &str, ours: String, baseline: String, ratio: String| {
        println!("  {measure:<36} {ours:>14} {baseline:>30} {ratio:>7}");
    };
    line(
        "redirects/s at peak",
        format!("{:.0}", i.ingest_rps),
        format!("bare axum 302: {:.0}", i.bare_rps),
        format!("{:.2}", i.ratio),
    );
    line(
        "redirect p99 at half rate, ms",
        format!("{:.3}", i.ingest_half_p99_ms),
        format!("bare axum 302: {:.3}", i.bare_half_p99_ms),
        format!("{:.2}", i.ingest_half_p99_ms / i.bare_half_p99_ms),
    );
    line(
        "CPU per redirect, µs",
        format!("{:.1}", i.ingest_cpu_us),
        format!("bare axum 302: {:.1}", i.bare_cpu_us),
        format!("{:.2}", i.ingest_cpu_us / i.bare_cpu_us),
    );
    line(
        "clicks drained into the stores/s",
        format!("{:.0}", a.aggregator_events_per_sec),
        format!("plain CH insert: {:.0}", a.plain_insert_rows_per_sec),
        format!("{:.2}", a.ratio),
    );
    line(
        "aggregator resident memory, MiB",
        format!("{:.0}", a.aggregator_rss_bytes as f64 / 1_048_576.0),
        format!("{} clicks drained", a.events),
        String::new(),
    );
    line(
        "verdict state per visitor, bytes",
        format!(
            "{:.0}",
            a.verdict_state_bytes as f64 / a.verdict_visitors.max(1) as f64
        ),
        format!("{} visitors remembered", a.verdict_visitors),
        String::new(),
    );
    for r in &f.api.rows {
        line(
            &format!(
                "api {} ({}), p50/p99 ms",
                r.endpoint,
                if r.cached { "cache 30 s" } else { "no cache" }
            ),
            format!("{:.2}/{:.2}", r.p50_ms, r.p99_ms),
            format!("{:.0}/s asked, {:.0}/s answered", r.rate_asked, r.rps),
            String::new(),
        );
    }
    line(
        "pipeline clicks/s (asked for)",
        format!("{:.0}", p.clicks.per_sec),
        p.rate_asked
            .map_or("as fast as answered".into(), |r| format!("{r:.0}")),
        p.rate_asked
            .map_or(String::new(), |r| format!("{:.2}", p.clicks.per_sec / r)),
    );
    line(
        "pipeline click to stats p50/p95, ms",
        format!("{:.0}/{:.0}", p.freshness_ms.p50, p.freshness_ms.p95),
        String::new(),
        String::new(),
    );
    line(
        "pipeline verification",
        if p.verification.passed {
            "PASSED".into()
        } else {
            "FAILED".into()
        },
        format!(
            "{} clicks, {} promoters",
            p.clicks.answered, p.verification.affiliates
        ),
        String::new(),
    );
}
