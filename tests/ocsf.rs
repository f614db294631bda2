//! `schema = "ocsf"`: the real agent's events, of every class it projects to, validated against
//! the class definitions of the pinned OCSF release (tests/fixtures/ocsf_check.py, with the
//! release exports packaged by ocsf-json-schema, which ./dev/test fetches from PyPI). The file
//! and HTTP sinks carry the same projection of the same events as stdout carries canonically.

use crate::agent::Agent;
use crate::http_sink::{Receiver, connections, wait_until};
use crate::shells::is_incident_for;
use crate::util::{KillOnDrop, ScratchDir, bash_reverse_shell, prerequisites};
use serde_json::Value;
use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

const CHECK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ocsf_check.py");
const OCSF_VERSION: &str = "1.4.0";

/// Each document's verdict from the validator, by `metadata.uid`.
fn validate(docs: &[Value]) -> HashMap<String, Vec<String>> {
    let mut child = Command::new("python3")
        .args([CHECK, OCSF_VERSION])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the OCSF validator");
    let mut input = Vec::new();
    for doc in docs {
        serde_json::to_writer(&mut input, doc).unwrap();
        input.push(b'\n');
    }
    // Written from a thread: the validator answers as it reads, and with its stdout unread a
    // few hundred documents fill both pipes and each side waits on the other for ever.
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    // A validator that could not start (its packages missing: ./dev/test installs them) stops
    // reading at once; what it said is the error, not the broken pipe.
    if let Err(e) = writer.join().unwrap() {
        panic!("the OCSF validator stopped reading ({e}): {stderr}");
    }
    assert!(!output.stdout.is_empty() || docs.is_empty(), "validator said nothing: {stderr}");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            let verdict: Value = serde_json::from_str(line).unwrap_or_else(|_| panic!("{line}"));
            let errors = verdict["errors"].as_array().unwrap();
            let errors = errors.iter().map(|e| e.as_str().unwrap().to_string()).collect();
            (verdict["uid"].as_str().unwrap_or_default().to_string(), errors)
        })
        .collect()
}

fn ndjson(text: &str) -> Vec<Value> {
    text.lines().map(|l| serde_json::from_str(l).expect("one JSON document per line")).collect()
}

