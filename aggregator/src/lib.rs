//! aggregator: streams clicks and conversions from Kafka into ClickHouse rollups and the
//! Postgres ledger, exactly once in effect.

mod config;

use std::future::Future;

use anyhow::Context;
use axum::Router;
use reftrack_common::http::{Readiness, ops_router, serve};
use reftrack_common::telemetry;
use tokio::net::TcpListener;

pub use config::Config;

pub struct App {
    router: Router,
}

impl App {
    /// Connects to every store and applies the schemas.
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        let metrics = telemetry::install_metrics();
        reftrack_events::kafka::ensure_topics(
            &config.kafka,
            &[&config.kafka.clicks_topic, &config.kafka.conversions_topic],
        )
        .await?;
        let pool = reftrack_store::postgres::connect(&config.postgres).await?;
        reftrack_store::postgres::migrate(&pool).await?;
        reftrack_store::clickhouse::ensure_schema(&config.clickhouse).await?;
        let clickhouse = reftrack_store::clickhouse::client(&config.clickhouse);
        let redis = reftrack_store::redis::connect(&config.redis).await?;
        let broker = reftrack_events::kafka::BrokerProbe::new(&config.kafka.brokers)?;
        let readiness = Readiness::new()
            .with("postgres", move || {
                let pool = pool.clone();
                async move { reftrack_store::postgres::ping(&pool).await }
            })
            .with("clickhouse", move || {
                let clickhouse = clickhouse.clone();
                async move { reftrack_store::clickhouse::ping(&clickhouse).await }
            })
            .with("redis", move || {
                let redis = redis.clone();
                async move { reftrack_store::redis::ping(&redis).await }
            })
            .with("kafka", move || {
                let broker = broker.clone();
                async move { broker.check().await }
            });
        let router =
            ops_router(readiness, metrics).layer(axum::middleware::from_fn(telemetry::track_http));
        Ok(Self { router })
    }

    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        serve(self.router, listener, shutdown)
            .await
            .context("serve HTTP")
    }
}

pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let app = App::build(&config).await?;
    let listener = TcpListener::bind(config.addr)
        .await
        .with_context(|| format!("bind AGGREGATOR_ADDR {}", config.addr))?;
    tracing::info!(addr = %config.addr, "aggregator listening");
    app.serve(listener, shutdown).await
}
