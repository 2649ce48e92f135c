//! The program's rules: flat or percentage rewards, signup rewards, recurring caps, tier
//! defaults; each conversion earns under the rules in force when it happened.

use chrono::{Duration, Utc};
use serde_json::json;

use crate::{Program, money, purchase, signup};

#[tokio::test]
async fn flat_and_percentage_rewards_and_signup_rewards_follow_the_rules_in_force() {
    let program = Program::start().await;
    let p = program.promoter(201).await;
    let rules = json!({"reward_kind": "flat", "flat_amount": "7.50", "signup_reward": "2.00"});
    let answer = program
        .admin("PUT", "/api/v1/affiliate/program/", Some(rules))
        .await;
    assert_eq!(
        (
            answer["reward_kind"].as_str(),
            money(&answer["flat_amount"])
        ),
        (Some("flat"), 7.5)
    );

    // 2 for the signup, 7.50 for the purchase whatever its amount.
    program.accepted(signup("s-1", 5001, &p.code)).await;
    program
        .accepted(purchase("p-1", 5001, &p.code, "999.00"))
        .await;
    program
        .promoter_once(&p, |me| money(&me["totalEarned"]) == 9.5)
        .await;

    // Back to the affiliate's rate (a promoter's 15 %) of each purchase, and no signup
    // reward.
    let rules = json!({"reward_kind": "percent", "signup_reward": 0});
    program
        .admin("PUT", "/api/v1/affiliate/program/", Some(rules))
        .await;
    program.accepted(signup("s-2", 5002, &p.code)).await;
    program
        .accepted(purchase("p-2", 5002, &p.code, "200.00"))
        .await;
    program
        .promoter_once(&p, |me| money(&me["totalEarned"]) == 39.5)
        .await;
    let referrals = program.referrals(&p).await;
    let amount_of = |user: i64| {
        referrals
            .iter()
            .find(|r| r["userId"] == user)
            .map(|r| money(&r["commissionAmount"]))
    };
    assert_eq!(
        (amount_of(5001), amount_of(5002)),
        (Some(9.5), Some(30.0)),
        "{referrals:?}"
    );
}

#[tokio::test]
async fn a_referred_users_purchases_earn_for_the_recurring_months_only() {
    let program = Program::start().await;
    // The cap was set 200 days ago (by the api's clock); purchases since are backfills.
    program.advance_days(-200);
    program
        .admin(
            "PUT",
            "/api/v1/affiliate/program/",
            Some(json!({"recurring_months": 2})),
        )
        .await;
    program.advance_days(200);
    let p = program.promoter(202).await;
    let first = Utc::now() - Duration::days(190);
    let at = |days: i64| (first + Duration::days(days)).to_rfc3339();
    let backfill = |id: &str, user: i64, days: i64| {
        let mut event = purchase(id, user, &p.code, "100.00");
        event["occurred_at"] = json!(at(days));
        event
    };
    program.accepted(backfill("p-1", 5001, 0)).await;
    program.accepted(backfill("p-2", 5001, 45)).await; // within two months of the first
    program.accepted(backfill("p-3", 5001, 70)).await; // past them: earns nothing
    program.accepted(backfill("p-4", 5002, 70)).await; // another user's first

    let me = program
        .promoter_once(&p, |me| money(&me["totalEarned"]) == 45.0)
        .await;
    // All of it long past its holding period.
    assert_eq!(money(&me["currentBalance"]), 45.0, "{me}");
    let referrals = program.referrals(&p).await;
    let capped = referrals.iter().find(|r| r["userId"] == 5001).unwrap();
    assert_eq!(money(&capped["commissionAmount"]), 30.0, "{capped}");
    // The capped purchase still counts as a sale.
    let performance = program
        .admin(
            "GET",
            &format!(
                "/api/v1/affiliate/affiliates/{}/performance/?date_from={}&date_to={}",
                p.id,
                first.date_naive(),
                Utc::now().date_naive()
            ),
            None,
        )
        .await;
    assert_eq!(
        money(&performance["metrics"]["total_sales"]),
        400.0,
        "{performance}"
    );
}

#[tokio::test]
async fn tier_default_rates_apply_until_an_affiliate_has_its_own() {
    let program = Program::start().await;
    let created = program
        .admin(
            "POST",
            "/api/v1/affiliate/affiliates/",
            Some(json!({"name": "Tier Three", "email": "tier3@example.com"})),
        )
        .await;
    let id = created["id"].as_i64().unwrap();
    let approved = program
        .admin(
            "POST",
            &format!("/api/v1/affiliate/affiliates/{id}/approve/"),
            Some(json!({"tier": 3})),
        )
        .await;
    let code = approved["affiliate_code"].as_str().unwrap().to_string();
    let earned = async |total: f64| {
        program
            .balance_once(id, |b| money(&b["total_earned"]) == total)
            .await;
    };

    // Tier 3's default rate, 15 %.
    program
        .accepted(purchase("p-1", 5001, &code, "100.00"))
        .await;
    earned(15.0).await;
    // The tier's rate changes: 16 % from now on.
    let tiers = json!({"tiers": [{"tier": 3, "rate": 16}]});
    program
        .admin("PUT", "/api/v1/affiliate/program/", Some(tiers))
        .await;
    program
        .accepted(purchase("p-2", 5002, &code, "100.00"))
        .await;
    earned(31.0).await;
    // The affiliate's own rate overrides its tier's.
    program
        .admin(
            "PUT",
            &format!("/api/v1/affiliate/affiliates/{id}/"),
            Some(json!({"commission_rate": 25})),
        )
        .await;
    program
        .accepted(purchase("p-3", 5003, &code, "100.00"))
        .await;
    earned(56.0).await;
}
