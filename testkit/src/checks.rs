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
/// `secret_var`, with a shipped value and with a short one: each run exits 2 with one line
/// that names the variable.
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
        let refusal = |value: Option<&str>| {
            let mut command = Command::new(bin);
            command.env("REFTRACK_ENV", "production").env_remove(var);
            if let Some(value) = value {
                command.env(var, value);
            }
            let out = command.output().unwrap();
            assert_eq!(out.status.code(), Some(2));
            let stderr = String::from_utf8(out.stderr).unwrap();
            assert_eq!(stderr.lines().count(), 1, "{stderr}");
            stderr
        };
        let prefix = format!("{name}: bad configuration: {var}: ");
        for (value, says) in [
            (None, "must be set when REFTRACK_ENV=production"),
            // What docker-compose shipped as an example, and a short key.
            (
                Some("change-me-jwt-signing-key"),
                "is a value shipped with reftrack",
            ),
            (
                Some("only-20-bytes-long!!"),
                "is 20 bytes; production needs at least 32",
            ),
        ] {
            let stderr = refusal(value);
            assert!(
                stderr.starts_with(&format!("{prefix}{says}")),
                "{value:?}: {stderr}"
            );
        }
    }
}
