//! Socket tables from /proc/<pid>/net text files: the fallback where sock_diag is unavailable,
//! and the only source for ping (icmp), packet and netlink sockets.

use super::parse::{
    ByteOrder, parse_inet_line, parse_netlink_line, parse_packet_line, parse_unix_line,
};
use super::procfs::{for_each_line, open_file};
use super::sockdiag::unix_protocol;
use super::table::NetnsTable;
use crate::model::{
    Endpoint, Family, Protocol, Socket, SocketKey, SocketState, TableSource, UnixInfo,
};
use rustix::fd::{AsFd, BorrowedFd};
use rustix::io::Errno;
use std::net::{IpAddr, Ipv4Addr};

/// A text table file and how to read it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum TextTable {
    Inet { file: &'static str, family: Family, protocol: fn() -> Protocol },
    Unix,
    Packet,
    Netlink,
}

const fn inet(file: &'static str, family: Family, protocol: fn() -> Protocol) -> TextTable {
    TextTable::Inet { file, family, protocol }
}

/// The inet tables that sock_diag also covers.
pub(crate) const DIAG_COVERED: [TextTable; 9] = [
    inet("tcp", Family::Inet, || Protocol::Tcp),
    inet("tcp6", Family::Inet6, || Protocol::Tcp),
    inet("udp", Family::Inet, || Protocol::Udp),
    inet("udp6", Family::Inet6, || Protocol::Udp),
    inet("udplite", Family::Inet, || Protocol::Udplite),
    inet("udplite6", Family::Inet6, || Protocol::Udplite),
    inet("raw", Family::Inet, || Protocol::Raw),
    inet("raw6", Family::Inet6, || Protocol::Raw),
    TextTable::Unix,
];

/// The tables only text can give.
pub(crate) const TEXT_ONLY: [TextTable; 4] = [
    inet("icmp", Family::Inet, || Protocol::Icmp),
    inet("icmp6", Family::Inet6, || Protocol::Icmp),
    TextTable::Packet,
    TextTable::Netlink,
];

impl TextTable {
    /// The file name under net/.
    pub fn file(self) -> &'static str {
        match self {
            TextTable::Inet { file, .. } => file,
            TextTable::Unix => "unix",
            TextTable::Packet => "packet",
            TextTable::Netlink => "netlink",
        }
    }
}

/// Reads one table from `net_dir` (a dirfd of /proc/<pid>/net or /proc/thread-self/net).
/// A missing file (udplite on kernels without it) is not an error.
pub(crate) fn read_text_table(
    net_dir: BorrowedFd<'_>,
    kind: TextTable,
    buf: &mut Vec<u8>,
    table: &mut NetnsTable,
) -> Result<(), Errno> {
    let fd = match open_file(net_dir, kind.file()) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut header = true;
    let mut bad_lines = 0u64;
    for_each_line(fd.as_fd(), buf, |line| {
        if std::mem::take(&mut header) || line.is_empty() {
            return;
        }
        match row_of(kind, line) {
            Some((inode, row)) => table.insert(inode, row),
            None => bad_lines += 1,
        }
    })
    .map_err(|e| Errno::from_io_error(&e).unwrap_or(Errno::IO))?;
    // A malformed line is most often the tail of a unix name that held a newline: the kind of
    // forgery the duplicate counter also watches for.
    table.duplicate_rows += bad_lines;
    Ok(())
}

fn row_of(kind: TextTable, line: &[u8]) -> Option<(u64, Socket)> {
    let row = |inode, family, protocol, state| {
        Socket::new(SocketKey { netns: 0, inode }, family, protocol, state, TableSource::ProcNet)
    };
    match kind {
        TextTable::Inet { family, protocol, .. } => {
            let r = parse_inet_line(line, ByteOrder::NATIVE).ok()?;
            let mut socket =
                row(r.inode, family, protocol(), SocketState::from_tcp_number(r.state));
            socket.local = Some(r.local);
            socket.remote = Some(r.remote);
            socket.uid = Some(r.uid);
            socket.rx_queue = r.rx_queue;
            socket.tx_queue = r.tx_queue;
            Some((r.inode, socket))
        }
        TextTable::Unix => {
            let r = parse_unix_line(line).ok()?;
            // /proc/net/unix shows SS_* states; map them onto the TCP names unix_diag uses.
            let state = match (r.listening, r.ss_state) {
                (true, _) => SocketState::Listen,
                (false, 3) => SocketState::Established,
                (false, 2) => SocketState::SynSent,
                (false, 4) => SocketState::Closing,
                _ => SocketState::Close,
            };
            let protocol = unix_protocol(u8::try_from(r.socket_type).unwrap_or(0));
            let mut socket = row(r.inode, Family::Unix, protocol, state);
            socket.unix = Some(UnixInfo { name: r.name, peer: None, shutdown: 0 });
            Some((r.inode, socket))
        }
        TextTable::Packet => {
            let r = parse_packet_line(line).ok()?;
            let protocol =
                if r.socket_type == 2 { Protocol::PacketDgram } else { Protocol::PacketRaw };
            let mut socket = row(r.inode, Family::Packet, protocol, SocketState::Close);
            socket.local = Some(Endpoint::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), r.protocol));
            socket.uid = Some(r.uid);
            Some((r.inode, socket))
        }
        TextTable::Netlink => {
            let r = parse_netlink_line(line).ok()?;
            let protocol = Protocol::Netlink(r.protocol);
            Some((r.inode, row(r.inode, Family::Netlink, protocol, SocketState::Close)))
        }
    }
}
