//! `[agent] exec_trigger`: with the kernel's process connector a process executing brings a scan
//! before the interval's next tick; without CAP_NET_ADMIN, or inside a pid namespace the
//! connector does not answer, the agent says so once and keeps scanning on the interval.

use crate::agent::Agent;
use crate::shells::is_incident_for;
use crate::util::{ScratchDir, bash_reverse_shell, prerequisites};
use serde_json::Value;

fn action(e: &Value) -> &str {
    e["event"]["action"].as_str().unwrap_or("")
}

/// The agent with the trigger on, its config file and state directory in `dir`, started through
/// `wrapper` (none, or a command that execs the rest) with `extra` arguments.
fn start_with_trigger(dir: &ScratchDir, wrapper: &[&str], extra: &[&str]) -> Agent {
    let config = dir.path.join("sockwatch.toml");
    std::fs::write(&config, "[agent]\nexec_trigger = true\n").unwrap();
    let mut args = vec!["--config", config.to_str().unwrap()];
    args.extend_from_slice(extra);
    Agent::start_through(wrapper, &dir.path.join("state"), &args)
}

#[test]
fn a_shell_is_alerted_on_by_the_scan_its_exec_brings_not_the_next_tick() {
    if !prerequisites(&["bash"]) {
        return;
    }
    let dir = ScratchDir::new("exec-trigger");
    let agent = start_with_trigger(&dir, &[], &["--interval", "1h", "--heartbeat", "50ms"]);
    // The baseline comes out of the first scan: after it only an exec-triggered scan can run
    // within the hour.
    agent.wait_for("the first scan's baseline", |e| action(e) == "existing_socket");
    let (_shell, _peer, port) = bash_reverse_shell();
    let alert = agent.wait_for("incident_opened from a triggered scan", |e| {
        action(e) == "incident_opened" && is_incident_for(e, port)
    });
    assert_eq!(alert["process"]["executable"], "/usr/bin/bash", "{alert}");
    let beat = agent.wait_for("a heartbeat counting triggered scans", |e| {
        action(e) == "heartbeat" && e["sockwatch"]["scans_exec_triggered"].as_u64() > Some(0)
    });
    let scans = beat["sockwatch"]["scans"].as_u64().unwrap();
    assert_eq!(scans, 1 + beat["sockwatch"]["scans_exec_triggered"].as_u64().unwrap(), "{beat}");
    assert!(!agent.events().iter().any(|e| action(e).starts_with("exec_trigger_")));
    let (status, _, _) = agent.stop();
    assert!(status.success());
}

#[test]
fn without_cap_net_admin_the_trigger_is_reported_unavailable_and_the_interval_still_scans() {
    if !prerequisites(&["setpriv", "bash"]) {
        return;
    }
    let dir = ScratchDir::new("exec-trigger-no-cap");
    // Root, less CAP_NET_ADMIN: everything else the agent uses is still there.
    let wrapper = ["setpriv", "--bounding-set=-net_admin", "--inh-caps=-net_admin"];
    let agent = start_with_trigger(&dir, &wrapper, &[]);
    let unavailable =
        agent.wait_for("exec_trigger_unavailable", |e| action(e) == "exec_trigger_unavailable");
    let details = unavailable["sockwatch"].to_string();
    assert!(details.contains("Operation not permitted"), "{details}");
    assert!(details.contains("CAP_NET_ADMIN"), "{details}");
    let (_shell, _peer, port) = bash_reverse_shell();
    agent.wait_for("incident_opened from the interval's scans", |e| {
        action(e) == "incident_opened" && is_incident_for(e, port)
    });
    let (status, _, _) = agent.stop();
    assert!(status.success());
}

#[test]
fn in_a_pid_namespace_the_unanswered_subscription_is_reported_and_scanning_goes_on() {
    if !prerequisites(&["unshare"]) {
        return;
    }
    let dir = ScratchDir::new("exec-trigger-pidns");
    let wrapper = ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc"];
    let agent = start_with_trigger(&dir, &wrapper, &["--heartbeat", "1s"]);
    let unavailable =
        agent.wait_for("exec_trigger_unavailable", |e| action(e) == "exec_trigger_unavailable");
    assert!(unavailable["sockwatch"]["error"].to_string().contains("did not answer"));
    let scans_then = agent
        .events()
        .iter()
        .filter(|e| action(e) == "heartbeat")
        .filter_map(|e| e["sockwatch"]["scans"].as_u64())
        .max()
        .unwrap_or(0);
    agent.wait_for("scans after the notice", |e| {
        action(e) == "heartbeat" && e["sockwatch"]["scans"].as_u64() > Some(scans_then)
    });
}
