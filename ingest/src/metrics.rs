//! Every metric ingest exports, named and described in one place. Labels never carry a
//! referral code or an affiliate id.

pub const CLICKS: &str = "ingest_clicks_total";
pub const EVENTS_PRODUCED: &str = "ingest_events_produced_total";
pub const EVENTS_FAILED: &str = "ingest_events_failed_total";
pub const EVENTS_SPILLED: &str = "ingest_events_spilled_total";
pub const EVENTS_REPLAYED: &str = "ingest_events_replayed_total";
pub const EVENTS_DROPPED: &str = "ingest_events_dropped_total";
pub const QUEUE_DEPTH: &str = "ingest_producer_queue_depth";
pub const SPILL_BYTES: &str = "ingest_spill_bytes";
pub const SPILL_FREE_BYTES: &str = "ingest_spill_free_bytes";
pub const BROKER_RTT: &str = "ingest_broker_rtt_seconds";
pub const CONVERSIONS: &str = "ingest_conversions_total";
pub const DIRECTORY_CODES: &str = "ingest_directory_codes";
pub const TOPICS_RECREATED: &str = "ingest_topics_recreated_total";
pub const PRODUCERS_RENEWED: &str = "ingest_producers_renewed_total";

/// Describes every metric and starts the counters whose labels are known in advance at
/// zero, so dashboards and alerts see 0 rather than nothing before the first event.
pub fn register() {
    use metrics::{describe_counter, describe_gauge};
    describe_counter!(
        CLICKS,
        "Referral-link clicks answered, by the verdict ingest gave them."
    );
    describe_counter!(EVENTS_PRODUCED, "Events the broker acknowledged, by topic.");
    describe_counter!(
        EVENTS_FAILED,
        "Events the broker did not acknowledge in time, by topic (clicks are then spilled)."
    );
    describe_counter!(
        EVENTS_SPILLED,
        "Clicks written to the local spill because the broker could not take them."
    );
    describe_counter!(EVENTS_REPLAYED, "Spilled clicks replayed to the broker.");
    describe_counter!(
        EVENTS_DROPPED,
        "Clicks dropped because they could not be spilled, by reason (spill_cap, disk)."
    );
    describe_gauge!(
        QUEUE_DEPTH,
        "Clicks queued in the producer and not yet acknowledged."
    );
    describe_gauge!(SPILL_BYTES, "Bytes of clicks waiting in the spill.");
    describe_gauge!(
        SPILL_FREE_BYTES,
        "Free bytes on the spill's file system (below SPILL_MIN_FREE_BYTES clicks that would spill are dropped)."
    );
    describe_gauge!(
        BROKER_RTT,
        metrics::Unit::Seconds,
        "Broker round-trip time (librdkafka statistics, average)."
    );
    describe_counter!(
        CONVERSIONS,
        "Conversions received, by type and outcome (accepted, invalid, unavailable)."
    );
    describe_gauge!(
        DIRECTORY_CODES,
        "Attributable referral codes held in memory."
    );
    describe_counter!(
        TOPICS_RECREATED,
        "Topics ingest created again because the broker had lost them."
    );
    describe_counter!(
        PRODUCERS_RENEWED,
        "Producers replaced because the broker no longer knew their idempotent identity, by topic."
    );
    start_at_zero();
}

fn start_at_zero() {
    use metrics::counter;

    use crate::spill::Dropped;
    use reftrack_events::{ClickVerdict, ConversionKind};
    for verdict in ClickVerdict::ALL {
        counter!(CLICKS, "verdict" => verdict.as_str()).increment(0);
    }
    for topic in ["clicks", "conversions"] {
        counter!(EVENTS_PRODUCED, "topic" => topic).increment(0);
        counter!(EVENTS_FAILED, "topic" => topic).increment(0);
        counter!(PRODUCERS_RENEWED, "topic" => topic).increment(0);
    }
    for name in [EVENTS_SPILLED, EVENTS_REPLAYED, TOPICS_RECREATED] {
        counter!(name).increment(0);
    }
    for reason in [Dropped::Cap, Dropped::Disk] {
        counter!(EVENTS_DROPPED, "reason" => reason.as_str()).increment(0);
    }
    for kind in ConversionKind::ALL {
        for outcome in ["accepted", "unavailable"] {
            counter!(CONVERSIONS, "type" => kind.as_str(), "outcome" => outcome).increment(0);
        }
    }
    counter!(CONVERSIONS, "type" => "unknown", "outcome" => "invalid").increment(0);
}

/// The counters every click moves, looked up once: a registry lookup per click costs
/// more than the increment (the click path's budget is a few microseconds).
pub struct ClickCounters {
    by_verdict: Vec<(reftrack_events::ClickVerdict, metrics::Counter)>,
    pub produced: metrics::Counter,
}

impl ClickCounters {
    pub fn get() -> &'static ClickCounters {
        static COUNTERS: std::sync::OnceLock<ClickCounters> = std::sync::OnceLock::new();
        COUNTERS.get_or_init(|| ClickCounters {
            by_verdict: reftrack_events::ClickVerdict::ALL
                .iter()
                .map(|v| (*v, metrics::counter!(CLICKS, "verdict" => v.as_str())))
                .collect(),
            produced: metrics::counter!(EVENTS_PRODUCED, "topic" => "clicks"),
        })
    }

    pub fn verdict(&self, verdict: reftrack_events::ClickVerdict) -> &metrics::Counter {
        &self
            .by_verdict
            .iter()
            .find(|(v, _)| *v == verdict)
            .expect("every verdict has a counter")
            .1
    }
}
