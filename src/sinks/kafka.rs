//! `type = "kafka"`: events produced to a Kafka topic by the pure-Rust `rskafka` client, on the
//! network sinks' runtime.
//!
//! Delivery is a network lane's (`sinks/lane.rs`): two lanes, batching, retries with backoff
//! through broker outages, a halved batch when the broker finds it too large, the spool and the
//! accounting identity. Every record carries the event's id as a header, so a consumer can drop
//! the duplicates at-least-once delivery may bring (a produce that timed out after the broker
//! stored it is sent again).
//!
//! rskafka asks for `acks = all` on every produce and has no partitioner: records are placed by
//! Kafka's own default partitioner (murmur2 of the key), so one host's events stay ordered in one
//! partition, the one a Java or librdkafka producer would pick for the same key.

use super::lane::{LaneSettings, NetLane, Transport};
use super::{Lane, MinSeverity, SinkContext, SinkError, SinkStats, SpoolConfig};
use crate::event::{Encoded, EventKind};
use crate::model::{Bounded, Interval};
use rskafka::client::error::{Error as KafkaError, ProtocolError};
use rskafka::client::partition::{Compression as RecordCompression, PartitionClient};
use rskafka::client::{
    Client, ClientBuilder, Credentials, SaslConfig, partition::UnknownTopicHandling,
};
use rskafka::record::Record;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use super::http::Verdict;

/// `[[sinks]] type = "kafka"`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    /// Brokers to learn the cluster from (`HOST:PORT`).
    pub bootstrap_servers: Vec<String>,
    /// The topic; `{kind}` is replaced by the event's kind (`event`, `state`, `alert`).
    pub topic: String,
    /// Dotted path of the event field whose value keys its record (default: the agent's
    /// `host.id`, so one host's events stay ordered in one partition).
    pub key_field: Option<String>,
    /// `none` (default), `gzip`, `lz4`, `snappy` or `zstd`.
    #[serde(default)]
    pub compression: KafkaCompression,
    /// Acknowledgement asked of the broker: `all`, the only one at-least-once delivery admits.
    pub acks: Option<Acks>,
    /// Most events in one produce request (default 500).
    pub batch_max_events: Option<Bounded<1, 100_000>>,
    /// Most bytes of one request's events before compression (default 1,000,000, under a
    /// broker's default `message.max.bytes`; a batch the broker finds too large is halved).
    pub batch_max_bytes: Option<Bounded<1024, 104_857_600>>,
    /// Longest a telemetry event waits for its batch to fill (default 1s). Alerts never wait.
    pub batch_max_wait: Option<Interval>,
    /// Longest one attempt may take, connecting and finding the partition leaders included
    /// (default 10s); then the lane's own backoff applies.
    pub timeout: Option<Interval>,
    /// At shutdown, how long undelivered events may still be retried (default 5s).
    pub shutdown_grace: Option<Interval>,
    /// A write-ahead disk spool.
    pub spool: Option<SpoolConfig>,
    /// Event kinds this sink takes (all when absent).
    pub kinds: Option<Vec<EventKind>>,
    /// Lowest `event.severity` taken (all when absent).
    pub min_severity: Option<MinSeverity>,
    /// `ecs` (default) or `ocsf`.
    #[serde(default)]
    pub schema: super::Schema,
    /// TLS to the brokers: `tls = {}` for the system's CAs, or the HTTP sink's keys (`ca_file`,
    /// `client_cert_file`, `client_key_file`, `insecure_skip_verify`).
    pub tls: Option<super::http::TlsSettings>,
    /// SASL authentication to the brokers.
    pub sasl: Option<SaslSettings>,
}

/// `sasl = { … }`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaslSettings {
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub mechanism: SaslMechanism,
    /// The user the agent logs in as.
    pub username: String,
    /// File holding its password (never inline: config files get copied around).
    pub password_file: std::path::PathBuf,
}

/// `mechanism = …`, as Kafka spells them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum SaslMechanism {
    #[serde(rename = "PLAIN")]
    Plain,
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

