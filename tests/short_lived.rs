//! `[agent] short_lived`: a connection that opens and closes between two scans is reported when
//! the kernel frees its socket (sock_diag's destroy notices), with its holders when an exec check
//! saw them, in a namespace the test creates (the host's carries the connections of every test
//! running alongside, up to its budget) and in the agent's own; a connection a scan listed is left
//! to the diff. Each connection carries a round trip, so it really was established.

use crate::agent::Agent;
use crate::util::{Netns, PRELUDE, Running, ScratchDir, prerequisites, python_in};
use serde_json::Value;
use std::process::{Command, Stdio};

fn action(e: &Value) -> &str {
    e["event"]["action"].as_str().unwrap_or("")
}

fn port(e: &Value, side: &str) -> Option<u64> {
    e[side]["port"].as_u64()
}

/// The `socket_short_lived` event of the end whose local port is `local` and remote `remote`.
fn is_short_lived(e: &Value, local: u64, remote: u64) -> bool {
    action(e) == "socket_short_lived"
        && ((port(e, "source") == Some(local) && port(e, "destination") == Some(remote))
            || (port(e, "source") == Some(remote) && port(e, "destination") == Some(local)))
}

/// A scan listed a socket between these ports (then the diff reports it, not a notice).
fn is_scanned(e: &Value, a: u64, b: u64) -> bool {
    action(e) == "socket_opened"
        && [port(e, "source"), port(e, "destination")].contains(&Some(a))
        && [port(e, "source"), port(e, "destination")].contains(&Some(b))
}

fn scanned(agent: &Agent, a: u64, b: u64) -> bool {
    agent.events().iter().any(|e| is_scanned(e, a, b))
}

/// A TCP connection to a listener of the same program, a round trip, then both ends closed,
/// within milliseconds; and a connected UDP socket that sends one datagram. Prints the ports.
const CONNECT_AND_CLOSE: &str = r#"
listener = socket.socket(); listener.bind(("127.0.0.1", 0)); listener.listen()
udp_server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); udp_server.bind(("127.0.0.1", 0))
client = socket.create_connection(listener.getsockname()); accepted, _ = listener.accept()
client.sendall(b"ping"); assert accepted.recv(4) == b"ping"
accepted.sendall(b"pong"); assert client.recv(4) == b"pong"
ports = {"client": client.getsockname()[1], "server": listener.getsockname()[1]}
client.close(); accepted.close()
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); udp.connect(udp_server.getsockname())
udp.send(b"x"); assert udp_server.recv(1) == b"x"
ports["udp_client"] = udp.getsockname()[1]; ports["udp_server"] = udp_server.getsockname()[1]
udp.close()
print(json.dumps(ports), flush=True)
sys.stdin.read()
"#;

/// Runs CONNECT_AND_CLOSE in `netns` until one of its connections was seen by no scan (a scan
/// that reads the tables within the milliseconds it lives reports it as opened instead): its
/// ports.
fn connect_and_close(agent: &Agent, netns: &Netns) -> (Running, Value) {
    for _ in 0..3 {
        let (running, ports) = python_in(netns, &format!("{PRELUDE}{CONNECT_AND_CLOSE}"));
        let (client, server) =
            (ports["client"].as_u64().unwrap(), ports["server"].as_u64().unwrap());
        agent.wait_for("the connection's end", |e| {
            is_short_lived(e, client, server) || is_scanned(e, client, server)
        });
        if !scanned(agent, client, server) {
            return (running, ports);
        }
    }
    panic!("three connections in a row were listed by a scan");
}

/// An agent with a scan `interval`, once it listens in `netns` (entered through a member process,
/// so the kernel's notices of the test's connections reach it): tests run side by side, and the
/// host's namespace has their connections too, which share its budget.
fn agent_hearing(netns: &Netns, interval: &str) -> (Agent, Running) {
    let (member, _) =
        python_in(netns, &format!("{PRELUDE}\nprint('{{}}', flush=True)\nsys.stdin.read()"));
    let agent = Agent::start(&["--interval", interval, "--heartbeat", "100ms"]);
    agent.wait_for("a scan that saw the namespace", |e| {
        action(e) == "heartbeat"
            && e["sockwatch"]["scans"].as_u64() >= Some(1)
            && e["sockwatch"]["short_lived"]["namespaces_watched"].as_u64() >= Some(2)
    });
    (agent, member)
}

