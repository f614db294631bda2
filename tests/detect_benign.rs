//! What must not alert: the legitimate look-alikes of a reverse shell, each run for real next to
//! an agent under `run --interval 250ms` for eight scans once it is up. An ssh login, commands
//! run over ssh (what configuration management does), `git clone` and `rsync` over ssh, shells in
//! tmux and screen running a network client, `curl | sh`, `echo | nc`, an inetd-style `cat`,
//! `tail -F log | nc`, `python3 -m http.server`, a supervisor whose worker logs through a shipper
//! holding a connection (in its fd table, or only in an io_uring), and an ICMP monitor.

use crate::agent::Agent;
use crate::shells::{Catcher, Group, descendants, endpoint_ports, free_port};
use crate::sshd::Sshd;
use crate::util::{KillOnDrop, ScratchDir, prerequisites};
use serde_json::Value;
use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A root login through `ssh -tt` (a pty on the server side: an interactive login shell), proven
/// by a command round trip.
struct Login {
    _client: KillOnDrop,
    output: Arc<Mutex<Vec<u8>>>,
}

impl Login {
    fn start(sshd: &Sshd) -> Login {
        let mut command = Command::new("sh");
        command.args(["-c", &format!("exec {} -tt root@127.0.0.1", sshd.ssh())]);
        let mut client = KillOnDrop::new(
            command
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
        Login { _client: client, output }
    }

    fn ready(&self) -> bool {
        wait(|| self.output.lock().unwrap().windows(15).any(|w| w == b"SOCKWATCH-READY"))
    }
}

/// A multiplexer server of its own (tmux or screen) whose shell runs `nc` to `port`.
struct Multiplexer {
    stop: Vec<String>,
}

impl Multiplexer {
    fn tmux(port: u16) -> Multiplexer {
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
        Multiplexer { stop: vec!["tmux".into(), "-L".into(), socket, "kill-server".into()] }
    }

