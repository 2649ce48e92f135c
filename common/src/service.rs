//! What every service's `main` does, written once: read and check the configuration
//! (a bad value ends start-up with one line naming the variable, exit code 2), start
//! logging, run until SIGINT or SIGTERM, and exit non-zero when the service failed.

use std::future::Future;
use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::config::{self, Validate};
use crate::telemetry::{self, LogFormat};

/// A reftrack service: its configuration type, and how it runs.
pub trait Service: clap::Parser + Validate + Sized {
    /// The binary's name, first on every line it prints about itself.
    const NAME: &'static str;

    fn log_format(&self) -> LogFormat;

    /// Runs (a command, or the service until `shutdown` resolves).
    fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// The body of a service's `main`.
pub async fn main<S: Service>() -> ExitCode {
    let service = match config::load::<S>() {
        Ok(service) => service,
        Err(err) => {
            eprintln!("{}: {err}", S::NAME);
            return ExitCode::from(2);
        }
    };
    telemetry::init_tracing(service.log_format());
    match service.run(crate::shutdown::signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{} stopped: {err:#}", S::NAME);
            ExitCode::FAILURE
        }
    }
}

/// Binds `addr`, naming the variable it came from when that fails.
pub async fn bind(addr: SocketAddr, var: &str) -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("bind {var} {addr}"))?;
    tracing::info!(%addr, "listening");
    Ok(listener)
}