#[test]
fn a_connection_that_opened_and_closed_between_two_scans_is_reported_from_the_kernels_notice() {
    if !prerequisites(&["python3", "ip"]) {
        return;
    }
    let netns = Netns::new();
    let (agent, _member) = agent_hearing(&netns, "5s");
    let (_program, ports) = connect_and_close(&agent, &netns);
    let (client, server) = (ports["client"].as_u64().unwrap(), ports["server"].as_u64().unwrap());
    let outbound = agent.wait_for("the client's end", |e| {
        is_short_lived(e, client, server) && port(e, "source") == Some(client)
    });
    let socket = &outbound["sockwatch"]["socket"];
    assert_eq!(socket["netns"], netns.inode(), "{outbound}");
    assert_eq!(outbound["network"]["transport"], "tcp", "{outbound}");
    assert_eq!(outbound["destination"]["port"], server, "{outbound}");
    assert_eq!(socket["table_source"], "destroy_notice", "{outbound}");
    // 4 bytes of data, plus the SYN and FIN sequence numbers.
    assert!(socket["tcp"]["bytes_acked"].as_u64() >= Some(4), "{outbound}");
    assert!(socket["tcp"]["bytes_received"].as_u64() >= Some(4), "{outbound}");
    // The program never executed anything between scans: no look saw it, and nothing invents
    // its holder.
    assert_eq!(socket["holders_known"], false, "{outbound}");
    assert!(outbound["process"].is_null(), "{outbound}");
    assert_eq!(outbound["event"]["type"], serde_json::json!(["connection", "end"]));
    agent.wait_for("the accepted end", |e| {
        is_short_lived(e, server, client) && port(e, "source") != Some(client)
    });
    let (udp_client, udp_server) =
        (ports["udp_client"].as_u64().unwrap(), ports["udp_server"].as_u64().unwrap());
    let udp =
        agent.wait_for("the connected UDP socket", |e| is_short_lived(e, udp_client, udp_server));
    assert_eq!(udp["network"]["transport"], "udp", "{udp}");
    assert!(udp["sockwatch"]["socket"]["tcp"].is_null(), "{udp}");
    let beat = agent.wait_for("a heartbeat counting them", |e| {
        action(e) == "heartbeat" && e["sockwatch"]["short_lived"]["reported"].as_u64() >= Some(3)
    });
    assert_eq!(beat["sockwatch"]["short_lived"]["listening"], true, "{beat}");
    let (status, _, _) = agent.stop();
    assert!(status.success());
}

#[test]
fn a_connection_an_exec_check_saw_held_is_reported_with_its_holders() {
    if !prerequisites(&["python3", "sh"]) {
        return;
    }
    let agent = Agent::start(&["--interval", "5s"]);
    agent.wait_for("the first scan's baseline", |e| action(e) == "baseline_summary");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let server = u64::from(listener.local_addr().unwrap().port());
    // Connects, proves the connection with a round trip, then executes a shell that keeps it
    // (fd 3) for 300 ms: the exec is what brings a look.
    let program = format!(
        "import os, socket; c = socket.create_connection(('127.0.0.1', {server})); \
         c.sendall(b'ping'); assert c.recv(4) == b'pong'; c.set_inheritable(True); \
         os.dup2(c.fileno(), 3); os.execv('/bin/sh', ['sh', '-c', 'sleep 0.3'])"
    );
    let mut child = Command::new("python3")
        .args(["-c", &program])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (mut accepted, peer) = listener.accept().unwrap();
    use std::io::{Read, Write};
    let mut ping = [0u8; 4];
    accepted.read_exact(&mut ping).unwrap();
    accepted.write_all(b"pong").unwrap();
    assert!(child.wait().unwrap().success());
    let client = u64::from(peer.port());
    let pid = child.id() as i64;
    let event = agent.wait_for("the connection's end", |e| {
        is_short_lived(e, client, server) && port(e, "source") == Some(client)
    });
    if scanned(&agent, client, server) {
        panic!("a scan listed the connection: the test did not test notices");
    }
    let socket = &event["sockwatch"]["socket"];
    assert_eq!(socket["holders_known"], true, "{event}");
    assert_eq!(socket["holders_seen_by"], "exec_check", "{event}");
    assert_eq!(event["process"]["pid"].as_i64(), Some(pid), "{event}");
    assert_eq!(event["process"]["name"], "sh", "{event}");
    assert!(socket["inode"].as_u64() > Some(0), "{event}");
    let fds = |h: &Value| h["fds"].as_array().cloned().unwrap_or_default();
    assert!(
        socket["holders"].as_array().unwrap().iter().any(|h| fds(h).contains(&3.into())),
        "{event}"
    );
    drop(accepted);
    let (status, _, _) = agent.stop();
    assert!(status.success());
}

