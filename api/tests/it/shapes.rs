//! Every endpoint of both seed documents answers with exactly the field names, nesting
//! and JSON types of the seed's example.

use reftrack_store::api_keys::Scope;
use reftrack_testkit::TestStack;
use serde_json::{Value, json};

use crate::seeds::{self, parse};
use crate::{Client, assert_shape, config, key, token};

#[tokio::test]
async fn the_promoter_api_answers_exactly_as_seed_000() {
    let stack = TestStack::new().await.unwrap();
    let client = Client::new(&config(&stack)).await;
    let me = token(1);

    let (status, promoter) = client.promoter(&me).await;
    assert_eq!(status, 200, "{promoter}");
    assert_shape(&parse(seeds::PROMOTER), &promoter);
    let id = promoter["id"].as_i64().unwrap();
    assert_eq!(promoter["user"], 1);
    assert_eq!(promoter["minWithdrawalBalance"], "20.00");
    assert_eq!(promoter["commissionRate"], 15.0);
    let code = promoter["referralToken"].as_str().unwrap();
    assert!(
        code.len() == 10
            && code
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()),
        "{code}"
    );
    assert_eq!(
        promoter["referralLink"],
        format!("http://127.0.0.1:8080/?ref={code}")
    );

    let (status, with_method) = client
        .set_payout_method(
            &me,
            json!({"method": "wise", "payment_address": "example@gmail.com"}),
        )
        .await;
    assert_eq!(status, 200, "{with_method}");
    assert_shape(&parse(seeds::PROMOTER_WITH_METHOD), &with_method);
    assert_eq!(
        with_method["activePayoutMethod"],
        json!({"method": "wise", "paymentAddress": "example@gmail.com"})
    );

    let (status, earnings) = client.recent_earnings(&me).await;
    assert_eq!(status, 200);
    assert_shape(&parse(seeds::RECENT_EARNINGS), &earnings);

    sqlx::query(
        "INSERT INTO referrals (affiliate_id, user_id, email, status, invitation_method, commission_rate, first_event_id, created_at)
         VALUES ($1, 2, 'john_doe@example.com', 'signup', 'email', 15, 's-2', now())",
    )
    .bind(id)
    .execute(&stack.pool)
    .await
    .unwrap();
    let (status, referrals) = client.referrals(&me).await;
    assert_eq!(status, 200);
    assert_shape(&parse(seeds::REFERRALS), &referrals);
    assert_eq!(
        referrals,
        json!({"count": 1, "pages": 1, "results": [{"userId": 2, "email": "john_doe@example.com", "status": "signup",
               "invitationMethod": "email", "commissionRate": "15.00", "commissionAmount": 0, "commissionStatus": null}]})
    );

    for amount in ["100", "50"] {
        sqlx::query("INSERT INTO payouts (affiliate_id, amount, status, method, address) VALUES ($1, $2::numeric, 'paid', 'wise', 'example@gmail.com')")
            .bind(id)
            .bind(amount)
            .execute(&stack.pool)
            .await
            .unwrap();
    }
    let (status, payouts) = client.promoter_payouts(&me).await;
    assert_eq!(status, 200);
    // The document shows payouts without a status; each now carries it (docs/api/README.md).
    let mut documented = parse(seeds::PAYOUTS);
    for payout in documented.as_array_mut().unwrap() {
        payout["status"] = serde_json::json!("paid");
    }
    assert_shape(&documented, &payouts);

    let (status, updated) = client
        .set_min_withdrawal_balance(&me, json!({"min_withdrawal_balance": 50.00}))
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_shape(&parse(seeds::PROMOTER_WITH_METHOD), &updated);
    assert_eq!(updated["minWithdrawalBalance"], "50.00");
}

#[tokio::test]
async fn the_admin_api_answers_exactly_as_seed_004() {
    let stack = TestStack::new().await.unwrap();
    let client = Client::new(&config(&stack)).await;
    let admin = &key(&stack, &[Scope::Admin]).await;

    let (status, created) = client
        .create_affiliate(admin, parse(seeds::CREATE_REQUEST))
        .await;
    assert_eq!(status, 201, "{created}");
    assert_shape(&parse(seeds::CREATE), &created);
    let id = created["data"]["id"].as_i64().unwrap();
    assert_eq!(created["data"]["affiliate_code"], format!("JANE_DOE_{id}"));
    assert_eq!(
        created["data"]["status"],
        json!({"value": "pending", "display": "Pending Approval"})
    );
    assert_eq!(
        (
            created["data"]["tier"].as_i64(),
            created["data"]["commission_rate"].as_f64()
        ),
        (Some(1), Some(10.0))
    );

    let (status, approved) = client
        .affiliate_action(admin, id, "approve", Some(json!({"tier": 2, "commission_rate": 12.0, "approval_note": "Approved based on excellent portfolio"})))
        .await;
    assert_eq!(status, 200, "{approved}");
    assert_shape(&parse(seeds::APPROVE), &approved);
    assert_eq!(approved["data"]["approved_by"], "admin@rebusai.com");

    let (status, updated) = client
        .update_affiliate(admin, id, json!({"commission_rate": 15.0, "tier": 3, "phone": "+1-555-9999", "website": "https://newwebsite.com",
                        "address": {"street": "789 New Ave", "city": "San Francisco", "zip": "94102"}}))
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_shape(&parse(seeds::UPDATE), &updated);
    assert_eq!(
        (
            updated["data"]["tier"].as_i64(),
            updated["data"]["phone"].as_str()
        ),
        (Some(3), Some("+1-555-9999"))
    );

    let (status, detail) = client.affiliate(admin, id).await;
    assert_eq!(status, 200, "{detail}");
    assert_shape(&parse(seeds::DETAIL), &detail);
    assert_eq!(
        detail["data"]["address"]["country"], "United States",
        "country 233 is the United States"
    );
    assert_eq!(detail["data"]["address"]["street"], "789 New Ave");

    // A second affiliate, so that a page of one has a next page, as in the seed.
    let (status, _) = client
        .create_affiliate(
            admin,
            json!({"name": "John Smith", "email": "john@example.com"}),
        )
        .await;
    assert_eq!(status, 201);
    let (status, list) = client.list_affiliates(admin, "page=1&page_size=1").await;
    assert_eq!(status, 200, "{list}");
    assert_shape(&parse(seeds::LIST), &list);
    // The next page of the same listing: its page size is kept.
    assert_eq!(
        list["data"]["pagination"]["next_url"],
        "/api/v1/affiliate/affiliates/?page=2&page_size=1"
    );

    let (status, performance) = client
        .performance(admin, id, "date_from=2024-01-01&date_to=2024-01-31")
        .await;
    assert_eq!(status, 200, "{performance}");
    assert_shape(&parse(seeds::PERFORMANCE), &performance);
    assert_eq!(
        performance["data"]["period"],
        json!({"start_date": "2024-01-01", "end_date": "2024-01-31"})
    );
}