#[test]
fn every_event_class_projects_to_a_valid_ocsf_document() {
    if !prerequisites(&["python3", "bash", "sleep"]) {
        return;
    }
    let dir = ScratchDir::new("ocsf");
    let receiver = Receiver::start(0);
    let file = dir.path.join("ocsf.ndjson");
    let config = dir.path.join("sockwatch.toml");
    let body = format!(
        "[[sinks]]\ntype = \"stdout\"\n\n[[sinks]]\ntype = \"file\"\npath = \"{}\"\nschema = \"ocsf\"\n\n\
         [[sinks]]\ntype = \"http\"\nurl = \"{}\"\nschema = \"ocsf\"\nbatch_max_wait = \"200ms\"\n",
        file.display(),
        receiver.url()
    );
    std::fs::write(&config, &body).unwrap();
    let agent = Agent::start(&["--config", config.to_str().unwrap(), "--heartbeat", "1s"]);
    connections(2);
    // An exec in a process the agent already knows: a scan must list the bash before it execs,
    // and a loaded CI machine can take longer than 0.6 s between two scans.
    let mut exec = KillOnDrop::new(
        Command::new("bash").args(["-c", "sleep 2.5; exec sleep 8"]).spawn().unwrap(),
    );
    // A reverse shell: an incident opened, then resolved when it ends.
    let (mut shell, peer, port) = bash_reverse_shell();
    // The agent sees the whole host, other tests' shells included: look only at this one's.
    let ours = |e: &Value, action: &str| e["event"]["action"] == action && is_incident_for(e, port);
    agent.wait_for("incident_opened", |e| ours(e, "incident_opened"));
    let _ = shell.child().kill();
    drop(peer);
    agent.wait_for("incident_resolved", |e| ours(e, "incident_resolved"));
    let exec_pid = exec.child().id();
    agent.wait_for("process_exec", |e| {
        e["event"]["action"] == "process_exec" && e["process"]["pid"] == exec_pid
    });
    // A reload that works, then one that does not.
    let pid = rustix::process::Pid::from_raw(agent.pid()).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::HUP).unwrap();
    agent.wait_for("config_reloaded", |e| e["event"]["action"] == "config_reloaded");
    std::fs::write(&config, format!("{body}\n[agent]\ninterval = \"1ms\"\n")).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::HUP).unwrap();
    agent.wait_for("reload_failed", |e| e["event"]["action"] == "reload_failed");
    agent.wait_for("heartbeat", |e| e["event"]["action"] == "heartbeat");
    let _ = exec.child().kill();
    let printed = agent.events();
    wait_until("the HTTP sink caught up", Duration::from_secs(20), || {
        receiver.requests().iter().map(|r| r["events"].as_array().unwrap().len()).sum::<usize>()
            >= printed.len()
    });
    let (status, canonical, _) = agent.stop();
    assert!(status.success());

    let docs = ndjson(&std::fs::read_to_string(&file).unwrap());
    let verdicts = validate(&docs);
    let invalid: Vec<_> = verdicts.iter().filter(|(_, errors)| !errors.is_empty()).collect();
    assert!(
        invalid.is_empty(),
        "{} of {} documents invalid: {invalid:#?}",
        invalid.len(),
        docs.len()
    );
    // One document per event, joined by id.
    let by_uid: HashMap<&str, &Value> =
        docs.iter().map(|d| (d["metadata"]["uid"].as_str().unwrap(), d)).collect();
    assert_eq!(by_uid.len(), docs.len(), "uids are unique");
    let mut classes: HashMap<String, (u64, u64)> = HashMap::new();
    let mut checked_alerts = 0;
    for event in &canonical {
        let id = event["event"]["id"].as_str().unwrap();
        let doc = by_uid.get(id).unwrap_or_else(|| panic!("no OCSF document for {event}"));
        assert_eq!(doc["metadata"]["version"], OCSF_VERSION);
        assert_eq!(doc["metadata"]["product"]["name"], "sockwatch");
        let action = event["event"]["action"].as_str().unwrap().to_string();
        let class = (doc["class_uid"].as_u64().unwrap(), doc["activity_id"].as_u64().unwrap());
        classes.entry(action).or_insert(class);
        if is_incident_for(event, port) {
            checked_alerts += 1;
            assert_eq!(doc["severity_id"], event["event"]["severity"], "{doc}");
            assert!(doc["finding_info"]["attacks"].as_array().is_some_and(|a| !a.is_empty()));
            assert_eq!(doc["evidences"][0]["dst_endpoint"]["port"], port, "{doc}");
            assert_eq!(doc["evidences"][0]["connection_info"]["direction_id"], 2, "{doc}");
        }
    }
    assert!(checked_alerts >= 2, "this test's incident opened and resolved");
    for (action, expected) in [
        ("agent_started", (6002, 3)),
        ("existing_socket", (4001, 99)),
        ("socket_opened", (4001, 1)),
        ("socket_closed", (4001, 2)),
        ("process_exec", (1007, 1)),
        ("incident_opened", (2004, 1)),
        ("incident_resolved", (2004, 3)),
        ("config_reloaded", (6002, 99)),
        ("reload_failed", (6002, 99)),
        ("heartbeat", (6002, 99)),
        ("agent_stopping", (6002, 4)),
    ] {
        let found = classes.get(action).unwrap_or_else(|| panic!("no {action}: {classes:?}"));
        // Listening sockets open as Listen (7); the first opened one may be either.
        if action == "socket_opened" || action == "existing_socket" {
            assert_eq!(found.0, expected.0, "{action}");
        } else {
            assert_eq!(*found, expected, "{action}");
        }
    }
    // The HTTP sink sent the same documents.
    let sent: Vec<Value> =
        receiver.requests().iter().flat_map(|r| r["events"].as_array().unwrap().clone()).collect();
    let agreeing = sent.iter().filter(|d| {
        let uid = d["metadata"]["uid"].as_str().unwrap_or_default();
        by_uid.get(uid).is_some_and(|file_doc| *file_doc == *d)
    });
    assert!(agreeing.count() >= canonical.len() - 1, "the HTTP sink's documents match the file's");
}
