//! The HTTP sink end to end: the real agent POSTing to a real receiver on loopback
//! (tests/fixtures/receiver.py) that can be told to fail in the ways SIEMs fail. Every test
//! checks the accounting identity per lane and that what the agent generated arrived, by
//! `event.id`.

use crate::agent::Agent;
use crate::util::{Running, ScratchDir, prerequisites};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const RECEIVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/receiver.py");

pub(crate) struct Receiver {
    _process: Running,
    pub(crate) port: u16,
}

impl Receiver {
    pub(crate) fn start(port: u16) -> Receiver {
        Receiver::start_with("python3", port)
    }

    /// The receiver run by `python` (a venv's, for the OTLP decoding it imports).
    pub(crate) fn start_with(python: &str, port: u16) -> Receiver {
        let mut command = Command::new(python);
        command.arg(RECEIVER).arg(port.to_string());
        let (process, line) = Running::spawn_with_line(command);
        let facts: Value = serde_json::from_str(&line).expect("receiver prints its port");
        Receiver { _process: process, port: facts["port"].as_u64().unwrap() as u16 }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}/ingest", self.port)
    }

    pub(crate) fn control(&self, settings: Value) {
        client()
            .post(format!("http://127.0.0.1:{}/_control", self.port))
            .header("Content-Type", "application/json")
            .body(settings.to_string())
            .send()
            .and_then(|answer| answer.error_for_status())
            .expect("control the receiver");
    }

    pub(crate) fn requests(&self) -> Vec<Value> {
        let text = client()
            .get(format!("http://127.0.0.1:{}/_requests", self.port))
            .send()
            .and_then(|answer| answer.text())
            .expect("read the receiver's log");
        serde_json::from_str(&text).expect("requests as JSON")
    }

    /// Ids of the events in requests answered 2xx, with how often each arrived.
    pub(crate) fn accepted_ids(&self) -> HashMap<String, usize> {
        let mut ids = HashMap::new();
        for request in self.requests() {
            if (200..300).contains(&request["status"].as_u64().unwrap()) {
                for event in request["events"].as_array().unwrap() {
                    *ids.entry(event["event"]["id"].as_str().unwrap().to_string()).or_default() +=
                        1;
                }
            }
        }
        ids
    }
}

/// The tests' own HTTP client. The crate builds rustls with *ring* only, so a process picks it.
pub(crate) fn client() -> reqwest::blocking::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::blocking::Client::new()
}

/// A config with stdout (what the test reads) and one HTTP sink with `http` extra settings.
pub(crate) fn config(dir: &Path, url: &str, http: &str) -> String {
    sink_config(dir, &format!("type = \"http\"\nurl = \"{url}\"\n{http}"))
}

/// A config with stdout and one sink of `settings`, batching telemetry for at most 200 ms.
pub(crate) fn sink_config(dir: &Path, settings: &str) -> String {
    let path = dir.join("sockwatch.toml");
    let body = format!(
        "[[sinks]]\ntype = \"stdout\"\n\n[[sinks]]\nbatch_max_wait = \"200ms\"\n{settings}\n"
    );
    std::fs::write(&path, body).unwrap();
    path.display().to_string()
}

/// Opens `n` loopback connections, holds them across a scan, closes them: 2n+ socket events.
pub(crate) fn connections(n: usize) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let held: Vec<_> = (0..n)
        .map(|_| {
            let client = std::net::TcpStream::connect(address).unwrap();
            let (server, _) = listener.accept().unwrap();
            (client, server)
        })
        .collect();
    std::thread::sleep(Duration::from_millis(600));
    drop(held);
    std::thread::sleep(Duration::from_millis(600));
}

