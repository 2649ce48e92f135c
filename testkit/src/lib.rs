//! Test support shared by every crate: [`TestStack`] gives a test its own slice of the
//! real local stack (a Postgres schema, a ClickHouse database, Kafka topic names and a
//! Redis key prefix), so tests run in parallel against the real servers; [`serve`]
//! runs a service on port 0 and stops it when dropped.
//!
//! Server addresses come from the same variables the services read (`CLICKHOUSE_URL`,
//! `KAFKA_BROKERS`, `REDIS_URL`), plus `TEST_DATABASE_URL` for the test database, with
//! the local stack's defaults.

pub mod checks;
pub mod fixtures;
pub mod kafka;
pub mod procs;
pub mod python;
mod served;
mod stack;
pub mod stores;
pub mod wait;

pub use served::{Served, serve};
pub use stack::TestStack;

/// Sum of a metric's samples (all label sets) in a Prometheus text exposition.
pub fn metric(exposition: &str, name: &str) -> f64 {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Starts test logging once; output only when `TEST_LOG` is set.
pub fn init_logging() {
    use std::sync::Once;
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            let filter = tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_test_writer()
                .try_init();
        }
    });
}
