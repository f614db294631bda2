//! Sockets a process holds that no table the scan read lists. Their namespace is one no process
//! is in and nothing mounts (the holder entered it, connected, and went back: only the socket
//! keeps it alive), or one the scan could not read. With the right to trace the holder, the agent
//! takes a copy of its fd (`pidfd_getfd`) and asks the socket for its namespace (`SIOCGSKNS`);
//! with CAP_SYS_ADMIN it dumps that namespace like any other, without it it asks the socket for
//! its own addresses and state. The copy is closed at once: nothing is read from or written to
//! the socket, and the holder's fd table is not touched.

use super::netns::{TableInterface, read_unpinned};
use crate::model::{
    Coverage, Endpoint, Family, NetnsInfo, Protocol, Socket, SocketState, TableRead, TableSource,
};
use rustix::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use rustix::net::{AddressFamily, SocketAddrAny, sockopt};
use rustix::process::{Pid, PidfdFlags, PidfdGetfdFlags, pidfd_getfd, pidfd_open};
use std::collections::BTreeMap;

/// Sockets resolved per scan at most: each costs a handful of syscalls, and a host with many
/// (a namespace the scan cannot read at all) must not make every scan pay for all of them.
const MAX_PER_SCAN: usize = 64;

/// `SIOCGSKNS` (linux/sockios.h): an fd of the socket's network namespace.
const SIOCGSKNS: libc::c_ulong = 0x894C;

/// Sockets found in a namespace the scan reads that its tables do not list (a vsock, an
/// AF_ALG socket: kinds no table has), kept so that later scans do not copy them again.
#[derive(Default)]
pub(crate) struct Unlisted {
    untabled: rustc_hash::FxHashSet<u64>,
}

impl Unlisted {
    /// Resolves the unresolved sockets among `sockets` that it can; the namespaces it dumped
    /// join `infos`.
    pub(crate) fn resolve(
        &mut self,
        proc_dir: BorrowedFd<'_>,
        sockets: &mut Vec<Socket>,
        infos: &mut Vec<NetnsInfo>,
        can_setns: bool,
        interface: TableInterface,
        coverage: &mut Coverage,
    ) {
        let still: rustc_hash::FxHashSet<u64> = sockets
            .iter()
            .filter(|s| s.source == TableSource::Unresolved)
            .map(|s| s.key.inode)
            .collect();
        self.untabled.retain(|inode| still.contains(inode));
        let untabled = &mut self.untabled;
        resolve_unlisted(proc_dir, sockets, infos, (can_setns, interface), untabled, coverage);
    }
}

/// `read` lists the namespaces whose tables the scan read: a socket of one of those is of a kind
/// no table lists (remembered in `untabled`) or was made after the read (the next scan has it).
fn resolve_unlisted(
    proc_dir: BorrowedFd<'_>,
    sockets: &mut Vec<Socket>,
    infos: &mut Vec<NetnsInfo>,
    (can_setns, interface): (bool, TableInterface),
    untabled: &mut rustc_hash::FxHashSet<u64>,
    coverage: &mut Coverage,
) {
    let read: Vec<u64> =
        infos.iter().filter(|i| i.tables != TableRead::Unreadable).map(|i| i.inode).collect();
    let mut by_namespace: BTreeMap<u64, (OwnedFd, Vec<(usize, OwnedFd)>)> = BTreeMap::new();
    let unresolved: Vec<usize> = (0..sockets.len())
        .filter(|&at| sockets[at].source == TableSource::Unresolved)
        .filter(|&at| !untabled.contains(&sockets[at].key.inode))
        .take(MAX_PER_SCAN)
        .collect();
    for at in unresolved {
        let socket = &sockets[at];
        let Some(holder) = socket.holders.iter().find(|h| h.io_uring_slot.is_none()) else {
            continue;
        };
        let grabbed =
            copy_of_socket(holder.tid.unwrap_or(holder.proc.pid), holder.fd, socket.key.inode);
        let Ok(copy) = grabbed else {
            coverage.sockets_ungrabbable += 1;
            continue;
        };
        let Ok((ns, ns_fd)) = namespace_of(copy.as_fd()) else {
            coverage.sockets_ungrabbable += 1;
            continue;
        };
        if read.contains(&ns) {
            untabled.insert(socket.key.inode);
            continue;
        }
        by_namespace.entry(ns).or_insert_with(|| (ns_fd, Vec::new())).1.push((at, copy));
    }
    if by_namespace.is_empty() {
        return;
    }
    let mut replaced: Vec<(usize, Socket)> = Vec::new();
    let mut added: Vec<Socket> = Vec::new();
    let dumped = match can_setns {
        true => {
            let wanted = by_namespace.iter().filter_map(|(ns, (fd, _))| {
                Some((*ns, rustix::io::fcntl_dupfd_cloexec(fd, 0).ok()?))
            });
            read_unpinned(proc_dir, wanted.collect(), interface)
        }
        false => Vec::new(),
    };
    for (info, table) in dumped {
        let Some((_, held)) = by_namespace.remove(&info.inode) else { continue };
        coverage.inode0_rows += table.inode0_rows;
        coverage.time_wait += table.time_wait;
        coverage.table_errors += table.errors;
        for mut row in table.rows {
            row.key.netns = info.inode;
            match held.iter().find(|(at, _)| sockets[*at].key.inode == row.key.inode) {
                Some((at, _)) => {
                    row.holders = std::mem::take(&mut sockets[*at].holders);
                    coverage.sockets_resolved_unpinned += 1;
                    replaced.push((*at, row));
                }
                None => {
                    coverage.sockets_unowned += 1;
                    added.push(row);
                }
            }
        }
        coverage.namespaces_unpinned += 1;
        match infos.iter_mut().find(|i| i.inode == info.inode) {
            // Known but unreadable (a mount pins it, and entering it through that failed).
            Some(known) => {
                known.tables = info.tables;
                known.ephemeral_ports = info.ephemeral_ports;
                known.time_wait = info.time_wait;
            }
            None => infos.push(info),
        }
    }
    // What no dump covered (no CAP_SYS_ADMIN, or the namespace went): the socket itself.
    for (ns, (_, held)) in by_namespace {
        for (at, copy) in held {
            if let Some(mut socket) = from_socket(copy.as_fd(), &sockets[at]) {
                socket.key.netns = ns;
                socket.holders = std::mem::take(&mut sockets[at].holders);
                coverage.sockets_resolved_from_fd += 1;
                replaced.push((at, socket));
            }
        }
    }
    coverage.sockets_unresolved -= replaced.len() as u64;
    for (at, socket) in replaced {
        coverage.sockets_resolved += socket.holders.len() as u64;
        sockets[at] = socket;
    }
    sockets.append(&mut added);
    super::join::sort_by_key_in_place(sockets);
    infos.sort_by_key(|i| i.inode);
}

