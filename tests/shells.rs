//! Real shells on loopback for the detection tests: the far end (tests/fixtures/catcher.py in some
//! mode), the scenario run in a process group of its own, and one check shared by every
//! detection test: the shell is proven to work (a command round trip) before anything is
//! asserted, then exactly one new incident names it, raised in the first scan that saw it
//! (`latency_scans` 0), with the expected rules, top-most process, relay and endpoints.

use crate::agent::Agent;
use serde_json::Value;
use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CATCHER: &str = include_str!("fixtures/catcher.py");
pub(crate) const DGRAM_SHELL: &str = include_str!("fixtures/dgram_shell.py");
const URING_SHELL: &str = include_str!("fixtures/uring_shell.py");

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
        Catcher::spawn(args, &[("CATCHER_COMMAND", command)])
    }

    fn spawn(args: &[&str], env: &[(&str, &str)]) -> Catcher {
        let mut child = Command::new("python3")
            .envs(env.iter().copied())
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

    pub(crate) fn pid(&self) -> i32 {
        self.0.id() as i32
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // Processes that left the group (setsid) are its descendants: killed by pid.
        let descendants = descendants(self.pid());
        if let Some(group) = rustix::process::Pid::from_raw(self.pid()) {
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        }
        for pid in descendants.into_iter().filter_map(rustix::process::Pid::from_raw) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
        let _ = self.0.wait();
    }
}

/// `pid` and every process descending from it, from /proc.
pub(crate) fn descendants(pid: i32) -> HashSet<i32> {
    let mut parent_of: Vec<(i32, i32)> = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // The field after the parenthesised comm (which may hold spaces and parentheses).
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { continue };
        if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok()) {
            parent_of.push((child, ppid));
        }
    }
    let mut found = HashSet::from([pid]);
    loop {
        let before = found.len();
        for &(child, parent) in &parent_of {
            if found.contains(&parent) {
                found.insert(child);
            }
        }
        if found.len() == before {
            return found;
        }
    }
}

/// A loopback port nothing listens on now, below the ephemeral range like the ports bind shells
/// use (4444, 31337): with the listener gone before any scan sees it (`nc -l -e` closes it on
/// accept), direction rests on the port range alone.
pub(crate) fn free_port() -> u16 {
    // Never the same port twice in one run: each case's events are told apart by port.
    static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let offset = NEXT.fetch_add(37, std::sync::atomic::Ordering::Relaxed) as u32;
    let start = 20_000 + (std::process::id() % 5_000 + offset) % 12_000;
    (start..32_000)
        .chain(20_000..start)
        .map(|p| p as u16)
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .expect("a free port between 20000 and 32000")
}

pub(crate) fn is_incident_for(e: &Value, port: u16) -> bool {
    e["event"]["kind"] == "alert" && e["destination"]["port"] == port
}

/// File names of the processes in a list of process objects.
pub(crate) fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["executable"].as_str().or(p["name"].as_str()))
        .map(|p| p.rsplit('/').next().unwrap_or(p).to_string())
        .collect()
}

/// Incidents already reported: a port can come round again (the kernel reuses ephemeral ports),
/// and an earlier case's incident must not be taken for this one's.
fn known_incidents(agent: &Agent) -> HashSet<String> {
    agent
        .events()
        .iter()
        .filter(|e| e["event"]["kind"] == "alert")
        .filter_map(|e| e["sockwatch"]["incident"]["id"].as_str().map(str::to_string))
        .collect()
}

/// Where a scenario's far end sits, and how the test reaches it.
#[derive(Clone, Copy)]
pub(crate) enum Far {
    /// A TCP listener the shell connects to (`PORT`).
    Tcp,
    /// The same, on the port `FIXED` (below the ephemeral range), closing its listener right
    /// after the accept.
    TcpOnce,
    /// A UDP socket the shell sends to.
    Udp,
    /// The shell listens on `PORT`; the test connects to it.
    Bind,
    /// The shell listens on `PORT`; the test connects to it from source port `SRC`.
    BindFrom,
    /// Two listeners: the shell reads commands from `PORT` and answers on `PORT2`.
    Split,
    /// The shell listens on `PORT` for commands and answers on the test's `PORT2`.
    SplitMixed,
    /// Raw ICMP, tagged with `TOKEN`.
    Icmp,
    /// Raw frames on lo, tagged with `TOKEN`.
    Packet,
}

/// One attack scenario and what its incident must say.
pub(crate) struct Case {
    pub name: &'static str,
    pub far: Far,
    /// A bash command line; `PORT`, `PORT2`, `FIXED`, `SRC`, `SRC2`, `HOP`, `DIR`, `TOKEN`,
    /// `RELAY` (tests/fixtures/dgram_shell.py), `URING` (tests/fixtures/uring_shell.py) are
    /// replaced.
    pub script: &'static str,
    /// The line the far end sends (default: `echo SOCKW""ATCH-READY`).
    pub send: Option<&'static str>,
    /// File name of the incident's top-most process, one of these.
    pub subject: &'static [&'static str],
    /// Rules that must be among the incident's.
    pub rules: &'static [&'static str],
    /// A relay whose name must be on the path (for relayed shells).
    pub relay: Option<&'static str>,
    /// Relays the path must hold at least.
    pub min_relays: usize,
    /// Ports the incident must name among its endpoints (`PORT`, `PORT2`, `HOP`); none: it is
    /// found by its processes.
    pub endpoints: &'static [&'static str],
}

