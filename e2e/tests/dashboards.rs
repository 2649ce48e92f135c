//! Every Grafana panel and every alert rule, proven against the real Prometheus: the three
//! services run as processes of their own against a private slice of the local stack,
//! Prometheus (Debian's package) scrapes them, traffic goes through all of them, and then
//! every panel's query must return a number and every metric a dashboard or rule names
//! must be exported by some service.
//!
//! `harness = false`: this binary is also the service processes it starts (see
//! [`SERVICE_VAR`]), so each service has its own metrics registry, as in production, and
//! is always built from the sources under test.

// Its own test harness: printing the result is its job.
#![allow(clippy::print_stdout)]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use reftrack_common::{config, shutdown};
use reftrack_store::api_keys::{self, Scope};
use reftrack_testkit::{TestStack, metric, wait};
use regex::Regex;
use reqwest::Method;
use serde_json::{Value, json};

/// Set to `ingest`, `aggregator` or `api`, this binary runs that service from the
/// environment, as its own `main` would.
const SERVICE_VAR: &str = "REFTRACK_E2E_SERVICE";
const TEST_NAME: &str = "dashboards::every_panel_and_rule_returns_data_from_the_real_services";
/// What Grafana's `$__rate_interval` and `$__range` stand for here: the whole test.
const WINDOW: &str = "5m";
const API_RATE_LIMIT: u32 = 40;
/// Panel queries that show trouble (failures, backlogs, 5xx): zero in this healthy run.
/// Every other query must be above zero once the traffic went through.
const QUIET: &[(&str, &str)] = &[
    ("Events to Kafka", "B"),
    ("Events to Kafka", "C"),
    ("Events to Kafka", "D"),
    ("Events to Kafka", "E"),
    ("Events to Kafka", "F"),
    ("Events to Kafka", "G"),
    ("Producer queue and spill", "A"),
    ("Producer queue and spill", "B"),
    ("Consumer lag per partition", "A"),
    ("Fences and rewinds", "A"),
    ("Fences and rewinds", "B"),
    ("Fences and rewinds", "C"),
    ("Fences and rewinds", "D"),
    ("Server error ratio", "A"),
];

