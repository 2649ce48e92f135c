//! The benchmarks run against the local stack (`scripts/stack deps`), inside names of
//! their own (Postgres schema, ClickHouse database, topics, Redis prefix) so they never
//! touch the demo data. Services started here inherit the environment and get these
//! names on top.

use anyhow::Context;
use reftrack_store::clickhouse::ClickHouseConfig;
use reftrack_testkit::stores::Stores;
use sqlx::PgPool;

/// The stores' settings a command starts from.
pub type StackArgs = Stores;

pub struct Stack {
    pub args: StackArgs,
    pub pool: PgPool,
    pub name: String,
}

impl Stack {
    /// Creates (or reuses) the names `name` for a run, with migrations applied.
    pub async fn prepare(args: &StackArgs, name: &str) -> anyhow::Result<Self> {
        let args = args.clone().within(name);
        let pool = args.create_schema().await?;
        Ok(Self {
            args,
            pool,
            name: name.to_string(),
        })
    }

    /// What a service started for this run must read to use this run's names.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        self.args.names_env()
    }

    /// An approved affiliate with `code` (kept if it exists); returns its id.
    pub async fn seed_affiliate(&self, code: &str) -> anyhow::Result<i64> {
        let id = sqlx::query_scalar(
            "INSERT INTO affiliates (referral_code, status, commission_rate, min_withdrawal_balance)
             VALUES ($1, 'approved', 10, 20)
             ON CONFLICT (referral_code) DO UPDATE SET referral_code = EXCLUDED.referral_code
             RETURNING id",
        )
        .bind(code)
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }

    /// Waits (two minutes at most) until ClickHouse runs no other query and no merge: an
    /// earlier phase's work still running (uncached api answers queued beyond what
    /// ClickHouse serves, merges of a million rows just written) would otherwise be
    /// measured as the next phase's cost.
    pub async fn wait_for_quiet_clickhouse(&self) -> anyhow::Result<()> {
        // The run's database may not exist yet: ask from `default`.
        let client = self.args.clickhouse.client().with_database("default");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            let busy: u64 = client
                .query(
                    "SELECT (SELECT count() FROM system.processes WHERE query NOT LIKE '%system.processes%')
                          + (SELECT count() FROM system.merges)",
                )
                .fetch_one()
                .await
                .context("ask ClickHouse what it is running")?;
            if busy == 0 {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                eprintln!("  ClickHouse still busy ({busy} queries and merges); measuring anyway");
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
    }

    /// Drops this run's Postgres schema, ClickHouse databases (`name`, and `name_plain`
    /// that bench-aggregator compares against) and Redis keys, for runs whose names are
    /// used once. (Left behind, a million-click run's verdict keys would make the next
    /// run's Redis slower, and its snapshots longer.)
    pub async fn discard(self) -> anyhow::Result<()> {
        self.unlink_redis_keys()
            .await
            .context("drop the run's Redis keys")?;
        sqlx::query(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name))
            .execute(&self.pool)
            .await
            .context("drop the benchmark schema")?;
        let ch = ClickHouseConfig {
            database: "default".into(),
            ..self.args.clickhouse.clone()
        }
        .client();
        for database in [self.name.clone(), format!("{}_plain", self.name)] {
            ch.query(&format!("DROP DATABASE IF EXISTS {database}"))
                .execute()
                .await
                .with_context(|| format!("drop ClickHouse database {database}"))?;
        }
        Ok(())
    }

    async fn unlink_redis_keys(&self) -> anyhow::Result<()> {
        let mut redis = self.args.redis.connect().await?;
        let pattern = format!("{}*", self.args.redis.key_prefix);
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(10_000)
                .query_async(&mut redis)
                .await?;
            if !keys.is_empty() {
                let _: u64 = redis::cmd("UNLINK")
                    .arg(&keys)
                    .query_async(&mut redis)
                    .await?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }
}
