//! `duplicate` and `rate_limited` verdicts, decided in Redis because they need state
//! shared by every aggregator instance. One script call per partition chunk; the calls
//! share one multiplexed connection, so a batch costs one pipelined round trip.

use std::collections::BTreeMap;

use futures::future::try_join_all;
use redis::aio::ConnectionManager;
use reftrack_events::ClickVerdict;

const SCRIPT: &str = include_str!("verdicts.lua");
/// Clicks per script call: bounds how long one call holds Redis.
const CHUNK: usize = 2_000;

/// A click that ingest found valid, waiting for the verdicts only shared state can give.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    pub partition: i32,
    pub offset: i64,
    pub code: &'a str,
    pub visitor: u64,
    pub received_at_ms: i64,
}

pub struct Verdicts {
    script: redis::Script,
    prefix: String,
    window_ms: u64,
    limit_per_minute: u32,
    ttl_secs: u64,
}

impl Verdicts {
    pub fn new(prefix: &str, window_secs: u64, limit_per_minute: u32) -> Self {
        Self {
            script: redis::Script::new(SCRIPT),
            prefix: prefix.to_string(),
            window_ms: window_secs * 1000,
            limit_per_minute,
            // Outlive the dedupe window, and the rate window by far.
            ttl_secs: window_secs + 900,
        }
    }

    /// Verdicts for `candidates` (in the same order). `trim` is each partition's first
    /// offset in this batch: every earlier offset is in both sinks.
    pub async fn decide(
        &self,
        redis: &ConnectionManager,
        topic: &str,
        trim: &BTreeMap<i32, i64>,
        candidates: &[Candidate<'_>],
    ) -> redis::RedisResult<Vec<ClickVerdict>> {
        let mut by_partition: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
        for (i, c) in candidates.iter().enumerate() {
            by_partition.entry(c.partition).or_default().push(i);
        }
        let mut calls = Vec::new();
        for (partition, indexes) in &by_partition {
            let memo_key = format!("{}memo:{topic}:{partition}", self.prefix);
            let trim = trim.get(partition).copied().unwrap_or_default();
            for chunk in indexes.chunks(CHUNK) {
                let mut invocation = self.script.prepare_invoke();
                invocation
                    .arg(&memo_key)
                    .arg(trim)
                    .arg(self.window_ms)
                    .arg(self.limit_per_minute)
                    .arg(self.ttl_secs);
                for &i in chunk {
                    let c = &candidates[i];
                    // Keys are built here rather than in Lua, where every concatenation
                    // allocates a string inside Redis.
                    let dedupe_key = format!("{}dd:{}:{}", self.prefix, c.code, c.visitor);
                    let minute = c.received_at_ms.div_euclid(60_000);
                    let rate_key = format!("{}rl:{minute}", self.prefix);
                    invocation
                        .arg(c.offset)
                        .arg(dedupe_key)
                        .arg(rate_key)
                        .arg(c.visitor)
                        .arg(c.received_at_ms);
                }
                let mut connection = redis.clone();
                calls.push(async move {
                    let letters: String = invocation.invoke_async(&mut connection).await?;
                    Ok::<_, redis::RedisError>((chunk, letters))
                });
            }
        }
        let mut verdicts = vec![ClickVerdict::Valid; candidates.len()];
        for (chunk, letters) in try_join_all(calls).await? {
            for (&i, letter) in chunk.iter().zip(letters.bytes()) {
                verdicts[i] = match letter {
                    b'd' => ClickVerdict::Duplicate,
                    b'r' => ClickVerdict::RateLimited,
                    _ => ClickVerdict::Valid,
                };
            }
        }
        Ok(verdicts)
    }
}
