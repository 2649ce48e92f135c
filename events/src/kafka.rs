//! Kafka client settings shared by producers and consumers, and explicit topic creation
//! (reftrack never relies on broker-side auto-creation).

use std::time::Duration;

use anyhow::{Context, bail};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

#[derive(Debug, Clone, clap::Args)]
pub struct KafkaConfig {
    /// Kafka bootstrap servers, comma separated.
    #[arg(
        id = "kafka_brokers",
        long = "kafka-brokers",
        env = "KAFKA_BROKERS",
        default_value = "127.0.0.1:9092"
    )]
    pub brokers: String,

    /// Topic for referral-link clicks.
    #[arg(
        id = "kafka_clicks_topic",
        long = "kafka-clicks-topic",
        env = "KAFKA_CLICKS_TOPIC",
        default_value = "clicks"
    )]
    pub clicks_topic: String,

    /// Topic for signups, purchases and refunds.
    #[arg(
        id = "kafka_conversions_topic",
        long = "kafka-conversions-topic",
        env = "KAFKA_CONVERSIONS_TOPIC",
        default_value = "conversions"
    )]
    pub conversions_topic: String,

    /// Partitions of each topic when reftrack creates it.
    #[arg(id = "kafka_topic_partitions", long = "kafka-topic-partitions", env = "KAFKA_TOPIC_PARTITIONS", default_value_t = 6, value_parser = clap::value_parser!(i32).range(1..=1024))]
    pub partitions: i32,

    /// Producer batch compression: none, lz4 or snappy (the codecs built into the bundled
    /// librdkafka; zstd and gzip would need system libraries it is built without).
    #[arg(id = "kafka_compression", long = "kafka-compression", env = "KAFKA_COMPRESSION", default_value = "lz4", value_parser = COMPRESSIONS)]
    pub compression: String,

    /// Replication factor of each topic when reftrack creates it.
    #[arg(id = "kafka_replication_factor", long = "kafka-replication-factor", env = "KAFKA_REPLICATION_FACTOR", default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..=16))]
    pub replication_factor: i32,

    /// Idempotent producers (no duplicates or reordering from retries). The local stack
    /// turns it off: tansu 0.6's durable (sqlite) storage panics on an idempotent
    /// producer's writes after its own restart; the aggregator drops the copies retries
    /// may then write.
    #[arg(id = "kafka_idempotence", long = "kafka-idempotence", env = "KAFKA_IDEMPOTENCE", default_value_t = true, action = clap::ArgAction::Set)]
    pub idempotence: bool,

    /// How to reach the brokers: plaintext, ssl, sasl_plaintext or sasl_ssl.
    #[arg(id = "kafka_security_protocol", long = "kafka-security-protocol", env = "KAFKA_SECURITY_PROTOCOL", default_value = "plaintext", value_parser = ["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"])]
    pub security_protocol: String,

    /// The SASL mechanism, with a sasl_ protocol: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
    #[arg(id = "kafka_sasl_mechanism", long = "kafka-sasl-mechanism", env = "KAFKA_SASL_MECHANISM", default_value = "SCRAM-SHA-512", value_parser = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])]
    pub sasl_mechanism: String,

    #[arg(
        id = "kafka_sasl_username",
        long = "kafka-sasl-username",
        env = "KAFKA_SASL_USERNAME"
    )]
    pub sasl_username: Option<String>,

    #[arg(id = "kafka_sasl_password", long = "kafka-sasl-password", env = "KAFKA_SASL_PASSWORD", value_parser = reftrack_common::config::parse_secret)]
    pub sasl_password: Option<secrecy::SecretString>,

    /// A CA certificate file (PEM) the brokers' certificates are checked against, besides
    /// the system's.
    #[arg(
        id = "kafka_ssl_ca_location",
        long = "kafka-ssl-ca-location",
        env = "KAFKA_SSL_CA_LOCATION"
    )]
    pub ssl_ca_location: Option<std::path::PathBuf>,
}

/// Settings every client shares.
pub fn client_config(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        // Loopback stacks and single-broker dev setups: resolve quickly, reconnect fast.
        .set("reconnect.backoff.ms", "100")
        .set("reconnect.backoff.max.ms", "2000")
        .set("socket.keepalive.enable", "true");
    config
}

