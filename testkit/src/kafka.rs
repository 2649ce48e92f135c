//! Reading topics back, and a private broker that a test may stop and restart.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};

/// How long a broker may take to serve after it was started, on a busy machine.
const BROKER_START: Duration = Duration::from_secs(60);

/// One message read back from a topic.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
}

/// Reads every partition of `topic` from the beginning until `expected` messages arrived,
/// then keeps reading for `linger` to catch any extra (duplicates), or fails after `timeout`.
pub fn read_topic(
    brokers: &str,
    topic: &str,
    partitions: i32,
    expected: usize,
    timeout: Duration,
    linger: Duration,
) -> anyhow::Result<Vec<Record>> {
    let consumer: BaseConsumer = reftrack_events::kafka::client_config(brokers)
        .set("group.id", format!("reader-{}", uuid::Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .create()
        .context("create a reader")?;
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        assignment.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let deadline = Instant::now() + timeout;
    let mut records = Vec::new();
    let mut complete_at: Option<Instant> = None;
    // A broker that was just (re)started drops connections and answers "unknown topic"
    // for a while: such errors are transient, so reading goes on until the deadline.
    let mut last_error: Option<KafkaError> = None;
    loop {
        if let Some(done) = complete_at {
            if done.elapsed() >= linger {
                return Ok(records);
            }
        } else if Instant::now() > deadline {
            let last_error = last_error.map_or_else(String::new, |e| format!("; last error: {e}"));
            bail!(
                "read {} of {expected} messages from {topic} within {timeout:?}{last_error}",
                records.len()
            );
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                records.push(Record {
                    partition: message.partition(),
                    offset: message.offset(),
                    key: message.key().unwrap_or_default().to_vec(),
                    payload: message.payload().unwrap_or_default().to_vec(),
                });
                if records.len() >= expected && complete_at.is_none() {
                    complete_at = Some(Instant::now());
                }
            }
            Some(Err(error)) => {
                tracing::debug!("reading {topic}: {error}; reading on");
                last_error = Some(error);
                std::thread::sleep(Duration::from_millis(100));
            }
            None => {}
        }
    }
}

/// [`read_topic`] for async tests, on a blocking thread.
pub async fn read_topic_async(
    brokers: &str,
    topic: &str,
    partitions: i32,
    expected: usize,
    timeout: Duration,
    linger: Duration,
) -> anyhow::Result<Vec<Record>> {
    let (brokers, topic) = (brokers.to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || {
        read_topic(&brokers, &topic, partitions, expected, timeout, linger)
    })
    .await?
}

/// A tansu broker of the test's own, on a free port, killed with SIGKILL by
/// [`PrivateBroker::stop`] and started again by [`PrivateBroker::start`].
///
/// On memory storage ([`PrivateBroker::launch`]) it comes back without topics or records,
/// which the services must cope with. On sqlite storage ([`PrivateBroker::launch_durable`],
/// like the local stack's broker) it keeps them; its clients must then not be idempotent
/// producers (tansu 0.6 panics on their writes after its restart, "more or less than one
/// row", and then fails every request).
pub struct PrivateBroker {
    pub port: u16,
    dir: PathBuf,
    storage: &'static str,
    child: Option<Child>,
}

impl PrivateBroker {
    /// A broker on memory storage: a restart loses everything.
    pub fn launch() -> anyhow::Result<Self> {
        Self::launch_on("memory://tansu/")
    }

    /// A broker on sqlite storage (in its own folder): a restart keeps topics and records.
    pub fn launch_durable() -> anyhow::Result<Self> {
        Self::launch_on("sqlite://tansu.db")
    }

    /// Starts the broker on a free port. The port is free when chosen but may be taken
    /// before tansu binds it, so a broker that exits at once is tried on another port.
    fn launch_on(storage: &'static str) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("reftrack-tansu-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir)?;
        let mut broker = Self {
            port: 0,
            dir,
            storage,
            child: None,
        };
        let mut attempts = 0;
        loop {
            broker.port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            match broker.start() {
                Ok(()) => return Ok(broker),
                Err(error) if attempts < 3 && broker.exited() => {
                    attempts += 1;
                    tracing::debug!("{error:#}; trying another port");
                }
                Err(error) => return Err(error),
            }
        }
    }

    fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_some())
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn start(&mut self) -> anyhow::Result<()> {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let child = Command::new(tansu_binary())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", self.storage])
            .current_dir(&self.dir)
            .stdout(Stdio::null())
            .stderr(self.log_file()?)
            .spawn()
            .context("start tansu (is it installed? scripts/stack deps installs it)")?;
        self.child = Some(child);
        self.wait_until_serving()
    }

    /// tansu's own log, appended to across restarts, shown when a test fails.
    fn log_file(&self) -> anyhow::Result<std::fs::File> {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("tansu.log"))
            .context("open the broker's log")
    }

    /// The end of tansu's log, to say why a broker stopped serving.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("tansu.log")).unwrap_or_default();
        let start = log.len().saturating_sub(4_000);
        let start = (start..log.len())
            .find(|i| log.is_char_boundary(*i))
            .unwrap_or(0);
        log[start..].to_string()
    }

    /// Until the broker answers a metadata request: listening alone is not serving.
    fn wait_until_serving(&mut self) -> anyhow::Result<()> {
        let client: BaseConsumer = reftrack_events::kafka::client_config(&self.brokers())
            .create()
            .context("create a metadata client")?;
        let deadline = Instant::now() + BROKER_START;
        loop {
            if self.exited() {
                bail!("tansu on port {} exited at start", self.port);
            }
            match client.fetch_metadata(None, Duration::from_secs(2)) {
                Ok(_) => return Ok(()),
                Err(error) if Instant::now() > deadline => bail!(
                    "tansu on port {} not serving within {BROKER_START:?}: {error}",
                    self.port
                ),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// Kills the broker (SIGKILL, like a crash) and waits until its port is closed.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- tansu on port {} ---\n{}", self.port, self.log_tail());
        }
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn tansu_binary() -> PathBuf {
    if let Ok(path) = std::env::var("TANSU_BIN") {
        return path.into();
    }
    let cargo_home = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cargo")
        });
    let installed = cargo_home.join("bin/tansu");
    if installed.exists() {
        installed
    } else {
        "tansu".into()
    }
}

/// The partition tests send a code's events to: all of one code's events in one
/// partition, as ingest's keyed producer puts them.
pub fn partition_of(code: &str, partitions: i32) -> i32 {
    (code
        .bytes()
        .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)))
        % partitions as u32) as i32
}
