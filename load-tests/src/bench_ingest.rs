//! The redirect benchmark: a bare axum server answering the same 302, and ingest with
//! the real broker, driven by the same load in one run.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

use crate::load::{self, Limit, Load, Outcome, Shot};
use crate::stack::Stack;
use reftrack_testkit::metric;
use reftrack_testkit::procs::{
    Launch, Process, cpu_time, free_addr, http_get, pid_listening_on, sibling_binary,
};

pub const LANDING: &str = "https://product.example/welcome";
pub const BENCH_CODE: &str = "BENCH";
const UA: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// Seconds of each measured run.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Seconds of warm-up before each server's runs.
    #[arg(long, default_value_t = 2)]
    pub warmup: u64,
    /// Peak runs, then half-rate runs, per server, interleaved (bare, ingest, bare, ...);
    /// medians are reported.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
}

#[derive(Debug, Serialize)]
pub struct Figures {
    pub bare_rps: f64,
    pub bare_p50_ms: f64,
    pub bare_p99_ms: f64,
    pub ingest_rps: f64,
    pub ingest_p50_ms: f64,
    pub ingest_p99_ms: f64,
    pub ratio: f64,
    pub half_rate_rps: f64,
    pub bare_half_p50_ms: f64,
    pub bare_half_p99_ms: f64,
    pub ingest_half_p50_ms: f64,
    pub ingest_half_p99_ms: f64,
    pub ingest_rss_peak_mib: f64,
    /// CPU per request at half rate, in microseconds.
    pub bare_cpu_us: f64,
    pub ingest_cpu_us: f64,
    pub broker_cpu_us: f64,
    pub events_produced: f64,
    pub events_spilled: f64,
    pub non_302: u64,
}

fn shot() -> load::ShotFn {
    Arc::new(|_| Shot {
        method: hyper::Method::GET,
        path: format!("/?ref={BENCH_CODE}&utm_source=bench"),
        headers: vec![("user-agent", UA.to_string())],
        body: None,
    })
}

pub async fn run(args: &Args, stack: &Stack) -> anyhow::Result<Figures> {
    stack.seed_affiliate(BENCH_CODE).await?;
    let bare_addr = free_addr()?;
    let bare = Launch::new("bare-server", &std::env::current_exe()?, bare_addr)
        .args(&["bare-server", "--addr", &bare_addr.to_string()])
        .ready_path("/healthz")
        .start()?;
    let ingest_addr = free_addr()?;
    let spill_dir =
        std::env::temp_dir().join(format!("reftrack-bench-spill-{}", uuid::Uuid::new_v4()));
    let ingest = Launch::new("ingest", &sibling_binary("ingest")?, ingest_addr)
        .env(
            [
                ("INGEST_ADDR", ingest_addr.to_string()),
                ("LANDING_URL", LANDING.to_string()),
                ("SPILL_DIR", spill_dir.display().to_string()),
                ("RUST_LOG", "warn".to_string()),
            ]
            .into_iter()
            .chain(stack.env())
            .collect::<Vec<_>>(),
        )
        .start()?;

    let measure = |target, rate: Option<f64>, secs: u64| {
        Load::new(
            target,
            args.connections,
            Limit::Duration(Duration::from_secs(secs)),
            shot(),
        )
        .paced(rate)
    };
    eprintln!("warm-up: {} s each", args.warmup);
    load::run(&measure(bare.addr, None, args.warmup)).await?;
    load::run(&measure(ingest.addr, None, args.warmup)).await?;
    let before = ingest_metrics(&ingest);
    let rss = RssSampler::start(ingest.pid());
    let mut bare_runs = Vec::new();
    let mut ingest_runs = Vec::new();
    for round in 1..=args.rounds.max(1) {
        eprintln!(
            "round {round}: bare axum, then ingest ({} connections, {} s each)",
            args.connections, args.duration
        );
        bare_runs.push(load::run(&measure(bare.addr, None, args.duration)).await?);
        ingest_runs.push(load::run(&measure(ingest.addr, None, args.duration)).await?);
    }
    let rss_peak = rss.stop();
    let bare_peak = median(bare_runs);
    let ingest_peak = median(ingest_runs);

    let half = ingest_peak.rps() / 2.0;
    let broker = pid_listening_on(broker_port(&stack.args.kafka.brokers)).unwrap_or(0);
    let (mut bare_half, mut ingest_half) = (HalfRate::default(), HalfRate::default());
    for round in 1..=args.rounds.max(1) {
        eprintln!("round {round}: both at {half:.0} req/s (half of ingest's peak)");
        let (outcome, cpu) = with_cpu(
            &[bare.pid()],
            load::run(&measure(bare.addr, Some(half), args.duration)),
        )
        .await?;
        bare_half.add(outcome, &cpu);
        let (outcome, cpu) = with_cpu(
            &[ingest.pid(), broker],
            load::run(&measure(ingest.addr, Some(half), args.duration)),
        )
        .await?;
        ingest_half.add(outcome, &cpu);
    }

    // Give the producer a moment to hear back from the broker, then read its counters.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = ingest_metrics(&ingest);
    drop(ingest);
    drop(bare);
    let _ = std::fs::remove_dir_all(spill_dir);

    let non_302 = [&bare_peak, &ingest_peak]
        .into_iter()
        .chain(&bare_half.runs)
        .chain(&ingest_half.runs)
        .map(|o| {
            o.errors()
                + o.by_status
                    .iter()
                    .filter(|(s, _)| *s != 302)
                    .map(|(_, n)| n)
                    .sum::<u64>()
        })
        .sum();
    Ok(Figures {
        bare_rps: bare_peak.rps(),
        bare_p50_ms: bare_peak.quantile_ms(0.5),
        bare_p99_ms: bare_peak.quantile_ms(0.99),
        ingest_rps: ingest_peak.rps(),
        ingest_p50_ms: ingest_peak.quantile_ms(0.5),
        ingest_p99_ms: ingest_peak.quantile_ms(0.99),
        ratio: ingest_peak.rps() / bare_peak.rps(),
        half_rate_rps: half,
        bare_half_p50_ms: bare_half.median_ms(0.5),
        bare_half_p99_ms: bare_half.median_ms(0.99),
        ingest_half_p50_ms: ingest_half.median_ms(0.5),
        ingest_half_p99_ms: ingest_half.median_ms(0.99),
        ingest_rss_peak_mib: rss_peak as f64 / (1024.0 * 1024.0),
        bare_cpu_us: bare_half.cpu_us(0),
        ingest_cpu_us: ingest_half.cpu_us(0),
        broker_cpu_us: ingest_half.cpu_us(1),
        events_produced: after.0 - before.0,
        events_spilled: after.1 - before.1,
        non_302,
    })
}