#[tokio::test]
async fn the_openapi_document_describes_every_route() {
    let stack = TestStack::new().await.unwrap();
    let client = Client::new(&config(&stack)).await;
    let (status, doc) = client.call("GET", "/openapi.json", None, None).await;
    assert_eq!(status, 200);
    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/referrals/promoter",
        "/referrals/set-payout-method/",
        "/referrals/promoter-recent-earnings",
        "/referrals/",
        "/referrals/payouts",
        "/referrals/set-min-withdrawal-balance/",
        "/referrals/withdraw/",
        "/api/v1/affiliate/affiliates/",
        "/api/v1/affiliate/affiliates/{id}/",
        "/api/v1/affiliate/affiliates/{id}/approve/",
        "/api/v1/affiliate/affiliates/{id}/reject/",
        "/api/v1/affiliate/affiliates/{id}/deactivate/",
        "/api/v1/affiliate/affiliates/{id}/performance/",
        "/api/v1/affiliate/payouts/",
        "/api/v1/affiliate/payouts/{id}/mark-paid/",
        "/api/v1/affiliate/payouts/{id}/cancel/",
    ] {
        assert!(
            paths.contains_key(path),
            "{path} missing from /openapi.json"
        );
    }
    let promoter = &doc["components"]["schemas"]["PromoterView"]["properties"];
    for field in [
        "referralToken",
        "minWithdrawalBalance",
        "commissionRate",
        "linkClicked",
    ] {
        assert!(
            promoter.get(field).is_some(),
            "PromoterView lacks {field}: {promoter}"
        );
    }
}

#[tokio::test]
async fn next_and_previous_urls_give_the_neighbouring_pages_of_the_same_listing() {
    let stack = TestStack::new().await.unwrap();
    let client = Client::new(&config(&stack)).await;
    let admin = key(&stack, &[Scope::Admin]).await;
    // Five Smiths of tier 2 among others: the filtered listing has three pages of two.
    for (i, name) in [
        "Ann Smith",
        "Bo Smith",
        "Cy Smith",
        "Di Smith",
        "Ed Smith",
        "Flo Jones",
    ]
    .iter()
    .enumerate()
    {
        let email = format!("p{i}@example.com");
        let (_, created) = client
            .create_affiliate(&admin, json!({"name": name, "email": email}))
            .await;
        let id = created["data"]["id"].as_i64().unwrap();
        let tier = if i == 4 { 1 } else { 2 };
        client
            .affiliate_action(&admin, id, "approve", Some(json!({"tier": tier})))
            .await;
    }
    let query = "search=smith&tier=2&status=approved&active=true&page_size=2";
    let (status, first) = client.list_affiliates(&admin, query).await;
    assert_eq!(status, 200, "{first}");
    let pagination = &first["data"]["pagination"];
    assert_eq!(pagination["total_count"], 4, "{first}");
    let next = pagination["next_url"].as_str().unwrap();
    let (path, params) = next.split_once('?').unwrap();
    let mut params: Vec<&str> = params.split('&').collect();
    params.sort();
    assert_eq!(
        (path, params),
        (
            "/api/v1/affiliate/affiliates/",
            vec![
                "active=true",
                "page=2",
                "page_size=2",
                "search=smith",
                "status=approved",
                "tier=2"
            ]
        )
    );

    // Following next_url gives the rest of the same listing, and previous_url leads back.
    let (status, second) = client.call("GET", next, Some(&admin), None).await;
    assert_eq!(status, 200, "{second}");
    let names = |page: &Value| -> Vec<String> {
        page["data"]["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["name"].as_str().unwrap().to_string())
            .collect()
    };
    let mut all = names(&first);
    all.extend(names(&second));
    all.sort();
    assert_eq!(all, ["Ann Smith", "Bo Smith", "Cy Smith", "Di Smith"]);
    assert_eq!(second["data"]["pagination"]["next_url"], Value::Null);
    let previous = second["data"]["pagination"]["previous_url"]
        .as_str()
        .unwrap();
    let (_, back) = client.call("GET", previous, Some(&admin), None).await;
    assert_eq!(names(&back), names(&first));
}
