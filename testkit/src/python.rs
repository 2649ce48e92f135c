//! The suite's Python, a venv `scripts/stack deps` makes with checkers that are not
//! reftrack's own code (an OpenAPI validator, the Standard Webhooks reference library).

use std::path::PathBuf;
use std::process::{Command, Output};

/// `REFTRACK_PYTHON`, else the stack's venv; a clear failure when it is missing.
pub fn python() -> PathBuf {
    let path = std::env::var_os("REFTRACK_PYTHON").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.stack/venv/bin/python"),
        PathBuf::from,
    );
    assert!(
        path.exists(),
        "{} is missing: run scripts/stack deps",
        path.display()
    );
    path
}

/// Runs `python args...` to its end; panics with its output unless it succeeds.
pub fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let output = Command::new(python())
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("python runs");
    assert!(
        output.status.success(),
        "python {args:?} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A webhook receiver on loopback (`testkit/py/webhook_receiver.py`): it verifies every
/// delivery with the Standard Webhooks reference library and logs it. Stopped when dropped.
pub struct WebhookReceiver {
    pub port: u16,
    child: std::process::Child,
    log: PathBuf,
    plan: PathBuf,
}

impl WebhookReceiver {
    /// Starts one that checks signatures against each of `secrets`.
    pub fn start(secrets: &[&str]) -> Self {
        use std::io::BufRead;
        let dir = std::env::temp_dir().join(format!("reftrack-hooks-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let (log, plan) = (dir.join("received.jsonl"), dir.join("plan"));
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/py/webhook_receiver.py");
        let mut child = Command::new(python())
            .arg(script)
            .arg(&log)
            .arg(&plan)
            .args(secrets)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("the webhook receiver starts");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().expect("the receiver prints its port");
        Self {
            port,
            child,
            log,
            plan,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// How the next requests are answered: e.g. `500,timeout` (then 200), or `500*` (always).
    pub fn plan(&self, plan: &str) {
        std::fs::write(&self.plan, plan).unwrap();
    }

    /// Every request received so far, in order.
    pub fn received(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .map(|line| serde_json::from_str(line).expect("a JSON line"))
            .collect()
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