impl KafkaConfig {
    /// A client of the configured brokers, over TLS and with SASL when configured.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = client_config(&self.brokers);
        config.set("security.protocol", &self.security_protocol);
        if self.security_protocol.starts_with("sasl_") {
            config.set("sasl.mechanism", &self.sasl_mechanism);
            if let Some(user) = &self.sasl_username {
                config.set("sasl.username", user);
            }
            if let Some(password) = &self.sasl_password {
                config.set("sasl.password", reftrack_common::config::reveal(password));
            }
        }
        if let Some(ca) = &self.ssl_ca_location {
            config.set("ssl.ca.location", ca.to_string_lossy());
        }
        config
    }

    /// SASL needs its credentials (checked at start-up, naming the variable).
    pub fn validate(&self) -> Result<(), reftrack_common::config::ConfigError> {
        use reftrack_common::config::ConfigError;
        if self.security_protocol.starts_with("sasl_") {
            if self.sasl_username.is_none() {
                return Err(ConfigError::new(
                    "KAFKA_SASL_USERNAME",
                    format!(
                        "must be set with KAFKA_SECURITY_PROTOCOL={}",
                        self.security_protocol
                    ),
                ));
            }
            if self.sasl_password.is_none() {
                return Err(ConfigError::new(
                    "KAFKA_SASL_PASSWORD",
                    format!(
                        "must be set with KAFKA_SECURITY_PROTOCOL={}",
                        self.security_protocol
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// A producer that neither loses nor duplicates on retry: idempotent, `acks=all`,
/// compressed batches. Callers add their own queue and timeout limits.
/// Header on a click ingest sends again from its spill: the broker may already hold it
/// (a delivery that timed out may still have been written), so the aggregator checks
/// the stores for it rather than only the clicks it remembers.
pub const RESENT_HEADER: &str = "reftrack-resent";

/// The producer compressions this build supports (checked by a test against librdkafka).
pub const COMPRESSIONS: [&str; 3] = ["none", "lz4", "snappy"];

pub fn producer_config(kafka: &KafkaConfig) -> ClientConfig {
    let mut config = kafka.client_config();
    config
        .set("enable.idempotence", kafka.idempotence.to_string())
        .set("acks", "all")
        .set("compression.type", &kafka.compression)
        .set("linger.ms", "5");
    config
}

/// Whether a produce error means the broker no longer knows the producer's idempotent
/// identity. A broker that came back empty answers so (tansu 0.6 with `ProducerFenced`)
/// and that producer instance never gets over it: a new producer, with a new identity,
/// must take over. The broker rejected these writes, so re-sending them adds nothing twice.
pub fn producer_identity_lost(error: &KafkaError) -> bool {
    use RDKafkaErrorCode::{
        InvalidProducerEpoch, InvalidProducerIdMapping, OutOfOrderSequenceNumber, ProducerFenced,
        UnknownProducerId,
    };
    matches!(
        error,
        KafkaError::MessageProduction(
            ProducerFenced
                | InvalidProducerEpoch
                | UnknownProducerId
                | OutOfOrderSequenceNumber
                | InvalidProducerIdMapping
        )
    )
}

/// Creates `topics` with the configured partition count when they are missing, and
/// checks that each exists afterwards. Idempotent: existing topics are left alone.
pub async fn ensure_topics(config: &KafkaConfig, topics: &[&str]) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = config
        .client_config()
        .create()
        .context("create Kafka admin client")?;
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|name| {
            NewTopic::new(
                name,
                config.partitions,
                TopicReplication::Fixed(config.replication_factor),
            )
        })
        .collect();
    let options = AdminOptions::new()
        .request_timeout(Some(Duration::from_secs(10)))
        .operation_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics(&new_topics, &options)
        .await
        .with_context(|| format!("create Kafka topics {topics:?} on {}", config.brokers))?;
    for result in results {
        match result {
            Ok(name) => {
                tracing::info!(topic = %name, partitions = config.partitions, "created Kafka topic");
            }
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => bail!("create Kafka topic {name}: {code}"),
        }
    }
    for topic in topics {
        let partitions = partition_count(&admin, topic)?;
        if partitions == 0 {
            bail!("Kafka topic {topic} has no partitions after creation");
        }
    }
    Ok(())
}

/// How many partitions `topic` has, according to the broker's metadata.
pub fn partition_count<C: rdkafka::client::ClientContext>(
    client: &AdminClient<C>,
    topic: &str,
) -> anyhow::Result<usize> {
    let metadata = client
        .inner()
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .with_context(|| format!("fetch metadata of Kafka topic {topic}"))?;
    Ok(metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map_or(0, |t| t.partitions().len()))
}

/// A light client for readiness probes: asks the broker for its metadata.
#[derive(Clone)]
pub struct BrokerProbe {
    admin: std::sync::Arc<AdminClient<DefaultClientContext>>,
}

impl BrokerProbe {
    pub fn new(kafka: &KafkaConfig) -> anyhow::Result<Self> {
        let admin = kafka
            .client_config()
            .create()
            .context("create Kafka probe client")?;
        Ok(Self {
            admin: std::sync::Arc::new(admin),
        })
    }

    /// The readiness probe: [`BrokerProbe::check`].
    pub fn probe(
        &self,
    ) -> impl Fn() -> futures::future::BoxFuture<'static, Result<(), String>> + Send + Sync + 'static
    {
        let probe = self.clone();
        move || {
            let probe = probe.clone();
            Box::pin(async move { probe.check().await })
        }
    }

    /// Whether the broker answers a metadata request within a second.
    pub async fn check(&self) -> Result<(), String> {
        let admin = self.admin.clone();
        tokio::task::spawn_blocking(move || {
            admin
                .inner()
                .fetch_metadata(None, Duration::from_secs(1))
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// Which of `topics` the broker does not have (or has without partitions): a broker
    /// restarted on memory storage, or a topic deleted by hand, comes back without them.
    pub async fn missing_topics(&self, topics: &[String]) -> Result<Vec<String>, String> {
        let admin = self.admin.clone();
        let topics = topics.to_vec();
        tokio::task::spawn_blocking(move || {
            let metadata = admin
                .inner()
                .fetch_metadata(None, Duration::from_secs(1))
                .map_err(|e| e.to_string())?;
            let present = |name: &str| {
                metadata
                    .topics()
                    .iter()
                    .any(|t| t.name() == name && !t.partitions().is_empty())
            };
            Ok(topics.into_iter().filter(|t| !present(t)).collect())
        })
        .await
        .map_err(|e| e.to_string())?
    }
}

#[cfg(test)]
mod compression_tests {
    use rdkafka::producer::BaseProducer;

    use super::*;

    fn producer_with(compression: &str) -> Result<BaseProducer, String> {
        let mut config = client_config("127.0.0.1:1");
        config.set("compression.type", compression);
        config.create::<BaseProducer>().map_err(|e| e.to_string())
    }

    #[test]
    fn every_accepted_compression_is_built_in_and_the_others_are_not() {
        for codec in COMPRESSIONS {
            assert!(
                producer_with(codec).is_ok(),
                "{codec}: {:?}",
                producer_with(codec).err()
            );
        }
        for codec in ["zstd", "gzip"] {
            assert!(
                producer_with(codec).is_err(),
                "{codec} became available: accept it"
            );
        }
    }
}

#[cfg(test)]
mod security_tests {
    use clap::Parser;
    use rdkafka::producer::BaseProducer;

    use super::*;

    #[derive(Parser)]
    struct Args {
        #[command(flatten)]
        kafka: KafkaConfig,
    }

    fn kafka(args: &[&str]) -> KafkaConfig {
        Args::try_parse_from(std::iter::once("x").chain(args.iter().copied()))
            .unwrap()
            .kafka
    }

    #[test]
    fn tls_and_sasl_settings_reach_librdkafka() {
        for protocol in ["ssl", "sasl_ssl", "sasl_plaintext"] {
            for mechanism in ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] {
                let config = kafka(&[
                    "--kafka-security-protocol",
                    protocol,
                    "--kafka-sasl-mechanism",
                    mechanism,
                    "--kafka-sasl-username",
                    "reftrack",
                    "--kafka-sasl-password",
                    "s3cret",
                ]);
                assert!(config.validate().is_ok());
                let producer = config.client_config().create::<BaseProducer>();
                assert!(
                    producer.is_ok(),
                    "{protocol} {mechanism}: {:?}",
                    producer.err()
                );
            }
        }
    }

    #[test]
    fn sasl_without_credentials_is_refused_naming_the_variable() {
        let err = kafka(&["--kafka-security-protocol", "sasl_ssl"])
            .validate()
            .unwrap_err();
        assert_eq!(err.var, "KAFKA_SASL_USERNAME");
        assert!(kafka(&[]).validate().is_ok(), "plaintext needs nothing");
    }
}
