//! The three services, each a process of its own (this binary, run as the service).

use super::*;

pub(crate) struct Services {
    pub(crate) ingest: SocketAddr,
    pub(crate) aggregator: SocketAddr,
    pub(crate) api: SocketAddr,
    pub(crate) http: reqwest::Client,
    pub(crate) _processes: Vec<Process>,
}

impl Services {
    pub(crate) async fn start(stack: &TestStack, logs: &Path) -> anyhow::Result<Self> {
        let (ingest, aggregator, api) = (free_addr()?, free_addr()?, free_addr()?);
        let spill = logs.join("spill");
        type Env = Vec<(&'static str, String)>;
        let plan: [(&str, SocketAddr, Env); 3] = [
            (
                "ingest",
                ingest,
                vec![
                    ("INGEST_ADDR", ingest.to_string()),
                    ("TRUSTED_PROXIES", "127.0.0.1".into()),
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
        for (name, addr, env) in plan {
            let process = Launch::new(name, &exe, addr)
                .env(stack.service_env())
                .env(env)
                .env([(SERVICE_VAR, name.to_string()), ("RUST_LOG", "warn".into())])
                .log(logs.join(format!("{name}.log")))
                .start()?;
            processes.push(process);
        }
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            ingest,
            aggregator,
            api,
            http,
            _processes: processes,
        })
    }

    /// Every metric family the three services export (from `# TYPE` lines).
    pub(crate) async fn exported_metrics(&self) -> anyhow::Result<BTreeSet<String>> {
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
    pub(crate) async fn api(
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
    pub(crate) async fn api_ok(
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
    pub(crate) async fn click(
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

    pub(crate) async fn conversion(&self, key: &str, event: &Value) -> anyhow::Result<()> {
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
