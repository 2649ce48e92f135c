//! End-to-end freshness: once a second, one click on a probe affiliate's link, then the
//! time until api's stats (the admin performance endpoint, from the ClickHouse rollups)
//! count it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::ensure;
use chrono::Utc;

use super::public_api::{Promoter, PublicApi};

const EVERY: Duration = Duration::from_secs(1);
const POLL: Duration = Duration::from_millis(20);
/// A probe not seen by then counts as this late (and the run's verification will say why).
const GIVE_UP: Duration = Duration::from_secs(120);
const BROWSER: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";

pub struct Probe {
    pub promoter: Promoter,
    /// Time from each probe click's redirect to its appearance in the stats.
    pub delays: Vec<Duration>,
}

/// Probes until `stop`; returns the delays seen.
pub async fn run(
    ingest: SocketAddr,
    api: PublicApi,
    promoter: Promoter,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Probe> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let today = || Utc::now().date_naive();
    let from = today();
    let mut delays = Vec::new();
    let mut k: u32 = 0;
    while !stop.load(Ordering::Relaxed) {
        k += 1;
        let started = Instant::now();
        // A new visitor every time (11.0.0.k), so every probe is a valid click.
        let status = http
            .get(format!("http://{ingest}/?ref={}", promoter.code))
            .header(
                "x-forwarded-for",
                std::net::Ipv4Addr::from(0x0B00_0000 + k).to_string(),
            )
            .header("user-agent", BROWSER)
            .send()
            .await?
            .status();
        ensure!(status.is_redirection(), "probe click answered {status}");
        loop {
            let metrics = api
                .performance(promoter.affiliate_id, from, today())
                .await?;
            if metrics["total_clicks"].as_u64().unwrap_or(0) >= u64::from(k) {
                break;
            }
            if started.elapsed() > GIVE_UP {
                break;
            }
            tokio::time::sleep(POLL).await;
        }
        delays.push(started.elapsed());
        if let Some(rest) = EVERY.checked_sub(started.elapsed()) {
            tokio::time::sleep(rest).await;
        }
    }
    Ok(Probe { promoter, delays })
}
