//! Services under test run as their own release-built processes, as in production.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A child process killed (SIGTERM, then SIGKILL) when dropped.
pub struct Process {
    pub addr: SocketAddr,
    child: Child,
}

/// The folder holding this binary, where cargo also put the service binaries.
pub fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe.parent().context("binary folder")?.join(name);
    anyhow::ensure!(
        path.exists(),
        "{} is missing: build it first (cargo build --release -p reftrack-{name})",
        path.display()
    );
    Ok(path)
}

/// A free loopback port.
pub fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

impl Process {
    /// Starts `program` with `env` and waits until `ready_path` answers 200 on `addr`.
    pub fn start(
        name: &str,
        program: &std::path::Path,
        args: &[&str],
        env: &[(&str, String)],
        addr: SocketAddr,
        ready_path: &str,
    ) -> anyhow::Result<Self> {
        let log =
            std::fs::File::create(std::env::temp_dir().join(format!("reftrack-bench-{name}.log")))?;
        let child = Command::new(program)
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("start {}", program.display()))?;
        let mut process = Self { addr, child };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !http_ok(addr, ready_path) {
            if let Some(status) = process.child.try_wait()? {
                bail!(
                    "{name} exited with {status} (log: {})",
                    log_path(name).display()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{name} not ready within 60s (log: {})",
                    log_path(name).display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(process)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGKILL at once (a crash).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Asks for a graceful stop (SIGTERM) and waits up to `grace`.
    pub fn terminate(&mut self, grace: Duration) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.terminate(Duration::from_secs(10));
    }
}

/// CPU time (user + system) a process has used, from /proc.
pub fn cpu_time(pid: u32) -> Duration {
    let ticks_per_sec = 100.0; // USER_HZ on Linux
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // Fields after the command name, which is in parentheses and may hold spaces.
            let rest = s.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let utime: f64 = fields.get(11)?.parse().ok()?;
            let stime: f64 = fields.get(12)?.parse().ok()?;
            Some(Duration::from_secs_f64((utime + stime) / ticks_per_sec))
        })
        .unwrap_or_default()
}

/// The pid of the process listening on a loopback TCP port (e.g. the broker), if found.
pub fn pid_listening_on(port: u16) -> Option<u32> {
    let output = Command::new("ss")
        .args(["-ltnpH", &format!("sport = :{port}")])
        .output()
        .ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    let start = text.find("pid=")? + 4;
    text[start..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// Resident memory of a process in bytes, from /proc.
pub fn rss_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn log_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("reftrack-bench-{name}.log"))
}

/// A plain blocking GET, enough for readiness and metrics.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream =
        std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

fn http_ok(addr: SocketAddr, path: &str) -> bool {
    matches!(http_get(addr, path), Some((200, _)))
}
