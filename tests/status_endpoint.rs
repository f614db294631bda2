//! The metrics listener under a local user's flood: thousands of idle connections cost the agent
//! no threads, scanning goes on, and scrapes are answered again within the connection deadline;
//! `/health` says ok, or degraded and why.

use crate::util::{KillOnDrop, ScratchDir};
use serde_json::Value;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn get(addr: &str, path: &str) -> Option<String> {
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    (!response.is_empty()).then_some(response)
}

fn health(addr: &str) -> Option<(String, Value)> {
    let response = get(addr, "/health")?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_string(), serde_json::from_str(body).ok()?))
}

/// The agent's threads by name.
fn threads(pid: u32) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|n| n.trim().to_string())
        .collect();
    names.sort();
    names
}

fn wait_until<T>(what: &str, seconds: u64, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        if let Some(found) = probe() {
            return found;
        }
        assert!(Instant::now() < deadline, "no {what} within {seconds} s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn thousands_of_idle_connections_cost_no_threads_and_health_says_why_it_is_degraded() {
    let dir = ScratchDir::new("status-endpoint");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    // Nothing listens on the HTTP sink's port: that sink fails from the first event on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = dir.path.join("sockwatch.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\ninterval = \"100ms\"\nstate_dir = \"{d}/state\"\n[metrics]\nlisten = \"{addr}\"\n\
             [[sinks]]\ntype = \"file\"\npath = \"{d}/events.ndjson\"\n\
             [[sinks]]\ntype = \"http\"\nurl = \"http://127.0.0.1:{dead}/ingest\"\ntimeout = \"1s\"\n",
            d = dir.path.display()
        ),
    )
    .unwrap();
    let mut agent = KillOnDrop::new(
        Command::new(env!("CARGO_BIN_EXE_sockwatch"))
            .args(["run", "--config"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = agent.child().id();
    let (line, body) = wait_until("a degraded health", 15, || {
        health(&addr).filter(|(_, body)| body["status"] == "degraded")
    });
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    let failing = body["failing_sinks"].as_array().unwrap();
    let sink = format!("http:http://127.0.0.1:{dead}/ingest#");
    assert!(failing.iter().any(|s| s.as_str().unwrap().starts_with(&sink)), "{body}");
    assert!(body["problems"][0].as_str().unwrap().starts_with("failing sinks: "), "{body}");
    let scans_before = body["scans"].as_u64().unwrap();
    let threads_before = threads(pid);

    // A flood of idle connections, held open by the test.
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let wanted = 3100;
    if limit.current.is_some_and(|c| c < wanted) {
        let raised = rustix::process::Rlimit { current: Some(wanted), maximum: limit.maximum };
        rustix::process::setrlimit(rustix::process::Resource::Nofile, raised).unwrap();
    }
    let flood: Vec<std::net::TcpStream> =
        (0..3000).filter_map(|_| std::net::TcpStream::connect(&addr).ok()).collect();
    assert!(flood.len() >= 1000, "only {} connections opened", flood.len());
    std::thread::sleep(Duration::from_millis(500));
    // The same threads (a sink's retry may come and go), whatever the connection count.
    let threads_during = threads(pid);
    assert!(
        threads_during.len() <= threads_before.len() + 1,
        "{threads_before:?}, then {threads_during:?}"
    );

    // Scrapes are answered again within the connection deadline, flood or not, and scanning
    // never stopped.
    let (_, body) = wait_until("health during the flood", 15, || health(&addr));
    assert!(body["scans"].as_u64().unwrap() > scans_before, "{body}");
    let metrics = wait_until("metrics during the flood", 15, || get(&addr, "/metrics"));
    assert!(metrics.contains("sockwatch_scans_total"), "{metrics}");
    assert!(threads(pid).len() <= threads_before.len() + 1, "{:?}", threads(pid));
    drop(flood);

    let stop = rustix::process::Pid::from_raw(pid as i32).unwrap();
    rustix::process::kill_process(stop, rustix::process::Signal::TERM).unwrap();
    assert!(agent.child().wait().unwrap().success());
}