/// A copy of fd `fd` of `pid`, if it is still socket `inode`.
pub(super) fn copy_of_socket(pid: i32, fd: i32, inode: u64) -> rustix::io::Result<OwnedFd> {
    let pid = Pid::from_raw(pid).ok_or(rustix::io::Errno::SRCH)?;
    // PIDFD_THREAD: the pid may be a thread with a private fd table, whose fds pidfd_getfd
    // reaches only through a pidfd of that thread.
    let pidfd = pidfd_open(pid, PidfdFlags::from_bits_retain(libc::O_EXCL as u32))
        .or_else(|_| pidfd_open(pid, PidfdFlags::empty()))?;
    let copy = pidfd_getfd(&pidfd, fd, PidfdGetfdFlags::empty())?;
    match rustix::fs::fstat(&copy)?.st_ino == inode {
        true => Ok(copy),
        false => Err(rustix::io::Errno::STALE),
    }
}

/// The network namespace of a socket: its inode and an fd of it.
fn namespace_of(socket: BorrowedFd<'_>) -> rustix::io::Result<(u64, OwnedFd)> {
    // SAFETY: SIOCGSKNS takes no argument and returns a new fd, which is owned from here on.
    let raw = unsafe { libc::ioctl(socket.as_raw_fd(), SIOCGSKNS as _, 0) };
    if raw < 0 {
        let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO);
        return Err(rustix::io::Errno::from_raw_os_error(errno));
    }
    // SAFETY: `raw` is a fresh fd nothing else owns.
    let ns = unsafe { OwnedFd::from_raw_fd(raw) };
    Ok((rustix::fs::fstat(&ns)?.st_ino, ns))
}

/// An internet socket's row as the socket itself tells it: its family, addresses, owner and
/// (TCP) state. Other sockets stay unresolved: their tables hold what matters (unix peers).
fn from_socket(socket: BorrowedFd<'_>, unresolved: &Socket) -> Option<Socket> {
    let family = match sockopt::socket_domain(socket).ok()? {
        AddressFamily::INET => Family::Inet,
        AddressFamily::INET6 => Family::Inet6,
        _ => return None,
    };
    let endpoint = |addr: SocketAddrAny| {
        std::net::SocketAddr::try_from(addr).ok().map(|a| Endpoint::new(a.ip(), a.port()))
    };
    let local = rustix::net::getsockname(socket).ok().and_then(endpoint);
    let remote = rustix::net::getpeername(socket).ok().flatten().and_then(endpoint);
    let protocol = match sockopt::socket_protocol(socket) {
        Ok(Some(p)) if p == rustix::net::ipproto::TCP => Protocol::Tcp,
        Ok(Some(p)) if p == rustix::net::ipproto::UDP => Protocol::Udp,
        Ok(Some(p)) if p == rustix::net::ipproto::UDPLITE => Protocol::Udplite,
        _ => unresolved.protocol.clone(),
    };
    let state = match protocol {
        Protocol::Tcp => tcp_state(socket),
        _ if remote.is_some() => SocketState::Established,
        _ => SocketState::Close,
    };
    let mut row = Socket::new(unresolved.key, family, protocol, state, TableSource::HeldFd);
    row.local = local;
    row.remote = remote;
    row.uid = rustix::fs::fstat(socket).ok().map(|st| st.st_uid);
    Some(row)
}