fn main() -> ExitCode {
    if let Ok(service) = std::env::var(SERVICE_VAR) {
        return run_service(&service);
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        println!("{TEST_NAME}: test");
        return ExitCode::SUCCESS;
    }
    // A name filter that does not match this test skips it, as with the default harness.
    if args
        .iter()
        .any(|a| !a.starts_with('-') && !TEST_NAME.contains(a.as_str()))
    {
        return ExitCode::SUCCESS;
    }
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    match runtime.block_on(every_panel_and_rule_returns_data()) {
        Ok(()) => {
            println!("test {TEST_NAME} ... ok");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("test {TEST_NAME} ... FAILED\n{err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_service(service: &str) -> ExitCode {
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let outcome = runtime.block_on(async {
        match service {
            "ingest" => ingest::run(config::load()?, shutdown::signal()).await,
            "aggregator" => aggregator::run(config::load()?, shutdown::signal()).await,
            "api" => api::run(config::load()?, shutdown::signal()).await,
            other => bail!("unknown service {other}"),
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{service}: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn every_panel_and_rule_returns_data() -> anyhow::Result<()> {
    let stack = TestStack::new().await?;
    let logs = std::env::temp_dir().join(format!("reftrack-dashboards-{}", stack.id));
    std::fs::create_dir_all(&logs)?;
    let services = Services::start(&stack, &logs).await?;
    let prometheus = Prometheus::start(&services, &logs).await?;

    drive_traffic(&stack, &services, &prometheus).await?;

    let queries = panel_queries()?;
    let mut wrong = Vec::new();
    for query in &queries {
        let instant = query
            .expr
            .replace("$__rate_interval", WINDOW)
            .replace("$__range", WINDOW);
        let value = prometheus.eventual_number(&instant).await;
        let quiet = QUIET.contains(&(query.panel.as_str(), query.ref_id.as_str()));
        println!(
            "  {:>12}  {}{}",
            value.map_or("no data".into(), |v| format!("{v:.4}")),
            query.name(),
            if quiet { "  (zero while healthy)" } else { "" }
        );
        match value {
            None => wrong.push(format!("no data: {} = {instant}", query.name())),
            Some(v) if v <= 0.0 && !quiet => {
                wrong.push(format!("zero after traffic: {} = {instant}", query.name()));
            }
            Some(_) => {}
        }
    }
    ensure!(wrong.is_empty(), "{}", wrong.join("\n"));

    let exported = services.exported_metrics().await?;
    let named = named_metrics(&queries, &alert_exprs()?);
    let missing: Vec<_> = named.difference(&exported).collect();
    ensure!(
        missing.is_empty(),
        "named by a dashboard or rule but exported by no service: {missing:?}"
    );
    let unshown: Vec<_> = exported.difference(&named).collect();
    ensure!(
        unshown.is_empty(),
        "exported but on no dashboard or rule: {unshown:?}"
    );
    prometheus.assert_rules_evaluate().await?;
    println!(
        "  {} panel queries returned data; {} metrics named, all exported",
        queries.len(),
        named.len()
    );
    Ok(())
}

// ------------------------------------------------------------------------- services

/// A child process, killed when dropped so a failing test leaves none behind.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Services {
    ingest: SocketAddr,
    aggregator: SocketAddr,
    api: SocketAddr,
    http: reqwest::Client,
    _processes: Vec<Process>,
}

impl Services {
    async fn start(stack: &TestStack, logs: &Path) -> anyhow::Result<Self> {
        let (ingest, aggregator, api) = (free_addr()?, free_addr()?, free_addr()?);
        let spill = logs.join("spill");
        type Env = Vec<(&'static str, String)>;
        let plan: [(&str, SocketAddr, Env); 3] = [
            (
                "ingest",
                ingest,
                vec![
                    ("INGEST_ADDR", ingest.to_string()),
                    ("CLIENT_IP_HEADER", "x-forwarded-for".into()),
                    ("SPILL_DIR", spill.display().to_string()),
                ],
            ),
            (
                "aggregator",
                aggregator,
                vec![
                    ("AGGREGATOR_ADDR", aggregator.to_string()),
                    ("BATCH_MAX_WAIT_MS", "100".into()),
                    ("KAFKA_SESSION_TIMEOUT_MS", "6000".into()),
                ],
            ),
            (
                "api",
                api,
                vec![
                    ("API_ADDR", api.to_string()),
                    ("API_RATE_LIMIT_PER_MINUTE", API_RATE_LIMIT.to_string()),
                ],
            ),
        ];
        let exe = std::env::current_exe()?;
        let mut processes = Vec::new();
        for (name, _, env) in &plan {
            let log = std::fs::File::create(logs.join(format!("{name}.log")))?;
            let child = Command::new(&exe)
                .env(SERVICE_VAR, name)
                .envs(stack.service_env())
                .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
                .env("RUST_LOG", "warn")
                .stdout(Stdio::from(log.try_clone()?))
                .stderr(Stdio::from(log))
                .spawn()
                .with_context(|| format!("start {name}"))?;
            processes.push(Process(child));
        }
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        for (name, addr, _) in &plan {
            wait::until(
                Duration::from_secs(60),
                &format!("{name} ready"),
                || async {
                    http.get(format!("http://{addr}/readyz"))
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success())
                },
            )
            .await
            .with_context(|| format!("see {}", logs.join(format!("{name}.log")).display()))?;
        }
        Ok(Self {
            ingest,
            aggregator,
            api,
            http,
            _processes: processes,
        })
    }

    /// Every metric family the three services export (from `# TYPE` lines).
    async fn exported_metrics(&self) -> anyhow::Result<BTreeSet<String>> {
        let mut names = BTreeSet::new();
        for addr in [self.ingest, self.aggregator, self.api] {
            let text = self
                .http
                .get(format!("http://{addr}/metrics"))
                .send()
                .await?
                .text()
                .await?;
            names.extend(
                text.lines()
                    .filter_map(|l| l.strip_prefix("# TYPE "))
                    .filter_map(|l| l.split_whitespace().next())
                    .map(str::to_string),
            );
        }
        Ok(names)
    }

    /// `method path` on api with `bearer` and an optional JSON body.
    async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        bearer: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut request = self
            .http
            .request(method, format!("http://{}{path}", self.api))
            .bearer_auth(bearer);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        Ok((status, response.json().await.unwrap_or(Value::Null)))
    }

    /// [`Self::api`] that must answer 2xx; returns the body.
    async fn api_ok(
        &self,
        method: reqwest::Method,
        path: &str,
        bearer: &str,
        body: Value,
    ) -> anyhow::Result<Value> {
        let (status, answer) = self.api(method.clone(), path, bearer, Some(body)).await?;
        ensure!(
            (200..300).contains(&status),
            "{method} {path}: {status} {answer}"
        );
        Ok(answer)
    }

    /// A click on `code`'s link by visitor `ip` with `user_agent`; HEAD for a prefetch.
    async fn click(
        &self,
        code: &str,
        ip: &str,
        user_agent: &str,
        head: bool,
    ) -> anyhow::Result<()> {
        let url = format!("http://{}/?ref={code}", self.ingest);
        let request = if head {
            self.http.head(url)
        } else {
            self.http.get(url)
        };
        let status = request
            .header("x-forwarded-for", ip)
            .header("user-agent", user_agent)
            .send()
            .await?
            .status();
        ensure!(status.is_redirection(), "click answered {status}");
        Ok(())
    }

    async fn conversion(&self, key: &str, event: &Value) -> anyhow::Result<()> {
        let response = self
            .http
            .post(format!("http://{}/v1/conversions", self.ingest))
            .bearer_auth(key)
            .json(event)
            .send()
            .await?;
        ensure!(
            response.status() == 202,
            "conversion {event} answered {}",
            response.status()
        );
        Ok(())
    }
}

fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

// -------------------------------------------------------------------------- traffic

/// What the traffic so far should make the aggregator and api count.
#[derive(Default)]
struct Sent {
    clicks: u64,
    conversions_applied: u64,
    parked: u64,
    payouts_paid: u64,
}

const BROWSER: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
const BOT: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";

/// The callers of the traffic: keys, a promoter and an affiliate approved by staff.
struct World {
    admin: String,
    /// A key kept over its rate limit.
    hammer: String,
    events: String,
    promoter: String,
    promoter_code: String,
    staff_affiliate: i64,
    staff_code: String,
    sent: Sent,
}

async fn world(stack: &TestStack, s: &Services) -> anyhow::Result<World> {
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
async fn clicks(w: &mut World, s: &Services, wave: u8) -> anyhow::Result<()> {
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
async fn conversions(w: &mut World, s: &Services, events: &[Value]) -> anyhow::Result<()> {
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

/// The promoter withdraws once the commission is in; staff pay it.
async fn payout(w: &mut World, s: &Services) -> anyhow::Result<()> {
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
            "/api/v1/affiliate/payouts/?status=pending",
            &w.admin,
            None,
        )
        .await?;
    let id = pending["data"]["results"][0]["id"]
        .as_i64()
        .context("pending payout")?;
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
async fn reads(w: &World, s: &Services) -> anyhow::Result<()> {
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
async fn drive_traffic(
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

// ----------------------------------------------------------------------- prometheus

struct Prometheus {
    addr: SocketAddr,
    http: reqwest::Client,
    _process: Process,
}

impl Prometheus {
    /// Debian's Prometheus, scraping the three services every second, with reftrack's
    /// alert rules loaded.
    async fn start(services: &Services, dir: &Path) -> anyhow::Result<Self> {
        let rules = repo_file("deploy/prometheus/alerts.yml");
        let config = format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
             rule_files: [{rules:?}]\n\
             scrape_configs:\n\
             - {{job_name: ingest, static_configs: [{{targets: ['{}']}}]}}\n\
             - {{job_name: aggregator, static_configs: [{{targets: ['{}']}}]}}\n\
             - {{job_name: api, static_configs: [{{targets: ['{}']}}]}}\n",
            services.ingest, services.aggregator, services.api
        );
        let config_path = dir.join("prometheus.yml");
        std::fs::write(&config_path, config)?;
        let addr = free_addr()?;
        let log = std::fs::File::create(dir.join("prometheus.log"))?;
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .context("start prometheus (Debian's package; scripts/stack deps installs it)")?;
        let prometheus = Self {
            addr,
            http: reqwest::Client::new(),
            _process: Process(child),
        };
        wait::until(Duration::from_secs(30), "prometheus ready", || async {
            prometheus
                .http
                .get(format!("http://{addr}/-/ready"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await?;
        // Traffic starts only once every service has been scraped, so that nothing it
        // records happens before a series' first sample.
        wait::until(Duration::from_secs(30), "first scrapes", || async {
            prometheus.max_number("sum(up)").await.ok().flatten() == Some(3.0)
        })
        .await?;
        Ok(prometheus)
    }

    async fn query(&self, expr: &str) -> anyhow::Result<Vec<Value>> {
        let answer: Value = self
            .http
            .get(format!("http://{}/api/v1/query", self.addr))
            .query(&[("query", expr)])
            .send()
            .await?
            .json()
            .await?;
        ensure!(answer["status"] == "success", "{expr}: {answer}");
        Ok(answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// The largest finite value `expr` returns, if any.
    async fn max_number(&self, expr: &str) -> anyhow::Result<Option<f64>> {
        Ok(self
            .query(expr)
            .await?
            .iter()
            .filter_map(|series| series["value"][1].as_str()?.parse::<f64>().ok())
            .filter(|v| v.is_finite())
            .reduce(f64::max))
    }

    /// [`Self::max_number`], asked again while it has no data, up to a deadline: some
    /// series appear only with a later report (librdkafka's statistics, every 5 s).
    async fn eventual_number(&self, expr: &str) -> Option<f64> {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let value = self.max_number(expr).await.ok().flatten();
            if value.is_some() || std::time::Instant::now() > deadline {
                return value;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Until Prometheus has scraped the aggregator having written everything sent, and
    /// api having paid the payout.
    async fn wait_for_processing(&self, sent: &Sent) -> anyhow::Result<()> {
        let expect = [
            ("sum(aggregator_clicks_total)", sent.clicks as f64),
            (
                "sum(aggregator_conversions_total)",
                sent.conversions_applied as f64,
            ),
            ("sum(aggregator_parked_total)", sent.parked as f64),
            (
                "sum(api_payouts_total{event=\"paid\"})",
                sent.payouts_paid as f64,
            ),
        ];
        for (expr, want) in expect {
            wait::until(Duration::from_secs(90), expr, || async {
                self.max_number(expr).await.ok().flatten() == Some(want)
            })
            .await?;
        }
        // One more scrape of every service, so rates see the final counts on both sides
        // of the window.
        let now = self.max_number("vector(time())").await?.context("time()")?;
        wait::until(Duration::from_secs(30), "one more scrape", || async {
            self.max_number("min(timestamp(up))").await.ok().flatten() > Some(now)
        })
        .await?;
        Ok(())
    }

    /// Every rule of alerts.yml loaded and evaluated without error.
    async fn assert_rules_evaluate(&self) -> anyhow::Result<()> {
        let answer: Value = self
            .http
            .get(format!("http://{}/api/v1/rules", self.addr))
            .send()
            .await?
            .json()
            .await?;
        let rules: Vec<&Value> = answer["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().into_iter().flatten())
            .collect();
        ensure!(
            rules.len() == alert_exprs()?.len(),
            "Prometheus loaded {} rules",
            rules.len()
        );
        for rule in rules {
            ensure!(
                rule["health"] == "ok",
                "rule {} does not evaluate: {}",
                rule["name"],
                rule["lastError"]
            );
        }
        Ok(())
    }
}

// ------------------------------------------------------------ dashboards and rules

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// One query of one dashboard panel.
struct PanelQuery {
    dashboard: String,
    panel: String,
    ref_id: String,
    expr: String,
}

impl PanelQuery {
    fn name(&self) -> String {
        format!("{} / {} [{}]", self.dashboard, self.panel, self.ref_id)
    }
}

/// Every query of every dashboard.
fn panel_queries() -> anyhow::Result<Vec<PanelQuery>> {
    let mut queries = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(repo_file("dashboards"))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.sort();
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    for file in files {
        let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&file)?)
            .with_context(|| format!("{} parses", file.display()))?;
        for panel in dashboard["panels"].as_array().into_iter().flatten() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                ensure!(
                    target["expr"].is_string(),
                    "a target without expr in {}",
                    file.display()
                );
                queries.push(PanelQuery {
                    dashboard: text(&dashboard["title"]),
                    panel: text(&panel["title"]),
                    ref_id: text(&target["refId"]),
                    expr: text(&target["expr"]),
                });
            }
        }
    }
    ensure!(!queries.is_empty(), "no dashboards");
    Ok(queries)
}

fn alert_exprs() -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(repo_file("deploy/prometheus/alerts.yml"))?;
    let docs = yaml_rust2::YamlLoader::load_from_str(&text)?;
    Ok(docs[0]["groups"]
        .as_vec()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_vec().into_iter().flatten())
        .filter_map(|r| r["expr"].as_str().map(str::to_string))
        .collect())
}

/// The reftrack metric families the queries name (histogram series folded into their
/// family); `up` and PromQL functions are not metrics of ours.
fn named_metrics(queries: &[PanelQuery], rules: &[String]) -> BTreeSet<String> {
    let name = Regex::new(r"\b(?:ingest|aggregator|api|http)_[a-z0-9_]+").expect("regex");
    queries
        .iter()
        .map(|q| q.expr.as_str())
        .chain(rules.iter().map(String::as_str))
        .flat_map(|e| name.find_iter(e).map(|m| m.as_str()))
        .map(|m| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| m.strip_suffix(suffix))
                .unwrap_or(m)
                .to_string()
        })
        .collect()
}
