//! Copies of a click: the same event id at another offset. A producer retry after a lost
//! answer (without idempotence), or clicks re-sent by a replaced producer, can write a
//! click twice; the second is dropped here so that no count sees it, raw counts included.
//!
//! Each partition remembers the event ids of its last `window` clicks, seeded from
//! ClickHouse when the partition is (re)loaded, so a replay after a crash judges the same
//! messages copies as the first pass did: a message at the offset the id was first seen at
//! is never its own copy. Clicks ingest re-sent from its spill (marked with a header) may
//! copy one from long before: they are also looked up in ClickHouse.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};

use clickhouse::Client;
use uuid::Uuid;

#[derive(Debug, Default)]
pub struct Copies {
    window: usize,
    /// Looked up once or twice per click: foldhash, not SipHash (no untrusted keys).
    partitions: HashMap<i32, Recent, foldhash::fast::RandomState>,
}

#[derive(Debug)]
struct Recent {
    first_seen: HashMap<Uuid, i64, foldhash::fast::RandomState>,
    order: VecDeque<(i64, Uuid)>,
}

impl Copies {
    pub fn new(window: usize) -> Self {
        Self {
            window,
            partitions: HashMap::default(),
        }
    }

    /// Forgets every partition: their positions are being read again.
    pub fn clear(&mut self) {
        self.partitions.clear();
    }

    pub fn knows(&self, partition: i32) -> bool {
        self.partitions.contains_key(&partition)
    }

    /// Whether the click `id` at `offset` copies one first seen at another offset;
    /// otherwise remembers it.
    pub fn is_copy(&mut self, partition: i32, id: Uuid, offset: i64) -> bool {
        let window = self.window;
        let recent = self.recent(partition);
        match recent.first_seen.entry(id) {
            Entry::Occupied(first) => return *first.get() != offset,
            Entry::Vacant(vacant) => vacant.insert(offset),
        };
        recent.order.push_back((offset, id));
        while recent.order.len() > window {
            if let Some((offset, id)) = recent.order.pop_front()
                && let Entry::Occupied(first) = recent.first_seen.entry(id)
                && *first.get() == offset
            {
                first.remove();
            }
        }
        false
    }

    /// Sized for the window (up to a million clicks) at once: a busy partition fills it
    /// within minutes, and growing by doubling rehashes (and faults in fresh pages).
    fn recent(&mut self, partition: i32) -> &mut Recent {
        const PRESIZED_AT_MOST: usize = 1 << 20;
        let window = self.window.min(PRESIZED_AT_MOST);
        self.partitions.entry(partition).or_insert_with(|| Recent {
            first_seen: HashMap::with_capacity_and_hasher(window, Default::default()),
            order: VecDeque::with_capacity(window + 1),
        })
    }

    /// Remembers the clicks ClickHouse holds just below `next` in `partition`.
    pub async fn seed(
        &mut self,
        clickhouse: &Client,
        topic: &str,
        partition: i32,
        next: i64,
    ) -> clickhouse::error::Result<()> {
        let from = (next - self.window as i64).max(0);
        let rows: Vec<(Uuid, u64)> = clickhouse
            .query(
                // The month partitions of the last two days only: copies follow their
                // first write by seconds, and older months need not be scanned.
                "SELECT event_id, kafka_offset FROM clicks_raw
                 WHERE received_at >= now() - 172800
                   AND kafka_topic = ? AND kafka_partition = ? AND kafka_offset >= ? AND kafka_offset < ?
                 ORDER BY kafka_offset",
            )
            .bind(topic)
            .bind(partition)
            .bind(from)
            .bind(next)
            .fetch_all::<UuidRow>()
            .await?
            .into_iter()
            .map(|r| (r.event_id, r.kafka_offset))
            .collect();
        self.recent(partition);
        for (id, offset) in rows {
            if !id.is_nil() {
                self.is_copy(partition, id, offset as i64);
            }
        }
        Ok(())
    }
}

/// A click ingest sent again from its spill, to be looked up in ClickHouse: its first
/// write may be further back than the clicks remembered.
pub struct Resent {
    pub event_id: Uuid,
    pub affiliate_id: u64,
    pub received_at: u32,
}

/// Where ClickHouse holds these clicks, if anywhere: event id → offset. Found by the
/// table's sort key (affiliate, time), so only a few granules are read.
pub async fn offsets_in_clickhouse(
    clickhouse: &Client,
    topic: &str,
    clicks: &[Resent],
) -> clickhouse::error::Result<HashMap<Uuid, i64>> {
    if clicks.is_empty() {
        return Ok(HashMap::new());
    }
    // Literals built from numbers and UUIDs only; the topic is bound.
    let keys: Vec<String> = clicks
        .iter()
        .map(|c| format!("({}, {})", c.affiliate_id, c.received_at))
        .collect();
    let ids: Vec<String> = clicks.iter().map(|c| format!("'{}'", c.event_id)).collect();
    let sql = format!(
        "SELECT event_id, kafka_offset FROM clicks_raw
         WHERE (affiliate_id, toUInt32(received_at)) IN ({}) AND toString(event_id) IN ({})
           AND kafka_topic = ?",
        keys.join(", "),
        ids.join(", ")
    );
    let rows = clickhouse
        .query(&sql)
        .bind(topic)
        .fetch_all::<UuidRow>()
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.event_id, r.kafka_offset as i64))
        .collect())
}

#[derive(clickhouse::Row, serde::Deserialize)]
struct UuidRow {
    #[serde(with = "clickhouse::serde::uuid")]
    event_id: Uuid,
    kafka_offset: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_click_is_a_copy_only_at_another_offset_and_only_within_the_window() {
        let mut copies = Copies::new(3);
        let (a, b, c, d) = (
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
        );
        assert!(!copies.is_copy(0, a, 10));
        assert!(!copies.is_copy(0, a, 10), "a replay of the same message");
        assert!(copies.is_copy(0, a, 11), "the same click again");
        assert!(!copies.is_copy(1, a, 11), "partitions are apart");
        assert!(!copies.is_copy(0, b, 12));
        assert!(!copies.is_copy(0, c, 13));
        assert!(!copies.is_copy(0, d, 14));
        assert!(!copies.is_copy(0, a, 15), "past the window: forgotten");
        assert!(copies.is_copy(0, d, 16));
        copies.clear();
        assert!(!copies.knows(0));
    }
}
