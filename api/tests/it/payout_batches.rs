//! Payout batches: payable balances gathered, exported in the providers' formats, parsed
//! back and checked against the ledger, and settled line by line through it.

use std::collections::HashMap;

use reftrack_store::api_keys::Scope;
use reftrack_testkit::TestStack;
use rust_decimal::Decimal;
use serde_json::{Value, json};

use crate::money::earn;
use crate::{Client, config, key, token};

const BATCHES: &str = "/api/v1/affiliate/payout-batches/";

/// A promoter for `user` paid by `method` at `address`; returns its affiliate id.
async fn promoter(client: &Client, user: i64, method: &str, address: &str) -> i64 {
    let me = token(user);
    let (_, p) = client.promoter(&me).await;
    let body = json!({"method": method, "payment_address": address});
    let (status, answer) = client.set_payout_method(&me, body).await;
    assert_eq!(status, 200, "{answer}");
    p["id"].as_i64().unwrap()
}

fn dec(text: &str) -> Decimal {
    text.parse()
        .unwrap_or_else(|_| panic!("{text:?} is not an amount"))
}

fn amount(value: &Value) -> Decimal {
    dec(&value.to_string())
}

/// What the ledger says an affiliate has earned, net, and been paid.
async fn ledger(stack: &TestStack, affiliate: i64) -> (Decimal, Decimal) {
    sqlx::query_as(
        "SELECT COALESCE(sum(amount) FILTER (WHERE kind = 'earned'), 0) - COALESCE(sum(amount) FILTER (WHERE kind = 'reversed'), 0),
                COALESCE(sum(amount) FILTER (WHERE kind = 'paid'), 0)
         FROM ledger_entries WHERE affiliate_id = $1",
    )
    .bind(affiliate)
    .fetch_one(&stack.pool)
    .await
    .unwrap()
}

/// An export's body, which must be a file, not an error.
async fn export(client: &Client, admin: &str, batch: i64, format: &str) -> String {
    let path = format!("{BATCHES}{batch}/export/?format={format}");
    let response = client
        .http
        .get(client.server.url(&path))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let disposition = response.headers()["content-disposition"].to_str().unwrap();
    assert!(
        disposition.starts_with("attachment;"),
        "an export is a download: {disposition}"
    );
    response.text().await.unwrap()
}

