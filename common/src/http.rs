//! The HTTP plumbing every service shares: `/healthz`, `/readyz`, `/metrics`, and a
//! `serve` that takes a bound listener and a shutdown future (tests bind port 0).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use futures::future::{BoxFuture, join_all};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use tokio::net::TcpListener;

type Check = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// The dependencies `/readyz` probes, each with a name and an async check.
#[derive(Clone, Default)]
pub struct Readiness {
    checks: Vec<(&'static str, Check)>,
}

impl Readiness {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a dependency; `check` answers `Err(reason)` when it is unreachable.
    pub fn with<F, Fut>(mut self, name: &'static str, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.checks
            .push((name, Arc::new(move || Box::pin(check()))));
        self
    }

    /// Probes every dependency at once, each bounded by a timeout.
    pub async fn probe(&self) -> BTreeMap<&'static str, Result<(), String>> {
        let probes = self.checks.iter().map(|(name, check)| async move {
            let outcome = match tokio::time::timeout(Duration::from_secs(2), check()).await {
                Ok(result) => result,
                Err(_) => Err("timed out after 2s".to_string()),
            };
            (*name, outcome)
        });
        join_all(probes).await.into_iter().collect()
    }
}

#[derive(Clone)]
struct OpsState {
    readiness: Readiness,
    metrics: PrometheusHandle,
}

/// `/healthz` (the process is alive), `/readyz` (its dependencies answer) and `/metrics`.
pub fn ops_router(readiness: Readiness, metrics: PrometheusHandle) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(render_metrics))
        .with_state(OpsState { readiness, metrics })
}

async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(state): State<OpsState>) -> impl IntoResponse {
    let results = state.readiness.probe().await;
    let ready = results.values().all(Result::is_ok);
    let checks: BTreeMap<_, _> = results
        .into_iter()
        .map(|(name, r)| (name, r.err().unwrap_or_else(|| "ok".to_string())))
        .collect();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({ "status": if ready { "ready" } else { "unavailable" }, "checks": checks });
    (status, Json(body))
}

async fn render_metrics(State(state): State<OpsState>) -> impl IntoResponse {
    (
        [("content-type", "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting and
/// drains in-flight requests before returning.
pub async fn serve(
    router: Router,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
