//! The snapshot of a small world of real processes built inside a namespace the test creates,
//! checked object by object and against `ss`.

use crate::util::{Netns, Running, prerequisites, run, scan_document};
use serde_json::Value;
use sockwatch::model::{AccessMode, Direction, FdTarget, SocketState, TableRead, TableSource, Via};
use std::collections::BTreeSet;

/// The fixture world running in a namespace of its own.
pub struct World {
    netns: Netns,
    pub netns_inode: u64,
    _process: Running,
    facts: Value,
}

impl World {
    pub fn start() -> World {
        let netns = Netns::new();
        let mut command = netns.command("python3");
        command.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/world.py"));
        let (process, line) = Running::spawn_with_line(command);
        let facts: Value = serde_json::from_str(&line).expect("world facts");
        World { netns_inode: netns.inode(), netns, _process: process, facts }
    }

    fn int(&self, key: &str) -> i64 {
        self.facts[key].as_i64().unwrap_or_else(|| panic!("fact {key}"))
    }

    fn pid(&self, key: &str) -> i32 {
        self.int(key) as i32
    }

    pub fn inode(&self, key: &str) -> u64 {
        self.int(key) as u64
    }
}

#[test]
fn world_snapshot_has_every_holder_direction_and_link() {
    if !prerequisites(&["ip", "python3", "sleep"]) {
        return;
    }
    let world = World::start();
    let doc = scan_document();
    assert_eq!(doc.format, "sockwatch-snapshot/1");
    let server = world.pid("server_pid");
    let client = world.pid("client_pid");

    // TCP: listener, accepted end, client end; keyed by the namespace the test made.
    let listener = doc.socket(world.inode("listener_inode"));
    assert_eq!(listener.key.netns, world.netns_inode);
    assert_eq!(listener.state, SocketState::Listen);
    assert_eq!(doc.holders(listener.key.inode), vec![(server, world.int("listener_fd") as i32)]);
    assert_eq!(doc.direction(listener.key.inode), Direction::Listening);

    let accepted = doc.socket(world.inode("accepted_inode"));
    assert_eq!(accepted.state, SocketState::Established);
    assert_eq!(doc.holders(accepted.key.inode), vec![(server, world.int("accepted_fd") as i32)]);
    assert_eq!(doc.direction(accepted.key.inode), Direction::Inbound);
    let verdict = doc.derived.directions.iter().find(|d| d.inode == accepted.key.inode).unwrap();
    assert_eq!(verdict.source, sockwatch::model::DirectionSource::Listener);
    assert_eq!(verdict.netns, world.netns_inode);
    assert_eq!(accepted.remote.unwrap().port, world.int("client_port") as u16);

    let client_end = doc.socket(world.inode("client_inode"));
    assert_eq!(doc.holders(client_end.key.inode), vec![(client, world.int("client_fd") as i32)]);
    assert_eq!(doc.direction(client_end.key.inode), Direction::Outbound);
    assert_eq!(client_end.remote.unwrap().port, world.int("port") as u16);
    assert_eq!(client_end.key.netns, world.netns_inode);

    // Connected UDP.
    let udp = doc.socket(world.inode("udp_inode"));
    assert_eq!(udp.state, SocketState::Established);
    assert_eq!(doc.direction(udp.key.inode), Direction::Outbound);
    assert_eq!(udp.remote.unwrap().port, world.int("port") as u16);

    // An AF_INET6 socket connected to ::ffff:127.0.0.1 is shown as IPv4, the mapping remembered.
    let mapped = doc.socket(world.inode("mapped_inode"));
    assert_eq!(mapped.family, sockwatch::model::Family::Inet6);
    let remote = mapped.remote.unwrap();
    assert_eq!((remote.addr.to_string(), remote.v4_mapped), ("127.0.0.1".to_string(), true));
    assert!(mapped.local.unwrap().v4_mapped);

    // Unix socketpair across two processes: each end names the other as peer.
    let here = doc.socket(world.inode("pair_inode"));
    let there = doc.socket(world.inode("pair_there_inode"));
    assert_eq!(here.unix.as_ref().unwrap().peer, Some(there.key.inode));
    assert_eq!(there.unix.as_ref().unwrap().peer, Some(here.key.inode));
    assert_eq!(doc.holders(there.key.inode), vec![(client, world.int("pair_there_fd") as i32)]);

    // Pipe between two processes: one inode, the write end in the client, the read end here.
    let read_end = doc.fd(server, world.int("pipe_r_fd") as i32);
    let write_end = doc.fd(client, world.int("pipe_w_fd") as i32);
    assert_eq!(read_end.target, FdTarget::Pipe { inode: world.inode("pipe_inode") });
    assert_eq!(write_end.target, read_end.target);
    assert_eq!((read_end.mode, write_end.mode), (AccessMode::Read, AccessMode::Write));

    // Pty: the master here (index from fdinfo), the slave on the child's 0, 1, 2, one devpts.
    let FdTarget::PtyMaster { pty: master } = doc.fd(server, world.int("master_fd") as i32).target
    else {
        panic!("master fd is not a pty master")
    };
    assert_eq!(master.index, world.int("tty_index") as u32);
    assert!(master.devpts.is_some(), "devpts instance of the master");
    let on_pty = world.pid("on_pty_pid");
    for num in 0..=2 {
        assert_eq!(doc.fd(on_pty, num).target, FdTarget::PtySlave { pty: master });
    }

    // Stdio relay: the pty child reaches the server's network sockets through the pty, the piped
    // child through its stdin pipe; both with the server as the first relay. The walk goes on
    // past the server: what the client writes into the pipe and the socketpair can come out of
    // the pty, and what goes into the pty can go on through the socketpair to the client, so the
    // pty child's stdio also reaches the client's connection, through the server and the client.
    // The server's own stdin is a pipe from this test binary, which holds pipes to other tests'
    // processes: routes that leave the world through it are other tests' business.
    let client = world.pid("client_pid");
    let in_world = |l: &sockwatch::model::StdioLink| {
        l.relays.iter().all(|r| [server, client].contains(&r.pid))
    };
    let links_of = |pid: i32, fd: i32| {
        doc.stdio_links()
            .into_iter()
            .filter(move |l| l.proc.pid == pid && l.fd == fd)
            .filter(in_world)
    };
    for fd in 0..=2 {
        let routes: BTreeSet<(u64, Vec<i32>)> = links_of(on_pty, fd)
            .inspect(|l| assert_eq!(l.via, Via::Pty))
            .map(|l| (l.socket.inode, l.relays.iter().map(|r| r.pid).collect()))
            .collect();
        let mut expected: BTreeSet<(u64, Vec<i32>)> =
            ["listener_inode", "accepted_inode", "udp_inode", "mapped_inode"]
                .iter()
                .map(|k| (world.inode(k), vec![server]))
                .collect();
        expected.insert((world.inode("client_inode"), vec![server, client]));
        assert_eq!(routes, expected, "pty child fd {fd}");
    }
    let piped = world.pid("piped_pid");
    assert_eq!(doc.fd(piped, 0).target, FdTarget::Pipe { inode: world.inode("piped_pipe_inode") });
    let piped_links: Vec<_> = links_of(piped, 0).collect();
    assert!(!piped_links.is_empty(), "piped child's stdin reaches the server's sockets");
    assert!(piped_links.iter().all(|l| l.via == Via::Pipe && l.relays[0].pid == server));
    assert!((0..=2).all(|fd| !doc.truncated(on_pty, fd) && !doc.truncated(piped, fd)));

    // The namespace is listed, read with sock_diag (the test runs with CAP_SYS_ADMIN).
    let info = doc.snapshot.namespaces.iter().find(|n| n.inode == world.netns_inode).unwrap();
    assert_eq!(info.tables, sockwatch::model::TableRead::SockDiag);
    assert!(info.pinned);
    assert_eq!(doc.process(server).netns, Some(world.netns_inode));
}

