//! The broker killed with SIGKILL and started again in the middle of traffic, as the local
//! stack runs it (tansu on sqlite storage, producers not idempotent): every click and
//! conversion answered before, during and after the restart appears exactly once through
//! the public APIs, and no service is restarted.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use reftrack_testkit::kafka::PrivateBroker;

#[test]
fn a_broker_restart_mid_traffic_loses_and_doubles_nothing() {
    let mut broker = PrivateBroker::launch_durable().unwrap();
    let json = std::env::temp_dir().join(format!("reftrack-restart-{}.json", std::process::id()));
    // 600 clicks over 20 s on three promoters, a fifth of the valid ones signing up and
    // half of those buying, reported through ingest while the broker is away too.
    let mut run = Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args([
            "run",
            "--clicks",
            "600",
            "--rate",
            "30",
            "--affiliates",
            "3",
        ])
        .args([
            "--signup-share",
            "0.2",
            "--purchase-share",
            "0.5",
            "--unknown-share",
            "0",
        ])
        .args(["--settle", "120", "--json"])
        .arg(&json)
        .env(
            "DATABASE_URL",
            std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| {
                "postgres://reftrack:reftrack@127.0.0.1:5432/reftrack_test".into()
            }),
        )
        .env("KAFKA_BROKERS", broker.brokers())
        .env("KAFKA_IDEMPOTENCE", "false")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("loadtest starts");

    // loadtest says when it starts creating promoters; the clicks follow within a second.
    let (lines, said) = mpsc::channel::<(Instant, String)>();
    let stderr = run.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut log = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines.send((Instant::now(), line.clone()));
            log.push_str(&line);
            log.push('\n');
        }
        log
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, line) = said
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("loadtest starts its traffic");
        if line.starts_with("creating") {
            break;
        }
    }
    std::thread::sleep(Duration::from_secs(7));
    let killed = Instant::now();
    broker.stop();
    std::thread::sleep(Duration::from_secs(2));
    broker.start().unwrap();
    let back = Instant::now();

    let output = run.wait_with_output().unwrap();
    let log = reader.join().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "loadtest run failed:\n{stdout}\n{log}\n--- broker ---\n{}",
        broker.log_tail()
    );
    let traffic_ended = said
        .try_iter()
        .find(|(_, line)| line.contains("clicks answered in"))
        .map(|(at, _)| at)
        .expect("loadtest reports the end of its clicks");
    assert!(
        killed < back && back < traffic_ended,
        "the broker was away and back while clicks were sent"
    );

    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("the JSON report")).expect("JSON");
    let _ = std::fs::remove_file(&json);
    assert_eq!(report["clicks"]["sent"], 600);
    assert_eq!(
        report["clicks"]["answered"], 600,
        "every click was redirected"
    );
    let verification = &report["verification"];
    assert_eq!(verification["passed"], true, "{report:#}\n{log}");
    let expected = &verification["expected"];
    // The freshness probe's clicks go to a promoter of its own, verified too.
    let probes = report["freshness_ms"]["probes"].as_u64().unwrap();
    assert_eq!(
        expected["raw_clicks"].as_u64(),
        Some(600 + probes),
        "every answered click counted once"
    );
    assert!(
        expected["purchases"].as_u64() >= Some(2),
        "purchases went through: {expected}"
    );
}