/// A TCP socket's state: the first byte of its `tcp_info`.
fn tcp_state(socket: BorrowedFd<'_>) -> SocketState {
    let mut info = [0u8; 8];
    let mut len = info.len() as libc::socklen_t;
    // SAFETY: the buffer and its length are valid for the call; the kernel writes at most `len`.
    let r = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    match r == 0 && len >= 1 {
        true => SocketState::from_tcp_number(info[0]),
        false => SocketState::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SocketKey;

    fn unresolved(inode: u64, protocol: Protocol) -> Socket {
        let key = SocketKey { netns: 0, inode };
        Socket::new(key, Family::Unknown, protocol, SocketState::Unknown, TableSource::Unresolved)
    }

    #[test]
    fn a_connected_socket_tells_its_own_row() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let inode = rustix::fs::fstat(&client).unwrap().st_ino;
        let me = std::process::id() as i32;
        let copy = copy_of_socket(me, client.as_raw_fd(), inode).expect("a copy of our own fd");
        let row = from_socket(copy.as_fd(), &unresolved(inode, Protocol::Other("x".into())))
            .expect("an internet socket");
        assert_eq!((row.family, row.protocol.clone()), (Family::Inet, Protocol::Tcp));
        assert_eq!(row.state, SocketState::Established);
        assert_eq!(row.remote.map(|r| r.port), Some(listener.local_addr().unwrap().port()));
        assert_eq!(row.local.map(|l| l.port), Some(client.local_addr().unwrap().port()));
        assert_eq!(row.source, TableSource::HeldFd);
        let own = rustix::fs::stat("/proc/thread-self/ns/net").unwrap().st_ino;
        assert_eq!(namespace_of(copy.as_fd()).unwrap().0, own);
    }

    #[test]
    fn a_socket_of_a_namespace_already_read_is_looked_up_once() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let inode = rustix::fs::fstat(&socket).unwrap().st_ino;
        let own = rustix::fs::stat("/proc/thread-self/ns/net").unwrap().st_ino;
        let mut held = unresolved(inode, Protocol::Udp);
        held.holders.push(crate::model::Holder {
            proc: crate::model::ProcKey { pid: std::process::id() as i32, start_ticks: 0 },
            tid: None,
            fd: socket.as_raw_fd(),
            io_uring_slot: None,
        });
        let info = NetnsInfo {
            inode: own,
            tables: TableRead::SockDiag,
            processes: 1,
            pinned: false,
            ephemeral_ports: None,
            time_wait: 0,
            reused: false,
        };
        let proc_dir =
            rustix::fs::open("/proc", rustix::fs::OFlags::DIRECTORY, rustix::fs::Mode::empty())
                .unwrap();
        let (mut unlisted, mut coverage) = (Unlisted::default(), Coverage::default());
        let mut resolve = |sockets: &mut Vec<Socket>, coverage: &mut Coverage| {
            let mut infos = vec![info.clone()];
            let interface = TableInterface::default();
            unlisted.resolve(proc_dir.as_fd(), sockets, &mut infos, false, interface, coverage);
        };
        let mut sockets = vec![held];
        resolve(&mut sockets, &mut coverage);
        // A namespace the scan read: a kind of socket its tables lack, left as it is.
        assert_eq!(sockets[0].source, TableSource::Unresolved);
        drop(socket);
        // The fd is gone: a second copy would fail and be counted; none is tried.
        resolve(&mut sockets, &mut coverage);
        assert_eq!(coverage.sockets_ungrabbable, 0);
    }

    #[test]
    fn a_reused_fd_number_is_not_taken_for_the_socket() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let inode = rustix::fs::fstat(&socket).unwrap().st_ino;
        let me = std::process::id() as i32;
        let other = copy_of_socket(me, socket.as_raw_fd(), inode + 1);
        assert_eq!(other.err(), Some(rustix::io::Errno::STALE));
        let row = from_socket(
            copy_of_socket(me, socket.as_raw_fd(), inode).unwrap().as_fd(),
            &unresolved(inode, Protocol::Udp),
        );
        assert_eq!(row.map(|r| (r.protocol, r.state)), Some((Protocol::Udp, SocketState::Close)));
    }
}