impl Case {
    pub(crate) const fn new(name: &'static str, far: Far, script: &'static str) -> Case {
        Case {
            name,
            far,
            script,
            send: None,
            subject: &[],
            rules: &[],
            relay: None,
            min_relays: 0,
            endpoints: &["PORT"],
        }
    }
}

/// The ports and names a case's script uses.
struct Placeholders(Vec<(&'static str, String)>);

impl Placeholders {
    fn port(&self, name: &str) -> Option<u16> {
        self.0.iter().find(|(k, _)| *k == name).and_then(|(_, v)| v.parse().ok())
    }

    fn fill(&self, script: &str) -> String {
        // Longest names first: PORT2 before PORT.
        let mut filled = script.to_string();
        let mut names: Vec<&(&str, String)> = self.0.iter().collect();
        names.sort_by_key(|(k, _)| std::cmp::Reverse(k.len()));
        for (k, v) in names {
            filled = filled.replace(k, v);
        }
        filled
    }
}

/// Runs one case against a running agent; returns its `incident_opened`, or what went wrong.
pub(crate) fn check(agent: &Agent, case: &Case) -> Result<Value, String> {
    let earlier = known_incidents(agent);
    let dir = crate::util::ScratchDir::new("case");
    let relay_path = dir.path.join("dgram_shell.py");
    std::fs::write(&relay_path, DGRAM_SHELL).unwrap();
    let uring_path = dir.path.join("uring_shell.py");
    std::fs::write(&uring_path, URING_SHELL).unwrap();
    static CASES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = CASES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let token = format!("{}x{n}", std::process::id());
    let mut values: Vec<(&'static str, String)> = vec![
        ("DIR", dir.path.display().to_string()),
        ("RELAY", relay_path.display().to_string()),
        ("URING", uring_path.display().to_string()),
        ("TOKEN", token.clone()),
    ];
    // Fixed ports only for the cases that use them: each is a free port taken from a shared
    // range.
    let fixed = matches!(case.far, Far::TcpOnce);
    for key in ["FIXED", "SRC", "SRC2", "HOP"] {
        if case.script.contains(key)
            || (key == "FIXED" && fixed)
            || (key == "SRC" && matches!(case.far, Far::BindFrom))
        {
            values.push((key, free_port().to_string()));
        }
    }
    let value = |values: &Vec<(&str, String)>, k: &str| {
        values.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()).unwrap()
    };
    let env: Vec<(&str, &str)> = case.send.map(|s| ("CATCHER_SEND", s)).into_iter().collect();
    let start = |args: &[&str]| Catcher::spawn(args, &env);
    let (catcher, _shell);
    match case.far {
        Far::Tcp | Far::Udp | Far::TcpOnce | Far::Split => {
            catcher = match case.far {
                Far::Tcp => start(&["tcp-listen"]),
                Far::Udp => start(&["udp-listen"]),
                Far::TcpOnce => start(&["tcp-listen-once", &value(&values, "FIXED")]),
                _ => start(&["split-listen"]),
            };
            values.push(("PORT", catcher.port().to_string()));
            if matches!(case.far, Far::Split) {
                values.push(("PORT2", catcher.wait("port2").expect("second port").to_string()));
            }
            _shell = Group::start(&Placeholders(values.clone()).fill(case.script));
        }
        Far::SplitMixed => {
            // The far end listens for answers first; it retries connecting to the shell.
            let port = free_port().to_string();
            values.push(("PORT", port.clone()));
            catcher = start(&["split-mixed", &port]);
            values.push(("PORT2", catcher.wait("port2").expect("second port").to_string()));
            _shell = Group::start(&Placeholders(values.clone()).fill(case.script));
        }
        Far::Bind | Far::BindFrom => {
            let port = free_port().to_string();
            values.push(("PORT", port.clone()));
            _shell = Group::start(&Placeholders(values.clone()).fill(case.script));
            catcher = match case.far {
                Far::Bind => start(&["tcp-connect", &port]),
                _ => start(&["tcp-connect", &port, &value(&values, "SRC")]),
            };
        }
        Far::Icmp | Far::Packet => {
            let mode = if matches!(case.far, Far::Icmp) { "icmp" } else { "packet" };
            catcher = start(&[mode, &token]);
            catcher.wait("port");
            _shell = Group::start(&Placeholders(values.clone()).fill(case.script));
        }
    }
    let placeholders = Placeholders(values);
    if catcher.wait("ready").is_none() {
        return Err("the shell never answered (scenario broken, not detection)".into());
    }
    let ports: Vec<u16> = case.endpoints.iter().filter_map(|k| placeholders.port(k)).collect();
    let ours = |e: &Value| {
        let new = e["sockwatch"]["incident"]["id"].as_str().is_some_and(|id| !earlier.contains(id));
        if !new || e["event"]["kind"] != "alert" {
            return false;
        }
        match ports.is_empty() {
            false => endpoint_ports(e).iter().any(|p| ports.contains(p)),
            true => {
                let group = descendants(_shell.pid());
                let members = e["sockwatch"]["incident"]["processes"].as_array().cloned();
                members
                    .into_iter()
                    .flatten()
                    .any(|p| p["pid"].as_i64().is_some_and(|pid| group.contains(&(pid as i32))))
            }
        }
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let opened = loop {
        let found = agent
            .events()
            .into_iter()
            .find(|e| ours(e) && e["event"]["action"] == "incident_opened");
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
    let events: Vec<Value> = agent.events().into_iter().filter(|e| ours(e)).collect();
    let id = &opened["sockwatch"]["incident"]["id"];
    let mut problems = Vec::new();
    let opened_count = events.iter().filter(|e| e["event"]["action"] == "incident_opened").count();
    if opened_count != 1 || events.iter().any(|e| &e["sockwatch"]["incident"]["id"] != id) {
        let story: Vec<String> = events
            .iter()
            .map(|e| {
                // Each endpoint's socket and how it was judged: what the next failure needs
                // to say why one shell made two incidents.
                let endpoints: Vec<String> = e["sockwatch"]["incident"]["endpoints"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| {
                        format!(
                            "{}:{} {} {} {}/{} {}->{}",
                            p["netns"],
                            p["inode"],
                            p["protocol"],
                            p["state"],
                            p["direction"],
                            p["direction_source"],
                            p["local"]["port"],
                            p["remote"]["port"]
                        )
                    })
                    .collect();
                format!(
                    "{} {} seq {} by {} ports {:?} {} rules {} reason {} endpoints {endpoints:?}",
                    e["event"]["action"],
                    e["sockwatch"]["incident"]["id"],
                    e["sockwatch"]["snapshot"]["seq"],
                    e["sockwatch"]["incident"]["opened_by"],
                    endpoint_ports(e),
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
    let last = events.last().unwrap_or(&opened);
    let subject_of = |e: &Value| names(&Value::Array(vec![e["process"].clone()]));
    let expected = |names: &[String]| case.subject.iter().any(|s| names.iter().any(|n| n == s));
    let subject = subject_of(&opened);
    // A scan can land between a relay putting the connection on its own stdio and its exec of
    // the shell (python's pty.spawn forks after the dup2s): the relay rightly opens the
    // incident, and the shell joining it at the next scan is named by the update.
    let relay_first = case.relay.is_some_and(|r| subject.iter().any(|n| n.starts_with(r)))
        && last["event"]["action"] == "incident_updated"
        && expected(&subject_of(last));
    if !case.subject.is_empty() && !expected(&subject) && !relay_first {
        problems.push(format!("subject {subject:?}, expected one of {:?}", case.subject));
    }
    let rules: Vec<&str> =
        last["rule"]["id"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    if rules.is_empty() || case.rules.iter().any(|r| !rules.contains(r)) {
        problems.push(format!("rules {rules:?}, expected at least {:?}", case.rules));
    }
    let relays = names(&last["sockwatch"]["incident"]["relay"]["relays"]);
    if let Some(relay) = case.relay
        && !relays.iter().any(|r| r.starts_with(relay))
    {
        problems.push(format!("relay path {relays:?} lacks {relay}"));
    }
    if relays.len() < case.min_relays {
        problems.push(format!("relay path {relays:?}, expected at least {}", case.min_relays));
    }
    let named = endpoint_ports(last);
    if let Some(missing) = ports.iter().find(|p| !named.contains(p)) {
        problems.push(format!("endpoints {named:?} lack port {missing}"));
    }
    if problems.is_empty() { Ok(opened) } else { Err(problems.join("; ")) }
}

/// Every port an alert names: its own source and destination, and each endpoint's.
pub(crate) fn endpoint_ports(e: &Value) -> Vec<u16> {
    let mut ports = Vec::new();
    let mut add = |v: &Value| {
        if let Some(p) = v.as_u64() {
            ports.push(p as u16);
        }
    };
    add(&e["destination"]["port"]);
    add(&e["source"]["port"]);
    for endpoint in e["sockwatch"]["incident"]["endpoints"].as_array().into_iter().flatten() {
        add(&endpoint["local"]["port"]);
        add(&endpoint["remote"]["port"]);
    }
    ports
}

/// Starts an agent with `run --interval 250ms --no-baseline`, runs every case and fails with
/// each one that was missed.
pub(crate) fn run_cases(cases: &[Case]) {
    let agent = Agent::start(&["--interval", "250ms", "--no-baseline"]);
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|case| check(&agent, case).err().map(|why| format!("{}: {why}", case.name)))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} shells missed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
