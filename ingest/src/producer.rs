//! The Kafka side of ingest: a click producer that never blocks the redirect and never
//! drops a click (short of the spill cap), and a conversion producer whose sends are
//! awaited until the broker acknowledges them. Both are renewed when the broker forgets
//! their idempotent identity (see [`reftrack_events::kafka::producer_identity_lost`]), or
//! when they deliver nothing for a while although the broker answers (tansu answers
//! `UnknownProducerId` after an empty restart, which librdkafka retries until every
//! message times out).
//!
//! Long because the two producers share their renewal: splitting them apart would
//! split one state machine across files.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use anyhow::Context;
use arc_swap::ArcSwap;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{
    BaseRecord, DeliveryResult, FutureProducer, FutureRecord, Producer, ProducerContext,
    PurgeConfig, ThreadedProducer,
};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientConfig, ClientContext};
use reftrack_events::kafka::KafkaConfig;

use crate::metrics as m;
use crate::spill::{self, Spill};

/// Delivery opaque of a live click.
const LIVE: usize = 0;
/// Delivery opaque of a click replayed from the spill.
const REPLAYED: usize = 1;
/// Clicks replayed per chunk before the cursor is saved.
const REPLAY_CHUNK: usize = 5_000;

/// What a click producer and the one that replaces it share.
struct ClickShared {
    spill: Arc<Spill>,
    replay_outstanding: AtomicI64,
    health: Health,
}

/// How a producer is doing, to tell when a new one must take over.
struct Health {
    identity_lost: AtomicBool,
    last_delivered_ms: AtomicI64,
    last_failed_ms: AtomicI64,
}

impl Health {
    fn new() -> Self {
        Self {
            identity_lost: AtomicBool::new(false),
            last_delivered_ms: AtomicI64::new(now_ms()),
            last_failed_ms: AtomicI64::new(0),
        }
    }

    fn delivered(&self) {
        self.last_delivered_ms.store(now_ms(), Ordering::Relaxed);
    }

    fn failed(&self, err: &KafkaError) {
        self.last_failed_ms.store(now_ms(), Ordering::Relaxed);
        if reftrack_events::kafka::producer_identity_lost(err) {
            self.identity_lost.store(true, Ordering::Release);
        }
    }

    /// Whether a new producer must take over: the broker forgot this one, or it has
    /// delivered nothing for `stuck_after` while failing. Asked only while the broker
    /// answers; the clock starts again for the one that takes over.
    fn take_renewal(&self, stuck_after: Duration) -> bool {
        let now = now_ms();
        let (delivered, failed) = (
            self.last_delivered_ms.load(Ordering::Relaxed),
            self.last_failed_ms.load(Ordering::Relaxed),
        );
        let stuck = failed > delivered && now - delivered > stuck_after.as_millis() as i64;
        let lost = self.identity_lost.swap(false, Ordering::AcqRel);
        if lost || stuck {
            self.last_delivered_ms.store(now, Ordering::Relaxed);
        }
        lost || stuck
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Receives the broker's verdict on every click: failures go to the spill.
pub struct ClickContext(Arc<ClickShared>);

impl ClientContext for ClickContext {
    fn stats(&self, statistics: Statistics) {
        let rtt_us = statistics
            .brokers
            .values()
            .filter_map(|b| b.rtt.as_ref())
            .map(|w| w.avg)
            .max()
            .unwrap_or(0);
        metrics::gauge!(m::BROKER_RTT).set(rtt_us as f64 / 1e6);
    }
}

impl ProducerContext for ClickContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: usize) {
        match result {
            Ok(_) => {
                self.0.health.delivered();
                m::ClickCounters::get().produced.increment(1);
                if opaque == REPLAYED {
                    metrics::counter!(m::EVENTS_REPLAYED).increment(1);
                }
            }
            Err((err, message)) => {
                metrics::counter!(m::EVENTS_FAILED, "topic" => "clicks").increment(1);
                self.0.health.failed(err);
                tracing::debug!(%err, "click not acknowledged; spilling it");
                spill_click(
                    &self.0.spill,
                    message.key().unwrap_or_default(),
                    message.payload().unwrap_or_default(),
                );
            }
        }
        if opaque == REPLAYED {
            self.0.replay_outstanding.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

fn spill_click(spill: &Spill, key: &[u8], payload: &[u8]) {
    match spill.append(key, payload) {
        Ok(()) => metrics::counter!(m::EVENTS_SPILLED).increment(1),
        Err(reason) => {
            metrics::counter!(m::EVENTS_DROPPED, "reason" => reason.as_str()).increment(1);
            tracing::error!(
                reason = reason.as_str(),
                "a click could not be spilled and was dropped"
            );
        }
    }
}

/// Settings of the click producer.
pub struct ClickProducerConfig<'a> {
    pub kafka: &'a KafkaConfig,
    pub queue_max_messages: u32,
    pub queue_max_kbytes: u32,
    /// Unacknowledged for this long, a click is handed back and spilled.
    pub spill_after: Duration,
}

pub struct ClickProducer {
    producer: ArcSwap<ThreadedProducer<ClickContext>>,
    context: Arc<ClickShared>,
    settings: ClientConfig,
    topic: String,
}

impl ClickProducer {
    pub fn new(config: &ClickProducerConfig<'_>, spill: Arc<Spill>) -> anyhow::Result<Self> {
        let context = Arc::new(ClickShared {
            spill,
            replay_outstanding: AtomicI64::new(0),
            health: Health::new(),
        });
        let mut settings = reftrack_events::kafka::producer_config(config.kafka);
        settings
            .set(
                "queue.buffering.max.messages",
                config.queue_max_messages.to_string(),
            )
            .set(
                "queue.buffering.max.kbytes",
                config.queue_max_kbytes.to_string(),
            )
            .set(
                "message.timeout.ms",
                config.spill_after.as_millis().to_string(),
            )
            // Large batches: the broker's work is per request and per batch far more
            // than per message, and a click need not reach Kafka within milliseconds.
            .set("batch.num.messages", "10000")
            .set("linger.ms", "50")
            .set("statistics.interval.ms", "5000");
        let producer = Self::create(&settings, &context)?;
        Ok(Self {
            producer: ArcSwap::from_pointee(producer),
            context,
            settings,
            topic: config.kafka.clicks_topic.clone(),
        })
    }

