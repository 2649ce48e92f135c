//! Tracing and Prometheus set-up, and the HTTP request metrics every service exports.

use std::collections::HashMap;
use std::sync::{OnceLock, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Starts logging to stderr (stdout stays for a command's output, such as a created key),
/// once per process; `RUST_LOG` filters (default `info`, without Postgres' notices of
/// idempotent DDL such as "relation already exists, skipping").
pub fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx::postgres::notice=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second initialisation (tests start several services in one process) is a no-op.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Latency buckets, in seconds, from 50µs (the click path) to 10 minutes (a pipeline
/// falling behind must show as such, not as "over 10 s").
const LATENCY_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

/// Size buckets for batch-size histograms (events per batch).
const SIZE_BUCKETS: &[f64] = &[
    1.0, 10.0, 100.0, 500.0, 1000.0, 5000.0, 10000.0, 50000.0, 100000.0,
];

/// The process's own figures (CPU, memory, file descriptors, threads, start time), read
/// at each scrape.
fn process_collector() -> &'static metrics_process::Collector {
    static COLLECTOR: OnceLock<metrics_process::Collector> = OnceLock::new();
    COLLECTOR.get_or_init(metrics_process::Collector::default)
}

pub const BUILD_INFO: &str = "reftrack_build_info";

/// Installs the process-wide Prometheus recorder (once) and returns its handle, which
/// renders `/metrics` (with [`render`]). Histograms named `*_seconds` and `*_size` get
/// real buckets so that dashboards can compute quantiles across instances. `service`
/// names this service in `reftrack_build_info`.
pub fn install_metrics(service: &'static str) -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    let handle = HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Suffix("_size".into()), SIZE_BUCKETS)
                })
                .expect("bucket lists are non-empty")
                .install_recorder()
                .expect("the metrics recorder is installed once per process");
            // Histogram samples queue up until drained; drain them every few seconds so
            // memory stays flat even when nothing scrapes.
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(Duration::from_secs(5));
                        upkeep.run_upkeep();
                    }
                })
                .expect("spawn metrics upkeep thread");
            describe_http_metrics();
            process_collector().describe();
            metrics::describe_gauge!(
                BUILD_INFO,
                "Always 1: the service and version of this process."
            );
            handle
        })
        .clone();
    metrics::gauge!(BUILD_INFO, "service" => service, "version" => env!("CARGO_PKG_VERSION"))
        .set(1.0);
    handle
}

/// The `/metrics` exposition, with the process figures read now.
pub fn render(handle: &PrometheusHandle) -> String {
    process_collector().collect();
    handle.render()
}

pub const HTTP_REQUESTS: &str = "http_requests_total";
pub const HTTP_DURATION: &str = "http_request_duration_seconds";

fn describe_http_metrics() {
    metrics::describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests answered, by matched route, method and status."
    );
    metrics::describe_histogram!(
        HTTP_DURATION,
        metrics::Unit::Seconds,
        "HTTP request latency, by matched route."
    );
}

/// Axum middleware recording request count and latency labelled by the *matched route*
/// (never the raw path, which would carry referral codes and ids). Metric handles are
/// cached per route, method and status, so the hot path neither allocates nor hashes
/// label sets.
pub async fn track_http(request: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = request.extensions().get::<MatchedPath>().cloned();
    let method = method_label(request.method());
    let response = next.run(request).await;
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    record_http(route, method, response.status().as_u16(), start);
    response
}

/// Records one answered request: its count and its duration since `start`.
pub fn record_http(route: &str, method: &'static str, status: u16, start: Instant) {
    let handles = http_handles(route, method, status);
    handles.duration.record(start.elapsed().as_secs_f64());
    handles.requests.increment(1);
}

#[derive(Clone)]
struct HttpHandles {
    duration: metrics::Histogram,
    requests: metrics::Counter,
}

/// A request method as a label: the standard ones by name, any other as `other`, so that
/// clients inventing methods cannot grow the label set (and the process's memory).
pub fn method_label(method: &Method) -> &'static str {
    const KNOWN: [Method; 9] = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::OPTIONS,
        Method::TRACE,
        Method::CONNECT,
    ];
    match KNOWN.iter().find(|known| *known == method) {
        Some(known) => known.as_str(),
        None => "other",
    }
}

/// Route → the handles seen for it, by method and status (a short list per route).
type HandleCache = HashMap<Box<str>, Vec<(&'static str, u16, HttpHandles)>>;

fn http_handles(route: &str, method: &'static str, status: u16) -> HttpHandles {
    static CACHE: OnceLock<RwLock<HandleCache>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let lookup = |cache: &HandleCache| {
        cache
            .get(route)?
            .iter()
            .find(|(m, s, _)| *m == method && *s == status)
            .map(|(_, _, h)| h.clone())
    };
    if let Some(handles) = lookup(&cache.read().unwrap_or_else(|e| e.into_inner())) {
        return handles;
    }
    let handles = HttpHandles {
        duration: metrics::histogram!(HTTP_DURATION, "route" => route.to_owned()),
        requests: metrics::counter!(
            HTTP_REQUESTS,
            "route" => route.to_owned(),
            "method" => method,
            "status" => status.to_string()
        ),
    };
    cache
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .entry(route.into())
        .or_default()
        .push((method, status, handles.clone()));
    handles
}
