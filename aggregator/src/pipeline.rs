//! The loop both topics run: read a batch, apply it to the sinks until that succeeds,
//! then hint Kafka where the sinks stand. A batch is never skipped: a failing sink is
//! retried with backoff, and a fenced batch (another instance moved a partition's
//! progress) is retried against fresh positions, which skips what is already applied.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::consume::{Record, TopicConsumer};
use crate::metrics as m;
use crate::positions::Positions;

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Another writer moved a partition's progress: re-read positions and retry.
    #[error("fenced: another instance moved this partition's progress")]
    Fenced,
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

impl From<sqlx::Error> for ApplyError {
    fn from(err: sqlx::Error) -> Self {
        ApplyError::Failed(err.into())
    }
}

impl From<clickhouse::error::Error> for ApplyError {
    fn from(err: clickhouse::error::Error) -> Self {
        ApplyError::Failed(err.into())
    }
}

/// What a topic does with a batch.
pub trait BatchSink {
    /// Applies `batch` to the sinks that do not have it yet, moving `positions`.
    fn apply(
        &self,
        batch: &[Record],
        positions: &mut Positions,
    ) -> impl std::future::Future<Output = Result<(), ApplyError>> + Send;
}

pub struct Limits {
    pub max_events: usize,
    pub max_wait: Duration,
}

/// Runs until `cancel`: a batch being applied is finished first, so a graceful stop
/// leaves nothing half done (a crash is covered by the positions kept in the sinks).
pub async fn run(
    consumer: TopicConsumer,
    sink: impl BatchSink,
    limits: Limits,
    cancel: CancellationToken,
) {
    let mut positions = Positions::default();
    while let Some(batch) = consumer
        .next_batch(limits.max_events, limits.max_wait, &cancel)
        .await
    {
        if consumer.take_reassigned() {
            positions.invalidate();
        }
        let mut backoff = Duration::from_millis(100);
        loop {
            match sink.apply(&batch, &mut positions).await {
                Ok(()) => break,
                Err(ApplyError::Fenced) => {
                    metrics::counter!(m::FENCED).increment(1);
                    tracing::warn!(
                        topic = consumer.topic(),
                        "batch fenced; re-reading positions"
                    );
                    positions.invalidate();
                }
                Err(ApplyError::Failed(err)) => {
                    tracing::error!(
                        topic = consumer.topic(),
                        "batch failed, retrying in {backoff:?}: {err:#}"
                    );
                    positions.invalidate();
                    tokio::select! {
                        () = cancel.cancelled() => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
        consumer.commit_hint(&positions.both());
    }
}