    fn create(
        settings: &ClientConfig,
        shared: &Arc<ClickShared>,
    ) -> anyhow::Result<ThreadedProducer<ClickContext>> {
        settings
            .create_with_context(ClickContext(shared.clone()))
            .context("create the click producer")
    }

    /// When the broker forgot this producer, or it delivered nothing for `stuck_after`:
    /// a new producer takes over, and what the old one still holds is handed to the
    /// spill. Blocks for up to seconds.
    pub fn renew_if_needed(&self, stuck_after: Duration) -> anyhow::Result<bool> {
        if !self.context.health.take_renewal(stuck_after) {
            return Ok(false);
        }
        let old = self
            .producer
            .swap(Arc::new(Self::create(&self.settings, &self.context)?));
        retire(old.as_ref());
        Ok(true)
    }

    /// Queues a click for the broker without waiting. When the queue is full (broker
    /// slow or away), the click goes straight to the spill.
    pub fn send(&self, key: &str, payload: &[u8]) {
        let record = BaseRecord::with_opaque_to(&self.topic, LIVE)
            .key(key)
            .payload(payload);
        if let Err((err, _)) = self.producer.load().send(record) {
            if !matches!(
                err,
                KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull)
            ) {
                tracing::warn!(%err, "click not queued; spilling it");
            }
            spill_click(self.spill(), key.as_bytes(), payload);
        }
    }

    /// Clicks queued in memory and not yet acknowledged.
    pub fn queue_depth(&self) -> i32 {
        self.producer.load().in_flight_count()
    }

    pub fn spill(&self) -> &Spill {
        &self.context.spill
    }

    /// Replays every closed spill segment, oldest first, in order. Each chunk is handed
    /// to the producer and waited for (delivered, or failed and spilled again) before
    /// the segment's cursor moves, so a crash mid-replay repeats at most one chunk.
    pub async fn replay_spill(&self, wait_per_chunk: Duration) -> anyhow::Result<()> {
        let segments = self
            .spill()
            .closed_segments()
            .context("list spill segments")?;
        for segment in segments {
            let mut done = self.spill().replayed(&segment);
            let path = segment.clone();
            let records = tokio::task::spawn_blocking(move || spill::read_segment(&path, done))
                .await?
                .with_context(|| format!("read {}", segment.display()))?;
            for chunk in records.chunks(REPLAY_CHUNK) {
                self.replay_chunk(chunk).await;
                self.wait_for_replayed(wait_per_chunk).await?;
                done += chunk.len() as u64;
                if let Err(err) = self.spill().mark_replayed(&segment, done) {
                    // Replay goes on from memory; only a restart would repeat this chunk.
                    tracing::warn!(%err, segment = %segment.display(), "cannot save the spill cursor");
                }
            }
            self.spill()
                .remove(&segment)
                .context("remove a replayed spill segment")?;
            tracing::info!(segment = %segment.display(), clicks = records.len(), "spill segment replayed");
        }
        Ok(())
    }

