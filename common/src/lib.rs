//! Plumbing shared by the three reftrack services: typed configuration read from the
//! environment, tracing and Prometheus set-up, and an HTTP server with health endpoints
//! and graceful shutdown.

pub mod config;
pub mod envelope;
pub mod http;
pub mod money;
pub mod shutdown;
pub mod telemetry;
