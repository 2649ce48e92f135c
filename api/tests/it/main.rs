//! api's integration tests: real HTTP against the real stores.

mod auth;
mod money;
mod ops;
mod performance;
mod seeds;
mod shapes;
mod validation;

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
        let mut request = self
            .http
            .request(method.parse().unwrap(), self.server.url(path));
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
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