    async fn replay_chunk(&self, chunk: &[spill::Record]) {
        let outstanding = &self.context.replay_outstanding;
        for record in chunk {
            outstanding.fetch_add(1, Ordering::AcqRel);
            loop {
                let base = BaseRecord::with_opaque_to(&self.topic, REPLAYED)
                    .key(&record.key)
                    .payload(&record.payload)
                    .headers(OwnedHeaders::new().insert(Header {
                        key: reftrack_events::kafka::RESENT_HEADER,
                        value: Some("1"),
                    }));
                match self.producer.load().send(base) {
                    Ok(()) => break,
                    Err((
                        KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                        _,
                    )) => {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err((err, _)) => {
                        tracing::warn!(%err, "replayed click not queued; spilling it again");
                        outstanding.fetch_sub(1, Ordering::AcqRel);
                        spill_click(self.spill(), &record.key, &record.payload);
                        break;
                    }
                }
            }
        }
    }

    async fn wait_for_replayed(&self, limit: Duration) -> anyhow::Result<()> {
        let outstanding = &self.context.replay_outstanding;
        let deadline = tokio::time::Instant::now() + limit;
        while outstanding.load(Ordering::Acquire) > 0 {
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "replayed clicks not resolved within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    /// At shutdown: give queued clicks `timeout` to reach the broker, then hand what is
    /// left to the spill so nothing is lost, and sync the spill to disk.
    pub fn close(&self, timeout: Duration) {
        let producer = self.producer.load();
        if let Err(err) = producer.flush(timeout) {
            tracing::warn!(%err, left = self.queue_depth(), "clicks still queued at shutdown; spilling them");
            retire(producer.as_ref());
        }
        if let Err(err) = self.spill().flush() {
            tracing::error!(%err, "cannot sync the spill at shutdown");
        }
    }
}

/// Takes back what a producer still holds: its messages fail through the delivery
/// callback (clicks are spilled, conversion requests answered 503).
fn retire<C: ProducerContext>(producer: &impl Producer<C>) {
    producer.purge(PurgeConfig::default().queue().inflight());
    let _ = producer.flush(Duration::from_secs(5));
}

/// The conversion producer: each send is awaited until the broker acknowledges it
/// (`acks=all`, idempotent), or fails within the configured time.
#[derive(Clone)]
pub struct ConversionProducer {
    producer: Arc<ArcSwap<FutureProducer>>,
    health: Arc<Health>,
    settings: ClientConfig,
    topic: String,
    ack_timeout: Duration,
}

impl ConversionProducer {
    pub fn new(kafka: &KafkaConfig, ack_timeout: Duration) -> anyhow::Result<Self> {
        let mut settings = reftrack_events::kafka::producer_config(kafka);
        settings
            .set("message.timeout.ms", ack_timeout.as_millis().to_string())
            .set("linger.ms", "1");
        Ok(Self {
            producer: Arc::new(ArcSwap::from_pointee(Self::create(&settings)?)),
            health: Arc::new(Health::new()),
            settings,
            topic: kafka.conversions_topic.clone(),
            ack_timeout,
        })
    }

    fn create(settings: &ClientConfig) -> anyhow::Result<FutureProducer> {
        settings.create().context("create the conversion producer")
    }

    /// As [`ClickProducer::renew_if_needed`]; requests the old producer held are
    /// answered 503 and retried by the product's backend.
    pub fn renew_if_needed(&self, stuck_after: Duration) -> anyhow::Result<bool> {
        if !self.health.take_renewal(stuck_after) {
            return Ok(false);
        }
        let old = self.producer.swap(Arc::new(Self::create(&self.settings)?));
        retire(old.as_ref());
        Ok(true)
    }

    /// Resolves once the broker has the event, or fails.
    pub async fn send(&self, key: &str, payload: &[u8]) -> Result<(), KafkaError> {
        let record = FutureRecord::to(&self.topic).key(key).payload(payload);
        let producer = self.producer.load_full();
        let outcome = tokio::time::timeout(self.ack_timeout + Duration::from_millis(500), async {
            producer.send(record, self.ack_timeout).await
        })
        .await;
        match outcome {
            Ok(Ok(_)) => {
                self.health.delivered();
                metrics::counter!(m::EVENTS_PRODUCED, "topic" => "conversions").increment(1);
                Ok(())
            }
            Ok(Err((err, _))) => {
                metrics::counter!(m::EVENTS_FAILED, "topic" => "conversions").increment(1);
                self.health.failed(&err);
                Err(err)
            }
            Err(_) => {
                metrics::counter!(m::EVENTS_FAILED, "topic" => "conversions").increment(1);
                let err = KafkaError::MessageProduction(
                    rdkafka::types::RDKafkaErrorCode::MessageTimedOut,
                );
                self.health.failed(&err);
                Err(err)
            }
        }
    }

    pub fn close(&self, timeout: Duration) {
        let _ = self.producer.load().flush(timeout);
    }
}
