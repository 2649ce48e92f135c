//! The HTTP plumbing every service shares: `/readyz` and `/metrics` (served by
//! [`crate::server::Server`]), and request ids with access logs.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use futures::future::{BoxFuture, join_all};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};

type Check = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// The dependencies `/readyz` probes, each with a name and an async check. A required
/// dependency that fails makes the service unready (503); an optional one is reported
/// (`degraded`) but keeps the service in rotation, for services that still do useful
/// work without it.
#[derive(Clone, Default)]
pub struct Readiness {
    checks: Vec<(&'static str, bool, Check)>,
}

impl Readiness {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a required dependency; `check` answers `Err(reason)` when it is unreachable.
    pub fn with<F, Fut>(self, name: &'static str, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.add(name, true, check)
    }

    /// Adds a dependency whose failure is reported but keeps the service ready.
    pub fn with_optional<F, Fut>(self, name: &'static str, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.add(name, false, check)
    }

    fn add<F, Fut>(mut self, name: &'static str, required: bool, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.checks
            .push((name, required, Arc::new(move || Box::pin(check()))));
        self
    }

    /// Probes every dependency at once, each bounded by a timeout:
    /// name → (required, outcome).
    pub async fn probe(&self) -> BTreeMap<&'static str, (bool, Result<(), String>)> {
        let probes = self
            .checks
            .iter()
            .map(|(name, required, check)| async move {
                let outcome = match tokio::time::timeout(Duration::from_secs(2), check()).await {
                    Ok(result) => result,
                    Err(_) => Err("timed out after 2s".to_string()),
                };
                (*name, (*required, outcome))
            });
        join_all(probes).await.into_iter().collect()
    }
}

#[derive(Clone)]
struct OpsState {
    readiness: Readiness,
    metrics: PrometheusHandle,
}

/// `/readyz` (its dependencies answer) and `/metrics`: for the operators' network only
/// (`OPS_ADDR`), as they name the dependencies and their errors.
pub fn ops_router(readiness: Readiness, metrics: PrometheusHandle) -> Router {
    Router::new()
        .route("/readyz", get(readyz))
        .route("/metrics", get(render_metrics))
        .with_state(OpsState { readiness, metrics })
}

async fn readyz(State(state): State<OpsState>) -> impl IntoResponse {
    let results = state.readiness.probe().await;
    let ready = results.values().all(|(required, r)| !required || r.is_ok());
    let degraded = results.values().any(|(_, r)| r.is_err());
    let checks: BTreeMap<_, _> = results
        .into_iter()
        .map(|(name, (_, r))| (name, r.err().unwrap_or_else(|| "ok".to_string())))
        .collect();
    let (status, word) = match (ready, degraded) {
        (false, _) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        (true, true) => (StatusCode::OK, "degraded"),
        (true, false) => (StatusCode::OK, "ready"),
    };
    (status, Json(json!({ "status": word, "checks": checks })))
}

async fn render_metrics(State(state): State<OpsState>) -> impl IntoResponse {
    (
        [("content-type", "text/plain; version=0.0.4")],
        crate::telemetry::render(&state.metrics),
    )
}

/// Gives every request an id (the caller's `x-request-id`, or a new UUID), returns it
/// in the response, and runs the request in a span that carries it, so that every log
/// line of a request names it, and an access log line ends it.
pub fn traced(router: Router) -> Router {
    let span = |request: &Request<Body>| {
        let id = request
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        tracing::info_span!("request", method = %request.method(), uri = %request.uri(), request_id = %id)
    };
    router
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(span)
                .on_request(())
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
        )
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}
