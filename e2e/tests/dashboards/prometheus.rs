//! A private Prometheus that scrapes the services, and the queries asked of it.

use super::*;

pub(crate) struct Prometheus {
    pub(crate) addr: SocketAddr,
    pub(crate) http: reqwest::Client,
    pub(crate) _process: Process,
}

impl Prometheus {
    /// Debian's Prometheus, scraping the three services every second, with reftrack's
    /// alert rules loaded.
    pub(crate) async fn start(services: &Services, dir: &Path) -> anyhow::Result<Self> {
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
        let args = [
            format!("--config.file={}", config_path.display()),
            format!("--storage.tsdb.path={}", dir.join("tsdb").display()),
            format!("--web.listen-address={addr}"),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        // Debian's package; scripts/stack deps installs it.
        let process = Launch::new("prometheus", Path::new("prometheus"), addr)
            .args(&args)
            .ready_path("/-/ready")
            .log(dir.join("prometheus.log"))
            .start()?;
        let prometheus = Self {
            addr,
            http: reqwest::Client::new(),
            _process: process,
        };
        // Traffic starts only once every service has been scraped, so that nothing it
        // records happens before a series' first sample.
        wait::until(Duration::from_secs(30), "first scrapes", || async {
            prometheus.max_number("sum(up)").await.ok().flatten() == Some(3.0)
        })
        .await?;
        Ok(prometheus)
    }

    pub(crate) async fn query(&self, expr: &str) -> anyhow::Result<Vec<Value>> {
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
    pub(crate) async fn max_number(&self, expr: &str) -> anyhow::Result<Option<f64>> {
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
    pub(crate) async fn eventual_number(&self, expr: &str) -> Option<f64> {
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
    pub(crate) async fn wait_for_processing(&self, sent: &Sent) -> anyhow::Result<()> {
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
    pub(crate) async fn assert_rules_evaluate(&self) -> anyhow::Result<()> {
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
