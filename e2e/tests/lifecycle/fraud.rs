//! Coupons, self-referrals, and who may withdraw what, when.

use std::time::Duration;

use serde_json::{Value, json};

use crate::{Program, money, purchase, signup};

#[tokio::test]
async fn a_coupon_attributes_conversions_to_its_affiliate_until_it_is_disabled() {
    let program = Program::start().await;
    let p = program.promoter(301).await;
    program
        .admin(
            "POST",
            &format!("/api/v1/affiliate/affiliates/{}/coupons/", p.id),
            Some(json!({"code": "SPRING25"})),
        )
        .await;
    let by_coupon = |id: &str, kind: &str| -> Value {
        let mut event =
            json!({"event_id": id, "type": kind, "user_id": 7001, "coupon": "spring25"});
        if kind == "purchase" {
            event["amount"] = json!("120.00");
            event["currency"] = json!("USD");
        }
        event
    };
    // ingest learns of the coupon through a Postgres notification.
    reftrack_testkit::wait::until(
        Duration::from_secs(20),
        "ingest knows the coupon",
        || async { program.report(by_coupon("s-1", "signup")).await.0 == 202 },
    )
    .await
    .unwrap();
    program.accepted(by_coupon("p-1", "purchase")).await;
    program
        .promoter_once(&p, |me| money(&me["totalEarned"]) == 18.0)
        .await;
    let referrals = program.referrals(&p).await;
    assert_eq!(
        (referrals.len(), referrals[0]["invitationMethod"].as_str()),
        (1, Some("coupon")),
        "{referrals:?}"
    );

    program
        .admin("POST", "/api/v1/affiliate/coupons/SPRING25/disable/", None)
        .await;
    let last = std::sync::Mutex::new(Value::Null);
    reftrack_testkit::wait::until(Duration::from_secs(20), "the coupon refused", || async {
        let (status, answer) = program.report(by_coupon("p-2", "purchase")).await;
        *last.lock().unwrap() = answer;
        status == 400
    })
    .await
    .unwrap();
    let last = last.into_inner().unwrap();
    assert_eq!(
        last["error"]["details"]["coupon"][0], "SPRING25 is not a live coupon code",
        "{last}"
    );
}

#[tokio::test]
async fn conversions_by_the_affiliates_own_user_are_parked_as_self_referrals() {
    let program = Program::start().await;
    let p = program.promoter(401).await;
    // Product user 401 is the promoter itself.
    program.accepted(signup("s-self", 401, &p.code)).await;
    program
        .accepted(purchase("p-self", 401, &p.code, "100.00"))
        .await;
    program
        .accepted(purchase("p-other", 5001, &p.code, "100.00"))
        .await;

    // Applied in order: once the other user's purchase is in, the self-referral was seen.
    program
        .promoter_once(&p, |me| money(&me["totalEarned"]) == 15.0)
        .await;
    let referrals = program.referrals(&p).await;
    assert_eq!(
        (referrals.len(), &referrals[0]["userId"]),
        (1, &json!(5001)),
        "{referrals:?}"
    );
    let parked: Vec<(String, String)> = sqlx::query_as(
        "SELECT event_id, reason FROM parked_events WHERE topic = $1 ORDER BY event_id",
    )
    .bind(&program.stack.kafka.conversions_topic)
    .fetch_all(&program.stack.pool)
    .await
    .unwrap();
    assert_eq!(
        parked,
        [
            ("p-self".to_string(), "self-referral".to_string()),
            ("s-self".to_string(), "self-referral".to_string())
        ]
    );
    let metrics = program.aggregator.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("aggregator_parked_total")
                && l.contains("reason=\"self-referral\"")),
        "counted"
    );
}

#[tokio::test]
async fn withdrawals_wait_for_an_active_affiliate_and_for_review_after_an_address_change() {
    let program = Program::start().await;
    let p = program.promoter(501).await;
    // This affiliate's commissions are payable at once.
    program
        .admin(
            "PUT",
            &format!("/api/v1/affiliate/affiliates/{}/", p.id),
            Some(json!({"holding_days": 0})),
        )
        .await;
    program
        .accepted(purchase("p-1", 5001, &p.code, "300.00"))
        .await;
    program
        .promoter_once(&p, |me| money(&me["currentBalance"]) == 45.0)
        .await;

    let action = |name: &str| format!("/api/v1/affiliate/affiliates/{}/{name}/", p.id);
    program.admin("POST", &action("deactivate"), None).await;
    let (status, refused) = program
        .api("POST", "/referrals/withdraw/", &p.token, None)
        .await;
    assert_eq!(status, 400, "{refused}");
    assert!(
        refused["non_field_errors"][0]
            .as_str()
            .unwrap_or("")
            .contains("not active"),
        "{refused}"
    );
    program.admin("POST", &action("reactivate"), None).await;

    // The address was set moments ago: the payout waits for an admin's review.
    let (status, payout) = program
        .api("POST", "/referrals/withdraw/", &p.token, None)
        .await;
    assert_eq!(
        (status, payout["status"].as_str()),
        (201, Some("review")),
        "{payout}"
    );
    let held = program
        .admin("GET", "/api/v1/affiliate/payouts/?status=review", None)
        .await;
    assert_eq!(held["results"][0]["id"], payout["id"], "{held}");
    let verified = program
        .admin("POST", &action("payment-methods/paypal/verify"), None)
        .await;
    assert_eq!(verified["verified"], true, "{verified}");
    program.mark_paid(&payout).await;
    let payouts = program.payouts(&p).await;
    assert_eq!(payouts[0]["status"], "paid", "{payouts}");
}
