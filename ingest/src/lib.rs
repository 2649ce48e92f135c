//! ingest: answers referral-link clicks with a redirect and records each click, plus the
//! conversions the product's backend reports, to Kafka.
//!
//! - [`click`]: the redirect path (in memory only: [`directory`], [`verdict`],
//!   [`redirect`], [`cookie`]), handing events to [`producer`];
//! - [`producer`] and [`spill`]: clicks never wait on the broker and are never lost while
//!   it is away;
//! - [`conversions`]: signups, purchases and refunds, acknowledged only once the broker has them.

pub mod click;
pub mod client_ip;
mod config;
pub mod conversions;
pub mod cookie;
pub mod directory;
pub mod metrics;
pub mod producer;
pub mod redirect;
pub mod spill;
pub mod verdict;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::routing::{get, post};
use reftrack_common::config::Profile;
use reftrack_common::http::{Readiness, ops_router};
use reftrack_common::server::Server;
use reftrack_common::service::{Service, bind};
use reftrack_common::telemetry;
use reftrack_events::kafka::BrokerProbe;
use reftrack_events::kafka::KafkaConfig;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi;

pub use config::{AttributionPolicy, Config};

use crate::click::ClickState;
use crate::conversions::ConversionState;
use crate::directory::Directory;
use crate::producer::{ClickProducer, ClickProducerConfig, ConversionProducer};
use crate::redirect::{Landing, RedirectPolicy};
use crate::spill::Spill;

/// ingest, built from its configuration: the server and what runs behind it.
pub struct App {
    server: Server,
    clicks: Arc<ClickProducer>,
    conversions: ConversionProducer,
    refresher: directory::Refresher,
    probe: BrokerProbe,
    kafka: KafkaConfig,
    directory_refresh: Duration,
    spill_after: Duration,
    conversion_ack_timeout: Duration,
}

impl App {
    /// Connects to the dependencies, prepares the topics and loads the directory.
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        let metrics = telemetry::install_metrics("ingest");
        metrics::register();
        reftrack_events::kafka::ensure_topics(
            &config.kafka,
            &[&config.kafka.clicks_topic, &config.kafka.conversions_topic],
        )
        .await?;
        let pool = config.postgres.connect_and_migrate().await?;
        let (directory, refresher) = Directory::load(pool.clone()).await?;

        let spill = Spill::open(
            &config.spill_dir,
            config.spill_max_bytes,
            config.spill_min_free_bytes,
        )
        .with_context(|| format!("open SPILL_DIR {}", config.spill_dir.display()))?;
        let clicks = Arc::new(ClickProducer::new(
            &ClickProducerConfig {
                kafka: &config.kafka,
                queue_max_messages: config.click_queue_max_messages,
                queue_max_kbytes: config.click_queue_max_kbytes,
                spill_after: config.spill_after(),
            },
            Arc::new(spill),
        )?);
        let conversions = ConversionProducer::new(&config.kafka, config.conversion_ack_timeout())?;

        let click_state = Arc::new(ClickState {
            directory: directory.clone(),
            landing: Landing::parse(config.landing_url.as_str()).map_err(anyhow::Error::msg)?,
            redirects: RedirectPolicy::new(
                config.redirect_allowed_hosts.iter().map(String::as_str),
            ),
            cookie: cookie::CookiePolicy::new(
                &config.cookie_name,
                config.attribution_window_days,
                config.cookie_domain.as_deref(),
                config.cookie_secure,
                config.attribution_policy,
            ),
            visitors: verdict::VisitorHasher::new(config.visitor_hash_secret()),
            bots: verdict::BotDetector::new(),
            producer: clicks.clone(),
            client_ip: client_ip::ClientIp::new(
                config.trusted_proxies.clone(),
                config.client_ip_header.clone(),
            ),
            country_header: config.country_header.clone(),
            click_id_param: Some(config.click_id_param.clone()).filter(|p| !p.is_empty()),
        });
        let conversion_state = ConversionState {
            directory: directory.clone(),
            producer: conversions.clone(),
            settlement_currency: config.settlement_currency.as_str().into(),
            retry_after_secs: (config.conversion_ack_timeout_ms / 1000).max(1),
        };

        let probe = BrokerProbe::new(&config.kafka)?;
        // Redirects keep working while Kafka or Postgres are away, so neither takes
        // ingest out of rotation; /readyz reports them as degraded.
        let readiness = Readiness::new()
            .with_optional("postgres", reftrack_store::postgres::probe(&pool))
            .with_optional("kafka", probe.probe());
        if config.common.profile == Profile::Production && !config.cookie_secure {
            tracing::warn!(
                "COOKIE_SECURE=false in production: the attribution cookie travels over plain HTTP"
            );
        }