/// What connecting to the cluster needs: the bootstrap servers, and what the settings' files
/// say for TLS and SASL.
struct Connection {
    servers: Vec<String>,
    tls: Option<Arc<rustls::ClientConfig>>,
    sasl: Option<SaslConfig>,
}

/// `compression = …`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KafkaCompression {
    #[default]
    None,
    Gzip,
    Lz4,
    Snappy,
    Zstd,
}

/// `acks = …`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Acks {
    All,
}

const DEFAULT_MAX_EVENTS: usize = 500;
const DEFAULT_MAX_BYTES: usize = 1_000_000;
const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(1);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How long rskafka retries inside one attempt.
const CLIENT_RETRIES: Duration = Duration::from_secs(2);
/// What a record adds to a request beyond the event: key, headers, framing.
const RECORD_OVERHEAD: usize = 120;

impl KafkaSinkConfig {
    /// The name counters and errors use, and what the spool directory is named after.
    pub fn name(&self) -> String {
        format!("kafka:{}/{}", self.bootstrap_servers.join(","), self.topic)
    }

    /// Checks the settings and reads the password and TLS files, without connecting: what
    /// opening the sink would refuse (`config check` stops here).
    pub fn check(&self) -> Result<(), String> {
        self.prepare().map(drop)
    }

    fn prepare(&self) -> Result<Connection, String> {
        self.check_names()?;
        let tls = self.tls.as_ref().map(super::tls::client_config).transpose()?;
        let sasl = match &self.sasl {
            None => None,
            Some(sasl) => {
                let password = super::http::Secret::read(&sasl.password_file)
                    .map_err(|e| format!("sasl.password_file: {e}"))?;
                let credentials =
                    Credentials::new(sasl.username.clone(), password.expose().to_string());
                Some(match sasl.mechanism {
                    SaslMechanism::Plain => SaslConfig::Plain(credentials),
                    SaslMechanism::ScramSha256 => SaslConfig::ScramSha256(credentials),
                    SaslMechanism::ScramSha512 => SaslConfig::ScramSha512(credentials),
                })
            }
        };
        Ok(Connection { servers: self.bootstrap_servers.clone(), tls, sasl })
    }

    fn check_names(&self) -> Result<(), String> {
        if self.bootstrap_servers.is_empty() {
            return Err("bootstrap_servers: at least one HOST:PORT".into());
        }
        for server in &self.bootstrap_servers {
            let port = server.rsplit_once(':').map(|(host, port)| (host, port.parse::<u16>()));
            if !matches!(port, Some((host, Ok(_))) if !host.is_empty()) {
                return Err(format!("bootstrap_servers: {server:?} is not HOST:PORT"));
            }
        }
        for kind in [EventKind::Event, EventKind::State, EventKind::Alert] {
            topic_name(&self.topic, kind).map_err(|e| format!("topic: {e}"))?;
        }
        if let Some(path) = &self.key_field
            && path.split('.').any(str::is_empty)
        {
            return Err(format!("key_field: {path:?} is not a dotted field path"));
        }
        Ok(())
    }

    fn batching(&self, lane: Lane) -> (usize, Duration) {
        let max = self.batch_max_events.map_or(DEFAULT_MAX_EVENTS, |b| b.0);
        super::lane::batching(lane, max, self.batch_max_wait.map_or(DEFAULT_MAX_WAIT, |i| i.0))
    }
}

/// The topic of an event kind: the template with `{kind}` replaced, checked against Kafka's
/// rules for topic names.
fn topic_name(template: &str, kind: EventKind) -> Result<String, String> {
    let kind = match kind {
        EventKind::Event => "event",
        EventKind::State => "state",
        EventKind::Alert => "alert",
    };
    let name = template.replace("{kind}", kind);
    if name.contains(['{', '}']) {
        return Err(format!("{template:?}: the only placeholder is {{kind}}"));
    }
    let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.is_empty()
        || name.len() > 249
        || !name.chars().all(legal)
        || name == "."
        || name == ".."
    {
        return Err(format!(
            "{name:?} is not a Kafka topic name (1 to 249 of a-z, A-Z, 0-9, '.', '_', '-')"
        ));
    }
    Ok(name)
}

