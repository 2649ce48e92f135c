//! The loop both topics run. Batches overlap in three stages: while batch N is written to
//! the sinks, batch N+1 is prepared (checked for continuity, decoded, and given its
//! verdicts) and then batch N+2 fetched. A batch is never skipped: a failing sink is
//! retried with backoff, and a fenced batch (another instance moved a partition's
//! progress) is retried against fresh positions, which skips what is already applied.
//! After each write, Kafka is told where the sinks stand (a hint for the next fetch,
//! never trusted).
//!
//! Before records of a partition are applied or skipped, the partition's log is checked
//! to be the one the positions came from (once per assignment, after any broker trouble,
//! and when a fetch goes back below the sinks by itself): the broker must still hold the
//! last record Postgres applied. When it does not, a new epoch begins (see
//! [`crate::positions::begin_epoch`]) and the new log is applied from its start.
//!
//! Long because the loop, its retry rules and the epoch checks are one state machine
//! whose steps read best together.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::consume::{Held, Polled, Record, Rewind, TopicConsumer};
use crate::metrics as m;
use crate::positions::{self, Positions};

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

/// What a topic does with a batch, in two stages.
pub trait BatchSink {
    /// A batch ready to be written: its records and what was decided about them.
    type Prepared: Send + Sync;

    /// Reads the sinks' positions into `positions` (when not cached).
    fn load_positions(
        &self,
        positions: &mut Positions,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Decodes `records` (contiguous per partition from where the sinks stand) and
    /// decides what needs no sink (verdicts). `positions` may lag by the batch in flight.
    fn prepare(
        &self,
        records: Vec<Record>,
        positions: &Positions,
    ) -> impl Future<Output = anyhow::Result<Self::Prepared>> + Send;

    /// Writes what the sinks still need of `prepared`, moving `positions`.
    fn write(
        &self,
        prepared: &Self::Prepared,
        positions: &mut Positions,
    ) -> impl Future<Output = Result<(), ApplyError>> + Send;

    /// The stores an epoch change moves: Postgres, ClickHouse, and the topic's name.
    fn stores(&self) -> (&sqlx::PgPool, &clickhouse::Client, &str);
}

pub struct Limits {
    pub max_events: usize,
    pub max_wait: Duration,
}

/// Where fetching is expected to continue in each partition, and how hard to rewind
/// when it does not.
#[derive(Debug, Default)]
struct Cursor {
    next: HashMap<i32, i64>,
    /// How far before the expected offset the next rewind goes: a broker may answer a
    /// fetch inside a record batch with the *next* batch (tansu 0.6 does), so each retry
    /// goes deeper (512, 4096, 32768, ... messages) until a fetch starts early enough.
    depth: HashMap<i32, i64>,
    /// Where a partition's data now starts, when retention deleted messages the sinks
    /// never got (logged, counted, accepted).
    floor: HashMap<i32, i64>,
    /// Partitions whose log was found to be the positions' own, with the offset expected
    /// at the time.
    checked: HashMap<i32, i64>,
}

impl Cursor {
    fn expected(&self, partition: i32, positions: &Positions) -> i64 {
        self.next
            .get(&partition)
            .copied()
            .unwrap_or_else(|| first_expected(&self.floor, positions, partition))
    }

    /// Partitions of `batch` whose log must be checked before their records are used:
    /// not checked yet, or fetched back below the sinks without a rewind of ours.
    fn to_check(&self, batch: &[Record], positions: &Positions) -> BTreeSet<i32> {
        let mut first: BTreeMap<i32, i64> = BTreeMap::new();
        for record in batch {
            first.entry(record.partition).or_insert(record.offset);
        }
        first
            .into_iter()
            .filter(|(p, offset)| {
                let expected = self.expected(*p, positions);
                match self.checked.get(p) {
                    None => true,
                    Some(at) => {
                        *offset < expected && !self.depth.contains_key(p) && *at != expected
                    }
                }
            })
            .map(|(p, _)| p)
            .collect()
    }