    fn screen(port: u16) -> Multiplexer {
        let name = format!("sockwatch-test-{}", std::process::id());
        let screen = |args: &[&str]| {
            let status = Command::new("screen").args(args).status();
            assert!(status.is_ok_and(|s| s.success()), "screen {args:?}");
        };
        screen(&["-dmS", &name, "-c", "/dev/null", "bash", "--norc", "-i"]);
        std::thread::sleep(Duration::from_millis(300));
        screen(&["-S", &name, "-X", "stuff", &format!("nc 127.0.0.1 {port}\nhello\n")]);
        Multiplexer { stop: vec!["screen".into(), "-S".into(), name, "-X".into(), "quit".into()] }
    }
}

impl Drop for Multiplexer {
    fn drop(&mut self) {
        let _ = Command::new(&self.stop[0]).args(&self.stop[1..]).status();
    }
}

/// Waits up to 15 s for `done`.
fn wait(done: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn exists(path: &Path) -> impl Fn() -> bool + '_ {
    move || path.exists()
}

/// What a scenario is recognised by in alerts: ports it uses, processes it started.
struct Watched {
    name: &'static str,
    ports: Vec<u16>,
    roots: Vec<i32>,
}

#[test]
fn legitimate_look_alikes_raise_no_alert() {
    if !prerequisites(&[
        "python3",
        "nc",
        "curl",
        "tmux",
        "screen",
        "sshd",
        "ssh",
        "ssh-keygen",
        "git",
        "rsync",
        "ping",
        "tail",
        "systemd-socket-activate",
    ]) {
        return;
    }
    let agent = Agent::start(&["--interval", "250ms", "--no-baseline"]);
    let dir = ScratchDir::new("benign");
    let file = |name: &str| dir.path.join(name);
    let mut watched: Vec<Watched> = Vec::new();
    let mut ready: Vec<(&str, bool)> = Vec::new();
    let watch = |name, ports: &[u16], roots: &[i32]| Watched {
        name,
        ports: ports.to_vec(),
        roots: roots.to_vec(),
    };

    let mut sshd = Sshd::start();
    let sshd_pid = sshd.pid();
    watched.push(watch("sshd and its sessions", &[sshd.port], &[sshd_pid]));
    let login = Login::start(&sshd);
    ready.push(("ssh login", login.ready()));

    let command = Group::start(&format!(
        "{} root@127.0.0.1 'sh -c \"touch {}; sleep 60\"'",
        sshd.ssh(),
        file("ssh-command").display()
    ));
    watched.push(watch("ssh host 'sh -c …'", &[], &[command.pid()]));
    ready.push(("ssh command", wait(exists(&file("ssh-command")))));

    let repo = file("repo");
    let init = format!(
        "git init -q {r} && git -C {r} -c user.email=t@t -c user.name=t commit -q --allow-empty -m x",
        r = repo.display()
    );
    assert!(Command::new("sh").args(["-c", &init]).status().unwrap().success(), "git init");
    let clone = Group::start(&format!(
        "GIT_SSH_COMMAND='{}' git clone -q ssh://root@127.0.0.1{} {}",
        sshd.ssh(),
        repo.display(),
        file("clone").display()
    ));
    let clone_started = wait(exists(&sshd.path("packing")));
    watched.push(watch("git clone over ssh", &[], &[clone.pid()]));
    ready.push(("git clone", clone_started));

    std::fs::write(file("big.bin"), vec![7u8; 256 * 1024]).unwrap();
    std::fs::create_dir_all(file("rsync-to")).unwrap();
    let rsync = Group::start(&format!(
        "rsync -e '{}' --bwlimit=4 root@127.0.0.1:{} {}/",
        sshd.ssh(),
        file("big.bin").display(),
        file("rsync-to").display()
    ));
    let rsync_to = file("rsync-to");
    let copying = || std::fs::read_dir(&rsync_to).is_ok_and(|mut d| d.next().is_some());
    ready.push(("rsync", wait(copying)));
    watched.push(watch("rsync over ssh", &[], &[rsync.pid()]));

    let tmux_far = Catcher::start(&["quiet-listen"]);
    let _tmux = Multiplexer::tmux(tmux_far.port());
    watched.push(watch("a shell in tmux running nc", &[tmux_far.port()], &[]));
    ready.push(("tmux nc", tmux_far.wait("ready").is_some()));

    let screen_far = Catcher::start(&["quiet-listen"]);
    let _screen = Multiplexer::screen(screen_far.port());
    watched.push(watch("a shell in screen running nc", &[screen_far.port()], &[]));
    ready.push(("screen nc", screen_far.wait("ready").is_some()));

    let script_server = Catcher::start(&["http-slow"]);
    let curl_port = script_server.port();
    let curl = Group::start(&format!("curl -s http://127.0.0.1:{curl_port}/x | sh"));
    watched.push(watch("curl | sh", &[curl_port], &[curl.pid()]));
    ready.push(("curl | sh", script_server.wait("ready").is_some()));

    let stats_server = Catcher::start(&["quiet-listen"]);
    let stats_port = stats_server.port();
    let stats = Group::start(&format!("echo stats | nc 127.0.0.1 {stats_port}"));
    watched.push(watch("echo stats | nc", &[stats_port], &[stats.pid()]));
    ready.push(("echo stats | nc", stats_server.wait("ready").is_some()));

    let inetd_port = free_port();
    let inetd =
        Group::start(&format!("systemd-socket-activate --inetd -a -l 127.0.0.1:{inetd_port} cat"));
    let inetd_client = Catcher::start(&["echo-connect", &inetd_port.to_string()]);
    watched.push(watch("systemd-socket-activate --inetd cat", &[inetd_port], &[inetd.pid()]));
    ready.push(("inetd cat", inetd_client.wait("ready").is_some()));

    let shipper = Catcher::start(&["quiet-listen"]);
    let log = file("app.log");
    std::fs::write(&log, "").unwrap();
    let tail =
        Group::start(&format!("tail -F {} | nc 127.0.0.1 {}", log.display(), shipper.port()));
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(&log, "a log line\n").unwrap();
    watched.push(watch("tail -F log | nc", &[shipper.port()], &[tail.pid()]));
    ready.push(("tail -F | nc", shipper.wait("ready").is_some()));

    let http_port = free_port();
    let http = Group::start(&format!(
        "cd {} && exec python3 -m http.server --bind 127.0.0.1 {http_port}",
        dir.path.display()
    ));
    let browser = Catcher::start(&["hold-connect", &http_port.to_string()]);
    watched.push(watch("python3 -m http.server", &[http_port], &[http.pid()]));
    ready.push(("http.server", browser.wait("ready").is_some()));

    let collector = Catcher::start(&["quiet-listen"]);
    let supervisor = Group::start(&format!(
        "exec python3 -c 'import subprocess\n\
         shipper = subprocess.Popen([\"nc\", \"127.0.0.1\", \"{}\"], stdin=subprocess.PIPE)\n\
         worker = subprocess.Popen([\"sh\", \"-c\", \"while true; do echo working; sleep 0.2; done\"],\n\
             stdin=subprocess.DEVNULL, stdout=shipper.stdin)\n\
         worker.wait()'",
        collector.port()
    ));
    watched.push(watch(
        "a supervised worker logging through nc",
        &[collector.port()],
        &[supervisor.pid()],
    ));
    ready.push(("supervisor", collector.wait("ready").is_some()));

    let ring_collector = Catcher::start(&["quiet-listen"]);
    let forwarder = file("uring_shell.py");
    std::fs::write(&forwarder, include_str!("fixtures/uring_shell.py")).unwrap();
    let ring_supervisor = Group::start(&format!(
        "sh -c 'while true; do echo working; sleep 0.2; done' | exec python3 {} registered {} forward",
        forwarder.display(),
        ring_collector.port()
    ));
    watched.push(watch(
        "a worker logging through a forwarder whose connection is in an io_uring",
        &[ring_collector.port()],
        &[ring_supervisor.pid()],
    ));
    ready.push(("io_uring forwarder", ring_collector.wait("ready").is_some()));

    let pinged = file("pinged");
    let ping = Group::start(&format!(
        "ping -i 0.2 127.0.0.1 | sh -c 'while read line; do echo \"$line\" > {}; done'",
        pinged.display()
    ));
    watched.push(watch("ping into a shell loop", &[], &[ping.pid()]));
    ready.push(("ping", wait(exists(&pinged))));

    let broken: Vec<&str> = ready.iter().filter(|(_, up)| !up).map(|(name, _)| *name).collect();
    assert!(broken.is_empty(), "scenarios that never came up: {broken:?}");
    // Eight scans with everything in place.
    std::thread::sleep(Duration::from_secs(2));
    let events = agent.events();
    let alerts: Vec<&Value> = events.iter().filter(|e| e["event"]["kind"] == "alert").collect();
    let false_alarms: Vec<String> = watched
        .iter()
        .filter_map(|w| {
            let ours: HashSet<i32> = w.roots.iter().flat_map(|&r| descendants(r)).collect();
            let hits: Vec<&&Value> = alerts
                .iter()
                .filter(|e| {
                    endpoint_ports(e).iter().any(|p| w.ports.contains(p))
                        || incident_pids(e).iter().any(|p| ours.contains(p))
                })
                .collect();
            (!hits.is_empty()).then(|| {
                format!("{}: {:?}", w.name, hits.iter().map(|e| &e["message"]).collect::<Vec<_>>())
            })
        })
        .collect();
    assert!(false_alarms.is_empty(), "false alarms:\n{}", false_alarms.join("\n"));
    drop((
        command,
        clone,
        rsync,
        curl,
        stats,
        inetd,
        tail,
        http,
        supervisor,
        ring_supervisor,
        ping,
    ));
}

/// Every process an alert names: its subject, its members and the socket's holders.
fn incident_pids(e: &Value) -> Vec<i32> {
    let mut pids = Vec::new();
    let mut add = |v: &Value| pids.extend(v.as_i64().map(|p| p as i32));
    add(&e["process"]["pid"]);
    for p in e["sockwatch"]["incident"]["processes"].as_array().into_iter().flatten() {
        add(&p["pid"]);
    }
    for h in e["sockwatch"]["socket"]["holders"].as_array().into_iter().flatten() {
        add(&h["pid"]);
    }
    pids
}