/// Opens one lane of a Kafka sink. Nothing is sent yet: a cluster that is down at start is an
/// outage like any other.
pub fn open(
    config: &KafkaSinkConfig,
    lane: Lane,
    context: SinkContext,
    stats: Arc<SinkStats>,
) -> Result<NetLane<Producer>, SinkError> {
    let name = format!("{}#{}", config.name(), format!("{lane:?}").to_lowercase());
    let config_error = |message| SinkError::Config { sink: name.clone(), message };
    let connection = config.prepare().map_err(config_error)?;
    if config.tls.as_ref().is_some_and(|t| t.insecure_skip_verify) {
        super::net::warn_insecure(&name, lane);
    }
    if config.tls.is_none()
        && config.sasl.as_ref().is_some_and(|s| s.mechanism == SaslMechanism::Plain)
    {
        // PLAIN sends the password itself: without TLS, to whoever is on the path.
        let message = "sasl PLAIN without tls: the password crosses the network in clear";
        super::net::warn(&name, lane, message);
    }
    let runtime = super::net::runtime().map_err(config_error)?;
    let topics = [EventKind::Event, EventKind::State, EventKind::Alert]
        .into_iter()
        .map(|kind| Ok((kind, topic_name(&config.topic, kind)?)))
        .collect::<Result<_, String>>()
        .map_err(config_error)?;
    let producer = Producer {
        topics,
        key_field: config.key_field.as_ref().map(|p| p.split('.').map(String::from).collect()),
        host_id: context.host_id.clone().into_bytes(),
        compression: match config.compression {
            KafkaCompression::None => RecordCompression::NoCompression,
            KafkaCompression::Gzip => RecordCompression::Gzip,
            KafkaCompression::Lz4 => RecordCompression::Lz4,
            KafkaCompression::Snappy => RecordCompression::Snappy,
            KafkaCompression::Zstd => RecordCompression::Zstd,
        },
        timeout: config.timeout.map_or(DEFAULT_TIMEOUT, |i| i.0),
        connection,
        runtime,
        cluster: None,
    };
    let settings = LaneSettings {
        max_bytes: config.batch_max_bytes.map_or(DEFAULT_MAX_BYTES, |b| b.0),
        grace: config.shutdown_grace.map_or(DEFAULT_SHUTDOWN_GRACE, |i| i.0),
        batching: config.batching(lane),
        spooled: config.spool.is_some(),
    };
    Ok(NetLane::new(name, producer, settings, context, stats))
}

/// How a Kafka lane hands a batch over: one produce request per partition it touches.
pub struct Producer {
    topics: HashMap<EventKind, String>,
    key_field: Option<Vec<String>>,
    host_id: Vec<u8>,
    compression: RecordCompression,
    timeout: Duration,
    connection: Connection,
    runtime: &'static tokio::runtime::Runtime,
    /// What is known of the cluster; dropped after a failure, so that the next attempt starts
    /// from the bootstrap servers (a restarted broker, a new leader).
    cluster: Option<Cluster>,
}

struct Cluster {
    client: Client,
    /// Partitions of each topic used so far.
    partitions: HashMap<String, Vec<i32>>,
    leaders: HashMap<(String, i32), Arc<PartitionClient>>,
}

/// Why one attempt failed, and what to do about it.
struct Failure {
    verdict: Verdict,
    /// Whether what is known of the cluster may be stale.
    forget: bool,
}

impl Producer {
    /// The key of an event's record.
    fn key(&self, event: &Encoded) -> Option<Vec<u8>> {
        let Some(path) = &self.key_field else { return Some(self.host_id.clone()) };
        let value: serde_json::Value = serde_json::from_slice(&event.line).ok()?;
        let field = path.iter().try_fold(&value, |v, step| v.get(step))?;
        match field {
            serde_json::Value::String(s) => Some(s.clone().into_bytes()),
            serde_json::Value::Null => None,
            other => Some(other.to_string().into_bytes()),
        }
    }

