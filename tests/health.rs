//! The agent's own health, with the real binary: health events carry a severity a filtered sink
//! lets through; a state directory that stops taking writes is said once — to the sinks and to
//! stderr — and so is its return; a failing sink is said at once (the other sinks, stderr,
//! systemd's status) and so is its recovery; a full disk delays alerts without losing them; a
//! closed stdout stops an agent that has no other sink, like any Unix tool.

use crate::agent::Agent;
use crate::shells::{Catcher, Group, is_incident_for};
use crate::util::{KillOnDrop, ScratchDir, Tmpfs, prerequisites};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
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

fn wait_until(what: &str, test: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !test() {
        assert!(Instant::now() < deadline, "{what}: not within 10 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `sockwatch run` with `config` (and `--state-dir` in `dir`), stdout and stderr piped.
fn spawn_agent(dir: &std::path::Path, config: &str) -> KillOnDrop {
    let path = dir.join("sockwatch.toml");
    std::fs::write(&path, config).unwrap();
    KillOnDrop::new(
        Command::new(env!("CARGO_BIN_EXE_sockwatch"))
            .args(["run", "--interval", "200ms", "--heartbeat", "300ms", "--config"])
            .arg(&path)
            .arg("--state-dir")
            .arg(dir.join("state"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start agent"),
    )
}

/// Reads the agent's first stdout line, then closes the pipe (`sockwatch run | head -1`).
fn read_one_line_and_close(agent: &mut KillOnDrop) -> Value {
    let mut reader = BufReader::new(agent.child().stdout.take().unwrap());
    let mut first = String::new();
    reader.read_line(&mut first).unwrap();
    serde_json::from_str(&first).expect("a JSON line")
}

#[test]
fn a_closed_stdout_that_is_the_only_sink_stops_the_agent_with_74() {
    let dir = ScratchDir::new("stdout-closed");
    let mut agent = spawn_agent(&dir.path, "[[sinks]]\ntype = \"stdout\"\n");
    let first = read_one_line_and_close(&mut agent);
    assert_eq!(action(&first), "agent_started");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = agent.child().try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "still running 10 s after its only output closed");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(74), "EX_IOERR, like a tool whose output is gone");
    let mut stderr = String::new();
    agent.child().stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    let failed = stderr.lines().find(|l| l.contains("\"sockwatch\":\"sink_failed\"")).unwrap_or("");
    assert!(failed.contains("\"sink\":\"stdout\"") && failed.contains("Broken pipe"), "{stderr}");
    assert!(stderr.trim_end().ends_with("stopped"), "one last line saying why: {stderr}");
}

#[test]
fn a_closed_stdout_beside_a_file_sink_is_reported_there_and_the_agent_goes_on() {
    if !prerequisites(&["python3"]) {
        return;
    }
    let dir = ScratchDir::new("stdout-closed-file");
    let events = dir.path.join("events.ndjson");
    let config = format!(
        "[[sinks]]\ntype = \"stdout\"\n[[sinks]]\ntype = \"file\"\npath = \"{}\"\nfsync_interval = \"100ms\"\n",
        events.display()
    );
    let mut agent = spawn_agent(&dir.path, &config);
    read_one_line_and_close(&mut agent);
    wait_until("sink_failed in the file", || {
        lines(&events).iter().any(|e| action(e) == "sink_failed")
    });
    let failed = lines(&events).into_iter().find(|e| action(e) == "sink_failed").unwrap();
    assert_eq!(failed["sockwatch"]["sink"], "stdout", "{failed}");
    assert_eq!(failed["event"]["severity"], 3, "{failed}");
    assert!(failed["sockwatch"]["error"].as_str().unwrap().contains("Broken pipe"), "{failed}");

    // Still scanning and reporting: a new listener reaches the file.
    let (_listener, inode) = crate::util::loopback_listener();
    wait_until("the listener in the file", || {
        lines(&events).iter().any(|e| e["sockwatch"]["socket"]["inode"] == inode)
    });
    assert!(agent.child().try_wait().unwrap().is_none(), "running on");
    let pid = rustix::process::Pid::from_raw(agent.child().id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    assert!(agent.child().wait().unwrap().success());
}

#[test]
fn a_full_disk_delays_alerts_without_losing_them_and_the_outage_is_said_as_it_happens() {
    if !prerequisites(&["python3", "mount", "umount"]) {
        return;
    }
    let dir = ScratchDir::new("disk-full-alerts");
    // Room, once freed, for every alert held during the outage: the other tests' shells are
    // alerted too, and an alert with its rules' descriptions is a few kilobytes.
    let disk = Tmpfs::mount(&dir.path.join("disk"), "1m");
    let alerts = disk.path.join("alerts.ndjson");
    let notify_path = dir.path.join("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    notify.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let config = dir.path.join("sockwatch.toml");
    std::fs::write(
        &config,
        format!(
            "[[sinks]]\ntype = \"stdout\"\n[[sinks]]\ntype = \"file\"\npath = \"{}\"\nfsync_interval = \"100ms\"\nkinds = [\"alert\"]\n",
            alerts.display()
        ),
    )
    .unwrap();
    let notify_env = format!("NOTIFY_SOCKET={}", notify_path.display());
    let agent = Agent::start_through(
        &["env", &notify_env],
        &dir.path.join("state"),
        &["--config", config.to_str().unwrap(), "--no-baseline"],
    );
    // The disk fills up (by someone else's file).
    let filler = disk.path.join("filler");
    let _ = std::fs::write(&filler, vec![0u8; 1024 * 1024]);

    let catcher = Catcher::start(&["tcp-listen"]);
    let port = catcher.port();
    let shell = Group::start(&format!("bash -i >& /dev/tcp/127.0.0.1/{port} 0>&1"));
    assert!(catcher.wait("ready").is_some(), "the reverse shell never answered");
    let opened = agent.wait_for("incident_opened on stdout", |e| is_incident_for(e, port));
    let failed = agent.wait_for("sink_failed", |e| action(e) == "sink_failed");
    assert!(failed["sockwatch"]["sink"].as_str().unwrap().starts_with("file:"), "{failed}");
    assert!(
        failed["sockwatch"]["error"].as_str().unwrap().contains("No space left on device"),
        "{failed}"
    );
    let mut statuses = Vec::new();
    let mut buf = [0u8; 512];
    let deadline = Instant::now() + Duration::from_secs(10);
    while !statuses.iter().any(|s: &String| s.contains("failing sinks: file:")) {
        assert!(Instant::now() < deadline, "no failing status: {statuses:?}");
        if let Ok(n) = notify.recv(&mut buf) {
            statuses.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    // Other tests' shells run beside this one and are alerted on too: only this incident's
    // lines count (written before the disk filled, theirs may be there).
    let ours = |e: &Value| is_incident_for(e, port);
    assert!(!lines(&alerts).iter().any(ours), "nothing could be written yet");

    // Space comes back: the held alert is written, the outage ends.
    std::fs::remove_file(&filler).unwrap();
    let recovered = agent.wait_for("sink_recovered", |e| action(e) == "sink_recovered");
    assert_eq!(recovered["sockwatch"]["sink"], failed["sockwatch"]["sink"]);
    let id = &opened["sockwatch"]["incident"]["id"];
    wait_until("the held alert in the file", || {
        lines(&alerts)
            .iter()
            .any(|e| action(e) == "incident_opened" && &e["sockwatch"]["incident"]["id"] == id)
    });
    drop(shell);
    let (status, _, stderr) = agent.stop_with_stderr();
    assert!(status.success());
    for said in ["sink_failed", "sink_recovered"] {
        assert!(
            stderr.contains(&format!("\"sockwatch\":\"{said}\"")),
            "{said} on stderr: {stderr}"
        );
    }
    let tally: Value = serde_json::from_str(stderr.lines().last().unwrap()).unwrap();
    let file = tally["sinks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["sink"] == failed["sockwatch"]["sink"])
        .unwrap();
    assert_eq!(file["dropped_write_error"], 0, "no alert lost: {file}");
}

#[test]
fn a_stalled_stdout_drops_telemetry_counted_and_never_an_alert() {
    if !prerequisites(&["python3"]) {
        return;
    }
    let dir = ScratchDir::new("stdout-stalled");
    // A small queue, and a reader that stops reading: the pipe fills, then the queue.
    let mut agent =
        spawn_agent(&dir.path, "[agent]\nqueue_capacity = 4\n[[sinks]]\ntype = \"stdout\"\n");
    let mut out = BufReader::new(agent.child().stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    // 300 new sockets (about 2 KiB of events each) fill the pipe, then the queue; heartbeats
    // every 300 ms overflow it meanwhile.
    let program = format!(
        "{}\nls = [socket.socket() for _ in range(300)]\n\
         [l.bind(('127.0.0.1', 0)) or l.listen() for l in ls]\nprint('{{}}', flush=True)\n\
         sys.stdin.read()\n",
        crate::util::PRELUDE
    );
    let listeners = crate::util::python_in(&crate::util::Netns::host(), &program);
    std::thread::sleep(Duration::from_millis(1500));
    let catcher = Catcher::start(&["tcp-listen"]);
    let port = catcher.port();
    let shell = Group::start(&format!("bash -i >& /dev/tcp/127.0.0.1/{port} 0>&1"));
    assert!(catcher.wait("ready").is_some(), "the reverse shell never answered");
    std::thread::sleep(Duration::from_millis(1500));

    // The reader comes back: the alert is there, after the telemetry that fitted.
    let (tx, rx) = crossbeam_channel::unbounded();
    std::thread::spawn(move || {
        for line in out.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let alert = loop {
        let line = rx.recv_deadline(deadline).expect("the incident on stdout within 10 s");
        let event: Value = serde_json::from_str(&line).unwrap();
        if is_incident_for(&event, port) {
            break event;
        }
    };
    assert_eq!(action(&alert), "incident_opened");
    drop((shell, listeners));
    let pid = rustix::process::Pid::from_raw(agent.child().id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    assert!(agent.child().wait().unwrap().success());
    let mut stderr = String::new();
    agent.child().stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    let tally: Value = serde_json::from_str(stderr.lines().last().unwrap()).unwrap();
    let counts = &tally["sinks"][0];
    assert!(counts["dropped_queue_full"].as_u64().unwrap() > 0, "telemetry was dropped: {tally}");
}
