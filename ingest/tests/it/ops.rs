use reftrack_testkit::{TestStack, checks};

#[tokio::test]
async fn health_readiness_and_metrics_are_served_and_shutdown_is_graceful() {
    let stack = TestStack::new().await.unwrap();
    let server = crate::spawn(&crate::config(&stack)).await;
    checks::assert_ops_endpoints(&server, &["postgres", "kafka"]).await;
    server.stop().await.expect("graceful shutdown");
}

#[test]
fn bad_configuration_stops_start_up_with_one_line_naming_the_variable() {
    checks::assert_bad_config_is_one_line(
        env!("CARGO_BIN_EXE_ingest"),
        "ingest",
        Some("VISITOR_HASH_SECRET"),
    );
}

/// A loopback port free a moment ago.
fn free_port() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

#[tokio::test]
async fn with_an_ops_address_the_public_port_serves_no_metrics_or_readiness() {
    let stack = TestStack::new().await.unwrap();
    let mut config = crate::config(&stack);
    let ops = free_port();
    config.http.ops_addr = Some(ops);
    let server = crate::spawn(&config).await;
    let http = reqwest::Client::new();
    let get = |url: String| {
        let http = http.clone();
        async move { http.get(url).send().await.unwrap() }
    };
    let health = get(server.url("/healthz")).await;
    assert_eq!(health.status(), 200);
    assert_eq!(
        health.json::<serde_json::Value>().await.unwrap(),
        serde_json::json!({"status": "ok"}),
        "the public health answer says nothing of the internals"
    );
    for path in ["/metrics", "/readyz"] {
        assert_eq!(
            get(server.url(path)).await.status(),
            404,
            "{path} is not public"
        );
        let on_ops = get(format!("http://{ops}{path}")).await;
        assert_eq!(on_ops.status(), 200, "{path} on the ops listener");
    }
    server
        .stop()
        .await
        .expect("graceful shutdown of both listeners");
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stack = TestStack::new().await.unwrap();
    let mut config = crate::config(&stack);
    config.http.header_timeout_secs = 1;
    let server = crate::spawn(&config).await;
    let mut slow = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(b"GET /?ref=abc HTTP/1.1\r\nHost: x\r\nUser-Agent: slow")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        slow.read_to_end(&mut rest),
    )
    .await;
    assert!(
        matches!(read, Ok(Ok(_))),
        "the server closed the connection: {read:?}"
    );
    let waited = started.elapsed();
    assert!(
        waited >= std::time::Duration::from_millis(900)
            && waited < std::time::Duration::from_secs(4),
        "closed after the 1 s header deadline, not before: {waited:?}"
    );
    // Meanwhile, and after, whole requests are answered.
    let answer = reqwest::get(server.url("/healthz")).await.unwrap();
    assert_eq!(answer.status(), 200);
}

#[tokio::test]
async fn invented_methods_count_as_other_and_big_bodies_are_refused() {
    let stack = TestStack::new().await.unwrap();
    let mut config = crate::config(&stack);
    config.http.body_limit_bytes = 64 * 1024;
    let server = crate::spawn(&config).await;
    let http = reqwest::Client::new();
    for i in 0..300 {
        let method = reqwest::Method::from_bytes(format!("FLOOD{i}").as_bytes()).unwrap();
        http.request(method, server.url("/")).send().await.unwrap();
    }
    let metrics = server.metrics().await;
    assert!(!metrics.contains("FLOOD"), "no label per invented method");
    assert!(metrics.contains(r#"method="other""#), "{metrics}");
    let http_lines = metrics
        .lines()
        .filter(|l| l.starts_with("http_requests_total{"))
        .count();
    assert!(
        http_lines < 20,
        "the label set stays small: {http_lines} series"
    );

    let big = serde_json::json!({"event_id": "x".repeat(100 * 1024)});
    let answer = http
        .post(server.url("/v1/conversions"))
        .bearer_auth("any")
        .json(&big)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 413, "a body over the limit is refused");
}

#[tokio::test]
async fn a_request_that_hangs_is_cut_off_and_holds_its_place_until_then() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stack = TestStack::new().await.unwrap();
    let mut config = crate::config(&stack);
    config.http.request_timeout_secs = 1;
    config.http.max_in_flight = 1;
    let server = crate::spawn(&config).await;
    // A body promised and never sent: the request waits inside the service.
    let mut slow = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(
        b"POST /v1/conversions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
    )
    .await
    .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    // Meanwhile the one place is taken: another request is told to come back.
    let busy = reqwest::get(server.url("/healthz")).await.unwrap();
    assert_eq!(busy.status(), 503);
    assert_eq!(busy.headers()["retry-after"], "1");
    // The hanging request is answered 408 at its deadline, and the place is free again.
    let mut answer = vec![0; 64];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), slow.read(&mut answer))
        .await
        .expect("answered before 5 s")
        .unwrap();
    let head = String::from_utf8_lossy(&answer[..n]);
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    let after = reqwest::get(server.url("/healthz")).await.unwrap();
    assert_eq!(after.status(), 200);
}
