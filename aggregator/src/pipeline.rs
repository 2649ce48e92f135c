//! The loop both topics run: read a batch, apply it to the sinks until that succeeds,
//! then hint Kafka where the sinks stand. A batch is never skipped: a failing sink is
//! retried with backoff, and a fenced batch (another instance moved a partition's
//! progress) is retried against fresh positions, which skips what is already applied.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::consume::{Record, Rewind, TopicConsumer};
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
    /// Reads the sinks' positions into `positions` (when not cached).
    fn load_positions(
        &self,
        positions: &mut Positions,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Applies `records` (contiguous per partition from where the sinks stand) to the
    /// sinks that do not have them yet, moving `positions`.
    fn apply(
        &self,
        records: &[&Record],
        positions: &mut Positions,
    ) -> impl Future<Output = Result<(), ApplyError>> + Send;
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
            match apply(&consumer, &sink, &batch, &mut positions).await {
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

/// Applies what the sinks still need of `batch`. A partition that does not continue
/// where the sinks stand is rewound there (its records in this batch are left for the
/// refetch), unless retention already deleted the missing messages.
async fn apply(
    consumer: &TopicConsumer,
    sink: &impl BatchSink,
    batch: &[Record],
    positions: &mut Positions,
) -> Result<(), ApplyError> {
    sink.load_positions(positions).await?;
    loop {
        let (records, gaps) = positions.continuous(batch);
        let mut lost = false;
        for (partition, expected) in gaps {
            metrics::counter!(m::REWINDS, "topic" => consumer.stream()).increment(1);
            let depth = positions.next_rewind_depth(partition);
            match consumer.rewind(partition, expected, depth).await {
                Ok(Rewind::Seeked) => {
                    tracing::warn!(
                        topic = consumer.topic(),
                        partition,
                        expected,
                        depth,
                        "fetch did not continue where the sinks stand; rewound"
                    );
                }
                Ok(Rewind::Lost { first_available }) => {
                    tracing::error!(
                        topic = consumer.topic(),
                        partition,
                        lost = first_available - expected,
                        "messages were deleted by retention before the sinks had them"
                    );
                    positions.set_floor(partition, first_available);
                    lost = true;
                }
                Err(err) => tracing::warn!(
                    topic = consumer.topic(),
                    partition,
                    "cannot rewind: {err:#}"
                ),
            }
        }
        if !lost {
            for record in &records {
                positions.continued(record.partition);
            }
            return sink.apply(&records, positions).await;
        }
    }
}