    fn record(&self, event: &Encoded) -> Record {
        let mut headers = BTreeMap::new();
        headers.insert("event.id".to_string(), event.id.clone().into_bytes());
        headers.insert("event.action".to_string(), event.action.as_bytes().to_vec());
        let timestamp = rskafka::chrono::DateTime::from_timestamp_millis(event.at_ms as i64)
            .unwrap_or_default();
        let line = event.line.strip_suffix(b"\n").unwrap_or(&event.line);
        Record { key: self.key(event), value: Some(line.to_vec()), headers, timestamp }
    }

    /// Produces `records` (grouped by partition, in order within each) and says how each group
    /// ended.
    async fn produce(
        cluster: &mut Option<Cluster>,
        connection: &Connection,
        backoff_deadline: Duration,
        compression: RecordCompression,
        groups: Vec<((String, i32), Vec<Record>)>,
    ) -> Vec<Result<(), Failure>> {
        let mut outcomes = Vec::with_capacity(groups.len());
        for ((topic, partition), records) in groups {
            let outcome = async {
                let cluster = Self::cluster(cluster, connection, backoff_deadline).await?;
                let leader = cluster.leader(&topic, partition).await?;
                leader.produce(records, compression).await.map(drop).map_err(failure)
            };
            outcomes.push(outcome.await);
        }
        outcomes
    }

    async fn cluster<'a>(
        cluster: &'a mut Option<Cluster>,
        connection: &Connection,
        backoff_deadline: Duration,
    ) -> Result<&'a mut Cluster, Failure> {
        if cluster.is_none() {
            let backoff = rskafka::BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(1),
                base: 2.0,
                // rskafka's default retries for ever; the lane retries, spools and reports.
                deadline: Some(backoff_deadline),
            };
            let mut builder = ClientBuilder::new(connection.servers.clone())
                .client_id(concat!("sockwatch/", env!("CARGO_PKG_VERSION")))
                .backoff_config(backoff);
            if let Some(tls) = &connection.tls {
                builder = builder.tls_config(tls.clone());
            }
            if let Some(sasl) = &connection.sasl {
                builder = builder.sasl_config(sasl.clone());
            }
            let client = builder.build().await.map_err(failure)?;
            *cluster =
                Some(Cluster { client, partitions: HashMap::new(), leaders: HashMap::new() });
        }
        Ok(cluster.as_mut().expect("set above"))
    }

    /// Where each event goes: (topic, partition), from its key, in order.
    async fn placements(
        cluster: &mut Cluster,
        wanted: &[(String, Option<&[u8]>, &str)],
    ) -> Result<Vec<(String, i32)>, Failure> {
        let mut placed = Vec::with_capacity(wanted.len());
        for (topic, key, id) in wanted {
            let partitions = cluster.partitions_of(topic).await?;
            // Without a key the event's id spreads them.
            let hashed = murmur2(key.unwrap_or(id.as_bytes())) & 0x7fff_ffff;
            placed.push((topic.clone(), partitions[hashed as usize % partitions.len()]));
        }
        Ok(placed)
    }
}

impl Cluster {
    async fn partitions_of(&mut self, topic: &str) -> Result<&[i32], Failure> {
        if !self.partitions.contains_key(topic) {
            let topics = self.client.list_topics().await.map_err(failure)?;
            for t in topics {
                self.partitions.insert(t.name, t.partitions.into_iter().collect());
            }
        }
        if self.partitions.get(topic).is_some_and(|p| !p.is_empty()) {
            return Ok(&self.partitions[topic]);
        }
        // Topics are the cluster administrator's: events wait (and spool) until it exists.
        self.partitions.remove(topic);
        Err(Failure {
            verdict: Verdict::Retry {
                after: None,
                reason: format!("topic {topic:?} does not exist"),
            },
            forget: false,
        })
    }

    async fn leader(
        &mut self,
        topic: &str,
        partition: i32,
    ) -> Result<Arc<PartitionClient>, Failure> {
        let key = (topic.to_string(), partition);
        if let Some(leader) = self.leaders.get(&key) {
            return Ok(leader.clone());
        }
        let leader = self
            .client
            .partition_client(topic, partition, UnknownTopicHandling::Retry)
            .await
            .map_err(failure)?;
        let leader = Arc::new(leader);
        self.leaders.insert(key, leader.clone());
        Ok(leader)
    }
}

