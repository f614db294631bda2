//! The Kafka sink end to end against independent software on loopback: tansu 0.6.0, an Apache
//! Kafka-compatible broker (built once per machine by ./dev/test into a cache outside the
//! clone), storing in SQLite; and librdkafka (PyPI confluent-kafka, in a venv ./dev/test makes)
//! reading the topics back. Broker outages are a SIGKILL and a restart on the same database.

use crate::agent::Agent;
use crate::http_sink::{connections, lanes, outage_length, peak_rss_kib, wait_until};
use crate::http_spool::{at_ms, now_ms};
use crate::shells::is_incident_for;
use crate::util::{Running, ScratchDir, bash_reverse_shell, prerequisites, prove_round_trip, run};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const PYTHON: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/target/test-tools/kafka-venv/bin/python3");
const READER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/kafka_read.py");
const TOPICS: [&str; 3] = ["sockwatch-alert", "sockwatch-event", "sockwatch-state"];

/// Where ./dev/test installs tansu: a cache later runs on the machine reuse.
fn tansu_binary() -> PathBuf {
    let cache = std::env::var_os("SOCKWATCH_TOOL_CACHE")
        .map_or_else(|| PathBuf::from("/var/cache/sockwatch-test"), PathBuf::from);
    cache.join("tansu-0.6.0/bin/tansu")
}

