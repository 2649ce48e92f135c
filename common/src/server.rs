//! The HTTP server every service runs, hardened for a public port: hyper's HTTP/1 with a
//! deadline for a request's headers (slow-header clients cannot hold connections), a
//! deadline per request, a cap on requests in flight (503 beyond it, rather than a queue
//! that grows without bound), a body size limit, and request metrics on every route. The
//! operations endpoints (`/readyz`, `/metrics`) move to their own listener when
//! `OPS_ADDR` is set; `/healthz` stays public and says nothing of the internals.
//! Shutdown stops accepting, then drains the requests in flight.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::{Next, from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::future::Either;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt;
use tower_http::timeout::TimeoutLayer;

use crate::telemetry;

/// How long shutdown waits for requests in flight before it gives up on them.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, clap::Args)]
pub struct HttpConfig {
    /// Address of the operations listener (/readyz, /metrics); unset: they are served on
    /// the service's own address (fine on loopback, not on a public port).
    #[arg(long = "ops-addr", env = "OPS_ADDR")]
    pub ops_addr: Option<SocketAddr>,

    /// Seconds a client has to send a request's headers.
    #[arg(long = "http-header-timeout-secs", env = "HTTP_HEADER_TIMEOUT_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub header_timeout_secs: u64,

    /// Seconds a request may take before it is answered 408.
    #[arg(long = "http-request-timeout-secs", env = "HTTP_REQUEST_TIMEOUT_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub request_timeout_secs: u64,

    /// Requests in flight at once; more are answered 503 at once.
    #[arg(long = "http-max-in-flight", env = "HTTP_MAX_IN_FLIGHT", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_in_flight: u32,

    /// Largest request body, in bytes.
    #[arg(long = "http-body-limit-bytes", env = "HTTP_BODY_LIMIT_BYTES", default_value_t = 1 << 20, value_parser = clap::value_parser!(u32).range(1024..=64 << 20))]
    pub body_limit_bytes: u32,
}

/// Requests a service answers at once, before routing and without the layers: for
/// handlers that answer from memory without waiting on anything (ingest's redirect),
/// where routing and the layers would cost more than the answer itself. Such an answer
/// cannot outlast the request deadline nor pile up in flight, so neither limit concerns
/// it; its request metrics are recorded as for any route.
pub trait FastPath: Send + Sync + 'static {
    /// The answer and the route it is counted under; `None` sends the request on to the
    /// router.
    fn answer(
        &self,
        request: &hyper::Request<Incoming>,
        peer: SocketAddr,
    ) -> Option<(&'static str, Response)>;
}

/// A service's routes, ready to serve.
pub struct Server {
    public: Router,
    ops: Router,
    fast: Option<Arc<dyn FastPath>>,
    config: HttpConfig,
}

impl Server {
    /// `public`: what the service answers; `ops`: its operations endpoints
    /// ([`crate::http::ops_router`]).
    pub fn new(public: Router, ops: Router, config: &HttpConfig) -> Self {
        Self {
            public: public.route("/healthz", get(healthz)),
            ops,
            fast: None,
            config: config.clone(),
        }
    }

    /// Answers what `fast` answers before the public routes see it.
    pub fn with_fast_path(mut self, fast: Arc<dyn FastPath>) -> Self {
        self.fast = Some(fast);
        self
    }

    /// Serves on `listener` (and the ops listener, when configured) until `shutdown`
    /// resolves; then stops accepting and drains what is in flight.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop.send(true);
        });
        let header_timeout = Duration::from_secs(self.config.header_timeout_secs);
        match self.config.ops_addr {
            None => {
                let router = self.harden(self.public.clone().merge(self.ops.clone()));
                serve_on(router, self.fast, listener, header_timeout, stopped).await
            }
            Some(addr) => {
                let ops_listener = crate::service::bind(addr, "OPS_ADDR").await?;
                let public = self.harden(self.public.clone());
                let ops = self.harden(self.ops.clone());
                let (a, b) = tokio::join!(
                    serve_on(public, self.fast, listener, header_timeout, stopped.clone()),
                    serve_on(ops, None, ops_listener, header_timeout, stopped),
                );
                a.and(b)
            }
        }
    }

    /// The limits, outermost first: request metrics (so refusals are counted), the cap
    /// on requests in flight, the request deadline, the body limit.
    fn harden(&self, router: Router) -> Router {
        let in_flight = Arc::new(Semaphore::new(self.config.max_in_flight as usize));
        router
            .layer(DefaultBodyLimit::max(self.config.body_limit_bytes as usize))
            .layer(TimeoutLayer::with_status_code(
                StatusCode::REQUEST_TIMEOUT,
                Duration::from_secs(self.config.request_timeout_secs),
            ))
            .layer(from_fn_with_state(in_flight, limit_in_flight))
            .layer(from_fn(telemetry::track_http))
    }
}

/// Resolves once the stop signal is given (or its sender is gone).
async fn stopped_signal(stopped: &mut watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({ "status": "ok" }))
}

async fn limit_in_flight(
    State(in_flight): State<Arc<Semaphore>>,
    request: Request,
    next: Next,
) -> Response {
    match in_flight.try_acquire() {
        Ok(_permit) => next.run(request).await,
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [("retry-after", "1")],
            "busy: too many requests in flight",
        )
            .into_response(),
    }
}

fn answer_fast(
    fast: &dyn FastPath,
    request: &hyper::Request<Incoming>,
    peer: SocketAddr,
) -> Option<Response> {
    let start = Instant::now();
    let (route, response) = fast.answer(request, peer)?;
    let method = telemetry::method_label(request.method());
    telemetry::record_http(route, method, response.status().as_u16(), start);
    Some(response)
}

/// Accepts connections until `stopped`, each served by hyper's HTTP/1 with the header
/// deadline; then waits (a bounded time) for the connections to finish their requests.
async fn serve_on(
    router: Router,
    fast: Option<Arc<dyn FastPath>>,
    listener: TcpListener,
    header_timeout: Duration,
    mut stopped: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors, or a connection reset before accept: wait
                    // a moment rather than spin.
                    tracing::warn!(error = %err, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stopped_signal(&mut stopped) => break,
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let fast = fast.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            if let Some(answer) = fast
                .as_ref()
                .and_then(|f| answer_fast(&**f, &request, peer))
            {
                return Either::Left(std::future::ready(Ok(answer)));
            }
            request.extensions_mut().insert(ConnectInfo(peer));
            Either::Right(router.clone().oneshot(request))
        });
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still in flight after {DRAIN_TIMEOUT:?}; stopping anyway");
    }
    Ok(())
}