/// What an rskafka error means for the events: resending cannot fix a record or topic the
/// broker refuses, or a refused authorization (counted as rejected, like an HTTP 4xx); a batch
/// too large is halved; anything else (a broker away, a leader moving, a timeout) is retried.
fn failure(error: KafkaError) -> Failure {
    let reason = super::net::causes(String::new(), &error);
    let protocol = match &error {
        KafkaError::ServerError { protocol_error, .. } => Some(*protocol_error),
        _ => None,
    };
    let verdict = match protocol {
        Some(ProtocolError::MessageTooLarge | ProtocolError::RecordListTooLarge) => Verdict::Split,
        Some(
            ProtocolError::CorruptMessage
            | ProtocolError::InvalidRecord
            | ProtocolError::InvalidTopicException
            | ProtocolError::UnsupportedCompressionType
            | ProtocolError::TopicAuthorizationFailed
            | ProtocolError::ClusterAuthorizationFailed,
        ) => Verdict::Reject { reason },
        _ => Verdict::Retry { after: None, reason },
    };
    let forget = matches!(verdict, Verdict::Retry { .. });
    Failure { verdict, forget }
}

impl Transport for Producer {
    fn cost(&self, event: &Encoded) -> usize {
        event.line.len() + RECORD_OVERHEAD
    }

    fn send(&mut self, events: &[Arc<Encoded>]) -> Vec<Verdict> {
        let records: Vec<Record> = events.iter().map(|e| self.record(e)).collect();
        let wanted: Vec<(String, Option<&[u8]>, &str)> = events
            .iter()
            .zip(&records)
            .map(|(e, r)| (self.topics[&e.kind].clone(), r.key.as_deref(), e.id.as_str()))
            .collect();
        let (connection, compression) = (&self.connection, self.compression);
        // rskafka's own retries (a refused connection, a leader moving) stop well before the
        // attempt's timeout, so that an outage shows as failed attempts and the lane's backoff.
        let retries = self.timeout.min(CLIENT_RETRIES);
        let cluster = &mut self.cluster;
        let attempt = async {
            let placed = {
                let known = Producer::cluster(cluster, connection, retries).await?;
                Producer::placements(known, &wanted).await?
            };
            // Groups in the order of their first event; each keeps its events' order.
            let mut groups: Vec<((String, i32), Vec<usize>)> = Vec::new();
            for (i, place) in placed.into_iter().enumerate() {
                match groups.iter_mut().find(|(p, _)| *p == place) {
                    Some((_, members)) => members.push(i),
                    None => groups.push((place, vec![i])),
                }
            }
            let batches = groups
                .iter()
                .map(|(place, members)| {
                    (place.clone(), members.iter().map(|&i| records[i].clone()).collect())
                })
                .collect();
            let outcomes =
                Producer::produce(cluster, connection, retries, compression, batches).await;
            Ok::<_, Failure>(groups.into_iter().map(|(_, m)| m).zip(outcomes).collect::<Vec<_>>())
        };
        let outcome = self.runtime.block_on(async {
            match tokio::time::timeout(self.timeout, attempt).await {
                Ok(outcome) => outcome,
                Err(_) => Err(Failure {
                    verdict: Verdict::Retry { after: None, reason: "timed out".into() },
                    forget: true,
                }),
            }
        });
        let mut verdicts = vec![Verdict::Delivered; events.len()];
        let mut forget = false;
        match outcome {
            Err(failure) => {
                forget = failure.forget;
                verdicts.fill(failure.verdict);
            }
            Ok(groups) => {
                for (members, outcome) in groups {
                    if let Err(failure) = outcome {
                        forget |= failure.forget;
                        for i in members {
                            verdicts[i] = failure.verdict.clone();
                        }
                    }
                }
            }
        }
        if forget {
            self.cluster = None;
        }
        verdicts
    }
}

