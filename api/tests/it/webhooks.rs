//! Webhooks against a real receiver on loopback, which checks every signature with the
//! Standard Webhooks reference library (Python), not with reftrack's code.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use reftrack_store::api_keys::Scope;
use reftrack_testkit::procs::{Launch, free_addr};
use reftrack_testkit::python::WebhookReceiver;
use reftrack_testkit::{TestStack, wait};
use serde_json::{Value, json};

use crate::{Client, config, key};

/// Sends webhooks quickly: receivers on loopback allowed, retries after ~200 ms, a
/// receiver has 1 s to answer.
fn fast(stack: &TestStack) -> api::Config {
    let mut config = config(stack);
    config.webhooks.allow_private = true;
    config.webhooks.retry_base_ms = 200;
    config.webhooks.timeout_secs = 1;
    config
}

/// Registers `url` for `types` (empty: all); the endpoint as answered (with its secret).
async fn register(api: &Client, admin: &str, url: &str, types: &[&str]) -> Value {
    let body = json!({"url": url, "event_types": types, "description": "test"});
    let (status, answer) = api
        .call(
            "POST",
            "/api/v1/affiliate/webhooks/",
            Some(admin),
            Some(body),
        )
        .await;
    assert_eq!(status, 201, "{answer}");
    answer["data"].clone()
}

/// Points the endpoint at `path` to `receiver` (which needs the secret registering made).
async fn point_at(api: &Client, admin: &str, path: &str, receiver: &WebhookReceiver) {
    let body = json!({"url": receiver.url("/hooks")});
    let (status, answer) = api.call("PUT", path, Some(admin), Some(body)).await;
    assert_eq!(status, 200, "{answer}");
}

/// An endpoint for `types` delivering to a new receiver that checks its secret and
/// answers by `plan`; the endpoint's path.
async fn endpoint_with_receiver(
    api: &Client,
    admin: &str,
    types: &[&str],
    plan: &str,
) -> (String, WebhookReceiver) {
    let endpoint = register(api, admin, "http://127.0.0.1:9/", types).await;
    let secret = endpoint["secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_"), "{endpoint}");
    let receiver = WebhookReceiver::start(&[secret]);
    receiver.plan(plan);
    let path = format!("/api/v1/affiliate/webhooks/{}/", endpoint["id"]);
    point_at(api, admin, &path, &receiver).await;
    (path, receiver)
}

async fn new_affiliate(api: &Client, admin: &str, n: usize) -> i64 {
    let body = json!({"name": format!("Hook {n}"), "email": format!("hook{n}@example.com"),
                      "payment_methods": [{"type": "paypal", "email": format!("hook{n}@example.com")}]});
    let (status, answer) = api
        .call(
            "POST",
            "/api/v1/affiliate/affiliates/",
            Some(admin),
            Some(body),
        )
        .await;
    assert_eq!(status, 201, "{answer}");
    answer["data"]["id"].as_i64().unwrap()
}

/// Waits until the receiver answered 200 to `n` distinct messages; every request so far.
async fn delivered(receiver: &WebhookReceiver, n: usize) -> Vec<Value> {
    let ok_ids = || {
        receiver
            .received()
            .iter()
            .filter(|r| r["answered"] == "200")
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect::<BTreeSet<_>>()
    };
    let found = wait::until(Duration::from_secs(60), "webhooks delivered", || async {
        ok_ids().len() >= n
    })
    .await;
    assert!(found.is_ok(), "received: {:#?}", receiver.received());
    receiver.received()
}