#[test]
fn a_connection_a_scan_listed_is_left_to_the_diff() {
    if !prerequisites(&["python3"]) {
        return;
    }
    let agent = Agent::start(&["--interval", "200ms", "--heartbeat", "100ms"]);
    agent.wait_for("the first scan's baseline", |e| action(e) == "baseline_summary");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let server = u64::from(listener.local_addr().unwrap().port());
    let stream = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (accepted, _) = listener.accept().unwrap();
    let client = u64::from(stream.local_addr().unwrap().port());
    agent.wait_for("the connection opened", |e| {
        action(e) == "socket_opened" && port(e, "source") == Some(client)
    });
    drop(stream);
    drop(accepted);
    let closed = agent.wait_for("the connection closed", |e| {
        action(e) == "socket_closed" && port(e, "source") == Some(client)
    });
    let after = closed["event"]["sequence"].as_u64().unwrap();
    // The kernel's notice came before the scan that found the socket gone: by the next
    // heartbeat it has long been handled.
    agent.wait_for("a heartbeat after it", |e| {
        action(e) == "heartbeat" && e["event"]["sequence"].as_u64() > Some(after)
    });
    let events = agent.events();
    let reported: Vec<&Value> =
        events.iter().filter(|e| is_short_lived(e, client, server)).collect();
    assert!(reported.is_empty(), "reported twice: {reported:?}");
    let (status, _, _) = agent.stop();
    assert!(status.success());
}

#[test]
fn without_cap_sys_admin_other_namespaces_are_said_to_be_unheard() {
    if !prerequisites(&["python3", "ip", "setpriv"]) {
        return;
    }
    let netns = Netns::new();
    let (_member, _) =
        python_in(&netns, &format!("{PRELUDE}\nprint('{{}}', flush=True)\nsys.stdin.read()"));
    let dir = ScratchDir::new("short-lived-no-sys-admin");
    let wrapper = ["setpriv", "--bounding-set=-sys_admin", "--inh-caps=-sys_admin"];
    let agent = Agent::start_through(&wrapper, &dir.path, &["--heartbeat", "100ms"]);
    let notice = agent.wait_for("short_lived_namespaces_unwatched", |e| {
        action(e) == "short_lived_namespaces_unwatched"
    });
    assert!(notice["sockwatch"]["why"].to_string().contains("CAP_SYS_ADMIN"), "{notice}");
    assert_eq!(notice["event"]["outcome"], "failure", "{notice}");
    let beat = agent.wait_for("a heartbeat counting them", |e| {
        action(e) == "heartbeat"
            && e["sockwatch"]["short_lived"]["namespaces_unwatched"].as_u64() >= Some(1)
    });
    // The agent's own namespace is still heard.
    assert_eq!(beat["sockwatch"]["short_lived"]["listening"], true, "{beat}");
    let (status, _, _) = agent.stop();
    assert!(status.success());
}