/// Each lane's final counters from the agent's exit line, checked against the identity.
pub(crate) fn lanes(tally: &Value) -> HashMap<String, Value> {
    let mut lanes = HashMap::new();
    for sink in tally["sinks"].as_array().expect("sink counters") {
        let n = |k: &str| sink[k].as_u64().unwrap();
        assert_eq!(
            n("generated"),
            n("delivered")
                + n("dropped_queue_full")
                + n("dropped_spool_full")
                + n("dropped_write_error")
                + n("dropped_rejected")
                + n("queued"),
            "accounting identity: {sink}"
        );
        lanes.insert(sink["sink"].as_str().unwrap().to_string(), sink.clone());
    }
    lanes
}

pub(crate) fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what}: not within {limit:?}");
}

/// Every event the agent printed on stdout (after `agent_started`, which the HTTP sink may see
/// too) arrived exactly once.
fn all_arrived_once(events: &[Value], receiver: &Receiver) {
    let accepted = receiver.accepted_ids();
    let mut missing = Vec::new();
    for event in events {
        let id = event["event"]["id"].as_str().unwrap();
        match accepted.get(id) {
            Some(1) => {}
            Some(n) => panic!("event {id} arrived {n} times"),
            None => missing.push(event["event"]["action"].clone()),
        }
    }
    assert!(missing.is_empty(), "{} events never arrived: {missing:?}", missing.len());
}

#[test]
fn ndjson_batches_arrive_gzipped_in_order_and_are_counted() {
    if !prerequisites(&["python3"]) {
        return;
    }
    let dir = ScratchDir::new("http-ndjson");
    let receiver = Receiver::start(0);
    let agent = Agent::start(&["--config", &config(&dir.path, &receiver.url(), "")]);
    connections(20);
    let (status, events, tally) = agent.stop();
    assert!(status.success());
    all_arrived_once(&events, &receiver);

    let requests = receiver.requests();
    for request in &requests {
        assert_eq!(request["headers"]["content-encoding"], "gzip");
        assert_eq!(request["headers"]["content-type"], "application/x-ndjson");
        assert_eq!(request["body_ends_with_newline"], true);
        assert!(request["headers"]["user-agent"].as_str().unwrap().starts_with("sockwatch/"));
    }
    // Telemetry is batched (many socket events per request), in order within its lane.
    let sequences: Vec<u64> = requests
        .iter()
        .flat_map(|r| r["events"].as_array().unwrap().clone())
        .filter(|e| e["event"]["kind"] != "alert")
        .map(|e| e["event"]["sequence"].as_u64().unwrap())
        .collect();
    assert!(sequences.windows(2).all(|w| w[0] < w[1]), "telemetry out of order: {sequences:?}");
    assert!(
        sequences.len() > requests.len(),
        "{} events in {} requests",
        sequences.len(),
        requests.len()
    );

    let lanes = lanes(&tally);
    let telemetry = &lanes[&format!("http:{}#telemetry", receiver.url())];
    assert_eq!(telemetry["delivered"].as_u64().unwrap() as usize, sequences.len());
    assert!(lanes.contains_key(&format!("http:{}#alerts", receiver.url())));
}

#[test]
fn retries_honour_retry_after_and_lose_nothing() {
    if !prerequisites(&["python3"]) {
        return;
    }
    let dir = ScratchDir::new("http-retry");
    let receiver = Receiver::start(0);
    receiver.control(json!({"plan": [
        {"status": 503}, {"status": 500}, {"status": 429, "retry_after": 3}, {"status": 408}
    ]}));
    let agent = Agent::start(&["--config", &config(&dir.path, &receiver.url(), "")]);
    connections(5);
    wait_until("the planned failures are used up", Duration::from_secs(30), || {
        receiver.requests().iter().filter(|r| r["status"] == 200).count() > 0
    });
    let (status, events, tally) = agent.stop();
    assert!(status.success());
    all_arrived_once(&events, &receiver);

    let requests = receiver.requests();
    let after_429 = requests.iter().position(|r| r["status"] == 429).expect("a 429");
    // The agent sees the whole host: another test's shell can put an alert on the other lane
    // meanwhile. The Retry-After binds the lane that was told.
    let alerts =
        |r: &Value| r["events"].as_array().unwrap().iter().any(|e| e["event"]["kind"] == "alert");
    let lane = alerts(&requests[after_429]);
    let next = requests[after_429 + 1..].iter().find(|r| alerts(r) == lane).expect("a retry");
    let gap = next["at"].as_f64().unwrap() - requests[after_429]["at"].as_f64().unwrap();
    assert!(gap >= 2.9, "Retry-After: 3 honoured, next request after {gap:.2} s");
    for lane in lanes(&tally).values() {
        assert_eq!(lane["dropped_rejected"], 0);
        assert_eq!(lane["dropped_write_error"], 0);
    }
}

