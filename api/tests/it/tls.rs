//! TLS to the stores: the api against a Postgres that refuses anything but TLS and a
//! Redis that speaks only TLS (`scripts/stack tls`, started by the suite), each checked
//! against the stack's private CA; and refused without that CA.

use std::path::PathBuf;

use reftrack_testkit::TestStack;

struct Tls {
    postgres: String,
    redis: String,
    ca: PathBuf,
}

fn tls() -> Tls {
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!("{name} is not set: run the suite with scripts/stack test, or `eval $(scripts/stack tls | sed 's/^/export /')`")
        })
    };
    Tls {
        postgres: var("REFTRACK_TLS_POSTGRES"),
        redis: var("REFTRACK_TLS_REDIS"),
        ca: var("REFTRACK_TLS_CA").into(),
    }
}

fn over_tls(stack: &TestStack, tls: &Tls, with_ca: bool) -> api::Config {
    let mut config = crate::config(stack);
    let root = if with_ca {
        format!("&sslrootcert={}", tls.ca.display())
    } else {
        String::new()
    };
    config.postgres.url = format!("{}?sslmode=verify-full{root}", tls.postgres)
        .parse()
        .unwrap();
    config.postgres.schema = None;
    config.redis.url = tls.redis.parse().unwrap();
    config.redis.ca_cert = with_ca.then(|| tls.ca.clone());
    config
}

#[tokio::test]
async fn the_api_works_over_tls_to_postgres_and_redis() {
    let stack = TestStack::new().await.unwrap();
    let tls = tls();
    let config = over_tls(&stack, &tls, true);
    let pool = config.postgres.connect().await.expect("TLS to Postgres");
    let encrypted: bool =
        sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(encrypted, "the connection is encrypted");

    let server = crate::spawn(&config).await;
    let http = reqwest::Client::new();
    let ready: serde_json::Value = http
        .get(server.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            ready["checks"]["postgres"].as_str(),
            ready["checks"]["redis"].as_str()
        ),
        (Some("ok"), Some("ok")),
        "{ready}"
    );
    // A promoter's first call writes to Postgres and counts in Redis (the rate limit).
    let answer = http
        .get(server.url("/referrals/promoter"))
        .bearer_auth(crate::token(
            9_000_000 + i64::from(std::process::id() % 1000),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200, "{}", answer.text().await.unwrap());
    server.stop().await.unwrap();
}

#[tokio::test]
async fn without_the_ca_the_stores_are_not_trusted() {
    let stack = TestStack::new().await.unwrap();
    let tls = tls();
    let config = over_tls(&stack, &tls, false);
    let postgres = config.postgres.connect().await.map(|_| ()).unwrap_err();
    assert!(
        format!("{postgres:#}")
            .to_lowercase()
            .contains("certificate"),
        "{postgres:#}"
    );
    let redis = config.redis.connect().await.map(|_| ()).unwrap_err();
    assert!(
        format!("{redis:#}").to_lowercase().contains("certificate")
            || format!("{redis:#}")
                .to_lowercase()
                .contains("unknownissuer"),
        "{redis:#}"
    );
}
