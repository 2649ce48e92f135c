//! ingest: answers referral-link clicks with a redirect and records each click, plus the
//! conversions the product's backend reports, to Kafka.

mod config;

use std::future::Future;

use anyhow::Context;
use axum::Router;
use reftrack_common::http::{Readiness, ops_router, serve};
use reftrack_common::telemetry;
use tokio::net::TcpListener;

pub use config::Config;

/// Everything ingest needs, built from its configuration.
pub struct App {
    router: Router,
}

impl App {
    /// Connects to the dependencies and prepares the topics.
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        let metrics = telemetry::install_metrics();
        reftrack_events::kafka::ensure_topics(
            &config.kafka,
            &[&config.kafka.clicks_topic, &config.kafka.conversions_topic],
        )
        .await?;
        let pool = reftrack_store::postgres::connect(&config.postgres).await?;
        reftrack_store::postgres::migrate(&pool).await?;
        let broker = reftrack_events::kafka::BrokerProbe::new(&config.kafka.brokers)?;
        let readiness = Readiness::new()
            .with("postgres", move || {
                let pool = pool.clone();
                async move { reftrack_store::postgres::ping(&pool).await }
            })
            .with("kafka", move || {
                let broker = broker.clone();
                async move { broker.check().await }
            });
        let router =
            ops_router(readiness, metrics).layer(axum::middleware::from_fn(telemetry::track_http));
        Ok(Self { router })
    }

    /// Serves until `shutdown` resolves.
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

/// Builds the app, binds the configured address and serves until `shutdown`.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let app = App::build(&config).await?;
    let listener = TcpListener::bind(config.addr)
        .await
        .with_context(|| format!("bind INGEST_ADDR {}", config.addr))?;
    tracing::info!(addr = %config.addr, "ingest listening");
    app.serve(listener, shutdown).await
}
