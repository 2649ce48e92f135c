//! Services under test run as processes of their own, as in production: started,
//! waited for until ready, measured (CPU, memory) and stopped (SIGTERM, or SIGKILL for a
//! crash), and always stopped when dropped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
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

/// How to start a service process: what runs, where it answers, where it logs.
pub struct Launch<'a> {
    name: &'a str,
    program: &'a Path,
    args: &'a [&'a str],
    env: Vec<(&'a str, String)>,
    addr: SocketAddr,
    ready_path: &'a str,
    log: PathBuf,
}

impl<'a> Launch<'a> {
    /// `program`, which will answer on `addr`; ready when `/readyz` answers 200. Logs
    /// to `reftrack-NAME.log` in the temporary folder unless [`Launch::log`] says where.
    pub fn new(name: &'a str, program: &'a Path, addr: SocketAddr) -> Self {
        Self {
            name,
            program,
            args: &[],
            env: Vec::new(),
            addr,
            ready_path: "/readyz",
            log: std::env::temp_dir().join(format!("reftrack-{name}.log")),
        }
    }

    pub fn args(mut self, args: &'a [&'a str]) -> Self {
        self.args = args;
        self
    }

    pub fn env(mut self, env: impl IntoIterator<Item = (&'a str, String)>) -> Self {
        self.env.extend(env);
        self
    }

    pub fn ready_path(mut self, path: &'a str) -> Self {
        self.ready_path = path;
        self
    }

    pub fn log(mut self, log: PathBuf) -> Self {
        self.log = log;
        self
    }

    /// Starts the process and waits until it is ready (60 s at most).
    pub fn start(self) -> anyhow::Result<Process> {
        let log = std::fs::File::create(&self.log)
            .with_context(|| format!("create {}", self.log.display()))?;
        let child = Command::new(self.program)
            .args(self.args)
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("start {}", self.program.display()))?;
        let mut process = Process {
            addr: self.addr,
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !http_ok(self.addr, self.ready_path) {
            if let Some(status) = process.child.try_wait()? {
                bail!(
                    "{} exited with {status} (log: {})",
                    self.name,
                    self.log.display()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{} not ready within 60s (log: {})",
                    self.name,
                    self.log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(process)
    }
}

impl Process {
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