#[test]
fn a_413_splits_the_batch_and_a_400_drops_it_counted() {
    if !prerequisites(&["python3"]) {
        return;
    }
    let dir = ScratchDir::new("http-413");
    let receiver = Receiver::start(0);
    receiver.control(json!({"max_lines": 3}));
    // The baseline split three lines at a time is a hundred requests: on a loaded machine more
    // than the default 5 s of grace at the stop.
    let splitting = config(&dir.path, &receiver.url(), "shutdown_grace = \"60s\"");
    let agent = Agent::start(&["--config", &splitting]);
    connections(10);
    let (status, events, _) = agent.stop();
    assert!(status.success());
    all_arrived_once(&events, &receiver);
    let requests = receiver.requests();
    assert!(requests.iter().any(|r| r["status"] == 413), "some batch was too large");
    for accepted in requests.iter().filter(|r| r["status"] == 200) {
        assert!(accepted["events"].as_array().unwrap().len() <= 3);
    }

    let receiver = Receiver::start(0);
    receiver.control(json!({"reject": 400}));
    let agent = Agent::start(&["--config", &config(&dir.path, &receiver.url(), "")]);
    connections(5);
    let (status, _, tally) = agent.stop();
    assert!(status.success());
    let lanes = lanes(&tally);
    let telemetry = &lanes[&format!("http:{}#telemetry", receiver.url())];
    assert!(telemetry["dropped_rejected"].as_u64().unwrap() > 0, "{telemetry}");
    assert_eq!(telemetry["delivered"], 0);
    // Dropped, not retried: each event was sent once. (Alerts, from whatever else runs on the
    // host meanwhile, were refused in their own lane.)
    let requests = receiver.requests();
    let sent: usize = requests.iter().map(|r| r["events"].as_array().unwrap().len()).sum();
    let rejected: u64 = lanes.values().map(|l| l["dropped_rejected"].as_u64().unwrap()).sum();
    assert_eq!(sent as u64, rejected);
}

