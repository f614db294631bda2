//! Joins socket fds to table rows. Socket inodes are unique host-wide at any instant, so one
//! index by inode over every namespace's tables resolves a socket whatever namespace its holder
//! is in now.

use super::table::NetnsTable;
use crate::model::{
    Coverage, Family, Fd, FdTarget, Holder, Protocol, Socket, SocketKey, SocketState, TableSource,
};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Builds every socket: each table row (with its holders, possibly none) and each held socket
/// found in no table (unresolved, keyed with netns 0).
pub(crate) fn join_sockets(
    proc_root: &Path,
    tables: BTreeMap<u64, NetnsTable>,
    fds: &[Fd],
    coverage: &mut Coverage,
) -> Vec<Socket> {
    // inode -> (holders, one fd to ask for the protocol if no table lists it)
    let mut held: HashMap<u64, (Vec<Holder>, &Fd)> = HashMap::new();
    for fd in fds {
        if let FdTarget::Socket { inode } = fd.target {
            let holder = Holder { proc: fd.proc, tid: fd.tid, fd: fd.num };
            held.entry(inode).or_insert_with(|| (Vec::new(), fd)).0.push(holder);
        }
    }

    let mut sockets = Vec::with_capacity(tables.values().map(|t| t.rows.len()).sum());
    for (netns, table) in tables {
        coverage.inode0_rows += table.inode0_rows;
        coverage.duplicate_rows += table.duplicate_rows;
        coverage.table_errors += table.errors;
        coverage.dumps_interrupted += table.interrupted;
        for (inode, mut socket) in table.rows {
            socket.key = SocketKey { netns, inode };
            match held.remove(&inode) {
                Some((holders, _)) => {
                    coverage.sockets_resolved += holders.len() as u64;
                    socket.holders = holders;
                }
                None => coverage.sockets_unowned += 1,
            }
            socket.holders.sort();
            sockets.push(socket);
        }
    }
    for (inode, (mut holders, fd)) in held {
        coverage.sockets_unresolved += 1;
        let protocol = protocol_from_xattr(proc_root, fd);
        let family = family_of(&protocol);
        let key = SocketKey { netns: 0, inode };
        let mut socket =
            Socket::new(key, family, protocol, SocketState::Unknown, TableSource::Unresolved);
        holders.sort();
        socket.holders = holders;
        sockets.push(socket);
    }
    sockets.sort_by_key(|s| s.key);
    sockets
}

/// The kernel names a socket's protocol in the `system.sockprotoname` xattr of its fd link
/// (`TCP`, `UDPv6`, `UNIX-STREAM`, `NETLINK`, `PACKET`, …): the one fact available for a socket
/// whose namespace table the scan could not read.
fn protocol_from_xattr(proc_root: &Path, fd: &Fd) -> Protocol {
    let mut path = proc_root.join(fd.proc.pid.to_string());
    if let Some(tid) = fd.tid {
        path.push("task");
        path.push(tid.to_string());
    }
    path.push("fd");
    path.push(fd.num.to_string());
    let mut value = [0u8; 64];
    match rustix::fs::getxattr(&path, "system.sockprotoname", &mut value[..]) {
        Ok(len) => protocol_from_name(&value[..len.min(value.len())]),
        Err(_) => Protocol::Other("unknown".into()),
    }
}

/// Maps a `sockprotoname` to a protocol.
pub(crate) fn protocol_from_name(name: &[u8]) -> Protocol {
    let name = name.strip_suffix(b"\0").unwrap_or(name);
    match name {
        b"TCP" | b"TCPv6" | b"MPTCP" | b"MPTCPv6" => Protocol::Tcp,
        b"UDP" | b"UDPv6" => Protocol::Udp,
        b"UDP-Lite" | b"UDPLITEv6" => Protocol::Udplite,
        b"RAW" | b"RAWv6" => Protocol::Raw,
        b"PING" | b"PINGv6" => Protocol::Icmp,
        b"UNIX-STREAM" | b"UNIX" => Protocol::Stream,
        b"UNIX-DGRAM" => Protocol::Dgram,
        b"UNIX-SEQPACKET" => Protocol::Seqpacket,
        b"PACKET" => Protocol::PacketRaw,
        b"NETLINK" => Protocol::Netlink(u32::MAX),
        other => Protocol::Other(String::from_utf8_lossy(other).into_owned()),
    }
}

/// The family a protocol name implies; v4 versus v6 is not in every name, so internet
/// protocols stay `Unknown` (rules use the protocol).
fn family_of(protocol: &Protocol) -> Family {
    match protocol {
        Protocol::Stream | Protocol::Dgram | Protocol::Seqpacket => Family::Unix,
        Protocol::PacketRaw | Protocol::PacketDgram => Family::Packet,
        Protocol::Netlink(_) => Family::Netlink,
        _ => Family::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockprotonames() {
        assert_eq!(protocol_from_name(b"TCPv6\0"), Protocol::Tcp);
        assert_eq!(protocol_from_name(b"UNIX-STREAM"), Protocol::Stream);
        assert_eq!(protocol_from_name(b"\xff"), Protocol::Other("\u{fffd}".into()));
    }
}