        // The click path stays bare for speed: answered before routing (no layers, no
        // request id, no span, no access log; its request metrics recorded without
        // allocating). Conversions, rare and carrying money, get all of them.
        let document = std::sync::Arc::new(conversions::openapi::IngestDoc::openapi());
        let router = Router::new()
            .merge(reftrack_common::http::traced(
                Router::new()
                    .route("/v1/conversions", post(conversions::accept_one))
                    .route("/v1/conversions/batch", post(conversions::accept_batch))
                    .with_state(conversion_state),
            ))
            .route(
                "/openapi.json",
                get(move || std::future::ready(axum::Json(document.clone()))),
            );
        Ok(Self {
            server: Server::new(router, ops_router(readiness, metrics), &config.http)
                .with_fast_path(click_state),
            clicks,
            conversions,
            refresher,
            probe,
            kafka: config.kafka.clone(),
            directory_refresh: config.directory_refresh(),
            spill_after: config.spill_after(),
            conversion_ack_timeout: config.conversion_ack_timeout(),
        })
    }

    /// Serves until `shutdown` resolves; then drains in-flight requests, flushes the
    /// producers (what cannot be delivered goes to the spill) and returns.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let cancel = CancellationToken::new();
        let tasks: Vec<JoinHandle<()>> = vec![
            tokio::spawn(self.refresher.run(self.directory_refresh, cancel.clone())),
            tokio::spawn(
                Recovery {
                    clicks: self.clicks.clone(),
                    conversions: self.conversions.clone(),
                    probe: self.probe.clone(),
                    kafka: self.kafka,
                    replay_wait: self.spill_after * 3,
                    stuck_after: (self.spill_after * 3, self.conversion_ack_timeout * 3),
                }
                .run(cancel.clone()),
            ),
        ];
        let served = self.server.serve(listener, shutdown).await;
        cancel.cancel();
        for task in tasks {
            let _ = task.await;
        }
        let (clicks, conversions) = (self.clicks, self.conversions);
        tokio::task::spawn_blocking(move || {
            conversions.close(Duration::from_secs(5));
            clicks.close(Duration::from_secs(5));
        })
        .await?;
        tracing::info!("ingest stopped");
        served.context("serve HTTP")
    }
}

/// What ingest does every second in the background so that it recovers by itself from
/// a broker outage: export the queue and spill gauges, renew producers the broker no
/// longer knows, give a broker that came back empty its topics again, and replay the
/// spill once the broker answers.
struct Recovery {
    clicks: Arc<ClickProducer>,
    conversions: ConversionProducer,
    probe: BrokerProbe,
    kafka: KafkaConfig,
    replay_wait: Duration,
    /// How long the click and the conversion producer may fail without one delivery,
    /// the broker answering, before a new one takes over.
    stuck_after: (Duration, Duration),
}

impl Recovery {
    async fn run(self, cancel: CancellationToken) {
        let topics = [
            self.kafka.clicks_topic.clone(),
            self.kafka.conversions_topic.clone(),
        ];
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            ::metrics::gauge!(metrics::QUEUE_DEPTH).set(f64::from(self.clicks.queue_depth()));
            ::metrics::gauge!(metrics::SPILL_BYTES).set(self.clicks.spill().bytes() as f64);
            ::metrics::gauge!(metrics::SPILL_FREE_BYTES)
                .set(self.clicks.spill().free_bytes() as f64);
            // A broker that does not answer keeps clicks in the spill until it does.
            let Ok(missing) = self.probe.missing_topics(&topics).await else {
                continue;
            };
            if !missing.is_empty() && !self.recreate(&missing).await {
                continue;
            }
            // The broker answers and has the topics: a producer that still cannot deliver
            // is the problem.
            self.renew_producers().await;
            if self.clicks.spill().is_empty() {
                continue;
            }
            if let Err(err) = self.clicks.replay_spill(self.replay_wait).await {
                tracing::warn!("spill replay paused: {err:#}");
            }
        }
    }

    async fn renew_producers(&self) {
        let (clicks, conversions) = (self.clicks.clone(), self.conversions.clone());
        let (clicks_stuck, conversions_stuck) = self.stuck_after;
        let renewed = tokio::task::spawn_blocking(move || {
            [
                ("clicks", clicks.renew_if_needed(clicks_stuck)),
                (
                    "conversions",
                    conversions.renew_if_needed(conversions_stuck),
                ),
            ]
        })
        .await;
        for (topic, outcome) in renewed.into_iter().flatten() {
            match outcome {
                Ok(false) => {}
                Ok(true) => {
                    tracing::error!(
                        topic,
                        "the producer cannot deliver to a broker that answers (it no longer knows \
                         the producer: restarted empty?); a new one took over"
                    );
                    ::metrics::counter!(metrics::PRODUCERS_RENEWED, "topic" => topic).increment(1);
                }
                Err(err) => tracing::error!(topic, "cannot renew the producer: {err:#}"),
            }
        }
    }

    /// Creates topics the broker lost; whether they are there now.
    async fn recreate(&self, missing: &[String]) -> bool {
        tracing::error!(
            topics = ?missing,
            "the broker has lost topics (restarted empty, or deleted); creating them again"
        );
        let names: Vec<&str> = missing.iter().map(String::as_str).collect();
        match reftrack_events::kafka::ensure_topics(&self.kafka, &names).await {
            Ok(()) => {
                ::metrics::counter!(metrics::TOPICS_RECREATED).increment(missing.len() as u64);
                true
            }
            Err(err) => {
                tracing::warn!("cannot create the lost topics yet: {err:#}");
                false
            }
        }
    }
}

impl Service for Config {
    const NAME: &'static str = "ingest";

    fn log_format(&self) -> telemetry::LogFormat {
        self.common.log_format
    }

    /// Builds the app, binds the configured address and serves until `shutdown`.
    async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let app = App::build(&self).await?;
        app.serve(bind(self.addr, "INGEST_ADDR").await?, shutdown)
            .await
    }
}
