//! `duplicate` and `rate_limited` verdicts, decided in memory, per partition.
//!
//! Clicks are keyed by referral code, so every click of a code lands in one partition,
//! and both verdicts need only that partition's history:
//! - rate-limited: more than `limit` clicks by one visitor on one code in one minute of
//!   event time (counted over the clicks ingest found valid);
//! - duplicate: a visitor's click on a code within `window` of a valid one (the window
//!   opens at a valid click).
//!
//! A partition's state is a pure function of its log up to the click decided, so a batch
//! decided again after a crash or a reassignment gets the verdicts it got the first time:
//! on (re)loading a partition, or when its records do not continue where the state ends,
//! the state is rebuilt from the clicks ClickHouse holds below the first record (its
//! verdicts are stored with every raw click). What the state forgets is defined by the
//! partition's watermark (the latest click time seen), never by the wall clock, so that
//! forgetting happens alike in both: a visitor on a code whose latest click is older than
//! `window + KEEP` before the watermark counts as gone. Rebuilding reads the clicks of
//! `2 × window + KEEP` before the watermark (a window opened then may still be open), and
//! of the last two days at most; a click arriving later than that may be judged
//! differently after a restart.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::BuildHasher;

use clickhouse::Client;
use reftrack_events::ClickVerdict;

/// How long past the dedupe window a visitor on a code is remembered.
const KEEP_MS: i64 = 10 * 60_000;
const MINUTE_MS: i64 = 60_000;
/// Pruning runs after this many decisions in a partition.
const PRUNE_EVERY: u32 = 16_384;
/// How far back ClickHouse is read to rebuild a partition, at most.
const REBUILD_HORIZON_SECS: i64 = 2 * 86_400;
/// The clicks ingest found valid (the candidates), by their final verdicts.
const CANDIDATES: &str = "verdict IN ('valid', 'duplicate', 'rate_limited')";

/// A click ingest found valid, waiting for the verdicts only history can give.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    pub code: &'a str,
    pub visitor: u64,
    pub received_at_ms: i64,
}

pub struct Verdicts {
    window_ms: i64,
    limit_per_minute: u32,
    partitions: HashMap<i32, PartitionState>,
}

/// One partition's history, as far as the verdicts need it.
#[derive(Debug, Default)]
struct PartitionState {
    /// The next offset this state expects to decide.
    next: i64,
    /// The latest click time among the candidates seen.
    watermark: i64,
    visitors: HashMap<u64, Visitor, foldhash::fast::RandomState>,
    since_prune: u32,
}

/// A visitor on a code (16 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Visitor {
    /// The latest valid click's time: where the dedupe window opened (`i64::MIN`: none).
    opened: i64,
    /// The latest minute (of event time) with a click, and the clicks in it.
    minute: i32,
    clicks: u32,
}

impl Visitor {
    /// The time of its latest click, as far as forgetting goes.
    fn last(&self) -> i64 {
        self.opened.max(i64::from(self.minute) * MINUTE_MS)
    }
}

/// The state's key of a visitor on a code: a fast hash with a fixed seed (the key is
/// rebuilt from ClickHouse the same way; it is never stored).
fn key(code: &str, visitor: u64) -> u64 {
    foldhash::fast::FixedState::with_seed(0x7265_6674_7261_636b).hash_one((code, visitor))
}

impl PartitionState {
    /// Visitors whose latest click is older than this count as gone.
    fn cutoff(&self, window_ms: i64) -> i64 {
        self.watermark - window_ms - KEEP_MS
    }

    fn decide(&mut self, c: Candidate<'_>, window_ms: i64, limit: u32) -> ClickVerdict {
        self.watermark = self.watermark.max(c.received_at_ms);
        let cutoff = self.cutoff(window_ms);
        let minute = c.received_at_ms.div_euclid(MINUTE_MS) as i32;
        let entry = self.visitors.entry(key(c.code, c.visitor));
        let known = match &entry {
            Entry::Occupied(e) => Some(*e.get()).filter(|v| v.last() >= cutoff),
            Entry::Vacant(_) => None,
        };
        let mut visitor = known.unwrap_or(Visitor {
            opened: i64::MIN,
            minute,
            clicks: 0,
        });
        // Clicks are counted in the visitor's latest minute; a late click in an earlier
        // minute counts alone.
        let clicks = match minute.cmp(&visitor.minute) {
            Ordering::Equal => {
                visitor.clicks += 1;
                visitor.clicks
            }
            Ordering::Greater => {
                visitor.minute = minute;
                visitor.clicks = 1;
                1
            }
            Ordering::Less => 1,
        };
        let verdict = if clicks > limit {
            ClickVerdict::RateLimited
        } else if c.received_at_ms.abs_diff(visitor.opened) < window_ms as u64 {
            ClickVerdict::Duplicate
        } else {
            visitor.opened = visitor.opened.max(c.received_at_ms);
            ClickVerdict::Valid
        };
        *entry.or_insert(visitor) = visitor;
        self.since_prune += 1;
        if self.since_prune >= PRUNE_EVERY {
            self.prune(window_ms);
        }
        verdict
    }

    /// Drops what the verdicts treat as gone anyway.
    fn prune(&mut self, window_ms: i64) {
        let cutoff = self.cutoff(window_ms);
        self.visitors.retain(|_, v| v.last() >= cutoff);
        self.since_prune = 0;
    }
}

impl Verdicts {
    pub fn new(window_secs: u64, limit_per_minute: u32) -> Self {
        Self {
            window_ms: window_secs as i64 * 1000,
            limit_per_minute,
            partitions: HashMap::new(),
        }
    }

