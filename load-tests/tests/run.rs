//! `loadtest run` end to end: ingest, aggregator and api as processes of their own on the
//! real stack, a small burst of realistic traffic, and the verification through the
//! public APIs must pass, with the figures in the JSON report.

use std::process::Command;

#[test]
fn a_small_run_is_verified_through_the_public_api() {
    let json = std::env::temp_dir().join(format!("reftrack-run-{}.json", std::process::id()));
    let output = Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args([
            "run",
            "--clicks",
            "4000",
            "--rate",
            "2000",
            "--affiliates",
            "20",
        ])
        .args(["--settle", "120", "--json"])
        .arg(&json)
        // Beside the other tests' schemas, in the test database.
        .env(
            "DATABASE_URL",
            std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| {
                "postgres://reftrack:reftrack@127.0.0.1:5432/reftrack_test".into()
            }),
        )
        .output()
        .expect("loadtest starts");
    assert!(
        output.status.success(),
        "loadtest run failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("the JSON report")).expect("JSON");
    let _ = std::fs::remove_file(&json);
    assert_eq!(report["clicks"]["sent"], 4000);
    assert_eq!(report["clicks"]["answered"], 4000);
    assert_eq!(report["verification"]["passed"], true, "{report:#}");
    assert_eq!(
        report["verification"]["affiliates"], 21,
        "20 promoters and the probe"
    );
    assert!(report["conversions"]["journeys"].as_u64() > Some(0));
    assert!(report["freshness_ms"]["probes"].as_u64() > Some(0));
}