/// Kafka's default partitioner hash (murmur2 as the Java client computes it, seed 0x9747b28c),
/// so that a key lands in the partition any other Kafka producer would choose.
fn murmur2(data: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    let mut h: u32 = 0x9747_b28c ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes(chunk.try_into().expect("four bytes"));
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M) ^ k;
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        for (i, byte) in tail.iter().enumerate() {
            h ^= u32::from(*byte) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^ (h >> 15)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_is_the_java_clients() {
        // Kafka's own test vectors (clients/src/test/java/org/apache/kafka/common/utils/UtilsTest).
        for (key, hash) in [
            ("21", -973932308),
            ("foobar", -790332482),
            ("a-little-bit-long-string", -985981536),
            ("a-little-bit-longer-string", -1486304829),
            ("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
            ("abc", 479470107),
        ] {
            assert_eq!(murmur2(key.as_bytes()) as i32, hash, "{key}");
        }
    }

    #[test]
    fn topics_are_checked_for_every_kind() {
        assert_eq!(
            topic_name("sockwatch-{kind}", EventKind::Alert).as_deref(),
            Ok("sockwatch-alert")
        );
        assert_eq!(topic_name("events", EventKind::State).as_deref(), Ok("events"));
        for bad in ["", "a b", "{host}", "..", &"x".repeat(250)] {
            assert!(topic_name(bad, EventKind::Event).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn settings_are_checked_without_connecting() {
        let config = |extra: &str| -> Result<(), String> {
            let text = format!("bootstrap_servers = [\"127.0.0.1:9092\"]\ntopic = \"t\"\n{extra}");
            toml::from_str::<KafkaSinkConfig>(&text).map_err(|e| e.to_string())?.check()
        };
        assert_eq!(config(""), Ok(()));
        assert_eq!(config("tls = {}"), Ok(()));
        assert_eq!(
            config("compression = \"zstd\"\nacks = \"all\"\nkey_field = \"host.name\""),
            Ok(())
        );
        for (extra, error) in [
            ("acks = \"1\"", "unknown variant"),
            ("compression = \"brotli\"", "unknown variant"),
            ("key_field = \"host..id\"", "not a dotted field path"),
            ("sasl = {}", "missing field `mechanism`"),
            (
                "sasl = { mechanism = \"GSSAPI\", username = \"u\", password_file = \"/p\" }",
                "unknown variant `GSSAPI`",
            ),
            (
                "sasl = { mechanism = \"PLAIN\", username = \"u\", password_file = \"/nonexistent\" }",
                "sasl.password_file: cannot read secret file /nonexistent",
            ),
            ("tls = { ca_file = \"/nonexistent\" }", "tls.ca_file: cannot read /nonexistent"),
            ("tls = { verify = false }", "unknown field `verify`"),
        ] {
            let verdict = config(extra);
            assert!(verdict.as_ref().is_err_and(|e| e.contains(error)), "{extra}: {verdict:?}");
        }
        let servers =
            toml::from_str::<KafkaSinkConfig>("bootstrap_servers = [\"broker\"]\ntopic = \"t\"");
        assert!(servers.unwrap().check().unwrap_err().contains("HOST:PORT"));
    }

    #[test]
    fn refused_records_are_rejected_oversized_batches_halved_and_the_rest_retried() {
        let server = |protocol_error| KafkaError::ServerError {
            protocol_error,
            error_message: None,
            request: rskafka::client::error::RequestContext::Topic("t".into()),
            response: None,
            is_virtual: false,
        };
        assert_eq!(failure(server(ProtocolError::MessageTooLarge)).verdict, Verdict::Split);
        assert!(matches!(
            failure(server(ProtocolError::TopicAuthorizationFailed)).verdict,
            Verdict::Reject { .. }
        ));
        let moved = failure(server(ProtocolError::NotLeaderOrFollower));
        assert!(matches!(moved.verdict, Verdict::Retry { .. }) && moved.forget);
        assert!(matches!(failure(KafkaError::Timeout).verdict, Verdict::Retry { .. }));
    }
}
