//! api: answers the promoter API and the admin affiliate API (`docs/api/`) from
//! Postgres (entities, balances, payouts) and ClickHouse rollups (stats), with Redis for
//! rate limits and short-lived caches.
//!
//! - [`promoter`]: `/referrals/...`, for a product's users (JWT);
//! - [`admin`]: `/api/v1/affiliate/...`, for the product's staff (API keys);
//! - [`webhooks`]: the sender of signed webhooks (the endpoints are in [`admin`]);
//! - [`auth`], [`error`], [`state`]: who calls, how errors look, what handlers share.

pub mod admin;
pub mod auth;
pub mod cli;
mod config;
pub mod error;
mod input;
pub mod metrics;
pub mod openapi;
pub mod promoter;
pub mod state;
pub mod web;
pub mod webhooks;

use std::future::Future;

use anyhow::Context;
use axum::routing::get;
use reftrack_common::http::{Readiness, ops_router};
use reftrack_common::server::Server;
use reftrack_common::service::{Service, bind};
use reftrack_common::telemetry;
use tokio::net::TcpListener;

pub use config::{Config, DEV_JWT_SIGNING_KEY};

use crate::auth::Tokens;
use crate::state::{AppState, Inner, RateLimits, StatsCache};

/// api, built from its configuration.
pub struct App {
    server: Server,
    webhook_sender: Option<webhooks::sender::Sender>,
}

impl App {
    /// Connects to every store and applies the schemas.
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        Self::build_with_clock(
            config,
            reftrack_common::clock::Clock::with_offset(config.clock_offset_secs),
        )
        .await
    }

    /// [`App::build`] on `clock`, which tests move forward.
    pub async fn build_with_clock(
        config: &Config,
        clock: reftrack_common::clock::Clock,
    ) -> anyhow::Result<Self> {
        let metrics = telemetry::install_metrics("api");
        crate::metrics::register();
        let pool = config.postgres.connect().await?;
        reftrack_store::postgres::migrate(&pool).await?;
        reftrack_store::clickhouse::ensure_schema(&config.clickhouse).await?;
        let clickhouse = config.clickhouse.client();
        let redis = config.redis.connect().await?;
        let state = AppState::new(Inner {
            pool: pool.clone(),
            clock,
            clickhouse: clickhouse.clone(),
            tokens: Tokens::new(&config.jwt_signing_key(), config.jwt_leeway_secs),
            limits: RateLimits {
                redis: redis.clone(),
                prefix: config.redis.key_prefix.clone(),
                per_minute: config.rate_limit_per_minute,
            },
            cache: StatsCache::new(config.stats_cache()),
            settings: config.promoters.clone(),
            webhooks: config.webhooks.clone(),
        });
        let readiness = Readiness::new()
            .with("postgres", reftrack_store::postgres::probe(&pool))
            .with("clickhouse", reftrack_store::clickhouse::probe(&clickhouse))
            .with("redis", reftrack_store::redis::probe(&redis));
        let (routes, document) =
            openapi::routes(cors(&config.cors_allowed_origins)).split_for_parts();
        let document = std::sync::Arc::new(document);
        let router = routes
            .route(
                "/openapi.json",
                get(move || std::future::ready(axum::Json(document.clone()))),
            )
            .merge(web::router())
            .with_state(state);
        let router = reftrack_common::http::traced(router);
        let webhook_sender = config
            .webhooks
            .send
            .then(|| webhooks::sender::Sender::new(pool.clone(), &config.webhooks));
        Ok(Self {
            server: Server::new(router, ops_router(readiness, metrics), &config.http),
            webhook_sender,
        })
    }

    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let sender = self.webhook_sender.map(|s| tokio::spawn(s.run()));
        let served = self
            .server
            .serve(listener, shutdown)
            .await
            .context("serve HTTP");
        // What the sender had in flight is sent again by the next one (at least once).
        if let Some(sender) = sender {
            sender.abort();
        }
        served
    }
}

impl Service for Config {
    const NAME: &'static str = "api";

    fn log_format(&self) -> telemetry::LogFormat {
        self.common.log_format
    }

    /// Runs a command, or builds the app, binds the configured address and serves until
    /// `shutdown`.
    async fn run(
        mut self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        if let Some(command) = self.command.take() {
            return cli::run(command, &self).await;
        }
        let app = App::build(&self).await?;
        app.serve(bind(self.addr, "API_ADDR").await?, shutdown)
            .await
    }
}

/// CORS for the promoter API: the configured origins may call it with a promoter's
/// Bearer token (no cookies, so no credentials mode); preflights are cached for an hour.
fn cors(origins: &[axum::http::HeaderValue]) -> tower_http::cors::CorsLayer {
    use axum::http::{Method, header};
    tower_http::cors::CorsLayer::new()
        .allow_origin(origins.to_vec())
        .allow_methods([Method::GET, Method::POST, Method::PATCH])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            "idempotency-key".parse().expect("a header name"),
        ])
        .expose_headers([
            header::RETRY_AFTER,
            "x-request-id".parse().expect("a header name"),
        ])
        .max_age(std::time::Duration::from_secs(3600))
}
