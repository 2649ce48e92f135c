//! The commission lifecycle and the program's rules, end to end: conversions reported to
//! ingest over HTTP, applied by the aggregator from the broker, read back through the
//! api, with the api's clock moved forward to end holding periods.

mod attribution;
mod browser;
mod fraud;
mod money;
mod rules;
mod webhooks;

use std::time::Duration;

use clap::Parser;
use reftrack_common::clock::Clock;
use reftrack_store::api_keys::{self, Scope};
use reftrack_testkit::{Served, TestStack, serve, wait};
use serde_json::{Value, json};

/// The three services on one test stack, the api on a clock the test moves.
pub struct Program {
    pub stack: TestStack,
    pub clock: Clock,
    pub aggregator: Served,
    ingest: Served,
    api: Served,
    http: reqwest::Client,
    pub admin: String,
    events: String,
}

/// A promoter, as the promoter API made it on first sight.
pub struct Promoter {
    pub token: String,
    pub id: i64,
    pub code: String,
}

impl Program {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts the services, `adjust`ing the api's settings first.
    pub async fn start_with(adjust: impl FnOnce(&mut api::Config)) -> Self {
        let stack = TestStack::new().await.unwrap();
        // Keys first: ingest reads the events key into its directory at start-up.
        let key = async |scope: Scope| {
            api_keys::create(&stack.pool, "admin@example.com", &[scope])
                .await
                .unwrap()
                .0
                .key
        };
        let (admin, events) = (key(Scope::Admin).await, key(Scope::Events).await);
        let clock = Clock::default();
        let ingest = {
            let mut config = ingest::Config::try_parse_from(["ingest"]).unwrap();
            config.common = stack.common();
            config.postgres = stack.postgres.clone();
            config.kafka = stack.kafka.clone();
            config.spill_dir = std::env::temp_dir().join(format!("reftrack-spill-{}", stack.id));
            let app = ingest::App::build(&config).await.unwrap();
            serve(move |listener, shutdown| app.serve(listener, shutdown)).await
        };
        let aggregator = {
            let mut config = aggregator::Config::try_parse_from(["aggregator"]).unwrap();
            config.common = stack.common();
            config.postgres = stack.postgres.clone();
            config.kafka = stack.kafka.clone();
            config.clickhouse = stack.clickhouse.clone();
            config.batch_max_wait_ms = 100;
            let app = aggregator::App::build(&config).await.unwrap();
            serve(move |listener, shutdown| app.serve(listener, shutdown)).await
        };
        let api = {
            let mut config = api::Config::try_parse_from(["api"]).unwrap();
            config.common = stack.common();
            config.postgres = stack.postgres.clone();
            config.clickhouse = stack.clickhouse.clone();
            config.redis = stack.redis.clone();
            adjust(&mut config);
            let app = api::App::build_with_clock(&config, clock.clone())
                .await
                .unwrap();
            serve(move |listener, shutdown| app.serve(listener, shutdown)).await
        };
        Self {
            stack,
            clock,
            aggregator,
            ingest,
            api,
            http: reqwest::Client::new(),
            admin,
            events,
        }
    }

    /// The api's URL of `path`, for a browser.
    pub fn api_url(&self, path: &str) -> String {
        self.api.url(path)
    }

    /// Moves the api's clock `days` forward (or back, when negative).
    pub fn advance_days(&self, days: i64) {
        self.clock.advance(chrono::Duration::days(days));
    }

    /// `method path` on the api with `bearer` and an optional JSON body.
    pub async fn api(
        &self,
        method: &str,
        path: &str,
        bearer: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.api
            .call(&self.http, method, path, Some(bearer), body.as_ref())
            .await
    }