#[tokio::test]
async fn deliveries_are_signed_by_the_standard_and_retried_after_errors_and_timeouts() {
    let stack = TestStack::new().await.unwrap();
    let admin = key(&stack, &[Scope::Admin]).await;
    let api = Client::new(&fast(&stack)).await;
    let (path, receiver) = endpoint_with_receiver(&api, &admin, &[], "500,timeout").await;

    let affiliate = new_affiliate(&api, &admin, 1).await;
    let approve = format!("/api/v1/affiliate/affiliates/{affiliate}/approve/");
    let (status, _) = api
        .call(
            "POST",
            &approve,
            Some(&admin),
            Some(json!({"approval_note": "welcome"})),
        )
        .await;
    assert_eq!(status, 200);

    let received = delivered(&receiver, 2).await;
    assert!(
        received.iter().all(|r| r["verified_by"] == json!([0])),
        "every request verifies: {received:#?}"
    );
    let answers: Vec<&str> = received
        .iter()
        .map(|r| r["answered"].as_str().unwrap())
        .collect();
    assert_eq!(
        answers.iter().filter(|a| **a == "500").count(),
        1,
        "{answers:?}"
    );
    assert_eq!(
        answers.iter().filter(|a| **a == "timeout").count(),
        1,
        "{answers:?}"
    );
    // A retry carries the same message id; each event arrives in full.
    let by_type: BTreeMap<&str, &Value> = received
        .iter()
        .filter(|r| r["answered"] == "200")
        .map(|r| (r["type"].as_str().unwrap(), r))
        .collect();
    assert_eq!(
        by_type.keys().copied().collect::<Vec<_>>(),
        ["affiliate.approved", "affiliate.created"]
    );
    assert_eq!(by_type["affiliate.created"]["data"]["id"], affiliate);
    assert_eq!(
        by_type["affiliate.created"]["data"]["email"],
        "hook1@example.com"
    );
    assert_eq!(by_type["affiliate.approved"]["data"]["note"], "welcome");
    let ids: BTreeSet<&str> = received.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 2, "two messages, four requests: {received:#?}");

    // The delivery log shows every attempt, once the sender has written down the answers
    // the receiver already gave.
    let log_path = format!("{path}deliveries/");
    let read_log = || async {
        let (status, log) = api.call("GET", &log_path, Some(&admin), None).await;
        assert_eq!(status, 200, "{log}");
        log
    };
    let all_delivered = |log: &Value| {
        log["data"]["results"]
            .as_array()
            .is_some_and(|d| d.len() == 2 && d.iter().all(|d| d["status"] == "delivered"))
    };
    let settled = wait::until(Duration::from_secs(30), "deliveries recorded", || async {
        all_delivered(&read_log().await)
    })
    .await;
    let log = read_log().await;
    assert!(settled.is_ok(), "{log}");
    let deliveries = log["data"]["results"].as_array().unwrap();
    let attempts: Vec<&Value> = deliveries
        .iter()
        .flat_map(|d| d["attempts"].as_array().unwrap())
        .collect();
    assert_eq!(attempts.len(), 4, "{log}");
    assert!(attempts.iter().any(|a| a["status_code"] == 500), "{log}");
    assert!(
        attempts.iter().any(|a| a["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("timed out"))),
        "{log}"
    );
}

#[tokio::test]
async fn an_endpoint_failing_again_and_again_is_disabled_and_a_delivery_can_be_sent_again() {
    let stack = TestStack::new().await.unwrap();
    let admin = key(&stack, &[Scope::Admin]).await;
    let mut config = fast(&stack);
    config.webhooks.disable_after_failures = 3;
    let api = Client::new(&config).await;
    let (path, receiver) =
        endpoint_with_receiver(&api, &admin, &["affiliate.created"], "500*").await;
    new_affiliate(&api, &admin, 2).await;

    let disabled = wait::until(Duration::from_secs(60), "endpoint disabled", || async {
        let (_, answer) = api.call("GET", &path, Some(&admin), None).await;
        answer["data"]["enabled"] == false
    })
    .await;
    assert!(disabled.is_ok(), "{:#?}", receiver.received());
    let (_, answer) = api.call("GET", &path, Some(&admin), None).await;
    let reason = answer["data"]["disabled_reason"].as_str().unwrap();
    assert!(reason.starts_with("3 failed attempts in a row"), "{reason}");
    assert_eq!(
        receiver.received().len(),
        3,
        "nothing is sent once disabled"
    );

    // Fixed on the receiver's side: enabled again and redelivered by hand.
    receiver.plan("");
    let (status, answer) = api
        .call("PUT", &path, Some(&admin), Some(json!({"enabled": true})))
        .await;
    assert_eq!(
        (status, answer["data"]["consecutive_failures"].as_i64()),
        (200, Some(0))
    );
    let (_, log) = api
        .call("GET", &format!("{path}deliveries/"), Some(&admin), None)
        .await;
    let delivery = log["data"]["results"][0]["id"].as_i64().unwrap();
    let (status, _) = api
        .call(
            "POST",
            &format!("{path}deliveries/{delivery}/redeliver/"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 202);
    let received = delivered(&receiver, 1).await;
    let ids: BTreeSet<&str> = received.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids.len(),
        1,
        "the same message id throughout: {received:#?}"
    );
}

#[tokio::test]
async fn after_a_rotation_deliveries_verify_with_the_old_secret_and_the_new() {
    let stack = TestStack::new().await.unwrap();
    let admin = key(&stack, &[Scope::Admin]).await;
    let api = Client::new(&fast(&stack)).await;
    let endpoint = register(&api, &admin, "http://127.0.0.1:9/", &[]).await;
    let path = format!("/api/v1/affiliate/webhooks/{}/", endpoint["id"]);
    let (status, rotated) = api
        .call("POST", &format!("{path}rotate-secret/"), Some(&admin), None)
        .await;
    assert_eq!(status, 200, "{rotated}");
    let (old, new) = (
        endpoint["secret"].as_str().unwrap(),
        rotated["data"]["secret"].as_str().unwrap(),
    );
    assert_ne!(old, new);
    let receiver = WebhookReceiver::start(&[old, new]);
    point_at(&api, &admin, &path, &receiver).await;
    new_affiliate(&api, &admin, 3).await;
    let received = delivered(&receiver, 1).await;
    assert_eq!(received[0]["verified_by"], json!([0, 1]), "{received:#?}");
}

#[tokio::test]
async fn endpoints_on_private_addresses_are_refused_unless_allowed() {
    let stack = TestStack::new().await.unwrap();
    let admin = key(&stack, &[Scope::Admin]).await;
    let api = Client::new(&config(&stack)).await;
    for url in [
        "http://127.0.0.1:8000/",
        "http://169.254.169.254/latest",
        "http://[::1]/",
        "http://localhost/",
    ] {
        let (status, answer) = api
            .call(
                "POST",
                "/api/v1/affiliate/webhooks/",
                Some(&admin),
                Some(json!({"url": url})),
            )
            .await;
        assert_eq!(status, 400, "{url}: {answer}");
        let message = answer["error"]["details"]["url"][0]
            .as_str()
            .unwrap_or_default();
        assert!(message.contains("private"), "{url}: {answer}");
    }
    let (status, answer) = api
        .call("POST", "/api/v1/affiliate/webhooks/", Some(&admin),
              Some(json!({"url": "https://hooks.example.com/", "event_types": ["payout.paid", "nope"]})))
        .await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]["details"]["event_types[1]"].is_array(),
        "{answer}"
    );
}

