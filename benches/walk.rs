//! The stdio relay walk on layouts an attacker builds to make it slow or blind (issue "Detection
//! that holds against an attacker who knows the design"): 1000 decoy writers on a FIFO, a
//! 1000-deep `cat` chain on each side of a shell, a pipe that 5000 processes read and write, a
//! relay holding 10 000 socketpairs. Each is timed from snapshot to graph (every stdio end
//! resolved), plus the relays of the shell's route, as an alert asks for them.
//!
//! `cargo bench --bench walk`

use criterion::{Criterion, criterion_group, criterion_main};
use sockwatch::graph::Graph;
use sockwatch::model::{
    AccessMode, Endpoint, Family, Fd, FdTarget, Holder, ProcKey, Process, Protocol, RawText,
    Snapshot, Socket, SocketKey, SocketState, TableSource, UnixInfo,
};
use std::net::{IpAddr, Ipv4Addr};

const NETNS: u64 = 4026531840;

/// A snapshot under construction.
struct World(Snapshot);

impl World {
    fn new() -> World {
        World(Snapshot { seq: 1, own_netns: NETNS, ..Snapshot::default() })
    }

    fn process(&mut self, pid: i32, name: &str) -> ProcKey {
        let key = ProcKey { pid, start_ticks: 1000 + pid as u64 };
        self.0.processes.push(Process {
            key,
            ppid: 1,
            uid: 0,
            euid: 0,
            gid: 0,
            egid: 0,
            comm: RawText::new(name),
            exe: None,
            argv: vec![RawText::new(name)],
            argv_truncated: false,
            cwd: None,
            tty_nr: 0,
            sid: pid,
            pgid: pid,
            netns: Some(NETNS),
            pidns: None,
            mntns: None,
            cgroup: None,
            container: None,
            threads: 1,
            kernel_thread: false,
            denied: false,
        });
        key
    }

    fn fd(&mut self, proc: ProcKey, num: i32, mode: AccessMode, target: FdTarget) {
        self.0.fds.push(Fd { proc, tid: None, num, io_uring_slot: None, mode, target });
    }

    fn pipe(&mut self, inode: u64, writer: (ProcKey, i32), reader: (ProcKey, i32)) {
        self.fd(writer.0, writer.1, AccessMode::Write, FdTarget::Pipe { inode });
        self.fd(reader.0, reader.1, AccessMode::Read, FdTarget::Pipe { inode });
    }

    fn socket(&mut self, mut socket: Socket, holder: ProcKey, fd: i32) {
        socket.holders.push(Holder { proc: holder, tid: None, fd, io_uring_slot: None });
        let inode = socket.key.inode;
        self.0.sockets.push(socket);
        self.fd(holder, fd, AccessMode::ReadWrite, FdTarget::Socket { inode });
    }

    fn connection(&mut self, inode: u64, holder: ProcKey, fd: i32) {
        let mut s = Socket::new(
            SocketKey { netns: NETNS, inode },
            Family::Inet,
            Protocol::Tcp,
            SocketState::Established,
            TableSource::SockDiag,
        );
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        s.local = Some(Endpoint::new(lo, 45_000));
        s.remote = Some(Endpoint::new(lo, 4444));
        self.socket(s, holder, fd);
    }

    fn done(mut self) -> Snapshot {
        self.0.processes.sort_by_key(|p| p.key);
        self.0.fds.sort_by_key(|f| (f.proc, f.tid, f.num));
        self.0.sockets.sort_by_key(|s| s.key);
        self.0
    }
}

const FIFO: u64 = 7;

/// `cat f | sh | nc > f` with 1000 idle writers on the FIFO.
fn decoy_writers() -> Snapshot {
    let mut w = World::new();
    let (cat, sh, nc) = (w.process(10, "cat"), w.process(11, "sh"), w.process(5000, "nc"));
    let fifo = FdTarget::Fifo { dev: 8, ino: FIFO, path: RawText::new("f") };
    w.fd(cat, 3, AccessMode::Read, fifo.clone());
    for i in 0..1000 {
        let idle = w.process(100 + i, "sleep");
        w.fd(idle, 1, AccessMode::Write, fifo.clone());
    }
    w.fd(nc, 1, AccessMode::Write, fifo);
    w.pipe(100, (cat, 1), (sh, 0));
    w.pipe(101, (sh, 1), (nc, 0));
    w.connection(9000, nc, 3);
    w.done()
}

