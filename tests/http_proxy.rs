//! The HTTP sink through a forward proxy, as enterprise networks make SIEM forwarding go: a real
//! tinyproxy (the Debian package, unpacked by ./dev/test into target/test-tools) between the
//! agent and the receiver fixture. tinyproxy stamps `Via` on what it forwards, so the receiver
//! tells a proxied request from a direct one.

use crate::agent::Agent;
use crate::http_sink::{Receiver, config, connections, lanes, wait_until};
use crate::util::{Running, ScratchDir, prerequisites};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const TINYPROXY: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/target/test-tools/tinyproxy/usr/bin/tinyproxy");

/// tinyproxy on a free loopback port, asking for basic auth when given a password.
pub(crate) struct Tinyproxy {
    _process: Running,
    pub(crate) port: u16,
    log: PathBuf,
}

impl Tinyproxy {
    pub(crate) fn start(dir: &Path, name: &str, password: Option<&str>) -> Tinyproxy {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = dir.join(format!("{name}.log"));
        let auth = password.map(|p| format!("BasicAuth agent {p}\n")).unwrap_or_default();
        let conf = format!(
            "Port {port}\nListen 127.0.0.1\nTimeout 30\nMaxClients 20\nAllow 127.0.0.1\n\
             LogFile \"{}\"\nLogLevel Connect\n{auth}",
            log.display()
        );
        let path = dir.join(format!("{name}.conf"));
        std::fs::write(&path, conf).unwrap();
        let mut command = Command::new(TINYPROXY);
        command.arg("-d").arg("-c").arg(&path);
        let process = Running::spawn(command);
        wait_until("tinyproxy listening", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Tinyproxy { _process: process, port, log }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The requests tinyproxy logged (`GET http://…`, `CONNECT host:port`, …).
    pub(crate) fn requests(&self) -> Vec<String> {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        log.lines()
            .filter_map(|l| l.split_once("): ").filter(|_| l.contains("Request (")))
            .map(|(_, request)| request.to_string())
            .collect()
    }
}

pub(crate) fn tinyproxy_available() -> bool {
    crate::util::unpacked_tool(TINYPROXY)
}

/// Whether every request the receiver got since `from` came through tinyproxy, or none did.
fn proxied(receiver: &Receiver, from: usize) -> Vec<bool> {
    receiver.requests()[from..]
        .iter()
        .map(|r| r["headers"]["via"].as_str().is_some_and(|via| via.contains("tinyproxy")))
        .collect()
}

/// Runs the agent with `settings` (and `env` set for it) over a few connections, and checks that
/// every event it printed reached the receiver, with an exact accounting identity.
fn deliver(dir: &Path, receiver: &Receiver, settings: &str, env: &[&str]) -> Value {
    let state = ScratchDir::new("http-proxy-state");
    let mut wrapper = vec!["env"];
    wrapper.extend_from_slice(env);
    let agent = Agent::start_through(
        &wrapper,
        &state.path,
        &["--config", &config(dir, &receiver.url(), settings)],
    );
    connections(2);
    let (status, events, tally) = agent.stop();
    assert!(status.success(), "{tally}");
    let accepted = receiver.accepted_ids();
    for event in &events {
        assert!(accepted.contains_key(event["event"]["id"].as_str().unwrap()), "lost: {event}");
    }
    for (name, lane) in lanes(&tally) {
        assert_eq!(lane["generated"], lane["delivered"], "{name}: {lane}");
    }
    tally
}

#[test]
fn a_proxy_named_by_the_sink_or_the_environment_carries_every_event() {
    if !prerequisites(&["python3"]) || !tinyproxy_available() {
        return;
    }
    let dir = ScratchDir::new("http-proxy");
    let password = "proxy-password-do-not-print";
    crate::util::write_secret(&dir.path.join("proxy.password"), &format!("{password}\n"));
    let guarded = Tinyproxy::start(&dir.path, "guarded", Some(password));
    let open = Tinyproxy::start(&dir.path, "open", None);
    let receiver = Receiver::start(0);

    // The sink's own proxy, with credentials from a file: every request went through it, and
    // the password appears in nothing the agent wrote.
    let settings = format!(
        "proxy = \"{}\"\nproxy_auth = {{ username = \"agent\", password_file = \"{}\" }}",
        guarded.url(),
        dir.path.join("proxy.password").display()
    );
    let from = receiver.requests().len();
    let tally = deliver(&dir.path, &receiver, &settings, &[]);
    let through = proxied(&receiver, from);
    assert!(!through.is_empty() && through.iter().all(|p| *p), "{through:?}");
    assert!(guarded.requests().iter().any(|r| r.starts_with("POST http://127.0.0.1:")));
    assert!(!tally.to_string().contains(password));

    // Without the credentials the proxy answers 407: nothing passes it.
    let from = receiver.requests().len();
    let state = ScratchDir::new("http-proxy-state");
    let refused = format!("proxy = \"{}\"", guarded.url());
    let agent =
        Agent::start_in(&state.path, &["--config", &config(&dir.path, &receiver.url(), &refused)]);
    connections(2);
    let (status, _, tally) = agent.stop();
    assert!(status.success());
    assert_eq!(receiver.requests().len(), from, "a request passed a proxy without credentials");
    let lanes = lanes(&tally);
    let http = lanes.iter().filter(|(name, _)| name.starts_with("http:"));
    let (delivered, rejected) = http.fold((0, 0), |(d, r), (_, lane)| {
        (d + lane["delivered"].as_u64().unwrap(), r + lane["dropped_rejected"].as_u64().unwrap())
    });
    assert_eq!(delivered, 0, "{tally}");
    assert!(rejected > 0, "the proxy's 407 is the receiver's refusal: {tally}");

    // The environment's proxy, as a systemd drop-in's `Environment=` would set it.
    let env_proxy = format!("HTTP_PROXY={}", open.url());
    let from = receiver.requests().len();
    deliver(&dir.path, &receiver, "", &[&env_proxy]);
    let through = proxied(&receiver, from);
    assert!(!through.is_empty() && through.iter().all(|p| *p), "{through:?}");

    // NO_PROXY exempts the receiver, and `proxy = "direct"` ignores the environment.
    for (settings, env) in [
        ("", vec![env_proxy.as_str(), "NO_PROXY=127.0.0.1"]),
        ("proxy = \"direct\"", vec![env_proxy.as_str()]),
    ] {
        let from = receiver.requests().len();
        deliver(&dir.path, &receiver, settings, &env);
        let through = proxied(&receiver, from);
        assert!(
            !through.is_empty() && through.iter().all(|p| !*p),
            "{settings} {env:?}: {through:?}"
        );
    }
}
