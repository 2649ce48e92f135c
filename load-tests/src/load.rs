//! A lean HTTP/1.1 load generator: async keep-alive connections, each with one request
//! in flight, either as fast as the server answers (closed loop, for peak throughput) or
//! paced to a target rate (open loop, for latency at a given load). Pacing is done by one
//! OS thread that sleeps with microsecond precision and releases "due" tickets to the
//! connections (tokio's timer has a 1 ms grain, which would bunch requests into bursts).
//! Paced latency is measured from the moment a request was *due*, so a stalled server
//! cannot hide its queue (no coordinated omission). Latencies go to an HDR histogram in
//! microseconds. A run ends after a duration or a count of requests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// What one request looks like; built per request by the caller's generator.
pub struct Shot {
    pub method: hyper::Method,
    pub path: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Option<Bytes>,
}

pub type ShotFn = Arc<dyn Fn(u64) -> Shot + Send + Sync>;

#[derive(Clone, Copy, Debug)]
pub enum Limit {
    Duration(Duration),
    Requests(u64),
}

#[derive(Clone)]
pub struct Load {
    pub target: SocketAddr,
    pub connections: usize,
    pub limit: Limit,
    /// Requests per second across all connections; `None` for as fast as possible.
    pub rate: Option<f64>,
    /// Builds request number `n` (numbers are handed out in order, from 0).
    pub shot: ShotFn,
    /// Counts answered requests as they come, for a progress display.
    pub answered: Arc<AtomicU64>,
}

impl Load {
    pub fn new(target: SocketAddr, connections: usize, limit: Limit, shot: ShotFn) -> Self {
        Self {
            target,
            connections,
            limit,
            rate: None,
            shot,
            answered: Arc::default(),
        }
    }

    pub fn paced(mut self, rate: Option<f64>) -> Self {
        self.rate = rate;
        self
    }
}

pub struct Outcome {
    /// Requests answered.
    pub requests: u64,
    /// Numbers of the requests that got no answer (connection errors).
    pub unanswered: Vec<u64>,
    pub by_status: Vec<(u16, u64)>,
    pub elapsed: Duration,
    pub latency_us: Histogram<u64>,
}

impl Outcome {
    /// Requests that got no answer.
    pub fn errors(&self) -> u64 {
        self.unanswered.len() as u64
    }

    /// Requests sent, answered or not.
    pub fn sent(&self) -> u64 {
        self.requests + self.errors()
    }

    pub fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    pub fn quantile_ms(&self, q: f64) -> f64 {
        self.latency_us.value_at_quantile(q) as f64 / 1000.0
    }
}

struct Worker {
    histogram: Histogram<u64>,
    statuses: Vec<(u16, u64)>,
    unanswered: Vec<u64>,
}

/// Runs `load` and returns what it measured.
pub async fn run(load: &Load) -> anyhow::Result<Outcome> {
    if let Some(rate) = load.rate {
        return paced(load, rate).await;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let counter = Arc::new(AtomicU64::new(0));
    let last = match load.limit {
        Limit::Requests(n) => n,
        Limit::Duration(_) => u64::MAX,
    };
    let start = Instant::now();
    let mut workers = Vec::with_capacity(load.connections);
    for _ in 0..load.connections {
        let load = load.clone();
        let stop = stop.clone();
        let counter = counter.clone();
        workers.push(tokio::spawn(async move {
            connection(&load, &stop, &counter, last).await
        }));
    }
    if let Limit::Duration(duration) = load.limit {
        tokio::time::sleep(duration).await;
        stop.store(true, Ordering::Relaxed);
    }
    let mut finished = Vec::with_capacity(workers.len());
    for worker in workers {
        finished.push(worker.await??);
    }
    merge(finished, start.elapsed())
}

fn merge(workers: Vec<Worker>, elapsed: Duration) -> anyhow::Result<Outcome> {
    let mut latency_us = Histogram::new_with_bounds(1, 60_000_000, 3)?;
    let mut by_status: Vec<(u16, u64)> = Vec::new();
    let mut unanswered = Vec::new();
    for worker in workers {
        latency_us.add(&worker.histogram)?;
        unanswered.extend(worker.unanswered);
        for (status, n) in worker.statuses {
            match by_status.iter_mut().find(|(s, _)| *s == status) {
                Some(entry) => entry.1 += n,
                None => by_status.push((status, n)),
            }
        }
    }
    by_status.sort_unstable();
    unanswered.sort_unstable();
    Ok(Outcome {
        requests: latency_us.len(),
        unanswered,
        by_status,
        elapsed,
        latency_us,
    })
}

impl Worker {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            histogram: Histogram::new_with_bounds(1, 60_000_000, 3)?,
            statuses: Vec::new(),
            unanswered: Vec::new(),
        })
    }

    fn record(&mut self, status: u16, latency: Duration, answered: &AtomicU64) {
        answered.fetch_add(1, Ordering::Relaxed);
        self.histogram.saturating_record(latency.as_micros() as u64);
        match self.statuses.iter_mut().find(|(s, _)| *s == status) {
            Some(entry) => entry.1 += 1,
            None => self.statuses.push((status, 1)),
        }
    }
}

