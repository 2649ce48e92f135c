//! Waiting for what a test needs until a deadline, never for a fixed time: on a busy
//! machine everything is slower, and a test must then be slower, not fail.

use std::future::Future;
use std::time::{Duration, Instant};

/// How often a condition is checked again.
const POLL: Duration = Duration::from_millis(100);

/// Checks `check` until it holds, or fails naming `what` once `limit` has passed.
pub async fn until<F, Fut>(limit: Duration, what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        anyhow::ensure!(Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::sleep(POLL).await;
    }
    Ok(())
}

/// Runs `attempt` until it returns `Ok`, or fails with its last error once `limit` has
/// passed. For reads that meet transient errors (a broker still starting, say).
pub async fn retry<T, F, Fut>(limit: Duration, what: &str, mut attempt: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(error) if Instant::now() >= deadline => {
                return Err(error.context(format!("{what}: not within {limit:?}")));
            }
            Err(error) => tracing::debug!("{what}: {error:#}; trying again"),
        }
        tokio::time::sleep(POLL).await;
    }
}

/// [`until`] for code outside an async runtime.
pub fn until_blocking(
    limit: Duration,
    what: &str,
    mut check: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while !check() {
        anyhow::ensure!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(POLL);
    }
    Ok(())
}