fn kafka_tools() -> bool {
    crate::util::unpacked_tool(PYTHON)
        && crate::util::unpacked_tool(tansu_binary().to_str().expect("a UTF-8 path"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A tansu broker on 127.0.0.1, its data in `dir`.
struct Tansu {
    dir: PathBuf,
    port: u16,
    /// The port clients are told to use: the broker's own, or a TLS front's.
    advertised: u16,
    /// Whether clients must log in (SASL SCRAM).
    authentication: bool,
    /// What librdkafka needs to reach it as clients do (TLS, SASL), as a JSON object.
    client: Value,
    process: Option<Running>,
}

impl Tansu {
    fn start(dir: &Path) -> Tansu {
        let port = free_port();
        let mut broker = Tansu {
            dir: dir.to_path_buf(),
            port,
            advertised: port,
            authentication: false,
            client: serde_json::json!({}),
            process: None,
        };
        broker.restart();
        broker
    }

    fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.advertised)
    }

    /// Starts the broker on its port and database; ready once it answers a metadata request.
    fn restart(&mut self) {
        let listener = format!("tcp://127.0.0.1:{}", self.port);
        let advertised = format!("tcp://{}", self.bootstrap());
        let mut command = Command::new(tansu_binary());
        command
            .current_dir(&self.dir)
            .args(["broker", "--listener-url", &listener, "--advertised-listener-url", &advertised])
            // Relative to the working directory: tansu joins it to the URL's path.
            .args(["--storage-engine", "sqlite://broker.db"])
            .stdout(std::fs::File::create(self.dir.join("broker.log")).unwrap());
        if self.authentication {
            command.arg("--authentication");
        }
        self.process = Some(Running::spawn(command));
        let probe = format!(
            "import json\nfrom confluent_kafka.admin import AdminClient\n\
             AdminClient({{**json.loads({:?}), 'bootstrap.servers': '{}'}}).list_topics(timeout=2)",
            self.client.to_string(),
            self.bootstrap()
        );
        wait_until("the broker answering metadata", Duration::from_secs(30), || {
            Command::new(PYTHON).args(["-c", &probe]).output().is_ok_and(|o| o.status.success())
        });
        // tansu 0.6.0's SQLite schema has no index on record headers, and a fetch looks up each
        // record's headers: a read costs records read × records stored (30 s for 6,000 records
        // here, minutes for a drained outage). The broker's own schema, indexed once it made it.
        let index = "import sqlite3; c = sqlite3.connect('broker.db', timeout=30); \
                     c.execute('create index if not exists header_record on header (topition, offset_id)'); \
                     c.commit()";
        run(Command::new("python3").current_dir(&self.dir).args(["-c", index]));
    }

    /// kill -9: no goodbye to the clients.
    fn kill(&mut self) {
        drop(self.process.take());
    }

    /// Topics and users are made through the broker's own port, before it asks for logins
    /// (tansu's command line does not log in).
    fn create_topic(&self, topic: &str, partitions: u32) {
        let output = Command::new(tansu_binary())
            .args(["topic", "create", "--broker", &format!("tcp://127.0.0.1:{}", self.port)])
            .args(["--partitions", &partitions.to_string(), topic])
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    }

    fn create_user(&self, name: &str, password: &str, mechanism: &str) {
        let output = Command::new(tansu_binary())
            .args(["user", "create", "--broker", &format!("tcp://127.0.0.1:{}", self.port)])
            .args(["--mechanism", mechanism, name, password])
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    }

    /// Every record of `topics`, read from the beginning.
    fn read(&self, topics: &[&str]) -> Vec<Value> {
        self.try_read(topics).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Every record of `topics`, or why the reader could not reach the end (a broker busy
    /// storing a drained backlog can be slow to serve it).
    fn try_read(&self, topics: &[&str]) -> Result<Vec<Value>, String> {
        let client = self.client.to_string();
        let output = Command::new(PYTHON)
            .args([READER, "--client", &client, &self.bootstrap()])
            .args(topics)
            .output();
        let output = output.unwrap();
        if !output.status.success() {
            return Err(String::from_utf8_lossy(&output.stderr).into_owned());
        }
        let records: Vec<Value> = String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let errors: Vec<&Value> = records.iter().filter(|r| r.get("error").is_some()).collect();
        match errors.is_empty() {
            true => Ok(records),
            false => Err(format!("{errors:?}")),
        }
    }

    /// Which partition librdkafka's murmur2 partitioner gives `key` in `topic`.
    fn partition_of(&self, topic: &str, key: &str) -> u64 {
        let output = Command::new(PYTHON)
            .args([READER, "--client", &self.client.to_string(), "--partition-of"])
            .args([&self.bootstrap(), topic, key])
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let answer: Value = serde_json::from_slice(&output.stdout).unwrap();
        answer["partition"].as_u64().unwrap()
    }
}

/// Ids of the records read, with how many times each arrived.
fn ids(records: &[Value]) -> HashMap<String, usize> {
    let mut ids = HashMap::new();
    for record in records {
        *ids.entry(record["headers"]["event.id"].as_str().unwrap().to_string()).or_default() += 1;
    }
    ids
}

/// A config with stdout, a file sink (the record of what was generated) and a Kafka sink.
fn config(dir: &Path, broker: &Tansu, extra: &str) -> String {
    let path = dir.join("sockwatch.toml");
    let body = format!(
        "[[sinks]]\ntype = \"stdout\"\n\n[[sinks]]\ntype = \"file\"\npath = \"{}\"\n\n\
         [[sinks]]\ntype = \"kafka\"\nbootstrap_servers = [\"{}\"]\ntopic = \"sockwatch-{{kind}}\"\n\
         batch_max_wait = \"200ms\"\n{extra}\n",
        dir.join("events.ndjson").display(),
        broker.bootstrap(),
    );
    std::fs::write(&path, body).unwrap();
    path.display().to_string()
}

fn broker_with_topics(dir: &Path) -> Tansu {
    let broker = Tansu::start(dir);
    for topic in TOPICS {
        broker.create_topic(topic, 3);
    }
    broker
}

#[test]
fn an_alert_is_read_back_from_its_topic_keyed_by_host_in_the_keys_partition() {
    if !prerequisites(&["python3", "bash"]) || !kafka_tools() {
        return;
    }
    let dir = ScratchDir::new("kafka");
    let broker = broker_with_topics(&dir.path);
    broker.create_topic("probe", 3);
    let agent = Agent::start(&["--config", &config(&dir.path, &broker, "compression = \"zstd\"")]);
    let (mut shell, mut peer, port) = bash_reverse_shell();
    prove_round_trip(&mut peer);
    let opened = agent.wait_for("incident_opened", |e| {
        e["event"]["action"] == "incident_opened" && is_incident_for(e, port)
    });
    let id = opened["event"]["id"].as_str().unwrap().to_string();
    let mut found = None;
    wait_until("the alert in its topic", Duration::from_secs(20), || {
        found = broker
            .read(&["sockwatch-alert"])
            .into_iter()
            .find(|r| r["headers"]["event.id"] == id.as_str());
        found.is_some()
    });
    let record = found.unwrap();
    assert_eq!(record["value"], opened, "the record's value is the event, whole");
    let host = opened["host"]["id"].as_str().unwrap();
    assert_eq!(record["key"], host, "{record}");
    assert_eq!(record["headers"]["event.action"], "incident_opened");
    // The partition a Java or librdkafka producer would choose for the key: one host's events
    // stay in order in one partition, whoever else produces for it.
    assert_eq!(record["partition"].as_u64(), Some(broker.partition_of("probe", host)));

    let _ = shell.child().kill();
    drop(peer);
    let (status, events, tally) = agent.stop();
    assert!(status.success());
    let kafka: Vec<(String, Value)> =
        lanes(&tally).into_iter().filter(|(n, _)| n.starts_with("kafka:")).collect();
    assert_eq!(kafka.len(), 2, "{tally}");
    for (name, lane) in &kafka {
        assert_eq!(lane["generated"], lane["delivered"], "{name}: {lane}");
    }
    // Each kind in its topic; everything the agent printed is there, once.
    let records = broker.read(&TOPICS);
    for record in &records {
        let kind = record["value"]["event"]["kind"].as_str().unwrap();
        assert_eq!(record["topic"], format!("sockwatch-{kind}"), "{record}");
        assert_eq!(record["key"], host);
    }
    let arrived = ids(&records);
    for event in &events {
        let id = event["event"]["id"].as_str().unwrap();
        assert_eq!(arrived.get(id), Some(&1), "{event}");
    }
}

/// The events a file sink wrote (whole lines only: a kill -9 can cut the last).
fn written(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

#[test]
fn a_broker_outage_with_a_kill_9_of_the_agent_loses_nothing_the_spool_took() {
    if !prerequisites(&["python3"]) || !kafka_tools() {
        return;
    }
    let dir = ScratchDir::new("kafka-outage");
    let mut broker = broker_with_topics(&dir.path);
    let spool = dir.path.join("spool");
    let settings = format!(
        "compression = \"lz4\"\nspool = {{ dir = \"{}\", fsync_interval = \"1s\" }}",
        spool.display()
    );
    let config = config(&dir.path, &broker, &settings);
    let events_file = dir.path.join("events.ndjson");
    let first = Agent::start(&["--config", &config]);
    connections(3);
    wait_until("the first events in the topic", Duration::from_secs(20), || {
        !broker.read(&["sockwatch-event"]).is_empty()
    });
    // The outage: ≥ 100 events/s, connections opened and closed across scans.
    let broker_down_at = now_ms();
    broker.kill();
    let outage = outage_length();
    let started = Instant::now();
    while started.elapsed() < outage / 2 {
        connections(60);
    }
    // kill -9 of the agent: what it wrote more than the spool's fsync window (1 s) plus a
    // routing step before is on disk and must arrive.
    let killed_at = now_ms();
    drop(first);
    let second = Agent::start(&["--config", &config]);
    while started.elapsed() < outage {
        connections(60);
    }
    let peak_rss_kib = peak_rss_kib(second.pid());
    broker.restart();
    let durable: Vec<Value> =
        written(&events_file).into_iter().filter(|e| at_ms(e) + 2000 < killed_at).collect();
    let spooled = durable.iter().filter(|e| at_ms(e) > broker_down_at + 1000).count();
    assert!(
        spooled as f64 >= 100.0 * (outage / 2).as_secs_f64() * 0.9,
        "{spooled} events between the broker's kill and the agent's: fewer than 100/s"
    );
    // Each lane comes back after its current backoff (at most 60 s) and drains its backlog.
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut unread = String::new();
    loop {
        // What the agent printed before the read: the reader's own connections make events
        // too, which a read cannot contain.
        let printed = second.events();
        let arrived = match broker.try_read(&TOPICS) {
            Ok(records) => ids(&records),
            Err(why) => {
                unread = why;
                HashMap::new()
            }
        };
        let missing: Vec<&Value> = durable
            .iter()
            .chain(printed.iter())
            .filter(|e| !arrived.contains_key(e["event"]["id"].as_str().unwrap()))
            .collect();
        if missing.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            let first: Vec<&Value> = missing.iter().take(3).map(|e| &e["event"]).collect();
            let (_, _, stderr) = second.stop_with_stderr();
            let tail: Vec<&str> = stderr.lines().rev().take(20).collect();
            panic!(
                "{} events not in the topics within 180 s ({} records there; last failed read: \
                 {unread}); first: {first:?}; the agent said, last first: {tail:#?}",
                missing.len(),
                arrived.len()
            );
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let (status, events_second, tally) = second.stop();
    assert!(status.success());
    let arrived = ids(&broker.read(&TOPICS));
    let lost: Vec<&Value> = durable
        .iter()
        .chain(events_second.iter())
        .filter(|e| !arrived.contains_key(e["event"]["id"].as_str().unwrap()))
        .collect();
    assert!(lost.is_empty(), "{} events lost: {:?}", lost.len(), &lost[..lost.len().min(5)]);
    let duplicates = arrived.values().filter(|n| **n > 1).count();
    assert!(duplicates <= 500, "{duplicates} duplicates: more than one batch");
    crate::http_spool::spool_gave_back(&tally, "kafka:", spooled);
    // The second agent said what the outage cost it once the broker was back.
    let recovered = events_second
        .iter()
        .find(|e| {
            e["event"]["action"] == "sink_recovered"
                && e["sockwatch"]["sink"].as_str().is_some_and(|s| s.ends_with("#telemetry"))
        })
        .expect("sink_recovered for the telemetry lane");
    assert!(recovered["sockwatch"]["failed_attempts"].as_u64() >= Some(1), "{recovered}");
    assert!(peak_rss_kib < 128 * 1024, "peak RSS {peak_rss_kib} KiB during the outage");
}

const PASSWORD: &str = "correct-horse-battery-staple";

/// TLS in front of the broker: socat terminating it (tansu 0.6.0 takes `--cert` but serves
/// plain TCP), with the test's server certificate; asking for a client certificate signed by
/// the test's CA when `client_certificates`.
struct TlsFront {
    _process: Running,
}

impl TlsFront {
    fn start(dir: &Path, port: u16, upstream: u16, client_certificates: bool) -> TlsFront {
        let p = |name: &str| dir.join(name).display().to_string();
        let listen = format!(
            "OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,cert={},key={},cafile={},verify={}",
            p("server.pem"),
            p("server.key"),
            p("ca.pem"),
            u8::from(client_certificates)
        );
        let mut command = Command::new("socat");
        command.args([listen, format!("TCP:127.0.0.1:{upstream}")]);
        // Its refusals (the tests' unverified clients) are expected; kept for a failure's reader.
        command.stderr(std::fs::File::create(dir.join("socat.log")).unwrap());
        let process = Running::spawn(command);
        wait_until("the TLS front listening", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        TlsFront { _process: process }
    }
}

/// A broker whose clients log in with SCRAM (users `sockwatch`, SHA-512, and `sockwatch256`,
/// SHA-256, both with `PASSWORD`) through a TLS front on the port it advertises.
fn secure_broker(dir: &Path) -> (Tansu, TlsFront) {
    let mut broker = broker_with_topics(dir);
    broker.create_user("sockwatch", PASSWORD, "scram512");
    broker.create_user("sockwatch256", PASSWORD, "scram256");
    broker.kill();
    broker.advertised = free_port();
    broker.authentication = true;
    let p = |name: &str| dir.join(name).display().to_string();
    broker.client = serde_json::json!({
        "security.protocol": "SASL_SSL",
        "ssl.ca.location": p("ca.pem"),
        "ssl.certificate.location": p("client.pem"),
        "ssl.key.location": p("client.key"),
        "sasl.mechanisms": "SCRAM-SHA-512",
        "sasl.username": "sockwatch",
        "sasl.password": PASSWORD,
    });
    let front = TlsFront::start(dir, broker.advertised, broker.port, false);
    broker.restart();
    (broker, front)
}

/// Runs the agent with the Kafka sink's `settings` over a few connections: every event it
/// printed is in the topics, and its Kafka lanes delivered all they made.
fn delivers(dir: &Path, broker: &Tansu, settings: &str) {
    let agent = Agent::start(&["--config", &config(dir, broker, settings)]);
    connections(2);
    let (status, events, tally) = agent.stop();
    assert!(status.success());
    for (name, lane) in lanes(&tally).into_iter().filter(|(n, _)| n.starts_with("kafka:")) {
        assert_eq!(lane["generated"], lane["delivered"], "{settings}: {name}: {lane}");
    }
    let arrived = ids(&broker.read(&TOPICS));
    for event in &events {
        assert!(arrived.contains_key(event["event"]["id"].as_str().unwrap()), "{event}");
    }
}

/// Runs the agent with `settings` for 3 s: nothing is delivered, nothing is dropped as
/// refused (the events wait, as in an outage), and the lanes retried saying why. Returns the
/// retry reasons, and everything the agent wrote.
fn delivers_nothing(dir: &Path, broker: &Tansu, settings: &str) -> (Vec<String>, String) {
    let config = config(dir, broker, settings);
    let started = Instant::now();
    let (stdout, stderr) =
        crate::http_sink::run_until(dir, &config, || started.elapsed() > Duration::from_secs(3));
    let tally: Value = serde_json::from_str(stderr.lines().last().unwrap()).unwrap();
    for (name, lane) in lanes(&tally).into_iter().filter(|(n, _)| n.starts_with("kafka:")) {
        assert_eq!(lane["delivered"], 0, "{settings}: {name}: {lane}");
        assert_eq!(lane["dropped_rejected"], 0, "{settings}: {name}: {lane}");
    }
    let reasons = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["sockwatch"] == "sink_retrying")
        .map(|l| l["reason"].as_str().unwrap().to_string())
        .collect();
    (reasons, format!("{stdout}{stderr}"))
}

#[test]
fn over_tls_with_a_scram_login_events_arrive_and_a_wrong_password_or_ca_delivers_nothing() {
    if !prerequisites(&["python3", "openssl", "socat"]) || !kafka_tools() {
        return;
    }
    let dir = ScratchDir::new("kafka-tls");
    crate::http_tls::make_certificates(&dir.path);
    let (broker, front) = secure_broker(&dir.path);
    let p = |name: &str| dir.path.join(name).display().to_string();
    crate::util::write_secret(&dir.path.join("password"), &format!("{PASSWORD}\n"));
    crate::util::write_secret(&dir.path.join("wrong"), "wrong-password-xyz\n");
    let login = |mechanism: &str, user: &str, file: &str| {
        format!(
            "sasl = {{ mechanism = \"{mechanism}\", username = \"{user}\", password_file = \"{}\" }}",
            p(file)
        )
    };
    let trusted = format!("tls = {{ ca_file = \"{}\" }}", p("ca.pem"));

    // The test's CA and the right password, with either SCRAM: delivered.
    delivers(
        &dir.path,
        &broker,
        &format!("{trusted}\n{}", login("SCRAM-SHA-512", "sockwatch", "password")),
    );
    let sha256 = login("SCRAM-SHA-256", "sockwatch256", "password");
    delivers(&dir.path, &broker, &format!("{trusted}\n{sha256}"));

    // A wrong password: refused at login, retried (the events wait, as in an outage, for a
    // password fixed by a reload); no password, right or wrong, in any output.
    let wrong = login("SCRAM-SHA-512", "sockwatch", "wrong");
    let (reasons, output) = delivers_nothing(&dir.path, &broker, &format!("{trusted}\n{wrong}"));
    assert!(reasons.iter().any(|r| r.contains("Sasl")), "{reasons:?}");
    assert!(!output.contains(PASSWORD) && !output.contains("wrong-password-xyz"));

    // The system's trust store does not know the test's CA: no TLS session, nothing sent.
    let untrusted = format!("tls = {{}}\n{}", login("SCRAM-SHA-512", "sockwatch", "password"));
    let (reasons, _) = delivers_nothing(&dir.path, &broker, &untrusted);
    assert!(reasons.iter().any(|r| r.contains("certificate")), "{reasons:?}");

    // Mutual TLS: a front that asks for a client certificate takes the agent's, and refuses
    // an agent without one.
    drop(front);
    let _front = TlsFront::start(&dir.path, broker.advertised, broker.port, true);
    let password = login("SCRAM-SHA-512", "sockwatch", "password");
    let mutual = format!(
        "tls = {{ ca_file = \"{}\", client_cert_file = \"{}\", client_key_file = \"{}\" }}\n{password}",
        p("ca.pem"),
        p("client.pem"),
        p("client.key")
    );
    delivers(&dir.path, &broker, &mutual);
    let (reasons, _) = delivers_nothing(&dir.path, &broker, &format!("{trusted}\n{password}"));
    assert!(!reasons.is_empty());
}
