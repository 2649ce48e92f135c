//! Reading a topic in batches bounded by size and time.
//!
//! Progress lives in the sinks, not in Kafka. Offsets are committed to Kafka only after
//! both sinks hold the data, and only as a hint of where to start fetching; so Kafka's
//! committed offset is never ahead of the sinks, and whatever is fetched again after a
//! crash or a rebalance is recognised by its offset and skipped (see [`crate::positions`]).
//! Correctness therefore never depends on the group protocol, which matters on brokers
//! whose rebalancing is young (tansu).
//!
//! Long because it holds both ways of being given partitions (static and group) and the
//! log check that reads a record back; each is a few small functions.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use futures::{FutureExt, StreamExt};
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, MessageStream, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::metrics as m;
use crate::positions::Anchor;
use crate::{Assignment, Config};

/// What [`TopicConsumer::next_batch`] got.
pub enum Polled {
    Batch(Vec<Record>),
    /// Nothing arrived within the idle time.
    Idle,
    Cancelled,
}

/// The outcome of [`TopicConsumer::rewind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rewind {
    Seeked,
    /// Retention deleted messages the sinks never got; the partition now starts here.
    Lost {
        first_available: i64,
    },
}

/// One message, detached from the consumer. Its offset is Kafka's as fetched; the pipeline
/// makes it logical (see [`crate::positions`]) before anything else reads it.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    /// Shared, so that the batch stages hand records on without copying them (an `Arc`:
    /// a clone is a count, where a `Bytes` made from a copy allocates on its first clone).
    pub payload: std::sync::Arc<[u8]>,
    /// Sent again by ingest (from its spill): the broker may hold it twice.
    pub resent: bool,
}

/// Whether the broker still holds the last record the sinks applied, where they say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    Yes,
    /// The log is not the one the positions came from: re-created, or emptied.
    No,
    /// The broker could not be read well enough to tell.
    Unknown,
}

/// Notices assignment changes and broker trouble (after either, cached positions are
/// re-read and the log is checked again) and exports per-partition lag from
/// librdkafka's statistics.
pub struct GroupContext {
    topic: String,
    /// Metric label: `clicks` or `conversions`, whatever the topic is called.
    stream: &'static str,
    reassigned: Arc<AtomicBool>,
    suspect: Arc<AtomicBool>,
}

impl ClientContext for GroupContext {
    /// A lost connection or a missing topic may come back as a different log.
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        tracing::warn!(topic = %self.topic, %error, reason, "Kafka client error");
        self.suspect.store(true, Ordering::Release);
    }

    fn stats(&self, statistics: Statistics) {
        let Some(topic) = statistics.topics.get(&self.topic) else {
            return;
        };
        for (id, partition) in &topic.partitions {
            if *id >= 0 && partition.consumer_lag >= 0 {
                metrics::gauge!(m::CONSUMER_LAG, "topic" => self.stream, "partition" => id.to_string())
                    .set(partition.consumer_lag as f64);
            }
        }
    }
}

impl ConsumerContext for GroupContext {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                tracing::info!(topic = %self.topic, partitions = ?partitions(tpl), "partitions assigned");
            }
            Rebalance::Revoke(tpl) => {
                tracing::info!(topic = %self.topic, partitions = ?partitions(tpl), "partitions revoked");
            }
            Rebalance::Error(err) => tracing::warn!(topic = %self.topic, %err, "rebalance error"),
        }
        self.reassigned.store(true, Ordering::Release);
    }
}

fn partitions(tpl: &TopicPartitionList) -> Vec<i32> {
    tpl.elements().iter().map(|e| e.partition()).collect()
}

pub struct TopicConsumer {
    consumer: Arc<StreamConsumer<GroupContext>>,
    /// With static assignment, this instance's number and the number of instances.
    share: Option<(u32, u32)>,
    kafka: reftrack_events::kafka::KafkaConfig,
    topic: String,
    stream: &'static str,
    reassigned: Arc<AtomicBool>,
    suspect: Arc<AtomicBool>,
}

