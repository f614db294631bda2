//! `sockwatch run`, the real binary, end to end: events for a connection's life, the baseline on
//! restart, hostile command lines, exact per-sink accounting, clean shutdown on SIGTERM.

use crate::util::{Netns, PRELUDE, Running, ScratchDir, prerequisites, python_in};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running agent whose stdout is parsed line by line as it arrives.
pub(crate) struct Agent {
    child: Child,
    events: Arc<Mutex<Vec<Value>>>,
    bad_lines: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
    /// Reads stderr while the agent runs: a pipe nobody empties would stall the agent once
    /// 64 KiB of reports fill it.
    stderr: Option<std::thread::JoinHandle<String>>,
    _state: Option<ScratchDir>,
}

impl Agent {
    /// `run --interval 200ms` with its own state directory, plus `extra`.
    pub(crate) fn start(extra: &[&str]) -> Agent {
        let state = ScratchDir::new("state");
        let mut agent = Agent::start_in(&state.path, extra);
        agent._state = Some(state);
        agent
    }

    /// Like `start`, keeping incidents and rules in `state` (for restarts).
    pub(crate) fn start_in(state: &std::path::Path, extra: &[&str]) -> Agent {
        Agent::start_through(&[], state, extra)
    }

    /// Like `start_in`, started through `wrapper` (a command that execs the rest of its
    /// arguments, such as `setpriv …`), so that the agent's pid is still the child's.
    pub(crate) fn start_through(
        wrapper: &[&str],
        state: &std::path::Path,
        extra: &[&str],
    ) -> Agent {
        let interval: &[&str] =
            if extra.contains(&"--interval") { &[] } else { &["--interval", "200ms"] };
        // The detection tests run twice in dev/test: with exec checks (the default) and, with
        // SOCKWATCH_TEST_EXEC_CHECKS=off, on scans alone; both must hold.
        let checks: &[&str] = match std::env::var("SOCKWATCH_TEST_EXEC_CHECKS").as_deref() {
            Ok("off") => &["--no-exec-checks"],
            _ => &[],
        };
        let binary = env!("CARGO_BIN_EXE_sockwatch");
        // Closed once the agent is ready: later notifications fail, which the agent ignores.
        // Writable by all: the agent may run as another user. A test that speaks the protocol
        // itself (its wrapper sets NOTIFY_SOCKET) is left to do so.
        let notify_dir = ScratchDir::new("notify");
        let notify_path = notify_dir.path.join("notify.sock");
        let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).expect("notify socket");
        let permissions = std::os::unix::fs::PermissionsExt::from_mode(0o666);
        std::fs::set_permissions(&notify_path, permissions).expect("notify socket mode");
        let own_protocol = wrapper.iter().any(|a| a.starts_with("NOTIFY_SOCKET="));
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(binary);
                command
            }
            None => Command::new(binary),
        };
        let mut child = command
            .arg("run")
            .args(interval)
            .args(checks)
            .arg("--state-dir")
            .arg(state)
            .args(extra)
            .env("NOTIFY_SOCKET", &notify_path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start agent");
        let stdout = child.stdout.take().unwrap();
        let (events, bad_lines) =
            (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(Vec::new())));
        let (e, b) = (events.clone(), bad_lines.clone());
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).split(b'\n') {
                let line = line.expect("read agent stdout");
                match serde_json::from_slice::<Value>(&line) {
                    Ok(v) => e.lock().unwrap().push(v),
                    Err(_) => b.lock().unwrap().push(String::from_utf8_lossy(&line).into_owned()),
                }
            }
        });
        let mut errors = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = errors.read_to_end(&mut text);
            String::from_utf8_lossy(&text).into_owned()
        });
        let mut agent = Agent {
            child,
            events,
            bad_lines,
            reader: Some(reader),
            stderr: Some(stderr),
            _state: None,
        };
        agent.wait_for("agent_started", |e| e["event"]["action"] == "agent_started");
        if !own_protocol {
            agent.wait_until_ready(&notify);
        }
        agent
    }

    /// Waits for systemd's READY=1, which the agent says once its first scan is complete: what
    /// a test starts after that is new to the agent (`socket_opened`), never part of its
    /// baseline, however long a loaded machine makes that first scan. An agent that exits
    /// first is left to the test's own assertions.
    fn wait_until_ready(&mut self, notify: &std::os::unix::net::UnixDatagram) {
        let deadline = Instant::now() + Duration::from_secs(60);
        notify.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let mut buf = [0u8; 512];
        while Instant::now() < deadline {
            match notify.recv(&mut buf) {
                Ok(n) if buf[..n].split(|b| *b == b'\n').any(|l| l == b"READY=1") => return,
                _ if self.child.try_wait().unwrap().is_some() => return,
                _ => {}
            }
        }
        panic!("the agent's first scan did not complete within 60 s");
    }

    pub(crate) fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub(crate) fn events(&self) -> Vec<Value> {
        self.events.lock().unwrap().clone()
    }

    /// The first event matching `predicate`, waiting up to 10 s.
    pub(crate) fn wait_for(&self, what: &str, predicate: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(e) = self.events.lock().unwrap().iter().find(|e| predicate(e)) {
                return e.clone();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "no {what} event within 10 s; got {:#?}",
            self.events().iter().map(|e| e["event"]["action"].clone()).collect::<Vec<_>>()
        );
    }

    /// SIGTERM; returns the exit status, every event, and the final stderr line (JSON tally).
    pub(crate) fn stop(self) -> (std::process::ExitStatus, Vec<Value>, Value) {
        let (status, events, stderr) = self.stop_with_stderr();
        let tally =
            stderr.lines().last().and_then(|l| serde_json::from_str(l).ok()).unwrap_or(Value::Null);
        (status, events, tally)
    }

    /// SIGTERM; returns the exit status, every event, and all the agent wrote to stderr.
    pub(crate) fn stop_with_stderr(mut self) -> (std::process::ExitStatus, Vec<Value>, String) {
        let pid = rustix::process::Pid::from_raw(self.pid()).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        let status = self.child.wait().unwrap();
        self.reader.take().unwrap().join().unwrap();
        let stderr = self.stderr.take().unwrap().join().unwrap();
        assert!(
            self.bad_lines.lock().unwrap().is_empty(),
            "lines that are not JSON: {:?}",
            self.bad_lines.lock().unwrap()
        );
        let events = self.events();
        // Every event, whatever the test was about, reads as a line for a human too.
        let mute: Vec<&Value> = events
            .iter()
            .filter(|e| e["message"].as_str().is_none_or(|m| m.trim().is_empty()))
            .collect();
        assert!(mute.is_empty(), "events without a message: {mute:?}");
        (status, events, stderr)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn action(e: &Value) -> &str {
    e["event"]["action"].as_str().unwrap_or("")
}

fn inode(e: &Value) -> u64 {
    e["sockwatch"]["socket"]["inode"].as_u64().unwrap_or(0)
}

/// A process that listens, then on each line from the test: connects to itself, has the server
/// side close (the client goes to CLOSE_WAIT), closes the client.
const CONNECTION_STEPS: &str = r#"
l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen()
print(json.dumps({'pid': os.getpid(), 'port': l.getsockname()[1]}), flush=True)
sys.stdin.readline()
c = socket.create_connection(l.getsockname()); a, _ = l.accept()
sys.stdin.readline()
a.close()
sys.stdin.readline()
c.close()
sys.stdin.read()
"#;

fn connection_life(netns: &Netns, expected_netns: Option<u64>) {
    let agent = Agent::start(&[]);
    let (mut process, facts) = python_in(netns, &format!("{PRELUDE}{CONNECTION_STEPS}"));
    let (pid, port) = (facts["pid"].as_i64().unwrap(), facts["port"].as_u64().unwrap());

    process.write_line("connect");
    let opened = agent.wait_for("socket_opened", |e| {
        action(e) == "socket_opened"
            && e["process"]["pid"] == pid
            && e["destination"]["port"] == port
    });
    assert!(opened["process"]["executable"].as_str().unwrap().contains("python3"), "{opened}");
    assert_eq!(opened["process"]["entity_id"].as_str().map(str::len), Some(20));
    assert_eq!(opened["source"]["ip"], "127.0.0.1");
    assert_eq!(opened["destination"]["ip"], "127.0.0.1");
    assert_eq!(opened["network"]["transport"], "tcp");
    assert_eq!(opened["network"]["direction"], "egress");
    assert_eq!(opened["sockwatch"]["socket"]["direction"], "outbound");
    assert_eq!(opened["sockwatch"]["socket"]["state"], "ESTABLISHED");
    if let Some(ns) = expected_netns {
        assert_eq!(opened["sockwatch"]["socket"]["netns"], ns);
    }
    let client = inode(&opened);

    process.write_line("server closes");
    let changed = agent.wait_for("socket_state_changed", |e| {
        action(e) == "socket_state_changed" && inode(e) == client
    });
    assert_eq!(changed["sockwatch"]["socket"]["previous_state"], "ESTABLISHED");
    assert_eq!(changed["sockwatch"]["socket"]["state"], "CLOSE_WAIT");

    process.write_line("client closes");
    let closed =
        agent.wait_for("socket_closed", |e| action(e) == "socket_closed" && inode(e) == client);
    let duration = closed["sockwatch"]["socket"]["duration_ms"].as_u64().unwrap();
    assert!(duration > 0 && duration < 60_000, "{duration}");
    assert_eq!(closed["sockwatch"]["socket"]["duration_is_lower_bound"], false);
    assert_eq!(closed["process"]["pid"], pid);

    let agent_pid = agent.pid();
    let (status, events, tally) = agent.stop();
    assert!(status.success(), "SIGTERM ends the agent with 0: {status}");
    assert_eq!(action(events.last().unwrap()), "agent_stopping");
    assert!(
        events.iter().all(|e| e["process"]["pid"] != agent_pid),
        "the agent never reports on itself"
    );
    // Accounting: every event routed to stdout was delivered, and the test read every one.
    let sink = &tally["sinks"][0];
    let n = |k: &str| sink[k].as_u64().unwrap();
    assert_eq!(
        n("generated"),
        n("delivered") + n("dropped_queue_full") + n("dropped_write_error") + n("queued")
    );
    assert_eq!(n("delivered"), events.len() as u64, "{tally}");
    let sequences: Vec<u64> =
        events.iter().map(|e| e["event"]["sequence"].as_u64().unwrap()).collect();
    assert!(sequences.windows(2).all(|w| w[1] == w[0] + 1), "sequence numbers are gapless");
}

#[test]
fn a_connection_opened_changed_and_closed_in_the_host_namespace() {
    if !prerequisites(&["python3"]) {
        return;
    }
    connection_life(&Netns::host(), None);
}

#[test]
fn a_connection_opened_changed_and_closed_in_a_test_namespace() {
    if !prerequisites(&["ip", "python3"]) {
        return;
    }
    let netns = Netns::new();
    connection_life(&netns, Some(netns.inode()));
}

/// A socket the tables list before any fd table shows it (created between a scan's fd walk
/// and its table reads; here, deterministically, in flight over SCM_RIGHTS) is left out while
/// unheld; once held, the stream hears of it as an opening with its holder, not as a change of
/// holders to a socket it never heard of.
#[test]
fn a_socket_listed_before_it_was_held_opens_with_its_holder() {
    if !prerequisites(&["python3"]) {
        return;
    }
    let agent = Agent::start(&[]);
    let (mut process, facts) = python_in(
        &Netns::host(),
        &format!(
            "{PRELUDE}
l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen()
inode = os.fstat(l.fileno()).st_ino
a, b = socket.socketpair()
socket.send_fds(a, [b'l'], [l.fileno()]); l.close()
print(json.dumps({{'pid': os.getpid(), 'inode': inode}}), flush=True)
sys.stdin.readline()
_, fds, _, _ = socket.recv_fds(b, 1, 1)
sys.stdin.read()
"
        ),
    );
    let (pid, listener) = (facts["pid"].as_i64().unwrap(), facts["inode"].as_u64().unwrap());
    std::thread::sleep(Duration::from_millis(600)); // three scans list it, held by nobody
    process.write_line("receive");
    let opened = agent.wait_for("the listener's first event", |e| inode(e) == listener);
    assert_eq!(action(&opened), "socket_opened", "{opened:#}");
    assert_eq!(opened["process"]["pid"], pid, "{opened:#}");
    let (_, events, _) = agent.stop();
    let listeners: Vec<&str> = events.iter().filter(|e| inode(e) == listener).map(action).collect();
    assert_eq!(listeners, ["socket_opened"]);
}

#[test]
fn a_restart_reports_open_sockets_as_baseline_state_not_as_opened() {
    if !prerequisites(&["ip", "python3"]) {
        return;
    }
    let netns = Netns::new();
    let (process, facts) = python_in(
        &netns,
        &format!(
            "{PRELUDE}
l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen()
c = socket.create_connection(l.getsockname()); a, _ = l.accept()
print(json.dumps({{'inode': os.fstat(c.fileno()).st_ino,
                  'listening': os.fstat(l.fileno()).st_ino}}), flush=True)
sys.stdin.read()
"
        ),
    );
    let held = facts["inode"].as_u64().unwrap();
    let listening = facts["listening"].as_u64().unwrap();
    // The default baseline: the listener one by one, the connection only in the count.
    let agent = Agent::start(&[]);
    let summary = agent.wait_for("baseline_summary", |e| action(e) == "baseline_summary");
    assert_eq!(summary["event"]["kind"], "state");
    let counted = summary["sockwatch"]["sockets"].as_u64().unwrap();
    assert!(counted >= 3 && summary["sockwatch"]["listed"].as_u64() < Some(counted), "{summary}");
    assert!(summary["message"].as_str().unwrap().contains("sockets open at start"));
    agent.wait_for("the listener", |e| action(e) == "existing_socket" && inode(e) == listening);
    let (_, events, _) = agent.stop();
    assert!(!events.iter().any(|e| inode(e) == held), "a connection is counted, not listed");
    for _ in 0..2 {
        let agent = Agent::start(&["--baseline", "full"]);
        let baseline = agent
            .wait_for("existing_socket", |e| action(e) == "existing_socket" && inode(e) == held);
        assert_eq!(baseline["event"]["kind"], "state");
        assert_eq!(baseline["sockwatch"]["baseline"], true);
        std::thread::sleep(Duration::from_millis(1000)); // several more scans
        let (_, events, _) = agent.stop();
        // The test's own process's sockets: other tests' agents and shells come and go.
        let ours = |e: &&Value| e["process"]["pid"] == process.pid();
        let baseline: std::collections::HashSet<u64> = events
            .iter()
            .filter(ours)
            .filter(|e| action(e) == "existing_socket")
            .map(inode)
            .collect();
        assert!(baseline.contains(&held), "the held socket is in the baseline");
        let flood: Vec<&Value> = events
            .iter()
            .filter(ours)
            .filter(|e| action(e) == "socket_opened" && baseline.contains(&inode(e)))
            .collect();
        assert!(flood.is_empty(), "sockets of the baseline reported as opened: {flood:?}");
    }
}

/// A TCP socket no table lists until it is bound (the agent sees it held, in no namespace) is
/// one socket across that: opened unresolved, then its state changes under its namespace, and
/// its one close is reported there. Never a close of a socket still open.
#[test]
fn a_socket_seen_before_it_was_bound_is_one_socket_once_a_table_lists_it() {
    if !prerequisites(&["ip", "python3"]) {
        return;
    }
    let netns = Netns::new();
    let agent = Agent::start(&[]);
    let (mut process, facts) = python_in(
        &netns,
        &format!(
            "{PRELUDE}
l = socket.socket()
print(json.dumps({{'inode': os.fstat(l.fileno()).st_ino}}), flush=True)
sys.stdin.readline()
l.bind(('127.0.0.1', 0)); l.listen()
sys.stdin.readline()
"
        ),
    );
    let held = facts["inode"].as_u64().unwrap();
    let opened =
        agent.wait_for("socket_opened", |e| action(e) == "socket_opened" && inode(e) == held);
    assert_eq!(opened["sockwatch"]["socket"]["netns"], 0);
    assert_eq!(opened["sockwatch"]["socket"]["table_source"], "unresolved");
    process.write_line("bind");
    let listed = agent.wait_for("socket_state_changed", |e| {
        action(e) == "socket_state_changed" && inode(e) == held
    });
    assert_eq!(listed["sockwatch"]["socket"]["netns"], netns.inode());
    assert_eq!(listed["sockwatch"]["socket"]["state"], "LISTEN");
    assert_eq!(listed["sockwatch"]["socket"]["previous_state"], "UNKNOWN");
    assert_eq!(listed["process"]["pid"], process.pid());
    process.write_line("close");
    let closed =
        agent.wait_for("socket_closed", |e| action(e) == "socket_closed" && inode(e) == held);
    assert_eq!(closed["sockwatch"]["socket"]["netns"], netns.inode());
    let (_, events, _) = agent.stop();
    let about: Vec<&str> = events.iter().filter(|e| inode(e) == held).map(action).collect();
    assert_eq!(about, ["socket_opened", "socket_state_changed", "socket_closed"]);
}

#[test]
fn a_hostile_command_line_stays_one_valid_escaped_line() {
    if !prerequisites(&["ip", "python3"]) {
        return;
    }
    use std::os::unix::ffi::OsStrExt;
    let netns = Netns::new();
    let agent = Agent::start(&[]);
    let mut command = netns.command("python3");
    command
        .arg("-c")
        .arg("import socket, sys; l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen(); print(1, flush=True); sys.stdin.read()")
        .arg("a\nb")
        .arg("\x1b[31mred")
        .arg("\u{202e}txt.exe")
        .arg(std::ffi::OsStr::from_bytes(b"\xff\xfe"));
    let (running, _) = Running::spawn_with_line(command);
    let event = agent.wait_for("socket_opened", |e| {
        action(e) == "socket_opened" && e["process"]["pid"] == running.pid()
    });
    let args: Vec<&str> =
        event["process"]["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert_eq!(&args[3..], [r"a\nb", r"\u{001b}[31mred", r"\u{202e}txt.exe", r"\xff\xfe"]);
    assert!(
        event["process"]["command_line"]
            .as_str()
            .unwrap()
            .ends_with(r"a\nb \u{001b}[31mred \u{202e}txt.exe \xff\xfe")
    );
    assert_eq!(event["process"]["args_b64"][6], "//4=");
    let (_, events, _) = agent.stop(); // stop() asserts every line was one JSON object
    assert!(!events.is_empty());
}

/// The systemd protocol through a NOTIFY_SOCKET the test binds: READY after the first scan,
/// WATCHDOG while scans progress (four looks per period: every 500 ms here), RELOADING (with
/// MONOTONIC_USEC) then READY on SIGHUP, STOPPING on SIGTERM.
#[test]
fn systemd_notifications_follow_the_scans() {
    let dir = crate::util::ScratchDir::new("notify");
    let path = dir.path.join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut agent = crate::util::KillOnDrop::new(
        Command::new(env!("CARGO_BIN_EXE_sockwatch"))
            .args(["run", "--interval", "100ms", "--no-baseline", "--state-dir"])
            .arg(dir.path.join("state"))
            .env("NOTIFY_SOCKET", &path)
            .env("WATCHDOG_USEC", "2000000")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut received = Vec::new();
    let mut next = || {
        let mut buf = [0u8; 512];
        // A signal to this process (a child of another test exiting) interrupts the wait.
        let n = loop {
            match socket.recv(&mut buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                received => break received.expect("a notification within 10 s"),
            }
        };
        let text = String::from_utf8_lossy(&buf[..n]).trim_end().to_string();
        received.push(text.clone());
        text
    };
    // A long first scan may be pinged for before it completes.
    let mut first = next();
    while first == "WATCHDOG=1" {
        first = next();
    }
    assert!(first.starts_with("READY=1"), "{first:?}");
    let pinged = Instant::now();
    assert_eq!(next(), "WATCHDOG=1");
    assert_eq!(next(), "WATCHDOG=1", "pings go on while scans do");
    assert!(pinged.elapsed() >= Duration::from_millis(500), "paced by the period, not the scans");
    let pid = rustix::process::Pid::from_raw(agent.child().id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::HUP).unwrap();
    let mut after_hup = next();
    while after_hup == "WATCHDOG=1" {
        after_hup = next();
    }
    assert!(after_hup.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{after_hup:?}");
    assert!(next().starts_with("READY=1"));
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let mut last = next();
    while last == "WATCHDOG=1" {
        last = next();
    }
    assert!(last.starts_with("STOPPING=1"), "{last:?}");
    assert!(agent.child().wait().unwrap().success());
}

/// The heartbeat carries what a SIEM needs to tell a healthy agent from a blind one.
#[test]
fn heartbeats_carry_coverage_scan_and_sink_counters() {
    let agent = Agent::start(&["--heartbeat", "300ms", "--no-baseline"]);
    let beat = agent.wait_for("heartbeat", |e| action(e) == "heartbeat");
    let s = &beat["sockwatch"];
    assert_eq!(beat["event"]["kind"], "state");
    for counter in [
        "processes_seen",
        "processes_denied",
        "processes_vanished",
        "sockets_unresolved",
        "sockets_unowned",
        "inode0_rows",
        "time_wait",
        "namespaces_unreadable",
    ] {
        assert!(s["coverage"][counter].is_u64(), "coverage.{counter} in {s}");
    }
    assert!(s["coverage"]["processes_seen"].as_u64().unwrap() > 0);
    assert!(s["scans"].as_u64().unwrap() >= 1);
    for field in ["scan_overruns", "batches_deferred", "last_scan_duration_ms"] {
        assert!(s[field].is_u64(), "{field} in {s}");
    }
    let detection = &s["detection"];
    let shipped = sockwatch::rules::RuleSet::compile(sockwatch::rules::RuleSource::embedded());
    let shipped = shipped.unwrap().rules.len();
    assert_eq!(detection["rules_enabled"], shipped, "the built-in pack: {detection}");
    assert_eq!(detection["rules_degraded"], false);
    for field in ["open_incidents", "alerts_waiting", "subjects", "stdio_walks_truncated"] {
        assert!(detection[field].is_u64(), "detection.{field} in {s}");
    }
    let sink = &s["sinks"][0];
    assert_eq!(sink["sink"], "stdout");
    for field in ["generated", "delivered", "dropped_queue_full", "dropped_write_error", "queued"] {
        assert!(sink[field].is_u64(), "sinks[0].{field} in {s}");
    }
    let (status, _, _) = agent.stop();
    assert!(status.success());
}

#[test]
fn socket_families_limit_what_is_reported() {
    if !prerequisites(&["python3"]) {
        return;
    }
    let dir = crate::util::ScratchDir::new("families");
    let config = dir.path.join("sockwatch.toml");
    std::fs::write(&config, "[events]\nsocket_families = [\"inet\"]\n").unwrap();
    let agent = Agent::start(&["--config", config.to_str().unwrap(), "--no-baseline"]);
    // Connections that open and close between scans reach the agent by another path (the
    // kernel's destroy notices): the IPv6 ones, made first, must be left out there too.
    let (mut process, facts) = python_in(&Netns::host(), &format!("{PRELUDE}
l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen()
l6 = socket.socket(socket.AF_INET6); l6.bind(('::1', 0)); l6.listen()
a, b = socket.socketpair()
print(json.dumps({{'tcp': os.fstat(l.fileno()).st_ino, 'port': l.getsockname()[1], 'unix': [os.fstat(a.fileno()).st_ino, os.fstat(b.fileno()).st_ino]}}), flush=True)
sys.stdin.readline()
for listener, host in ((l6, '::1'), (l, '127.0.0.1')):
    for _ in range(20):
        c = socket.create_connection((host, listener.getsockname()[1]))
        s, _ = listener.accept()
        c.close(); s.close()
sys.stdin.read()
"));
    let tcp = facts["tcp"].as_u64().unwrap();
    agent.wait_for("the tcp listener", |e| action(e) == "socket_opened" && inode(e) == tcp);
    process.write_line("go");
    let port = facts["port"].as_u64().unwrap();
    agent.wait_for("one of the IPv4 connections", |e| e["destination"]["port"] == port);
    std::thread::sleep(Duration::from_millis(600)); // three more scans
    let (_, events, _) = agent.stop();
    let unix: Vec<u64> =
        facts["unix"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    assert!(events.iter().all(|e| !unix.contains(&inode(e))), "unix sockets were reported");
    let other: Vec<&Value> = events
        .iter()
        .filter(|e| e["sockwatch"]["socket"].is_object())
        .filter(|e| e["sockwatch"]["socket"]["family"] != "inet")
        .collect();
    assert!(other.is_empty(), "sockets of other families reported: {other:#?}");
}