#[tokio::test]
async fn a_change_rolled_back_writes_no_event_and_a_committed_one_writes_one() {
    let stack = TestStack::new().await.unwrap();
    let count = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM webhook_events WHERE type = 'affiliate.created'",
        )
        .fetch_one(&stack.pool)
        .await
        .unwrap()
    };
    let insert = "INSERT INTO affiliates (referral_code, commission_rate, min_withdrawal_balance)
                  VALUES ($1, 10, 20)";
    let mut tx = stack.pool.begin().await.unwrap();
    sqlx::query(insert)
        .bind("ROLLED_BACK")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(count().await, 0);
    sqlx::query(insert)
        .bind("COMMITTED")
        .execute(&stack.pool)
        .await
        .unwrap();
    assert_eq!(count().await, 1);
}

/// The sender killed with SIGKILL again and again while it delivers to a slow receiver,
/// then two senders at once: every event still arrives (at least once, by its message id). Multi-threaded: the
/// processes are started and killed with blocking calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_event_is_lost_across_kill_9s_of_the_sender() {
    let stack = TestStack::new().await.unwrap();
    let admin = key(&stack, &[Scope::Admin]).await;
    // An api of its own to register with and create affiliates through; it sends nothing.
    let mut quiet = config(&stack);
    quiet.webhooks.send = false;
    quiet.webhooks.allow_private = true;
    let api = Client::new(&quiet).await;
    // Slow answers, so that kills land mid-request.
    let plan = "timeout,timeout,500,timeout,500,timeout";
    let (_, receiver) = endpoint_with_receiver(&api, &admin, &["affiliate.created"], plan).await;
    const AFFILIATES: usize = 40;
    for n in 0..AFFILIATES {
        new_affiliate(&api, &admin, 100 + n).await;
    }

    // The sender: the api binary as a process, killed with SIGKILL five times.
    let program = std::path::PathBuf::from(env!("CARGO_BIN_EXE_api"));
    let env = |addr: std::net::SocketAddr| {
        let mut env = stack.service_env();
        env.extend([
            ("API_ADDR", addr.to_string()),
            ("WEBHOOK_ALLOW_PRIVATE", "true".into()),
            ("WEBHOOK_RETRY_BASE_MS", "100".into()),
            ("WEBHOOK_TIMEOUT_SECS", "2".into()),
        ]);
        env
    };
    for round in 0..5 {
        let addr = free_addr().unwrap();
        let mut sender = Launch::new("api-webhooks", &program, addr)
            .env(env(addr))
            .start()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300 + 400 * round)).await;
        sender.kill();
    }
    // Then two senders at once, as two api instances would run: they share the work
    // through row locks.
    let _senders: Vec<_> = (0..2)
        .map(|_| {
            let addr = free_addr().unwrap();
            Launch::new("api-webhooks", &program, addr)
                .env(env(addr))
                .start()
                .unwrap()
        })
        .collect();
    let received = delivered(&receiver, AFFILIATES).await;
    let ids: BTreeSet<&str> = received
        .iter()
        .filter(|r| r["answered"] == "200")
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), AFFILIATES, "every event delivered");
    assert!(received.iter().all(|r| r["verified_by"] == json!([0])));
}
