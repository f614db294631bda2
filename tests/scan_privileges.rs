//! The two privilege modes. With CAP_SYS_ADMIN every namespace is dumped with sock_diag from a
//! thread that enters it; without it, namespaces with a member process fall back to
//! /proc/<pid>/net text (no unix peers) and a namespace pinned with no process cannot be read:
//! its sockets stay unresolved, and both are counted.

use crate::scan_world::World;
use crate::util::{Document, Netns, PRELUDE, prerequisites, python_in, scan_document};
use sockwatch::model::{Protocol, TableRead, TableSource};
use std::process::Command;

/// `sockwatch scan --format json` as root with CAP_SYS_ADMIN removed from its capability sets.
fn scan_without_sys_admin() -> Document {
    let output = Command::new("setpriv")
        .args(["--bounding-set=-sys_admin", "--inh-caps=-all"])
        .arg(env!("CARGO_BIN_EXE_sockwatch"))
        .args(["scan", "--format", "json"])
        .output()
        .expect("setpriv");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("snapshot JSON")
}

/// A process holding a listener it created inside `pinned` before going back to its own
/// namespace: `pinned` is then held only by its /run/netns bind mount.
struct Stray {
    _holder: crate::util::Running,
    _home: Netns,
    inode: u64,
    pid: i32,
    fd: i32,
}

fn socket_in_a_namespace_without_processes(pinned: &Netns) -> Stray {
    let home = Netns::new();
    let program = format!(
        "{PRELUDE}
back = os.open('/proc/self/ns/net', os.O_RDONLY)
there = os.open('/run/netns/{}', os.O_RDONLY)
assert libc.setns(there, 0x40000000) == 0
l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen()
assert libc.setns(back, 0x40000000) == 0
print(json.dumps({{'pid': os.getpid(), 'fd': l.fileno(), 'inode': os.fstat(l.fileno()).st_ino}}), flush=True)
sys.stdin.read()
",
        pinned.name
    );
    let (running, facts) = python_in(&home, &program);
    Stray {
        _holder: running,
        _home: home,
        inode: facts["inode"].as_u64().unwrap(),
        pid: facts["pid"].as_i64().unwrap() as i32,
        fd: facts["fd"].as_i64().unwrap() as i32,
    }
}

#[test]
fn a_namespace_pinned_without_processes_is_dumped_with_cap_sys_admin() {
    if !prerequisites(&["ip", "python3"]) {
        return;
    }
    let pinned = Netns::new();
    let stray = socket_in_a_namespace_without_processes(&pinned);
    let (inode, pid, fd) = (stray.inode, stray.pid, stray.fd);
    let doc = scan_document();
    let info = doc.snapshot.namespaces.iter().find(|n| n.inode == pinned.inode()).unwrap();
    assert_eq!((info.processes, info.pinned, info.tables), (0, true, TableRead::SockDiag));
    let socket = doc.socket(inode);
    assert_eq!(socket.key.netns, pinned.inode());
    assert_eq!(doc.holders(inode), vec![(pid, fd)]);
}

#[test]
fn without_cap_sys_admin_what_cannot_be_read_is_counted_not_dropped() {
    if !prerequisites(&["ip", "python3", "setpriv"]) {
        return;
    }
    let pinned = Netns::new();
    let stray = socket_in_a_namespace_without_processes(&pinned);
    let (inode, pid, fd) = (stray.inode, stray.pid, stray.fd);
    let doc = scan_without_sys_admin();
    assert!(!doc.snapshot.privileges.sys_admin && doc.snapshot.privileges.sys_ptrace);
    let info = doc.snapshot.namespaces.iter().find(|n| n.inode == pinned.inode()).unwrap();
    assert_eq!(info.tables, TableRead::Unreadable);
    let socket = doc.socket(inode);
    assert_eq!(socket.source, TableSource::Unresolved);
    assert_eq!(socket.key.netns, 0);
    assert_eq!(socket.protocol, Protocol::Tcp, "from the sockprotoname xattr");
    assert_eq!(doc.holders(inode), vec![(pid, fd)]);
    let coverage = &doc.snapshot.coverage;
    assert!(
        coverage.namespaces_unreadable >= 1 && coverage.sockets_unresolved >= 1,
        "{coverage:?}"
    );
}

#[test]
fn without_cap_sys_admin_other_namespaces_are_read_from_proc_text() {
    if !prerequisites(&["ip", "python3", "setpriv", "ss"]) {
        return;
    }
    let world = World::start();
    let doc = scan_without_sys_admin();
    let info = doc.snapshot.namespaces.iter().find(|n| n.inode == world.netns_inode).unwrap();
    assert_eq!(info.tables, TableRead::ProcNet);
    let listener = doc.socket(world.inode("listener_inode"));
    assert_eq!((listener.source, listener.key.netns), (TableSource::ProcNet, world.netns_inode));
    assert_eq!(doc.holders(world.inode("accepted_inode")).len(), 1);
    // Text tables have no unix peers: the socketpair is there, unlinked.
    let pair = doc.socket(world.inode("pair_inode"));
    assert_eq!(pair.unix.as_ref().unwrap().peer, None);
    assert!(doc.snapshot.coverage.namespaces_proc_net >= 1);
    assert_eq!(crate::scan_world::our_holders(&doc, world.netns_inode), world.ss_holders());
}
