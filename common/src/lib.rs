//! Plumbing shared by the three reftrack services: typed configuration read from the
//! environment, tracing and Prometheus set-up, an HTTP server with health endpoints
//! and graceful shutdown, and the one validator of request input.

pub mod clock;
pub mod config;
pub mod envelope;
pub mod http;
pub mod input;
pub mod server;
pub mod service;
pub mod shutdown;
pub mod telemetry;
