//! Holding, payable, paid; refunds before and after payout.

use crate::{Program, money, purchase, refund, signup};

#[tokio::test]
async fn a_commission_is_pending_for_its_holding_period_then_payable_then_paid() {
    let program = Program::start().await;
    let p = program.promoter(101).await;
    program.accepted(signup("s-1", 5001, &p.code)).await;
    program
        .accepted(purchase("p-1", 5001, &p.code, "250.00"))
        .await;

    // Earned at once (a promoter's 15 %), but held for the program's 30 days: nothing
    // to withdraw.
    let me = program
        .promoter_once(&p, |me| money(&me["totalEarned"]) == 37.5)
        .await;
    assert_eq!(money(&me["currentBalance"]), 0.0, "{me}");
    let balance = program.balance(p.id).await;
    assert_eq!(
        (money(&balance["pending"]), money(&balance["payable"])),
        (37.5, 0.0),
        "{balance}"
    );
    assert_eq!(
        program.referrals(&p).await[0]["commissionStatus"],
        "pending"
    );
    let (status, refused) = program
        .api("POST", "/referrals/withdraw/", &p.token, None)
        .await;
    assert_eq!(status, 400, "{refused}");

    program.advance_days(29);
    let balance = program.balance(p.id).await;
    assert_eq!(
        money(&balance["pending"]),
        37.5,
        "still held on day 29: {balance}"
    );

    program.advance_days(2);
    let balance = program.balance(p.id).await;
    assert_eq!(
        (money(&balance["pending"]), money(&balance["payable"])),
        (0.0, 37.5),
        "{balance}"
    );
    let me = program.promoter_once(&p, |_| true).await;
    assert_eq!(money(&me["currentBalance"]), 37.5, "{me}");
    assert_eq!(
        program.referrals(&p).await[0]["commissionStatus"],
        "payable"
    );

    // The address was set 31 days ago (by this clock): no review hold.
    let (status, payout) = program
        .api("POST", "/referrals/withdraw/", &p.token, None)
        .await;
    assert_eq!(
        (status, payout["status"].as_str()),
        (201, Some("pending")),
        "{payout}"
    );
    assert_eq!(money(&payout["amount"]), 37.5);
    program.mark_paid(&payout).await;

    let payouts = program.payouts(&p).await;
    assert_eq!(payouts[0]["status"], "paid", "{payouts}");
    assert_eq!(program.referrals(&p).await[0]["commissionStatus"], "paid");
    let me = program.promoter_once(&p, |_| true).await;
    assert_eq!(
        (
            money(&me["currentBalance"]),
            money(&me["totalEarned"]),
            money(&me["totalPaid"])
        ),
        (0.0, 37.5, 37.5),
        "{me}"
    );
}

#[tokio::test]
async fn a_refund_in_the_holding_period_reverses_pending_money() {
    let program = Program::start().await;
    let p = program.promoter(102).await;
    program
        .accepted(purchase("p-1", 5001, &p.code, "200.00"))
        .await;
    program
        .accepted(refund("r-1", "p-1", 5001, &p.code, "200.00"))
        .await;
    program
        .accepted(purchase("p-2", 5002, &p.code, "100.00"))
        .await;
    program
        .accepted(refund("r-2", "p-2", 5002, &p.code, "40.00"))
        .await;

    // 30 reversed in full, 15 reversed by 6: 9 earned, all of it pending.
    program
        .promoter_once(&p, |me| money(&me["totalEarned"]) == 9.0)
        .await;
    let balance = program.balance(p.id).await;
    assert_eq!(
        (money(&balance["pending"]), money(&balance["payable"])),
        (9.0, 0.0),
        "{balance}"
    );
    let statuses: Vec<String> = program
        .referrals(&p)
        .await
        .iter()
        .map(|r| {
            format!(
                "{} {}",
                r["userId"],
                r["commissionStatus"].as_str().unwrap_or("-")
            )
        })
        .collect();
    assert!(
        statuses.contains(&"5001 reversed".to_string()),
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&"5002 pending".to_string()),
        "{statuses:?}"
    );

    program.advance_days(31);
    let balance = program.balance(p.id).await;
    assert_eq!(
        (money(&balance["pending"]), money(&balance["payable"])),
        (0.0, 9.0),
        "{balance}"
    );
}

#[tokio::test]
async fn a_refund_after_payout_is_owed_and_netted_against_later_earnings() {
    let program = Program::start().await;
    let p = program.promoter(103).await;
    program
        .accepted(purchase("p-1", 5001, &p.code, "300.00"))
        .await;
    program
        .promoter_once(&p, |me| money(&me["totalEarned"]) == 45.0)
        .await;
    program.advance_days(31);
    let (status, payout) = program
        .api("POST", "/referrals/withdraw/", &p.token, None)
        .await;
    assert_eq!(status, 201, "{payout}");
    program.mark_paid(&payout).await;

    // Refunded after it was paid: 45 owed, never withdrawable.
    program
        .accepted(refund("r-1", "p-1", 5001, &p.code, "300.00"))
        .await;
    let balance = program
        .balance_once(p.id, |b| money(&b["total_earned"]) == 0.0)
        .await;
    assert_eq!(
        (
            money(&balance["payable"]),
            money(&balance["withdrawable"]),
            money(&balance["total_paid"])
        ),
        (-45.0, 0.0, 45.0),
        "{balance}"
    );
    let me = program.promoter_once(&p, |_| true).await;
    assert_eq!(money(&me["currentBalance"]), 0.0, "{me}");

    // The next 75 earned pay the 45 back first (payable at once: the clock is 31 days on).
    program
        .accepted(purchase("p-2", 5002, &p.code, "500.00"))
        .await;
    let me = program
        .promoter_once(&p, |me| money(&me["totalEarned"]) == 75.0)
        .await;
    assert_eq!(money(&me["currentBalance"]), 30.0, "{me}");
    let (status, payout) = program
        .api("POST", "/referrals/withdraw/", &p.token, None)
        .await;
    assert_eq!((status, money(&payout["amount"])), (201, 30.0), "{payout}");
}

#[tokio::test]
async fn money_is_printed_as_the_seed_prints_it() {
    let program = Program::start().await;
    let p = program.promoter(104).await;
    let raw = |path: &'static str| {
        let program = &program;
        let token = p.token.clone();
        async move {
            let (_, body) = program.api("GET", path, &token, None).await;
            body.to_string()
        }
    };
    // Nothing yet: 0, not 0.0 (serde_json keeps an integer's or a float's form).
    let me = raw("/referrals/promoter").await;
    assert!(me.contains(r#""currentBalance":0,"#), "{me}");
    assert!(me.contains(r#""totalEarned":0,"#), "{me}");

    program
        .accepted(purchase("p-1", 5001, &p.code, "249.00"))
        .await;
    program
        .promoter_once(&p, |me| money(&me["totalEarned"]) == 37.35)
        .await;
    let me = raw("/referrals/promoter").await;
    assert!(me.contains(r#""totalEarned":37.35,"#), "{me}");
    let referrals = raw("/referrals/").await;
    assert!(
        referrals.contains(r#""commissionAmount":37.35"#),
        "{referrals}"
    );
}