impl TopicConsumer {
    pub fn new(config: &Config, topic: &str, stream: &'static str) -> anyhow::Result<Self> {
        let reassigned = Arc::new(AtomicBool::new(true));
        let suspect = Arc::new(AtomicBool::new(false));
        let context = GroupContext {
            topic: topic.to_string(),
            stream,
            reassigned: reassigned.clone(),
            suspect: suspect.clone(),
        };
        let consumer: StreamConsumer<GroupContext> = config
            .kafka
            .client_config()
            .set("group.id", format!("{}-{topic}", config.group))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", config.session_timeout_ms.to_string())
            .set("statistics.interval.ms", "5000")
            // Large fetches: the aggregator reads in bulk.
            .set("fetch.min.bytes", "1")
            .set("fetch.wait.max.ms", "100")
            .set("queued.max.messages.kbytes", "65536")
            // librdkafka pauses a partition's fetching for this long once its local
            // queue is full (1 s by default): a drain then stalls every few batches.
            .set("fetch.queue.backoff.ms", "20")
            .create_with_context(context)
            .context("create the Kafka consumer")?;
        let share = match config.assignment {
            Assignment::Static => Some((config.instance, config.instances)),
            Assignment::Group => {
                consumer
                    .subscribe(&[topic])
                    .with_context(|| format!("subscribe to {topic}"))?;
                None
            }
        };
        Ok(Self {
            consumer: Arc::new(consumer),
            share,
            kafka: config.kafka.clone(),
            topic: topic.to_string(),
            stream,
            reassigned,
            suspect,
        })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The metric label: `clicks` or `conversions`.
    pub fn stream(&self) -> &'static str {
        self.stream
    }

    /// Whether this instance takes its partitions itself ([`Self::claim`]).
    pub fn claims_partitions(&self) -> bool {
        self.share.is_some()
    }

    /// With static assignment: this instance's share of the topic's partitions.
    pub async fn share(&self) -> anyhow::Result<BTreeSet<i32>> {
        let Some((instance, instances)) = self.share else {
            return Ok(BTreeSet::new());
        };
        let (consumer, topic) = (self.consumer.clone(), self.topic.clone());
        tokio::task::spawn_blocking(move || {
            let metadata = consumer
                .fetch_metadata(Some(&topic), Duration::from_secs(10))
                .context("fetch the topic's partitions")?;
            let partitions: Vec<i32> = metadata
                .topics()
                .iter()
                .filter(|t| t.name() == topic)
                .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                .collect();
            anyhow::ensure!(!partitions.is_empty(), "topic {topic} has no partitions");
            Ok(partitions
                .into_iter()
                .filter(|p| *p as u32 % instances == instance)
                .collect())
        })
        .await?
    }

    /// Fetches `partitions` from here on, each from the Kafka offset `start` gives.
    pub fn claim(
        &self,
        partitions: &BTreeSet<i32>,
        start: impl Fn(i32) -> i64,
    ) -> anyhow::Result<()> {
        let mut tpl = TopicPartitionList::new();
        for p in partitions {
            tpl.add_partition_offset(&self.topic, *p, Offset::Offset(start(*p).max(0)))?;
        }
        self.consumer.assign(&tpl).context("assign partitions")?;
        self.reassigned.store(true, Ordering::Release);
        tracing::info!(topic = %self.topic, ?partitions, "partitions claimed");
        Ok(())
    }

    /// Whether partitions moved since the last call.
    pub fn take_reassigned(&self) -> bool {
        self.reassigned.swap(false, Ordering::AcqRel)
    }

    /// Whether the client reported trouble (lost broker, missing topic) since the last call.
    pub fn take_suspect(&self) -> bool {
        self.suspect.swap(false, Ordering::AcqRel)
    }