    /// After a new epoch: `partition` starts afresh from the positions.
    fn forget(&mut self, partition: i32) {
        self.next.remove(&partition);
        self.depth.remove(&partition);
        self.floor.remove(&partition);
    }

    /// Splits a batch into the records that continue where expected, in order, and the
    /// partitions that jumped ahead (with the offset expected). Records already behind
    /// the sinks are dropped. Fetching may restart anywhere after a crash or a
    /// rebalance; nothing is ever jumped over.
    fn split(
        &mut self,
        batch: &[Record],
        positions: &Positions,
    ) -> (Vec<Record>, BTreeMap<i32, i64>) {
        let mut gaps = BTreeMap::new();
        let mut records = Vec::with_capacity(batch.len());
        for record in batch {
            let p = record.partition;
            if gaps.contains_key(&p) {
                continue;
            }
            let expected = self
                .next
                .entry(p)
                .or_insert_with(|| first_expected(&self.floor, positions, p));
            if record.offset < *expected {
                continue;
            }
            if record.offset > *expected {
                gaps.insert(p, *expected);
                continue;
            }
            *expected += 1;
            if !self.depth.is_empty() {
                self.depth.remove(&p);
            }
            records.push(record.clone());
        }
        (records, gaps)
    }

    fn next_depth(&mut self, partition: i32) -> i64 {
        let depth = self.depth.entry(partition).or_insert(0);
        *depth = if *depth == 0 {
            512
        } else {
            depth.saturating_mul(8)
        };
        *depth
    }
}

/// Where a partition with no expectation yet continues: where the sinks stand, or where
/// retention left its data.
fn first_expected(floor: &HashMap<i32, i64>, positions: &Positions, partition: i32) -> i64 {
    let floor = floor.get(&partition).copied().unwrap_or(0);
    positions.first_needed(partition).max(floor)
}

/// Runs until `cancel`; the batches in hand are finished first, so a graceful stop
/// leaves nothing half done (a crash is covered by the positions kept in the sinks).
/// Fails when this instance lost its hold on its partitions.
pub async fn run<S: BatchSink>(
    consumer: TopicConsumer,
    sink: S,
    limits: Limits,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let mut positions = Positions::default();
    let mut cursor = Cursor::default();
    let mut hold = None;
    if consumer.claims_partitions() {
        let Some(claimed) = claim(&sink, &consumer, &mut positions, &cancel).await else {
            return Ok(());
        };
        consumer.take_reassigned();
        cursor.checked = claimed.checked;
        hold = Some(claimed.hold);
    }
    let mut in_flight: Option<S::Prepared> = None;
    let mut fetched: Option<Polled> = None;
    loop {
        let polled = match fetched.take() {
            Some(polled) => polled,
            // With a batch in flight, a quiet topic must not keep it from the sinks.
            None => {
                let idle_after = in_flight.as_ref().map(|_| limits.max_wait);
                consumer
                    .next_batch(limits.max_events, limits.max_wait, idle_after, &cancel)
                    .await
            }
        };
        let mut batch = match polled {
            Polled::Batch(batch) => batch,
            Polled::Idle => {
                if !write(&sink, in_flight.take(), &mut positions, &consumer, &cancel).await {
                    return Ok(());
                }
                consumer.commit_hint(&positions.both());
                continue;
            }
            Polled::Cancelled => break,
        };
        if let Some(hold) = hold.as_mut() {
            anyhow::ensure!(
                hold.still_held().await,
                "lost the Postgres connection that holds this instance's partitions; \
                 stopping, so that no other instance's writes overlap this one's"
            );
        }
        if consumer.take_reassigned() {
            positions.invalidate();
            cursor = Cursor::default();
        }
        if consumer.take_suspect() {
            cursor.checked.clear();
        }
        if !load(&sink, &mut positions, &consumer, &cancel).await {
            return Ok(());
        }
        positions.to_logical(&mut batch);
        let to_check = cursor.to_check(&batch, &positions);
        if !to_check.is_empty() {
            // What is in flight was fetched before the doubt: it goes to the sinks first,
            // so that a new epoch starts past it.
            if !write(&sink, in_flight.take(), &mut positions, &consumer, &cancel).await {
                return Ok(());
            }
            consumer.commit_hint(&positions.both());
            check_logs(
                &sink,
                &consumer,
                &mut cursor,
                &mut positions,
                &mut batch,
                to_check,
            )
            .await;
        }
        let snapshot = positions.clone();
        let written = write(&sink, in_flight.take(), &mut positions, &consumer, &cancel);
        // The next batch is fetched while this one's predecessor is still being written,
        // but only after this one is prepared: preparing may rewind a partition, and a
        // fetch must not straddle a rewind. (Fetching sooner changes nothing else: what
        // comes of a batch depends on the positions it meets, not on when it arrived.)
        let prepared_then_fetched = async {
            let prepared =
                prepare(&sink, &consumer, &mut cursor, &batch, &snapshot, &cancel).await?;
            let next = consumer
                .next_batch(
                    limits.max_events,
                    limits.max_wait,
                    Some(limits.max_wait),
                    &cancel,
                )
                .await;
            Some((prepared, next))
        };
        let (written, prepared) = tokio::join!(written, prepared_then_fetched);
        if !written {
            return Ok(());
        }
        consumer.commit_hint(&positions.both());
        match prepared {
            Some((prepared, next)) => {
                in_flight = Some(prepared);
                fetched = Some(next);
            }
            None => return Ok(()),
        }
    }
    // Cancelled: write what is prepared, then stop.
    write(
        &sink,
        in_flight.take(),
        &mut positions,
        &consumer,
        &CancellationToken::new(),
    )
    .await;
    consumer.commit_hint(&positions.both());
    Ok(())
}

/// Checks the log of each partition in `partitions` (see the module's comment). A new
/// epoch re-bases the partition's records in `batch`; records of a partition that could
/// not be checked are left for a refetch, never applied or skipped unchecked.
async fn check_logs<S: BatchSink>(
    sink: &S,
    consumer: &TopicConsumer,
    cursor: &mut Cursor,
    positions: &mut Positions,
    batch: &mut Vec<Record>,
    partitions: BTreeSet<i32>,
) {
    let settled = settle_logs(sink, consumer, positions, batch, &partitions).await;
    for partition in &settled.new_epochs {
        cursor.forget(*partition);
    }
    let unchecked = settled.unsettled;
    for partition in partitions.difference(&unchecked) {
        let expected = cursor.expected(*partition, positions);
        cursor.checked.insert(*partition, expected);
    }
    if unchecked.is_empty() {
        return;
    }
    batch.retain(|r| !unchecked.contains(&r.partition));
    for partition in unchecked {
        let expected = positions.to_kafka(partition, cursor.expected(partition, positions));
        if let Err(err) = consumer.rewind(partition, expected, 0).await {
            tracing::warn!(
                topic = consumer.topic(),
                partition,
                "cannot rewind: {err:#}"
            );
        }
    }
}

/// Moves `partition` into a new epoch; whether it did (not fenced, no store error).
async fn begin_epoch<S: BatchSink>(
    sink: &S,
    consumer: &TopicConsumer,
    positions: &mut Positions,
    batch: &mut [Record],
    partition: i32,
) -> bool {
    let (pool, clickhouse, topic) = sink.stores();
    let old_base = positions.base(partition);
    match positions::begin_epoch(pool, clickhouse, topic, partition, positions).await {
        Ok(Some(lost)) => {
            let base = positions.base(partition);
            metrics::counter!(m::EPOCHS, "topic" => consumer.stream()).increment(1);
            tracing::error!(
                topic,
                partition,
                base,
                lost_for_clickhouse = lost,
                "the partition holds another log than the sinks applied (topic re-created, \
                 or the broker came back empty); applying it as a new epoch from its start"
            );
            for record in batch.iter_mut().filter(|r| r.partition == partition) {
                record.offset += base - old_base;
            }
            true
        }
        Ok(None) => {
            tracing::warn!(topic, partition, "new epoch fenced; re-reading positions");
            positions.invalidate();
            false
        }
        Err(err) => {
            tracing::error!(topic, partition, "cannot begin a new epoch: {err:#}");
            positions.invalidate();
            false
        }
    }
}

/// With static assignment: this instance's hold on its partitions, a Postgres advisory
/// lock per partition on a connection of its own. Two instances given the same number
/// (or overlapping shares) never both write a partition: the second waits. A killed
/// instance's locks go with its connection.
struct Hold {
    connection: sqlx::PgConnection,
}

impl Hold {
    /// Whether the locks are still held (checked before each batch, a round trip): with
    /// the connection gone, another instance may take the partitions, so this one stops.
    async fn still_held(&mut self) -> bool {
        sqlx::Connection::ping(&mut self.connection).await.is_ok()
    }
}

/// What [`claim`] got: the hold, and the partitions whose logs it checked (with the
/// offset then expected).
struct Claimed {
    hold: Hold,
    checked: HashMap<i32, i64>,
}

/// With static assignment: locks this instance's partitions (waiting while another
/// instance holds one), then takes them where the sinks stand. `None` when cancelled.
async fn claim<S: BatchSink>(
    sink: &S,
    consumer: &TopicConsumer,
    positions: &mut Positions,
    cancel: &CancellationToken,
) -> Option<Claimed> {
    let mut backoff = Duration::from_millis(100);
    loop {
        match try_claim(sink, consumer, positions, cancel).await {
            Ok(hold) => return hold,
            Err(err) => {
                if !retry_later(
                    consumer,
                    cancel,
                    &mut backoff,
                    "cannot claim partitions",
                    &err,
                )
                .await
                {
                    return None;
                }
            }
        }
    }
}

async fn try_claim<S: BatchSink>(
    sink: &S,
    consumer: &TopicConsumer,
    positions: &mut Positions,
    cancel: &CancellationToken,
) -> anyhow::Result<Option<Claimed>> {
    let (pool, _, topic) = sink.stores();
    let partitions = consumer.share().await?;
    let mut connection = pool.acquire().await?.detach();
    let mut waiting_logged = false;
    for partition in &partitions {
        loop {
            let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext($1), $2)")
                .bind(topic)
                .bind(partition)
                .fetch_one(&mut connection)
                .await?;
            if locked {
                break;
            }
            if !waiting_logged {
                tracing::warn!(
                    topic,
                    partition,
                    "another instance holds this partition (same AGGREGATOR_INSTANCE, or still \
                     shutting down); waiting for it"
                );
                waiting_logged = true;
            }
            tokio::select! {
                () = cancel.cancelled() => return Ok(None),
                () = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }
    // Read where the sinks stand only now: the previous holder wrote until it let go.
    positions.invalidate();
    if !load(sink, positions, consumer, cancel).await {
        return Ok(None);
    }
    // Fetching starts where the sinks stand, so a log that came back shorter would never
    // deliver a record to be checked by: each partition's log is checked first.
    let unsettled = settle_logs(sink, consumer, positions, &mut [], &partitions)
        .await
        .unsettled;
    anyhow::ensure!(
        unsettled.is_empty(),
        "cannot settle whether partitions {unsettled:?} hold what the sinks applied"
    );
    consumer.claim(&partitions, |p| {
        positions.to_kafka(p, positions.first_needed(p))
    })?;
    Ok(Some(Claimed {
        hold: Hold { connection },
        checked: partitions
            .iter()
            .map(|p| (*p, positions.first_needed(*p)))
            .collect(),
    }))
}

/// What [`settle_logs`] made of the partitions it checked.
struct Settled {
    new_epochs: Vec<i32>,
    /// Not settled: the broker could not be read well enough, or the new epoch could not
    /// be written.
    unsettled: BTreeSet<i32>,
}

/// Checks the logs of `partitions`, all at once (each check reads the broker with a
/// consumer of its own), and begins a new epoch where a log is another one, re-basing that
/// partition's records in `batch`.
async fn settle_logs<S: BatchSink>(
    sink: &S,
    consumer: &TopicConsumer,
    positions: &mut Positions,
    batch: &mut [Record],
    partitions: &BTreeSet<i32>,
) -> Settled {
    let checks = partitions.iter().map(|p| held(consumer, positions, *p));
    let verdicts = futures::future::join_all(checks).await;
    let mut settled = Settled {
        new_epochs: Vec::new(),
        unsettled: BTreeSet::new(),
    };
    for (partition, verdict) in partitions.iter().copied().zip(verdicts) {
        match verdict {
            Held::Yes => {}
            Held::No if begin_epoch(sink, consumer, positions, batch, partition).await => {
                settled.new_epochs.push(partition);
            }
            Held::No => {
                settled.unsettled.insert(partition);
            }
            Held::Unknown => {
                tracing::warn!(
                    topic = consumer.topic(),
                    partition,
                    "cannot tell whether the log is the one the sinks applied; trying again"
                );
                settled.unsettled.insert(partition);
            }
        }
    }
    settled
}

/// Whether `partition`'s log still holds the last record Postgres applied (yes when
/// nothing was applied yet).
async fn held(consumer: &TopicConsumer, positions: &Positions, partition: i32) -> Held {
    match positions.anchor(partition) {
        None => Held::Yes,
        Some(anchor) => consumer.holds(partition, &anchor).await,
    }
}

async fn load<S: BatchSink>(
    sink: &S,
    positions: &mut Positions,
    consumer: &TopicConsumer,
    cancel: &CancellationToken,
) -> bool {
    let mut backoff = Duration::from_millis(100);
    loop {
        match sink.load_positions(positions).await {
            Ok(()) => return true,
            Err(err) => {
                let what = "cannot read sink positions";
                if !retry_later(consumer, cancel, &mut backoff, what, &err).await {
                    return false;
                }
            }
        }
    }
}

/// Writes `prepared` until it succeeds; `false` when cancelled first.
async fn write<S: BatchSink>(
    sink: &S,
    prepared: Option<S::Prepared>,
    positions: &mut Positions,
    consumer: &TopicConsumer,
    cancel: &CancellationToken,
) -> bool {
    let Some(prepared) = prepared else {
        return true;
    };
    let mut backoff = Duration::from_millis(100);
    loop {
        if !load(sink, positions, consumer, cancel).await {
            return false;
        }
        match sink.write(&prepared, positions).await {
            Ok(()) => return true,
            Err(ApplyError::Fenced) => {
                metrics::counter!(m::FENCED).increment(1);
                tracing::warn!(
                    topic = consumer.topic(),
                    "batch fenced; re-reading positions"
                );
                positions.invalidate();
            }
            Err(ApplyError::Failed(err)) => {
                positions.invalidate();
                if !retry_later(consumer, cancel, &mut backoff, "batch failed", &err).await {
                    return false;
                }
            }
        }
    }
}

/// Prepares what continues where expected; partitions that jumped ahead are rewound
/// (their records in this batch are left for the refetch), unless retention already
/// deleted the missing messages. `None` when cancelled first.
async fn prepare<S: BatchSink>(
    sink: &S,
    consumer: &TopicConsumer,
    cursor: &mut Cursor,
    batch: &[Record],
    positions: &Positions,
    cancel: &CancellationToken,
) -> Option<S::Prepared> {
    let records = loop {
        let before = cursor.next.clone();
        let (records, gaps) = cursor.split(batch, positions);
        let mut lost = Vec::new();
        for (partition, expected) in gaps {
            metrics::counter!(m::REWINDS, "topic" => consumer.stream()).increment(1);
            let depth = cursor.next_depth(partition);
            let kafka_expected = positions.to_kafka(partition, expected);
            match consumer.rewind(partition, kafka_expected, depth).await {
                Ok(Rewind::Seeked) => {
                    tracing::warn!(
                        topic = consumer.topic(),
                        partition,
                        expected,
                        depth,
                        "fetch jumped ahead of the sinks; rewound"
                    );
                }
                Ok(Rewind::Lost { first_available }) => {
                    tracing::error!(
                        topic = consumer.topic(),
                        partition,
                        missing = first_available - kafka_expected,
                        "messages were deleted by retention before the sinks had them"
                    );
                    cursor
                        .floor
                        .insert(partition, first_available + positions.base(partition));
                    lost.push(partition);
                }
                Err(err) => tracing::warn!(
                    topic = consumer.topic(),
                    partition,
                    "cannot rewind: {err:#}"
                ),
            }
        }
        if lost.is_empty() {
            break records;
        }
        // Accept the loss: split the batch again, those partitions from their floor.
        cursor.next = before;
        for partition in lost {
            cursor.next.remove(&partition);
        }
    };
    let mut backoff = Duration::from_millis(100);
    loop {
        match sink.prepare(records.clone(), positions).await {
            Ok(prepared) => return Some(prepared),
            Err(err) => {
                let what = "preparing a batch failed";
                if !retry_later(consumer, cancel, &mut backoff, what, &err).await {
                    return None;
                }
            }
        }
    }
}

/// Logs a failed attempt, then [`pause`]s before the next.
async fn retry_later(
    consumer: &TopicConsumer,
    cancel: &CancellationToken,
    backoff: &mut Duration,
    what: &str,
    err: &anyhow::Error,
) -> bool {
    tracing::error!(
        topic = consumer.topic(),
        "{what}, retrying in {backoff:?}: {err:#}"
    );
    pause(cancel, backoff).await
}

/// Sleeps `backoff` (doubling it, up to 30 s); `false` when cancelled meanwhile.
async fn pause(cancel: &CancellationToken, backoff: &mut Duration) -> bool {
    let wait = *backoff;
    *backoff = (*backoff * 2).min(Duration::from_secs(30));
    tokio::select! {
        () = cancel.cancelled() => false,
        () = tokio::time::sleep(wait) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(partition: i32, offsets: std::ops::Range<i64>) -> Vec<Record> {
        offsets
            .map(|offset| Record {
                partition,
                offset,
                payload: std::sync::Arc::default(),
                resent: false,
            })
            .collect()
    }

    #[test]
    fn a_partition_is_checked_first_then_only_when_fetched_back_by_itself() {
        let positions = Positions::default();
        let mut cursor = Cursor::default();
        let batch: Vec<Record> = records(0, 0..5)
            .into_iter()
            .chain(records(1, 0..5))
            .collect();
        assert_eq!(cursor.to_check(&batch, &positions), BTreeSet::from([0, 1]));

        cursor.checked.insert(0, 0);
        let (continuing, _) = cursor.split(&records(0, 0..12), &positions);
        assert_eq!(continuing.len(), 12);
        assert!(cursor.to_check(&records(0, 12..20), &positions).is_empty());

        // Back below the sinks without a rewind of ours: checked again, once.
        assert_eq!(
            cursor.to_check(&records(0, 3..20), &positions),
            BTreeSet::from([0])
        );
        cursor.checked.insert(0, 12);
        assert!(cursor.to_check(&records(0, 3..20), &positions).is_empty());

        // Back below because this instance rewound: expected.
        cursor.checked.insert(0, 0);
        cursor.next_depth(0);
        assert!(cursor.to_check(&records(0, 3..20), &positions).is_empty());
    }
}
