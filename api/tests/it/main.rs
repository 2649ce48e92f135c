//! api's integration tests: real HTTP against the real stores.

mod auth;
mod money;
mod ops;
mod payout_batches;
mod performance;
mod seeds;
mod shapes;
mod tls;
mod validation;
mod web;
mod webhooks;

use clap::Parser;
use reftrack_store::api_keys::{self, Scope};
use reftrack_testkit::{Served, TestStack, serve};
use serde_json::Value;

pub fn config(stack: &TestStack) -> api::Config {
    let mut config = api::Config::try_parse_from(["api"]).expect("defaults parse");
    config.common = stack.common();
    config.postgres = stack.postgres.clone();
    config.clickhouse = stack.clickhouse.clone();
    config.redis = stack.redis.clone();
    config
}

pub async fn spawn(config: &api::Config) -> Served {
    let app = api::App::build(config).await.expect("api starts");
    serve(move |listener, shutdown| app.serve(listener, shutdown)).await
}

/// An API key with `scopes`, as the CLI would create it.
pub async fn key(stack: &TestStack, scopes: &[Scope]) -> String {
    api_keys::create(&stack.pool, "admin@rebusai.com", scopes)
        .await
        .unwrap()
        .0
        .key
}

/// A promoter access token for `user_id`, signed with the development key.
pub fn token(user_id: i64) -> String {
    let key = secrecy::SecretString::from(api::DEV_JWT_SIGNING_KEY.to_string());
    api::auth::Tokens::new(&key, 0).issue(user_id, 3600)
}

pub struct Client {
    pub http: reqwest::Client,
    pub server: Served,
}

impl Client {
    pub async fn new(config: &api::Config) -> Self {
        Self {
            http: reqwest::Client::new(),
            server: spawn(config).await,
        }
    }

    /// Sends `method path` with `bearer` and an optional JSON body; returns status and body.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.server
            .call(&self.http, method, path, bearer, body.as_ref())
            .await
    }
}

/// One method per endpoint, named as the API documents name them, so that a test reads
/// as what it does. `call` stays for tables of routes (the auth matrix, field checks).
impl Client {
    pub async fn promoter(&self, token: &str) -> (u16, Value) {
        self.call("GET", "/referrals/promoter", Some(token), None)
            .await
    }

    pub async fn set_payout_method(&self, token: &str, body: Value) -> (u16, Value) {
        self.call(
            "PATCH",
            "/referrals/set-payout-method/",
            Some(token),
            Some(body),
        )
        .await
    }

    pub async fn set_min_withdrawal_balance(&self, token: &str, body: Value) -> (u16, Value) {
        self.call(
            "PATCH",
            "/referrals/set-min-withdrawal-balance/",
            Some(token),
            Some(body),
        )
        .await
    }

    pub async fn recent_earnings(&self, token: &str) -> (u16, Value) {
        self.call(
            "GET",
            "/referrals/promoter-recent-earnings",
            Some(token),
            None,
        )
        .await
    }

    pub async fn referrals(&self, token: &str) -> (u16, Value) {
        self.call("GET", "/referrals/", Some(token), None).await
    }

    pub async fn promoter_payouts(&self, token: &str) -> (u16, Value) {
        self.call("GET", "/referrals/payouts", Some(token), None)
            .await
    }

    pub async fn withdraw(&self, token: &str) -> (u16, Value) {
        self.call("POST", "/referrals/withdraw/", Some(token), None)
            .await
    }

    /// `query`: the listing's query string, without `?` (may be empty).
    pub async fn list_affiliates(&self, key: &str, query: &str) -> (u16, Value) {
        let path = format!("/api/v1/affiliate/affiliates/?{query}");
        self.call("GET", &path, Some(key), None).await
    }

    pub async fn create_affiliate(&self, key: &str, body: Value) -> (u16, Value) {
        self.call(
            "POST",
            "/api/v1/affiliate/affiliates/",
            Some(key),
            Some(body),
        )
        .await
    }

    pub async fn affiliate(&self, key: &str, id: i64) -> (u16, Value) {
        let path = format!("/api/v1/affiliate/affiliates/{id}/");
        self.call("GET", &path, Some(key), None).await
    }

    pub async fn update_affiliate(&self, key: &str, id: i64, body: Value) -> (u16, Value) {
        let path = format!("/api/v1/affiliate/affiliates/{id}/");
        self.call("PUT", &path, Some(key), Some(body)).await
    }

    /// An action on an affiliate: `approve`, `reject`, `deactivate`.
    pub async fn affiliate_action(
        &self,
        key: &str,
        id: i64,
        action: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let path = format!("/api/v1/affiliate/affiliates/{id}/{action}/");
        self.call("POST", &path, Some(key), body).await
    }

    pub async fn delete_affiliate(&self, key: &str, id: i64) -> (u16, Value) {
        let path = format!("/api/v1/affiliate/affiliates/{id}/");
        self.call("DELETE", &path, Some(key), None).await
    }

    /// `query`: `date_from=...&date_to=...`, or empty.
    pub async fn performance(&self, key: &str, id: i64, query: &str) -> (u16, Value) {
        let path = format!("/api/v1/affiliate/affiliates/{id}/performance/?{query}");
        self.call("GET", &path, Some(key), None).await
    }

    pub async fn list_payouts(&self, key: &str, query: &str) -> (u16, Value) {
        let path = format!("/api/v1/affiliate/payouts/?{query}");
        self.call("GET", &path, Some(key), None).await
    }

    /// An action on a payout: `mark-paid` or `cancel`.
    pub async fn payout_action(&self, key: &str, id: &Value, action: &str) -> (u16, Value) {
        let path = format!("/api/v1/affiliate/payouts/{id}/{action}/");
        self.call("POST", &path, Some(key), None).await
    }
}

/// Fails unless `actual` has exactly the field names, nesting and JSON types of `expected`.
pub fn assert_shape(expected: &Value, actual: &Value) {
    shape_at("$", expected, actual);
}

fn shape_at(path: &str, expected: &Value, actual: &Value) {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            let mut want: Vec<&String> = e.keys().collect();
            let mut got: Vec<&String> = a.keys().collect();
            want.sort();
            got.sort();
            assert_eq!(got, want, "field names at {path}");
            for (k, v) in e {
                shape_at(&format!("{path}.{k}"), v, &a[k]);
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            if let Some(first) = e.first() {
                assert!(!a.is_empty(), "{path} is empty; the seed shows items");
                for (i, item) in a.iter().enumerate() {
                    shape_at(&format!("{path}[{i}]"), first, item);
                }
            }
        }
        (Value::Number(_), Value::Number(_))
        | (Value::String(_), Value::String(_))
        | (Value::Bool(_), Value::Bool(_))
        | (Value::Null, Value::Null) => {}
        _ => panic!("{path}: the seed has {expected}, the answer has {actual}"),
    }
}