    /// Waits for a first message (at most `idle_after`, if given), then collects until
    /// `max` messages or `wait` has passed. (A message is handed over only when its
    /// future completes, so abandoning a wait loses nothing.) One message stream serves
    /// the whole batch: `recv` would register and drop a waker per message.
    pub async fn next_batch(
        &self,
        max: usize,
        wait: Duration,
        idle_after: Option<Duration>,
        cancel: &CancellationToken,
    ) -> Polled {
        let mut messages = self.consumer.stream();
        let idle = async {
            match idle_after {
                Some(after) => tokio::time::sleep(after).await,
                None => std::future::pending().await,
            }
        };
        let first = tokio::select! {
            () = cancel.cancelled() => return Polled::Cancelled,
            () = idle => return Polled::Idle,
            record = self.next_record(&mut messages) => record,
        };
        let mut batch = Vec::with_capacity(max.min(100_000));
        batch.push(first);
        let deadline = tokio::time::Instant::now() + wait;
        while batch.len() < max {
            // A message already fetched is taken without arming a timer: while
            // draining a backlog, a timer per message costs more than the message.
            if let Some(record) = self.next_record(&mut messages).now_or_never() {
                batch.push(record);
                continue;
            }
            match tokio::time::timeout_at(deadline, self.next_record(&mut messages)).await {
                Ok(record) => batch.push(record),
                Err(_) => break,
            }
        }
        metrics::counter!(m::EVENTS_CONSUMED, "topic" => self.stream).increment(batch.len() as u64);
        metrics::histogram!(m::BATCH_SIZE, "topic" => self.stream).record(batch.len() as f64);
        Polled::Batch(batch)
    }

    /// The next message; transient consumer errors are logged and retried.
    async fn next_record(&self, messages: &mut MessageStream<'_, GroupContext>) -> Record {
        loop {
            match messages.next().await {
                Some(Ok(message)) => {
                    return Record {
                        partition: message.partition(),
                        offset: message.offset(),
                        payload: message.payload().unwrap_or_default().into(),
                        resent: message.headers().is_some_and(|headers| {
                            headers
                                .iter()
                                .any(|h| h.key == reftrack_events::kafka::RESENT_HEADER)
                        }),
                    };
                }
                Some(Err(err)) => {
                    tracing::warn!(topic = %self.topic, %err, "Kafka consume error");
                    self.suspect.store(true, Ordering::Release);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                // The stream of a live consumer never ends.
                None => std::future::pending().await,
            }
        }
    }

    /// Makes `partition` fetch again from `depth` messages before `offset` (where the
    /// sinks stand; what comes before it is skipped). When retention already deleted
    /// `offset`, reports where the partition's data now starts.
    pub async fn rewind(&self, partition: i32, offset: i64, depth: i64) -> anyhow::Result<Rewind> {
        let (consumer, topic) = (self.consumer.clone(), self.topic.clone());
        tokio::task::spawn_blocking(move || {
            let timeout = Duration::from_secs(10);
            let (low, _) = consumer
                .fetch_watermarks(&topic, partition, timeout)
                .context("fetch watermarks")?;
            if low > offset {
                return Ok(Rewind::Lost {
                    first_available: low,
                });
            }
            let target = offset.saturating_sub(depth).max(low);
            consumer
                .seek(&topic, partition, Offset::Offset(target), timeout)
                .context("seek")?;
            Ok(Rewind::Seeked)
        })
        .await?
    }

    /// Whether `partition` still holds `anchor` (the last record the sinks applied) at its
    /// offset. Read with a consumer of its own, from a little before the offset (a broker
    /// may answer a fetch inside a record batch with the next batch), deeper until a fetch
    /// starts early enough. Watermarks are not asked: tansu's are wrong.
    pub async fn holds(&self, partition: i32, anchor: &Anchor) -> Held {
        let (kafka, topic, anchor) = (self.kafka.clone(), self.topic.clone(), anchor.clone());
        let held = tokio::task::spawn_blocking(move || {
            let first = anchor_check(&kafka, &topic, partition, &anchor)?;
            if first != Held::No {
                return Ok(first);
            }
            // A log that looks gone is read once more before it is given up: a new epoch
            // replays whatever the sinks applied past the last epoch's start.
            std::thread::sleep(Duration::from_secs(1));
            anchor_check(&kafka, &topic, partition, &anchor)
        })
        .await;
        match held {
            Ok(Ok(held)) => held,
            Ok(Err(err)) => {
                tracing::warn!(topic = %self.topic, partition, "cannot read back the last applied record: {err:#}");
                Held::Unknown
            }
            Err(_) => Held::Unknown,
        }
    }

    /// Tells Kafka where to start fetching next time: `(partition, next offset)` pairs
    /// that both sinks already hold. Only a hint, so a failure is merely logged.
    pub fn commit_hint(&self, next: &[(i32, i64)]) {
        let mut tpl = TopicPartitionList::new();
        for (partition, offset) in next {
            if tpl
                .add_partition_offset(&self.topic, *partition, Offset::Offset(*offset))
                .is_err()
            {
                return;
            }
        }
        if let Err(err) = self.consumer.commit(&tpl, CommitMode::Async) {
            tracing::debug!(topic = %self.topic, %err, "offset hint not committed");
        }
    }
}

/// How far before the anchor each try starts reading.
/// Exact first (Apache Kafka serves any offset); then deep enough to start before the
/// record batch that holds the anchor (tansu serves only from a batch's start, and
/// ingest's batches hold up to 10,000 clicks).
const CHECK_DEPTHS: [i64; 4] = [0, 32_768, 262_144, i64::MAX];

fn anchor_check(
    kafka: &reftrack_events::kafka::KafkaConfig,
    topic: &str,
    partition: i32,
    anchor: &Anchor,
) -> anyhow::Result<Held> {
    let consumer: BaseConsumer = kafka
        .client_config()
        .set("group.id", "reftrack-aggregator-epoch-check")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "error")
        // An empty answer (a fetch past the end, or inside the last batch on tansu) comes
        // back quickly, so trying deeper does not wait long.
        .set("fetch.wait.max.ms", "100")
        .create()
        .context("create the epoch-check consumer")?;
    // An empty answer comes back within fetch.wait.max.ms, but a first answer can take
    // longer: the try connects too, and tansu's sqlite storage takes over a second per
    // fetch once a topic holds a few hundred thousand records. (A try that gets nothing
    // passes on to the next.)
    let patience = Duration::from_secs(5);
    for depth in CHECK_DEPTHS {
        let start = anchor.kafka_offset.saturating_sub(depth).max(0);
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Offset(start))?;
        consumer.assign(&tpl)?;
        match scan(&consumer, anchor, patience) {
            Scan::Found(same) => return Ok(if same { Held::Yes } else { Held::No }),
            // Offsets are never reused within a log, so a log that reads on from below
            // the anchor to past it without it, or ends before it, is another log.
            Scan::SkippedOver | Scan::EndedBefore => return Ok(Held::No),
            // Retention deleted the anchor (and all before it): the same log.
            Scan::StartsAfter if start == 0 => return Ok(Held::Yes),
            Scan::StartsAfter | Scan::Nothing if start > 0 => {}
            Scan::StartsAfter | Scan::Nothing => break,
        }
    }
    Ok(Held::Unknown)
}

