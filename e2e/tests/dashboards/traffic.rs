//! Traffic that touches every panel, and what it should make the services count.

use super::*;

/// What the traffic so far should make the aggregator and api count.
#[derive(Default)]
pub(crate) struct Sent {
    pub(crate) clicks: u64,
    pub(crate) conversions_applied: u64,
    pub(crate) parked: u64,
    pub(crate) payouts_paid: u64,
}

pub(crate) const BROWSER: &str =
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
pub(crate) const BOT: &str =
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";

/// The callers of the traffic: keys, a promoter and an affiliate approved by staff.
pub(crate) struct World {
    pub(crate) admin: String,
    /// A key kept over its rate limit.
    pub(crate) hammer: String,
    pub(crate) events: String,
    pub(crate) promoter: String,
    pub(crate) promoter_code: String,
    pub(crate) staff_affiliate: i64,
    pub(crate) staff_code: String,
    pub(crate) sent: Sent,
}

pub(crate) async fn world(stack: &TestStack, s: &Services) -> anyhow::Result<World> {
    let key = async |owner: &str, scope: Scope| -> anyhow::Result<String> {
        Ok(api_keys::create(&stack.pool, owner, &[scope]).await?.0.key)
    };
    let admin = key("ops@example.com", Scope::Admin).await?;
    let hammer = key("ci@example.com", Scope::Admin).await?;
    let events = key("backend@example.com", Scope::Events).await?;
    let promoter = api::auth::Tokens::new(
        &secrecy::SecretString::from(api::DEV_JWT_SIGNING_KEY.to_string()),
        0,
    )
    .issue(7001, 3600);
    // Promoters are approved on first sight; staff create and approve the other.
    let (_, me) = s
        .api(Method::GET, "/referrals/promoter", &promoter, None)
        .await?;
    let promoter_code = me["referralToken"]
        .as_str()
        .context("referralToken")?
        .to_string();
    let created = s
        .api_ok(
            Method::POST,
            "/api/v1/affiliate/affiliates/",
            &admin,
            json!({"name": "Dash Board", "email": "dash@example.com"}),
        )
        .await?;
    let staff_affiliate = created["data"]["id"].as_i64().context("affiliate id")?;
    // Commissions payable at once, so that the traffic's withdrawal can be paid.
    s.api_ok(
        Method::PUT,
        "/api/v1/affiliate/program/",
        &admin,
        json!({"holding_days": 0}),
    )
    .await?;
    let approved = s
        .api_ok(
            Method::POST,
            &format!("/api/v1/affiliate/affiliates/{staff_affiliate}/approve/"),
            &admin,
            json!({"tier": 2, "commission_rate": 12.5, "approval_note": "dashboards"}),
        )
        .await?;
    let staff_code = approved["data"]["affiliate_code"]
        .as_str()
        .context("affiliate_code")?
        .to_string();
    // ingest learns of both codes through Postgres notifications.
    wait::until(
        Duration::from_secs(60),
        "ingest knows both codes",
        || async {
            let text = s
                .http
                .get(format!("http://{}/metrics", s.ingest))
                .send()
                .await;
            match text {
                Ok(r) => {
                    metric(
                        &r.text().await.unwrap_or_default(),
                        "ingest_directory_codes",
                    ) >= 2.0
                }
                Err(_) => false,
            }
        },
    )
    .await?;
    Ok(World {
        admin,
        hammer,
        events,
        promoter,
        promoter_code,
        staff_affiliate,
        staff_code,
        sent: Sent::default(),
    })
}

/// One wave of clicks of every verdict: 10 visitors per code, each twice (a duplicate),
/// a bot, a prefetch (HEAD) and an unknown code. Visitors are new in every wave.
pub(crate) async fn clicks(w: &mut World, s: &Services, wave: u8) -> anyhow::Result<()> {
    for code in [&w.promoter_code, &w.staff_code] {
        for visitor in 0..10 {
            for _ in 0..2 {
                s.click(code, &format!("10.{wave}.1.{visitor}"), BROWSER, false)
                    .await?;
            }
        }
        s.click(code, &format!("10.{wave}.2.1"), BOT, false).await?;
        s.click(code, &format!("10.{wave}.2.2"), BROWSER, true)
            .await?;
        w.sent.clicks += 22;
    }
    s.click("NOSUCHCODE", &format!("10.{wave}.2.3"), BROWSER, false)
        .await?;
    w.sent.clicks += 1;
    Ok(())
}

/// Conversions through the promoter's code. A refund of a purchase not reported (yet) is
/// parked; one whose purchase comes later (`d-p3`) is applied with it.
pub(crate) async fn conversions(
    w: &mut World,
    s: &Services,
    events: &[Value],
) -> anyhow::Result<()> {
    for event in events {
        s.conversion(&w.events, event).await?;
        if event["original_event_id"] == "never-sent" || event["event_id"] == "d-r3" {
            w.sent.parked += 1;
        } else {
            w.sent.conversions_applied += 1;
        }
        if event["event_id"] == "d-p3" {
            w.sent.conversions_applied += 1; // d-r3, released
        }
    }
    Ok(())
}

