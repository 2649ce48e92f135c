//! What the pipeline writes reaches a product's webhook receiver: each change the
//! aggregator and the api make, once, signed as Standard Webhooks specify.

use std::collections::BTreeMap;
use std::time::Duration;

use reftrack_testkit::python::WebhookReceiver;
use reftrack_testkit::wait;
use serde_json::{Value, json};

use crate::{Program, money, purchase, refund, signup};

/// The events each type should have reached, in the order they were written.
fn by_type(received: &[Value]) -> BTreeMap<String, Vec<Value>> {
    let mut seen = std::collections::HashSet::new();
    let mut types: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for r in received {
        if r["answered"] == "200" && seen.insert(r["id"].as_str().unwrap().to_string()) {
            types
                .entry(r["type"].as_str().unwrap().to_string())
                .or_default()
                .push(r["data"].clone());
        }
    }
    types
}

#[tokio::test]
async fn every_change_from_affiliate_to_paid_payout_reaches_the_receiver_signed() {
    let program = Program::start_with(|c| {
        c.webhooks.allow_private = true;
        c.webhooks.retry_base_ms = 200;
        c.webhooks.timeout_secs = 1;
        c.promoters.payout_review_hours = 0;
    })
    .await;
    // Commissions payable at once, so that commission.payable comes within the test.
    program
        .admin(
            "PUT",
            "/api/v1/affiliate/program/",
            Some(json!({"holding_days": 0})),
        )
        .await;
    let endpoint = program
        .admin(
            "POST",
            "/api/v1/affiliate/webhooks/",
            Some(json!({"url": "http://127.0.0.1:9/"})),
        )
        .await;
    let receiver = WebhookReceiver::start(&[endpoint["secret"].as_str().unwrap()]);
    // The first answer fails: every event still arrives, by a retry.
    receiver.plan("500");
    let path = format!("/api/v1/affiliate/webhooks/{}/", endpoint["id"]);
    program
        .admin("PUT", &path, Some(json!({"url": receiver.url("/hooks")})))
        .await;

    let p = program.promoter(301).await;
    program.accepted(signup("wh-s", 7001, &p.code)).await;
    program
        .accepted(purchase("wh-p1", 7001, &p.code, "100.00"))
        .await;
    program
        .accepted(purchase("wh-p2", 7001, &p.code, "200.00"))
        .await;
    program
        .accepted(refund("wh-r1", "wh-p1", 7001, &p.code, "100.00"))
        .await;
    // 15 % of 200, once the refund took the first 15 back.
    program
        .balance_once(p.id, |b| money(&b["payable"]) == 30.0)
        .await;
    let batch = program
        .admin(
            "POST",
            "/api/v1/affiliate/payout-batches/",
            Some(json!({"method": "paypal"})),
        )
        .await;
    let line = batch["lines"][0]["payout_id"].clone();
    let results = json!({"lines": [{"payout_id": line, "status": "paid"}]});
    program
        .admin(
            "POST",
            &format!("/api/v1/affiliate/payout-batches/{}/results/", batch["id"]),
            Some(results),
        )
        .await;

    let expected = [
        ("affiliate.created", 1),
        ("referral.created", 1),
        ("commission.created", 2),
        ("commission.reversed", 1),
        ("commission.payable", 2),
        ("payout.requested", 1),
        ("payout.paid", 1),
    ];
    let complete = wait::until(Duration::from_secs(60), "every event delivered", || async {
        let types = by_type(&receiver.received());
        expected
            .iter()
            .all(|(t, n)| types.get(*t).map_or(0, Vec::len) >= *n)
    })
    .await;
    let received = receiver.received();
    assert!(complete.is_ok(), "received: {received:#?}");
    assert!(
        received.iter().all(|r| r["verified_by"] == json!([0])),
        "every delivery verifies with the endpoint's secret: {received:#?}"
    );
    let types = by_type(&received);
    for (t, n) in expected {
        assert_eq!(types[t].len(), n, "{t}: {:#?}", types[t]);
    }
    assert_eq!(types["affiliate.created"][0]["id"], p.id);
    assert_eq!(types["referral.created"][0]["user_id"], 7001);
    let amounts = |t: &str| -> Vec<f64> {
        let mut a: Vec<f64> = types[t].iter().map(|d| money(&d["amount"])).collect();
        a.sort_by(f64::total_cmp);
        a
    };
    assert_eq!(amounts("commission.created"), [15.0, 30.0]);
    assert_eq!(amounts("commission.reversed"), [15.0]);
    assert_eq!(amounts("payout.paid"), [30.0]);
    assert_eq!(types["payout.paid"][0]["batch_id"], batch["id"]);
}