#[test]
fn splunk_hec_envelopes_with_the_token_from_a_file_never_logged() {
    if !prerequisites(&["python3"]) {
        return;
    }
    let dir = ScratchDir::new("http-hec");
    let token = "3f1c2b9e-hec-token-never-logged";
    let token_file = dir.path.join("hec.token");
    crate::util::write_secret(&token_file, &format!("{token}\n"));
    let receiver = Receiver::start(0);
    receiver.control(json!({"hec_token": token}));
    let settings = format!(
        "format = \"splunk_hec\"\nauth = {{ type = \"splunk\", token_file = \"{}\" }}\n\
         splunk = {{ index = \"edr\", sourcetype = \"sockwatch:ecs\" }}",
        token_file.display()
    );
    let agent = Agent::start(&["--config", &config(&dir.path, &receiver.url(), &settings)]);
    connections(3);
    let (status, events, _) = agent.stop();
    assert!(status.success());
    all_arrived_once(&events, &receiver);
    let host = events[0]["host"]["name"].clone();
    for request in receiver.requests() {
        assert_eq!(request["status"], 200, "{request}");
        for envelope in request["envelopes"].as_array().unwrap() {
            assert_eq!(envelope["host"], host);
            assert_eq!(envelope["index"], "edr");
            assert_eq!(envelope["source"], "sockwatch");
            assert!(envelope["time"].as_f64().unwrap() > 1.7e9, "epoch seconds: {envelope}");
            assert_eq!(envelope["fields"]["event.kind"], envelope["event"]["event"]["kind"]);
        }
    }

    // A wrong token: refused (401, HEC code 3), dropped and said so, the token nowhere.
    let receiver = Receiver::start(0);
    receiver.control(json!({"hec_token": "another-token"}));
    let config = config(&dir.path, &receiver.url(), &settings);
    let (stdout, stderr) =
        run_until(&dir.path, &config, || receiver.requests().iter().any(|r| r["status"] == 401));
    assert!(stderr.contains("HEC code 3"), "the refusal is reported: {stderr}");
    for text in [&stdout, &stderr] {
        assert!(!text.contains(token) && !text.contains("another-token"), "a token leaked");
    }
    let tally: Value = serde_json::from_str(stderr.lines().last().unwrap()).unwrap();
    assert!(lanes(&tally).values().any(|l| l["dropped_rejected"].as_u64().unwrap() > 0));
}

