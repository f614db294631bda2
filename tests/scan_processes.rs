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
