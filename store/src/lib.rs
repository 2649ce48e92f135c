//! reftrack's stores: the Postgres schema (embedded migrations) and pool, the ClickHouse
//! schema and client, the Redis connection, and the queries more than one service runs.
//!
//! Postgres holds entities and money (affiliates, referrals, the commission ledger,
//! payouts, API keys, consumer progress); ClickHouse holds raw events and hourly rollups;
//! Redis holds short-lived state (click verdict windows, rate limits, caches).

pub mod affiliates;
pub mod api_keys;
pub mod clickhouse;
pub mod ledger;
pub mod postgres;
pub mod redis;
pub mod stats;
