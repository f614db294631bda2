//! The OTLP sink end to end: the real agent POSTing OTLP/HTTP logs to rotel, an OpenTelemetry
//! collector strict about OTLP/JSON, which exports to the receiver fixture decoding with the
//! official protobuf definitions (both from PyPI, pinned, in a venv ./dev/test makes). Outage
//! and partial-success tests speak to the receiver directly, to know exactly what arrived.

use crate::agent::Agent;
use crate::http_sink::{Receiver, lanes, outage_loses_nothing, run_until, sink_config, wait_until};
use crate::shells::is_incident_for;
use crate::util::{Running, ScratchDir, bash_reverse_shell, prerequisites, prove_round_trip};
use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const PYTHON: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/target/test-tools/otlp-venv/bin/python3");

fn otlp_tools() -> bool {
    crate::util::unpacked_tool(PYTHON)
}

fn receiver(port: u16) -> Receiver {
    Receiver::start_with(PYTHON, port)
}

/// A config with stdout (what the test reads) and one OTLP sink with `extra` settings.
fn config(dir: &Path, endpoint: &str, extra: &str) -> String {
    sink_config(dir, &format!("type = \"otlp\"\nendpoint = \"{endpoint}\"\n{extra}"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// rotel-agent on loopback, exporting every log it receives to `upstream` over OTLP/HTTP.
struct Rotel {
    _process: Running,
    port: u16,
}

impl Rotel {
    fn start(dir: &Path, upstream: &Receiver) -> Rotel {
        let located = Command::new(PYTHON)
            .args(["-c", "import os, rotel; print(os.path.dirname(rotel.__file__))"])
            .output()
            .expect("the venv's python");
        let package = String::from_utf8(located.stdout).unwrap();
        let (port, grpc) = (free_port(), free_port());
        let mut command = Command::new(Path::new(package.trim()).join("rotel-agent"));
        command
            .args(["start", "--otlp-http-endpoint", &format!("127.0.0.1:{port}")])
            .args(["--otlp-grpc-endpoint", &format!("127.0.0.1:{grpc}")])
            .args(["--exporter", "otlp", "--otlp-exporter-protocol", "http"])
            .args(["--otlp-exporter-endpoint", &format!("http://127.0.0.1:{}", upstream.port)])
            .args(["--batch-timeout", "100ms", "--log-file"])
            .arg(dir.join("rotel.log"));
        let process = Running::spawn(command);
        wait_until("rotel listening", Duration::from_secs(15), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Rotel { _process: process, port }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// The records the receiver got, by `log.record.uid`.
fn record(receiver: &Receiver, id: &str) -> Option<Value> {
    receiver
        .requests()
        .iter()
        .flat_map(|r| r["events"].as_array().cloned().unwrap_or_default())
        .find(|e| e["_otlp"]["attributes"]["log.record.uid"] == id)
}

#[test]
fn an_alert_reaches_a_collector_as_a_log_record_in_either_encoding() {
    if !prerequisites(&["python3", "bash"]) || !otlp_tools() {
        return;
    }
    for encoding in ["protobuf", "json"] {
        let dir = ScratchDir::new("otlp");
        let receiver = receiver(0);
        let rotel = Rotel::start(&dir.path, &receiver);
        let settings = format!("encoding = \"{encoding}\"");
        let agent = Agent::start(&["--config", &config(&dir.path, &rotel.endpoint(), &settings)]);
        let (mut shell, mut peer, port) = bash_reverse_shell();
        prove_round_trip(&mut peer);
        let opened = agent.wait_for("incident_opened", |e| {
            e["event"]["action"] == "incident_opened" && is_incident_for(e, port)
        });
        let id = opened["event"]["id"].as_str().unwrap().to_string();
        wait_until("the alert through the collector", Duration::from_secs(20), || {
            record(&receiver, &id).is_some()
        });
        let mut got = record(&receiver, &id).unwrap();
        let otlp = got.as_object_mut().unwrap().remove("_otlp").unwrap();
        // The body is the canonical event, whole.
        assert_eq!(got, opened, "{encoding}");
        assert_eq!(otlp["event_name"], "sockwatch.incident_opened");
        let severity = opened["event"]["severity"].as_u64().unwrap();
        let expected = match severity {
            1 => (10, "informational"),
            2 => (13, "low"),
            3 => (17, "medium"),
            4 => (18, "high"),
            _ => (21, "critical"),
        };
        assert_eq!(
            (otlp["severity_number"].as_u64().unwrap(), otlp["severity_text"].as_str().unwrap()),
            expected
        );
        let now_ns =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
                as u64;
        let at = otlp["time_unix_nano"].as_u64().unwrap();
        assert!(at <= now_ns && now_ns - at < 120_000_000_000, "time_unix_nano {at}");
        let attributes = &otlp["attributes"];
        assert_eq!(attributes["process.pid"], opened["process"]["pid"], "{otlp}");
        assert_eq!(attributes["destination.port"], port, "{otlp}");
        assert_eq!(attributes["destination.address"], "127.0.0.1", "{otlp}");
        assert_eq!(attributes["security_rule.name"], opened["rule"]["name"], "{otlp}");
        assert_eq!(attributes["user.id"], opened["process"]["user"]["id"], "{otlp}");
        let resource = &otlp["resource"];
        assert_eq!(resource["service.name"], "sockwatch");
        assert_eq!(resource["host.name"], opened["host"]["name"]);
        assert_eq!(resource["host.id"], opened["host"]["id"]);

        let _ = shell.child().kill();
        drop(peer);
        let (status, events, tally) = agent.stop();
        assert!(status.success());
        // rotel took every request: nothing refused, every event passed on.
        for (name, lane) in lanes(&tally).iter().filter(|(n, _)| n.starts_with("otlp:")) {
            assert_eq!(lane["generated"], lane["delivered"], "{encoding} {name}: {lane}");
        }
        wait_until("everything through the collector", Duration::from_secs(20), || {
            let arrived = receiver.accepted_ids();
            events.iter().all(|e| arrived.contains_key(e["event"]["id"].as_str().unwrap()))
        });
    }
}

#[test]
fn a_partial_success_is_counted_as_rejected_with_its_reason() {
    if !prerequisites(&["python3"]) || !otlp_tools() {
        return;
    }
    let dir = ScratchDir::new("otlp-partial");
    let receiver = receiver(0);
    receiver.control(json!({"otlp_partial": {"rejected": 2, "message": "two records over quota"}}));
    let config = config(&dir.path, &format!("http://127.0.0.1:{}", receiver.port), "");
    let (_, stderr) = run_until(&dir.path, &config, || {
        std::thread::sleep(Duration::from_millis(300));
        receiver.requests().len() >= 2
    });
    let refusals: Vec<Value> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["sockwatch"] == "sink_rejected")
        .collect();
    assert_eq!(refusals.len(), 1, "one line for the request: {stderr}");
    assert_eq!(refusals[0]["events"], 2, "{stderr}");
    let reason = refusals[0]["reason"].as_str().unwrap();
    assert!(reason.contains("2 of") && reason.contains("two records over quota"), "{reason}");
    let tally: Value = serde_json::from_str(stderr.lines().last().unwrap()).unwrap();
    let rejected: u64 =
        lanes(&tally).values().map(|l| l["dropped_rejected"].as_u64().unwrap()).sum();
    assert_eq!(rejected, 2, "{tally}");
}

#[test]
fn an_outage_of_the_collector_loses_nothing() {
    if !prerequisites(&["python3"]) || !otlp_tools() {
        return;
    }
    let dir = ScratchDir::new("otlp-outage");
    outage_loses_nothing(&receiver, |receiver| {
        let endpoint = format!("http://127.0.0.1:{}", receiver.port);
        let telemetry = format!("otlp:{endpoint}/v1/logs#telemetry");
        (config(&dir.path, &endpoint, ""), telemetry)
    });
}
