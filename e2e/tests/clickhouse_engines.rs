//! The ClickHouse schema and the store's queries on two engines: the local server
//! (Debian's 18.16) and a current ClickHouse run in-process by PyPI's chdb-core. The same
//! rows go into both; every query must run on both and give the same answers, so that
//! nothing reftrack relies on works only on the old release (or only on the new one).

use std::collections::BTreeMap;

use reftrack_store::clickhouse::schema_statements;
use reftrack_store::stats::{DAILY, PERIODS, lifetime_sql};
use reftrack_testkit::{TestStack, python};
use serde_json::{Value, json};

/// Rows as the aggregator writes them: clicks of two affiliates over ten days, with
/// every verdict, repeat visitors, and conversions of each kind (one not valid).
fn fixture(db: &str) -> Vec<String> {
    let mut clicks = Vec::new();
    let verdicts = [
        "valid",
        "valid",
        "bot",
        "prefetch",
        "duplicate",
        "valid",
        "rate_limited",
        "unknown_code",
    ];
    for i in 0..40u64 {
        let affiliate = 1 + i % 2;
        let day = 1 + i % 10;
        clicks.push(format!(
            "('00000000-0000-4000-8000-{i:012}', 'clicks', {p}, {i}, '2026-11-{day:02} 12:00:00', {ms}, {affiliate}, 'C{affiliate}', {visitor}, 'ua', '', 'GET', 'DE', '{verdict}')",
            p = i % 3,
            ms = 1_700_000_000_000u64 + i,
            visitor = 100 + i % 7,
            verdict = verdicts[(i % 8) as usize],
        ));
    }
    let conversions = [
        ("s1", "signup", "valid", 1, 0, 200, 3),
        ("p1", "purchase", "valid", 1, 10000, 1500, 4),
        ("p2", "purchase", "valid", 1, 5000, 750, 8),
        ("r1", "refund", "valid", 1, 5000, 750, 9),
        ("p3", "purchase", "valid", 2, 2500, 250, 7),
        ("x1", "purchase", "duplicate", 2, 9900, 990, 7),
    ];
    let conversions: Vec<String> = conversions
        .iter()
        .enumerate()
        .map(|(i, (id, kind, verdict, affiliate, amount, commission, day))| {
            format!(
                "('{id}', 'conversions', 0, {i}, '{kind}', '{verdict}', {affiliate}, 'C{affiliate}', 500, {amount}, {commission}, '2026-11-{day:02} 09:30:00', '2026-11-{day:02} 09:30:01')"
            )
        })
        .collect();
    vec![
        format!(
            "INSERT INTO {db}.clicks_raw (event_id, kafka_topic, kafka_partition, kafka_offset, received_at, received_at_ms, affiliate_id, code, visitor, user_agent, referer, method, country, verdict) VALUES {}",
            clicks.join(", ")
        ),
        format!(
            "INSERT INTO {db}.conversions_raw (event_id, kafka_topic, kafka_partition, kafka_offset, kind, verdict, affiliate_id, code, user_id, amount_cents, commission_amount_cents, occurred_at, received_at) VALUES {}",
            conversions.join(", ")
        ),
    ]
}

/// `sql` with each `?` replaced by the next of `values` (already SQL literals).
fn bind(sql: &str, values: &[&str]) -> String {
    let mut values = values.iter();
    let bound: String = sql
        .split('?')
        .enumerate()
        .map(|(i, part)| {
            if i == 0 {
                part.to_string()
            } else {
                format!("{}{part}", values.next().expect("a value per placeholder"))
            }
        })
        .collect();
    assert!(values.next().is_none(), "more values than placeholders");
    bound
}

/// The store's queries, by name, over the fixture.
fn queries() -> BTreeMap<&'static str, String> {
    let (from, before, to) = ("'2026-11-06'", "'2026-11-01'", "'2026-11-10'");
    BTreeMap::from([
        ("probe", "SELECT 1 AS one".to_string()),
        (
            "periods",
            bind(PERIODS, &[from, "1", before, to, from, "1", before, to]),
        ),
        (
            "periods_of_one_without_conversions",
            bind(PERIODS, &[from, "2", before, to, from, "2", before, to]),
        ),
        ("lifetime", lifetime_sql(&[1, 2, 3])),
        ("daily", bind(DAILY, &["1", before, to, "1", before, to])),
    ])
}

