//! Every Grafana panel and every alert rule, proven against the real Prometheus: the three
//! services run as processes of their own against a private slice of the local stack,
//! Prometheus (Debian's package) scrapes them, traffic goes through all of them, and then
//! every panel's query must return a number and every metric a dashboard or rule names
//! must be exported by some service.
//!
//! `harness = false`: this binary is also the service processes it starts (see
//! [`SERVICE_VAR`]), so each service has its own metrics registry, as in production, and
//! is always built from the sources under test.

// Its own test harness: printing the result is its job.
#![allow(clippy::print_stdout)]

mod panels;
mod prometheus;
mod services;
mod traffic;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, ensure};
use reftrack_common::service;
use reftrack_store::api_keys::{self, Scope};

use panels::*;
use prometheus::*;
use reftrack_testkit::procs::{Launch, Process, free_addr};
use reftrack_testkit::{TestStack, metric, wait};
use regex::Regex;
use reqwest::Method;
use serde_json::{Value, json};
use services::*;
use traffic::*;

/// Set to `ingest`, `aggregator` or `api`, this binary runs that service from the
/// environment, as its own `main` would.
const SERVICE_VAR: &str = "REFTRACK_E2E_SERVICE";
const TEST_NAME: &str = "dashboards::every_panel_and_rule_returns_data_from_the_real_services";
/// What Grafana's `$__rate_interval` and `$__range` stand for here: the whole test.
const WINDOW: &str = "5m";
const API_RATE_LIMIT: u32 = 40;
/// Panel queries that show trouble (failures, backlogs, 5xx): zero in this healthy run.
/// Every other query must be above zero once the traffic went through.
const QUIET: &[(&str, &str)] = &[
    // The traffic registers no webhook endpoint.
    ("Webhook attempts", "A"),
    ("Webhook attempts", "B"),
    ("Events to Kafka", "B"),
    ("Events to Kafka", "C"),
    ("Events to Kafka", "D"),
    ("Events to Kafka", "E"),
    ("Events to Kafka", "F"),
    ("Events to Kafka", "G"),
    ("Producer queue and spill", "A"),
    ("Producer queue and spill", "B"),
    ("Consumer lag per partition", "A"),
    ("Fences and rewinds", "A"),
    ("Fences and rewinds", "B"),
    ("Fences and rewinds", "C"),
    ("Fences and rewinds", "D"),
    ("Server error ratio", "A"),
    // The virtual memory limit reads 0 when there is none (RLIMIT_AS unlimited, as here).
    ("Memory", "C"),
];

fn main() -> ExitCode {
    if let Ok(service) = std::env::var(SERVICE_VAR) {
        return run_service(&service);
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        println!("{TEST_NAME}: test");
        return ExitCode::SUCCESS;
    }
    // A name filter that does not match this test skips it, as with the default harness.
    if args
        .iter()
        .any(|a| !a.starts_with('-') && !TEST_NAME.contains(a.as_str()))
    {
        return ExitCode::SUCCESS;
    }
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    match runtime.block_on(every_panel_and_rule_returns_data()) {
        Ok(()) => {
            println!("test {TEST_NAME} ... ok");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("test {TEST_NAME} ... FAILED\n{err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_service(service: &str) -> ExitCode {
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(async {
        match service {
            "ingest" => service::main::<ingest::Config>().await,
            "aggregator" => service::main::<aggregator::Config>().await,
            "api" => service::main::<api::Config>().await,
            other => {
                eprintln!("unknown service {other}");
                ExitCode::FAILURE
            }
        }
    })
}

async fn every_panel_and_rule_returns_data() -> anyhow::Result<()> {
    assert_portable()?;
    let stack = TestStack::new().await?;
    let logs = std::env::temp_dir().join(format!("reftrack-dashboards-{}", stack.id));
    std::fs::create_dir_all(&logs)?;
    let services = Services::start(&stack, &logs).await?;
    let prometheus = Prometheus::start(&services, &logs).await?;

    drive_traffic(&stack, &services, &prometheus).await?;

    let queries = panel_queries()?;
    let mut wrong = Vec::new();
    for query in &queries {
        let instant = query
            .expr
            .replace("$__rate_interval", WINDOW)
            .replace("$__range", WINDOW)
            // Every job and instance, as Grafana's "All" of the variables.
            .replace("$job", ".+")
            .replace("$instance", ".+");
        let value = prometheus.eventual_number(&instant).await;
        let quiet = QUIET.contains(&(query.panel.as_str(), query.ref_id.as_str()));
        println!(
            "  {:>12}  {}{}",
            value.map_or("no data".into(), |v| format!("{v:.4}")),
            query.name(),
            if quiet { "  (zero while healthy)" } else { "" }
        );
        match value {
            None => wrong.push(format!("no data: {} = {instant}", query.name())),
            Some(v) if v <= 0.0 && !quiet => {
                wrong.push(format!("zero after traffic: {} = {instant}", query.name()));
            }
            Some(_) => {}
        }
    }
    ensure!(wrong.is_empty(), "{}", wrong.join("\n"));

    let exported = services.exported_metrics().await?;
    let named = named_metrics(&queries, &alert_exprs()?);
    let missing: Vec<_> = named.difference(&exported).collect();
    ensure!(
        missing.is_empty(),
        "named by a dashboard or rule but exported by no service: {missing:?}"
    );
    let unshown: Vec<_> = exported.difference(&named).collect();
    ensure!(
        unshown.is_empty(),
        "exported but on no dashboard or rule: {unshown:?}"
    );
    prometheus.assert_rules_evaluate().await?;
    println!(
        "  {} panel queries returned data; {} metrics named, all exported",
        queries.len(),
        named.len()
    );
    Ok(())
}
