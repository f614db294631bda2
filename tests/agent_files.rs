//! The agent's config file and file sink, end to end with the real binary: located config errors
//! and exit 78, rotation without a lost or split line, kill -9 leaving only whole lines, a full
//! disk counted and survived, reload_failed on a broken reload.

use crate::util::{
    KillOnDrop, Netns, PRELUDE, Running, ScratchDir, Tmpfs, prerequisites, python_in, sockwatch,
};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A process in `netns` that opens and closes a loopback connection every few milliseconds.
fn churn(netns: &Netns) -> Running {
    let program = format!(
        "{PRELUDE}
l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen(64)
print(json.dumps({{'port': l.getsockname()[1]}}), flush=True)
import threading
def serve():
    while True:
        a, _ = l.accept(); a.close()
threading.Thread(target=serve, daemon=True).start()
while True:
    c = socket.create_connection(l.getsockname()); time.sleep(0.01); c.close()
"
    );
    python_in(netns, &program).0
}

fn write_config(dir: &Path, body: &str) -> std::path::PathBuf {
    let path = dir.join("sockwatch.toml");
    std::fs::write(&path, body).unwrap();
    path
}

fn file_sink_config(dir: &Path, events: &Path, interval: &str) -> std::path::PathBuf {
    write_config(
        dir,
        &format!(
            "[agent]\ninterval = \"{interval}\"\nheartbeat = \"1s\"\nstate_dir = \"{}\"\n[[sinks]]\ntype = \"file\"\npath = \"{}\"\nfsync_interval = \"200ms\"\n",
            dir.join("state").display(),
            events.display()
        ),
    )
}

fn start(config: &Path) -> KillOnDrop {
    KillOnDrop::new(
        Command::new(env!("CARGO_BIN_EXE_sockwatch"))
            .args(["run", "--config"])
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start agent"),
    )
}

fn signal(agent: &mut KillOnDrop, signal: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(agent.child().id() as i32).unwrap();
    rustix::process::kill_process(pid, signal).unwrap();
}

/// Every line of every file parses as one JSON object; returns them.
fn whole_lines(files: &[std::path::PathBuf]) -> Vec<Value> {
    let mut events = Vec::new();
    for file in files {
        let text = std::fs::read(file).unwrap();
        assert!(text.is_empty() || text.ends_with(b"\n"), "{} ends mid-line", file.display());
        for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let event: Value = serde_json::from_slice(line).unwrap_or_else(|e| {
                panic!("{}: {e}: {:?}", file.display(), String::from_utf8_lossy(line))
            });
            events.push(event);
        }
    }
    events
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_bad_config_exits_78_with_file_line_and_column() {
    let dir = ScratchDir::new("badconfig");
    for (body, expect) in [
        ("[agent]\ninterval = \"1s\"\ncolour = \"blue\"\n", ":3:1: unknown field `colour`"),
        ("[agent]\nbaseline = 1\n", ":2:12: "),
        ("[agent]\nheartbeat = \"soon\"\n", ":2:13: bad duration"),
    ] {
        let path = write_config(&dir.path, body);
        for args in [vec!["config", "check"], vec!["run", "--config"]] {
            let mut args: Vec<&str> = args;
            let file = path.to_str().unwrap();
            args.push(file);
            let out = sockwatch(&args);
            assert_eq!(out.status.code(), Some(78), "{args:?} {body}");
            let stderr = String::from_utf8(out.stderr).unwrap();
            assert_eq!(stderr.lines().count(), 1, "{stderr}");
            assert!(stderr.contains(&format!("{file}{expect}")), "{stderr}");
        }
    }
    let good = write_config(&dir.path, "[agent]\ninterval = \"2s\"\n");
    assert!(sockwatch(&["config", "check", good.to_str().unwrap()]).status.success());
}

#[test]
fn rename_and_create_rotation_loses_no_line_and_splits_none() {
    if !prerequisites(&["ip", "python3"]) {
        return;
    }
    let netns = Netns::new();
    let _churn = churn(&netns);
    let dir = ScratchDir::new("rotation");
    let events = dir.path.join("events.ndjson");
    let mut agent = start(&file_sink_config(&dir.path, &events, "50ms"));
    let mut rotated = Vec::new();
    for round in 0..5 {
        wait_until("events", || std::fs::metadata(&events).is_ok_and(|m| m.len() > 20_000));
        let old = dir.path.join(format!("events.ndjson.{round}"));
        std::fs::rename(&events, &old).unwrap();
        std::fs::File::create(&events).unwrap(); // logrotate `create`
        rotated.push(old);
    }
    wait_until("events after the last rotation", || {
        std::fs::metadata(&events).is_ok_and(|m| m.len() > 0)
    });
    signal(&mut agent, rustix::process::Signal::TERM);
    assert!(agent.child().wait().unwrap().success());
    rotated.push(events);
    let all = whole_lines(&rotated);
    let mut sequences: Vec<u64> =
        all.iter().map(|e| e["event"]["sequence"].as_u64().unwrap()).collect();
    sequences.sort_unstable();
    let expected: Vec<u64> = (1..=sequences.len() as u64).collect();
    assert_eq!(sequences, expected, "every event is in exactly one file");
    assert_eq!(all.last().unwrap()["event"]["action"], "agent_stopping");
}