/// Rows with every value as text (engines print 64-bit integers as numbers or strings),
/// in a stable order.
fn normalised(rows: &[Value]) -> Vec<BTreeMap<String, String>> {
    let mut rows: Vec<BTreeMap<String, String>> = rows
        .iter()
        .map(|row| {
            row.as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str().map_or_else(|| v.to_string(), String::from),
                    )
                })
                .collect()
        })
        .collect();
    rows.sort();
    rows
}

async fn on_local_server(stack: &TestStack) -> BTreeMap<&'static str, Vec<Value>> {
    let client = stack.clickhouse_client();
    for statement in fixture(&stack.clickhouse.database) {
        client.query(&statement).execute().await.unwrap();
    }
    let mut results = BTreeMap::new();
    for (name, sql) in queries() {
        let bytes = client
            .query(&sql)
            .fetch_bytes("JSONEachRow")
            .unwrap()
            .collect()
            .await
            .unwrap_or_else(|err| panic!("{name} on the local server: {err}"));
        let rows = String::from_utf8(bytes.to_vec())
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        results.insert(name, rows);
    }
    results
}

fn on_current_engine(db: &str) -> (String, BTreeMap<String, Vec<Value>>) {
    let mut statements = schema_statements(db);
    statements.extend(fixture(db));
    statements.push(format!("USE {db}"));
    let spec = json!({"statements": statements, "queries": queries()});
    let file = std::env::temp_dir().join(format!("reftrack-chdb-{db}.json"));
    std::fs::write(&file, spec.to_string()).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../testkit/py/chdb_run.py");
    let output = python::run(&[script, file.to_str().unwrap()], &[]);
    let answer: Value = serde_json::from_slice(&output.stdout).unwrap();
    let results = serde_json::from_value(answer["results"].clone()).unwrap();
    (answer["version"].as_str().unwrap().to_string(), results)
}

#[tokio::test]
async fn schema_and_queries_give_the_same_answers_on_18_16_and_a_current_clickhouse() {
    let stack = TestStack::new().await.unwrap();
    let local = on_local_server(&stack).await;
    let (version, current) = on_current_engine(&stack.clickhouse.database);
    let major: u32 = version.split('.').next().unwrap().parse().unwrap();
    assert!(major >= 24, "chdb runs a current ClickHouse: {version}");
    for (name, rows) in &local {
        assert_eq!(
            normalised(rows),
            normalised(&current[*name]),
            "{name}: 18.16 and {version} disagree"
        );
    }
    // And the answers are the right ones, not merely the same.
    let periods = normalised(&local["periods"]);
    let this = periods.iter().find(|r| r["key"] == "1").unwrap();
    let previous = periods.iter().find(|r| r["key"] == "0").unwrap();
    assert_eq!(
        (this["raw_clicks"].as_str(), previous["raw_clicks"].as_str()),
        ("8", "12"),
        "affiliate 1's clicks fall on days 7 and 9 (4 each), and 1, 3 and 5: {periods:?}"
    );
    assert_eq!(
        (
            this["purchases"].as_str(),
            this["refunds"].as_str(),
            this["sales_cents"].as_str()
        ),
        ("1", "1", "5000")
    );
    let lifetime = normalised(&local["lifetime"]);
    assert_eq!(
        lifetime.len(),
        2,
        "affiliates 1 and 2; 3 has nothing: {lifetime:?}"
    );
    let two = lifetime.iter().find(|r| r["affiliate_id"] == "2").unwrap();
    assert_eq!(
        (two["purchases"].as_str(), two["sales_cents"].as_str()),
        ("1", "2500"),
        "the duplicate purchase is not counted"
    );
}