/// The promoter withdraws once the commission is in; the address being new, the payout
/// is held for review, and staff pay it.
pub(crate) async fn payout(w: &mut World, s: &Services) -> anyhow::Result<()> {
    s.api_ok(
        Method::PATCH,
        "/referrals/set-payout-method/",
        &w.promoter,
        json!({"method": "paypal", "payment_address": "promoter@example.com"}),
    )
    .await?;
    wait::until(Duration::from_secs(60), "commission credited", || async {
        s.api(Method::GET, "/referrals/promoter", &w.promoter, None)
            .await
            .is_ok_and(|(_, me)| me["currentBalance"].as_f64().unwrap_or(0.0) >= 20.0)
    })
    .await?;
    s.api_ok(Method::POST, "/referrals/withdraw/", &w.promoter, json!({}))
        .await?;
    let (_, pending) = s
        .api(
            Method::GET,
            "/api/v1/affiliate/payouts/?status=review",
            &w.admin,
            None,
        )
        .await?;
    let id = pending["data"]["results"][0]["id"]
        .as_i64()
        .context("payout held for review")?;
    s.api_ok(
        Method::POST,
        &format!("/api/v1/affiliate/payouts/{id}/mark-paid/"),
        &w.admin,
        json!({}),
    )
    .await?;
    w.sent.payouts_paid += 1;
    Ok(())
}

/// Promoter pages, stats twice (a cache miss, then a hit), a missing affiliate (404),
/// and the hammer key over its rate limit.
pub(crate) async fn reads(w: &World, s: &Services) -> anyhow::Result<()> {
    for path in [
        "/referrals/",
        "/referrals/payouts",
        "/referrals/promoter-recent-earnings",
    ] {
        s.api(Method::GET, path, &w.promoter, None).await?;
    }
    let performance = format!(
        "/api/v1/affiliate/affiliates/{}/performance/",
        w.staff_affiliate
    );
    for _ in 0..2 {
        s.api(Method::GET, &performance, &w.admin, None).await?;
    }
    let (status, _) = s
        .api(
            Method::GET,
            "/api/v1/affiliate/affiliates/0/",
            &w.admin,
            None,
        )
        .await?;
    ensure!(status == 404, "a missing affiliate answered {status}");
    // Two full limits' worth: at least one minute window goes over.
    let mut limited = 0;
    for _ in 0..2 * API_RATE_LIMIT + 2 {
        let (status, _) = s
            .api(
                Method::GET,
                "/api/v1/affiliate/affiliates/",
                &w.hammer,
                None,
            )
            .await?;
        limited += u32::from(status == 429);
    }
    ensure!(limited > 0, "no request was rate limited");
    Ok(())
}

/// Traffic that touches every panel, in two waves, so that every histogram has
/// observations between two scrapes.
pub(crate) async fn drive_traffic(
    stack: &TestStack,
    s: &Services,
    prometheus: &Prometheus,
) -> anyhow::Result<()> {
    let mut w = world(stack, s).await?;
    let code = w.promoter_code.clone();
    clicks(&mut w, s, 0).await?;
    conversions(&mut w, s, &[
        json!({"event_id": "d-s1", "type": "signup", "user_id": 9001, "referral_code": code}),
        json!({"event_id": "d-p1", "type": "purchase", "user_id": 9001, "referral_code": code, "amount": "200.00", "currency": "USD"}),
        json!({"event_id": "d-p2", "type": "purchase", "user_id": 9001, "referral_code": code, "amount": "40.00", "currency": "USD"}),
        json!({"event_id": "d-r1", "type": "refund", "user_id": 9001, "referral_code": code, "amount": "10.00", "currency": "USD", "original_event_id": "d-p2"}),
        json!({"event_id": "d-r2", "type": "refund", "user_id": 9001, "referral_code": code, "amount": "5.00", "currency": "USD", "original_event_id": "never-sent"}),
        json!({"event_id": "d-r3", "type": "refund", "user_id": 9001, "referral_code": code, "amount": "6.00", "currency": "USD", "original_event_id": "d-p3"}),
    ])
    .await?;
    payout(&mut w, s).await?;
    reads(&w, s).await?;
    prometheus.wait_for_processing(&w.sent).await?;

    clicks(&mut w, s, 1).await?;
    conversions(&mut w, s, &[
        json!({"event_id": "d-p3", "type": "purchase", "user_id": 9001, "referral_code": code, "amount": "60.00", "currency": "USD"}),
    ])
    .await?;
    reads(&w, s).await?;
    prometheus.wait_for_processing(&w.sent).await
}
