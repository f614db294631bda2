//! Process identity: exe flags judged by the inode (deleted, memfd, a faked " (deleted)" name),
//! exe re-read after execve under the same key, and fds in a thread's private fd table.

use crate::util::{Netns, PRELUDE, Running, ScratchDir, prerequisites, python_in, scan_document};
use sockwatch::scan::Scanner;
use std::process::Command;

fn sleep_copy(dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::copy("/bin/sleep", &path).expect("copy sleep");
    path
}

#[test]
fn deleted_exe_is_judged_by_link_count_not_by_its_name() {
    if !prerequisites(&["sleep"]) {
        return;
    }
    let scratch = ScratchDir::new("exe");
    let dir = &scratch.path;
    let deleted = Running::spawn({
        let mut c = Command::new(sleep_copy(dir, "updater"));
        c.arg("1000");
        c
    });
    std::fs::remove_file(dir.join("updater")).unwrap();
    let spoofed = Running::spawn({
        let mut c = Command::new(sleep_copy(dir, "x (deleted)"));
        c.arg("1000");
        c
    });
    let doc = scan_document();
    let exe = doc.process(deleted.pid()).exe.as_ref().unwrap();
    assert!(exe.deleted && !exe.memfd);
    assert!(exe.path.as_bytes().ends_with(b"/updater (deleted)"));
    let exe = doc.process(spoofed.pid()).exe.as_ref().unwrap();
    assert!(exe.path.as_bytes().ends_with(b"x (deleted)"));
    assert!(!exe.deleted, "a name ending in ' (deleted)' proves nothing");
}

#[test]
fn fileless_exec_from_a_memfd_is_flagged() {
    if !prerequisites(&["python3", "ip"]) {
        return;
    }
    let netns = Netns::new();
    let program = r#"
import os, sys
fd = os.memfd_create("payload", 0)
os.write(fd, open("/bin/sleep", "rb").read())
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.execv(f"/proc/self/fd/{fd}", ["payload", "1000"])
print('{"pid": %d}' % pid, flush=True)
sys.stdin.read()
os.kill(pid, 9)
"#;
    let (_running, facts) = python_in(&netns, program);
    let doc = scan_document();
    let exe = doc.process(facts["pid"].as_i64().unwrap() as i32).exe.as_ref().unwrap();
    assert!(exe.memfd && exe.deleted, "{exe:?}");
    assert!(exe.path.as_bytes().starts_with(b"/memfd:payload"));
}

