use std::future::Future;
use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A service running on a loopback port chosen by the OS. Dropping it asks the service
/// to shut down; [`Served::stop`] also waits for it and returns its result.
pub struct Served {
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Served {
    /// `http://127.0.0.1:PORT` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The service's `/metrics` exposition.
    /// `method path` with an optional bearer and JSON body: the status and the body, as
    /// JSON when it is (else as a JSON string).
    pub async fn call(
        &self,
        http: &reqwest::Client,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: Option<&serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut request = http.request(method.parse().unwrap(), self.url(path));
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        (status, body)
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(self.url("/metrics"))
            .await
            .and_then(reqwest::Response::error_for_status)
            .expect("GET /metrics")
            .text()
            .await
            .expect("the /metrics text")
    }

    /// Shuts the service down gracefully and waits for it to finish.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.task.take() {
            Some(task) => task.await?,
            None => Ok(()),
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Binds 127.0.0.1:0 and runs `run(listener, shutdown)` in the background.
pub async fn serve<F, Fut>(run: F) -> Served
where
    F: FnOnce(TcpListener, Box<dyn Future<Output = ()> + Send + Unpin>) -> Fut,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let addr = listener.local_addr().expect("local address");
    let (tx, rx) = oneshot::channel::<()>();
    let shutdown = Box::new(Box::pin(async move {
        let _ = rx.await;
    }));
    let task = tokio::spawn(run(listener, shutdown));
    Served {
        addr,
        shutdown: Some(tx),
        task: Some(task),
    }
}