#[test]
fn kill_9_during_heavy_writing_leaves_only_whole_lines() {
    if !prerequisites(&["ip", "python3"]) {
        return;
    }
    let netns = Netns::new();
    let _churn = churn(&netns);
    let dir = ScratchDir::new("kill9");
    let events = dir.path.join("events.ndjson");
    let config = file_sink_config(&dir.path, &events, "50ms");
    let written = || std::fs::metadata(&events).map_or(0, |m| m.len());
    for round in 0..50 {
        let before = written();
        let mut agent = start(&config);
        // Each start writes the whole baseline in one burst; kill somewhere inside or after it,
        // counted from its first write (how long a start takes depends on the machine's load).
        wait_until("the agent writing", || written() > before);
        std::thread::sleep(Duration::from_millis((round * 7) % 150));
        agent.child().kill().unwrap();
        agent.child().wait().unwrap();
    }
    let mut agent = start(&config);
    std::thread::sleep(Duration::from_millis(300));
    signal(&mut agent, rustix::process::Signal::TERM);
    assert!(agent.child().wait().unwrap().success());
    let all = whole_lines(&[events]);
    assert!(
        all.iter().filter(|e| e["event"]["action"] == "agent_started").count() >= 40,
        "the rounds wrote"
    );
}

#[test]
fn a_full_disk_is_counted_survived_and_recovered_from() {
    if !prerequisites(&["ip", "python3", "mount", "umount"]) {
        return;
    }
    let netns = Netns::new();
    let _churn = churn(&netns);
    let dir = ScratchDir::new("diskfull");
    let tmpfs = Tmpfs::mount(&dir.path.join("tmpfs"), "256k");
    let mount = tmpfs.path.clone();
    let filler = mount.join("filler");
    std::fs::write(&filler, vec![0u8; 200 * 1024]).unwrap();
    let events = mount.join("events.ndjson");
    let mut agent = start(&file_sink_config(&dir.path, &events, "50ms"));
    // The file stops growing once the disk is full; the agent keeps running.
    let mut last = 0;
    wait_until("a full disk", || {
        let now = std::fs::metadata(&events).map_or(0, |m| m.len());
        let stalled = now > 0 && now == last;
        last = now;
        std::thread::sleep(Duration::from_millis(500));
        stalled
    });
    assert!(agent.child().try_wait().unwrap().is_none(), "still running on a full disk");
    let full_size = std::fs::metadata(&events).unwrap().len();
    std::fs::remove_file(&filler).unwrap();
    wait_until("writing to resume", || {
        std::fs::metadata(&events).is_ok_and(|m| m.len() > full_size + 4096)
    });
    signal(&mut agent, rustix::process::Signal::TERM);
    let out = agent.take().wait_with_output().unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    let tally: Value = serde_json::from_str(stderr.lines().last().unwrap()).unwrap();
    let sink = &tally["sinks"][0];
    assert!(sink["dropped_write_error"].as_u64().unwrap() > 0, "{tally}");
    let n = |k: &str| sink[k].as_u64().unwrap();
    assert_eq!(
        n("generated"),
        n("delivered") + n("dropped_queue_full") + n("dropped_write_error") + n("queued")
    );
    let all = whole_lines(&[events]);
    assert_eq!(
        all.len() as u64,
        n("delivered"),
        "every delivered event is a whole line in the file"
    );
}

#[test]
fn a_broken_reload_keeps_running_and_says_reload_failed() {
    if !prerequisites(&["python3"]) {
        return;
    }
    let dir = ScratchDir::new("reload");
    let events = dir.path.join("events.ndjson");
    let config = file_sink_config(&dir.path, &events, "100ms");
    let mut agent = start(&config);
    wait_until("agent_started", || {
        std::fs::read_to_string(&events).is_ok_and(|t| t.contains("agent_started"))
    });
    std::fs::write(&config, "[agent]\ninterval = \"100ms\"\nbogus = true\n").unwrap();
    signal(&mut agent, rustix::process::Signal::HUP);
    wait_until("reload_failed", || {
        std::fs::read_to_string(&events).is_ok_and(|t| t.contains("reload_failed"))
    });
    let text = std::fs::read_to_string(&events).unwrap();
    let failed: Value = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|e| e["event"]["action"] == "reload_failed")
        .unwrap();
    assert!(
        failed["sockwatch"]["error"]
            .as_str()
            .unwrap()
            .contains("sockwatch.toml:3:1: unknown field `bogus`"),
        "{failed}"
    );
    assert_eq!(failed["event"]["outcome"], "failure", "{failed}");
    // Still scanning: a new connection after the failed reload is reported.
    let (_p, inode) = crate::util::loopback_listener();
    wait_until("the listener", || {
        std::fs::read_to_string(&events).is_ok_and(|t| t.contains(&format!("\"inode\":{inode},")))
    });
    signal(&mut agent, rustix::process::Signal::TERM);
    let output = agent.take().wait_with_output().unwrap();
    assert!(output.status.success());
    // With events going to a file only, the journal still hears of it.
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("\"sockwatch\":\"reload_failed\"") && l.contains("bogus")),
        "{stderr}"
    );
}

fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

#[test]
fn metrics_are_served_on_loopback_when_configured() {
    let dir = ScratchDir::new("metrics");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let events = dir.path.join("events.ndjson");
    let config = write_config(
        &dir.path,
        &format!(
            "[agent]\ninterval = \"100ms\"\n[metrics]\nlisten = \"{addr}\"\n[[sinks]]\ntype = \"file\"\npath = \"{}\"\n",
            events.display()
        ),
    );
    let mut agent = start(&config);
    let mut body = String::new();
    wait_until("two scans in the metrics", || {
        body = std::net::TcpStream::connect(&addr)
            .map(|_| http_get(&addr, "/metrics"))
            .unwrap_or_default();
        body.lines().any(|l| {
            l.starts_with("sockwatch_scans_total ")
                && l.trim_end().rsplit(' ').next().unwrap().parse::<u64>().unwrap_or(0) >= 2
        })
    });
    assert!(body.starts_with("HTTP/1.0 200") || body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(body.contains("application/openmetrics-text"), "{body}");
    let sink = format!("file:{}", events.display());
    assert!(
        body.contains(&format!(
            "sockwatch_sink_events_total{{sink=\"{sink}\",outcome=\"generated\"}}"
        )),
        "{body}"
    );
    assert!(body.contains("sockwatch_coverage{counter=\"processes_seen\"}"), "{body}");
    assert!(body.contains("sockwatch_sink_queued{"), "{body}");
    assert!(body.trim_end().ends_with("# EOF"), "{body}");
    assert!(http_get(&addr, "/other").contains(" 404 "));
    signal(&mut agent, rustix::process::Signal::TERM);
    assert!(agent.child().wait().unwrap().success());
    // The scraper's connections to the agent are the agent's own sockets: never reported.
    let text = std::fs::read_to_string(&events).unwrap();
    assert!(!text.contains(&format!("\"port\":{port}}}")), "the metrics listener was reported");
}

#[test]
fn a_reload_adds_and_retires_sinks() {
    let dir = ScratchDir::new("resink");
    let (a, b) = (dir.path.join("a.ndjson"), dir.path.join("b.ndjson"));
    let sink = |p: &Path| {
        format!(
            "[[sinks]]\ntype = \"file\"\npath = \"{}\"\nfsync_interval = \"100ms\"\n",
            p.display()
        )
    };
    let agent_section = "[agent]\ninterval = \"100ms\"\nheartbeat = \"200ms\"\n";
    let config = write_config(&dir.path, &format!("{agent_section}{}", sink(&a)));
    let mut agent = start(&config);
    let lines = |p: &Path| std::fs::read_to_string(p).map(|t| t.lines().count()).unwrap_or(0);
    wait_until("events in a", || lines(&a) > 2);

    write_config(&dir.path, &format!("{agent_section}{}{}", sink(&a), sink(&b)));
    signal(&mut agent, rustix::process::Signal::HUP);
    wait_until("heartbeats in b", || {
        std::fs::read_to_string(&b).is_ok_and(|t| t.contains("heartbeat"))
    });
    assert!(
        std::fs::read_to_string(&a).unwrap().contains("config_reloaded"),
        "kept sinks hear of it"
    );

    write_config(&dir.path, &format!("{agent_section}{}", sink(&b)));
    signal(&mut agent, rustix::process::Signal::HUP);
    wait_until("the second reload", || {
        std::fs::read_to_string(&b).is_ok_and(|t| t.matches("config_reloaded").count() == 2)
    });
    let a_after = lines(&a);
    let b_after = lines(&b);
    wait_until("more events in b", || lines(&b) > b_after + 2);
    assert_eq!(lines(&a), a_after, "a retired sink gets nothing more");

    signal(&mut agent, rustix::process::Signal::TERM);
    let out = agent.take().wait_with_output().unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    let tally: Value = serde_json::from_str(stderr.lines().last().unwrap()).unwrap();
    let sinks = tally["sinks"].as_array().unwrap();
    assert_eq!(sinks.len(), 2, "{tally}");
    for (sink, file) in [(&sinks[0], &a), (&sinks[1], &b)] {
        let n = |k: &str| sink[k].as_u64().unwrap();
        assert!(
            sink["sink"].as_str().unwrap().ends_with(file.file_name().unwrap().to_str().unwrap()),
            "{tally}"
        );
        assert_eq!(
            n("generated"),
            n("delivered") + n("dropped_queue_full") + n("dropped_write_error") + n("queued")
        );
        assert_eq!(n("delivered") as usize, lines(file), "{tally}");
    }
}