#[test]
fn exe_is_read_again_after_execve_under_the_same_key() {
    if !prerequisites(&["bash", "sleep"]) {
        return;
    }
    let mut command = Command::new("bash");
    command.args(["-c", "echo ready; read line; exec sleep 1000"]);
    let (mut shell, _) = Running::spawn_with_line(command);
    let pid = shell.pid();
    let mut scanner = Scanner::new().unwrap();
    let before = scanner.scan();
    let find = |s: &sockwatch::model::Snapshot| {
        s.processes.iter().find(|p| p.key.pid == pid).cloned().expect("shell in snapshot")
    };
    let as_bash = find(&before);
    shell.write_line("go");
    let mut as_sleep = as_bash.clone();
    for _ in 0..100 {
        as_sleep = find(&scanner.scan());
        if as_sleep.exe != as_bash.exe {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(as_sleep.key, as_bash.key, "execve keeps the process key");
    assert!(as_bash.exe.unwrap().path.as_bytes().ends_with(b"/bash"));
    assert!(as_sleep.exe.unwrap().path.as_bytes().ends_with(b"/sleep"));
    assert_eq!(as_sleep.argv.first().map(|a| a.as_bytes().to_vec()), Some(b"sleep".to_vec()));
}

#[test]
fn fds_in_a_threads_private_table_are_found() {
    if !prerequisites(&["python3", "ip"]) {
        return;
    }
    let netns = Netns::new();
    let program = format!(
        "{PRELUDE}
import threading
ready = threading.Event(); facts = {{}}
def private():
    assert libc.unshare(0x400) == 0, ctypes.get_errno()  # CLONE_FILES
    s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()
    facts.update(tid=threading.get_native_id(), fd=s.fileno(), inode=os.fstat(s.fileno()).st_ino)
    ready.set()
    time.sleep(1000)
threading.Thread(target=private, daemon=True).start()
ready.wait()
facts['pid'] = os.getpid()
print(json.dumps(facts), flush=True)
sys.stdin.read()
"
    );
    let (_running, facts) = python_in(&netns, &program);
    let doc = scan_document();
    let socket = doc.socket(facts["inode"].as_u64().unwrap());
    assert_eq!(socket.holders.len(), 1, "{:?}", socket.holders);
    let holder = socket.holders[0];
    assert_eq!(holder.proc.pid, facts["pid"].as_i64().unwrap() as i32);
    assert_eq!(holder.tid, Some(facts["tid"].as_i64().unwrap() as i32));
    assert_eq!(holder.fd, facts["fd"].as_i64().unwrap() as i32);
    assert!(doc.snapshot.coverage.threads_with_private_fds >= 1);
}

/// Working directory and cgroup are remembered between scans and read again within 16 scans;
/// argv is read again in the first scan after an exec, here one that keeps the binary and the
/// process name (only the randomised argument area moves).
#[test]
fn a_known_process_has_its_argv_after_each_exec_and_its_cwd_within_sixteen() {
    if !prerequisites(&["bash"]) {
        return;
    }
    let dir = ScratchDir::new("cwd");
    let mut command = Command::new("bash");
    command.args([
        "-c",
        "echo ready; read line; cd \"$0\"; exec -a renamed bash -c 'read line; true'",
    ]);
    command.arg(&dir.path);
    let (mut shell, _) = Running::spawn_with_line(command);
    let pid = shell.pid();
    let mut scanner = Scanner::new().unwrap();
    let find = |s: &sockwatch::model::Snapshot| {
        s.processes.iter().find(|p| p.key.pid == pid).cloned().expect("shell in snapshot")
    };
    let before = find(&scanner.scan());
    assert_ne!(
        before.cwd.as_ref().map(|c| c.as_bytes().to_vec()),
        Some(dir.path.as_os_str().as_encoded_bytes().to_vec())
    );
    shell.write_line("go");
    // The exec proves the cd happened; argv changes with it, in the very next scan that sees it.
    let mut renamed = before.clone();
    for _ in 0..200 {
        renamed = find(&scanner.scan());
        if renamed.argv.first().is_some_and(|a| a.as_bytes() == b"renamed") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(renamed.argv.first().map(|a| a.as_bytes().to_vec()), Some(b"renamed".to_vec()));
    let cwd_of = |p: &sockwatch::model::Process| p.cwd.as_ref().map(|c| c.as_bytes().to_vec());
    let wanted = Some(dir.path.as_os_str().as_encoded_bytes().to_vec());
    let scans_until_cwd = (0..17).position(|_| cwd_of(&find(&scanner.scan())) == wanted);
    assert!(scans_until_cwd.is_some(), "cwd not read again within 16 scans");
    assert_eq!(find(&scanner.scan()).pidns, before.pidns);
}

/// A process that overwrites its argv in place (no exec, no rename: what malware does to pass
/// for a kernel thread in `ps`) shows its new argv within the refresh of 16 scans.
#[test]
fn an_argv_rewritten_in_place_shows_within_sixteen_scans() {
    if !prerequisites(&["python3"]) {
        return;
    }
    let program = r#"
import sys
fields = open('/proc/self/stat').read().rsplit(')', 1)[1].split()
start, end = int(fields[45]), int(fields[46])  # arg_start, arg_end: fields 48 and 49
print('ready', flush=True)
sys.stdin.readline()
with open('/proc/self/mem', 'r+b') as mem:
    mem.seek(start)
    mem.write(b'[kworker/0:1]'.ljust(end - start, b'\0'))
sys.stdin.readline()
"#;
    let mut command = Command::new("python3");
    command.args(["-c", program, "--secret-looking-argument-padding"]);
    let (mut python, _) = Running::spawn_with_line(command);
    let pid = python.pid();
    let mut scanner = Scanner::new().unwrap();
    let argv0 = |scanner: &mut Scanner| {
        let snapshot = scanner.scan();
        let process = snapshot.processes.iter().find(|p| p.key.pid == pid).cloned().unwrap();
        process.argv.first().map(|a| a.as_bytes().to_vec()).unwrap_or_default()
    };
    assert!(argv0(&mut scanner).ends_with(b"python3"));
    python.write_line("go");
    // The rewrite is one write by a process already waiting for this line.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let scans = (0..17).position(|_| argv0(&mut scanner) == b"[kworker/0:1]");
    assert!(scans.is_some(), "argv rewritten in place not seen within 16 scans");
}

/// Credentials are remembered between scans, but a gain of root without exec (what a kernel
/// exploit's commit_creds does) shows in the very next scan.
#[test]
fn a_gain_of_root_without_exec_shows_in_the_next_scan() {
    if !prerequisites(&["python3"]) {
        return;
    }
    let program = format!(
        "{PRELUDE}
os.setresuid(1000, 1000, 0)
libc.prctl(4, 1)  # PR_SET_DUMPABLE: as an ordinary user process is
print(json.dumps({{'dropped': True}}), flush=True)
sys.stdin.readline()
os.setresuid(0, 0, 0)
print(json.dumps({{'root': True}}), flush=True)
sys.stdin.read()
"
    );
    let mut command = Command::new("python3");
    command.args(["-c", &program]);
    let (mut process, _) = Running::spawn_with_line(command);
    let pid = process.pid();
    let mut scanner = Scanner::new().unwrap();
    let ids = |s: &sockwatch::model::Snapshot| {
        let p = s.processes.iter().find(|p| p.key.pid == pid).expect("process in snapshot");
        (p.uid, p.euid)
    };
    for _ in 0..3 {
        assert_eq!(ids(&scanner.scan()), (1000, 1000));
    }
    process.write_line("escalate");
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(ids(&scanner.scan()), (0, 0), "root gained without exec, seen at once");
}