/// One server's paced runs at half rate: each run's latencies, and the CPU per process
/// over all of them.
#[derive(Default)]
struct HalfRate {
    runs: Vec<Outcome>,
    cpu: Vec<Duration>,
}

impl HalfRate {
    fn add(&mut self, outcome: Outcome, cpu: &[Duration]) {
        self.cpu.resize(cpu.len(), Duration::ZERO);
        for (total, used) in self.cpu.iter_mut().zip(cpu) {
            *total += *used;
        }
        self.runs.push(outcome);
    }

    /// The median over the runs of quantile `q`: a run's tail is the one figure here
    /// that a stray stall of the shared machine moves by milliseconds.
    fn median_ms(&self, q: f64) -> f64 {
        let mut values: Vec<f64> = self.runs.iter().map(|r| r.quantile_ms(q)).collect();
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    }

    /// CPU microseconds of process `index` per request answered.
    fn cpu_us(&self, index: usize) -> f64 {
        let requests: u64 = self.runs.iter().map(|r| r.requests).sum();
        self.cpu[index].as_secs_f64() * 1e6 / requests.max(1) as f64
    }
}

/// Runs `work` and returns its result with the CPU time each of `pids` used meanwhile.
async fn with_cpu<F>(pids: &[u32], work: F) -> anyhow::Result<(Outcome, Vec<Duration>)>
where
    F: std::future::Future<Output = anyhow::Result<Outcome>>,
{
    let before: Vec<Duration> = pids.iter().map(|p| cpu_time(*p)).collect();
    let outcome = work.await?;
    let used = pids
        .iter()
        .zip(before)
        .map(|(p, b)| cpu_time(*p).saturating_sub(b))
        .collect();
    Ok((outcome, used))
}

pub fn broker_port(brokers: &str) -> u16 {
    brokers
        .split(',')
        .next()
        .and_then(|b| b.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or(9092)
}

/// The run with the median throughput.
fn median(mut runs: Vec<Outcome>) -> Outcome {
    runs.sort_by(|a, b| a.rps().total_cmp(&b.rps()));
    let middle = runs.len() / 2;
    runs.swap_remove(middle)
}

/// (events produced, events spilled) from ingest's /metrics.
fn ingest_metrics(ingest: &Process) -> (f64, f64) {
    let text = http_get(ingest.addr, "/metrics")
        .map(|(_, body)| body)
        .unwrap_or_default();
    (
        metric(&text, "ingest_events_produced_total"),
        metric(&text, "ingest_events_spilled_total"),
    )
}

pub fn print(args: &Args, f: &Figures) {
    println!();
    println!(
        "ingest redirect benchmark — {} connections, {} s per run, medians of {} interleaved runs at peak and at half rate, one machine",
        args.connections, args.duration, args.rounds
    );
    println!("{:<28} {:>10} {:>9} {:>9}", "", "req/s", "p50 ms", "p99 ms");
    println!(
        "{:<28} {:>10.0} {:>9.3} {:>9.3}",
        "bare axum 302 (peak)", f.bare_rps, f.bare_p50_ms, f.bare_p99_ms
    );
    println!(
        "{:<28} {:>10.0} {:>9.3} {:>9.3}",
        "ingest + tansu (peak)", f.ingest_rps, f.ingest_p50_ms, f.ingest_p99_ms
    );
    println!("{:<28} {:>10.3}", "ratio ingest / bare", f.ratio);
    println!(
        "{:<28} {:>10.0} {:>9.3} {:>9.3}",
        "bare axum 302 (half rate)", f.half_rate_rps, f.bare_half_p50_ms, f.bare_half_p99_ms
    );
    println!(
        "{:<28} {:>10.0} {:>9.3} {:>9.3}",
        "ingest (half rate)", f.half_rate_rps, f.ingest_half_p50_ms, f.ingest_half_p99_ms
    );
    println!(
        "{:<28} {:>10.1}",
        "ingest RSS at peak (MiB)", f.ingest_rss_peak_mib
    );
    println!(
        "{:<28} {:>10.1}  (ingest {:.1}, broker {:.1})",
        "CPU µs per request, bare", f.bare_cpu_us, f.ingest_cpu_us, f.broker_cpu_us
    );
    println!(
        "{:<28} {:>10.0}  (spilled {:.0}, non-302 answers {})",
        "click events produced", f.events_produced, f.events_spilled, f.non_302
    );
}

/// Samples a process's RSS every 100 ms and keeps the maximum.
struct RssSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl RssSampler {
    fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, peak) = (stop.clone(), peak.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    peak.fetch_max(reftrack_testkit::procs::rss_of(pid), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        };
        Self { stop, peak, thread }
    }

    fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        self.peak.load(Ordering::Relaxed)
    }
}
