//! Views for a human: `sockwatch incidents` (what the agent keeps open, read from its state
//! directory; a resolved incident is no longer listed) and `run --alerts-only --text` (one
//! readable line per alert, no telemetry).

use crate::agent::Agent;
use crate::shells::is_incident_for;
use crate::util::{KillOnDrop, ScratchDir, bash_reverse_shell, prerequisites, prove_round_trip};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::Command;
use std::time::Duration;

fn incidents(state: &std::path::Path, args: &[&str], columns: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sockwatch"))
        .arg("incidents")
        .arg("--state-dir")
        .arg(state)
        .args(args)
        .env("COLUMNS", columns)
        .output()
        .unwrap()
}

#[test]
fn incidents_lists_a_live_incident_and_not_a_resolved_one() {
    if !prerequisites(&["bash"]) {
        return;
    }
    let state = ScratchDir::new("incidents-state");
    let agent = Agent::start_in(&state.path, &[]);
    let (shell, peer, port) = answering_shell();
    let shell_pid = shell.0.as_ref().unwrap().id() as i64;
    let opened = agent.wait_for("incident_opened", |e| {
        is_incident_for(e, port) && e["event"]["action"] == "incident_opened"
    });
    let id = opened["sockwatch"]["incident"]["id"].as_str().unwrap().to_string();

    let listed = incidents(&state.path, &["--format", "json"], "200");
    assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
    let list: Vec<Value> = serde_json::from_slice(&listed.stdout).unwrap();
    let ours = list.iter().find(|i| i["id"] == id.as_str()).expect("the open incident is listed");
    assert_eq!(ours["process"]["pid"], shell_pid, "{ours:#}");
    assert_eq!(ours["user"]["name"], "root", "{ours:#}");
    assert_eq!(ours["endpoint"], format!("tcp 127.0.0.1:{port}"));
    assert!(ours["rules"].as_array().is_some_and(|r| !r.is_empty()));
    assert!(ours["opened_at"].is_string() && ours["age_seconds"].as_u64() < Some(60));

    // The table fits the terminal it is given, cutting long cells with an ellipsis.
    let table = incidents(&state.path, &[], "60");
    let text = String::from_utf8(table.stdout).unwrap();
    assert!(text.starts_with("AGE"), "{text}");
    assert!(text.lines().all(|l| l.chars().count() <= 60), "{text}");
    assert!(text.contains('…'), "an incident id does not fit in 60 columns: {text}");
    let wide = String::from_utf8(incidents(&state.path, &[], "400").stdout).unwrap();
    assert!(wide.contains(&id) && wide.contains(&format!("bash[{shell_pid}]")), "{wide}");

    drop(peer);
    drop(shell);
    agent.wait_for("incident_resolved", |e| {
        e["event"]["action"] == "incident_resolved"
            && e["sockwatch"]["incident"]["id"] == id.as_str()
    });
    let listed = incidents(&state.path, &["--format", "json"], "200");
    let list: Vec<Value> = serde_json::from_slice(&listed.stdout).unwrap();
    assert!(!list.iter().any(|i| i["id"] == id.as_str()), "a resolved incident is not listed");
    agent.stop();
}

#[test]
fn incidents_without_a_state_directory_says_so_and_exits_66() {
    let dir = ScratchDir::new("incidents-none");
    let out = incidents(&dir.path.join("absent"), &[], "80");
    assert_eq!(out.status.code(), Some(66));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("absent") && stderr.contains("no state directory"), "{stderr}");
}

/// A reverse shell proven to answer: the shell, its connection and its port.
fn answering_shell() -> (KillOnDrop, std::net::TcpStream, u16) {
    let (shell, mut peer, port) = bash_reverse_shell();
    prove_round_trip(&mut peer);
    (shell, peer, port)
}

#[test]
fn alerts_only_text_output_is_one_readable_line_per_alert_and_no_telemetry() {
    if !prerequisites(&["bash"]) {
        return;
    }
    let state = ScratchDir::new("text-state");
    let mut agent = KillOnDrop::new(
        Command::new(env!("CARGO_BIN_EXE_sockwatch"))
            .args(["run", "--alerts-only", "--text", "--interval", "200ms", "--state-dir"])
            .arg(&state.path)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = agent.child().stdout.take().unwrap();
    let (tell, lines) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tell.send(line);
        }
    });
    let (_shell, _peer, port) = answering_shell();
    let wanted = format!("127.0.0.1:{port}");
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let alert = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = lines.recv_timeout(left).unwrap_or_else(|_| panic!("no alert line: {seen:#?}"));
        if line.contains("incident_opened") && line.contains(&wanted) {
            break line;
        }
        seen.push(line);
    };
    assert!(alert.contains(" high ") || alert.contains(" critical "), "{alert}");
    assert!(alert.contains("incident "), "{alert}");
    assert!(serde_json::from_str::<Value>(&alert).is_err(), "text, not JSON: {alert}");
    // Nothing but alerts and the agent's health on the way there: no socket telemetry, no
    // heartbeat, no baseline.
    for line in &seen {
        assert!(!line.contains("socket_") && !line.contains("existing_socket"), "{line}");
        assert!(!line.contains("heartbeat") && !line.starts_with('{'), "{line}");
    }
}

#[test]
fn completions_are_printed_for_each_shell_and_an_unknown_shell_is_a_usage_error() {
    for (shell, marker) in
        [("bash", "complete -F"), ("zsh", "#compdef sockwatch"), ("fish", "complete -c sockwatch")]
    {
        let out = Command::new(env!("CARGO_BIN_EXE_sockwatch"))
            .args(["completions", shell])
            .output()
            .unwrap();
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(out.status.success() && script.contains(marker), "{shell}: {script}");
        assert!(script.contains("incidents"), "{shell}: every subcommand completes");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_sockwatch"))
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
}
