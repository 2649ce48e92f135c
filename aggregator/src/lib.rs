//! aggregator: streams clicks and conversions from Kafka into ClickHouse rollups and the
//! Postgres ledger, exactly once in effect.
//!
//! - [`consume`]: batches from Kafka; [`positions`]: where each sink stands, kept in the
//!   sink itself; [`pipeline`]: the read-apply-retry loop both topics share;
//! - [`clicks`]: verdicts (in memory, per partition), `linkClicked` (Postgres), raw
//!   clicks (ClickHouse);
//! - [`conversions`]: the commission [`conversions::ledger`] (Postgres), raw conversions
//!   (ClickHouse), unappliable messages [`parked`].

pub mod cli;
pub mod clicks;
mod config;
pub mod consume;
pub mod conversions;
pub mod metrics;
pub mod parked;
pub mod pipeline;
pub mod positions;
pub mod privacy;

use std::future::Future;

use anyhow::Context;
use axum::Router;
use reftrack_common::http::{Readiness, ops_router};
use reftrack_common::server::Server;
use reftrack_common::service::{Service, bind};
use reftrack_common::telemetry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::{Assignment, Config};

use crate::clicks::ClickSink;
use crate::clicks::verdicts::Verdicts;
use crate::consume::TopicConsumer;
use crate::conversions::ConversionSink;
use crate::pipeline::Limits;

/// aggregator, built from its configuration: the two pipelines and the ops server.
pub struct App {
    server: Server,
    clicks: (TopicConsumer, ClickSink),
    conversions: (TopicConsumer, ConversionSink),
    limits: (usize, std::time::Duration),
    retention: Option<privacy::Retention>,
    /// Re-drives what the console asks for (one instance does: instance 0, or each in
    /// group mode, where a second copy of a message is harmless anyway).
    redriver: Option<(sqlx::PgPool, rdkafka::producer::FutureProducer, String)>,
}

impl App {
    /// Connects to every store, applies the schemas and joins the consumer groups.
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        let metrics = telemetry::install_metrics("aggregator");
        metrics::register();
        let kafka = &config.kafka;
        reftrack_events::kafka::ensure_topics(
            kafka,
            &[&kafka.clicks_topic, &kafka.conversions_topic],
        )
        .await?;
        let pool = config.postgres.connect().await?;
        reftrack_store::postgres::migrate(&pool).await?;
        reftrack_store::clickhouse::ensure_schema(&config.clickhouse).await?;
        let clickhouse = config.clickhouse.client();
        let broker = reftrack_events::kafka::BrokerProbe::new(kafka)?;

        let clicks = ClickSink {
            pool: pool.clone(),
            clickhouse: clickhouse.clone(),
            verdicts: std::sync::Mutex::new(Verdicts::new(
                config.dedupe_window_secs,
                config.rate_limit_per_minute,
            )),
            copies: std::sync::Mutex::new(clicks::copies::Copies::new(
                config.click_copy_window as usize,
            )),
            topic: kafka.clicks_topic.clone(),
            exclusive: config.assignment == Assignment::Static,
        };
        let conversions = ConversionSink {
            pool: pool.clone(),
            clickhouse: clickhouse.clone(),
            topic: kafka.conversions_topic.clone(),
        };

        let readiness = Readiness::new()
            .with("postgres", reftrack_store::postgres::probe(&pool))
            .with("clickhouse", reftrack_store::clickhouse::probe(&clickhouse))
            .with("kafka", broker.probe());
        Ok(Self {
            server: Server::new(Router::new(), ops_router(readiness, metrics), &config.http),
            clicks: (
                TopicConsumer::new(config, &kafka.clicks_topic, "clicks")?,
                clicks,
            ),
            conversions: (
                TopicConsumer::new(config, &kafka.conversions_topic, "conversions")?,
                conversions,
            ),
            limits: (config.batch_max_events as usize, config.batch_max_wait()),
            retention: config.clicks_retention_days.map(|days| privacy::Retention {
                client: clickhouse.clone(),
                database: config.clickhouse.database.clone(),
                days,
            }),
            redriver: if config.assignment != Assignment::Static || config.instance == 0 {
                let producer = reftrack_events::kafka::producer_config(kafka)
                    .create()
                    .context("create the re-drive producer")?;
                Some((pool.clone(), producer, kafka.conversions_topic.clone()))
            } else {
                None
            },
        })
    }

    /// Runs both pipelines and serves health and metrics until `shutdown`; then lets the
    /// batches in flight finish before returning.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let cancel = CancellationToken::new();
        let limits = || Limits {
            max_events: self.limits.0,
            max_wait: self.limits.1,
        };
        let (click_consumer, click_sink) = self.clicks;
        let (conversion_consumer, conversion_sink) = self.conversions;
        let retention = self
            .retention
            .map(|retention| tokio::spawn(retention.run(cancel.clone())));
        let redriver = self.redriver.map(|(pool, producer, topic)| {
            tokio::spawn(cli::redrive_requested(
                pool,
                producer,
                topic,
                cancel.clone(),
            ))
        });
        let mut pipelines = tokio::task::JoinSet::new();
        pipelines.spawn(pipeline::run(
            click_consumer,
            click_sink,
            limits(),
            cancel.clone(),
        ));
        pipelines.spawn(pipeline::run(
            conversion_consumer,
            conversion_sink,
            limits(),
            cancel.clone(),
        ));
        // A pipeline only ends when cancelled; one that ends otherwise (a panic) takes
        // the service down, so that it is restarted rather than left idle but "ready".
        let stop = cancel.clone();
        let watch = async move {
            let ended = pipelines.join_next().await;
            if !stop.is_cancelled() {
                tracing::error!(?ended, "a pipeline stopped unexpectedly; shutting down");
            }
            stop.cancel();
            while pipelines.join_next().await.is_some() {}
            ended
        };
        let stop = cancel.clone();
        let server = self.server.serve(listener, async move {
            tokio::select! {
                () = shutdown => {}
                () = stop.cancelled() => {}
            }
            stop.cancel();
        });
        let (served, ended) = tokio::join!(server, watch);
        for task in [retention, redriver].into_iter().flatten() {
            let _ = task.await;
        }
        tracing::info!("aggregator stopped");
        served.context("serve HTTP")?;
        match ended {
            Some(Err(err)) if err.is_panic() => anyhow::bail!("a pipeline panicked: {err}"),
            Some(Ok(Err(err))) => Err(err.context("a pipeline stopped")),
            _ => Ok(()),
        }
    }
}

impl Service for Config {
    const NAME: &'static str = "aggregator";

    fn log_format(&self) -> telemetry::LogFormat {
        self.common.log_format
    }

    /// Runs a command (`parked ...`), or both pipelines until `shutdown`.
    async fn run(
        mut self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        if let Some(command) = self.command.take() {
            return cli::run(command, &self).await;
        }
        let app = App::build(&self).await?;
        app.serve(bind(self.addr, "AGGREGATOR_ADDR").await?, shutdown)
            .await
    }
}