#[tokio::test]
async fn a_paypal_batch_exports_what_the_ledger_owes_and_its_results_settle_through_it() {
    let stack = TestStack::new().await.unwrap();
    let mut config = config(&stack);
    config.promoters.payout_review_hours = 0;
    let client = Client::new(&config).await;
    let admin = key(&stack, &[Scope::Admin]).await;

    let ana = promoter(&client, 21, "paypal", "ana@example.com").await;
    let bo = promoter(&client, 22, "paypal", "bo@example.com").await;
    let cy = promoter(&client, 23, "paypal", "cy@example.com").await;
    let di = promoter(&client, 24, "paypal", "di@example.com").await;
    let wise = promoter(&client, 25, "wise", "wi@example.com").await;
    earn(&stack, ana, "40.00", 2, "b-ana").await;
    earn(&stack, bo, "25.50", 2, "b-bo").await;
    earn(&stack, cy, "10.00", 2, "b-cy").await; // below its minimum of 20
    earn(&stack, di, "30.00", 2, "b-di").await;
    earn(&stack, wise, "60.00", 2, "b-wise").await;
    // di asked for its payout itself: the batch takes the request in.
    let (status, requested) = client.withdraw(&token(24)).await;
    assert_eq!(status, 201, "{requested}");

    let (status, payable) = client
        .call(
            "GET",
            &format!("{BATCHES}payable/?method=paypal"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 200, "{payable}");
    let listed: Vec<(i64, Decimal)> = payable["data"]["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["affiliate_id"].as_i64().unwrap(), amount(&r["payable"])))
        .collect();
    assert_eq!(listed, vec![(ana, dec("40")), (bo, dec("25.5"))]);

    let (status, batch) = client
        .call(
            "POST",
            BATCHES,
            Some(&admin),
            Some(json!({"method": "paypal"})),
        )
        .await;
    assert_eq!(status, 201, "{batch}");
    let batch = &batch["data"];
    let id = batch["id"].as_i64().unwrap();
    assert_eq!(
        (
            batch["line_count"].as_i64(),
            amount(&batch["total_amount"]),
            batch["status"].as_str()
        ),
        (Some(3), dec("95.5"), Some("open"))
    );
    let (status, again) = client
        .call(
            "POST",
            BATCHES,
            Some(&admin),
            Some(json!({"method": "paypal"})),
        )
        .await;
    assert_eq!(status, 400, "nothing is left to pay: {again}");
    assert!(
        again["error"]["details"]["non_field_errors"][0]
            .as_str()
            .unwrap()
            .contains("Nothing is payable by paypal")
    );

    // The PayPal file, parsed back: each line is what the ledger owes, to the address set.
    let file = export(&client, &admin, id, "paypal").await;
    let mut rows = HashMap::new();
    for record in csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(file.as_bytes())
        .records()
    {
        let record = record.unwrap();
        assert_eq!(record.len(), 6, "{record:?}");
        assert_eq!((&record[2], &record[5]), ("USD", "PAYPAL"));
        assert!(
            record[3].len() <= 30 && !record[3].contains(' '),
            "a PayPal customer id: {record:?}"
        );
        rows.insert(
            record[0].to_string(),
            (record[3].to_string(), dec(&record[1])),
        );
    }
    assert_eq!(rows.len(), 3, "{file}");
    for (affiliate, email) in [
        (ana, "ana@example.com"),
        (bo, "bo@example.com"),
        (di, "di@example.com"),
    ] {
        let (earned, paid) = ledger(&stack, affiliate).await;
        let (reference, owed) = &rows[email];
        assert_eq!((*owed, paid), (earned, Decimal::ZERO), "{email}");
        let payout: (i64, Decimal, Option<i64>) = sqlx::query_as(
            "SELECT affiliate_id, amount, batch_id FROM payouts WHERE 'RT-' || id = $1",
        )
        .bind(reference)
        .fetch_one(&stack.pool)
        .await
        .unwrap();
        assert_eq!(payout, (affiliate, *owed, Some(id)));
    }
    let pending: Decimal = sqlx::query_scalar("SELECT sum(pending_payouts) FROM affiliate_totals")
        .fetch_one(&stack.pool)
        .await
        .unwrap();
    assert_eq!(pending, rows.values().map(|(_, a)| *a).sum::<Decimal>());

    // Results: ana and di paid, bo failed.
    let line = |email: &str| {
        rows[email]
            .0
            .trim_start_matches("RT-")
            .parse::<i64>()
            .unwrap()
    };
    let results = json!({"lines": [
        {"payout_id": line("ana@example.com"), "status": "paid"},
        {"payout_id": line("bo@example.com"), "status": "failed", "reason": "Receiver unregistered"},
        {"payout_id": line("di@example.com"), "status": "paid"},
    ]});
    let path = format!("{BATCHES}{id}/results/");
    let (status, settled) = client
        .call("POST", &path, Some(&admin), Some(results.clone()))
        .await;
    assert_eq!(status, 200, "{settled}");
    let settled = &settled["data"];
    assert_eq!(
        (
            settled["status"].as_str(),
            amount(&settled["paid_amount"]),
            amount(&settled["unpaid_amount"])
        ),
        (Some("completed"), dec("70"), dec("25.5"))
    );
    for (affiliate, paid) in [(ana, dec("40")), (di, dec("30")), (bo, Decimal::ZERO)] {
        assert_eq!(ledger(&stack, affiliate).await.1, paid);
    }
    let (_, bo_balance) = client
        .call(
            "GET",
            &format!("/api/v1/affiliate/affiliates/{bo}/balance/"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(
        amount(&bo_balance["data"]["withdrawable"]),
        dec("25.5"),
        "a failed line's money is back: {bo_balance}"
    );
    let (_, history) = client.promoter_payouts(&token(22)).await;
    assert_eq!(history[0]["status"], "failed", "{history}");

    // Sending the same results again changes nothing; a different outcome is refused.
    let (status, _) = client
        .call("POST", &path, Some(&admin), Some(results))
        .await;
    assert_eq!(status, 200);
    assert_eq!(ledger(&stack, ana).await.1, dec("40"), "not paid twice");
    let (status, refused) = client
        .call(
            "POST",
            &path,
            Some(&admin),
            Some(json!({"lines": [{"payout_id": line("bo@example.com"), "status": "paid"}]})),
        )
        .await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (409, Some("conflict")),
        "{refused}"
    );
    // Nothing is left to pay, so exporting again cannot pay anyone twice.
    assert_eq!(export(&client, &admin, id, "paypal").await, "");
    let whole: Value = serde_json::from_str(&export(&client, &admin, id, "json").await).unwrap();
    assert_eq!(whole["lines"].as_array().unwrap().len(), 3);
    let (status, wrong) = client
        .call(
            "GET",
            &format!("{BATCHES}{id}/export/?format=wise"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 400, "a PayPal batch is not a Wise file: {wrong}");
    assert!(
        wrong["error"]["details"]["format"][0]
            .as_str()
            .unwrap()
            .contains("json or paypal")
    );
}

#[tokio::test]
async fn a_wise_bank_batch_writes_the_iban_template() {
    let stack = TestStack::new().await.unwrap();
    let mut config = config(&stack);
    config.promoters.payout_review_hours = 0;
    let client = Client::new(&config).await;
    let admin = key(&stack, &[Scope::Admin]).await;
    let iban = "DE89370400440532013000";
    let eve = promoter(&client, 31, "bank", iban).await;
    earn(&stack, eve, "37.35", 3, "w-eve").await;

    let (status, batch) = client
        .call(
            "POST",
            BATCHES,
            Some(&admin),
            Some(json!({"method": "bank", "affiliate_ids": [eve]})),
        )
        .await;
    assert_eq!(status, 201, "{batch}");
    let id = batch["data"]["id"].as_i64().unwrap();
    let file = export(&client, &admin, id, "wise").await;
    let mut reader = csv::Reader::from_reader(file.as_bytes());
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(
        header,
        [
            "name",
            "recipientEmail",
            "paymentReference",
            "receiverType",
            "amountCurrency",
            "amount",
            "sourceCurrency",
            "targetCurrency",
            "IBAN"
        ]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 1, "{file}");
    let (earned, _) = ledger(&stack, eve).await;
    assert_eq!(
        (dec(&rows[0][5]), &rows[0][8], &rows[0][3]),
        (earned, iban, "PERSON")
    );
}

#[tokio::test]
async fn batch_requests_are_checked_field_by_field() {
    let stack = TestStack::new().await.unwrap();
    let client = Client::new(&config(&stack)).await;
    let admin = key(&stack, &[Scope::Admin]).await;
    let cases = [
        (json!({}), "method"),
        (json!({"method": "cash"}), "method"),
        (
            json!({"method": "paypal", "affiliate_ids": ["x"]}),
            "affiliate_ids[0]",
        ),
    ];
    for (body, field) in cases {
        let (status, answer) = client
            .call("POST", BATCHES, Some(&admin), Some(body.clone()))
            .await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(
            answer["error"]["details"][field].is_array(),
            "{body}: {answer}"
        );
    }
    let (status, _) = client
        .call(
            "POST",
            &format!("{BATCHES}1/results/"),
            Some(&admin),
            Some(json!({"lines": []})),
        )
        .await;
    assert_eq!(status, 404, "no such batch");
    let lines = [
        (
            json!({"lines": [{"payout_id": 1, "status": "failed"}]}),
            "lines[0].reason",
        ),
        (
            json!({"lines": [{"payout_id": 1, "status": "lost"}]}),
            "lines[0].status",
        ),
        (json!({"lines": [{"status": "paid"}]}), "lines[0].payout_id"),
        (
            json!({"lines": [{"payout_id": 1, "status": "paid"}, {"payout_id": 1, "status": "paid"}]}),
            "lines[1].payout_id",
        ),
        (json!({"lines": "all"}), "lines"),
    ];
    for (body, field) in lines {
        let (status, answer) = client
            .call(
                "POST",
                &format!("{BATCHES}9/results/"),
                Some(&admin),
                Some(body.clone()),
            )
            .await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(
            answer["error"]["details"][field].is_array(),
            "{body}: {answer}"
        );
    }
    let (status, answer) = client
        .call(
            "GET",
            &format!("{BATCHES}1/export/?format=xlsx"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 400, "{answer}");
}

#[tokio::test]
async fn two_batches_created_at_once_pay_each_balance_once() {
    let stack = TestStack::new().await.unwrap();
    let mut config = config(&stack);
    config.promoters.payout_review_hours = 0;
    let client = Client::new(&config).await;
    let admin = key(&stack, &[Scope::Admin]).await;
    let mut owed = Decimal::ZERO;
    for user in 61..71 {
        let id = promoter(&client, user, "paypal", &format!("p{user}@example.com")).await;
        earn(&stack, id, "25.00", 2, &format!("two-{user}")).await;
        owed += dec("25");
    }
    let create = || {
        client.call(
            "POST",
            BATCHES,
            Some(&admin),
            Some(json!({"method": "paypal"})),
        )
    };
    let (a, b) = tokio::join!(create(), create());
    let lines: i64 = [&a, &b]
        .iter()
        .filter(|(status, _)| *status == 201)
        .map(|(_, batch)| batch["data"]["line_count"].as_i64().unwrap())
        .sum();
    assert_eq!(lines, 10, "every balance in exactly one batch: {a:?} {b:?}");
    let payouts: Decimal = sqlx::query_scalar("SELECT sum(amount) FROM payouts")
        .fetch_one(&stack.pool)
        .await
        .unwrap();
    let pending: Decimal = sqlx::query_scalar("SELECT sum(pending_payouts) FROM affiliate_totals")
        .fetch_one(&stack.pool)
        .await
        .unwrap();
    assert_eq!((payouts, pending), (owed, owed), "nothing paid out twice");
}
