//! The two privilege modes. With CAP_SYS_ADMIN every namespace is dumped with sock_diag from a
//! thread that enters it; without it, namespaces with a member process fall back to
//! /proc/<pid>/net text (no unix peers) and a namespace pinned with no process cannot be read:
//! its sockets are read from a copy of their holder's fd, and both are counted. A namespace
//! nothing pins but a socket is found through that socket; with `pidfd_getfd` filtered, the
//! socket stays unresolved and counted.

use crate::scan_world::World;
use crate::util::{Document, Netns, PRELUDE, prerequisites, python_in, scan_document};
use sockwatch::model::{Direction, Protocol, SocketState, TableRead, TableSource};
use std::process::Command;

/// `sockwatch scan --format json` as root with CAP_SYS_ADMIN removed from its capability sets.
fn scan_without_sys_admin() -> Document {
    scan_through(Command::new("setpriv").args(["--bounding-set=-sys_admin", "--inh-caps=-all"]))
}

/// `sockwatch scan --format json` run by `wrapper` (which execs the rest of its arguments).
fn scan_through(wrapper: &mut Command) -> Document {
    let output = wrapper
        .arg(env!("CARGO_BIN_EXE_sockwatch"))
        .args(["scan", "--format", "json"])
        .output()
        .expect("wrapper");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("snapshot JSON")
}

/// Execs its arguments under a seccomp filter that fails `pidfd_getfd` with EPERM (what the
/// packaged unit's `~@debug` did before it allowed that one call).
const WITHOUT_PIDFD_GETFD: &str = r#"
import ctypes, os, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
LD_NR, JEQ, RET = 0x20, 0x15, 0x06
program = [(LD_NR, 0, 0, 0), (JEQ, 0, 1, 438), (RET, 0, 0, 0x00050000 | 1), (RET, 0, 0, 0x7FFF0000)]
filters = b"".join(struct.pack("HBBI", *f) for f in program)
buf = ctypes.create_string_buffer(filters)
fprog = struct.pack("HxxxxxxQ", len(program), ctypes.addressof(buf))
assert libc.prctl(38, 1, 0, 0, 0) == 0  # PR_SET_NO_NEW_PRIVS
assert libc.prctl(22, 2, ctypes.c_char_p(fprog), 0, 0) == 0, ctypes.get_errno()  # SECCOMP_MODE_FILTER
os.execv(sys.argv[1], sys.argv[1:])
"#;

/// tests/fixtures/unpinned_shell.py: a shell whose connection is in a namespace only sockets
/// keep alive. Its facts: shell pid, the shell's socket, the far end's port, the namespace.
pub(crate) fn unpinned_shell() -> (crate::util::Running, serde_json::Value) {
    let mut command = Command::new("python3");
    command.args(["-c", include_str!("fixtures/unpinned_shell.py")]);
    let (running, line) = crate::util::Running::spawn_with_line(command);
    (running, serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}")))
}

#[test]
fn a_namespace_nothing_pins_is_found_through_its_socket() {
    if !prerequisites(&["python3", "setpriv"]) {
        return;
    }
    let (_shell, facts) = unpinned_shell();
    let (inode, netns) = (facts["inode"].as_u64().unwrap(), facts["netns"].as_u64().unwrap());
    let port = facts["port"].as_u64().unwrap() as u16;
    let shell = facts["shell"].as_i64().unwrap() as i32;

    // With CAP_SYS_ADMIN: the namespace is dumped, listener and all.
    let doc = scan_document();
    let socket = doc.socket(inode);
    assert_eq!((socket.key.netns, socket.source), (netns, TableSource::SockDiag));
    assert_eq!(
        (socket.state, socket.remote.map(|r| r.port)),
        (SocketState::Established, Some(port))
    );
    assert_eq!(doc.holders(inode), vec![(shell, 0), (shell, 1), (shell, 2)]);
    assert_eq!(doc.direction(inode), Direction::Outbound, "the listener is in the dump");
    let info = doc.snapshot.namespaces.iter().find(|n| n.inode == netns).expect("namespace listed");
    assert_eq!((info.processes, info.pinned, info.tables), (0, false, TableRead::SockDiag));
    assert!(doc.snapshot.coverage.namespaces_unpinned >= 1);

    // Without it: what the socket tells of itself.
    let doc = scan_without_sys_admin();
    let socket = doc.socket(inode);
    assert_eq!((socket.key.netns, socket.source), (netns, TableSource::HeldFd));
    assert_eq!(
        (socket.state, socket.remote.map(|r| r.port)),
        (SocketState::Established, Some(port))
    );
    assert_eq!(socket.protocol, Protocol::Tcp);
    assert_eq!(doc.holders(inode), vec![(shell, 0), (shell, 1), (shell, 2)]);
    assert!(doc.snapshot.coverage.sockets_resolved_from_fd >= 1);

    // Without pidfd_getfd: held, unresolved, counted.
    let doc = scan_through(Command::new("python3").args(["-c", WITHOUT_PIDFD_GETFD]));
    let socket = doc.socket(inode);
    assert_eq!((socket.key.netns, socket.source), (0, TableSource::Unresolved));
    assert_eq!(socket.protocol, Protocol::Tcp, "from the sockprotoname xattr");
    assert_eq!(doc.holders(inode), vec![(shell, 0), (shell, 1), (shell, 2)]);
    assert!(doc.snapshot.coverage.sockets_ungrabbable >= 1);
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
    // The table is out of reach; the socket is read from a copy of its holder's fd.
    let socket = doc.socket(inode);
    assert_eq!((socket.source, socket.key.netns), (TableSource::HeldFd, pinned.inode()));
    assert_eq!((socket.protocol.clone(), socket.state), (Protocol::Tcp, SocketState::Listen));
    assert_eq!(doc.holders(inode), vec![(pid, fd)]);
    let coverage = &doc.snapshot.coverage;
    assert!(
        coverage.namespaces_unreadable >= 1 && coverage.sockets_resolved_from_fd >= 1,
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
