//! An internet socket no scan listed yet, resolved by its own endpoints: a copy of its holder's
//! fd (`pidfd_getfd`) tells its addresses, and sock_diag looks those up in the kernel's hash
//! tables, for its row and for the row of its other end when that is a socket of the same
//! namespace (a loopback connection's peer tells its direction, as in a scan). A dump of the
//! namespace's tables would find the same rows, but it walks every bucket of the TCP hash
//! table, some milliseconds on a host with much memory however few sockets it holds; a look at
//! a process that just executed is on the way to an alert. The copy is closed at once: nothing
//! is read from or written to the socket.

use super::sockdiag::{SockDiag, lookup_protocol_number};
use super::unlisted::copy_of_socket;
use crate::model::{Fd, Protocol, Socket};
use rustix::fd::AsFd;
use std::net::SocketAddr;

/// A sock_diag socket kept for lookups, in the namespace of the thread that opened it.
#[derive(Default)]
pub(super) struct EndpointLookup {
    diag: Option<SockDiag>,
}

impl EndpointLookup {
    /// The row of socket `inode`, held at `holder`, and its peer's when the namespace has it.
    /// `None` when it cannot be looked up this way (not an internet socket, no right to copy
    /// the fd, gone, or a kernel without the lookup): the caller dumps the tables instead.
    pub(super) fn resolve(
        &mut self,
        holder: &Fd,
        inode: u64,
        protocol: &Protocol,
    ) -> Option<(Socket, Option<Socket>)> {
        lookup_protocol_number(protocol)?;
        let (local, remote) = {
            let copy =
                copy_of_socket(holder.tid.unwrap_or(holder.proc.pid), holder.num, inode).ok()?;
            let local = std::net::SocketAddr::try_from(rustix::net::getsockname(&copy).ok()?);
            let remote = rustix::net::getpeername(copy.as_fd()).ok().flatten();
            (local.ok()?, remote.and_then(|r| SocketAddr::try_from(r).ok()))
        };
        let unspecified = SocketAddr::new(
            match local {
                SocketAddr::V4(_) => std::net::Ipv4Addr::UNSPECIFIED.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::UNSPECIFIED.into(),
            },
            0,
        );
        let diag = match &mut self.diag {
            Some(diag) => diag,
            None => self.diag.insert(SockDiag::open().ok()?),
        };
        let found = diag.lookup_inet(protocol, local, remote.unwrap_or(unspecified));
        let row = match found {
            Ok(Some(row)) if row.key.inode == inode => row,
            Ok(_) => return None,
            Err(_) => {
                // The socket may be out of step with its replies: a fresh one next time.
                self.diag = None;
                return None;
            }
        };
        let peer = match remote {
            Some(remote) => diag.lookup_inet(protocol, remote, local).ok().flatten(),
            None => None,
        };
        Some((row, peer.filter(|p| p.key.inode != inode)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AccessMode, FdTarget, ProcKey, SocketState, TableSource};
    use std::os::fd::AsRawFd;

    fn held(socket: &(impl AsFd + AsRawFd)) -> (Fd, u64) {
        let inode = rustix::fs::fstat(socket).unwrap().st_ino;
        let proc = ProcKey { pid: std::process::id() as i32, start_ticks: 1 };
        let (num, target) = (socket.as_raw_fd(), FdTarget::Socket { inode });
        let mode = AccessMode::ReadWrite;
        (Fd { proc, tid: None, num, io_uring_slot: None, mode, target }, inode)
    }

    #[test]
    fn a_loopback_connection_is_found_with_its_other_end() {
        for at in ["127.0.0.1:0", "[::1]:0"] {
            let listener = std::net::TcpListener::bind(at).unwrap();
            let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (accepted, _) = listener.accept().unwrap();
            let (fd, inode) = held(&client);
            let (_, accepted_inode) = held(&accepted);
            let mut lookup = EndpointLookup::default();
            let (row, peer) = lookup.resolve(&fd, inode, &Protocol::Tcp).expect("found");
            assert_eq!((row.key.inode, row.state), (inode, SocketState::Established));
            assert_eq!(row.source, TableSource::SockDiag);
            assert_eq!(row.local.map(|l| l.port), Some(client.local_addr().unwrap().port()));
            assert_eq!(row.remote.map(|r| r.port), Some(listener.local_addr().unwrap().port()));
            let peer = peer.expect("the accepted end");
            assert_eq!(peer.key.inode, accepted_inode);
            assert_eq!(peer.local, row.remote);
            // The same socket kept for the next lookup.
            assert!(lookup.resolve(&fd, inode, &Protocol::Tcp).is_some());
        }
    }

    #[test]
    fn a_socket_it_cannot_look_up_is_left_to_a_dump() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (fd, inode) = held(&client);
        let mut lookup = EndpointLookup::default();
        // Not the inode the fd holds (closed and reused meanwhile).
        assert!(lookup.resolve(&fd, inode + 1, &Protocol::Tcp).is_none());
        // A protocol with no lookup.
        assert!(lookup.resolve(&fd, inode, &Protocol::Stream).is_none());
        let (pair, _) = std::os::unix::net::UnixStream::pair().unwrap();
        let (fd, inode) = held(&pair);
        assert!(lookup.resolve(&fd, inode, &Protocol::Tcp).is_none());
    }

    #[test]
    fn a_connected_udp_socket_is_found() {
        let server = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        client.connect(server.local_addr().unwrap()).unwrap();
        let (fd, inode) = held(&client);
        let (row, _) =
            EndpointLookup::default().resolve(&fd, inode, &Protocol::Udp).expect("found");
        assert_eq!(row.key.inode, inode);
        assert_eq!(row.remote.map(|r| r.port), Some(server.local_addr().unwrap().port()));
    }
}