    /// Whether `partition`'s state can decide the record at `offset`: it is loaded and
    /// ends right before it. Otherwise [`Verdicts::rebuild`] first.
    pub fn continues(&self, partition: i32, offset: i64) -> bool {
        self.partitions
            .get(&partition)
            .is_some_and(|state| state.next == offset)
    }

    /// The verdict of the record at `offset` (`None`: not a candidate, such as a bot or a
    /// copy, which only moves the state past it).
    pub fn decide(
        &mut self,
        partition: i32,
        offset: i64,
        candidate: Option<Candidate<'_>>,
    ) -> Option<ClickVerdict> {
        let state = self.partitions.entry(partition).or_default();
        state.next = offset + 1;
        candidate.map(|c| state.decide(c, self.window_ms, self.limit_per_minute))
    }

    /// Rebuilds `partition`'s state from the clicks ClickHouse holds below `before`.
    pub async fn rebuild(
        &mut self,
        clickhouse: &Client,
        topic: &str,
        partition: i32,
        before: i64,
    ) -> clickhouse::error::Result<()> {
        let horizon = chrono::Utc::now().timestamp() - REBUILD_HORIZON_SECS;
        let scope = format!(
            "received_at >= toDateTime({horizon}) AND kafka_topic = ? AND kafka_partition = ? \
             AND kafka_offset < ? AND {CANDIDATES}"
        );
        let watermark: u64 = clickhouse
            .query(&format!(
                "SELECT max(received_at_ms) FROM clicks_raw WHERE {scope}"
            ))
            .bind(topic)
            .bind(partition)
            .bind(before)
            .fetch_one()
            .await?;
        let mut state = PartitionState {
            next: before,
            watermark: watermark as i64,
            ..PartitionState::default()
        };
        let cutoff = state.cutoff(self.window_ms);
        // Per visitor on a code: the latest valid click, the latest minute with a click,
        // and the clicks in that minute.
        let rows: Vec<(String, u64, u64, i64, u64)> = clickhouse
            .query(&format!(
                "SELECT code, visitor, max(opened), max(minute), argMax(clicks, minute) FROM (
                     SELECT code, visitor, intDiv(received_at_ms, 60000) AS minute,
                            maxIf(received_at_ms, verdict = 'valid') AS opened, count() AS clicks
                     FROM clicks_raw
                     WHERE {scope} AND received_at_ms >= ?
                     GROUP BY code, visitor, minute
                 ) GROUP BY code, visitor"
            ))
            .bind(topic)
            .bind(partition)
            .bind(before)
            .bind((cutoff - self.window_ms).max(0))
            .fetch_all()
            .await?;
        for (code, visitor, opened, minute, clicks) in rows {
            let entry = Visitor {
                opened: if opened == 0 { i64::MIN } else { opened as i64 },
                minute: minute as i32,
                clicks: clicks as u32,
            };
            if entry.last() >= cutoff {
                state.visitors.insert(key(&code, visitor), entry);
            }
        }
        self.partitions.insert(partition, state);
        Ok(())
    }

    /// (visitors on codes remembered, bytes of state in memory): the memory figures of
    /// the metrics and the benchmark.
    pub fn footprint(&self) -> (usize, usize) {
        // Key, value and hashbrown's control byte per slot.
        let slot = std::mem::size_of::<(u64, Visitor)>() + 1;
        self.partitions.values().fold((0, 0), |(n, bytes), s| {
            (n + s.visitors.len(), bytes + s.visitors.capacity() * slot)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ClickVerdict::*;

    fn click(code: &str, visitor: u64, at_s: i64) -> Option<Candidate<'_>> {
        Some(Candidate {
            code,
            visitor,
            received_at_ms: at_s * 1000,
        })
    }

    #[test]
    fn a_visitor_is_counted_once_per_code_and_window_and_limited_per_minute() {
        let mut v = Verdicts::new(3600, 3);
        let decided: Vec<_> = [
            click("A", 1, 0),
            click("A", 1, 10),    // within the window
            click("B", 1, 20),    // another code: its own window
            click("A", 2, 30),    // another visitor
            click("A", 1, 3_600), // the window has passed: opens a new one
            click("A", 1, 3_601), // ... and counts from there
            click("A", 1, 3_602), // 3rd click of the minute on A: still allowed
            click("A", 1, 3_603), // 4th: over the limit
            None,                 // a bot: not a candidate
        ]
        .into_iter()
        .enumerate()
        .map(|(offset, c)| v.decide(0, offset as i64, c))
        .collect();
        assert_eq!(
            decided,
            vec![
                Some(Valid),
                Some(Duplicate),
                Some(Valid),
                Some(Valid),
                Some(Valid),
                Some(Duplicate),
                Some(Duplicate),
                Some(RateLimited),
                None
            ]
        );
        assert!(v.continues(0, 9));
        assert!(!v.continues(0, 8));
        assert!(!v.continues(1, 0));
    }

    #[test]
    fn what_is_forgotten_depends_on_the_watermark_only() {
        let mut v = Verdicts::new(60, 1_000);
        assert_eq!(v.decide(0, 0, click("A", 1, 0)), Some(Valid));
        // The watermark moves far ahead; a late click of the same visitor within the
        // window of the first finds it gone.
        assert_eq!(v.decide(0, 1, click("Z", 9, 10_000)), Some(Valid));
        assert_eq!(v.decide(0, 2, click("A", 1, 30)), Some(Valid));
        // A late click in an earlier minute than the visitor's latest counts alone.
        let mut v = Verdicts::new(3600, 1);
        assert_eq!(v.decide(0, 0, click("A", 1, 120)), Some(Valid));
        assert_eq!(v.decide(0, 1, click("A", 1, 121)), Some(RateLimited));
        assert_eq!(v.decide(0, 2, click("A", 1, 10)), Some(Duplicate));
    }
}