/// `nc | cat ×1000 | sh | cat ×1000 | nc`.
fn deep_chains() -> Snapshot {
    let mut w = World::new();
    let sh = w.process(1, "sh");
    let mut inode = 1000;
    for (stream, first_pid) in [(0, 10_000), (1, 20_000)] {
        let mut near = (sh, stream);
        for i in 0..1000 {
            let cat = w.process(first_pid + i, "cat");
            inode += 1;
            match stream {
                0 => w.pipe(inode, (cat, 1), near),
                _ => w.pipe(inode, near, (cat, 0)),
            }
            near = (cat, if stream == 0 { 0 } else { 1 });
        }
        let nc = w.process(first_pid + 5000, "nc");
        inode += 1;
        match stream {
            0 => w.pipe(inode, (nc, 1), near),
            _ => w.pipe(inode, near, (nc, 0)),
        }
        w.connection(9000 + stream as u64, nc, 3);
    }
    w.done()
}

/// 5000 processes with stdin and stdout on one pipe; one of them holds a connection.
fn shared_pipe() -> Snapshot {
    let mut w = World::new();
    for i in 0..5000 {
        let p = w.process(100 + i, "worker");
        w.fd(p, 0, AccessMode::Read, FdTarget::Pipe { inode: 7 });
        w.fd(p, 1, AccessMode::Write, FdTarget::Pipe { inode: 7 });
        if i == 2500 {
            w.connection(9000, p, 3);
        }
    }
    w.done()
}

/// A relay holding 10 000 socketpairs (both ends), one of which is the shell's stdio, and a
/// connection.
fn socketpair_hub() -> Snapshot {
    let mut w = World::new();
    let (hub, sh) = (w.process(10, "hub"), w.process(11, "sh"));
    let pair = |w: &mut World, a: u64, b: u64, holders: [(ProcKey, i32); 2]| {
        for ((inode, peer), (holder, fd)) in [(a, b), (b, a)].into_iter().zip(holders) {
            let mut s = Socket::new(
                SocketKey { netns: NETNS, inode },
                Family::Unix,
                Protocol::Stream,
                SocketState::Established,
                TableSource::SockDiag,
            );
            s.unix = Some(UnixInfo { name: RawText::default(), peer: Some(peer), shutdown: 0 });
            w.socket(s, holder, fd);
        }
    };
    pair(&mut w, 100, 101, [(hub, 3), (sh, 0)]);
    w.fd(sh, 1, AccessMode::ReadWrite, FdTarget::Socket { inode: 101 });
    for i in 0..10_000u64 {
        let fd = 10 + 2 * i as i32;
        pair(&mut w, 1000 + 2 * i, 1001 + 2 * i, [(hub, fd), (hub, fd + 1)]);
    }
    w.connection(9000, hub, 4);
    w.done()
}

fn bench(c: &mut Criterion) {
    for (name, snapshot, shell) in [
        ("1000 decoy writers on the FIFO", decoy_writers(), 11),
        ("1000-deep chains on each side", deep_chains(), 1),
        ("a pipe shared by 5000 processes", shared_pipe(), 100),
        ("a relay holding 10000 socketpairs", socketpair_hub(), 11),
    ] {
        let graph = Graph::build(&snapshot, None);
        let end = graph.stdio.iter().find(|e| e.proc.pid == shell).expect("the shell reaches");
        let reached: Vec<usize> = graph.reached(end).collect();
        println!(
            "{name}: {} processes, {} fds; the shell's fd {} reaches {} socket(s), truncated: {}, \
             {} relays on the way",
            snapshot.processes.len(),
            snapshot.fds.len(),
            end.fd,
            reached.len(),
            graph.truncated(end),
            graph.relays(end, reached[0]).len()
        );
        c.bench_function(name, |b| {
            b.iter(|| {
                let graph = Graph::build(&snapshot, None);
                let end = graph.stdio.iter().find(|e| e.proc.pid == shell).unwrap();
                let first = graph.reached(end).next().unwrap();
                graph.relays(end, first).len()
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