impl World {
    /// `ss -tuaxnpe` inside the namespace: (inode, pid, fd) for tcp, udp and unix sockets.
    pub fn ss_holders(&self) -> BTreeSet<(u64, i32, i32)> {
        ss_holders(&self.netns)
    }
}

/// Our (inode, pid, fd) set for the tcp, udp and unix sockets of one namespace.
pub fn our_holders(doc: &crate::util::Document, netns: u64) -> BTreeSet<(u64, i32, i32)> {
    doc.snapshot
        .sockets
        .iter()
        .filter(|s| s.key.netns == netns)
        .filter(|s| {
            use sockwatch::model::Protocol::*;
            matches!(s.protocol, Tcp | Udp | Stream | Dgram | Seqpacket)
        })
        .flat_map(|s| s.holders.iter().map(move |h| (s.key.inode, h.proc.pid, h.fd)))
        .collect()
}

fn ss_holders(netns: &Netns) -> BTreeSet<(u64, i32, i32)> {
    let out = run(netns.command("ss").args(["-tuaxnpeH"]));
    let mut set = BTreeSet::new();
    for line in out.lines() {
        let columns: Vec<&str> = line.split_whitespace().collect();
        // Unix rows show the inode where inet rows show the local port; inet rows carry `ino:`.
        // (The world binds no unix names, so no path with spaces shifts the columns.)
        let inode = if columns[0].starts_with("u_") {
            columns[5]
        } else {
            let Some(inode) = columns.iter().find_map(|w| w.strip_prefix("ino:")) else { continue };
            inode
        };
        let inode: u64 = inode.parse().expect("ino");
        if inode == 0 {
            continue;
        }
        let Some(users) = line.split("users:(").nth(1) else { continue };
        for holder in users.split("),(") {
            let field = |name: &str| -> i32 {
                let start = holder.find(&format!("{name}=")).expect(name) + name.len() + 1;
                holder[start..]
                    .split(|c: char| !c.is_ascii_digit())
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap()
            };
            set.insert((inode, field("pid"), field("fd")));
        }
    }
    set
}