async fn connection(
    load: &Load,
    stop: &AtomicBool,
    counter: &AtomicU64,
    last: u64,
) -> anyhow::Result<Worker> {
    let mut worker = Worker::new()?;
    let mut sender = connect(load.target).await?;
    while !stop.load(Ordering::Relaxed) {
        let n = counter.fetch_add(1, Ordering::Relaxed);
        if n >= last {
            break;
        }
        let sent = Instant::now();
        match send(&mut sender, (load.shot)(n)).await {
            Ok(status) => worker.record(status, sent.elapsed(), &load.answered),
            Err(_) => {
                worker.unanswered.push(n);
                sender = connect(load.target).await.context("reconnect")?;
            }
        }
    }
    Ok(worker)
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// Sends one request and reads the whole response; returns its status.
async fn send(sender: &mut Sender, shot: Shot) -> anyhow::Result<u16> {
    let mut request = Request::builder()
        .method(shot.method)
        .uri(shot.path)
        .header("host", "bench");
    for (name, value) in &shot.headers {
        request = request.header(*name, value);
    }
    let request = request.body(Full::new(shot.body.unwrap_or_default()))?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    // Drain the body so the connection can carry the next request.
    response.into_body().collect().await?;
    Ok(status)
}

/// Open-loop pacing: a thread releases tickets at their due times; whichever connection
/// is free takes the next one. Tickets wait when every connection is busy, and that wait
/// counts in the latency.
async fn paced(load: &Load, rate: f64) -> anyhow::Result<Outcome> {
    let (tickets, queue) = flume::unbounded::<Instant>();
    let start = Instant::now() + Duration::from_millis(20);
    let interval = Duration::from_secs_f64(1.0 / rate);
    let total = match load.limit {
        Limit::Requests(n) => n,
        Limit::Duration(duration) => (rate * duration.as_secs_f64()) as u64,
    };
    let pacer = std::thread::spawn(move || {
        // Wake every ~100 µs and release what falls due until the next wake.
        const WINDOW: Duration = Duration::from_micros(100);
        let mut n = 0;
        while n < total {
            let horizon = Instant::now() + WINDOW;
            while n < total && start + interval.mul_f64(n as f64) <= horizon {
                if tickets.send(start + interval.mul_f64(n as f64)).is_err() {
                    return;
                }
                n += 1;
            }
            let next = start + interval.mul_f64(n as f64);
            if let Some(wait) = next.checked_duration_since(Instant::now() + WINDOW) {
                std::thread::sleep(wait);
            }
        }
    });
    let counter = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::with_capacity(load.connections);
    for _ in 0..load.connections {
        let (load, queue, counter) = (load.clone(), queue.clone(), counter.clone());
        workers.push(tokio::spawn(async move {
            let mut worker = Worker::new()?;
            let mut sender = connect(load.target).await?;
            while let Ok(due) = queue.recv_async().await {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                // Late: count from when it was due (the wait is the server's queue).
                // Early (released within the window): count from when it was sent.
                let from = due.min(Instant::now());
                match send(&mut sender, (load.shot)(n)).await {
                    Ok(status) => worker.record(status, from.elapsed(), &load.answered),
                    Err(_) => {
                        worker.unanswered.push(n);
                        sender = connect(load.target).await.context("reconnect")?;
                    }
                }
            }
            anyhow::Ok(worker)
        }));
    }
    drop(queue);
    let mut finished = Vec::with_capacity(workers.len());
    for worker in workers {
        finished.push(worker.await??);
    }
    pacer
        .join()
        .map_err(|_| anyhow::anyhow!("the pacer panicked"))?;
    merge(finished, start.elapsed())
}

async fn connect(target: SocketAddr) -> anyhow::Result<Sender> {
    let stream = TcpStream::connect(target)
        .await
        .with_context(|| format!("connect to {target}"))?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}