enum Scan {
    /// The record at the anchor's offset, and whether it is the anchor.
    Found(bool),
    /// Records from before the anchor's offset, then after it.
    SkippedOver,
    /// The first record read was already past the anchor's offset.
    StartsAfter,
    /// The log ended before the anchor's offset.
    EndedBefore,
    /// Nothing read in time.
    Nothing,
}

/// Reads from where `consumer` is assigned until the anchor's offset is passed, or
/// nothing more comes within `patience`.
fn scan(consumer: &BaseConsumer, anchor: &Anchor, patience: Duration) -> Scan {
    let mut deadline = std::time::Instant::now() + patience;
    let mut read_any = false;
    while std::time::Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                let offset = message.offset();
                if offset == anchor.kafka_offset {
                    return Scan::Found(message.payload().unwrap_or_default() == anchor.payload);
                }
                if offset > anchor.kafka_offset {
                    return if read_any {
                        Scan::SkippedOver
                    } else {
                        Scan::StartsAfter
                    };
                }
                read_any = true;
                deadline = std::time::Instant::now() + patience;
            }
            Some(Err(KafkaError::PartitionEOF(_))) => return Scan::EndedBefore,
            Some(Err(err)) => {
                tracing::debug!(%err, "epoch check: consume error");
                if !read_any {
                    return Scan::Nothing;
                }
            }
            None => {}
        }
    }
    Scan::Nothing
}
