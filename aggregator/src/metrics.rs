//! Every metric aggregator exports, named and described in one place. Labels never carry
//! a referral code or an affiliate id.

use std::time::Instant;

pub const EVENTS_CONSUMED: &str = "aggregator_events_consumed_total";
pub const BATCH_SIZE: &str = "aggregator_batch_size";
pub const SINK_WRITE: &str = "aggregator_sink_write_seconds";
pub const SINK_ROWS: &str = "aggregator_sink_rows_total";
pub const CONSUMER_LAG: &str = "aggregator_consumer_lag";
pub const PARKED: &str = "aggregator_parked_total";
pub const RELEASED: &str = "aggregator_parked_released_total";
pub const FENCED: &str = "aggregator_fenced_total";
pub const REWINDS: &str = "aggregator_rewinds_total";
pub const EPOCHS: &str = "aggregator_topic_epochs_total";
pub const CLICKS: &str = "aggregator_clicks_total";
pub const CLICK_COPIES: &str = "aggregator_click_copies_total";
pub const CONVERSIONS: &str = "aggregator_conversions_total";
pub const COMMISSION_EARNED: &str = "aggregator_commission_earned_cents_total";
pub const COMMISSION_REVERSED: &str = "aggregator_commission_reversed_cents_total";
pub const FRESHNESS: &str = "aggregator_event_freshness_seconds";
pub const VERDICT_VISITORS: &str = "aggregator_verdict_visitors";
pub const VERDICT_BYTES: &str = "aggregator_verdict_state_bytes";

/// Describes every metric and starts the counters whose labels are known in advance at
/// zero, so dashboards and alerts see 0 rather than nothing before the first event.
pub fn register() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(EVENTS_CONSUMED, "Messages read from Kafka, by topic.");
    describe_histogram!(BATCH_SIZE, Unit::Count, "Messages per batch, by topic.");
    describe_histogram!(
        SINK_WRITE,
        Unit::Seconds,
        "Time to write one batch, by sink (postgres, clickhouse) and topic."
    );
    describe_counter!(SINK_ROWS, "Rows written, by sink and topic.");
    describe_gauge!(
        CONSUMER_LAG,
        Unit::Count,
        "Messages behind the partition's end, by topic and partition."
    );
    describe_counter!(
        PARKED,
        "Messages that could not be applied and were parked, by topic and reason."
    );
    describe_counter!(
        RELEASED,
        "Parked refunds applied when their purchase arrived (outcome applied), or parked for another reason then (outcome reparked)."
    );
    describe_counter!(
        FENCED,
        "Batches refused because another instance had moved the partition's progress."
    );
    describe_counter!(
        REWINDS,
        "Partitions whose fetch did not continue where the sinks stand and were rewound, by topic."
    );
    describe_counter!(
        EPOCHS,
        "Partitions found holding another log than the sinks' positions came from (topic re-created, broker back empty), applied as a new epoch from its start, by topic."
    );
    describe_counter!(CLICKS, "Clicks written, by final verdict.");
    describe_counter!(
        CLICK_COPIES,
        "Clicks dropped as copies of one already applied (the same event id at another offset: a producer retry or re-send)."
    );
    describe_counter!(CONVERSIONS, "Conversions applied, by type.");
    describe_counter!(
        COMMISSION_EARNED,
        "Commission earned, in cents of the settlement currency."
    );
    describe_counter!(
        COMMISSION_REVERSED,
        "Commission clawed back by refunds, in cents of the settlement currency."
    );
    describe_histogram!(
        FRESHNESS,
        Unit::Seconds,
        "Time from an event's arrival at ingest to its rows in ClickHouse, by topic."
    );
    describe_gauge!(
        VERDICT_VISITORS,
        Unit::Count,
        "Visitors on codes the click verdicts remember (within the dedupe window)."
    );
    describe_gauge!(
        VERDICT_BYTES,
        Unit::Bytes,
        "Memory held by the click verdicts' state."
    );
    start_at_zero();
}

/// The sinks each stream writes to.
const SINKS: [(&str, &str); 4] = [
    ("postgres", "clicks"),
    ("clickhouse", "clicks"),
    ("postgres", "conversions"),
    ("clickhouse", "conversions"),
];

fn start_at_zero() {
    use metrics::counter;
    use reftrack_events::{ClickVerdict, ConversionKind};

    use reftrack_domain::ParkReason;
    for topic in ["clicks", "conversions"] {
        counter!(EVENTS_CONSUMED, "topic" => topic).increment(0);
        counter!(REWINDS, "topic" => topic).increment(0);
        counter!(EPOCHS, "topic" => topic).increment(0);
    }
    for (sink, topic) in SINKS {
        counter!(SINK_ROWS, "sink" => sink, "topic" => topic).increment(0);
    }
    counter!(PARKED, "topic" => "clicks", "reason" => ParkReason::Undecodable.as_str())
        .increment(0);
    for reason in ParkReason::ALL {
        counter!(PARKED, "topic" => "conversions", "reason" => reason.as_str()).increment(0);
    }
    for outcome in ["applied", "reparked"] {
        counter!(RELEASED, "outcome" => outcome).increment(0);
    }
    for verdict in ClickVerdict::ALL {
        counter!(CLICKS, "verdict" => verdict.as_str()).increment(0);
    }
    for kind in ConversionKind::ALL {
        counter!(CONVERSIONS, "type" => kind.as_str()).increment(0);
    }
    for name in [FENCED, CLICK_COPIES, COMMISSION_EARNED, COMMISSION_REVERSED] {
        counter!(name).increment(0);
    }
}

/// One batch written to `sink` for `stream`: how long it took and how many rows.
pub fn sink_write(sink: &'static str, stream: &'static str, started: Instant, rows: usize) {
    metrics::histogram!(SINK_WRITE, "sink" => sink, "topic" => stream)
        .record(started.elapsed().as_secs_f64());
    metrics::counter!(SINK_ROWS, "sink" => sink, "topic" => stream).increment(rows as u64);
}
