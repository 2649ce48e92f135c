//! Assertions every service's tests share.

use std::process::Command;

use crate::Served;

/// `/healthz` answers, `/readyz` reports each of `dependencies` as ok, and `/metrics`
/// exports request metrics labelled by matched route.
pub async fn assert_ops_endpoints(server: &Served, dependencies: &[&str]) {
    let http = reqwest::Client::new();
    let health = http.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);

    let ready = http.get(server.url("/readyz")).send().await.unwrap();
    let status = ready.status();
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ready", "{body}");
    for dependency in dependencies {
        assert_eq!(body["checks"][dependency], "ok", "{dependency}: {body}");
    }

    let metrics = server.metrics().await;
    assert!(
        metrics.contains(r#"route="/readyz""#),
        "requests are counted by matched route: {metrics}"
    );
}

/// Runs the service binary with an unparsable `DATABASE_URL`, then in production without
/// `secret_var`: each run exits 2 with one line that names the variable.
pub fn assert_bad_config_is_one_line(bin: &str, name: &str, secret_var: Option<&str>) {
    let out = Command::new(bin)
        .env("DATABASE_URL", "not a url")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "{name}: bad configuration: DATABASE_URL: invalid value 'not a url'"
        )),
        "{stderr}"
    );

    if let Some(var) = secret_var {
        let out = Command::new(bin)
            .env("REFTRACK_ENV", "production")
            .env_remove(var)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        assert_eq!(
            String::from_utf8(out.stderr).unwrap().trim_end(),
            format!("{name}: bad configuration: {var}: must be set when REFTRACK_ENV=production")
        );
    }
}