    /// An admin call that must succeed; its `data`.
    pub async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, answer) = self.api(method, path, &self.admin, body).await;
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {answer}"
        );
        answer["data"].clone()
    }

    /// The promoter of product user `user`, with a PayPal payout address.
    pub async fn promoter(&self, user: i64) -> Promoter {
        let token = promoter_token(user);
        let (status, me) = self.api("GET", "/referrals/promoter", &token, None).await;
        assert_eq!(status, 200, "{me}");
        let body =
            json!({"method": "paypal", "payment_address": format!("user{user}@example.com")});
        let (status, answer) = self
            .api("PATCH", "/referrals/set-payout-method/", &token, Some(body))
            .await;
        assert_eq!(status, 200, "{answer}");
        Promoter {
            token,
            id: me["id"].as_i64().unwrap(),
            code: me["referralToken"].as_str().unwrap().to_string(),
        }
    }

    /// The landing URL a browser is sent to by a click on `code`'s link, once ingest knows
    /// the code (it learns new codes from Postgres within moments).
    pub async fn click(&self, code: &str) -> url::Url {
        let no_redirects = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let location = std::sync::Mutex::new(None);
        let known = wait::until(
            Duration::from_secs(30),
            "a click on a known code",
            || async {
                let response = no_redirects
                    .get(self.ingest.url(&format!("/?ref={code}&utm_source=mail")))
                    .header(
                        "user-agent",
                        "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
                    )
                    .send()
                    .await
                    .unwrap();
                let known = response.headers().contains_key("set-cookie");
                *location.lock().unwrap() = response.headers().get("location").cloned();
                known
            },
        )
        .await;
        assert!(known.is_ok(), "ingest never knew {code}");
        let location = location.into_inner().unwrap().unwrap();
        url::Url::parse(location.to_str().unwrap()).unwrap()
    }

    /// Reports a conversion to ingest as the product's backend would; (status, body).
    pub async fn report(&self, event: Value) -> (u16, Value) {
        let response = self
            .http
            .post(self.ingest.url("/v1/conversions"))
            .bearer_auth(&self.events)
            .json(&event)
            .send()
            .await
            .unwrap();
        (
            response.status().as_u16(),
            response.json().await.unwrap_or(Value::Null),
        )
    }

    /// Environment for a client of ingest's conversions API: its URL and the events key.
    pub fn ingest_client_env(&self) -> [(&'static str, String); 2] {
        [
            ("INGEST_URL", self.ingest.url("")),
            ("REFTRACK_EVENTS_KEY", self.events.clone()),
        ]
    }

    /// Reports a conversion that must be accepted.
    pub async fn accepted(&self, event: Value) {
        let (status, answer) = self.report(event.clone()).await;
        assert_eq!(status, 202, "{event} → {answer}");
    }

    /// The promoter's `/referrals/promoter` once `ready` holds for it (the aggregator
    /// applies what ingest accepted within a second or two).
    pub async fn promoter_once(&self, p: &Promoter, ready: impl Fn(&Value) -> bool) -> Value {
        self.read_once("GET", "/referrals/promoter", &p.token, ready)
            .await
    }

    /// An affiliate's admin balance once `ready` holds for it.
    pub async fn balance_once(&self, affiliate: i64, ready: impl Fn(&Value) -> bool) -> Value {
        let path = format!("/api/v1/affiliate/affiliates/{affiliate}/balance/");
        let admin = self.admin.clone();
        self.read_once("GET", &path, &admin, |v| ready(&v["data"]))
            .await["data"]
            .clone()
    }

    /// An affiliate's admin balance now.
    pub async fn balance(&self, affiliate: i64) -> Value {
        self.balance_once(affiliate, |_| true).await
    }

    async fn read_once(
        &self,
        method: &str,
        path: &str,
        bearer: &str,
        ready: impl Fn(&Value) -> bool,
    ) -> Value {
        let last = std::sync::Mutex::new(Value::Null);
        let found = wait::until(Duration::from_secs(30), path, || async {
            let (status, answer) = self.api(method, path, bearer, None).await;
            let done = status == 200 && ready(&answer);
            *last.lock().unwrap() = answer;
            done
        })
        .await;
        let last = last.into_inner().unwrap();
        assert!(found.is_ok(), "{path} never became ready; last: {last}");
        last
    }

    /// Marks the payout `payout` (as the withdraw answer shows it) paid, as an admin.
    pub async fn mark_paid(&self, payout: &Value) {
        let id = payout["id"].as_i64().unwrap();
        let path = format!("/api/v1/affiliate/payouts/{id}/mark-paid/");
        self.admin("POST", &path, None).await;
    }

    /// The promoter's payouts, newest first, as the promoter API lists them.
    pub async fn payouts(&self, p: &Promoter) -> Value {
        let (status, payouts) = self.api("GET", "/referrals/payouts", &p.token, None).await;
        assert_eq!(status, 200, "{payouts}");
        payouts
    }

    /// The promoter's referrals (the first page).
    pub async fn referrals(&self, p: &Promoter) -> Vec<Value> {
        let (status, page) = self.api("GET", "/referrals/", &p.token, None).await;
        assert_eq!(status, 200, "{page}");
        page["results"].as_array().unwrap().clone()
    }
}

/// A promoter access token for product user `user`, signed with the development key.
pub fn promoter_token(user: i64) -> String {
    let key = secrecy::SecretString::from(api::DEV_JWT_SIGNING_KEY.to_string());
    api::auth::Tokens::new(&key, 0).issue(user, 3600)
}

/// A signup of product user `user` through `code`.
pub fn signup(id: &str, user: i64, code: &str) -> Value {
    json!({"event_id": id, "type": "signup", "user_id": user, "referral_code": code})
}

/// A purchase of `amount` (a string, as money is sent) by `user` through `code`.
pub fn purchase(id: &str, user: i64, code: &str, amount: &str) -> Value {
    json!({"event_id": id, "type": "purchase", "user_id": user, "referral_code": code,
           "amount": amount, "currency": "USD"})
}

/// A refund of `amount` of purchase `of`.
pub fn refund(id: &str, of: &str, user: i64, code: &str, amount: &str) -> Value {
    json!({"event_id": id, "type": "refund", "user_id": user, "referral_code": code,
           "amount": amount, "currency": "USD", "original_event_id": of})
}

/// Money as the APIs print it, compared by value (`25` and `25.0` are equal).
pub fn money(v: &Value) -> f64 {
    v.as_f64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(f64::NAN)
}
