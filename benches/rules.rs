//! Rule evaluation cost per subject per rule (issue target: ≤ 50 ns), on a synthetic host shaped
//! like the 1000 processes / 20k sockets benchmark state: web workers holding established inbound
//! connections (most subjects, none matching) and a few reverse shells (matching several rules).
//!
//! `cargo bench --bench rules` — divide the reported time by subjects × rules (printed first).

use criterion::{Criterion, criterion_group, criterion_main};
use sockwatch::graph::Graph;
use sockwatch::model::{
    AccessMode, Endpoint, Exe, Family, Fd, FdTarget, Holder, ProcKey, Process, Protocol, RawText,
    Snapshot, Socket, SocketKey, SocketState, TableSource,
};
use sockwatch::rules::{Clock, Prepared, RuleSet, RuleSource};
use std::net::{IpAddr, Ipv4Addr};

const NETNS: u64 = 4026531840;

fn process(pid: i32, exe: &str, argv: &[&str]) -> Process {
    Process {
        key: ProcKey { pid, start_ticks: 1000 + pid as u64 },
        ppid: 1,
        uid: 0,
        euid: 0,
        gid: 0,
        egid: 0,
        comm: RawText::new(exe.rsplit('/').next().unwrap()),
        exe: Some(Exe {
            path: RawText::new(exe),
            deleted: false,
            memfd: false,
            dev: 1,
            ino: pid as u64,
            owner_uid: 0,
            mode: 0o755,
            size: 1000,
            identity: None,
            host_file: Some(true),
        }),
        argv: argv.iter().map(|a| RawText::new(*a)).collect(),
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
    }
}

fn connection(inode: u64, local: u16, remote: u16, holders: &[(ProcKey, i32)]) -> Socket {
    let key = SocketKey { netns: NETNS, inode };
    let mut s = Socket::new(
        key,
        Family::Inet,
        Protocol::Tcp,
        SocketState::Established,
        TableSource::SockDiag,
    );
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    s.local = Some(Endpoint::new(lo, local));
    s.remote = Some(Endpoint::new(lo, remote));
    s.holders = holders
        .iter()
        .map(|&(proc, fd)| Holder { proc, tid: None, fd, io_uring_slot: None })
        .collect();
    s
}

/// 990 workers with 20 inbound connections each on port 8080, 10 bash reverse shells.
fn world() -> Snapshot {
    let mut snapshot = Snapshot { seq: 1, own_netns: NETNS, ..Snapshot::default() };
    let mut inode = 10_000;
    for pid in 100..1100 {
        let shell = pid >= 1090;
        let p = if shell {
            process(pid, "/usr/bin/bash", &["bash", "-i"])
        } else {
            process(pid, "/usr/sbin/nginx", &["nginx: worker process"])
        };
        let count = if shell { 1 } else { 20 };
        for i in 0..count {
            inode += 1;
            let fds: Vec<i32> = if shell { vec![0, 1, 2, 255] } else { vec![10 + i] };
            let holders: Vec<(ProcKey, i32)> = fds.iter().map(|&fd| (p.key, fd)).collect();
            let (local, remote) =
                if shell { (40_000 + pid as u16, 4444) } else { (8080, 40_000 + i as u16) };
            snapshot.sockets.push(connection(inode, local, remote, &holders));
            for fd in fds {
                let target = FdTarget::Socket { inode };
                snapshot.fds.push(Fd {
                    proc: p.key,
                    tid: None,
                    num: fd,
                    io_uring_slot: None,
                    mode: AccessMode::ReadWrite,
                    target,
                });
            }
        }
        snapshot.processes.push(p);
    }
    // The workers' port is served by a listener: their connections are inbound.
    let listener_key = ProcKey { pid: 99, start_ticks: 1 };
    snapshot.processes.insert(0, process(99, "/usr/sbin/nginx", &["nginx: master process"]));
    let mut listener = connection(1, 8080, 0, &[(listener_key, 6)]);
    listener.state = SocketState::Listen;
    listener.remote = None;
    snapshot.sockets.insert(0, listener);
    snapshot.fds.insert(
        0,
        Fd {
            proc: listener_key,
            tid: None,
            num: 6,
            io_uring_slot: None,
            mode: AccessMode::ReadWrite,
            target: FdTarget::Socket { inode: 1 },
        },
    );
    snapshot
}

fn bench(c: &mut Criterion) {
    let rules = RuleSet::compile(RuleSource::embedded()).expect("the built-in pack compiles");
    let snapshot = world();
    let graph = Graph::build(&snapshot, None);
    let prepared = Prepared::new(&graph, Clock::default());
    let enabled = rules.enabled().count();
    let matches = rules.count_matches(&prepared);
    println!(
        "{} subjects x {enabled} rules = {} evaluations per iteration ({matches} match)",
        prepared.len(),
        prepared.len() * enabled
    );
    c.bench_function("default pack on 20k subjects", |b| b.iter(|| rules.count_matches(&prepared)));
    c.bench_function("subjects from the graph", |b| {
        b.iter(|| Prepared::new(&graph, Clock::default()).len())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
