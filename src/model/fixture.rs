//! Hand-built snapshots for unit tests of the pure modules (graph, diff, event): their cases are
//! stated as data; the integration tests cover the same ground on real processes.

use super::{
    AccessMode, Endpoint, Exe, Family, Fd, FdTarget, Holder, NetnsInfo, ProcKey, Process, Protocol,
    RawText, Snapshot, Socket, SocketKey, SocketState, TableRead, TableSource, UnixInfo,
};

pub(crate) const NETNS: u64 = 4026531840;

/// A root-owned binary at `path` on the host, as a package installs it.
pub(crate) fn exe(path: &str, ino: u64) -> Exe {
    Exe {
        path: RawText::from(path),
        deleted: false,
        memfd: false,
        dev: 1,
        ino,
        owner_uid: 0,
        mode: 0o755,
        size: 1000 + ino,
        identity: None,
        host_file: Some(true),
    }
}

#[derive(Default)]
pub(crate) struct Builder {
    snapshot: Snapshot,
}

impl Builder {
    pub fn new() -> Self {
        let mut b = Builder::default();
        b.snapshot.own_netns = NETNS;
        b.snapshot.namespaces.push(NetnsInfo {
            inode: NETNS,
            tables: TableRead::SockDiag,
            reused: false,
            processes: 0,
            pinned: false,
            ephemeral_ports: Some((32768, 60999)),
            time_wait: 0,
        });
        b
    }

    pub fn process(&mut self, pid: i32, comm: &str) -> ProcKey {
        let key = ProcKey { pid, start_ticks: 100 + pid as u64 };
        self.snapshot.processes.push(Process {
            key,
            ppid: 1,
            uid: 0,
            euid: 0,
            gid: 0,
            egid: 0,
            comm: RawText::from(comm),
            exe: None,
            argv: vec![RawText::from(comm)],
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

    pub fn fd(&mut self, proc: ProcKey, num: i32, mode: AccessMode, target: FdTarget) {
        self.snapshot.fds.push(Fd { proc, tid: None, num, io_uring_slot: None, mode, target });
    }

    /// A pipe: `writer` holds the write end on `w`, `reader` the read end on `r`.
    pub fn pipe(&mut self, inode: u64, writer: (ProcKey, i32), reader: (ProcKey, i32)) {
        self.fd(writer.0, writer.1, AccessMode::Write, FdTarget::Pipe { inode });
        self.fd(reader.0, reader.1, AccessMode::Read, FdTarget::Pipe { inode });
    }

    pub fn inet(
        &mut self,
        inode: u64,
        protocol: Protocol,
        local: &str,
        remote: &str,
        state: SocketState,
    ) -> SocketKey {
        let key = SocketKey { netns: NETNS, inode };
        let endpoint = |s: &str| {
            let addr: std::net::SocketAddr = s.parse().expect("socket address");
            Endpoint::new(addr.ip(), addr.port())
        };
        let local = endpoint(local);
        let family = if local.addr.is_ipv4() { Family::Inet } else { Family::Inet6 };
        let mut socket = Socket::new(key, family, protocol, state, TableSource::SockDiag);
        socket.local = Some(local);
        socket.remote = Some(endpoint(remote));
        self.snapshot.sockets.push(socket);
        key
    }

    /// An established outbound TCP connection held by `holder` on `fd`.
    pub fn connection(&mut self, inode: u64, holder: ProcKey, fd: i32) -> SocketKey {
        let key = self.inet(
            inode,
            Protocol::Tcp,
            "127.0.0.1:45000",
            "127.0.0.1:4444",
            SocketState::Established,
        );
        self.fd(holder, fd, AccessMode::Unknown, FdTarget::Socket { inode });
        key
    }

    pub fn unix_pair(&mut self, a: (u64, ProcKey, i32), b: (u64, ProcKey, i32)) {
        for ((inode, proc, fd), peer) in [(a, b.0), (b, a.0)] {
            let key = SocketKey { netns: NETNS, inode };
            let mut socket = Socket::new(
                key,
                Family::Unix,
                Protocol::Stream,
                SocketState::Established,
                TableSource::SockDiag,
            );
            socket.unix =
                Some(UnixInfo { name: RawText::default(), peer: Some(peer), shutdown: 0 });
            self.snapshot.sockets.push(socket);
            self.fd(proc, fd, AccessMode::Unknown, FdTarget::Socket { inode });
        }
    }

    pub fn snapshot_mut(&mut self) -> &mut Snapshot {
        &mut self.snapshot
    }

    /// Sorts as the scanner does and fills socket holders from the fds.
    pub fn build(mut self) -> Snapshot {
        let s = &mut self.snapshot;
        s.processes.sort_by_key(|p| p.key);
        s.fds.sort_by_key(|f| (f.proc, f.tid, f.num));
        s.sockets.sort_by_key(|x| x.key);
        for fd in &s.fds {
            if let FdTarget::Socket { inode } = fd.target
                && let Some(socket) = s.sockets.iter_mut().find(|x| x.key.inode == inode)
            {
                socket.holders.push(Holder {
                    proc: fd.proc,
                    tid: None,
                    fd: fd.num,
                    io_uring_slot: None,
                });
            }
        }
        self.snapshot
    }
}