/// Runs the agent on `config` until `done`, then stops it: (stdout, stderr).
pub(crate) fn run_until(dir: &Path, config: &str, done: impl FnMut() -> bool) -> (String, String) {
    let child = Command::new(env!("CARGO_BIN_EXE_sockwatch"))
        .args(["run", "--interval", "200ms", "--config", config, "--state-dir"])
        .arg(dir.join("state"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = crate::util::KillOnDrop::new(child);
    let pid = rustix::process::Pid::from_raw(child.child().id() as i32).unwrap();
    wait_until("the agent's work", Duration::from_secs(10), done);
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let output = child.take().wait_with_output().unwrap();
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn switching_tls_verification_off_is_warned_about_at_start() {
    if !prerequisites(&["python3"]) {
        return;
    }
    let dir = ScratchDir::new("http-insecure");
    let receiver = Receiver::start(0);
    let settings = "tls = { insecure_skip_verify = true }";
    let config = config(&dir.path, &receiver.url(), settings);
    let (_, stderr) = run_until(&dir.path, &config, || !receiver.requests().is_empty());
    let warnings: Vec<&str> =
        stderr.lines().filter(|l| l.contains("insecure_skip_verify")).collect();
    assert_eq!(warnings.len(), 2, "one warning per lane: {stderr}");
}

#[test]
fn an_alert_is_not_held_behind_stalled_telemetry() {
    if !prerequisites(&["python3", "bash"]) {
        return;
    }
    let dir = ScratchDir::new("http-lanes");
    let receiver = Receiver::start(0);
    receiver.control(json!({"stall_unless_alert": 8}));
    let agent =
        Agent::start(&["--config", &config(&dir.path, &receiver.url(), "timeout = \"20s\"")]);
    connections(3);
    // A reverse shell to a listener of the test's.
    let (mut shell, _peer, port) = crate::util::bash_reverse_shell();
    let opened = agent.wait_for("incident_opened", |e| {
        e["event"]["action"] == "incident_opened" && crate::shells::is_incident_for(e, port)
    });
    let id = opened["event"]["id"].as_str().unwrap().to_string();
    let seen = Instant::now();
    wait_until("the alert at the receiver", Duration::from_secs(5), || {
        receiver.accepted_ids().contains_key(&id)
    });
    assert!(seen.elapsed() < Duration::from_secs(5));
    let _ = shell.child().kill();
    // Telemetry was held meanwhile, not lost: it drains once the receiver answers again.
    receiver.control(json!({"stall_unless_alert": null}));
    let printed = agent.events();
    wait_until("the telemetry backlog delivered", Duration::from_secs(60), || {
        let accepted = receiver.accepted_ids();
        printed.iter().all(|e| accepted.contains_key(e["event"]["id"].as_str().unwrap()))
    });
    let (status, events, _) = agent.stop();
    assert!(status.success());
    all_arrived_once(&events, &receiver);
}

#[test]
fn an_outage_loses_nothing_and_duplicates_at_most_a_batch() {
    if !prerequisites(&["python3"]) {
        return;
    }
    let dir = ScratchDir::new("http-outage");
    outage_loses_nothing(&Receiver::start, |receiver| {
        (config(&dir.path, &receiver.url(), ""), format!("http:{}#telemetry", receiver.url()))
    });
}

/// A receiver down for `outage_length()` while the agent makes ≥ 100 events/s: nothing is lost,
/// at most a batch is duplicated, memory stays bounded, and the telemetry lane says what the
/// outage cost. `sink` gives the agent's config for a receiver, and its telemetry lane's name.
pub(crate) fn outage_loses_nothing(
    start: &dyn Fn(u16) -> Receiver,
    sink: impl Fn(&Receiver) -> (String, String),
) {
    let receiver = start(0);
    let port = receiver.port;
    let (config, telemetry) = sink(&receiver);
    let agent = Agent::start(&["--config", &config]);
    connections(3);
    wait_until("the first events delivered", Duration::from_secs(10), || {
        !receiver.accepted_ids().is_empty()
    });
    // The outage starts with refusals, so that nothing is accepted after `before` is read.
    receiver.control(json!({"reject": 503}));
    let before = receiver.accepted_ids();
    drop(receiver);
    // ≥ 100 events/s for the outage: connections opened and closed across scans.
    let outage = outage_length();
    let started = Instant::now();
    while started.elapsed() < outage {
        connections(60);
    }
    let peak_rss_kib = peak_rss_kib(agent.pid());
    let receiver = start(port);
    // Each lane comes back after its current backoff (at most 60 s) and drains its backlog.
    let printed = agent.events();
    wait_until("the backlog delivered", Duration::from_secs(150), || {
        let accepted = receiver.accepted_ids();
        printed.iter().all(|e| {
            let id = e["event"]["id"].as_str().unwrap();
            accepted.contains_key(id) || before.contains_key(id)
        })
    });
    let (status, events, tally) = agent.stop();
    assert!(status.success());
    let during = events.iter().filter(|e| e["event"]["kind"] == "event").count();
    assert!(
        during as f64 / outage.as_secs_f64() >= 100.0,
        "{during} events in {outage:?}: fewer than 100/s"
    );
    // Zero loss: every event is at one receiver or the other; duplicates at most one batch.
    let mut arrived = receiver.accepted_ids();
    for (id, n) in before {
        *arrived.entry(id).or_default() += n;
    }
    let missing: Vec<_> = events
        .iter()
        .filter(|e| !arrived.contains_key(e["event"]["id"].as_str().unwrap()))
        .map(|e| e["event"]["action"].clone())
        .collect();
    assert!(missing.is_empty(), "{} events lost: {missing:?}", missing.len());
    let duplicates = arrived.values().filter(|n| **n > 1).count();
    assert!(duplicates <= 500, "{duplicates} duplicates: more than one batch");
    let lanes = lanes(&tally);
    for lane in lanes.values() {
        for dropped in ["dropped_queue_full", "dropped_write_error", "dropped_rejected"] {
            assert_eq!(lane[dropped], 0, "{lane}");
        }
        assert_eq!(lane["queued"], 0, "{lane}");
    }
    // Each lane said what the outage cost it, once it could deliver again.
    let recovered: Vec<&Value> =
        events.iter().filter(|e| e["event"]["action"] == "sink_recovered").collect();
    let telemetry_recovery = recovered
        .iter()
        .find(|e| e["sockwatch"]["sink"] == telemetry)
        .unwrap_or_else(|| panic!("no sink_recovered for telemetry: {recovered:?}"));
    let cost = &telemetry_recovery["sockwatch"];
    assert!(cost["duration_ms"].as_u64().unwrap() + 1000 >= outage.as_millis() as u64, "{cost}");
    assert!(cost["failed_attempts"].as_u64().unwrap() >= 1, "{cost}");
    assert!(cost["backlog"].as_u64().unwrap() >= 100 * outage.as_secs(), "{cost}");
    assert_eq!(cost["dropped"], 0, "{cost}");
    // The backlog lives in bounded queues: memory stays near the agent's usual size.
    assert!(peak_rss_kib < 128 * 1024, "peak RSS {peak_rss_kib} KiB during the outage");
}

/// How long receivers stay down in outage tests: 60 s, or `SOCKWATCH_OUTAGE_SECONDS`.
pub(crate) fn outage_length() -> Duration {
    let seconds = std::env::var("SOCKWATCH_OUTAGE_SECONDS").ok().and_then(|s| s.parse().ok());
    Duration::from_secs(seconds.unwrap_or(60))
}

pub(crate) fn peak_rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

const OSMEM: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/target/test-tools/osmem-server");

/// osmem-server, an OpenSearch-compatible server that ./dev/test fetches from PyPI.
fn opensearch() -> Option<(Running, String)> {
    if !Path::new(OSMEM).exists() {
        let message = format!("missing prerequisite: {OSMEM} (./dev/test fetches it)");
        assert!(std::env::var_os("CI").is_none(), "{message}");
        eprintln!("SKIPPED: {message}");
        return None;
    }
    let (process, line) = Running::spawn_with_line(Command::new(OSMEM));
    let facts: Value = serde_json::from_str(&line).expect("osmem-server prints its url");
    Some((process, facts["url"].as_str().unwrap().to_string()))
}

fn get_json(url: &str) -> Value {
    serde_json::from_str(&client().get(url).send().and_then(|a| a.text()).unwrap()).unwrap()
}

#[test]
fn elasticsearch_bulk_stores_each_event_once_under_its_id_even_when_resent() {
    if !prerequisites(&["python3"]) {
        return;
    }
    let Some((_server, search)) = opensearch() else { return };
    // A proxy in front that answers 503 to the first two requests *after* the server stored
    // them: the agent resends those batches, the server answers 409 per item, nothing doubles.
    let proxy = Receiver::start(0);
    proxy.control(json!({"forward": search, "fail_after_forward": 2}));
    let dir = ScratchDir::new("http-bulk");
    let url = format!("http://127.0.0.1:{}/_bulk", proxy.port);
    let settings = "format = \"elasticsearch_bulk\"\nindex = \"sockwatch-events\"";
    let agent = Agent::start(&["--config", &config(&dir.path, &url, settings)]);
    connections(10);
    let (status, events, tally) = agent.stop();
    assert!(status.success());

    let resent = proxy.requests().iter().filter(|r| r["status"] == 503).count();
    assert_eq!(resent, 2, "two batches were stored, refused, and sent again");
    let _ = get_json(&format!("{search}/sockwatch-events/_refresh"));
    let count = get_json(&format!("{search}/sockwatch-events/_count"));
    assert_eq!(count["count"].as_u64().unwrap() as usize, events.len(), "{count} {tally}");
    for event in &events {
        let id = event["event"]["id"].as_str().unwrap();
        let doc = get_json(&format!("{search}/sockwatch-events/_doc/{id}"));
        assert_eq!(doc["found"], true, "{id}: {doc}");
        assert_eq!(doc["_source"]["event"]["action"], event["event"]["action"]);
    }
    let delivered: u64 = lanes(&tally)
        .iter()
        .filter(|(name, _)| name.starts_with("http:"))
        .map(|(_, l)| l["delivered"].as_u64().unwrap())
        .sum();
    assert_eq!(delivered as usize, events.len());
}
