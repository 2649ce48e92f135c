//! A run's figures: printed as a table, written as JSON.

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Serialize;

use super::conversions::Counters;
use super::model::Mix;
use super::{Args, Verification};
use crate::load::Outcome;

#[derive(Debug, Serialize)]
pub struct Report {
    pub clicks_asked: Option<u64>,
    pub duration_asked_secs: Option<u64>,
    /// Clicks per second asked for; `None` for as fast as ingest answers.
    pub rate_asked: Option<f64>,
    pub connections: usize,
    pub affiliates: usize,
    pub seed: u64,
    pub mix: Mix,
    pub clicks: Clicks,
    pub conversions: Conversions,
    pub freshness_ms: Freshness,
    pub verification: Verification,
}

#[derive(Debug, Serialize)]
pub struct Clicks {
    pub sent: u64,
    pub answered: u64,
    pub unanswered: u64,
    pub by_status: Vec<(u16, u64)>,
    pub seconds: f64,
    pub per_sec: f64,
    pub latency_ms: Latency,
}

#[derive(Debug, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

#[derive(Debug, Serialize)]
pub struct Conversions {
    pub journeys: usize,
    pub accepted: u64,
    pub retried: u64,
    pub resent: u64,
}

#[derive(Debug, Serialize)]
pub struct Freshness {
    pub probes: usize,
    pub p50: f64,
    pub p95: f64,
    pub max: f64,
}

impl Report {
    pub fn new(
        args: &Args,
        outcome: &Outcome,
        sending: Duration,
        counters: &Counters,
        journeys: usize,
        delays: &[Duration],
        verification: Verification,
    ) -> Self {
        let mut delays_ms: Vec<f64> = delays.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        delays_ms.sort_by(f64::total_cmp);
        let at = |q: f64| {
            delays_ms
                .get(((delays_ms.len() as f64 * q).ceil() as usize).saturating_sub(1))
                .copied()
                .unwrap_or(f64::NAN)
        };
        Self {
            clicks_asked: args.duration.is_none().then_some(args.clicks),
            duration_asked_secs: args.duration,
            rate_asked: (args.rate > 0.0).then_some(args.rate),
            connections: args.connections,
            affiliates: args.affiliates,
            seed: args.seed,
            mix: args.mix,
            clicks: Clicks {
                sent: outcome.sent(),
                answered: outcome.requests,
                unanswered: outcome.errors(),
                by_status: outcome.by_status.clone(),
                seconds: sending.as_secs_f64(),
                per_sec: outcome.requests as f64 / sending.as_secs_f64(),
                latency_ms: Latency {
                    p50: outcome.quantile_ms(0.5),
                    p90: outcome.quantile_ms(0.9),
                    p99: outcome.quantile_ms(0.99),
                    max: outcome.latency_us.max() as f64 / 1e3,
                },
            },
            conversions: Conversions {
                journeys,
                accepted: counters.accepted.load(Ordering::Relaxed),
                retried: counters.retried.load(Ordering::Relaxed),
                resent: counters.resent.load(Ordering::Relaxed),
            },
            freshness_ms: Freshness {
                probes: delays_ms.len(),
                p50: at(0.5),
                p95: at(0.95),
                max: delays_ms.last().copied().unwrap_or(f64::NAN),
            },
            verification,
        }
    }

    pub fn print(&self) {
        let c = &self.clicks;
        let pace = self
            .rate_asked
            .map_or("as fast as answered".to_string(), |r| {
                format!("{r:.0}/s open loop")
            });
        println!();
        println!(
            "full pipeline run — {} connections, {pace}, {} promoters (Zipf), seed {}",
            self.connections, self.affiliates, self.seed
        );
        let statuses: Vec<String> = c
            .by_status
            .iter()
            .map(|(s, n)| format!("{s}: {n}"))
            .collect();
        row("clicks sent", format!("{}", c.sent));
        row(
            "clicks answered",
            format!(
                "{} ({}); unanswered {}",
                c.answered,
                statuses.join(", "),
                c.unanswered
            ),
        );
        row(
            "throughput",
            format!("{:.0} clicks/s over {:.1} s", c.per_sec, c.seconds),
        );
        let l = &c.latency_ms;
        row(
            "redirect latency (ms)",
            format!(
                "p50 {:.3}  p90 {:.3}  p99 {:.3}  max {:.3}",
                l.p50, l.p90, l.p99, l.max
            ),
        );
        let v = &self.conversions;
        row(
            "conversions",
            format!(
                "{} journeys, {} events accepted ({} resent on purpose), {} retries after 503 or lost answers",
                v.journeys, v.accepted, v.resent, v.retried
            ),
        );
        let f = &self.freshness_ms;
        row(
            "freshness (ms)",
            format!(
                "click to api stats: p50 {:.0}  p95 {:.0}  max {:.0}  ({} probes)",
                f.p50, f.p95, f.max, f.probes
            ),
        );
        let check = &self.verification;
        row(
            "verification",
            format!(
                "{} for {} promoters (raw, valid, unique clicks, signups, purchases, sales, commissions, balances pending and payable); settled {:.1} s after the traffic",
                if check.passed { "PASSED" } else { "FAILED" },
                check.affiliates,
                check.settled_after_secs
            ),
        );
        for mismatch in &check.mismatches {
            println!("    mismatch: {mismatch}");
        }
    }
}

fn row(label: &str, value: impl std::fmt::Display) {
    println!("  {label:<24} {value}");
}