#[test]
fn holders_in_a_namespace_equal_what_ss_reports() {
    if !prerequisites(&["ip", "python3", "ss"]) {
        return;
    }
    let world = World::start();
    let doc = scan_document();
    let ours = our_holders(&doc, world.netns_inode);
    let theirs = world.ss_holders();
    assert!(!ours.is_empty());
    assert_eq!(ours, theirs, "ours (left) vs ss -tuaxnpe (right)");
}

/// Both table interfaces on the same namespace: the holder sets agree with each other and with
/// ss; only sock_diag knows unix peers.
#[test]
fn proc_text_tables_and_sock_diag_agree_on_holders() {
    if !prerequisites(&["ip", "python3", "ss"]) {
        return;
    }
    let world = World::start();
    let by_diag = scan_document();
    let output = crate::util::sockwatch(&["scan", "--format", "json", "--tables", "proc"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let by_text: crate::util::Document = serde_json::from_slice(&output.stdout).unwrap();
    for (doc, read) in [(&by_diag, TableRead::SockDiag), (&by_text, TableRead::ProcNet)] {
        let info = doc.snapshot.namespaces.iter().find(|n| n.inode == world.netns_inode).unwrap();
        assert_eq!(info.tables, read);
        let own = doc.snapshot.namespaces.iter().find(|n| n.inode == doc.snapshot.own_netns);
        assert_eq!(own.unwrap().tables, read);
    }
    let (diag, text) =
        (our_holders(&by_diag, world.netns_inode), our_holders(&by_text, world.netns_inode));
    assert_eq!(diag, text);
    assert_eq!(text, world.ss_holders());
    let pair = world.inode("pair_inode");
    assert!(by_diag.socket(pair).unix.as_ref().unwrap().peer.is_some());
    assert_eq!(by_text.socket(pair).unix.as_ref().unwrap().peer, None);
    assert_eq!(by_text.socket(world.inode("listener_inode")).source, TableSource::ProcNet);
}
