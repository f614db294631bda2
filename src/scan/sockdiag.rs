//! Socket tables through netlink sock_diag, the interface `ss` uses: binary records (no text to
//! forge), unix peers, and several times cheaper than /proc/net text (see the research notes).
//! A sock_diag socket dumps the namespace of the thread that created it, so other namespaces are
//! dumped from a thread that entered them (see `netns`).

use super::parse::{DiagMessage, ParseError, diag_messages, parse_inet_record, parse_unix_record};
use super::table::NetnsTable;
use crate::model::{
    Endpoint, Family, Protocol, RawText, Socket, SocketKey, SocketState, TableSource, UnixInfo,
};
use netlink_packet_core::{NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage};
use netlink_packet_sock_diag::SockDiagMessage;
use netlink_packet_sock_diag::constants::{
    AF_INET, AF_INET6, IPPROTO_RAW, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_UDPLITE,
};
use netlink_packet_sock_diag::inet::{ExtensionFlags, InetRequest, SocketId, StateFlags};
use netlink_packet_sock_diag::unix::{self, ShowFlags, UnixRequest};
use netlink_sys::{SocketAddr, protocols::NETLINK_SOCK_DIAG};
use std::io;

/// The inet tables sock_diag can dump. Ping (icmp) sockets have no sock_diag handler.
pub(crate) const INET_TABLES: [(u8, u8, Protocol); 8] = [
    (AF_INET, IPPROTO_TCP, Protocol::Tcp),
    (AF_INET6, IPPROTO_TCP, Protocol::Tcp),
    (AF_INET, IPPROTO_UDP, Protocol::Udp),
    (AF_INET6, IPPROTO_UDP, Protocol::Udp),
    (AF_INET, IPPROTO_UDPLITE, Protocol::Udplite),
    (AF_INET6, IPPROTO_UDPLITE, Protocol::Udplite),
    (AF_INET, IPPROTO_RAW, Protocol::Raw),
    (AF_INET6, IPPROTO_RAW, Protocol::Raw),
];

/// A NETLINK_SOCK_DIAG socket bound in the current thread's network namespace.
pub(crate) struct SockDiag {
    socket: netlink_sys::Socket,
    buf: Vec<u8>,
    seq: u32,
}

/// How a dump ended.
pub(crate) enum DumpEnd {
    Complete,
    /// The kernel flagged the dump as inconsistent (tables changed under it).
    Interrupted,
}

impl SockDiag {
    /// Opens a socket in the calling thread's network namespace.
    pub fn open() -> io::Result<Self> {
        let mut socket = netlink_sys::Socket::new(NETLINK_SOCK_DIAG)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        Ok(SockDiag { socket, buf: vec![0; 64 * 1024], seq: 0 })
    }

    /// Dumps one inet table into `table`.
    pub fn dump_inet(
        &mut self,
        family: u8,
        protocol_number: u8,
        protocol: &Protocol,
        table: &mut NetnsTable,
    ) -> io::Result<DumpEnd> {
        let request = SockDiagMessage::InetRequest(InetRequest {
            family,
            protocol: protocol_number,
            extensions: ExtensionFlags::empty(),
            // TIME_WAIT rows have no inode and no holder; the namespace's count of them comes
            // from net/sockstat instead of thousands of rows on a busy server.
            states: StateFlags::all() - StateFlags::TIME_WAIT,
            socket_id: if family == AF_INET { SocketId::new_v4() } else { SocketId::new_v6() },
        });
        self.dump(request, |payload| {
            let (inode, row) = inet_row(payload, protocol)?;
            table.insert(inode, row);
            Ok(())
        })
    }

    /// The row of the one inet socket with these endpoints (`local` its own), looked up in the
    /// kernel's hash tables: a dump walks every bucket of the TCP table, a few milliseconds on
    /// a large host even when it holds few sockets, where this costs one round trip. `None`:
    /// no such socket (any more), or one the kernel keeps no full row for (TIME_WAIT).
    pub fn lookup_inet(
        &mut self,
        protocol: &Protocol,
        local: std::net::SocketAddr,
        remote: std::net::SocketAddr,
    ) -> io::Result<Option<Socket>> {
        let Some(protocol_number) = lookup_protocol_number(protocol) else {
            return Err(io::ErrorKind::Unsupported.into());
        };
        let family = if local.is_ipv4() { AF_INET } else { AF_INET6 };
        // The kernel reads a TCP request's source as the socket's own address, and a UDP one's
        // as the sender's of a packet the socket would receive (`udp_dump_one`).
        let (source, destination) = match protocol_number {
            IPPROTO_TCP => (local, remote),
            _ => (remote, local),
        };
        let request = SockDiagMessage::InetRequest(InetRequest {
            family,
            protocol: protocol_number,
            extensions: ExtensionFlags::empty(),
            states: StateFlags::all(),
            socket_id: SocketId {
                source_port: source.port(),
                destination_port: destination.port(),
                source_address: source.ip(),
                destination_address: destination.ip(),
                interface_id: 0,
                // INET_DIAG_NOCOOKIE: any socket with these endpoints.
                cookie: [0xff; 8],
            },
        });
        self.send(request, NLM_F_REQUEST)?;
        let malformed = |e: ParseError| io::Error::new(io::ErrorKind::InvalidData, e.to_string());
        // One reply: the record, or an error (ENOENT when no socket has these endpoints).
        let size = self.socket.recv(&mut &mut self.buf[..], 0)?;
        for message in diag_messages(&self.buf[..size]) {
            match message.map_err(malformed)? {
                DiagMessage::Record { payload, .. } => {
                    let (inode, row) = inet_row(payload, protocol).map_err(malformed)?;
                    return Ok((inode != 0).then_some(row));
                }
                DiagMessage::Error(libc::ENOENT) => return Ok(None),
                DiagMessage::Error(errno) => return Err(io::Error::from_raw_os_error(errno)),
                DiagMessage::Done { .. } | DiagMessage::Other => {}
            }
        }
        Ok(None)
    }

    /// Dumps the unix table, with names and peers, into `table`.
    pub fn dump_unix(&mut self, table: &mut NetnsTable) -> io::Result<DumpEnd> {
        let request = SockDiagMessage::UnixRequest(UnixRequest {
            state_flags: unix::StateFlags::all(),
            inode: 0,
            show_flags: ShowFlags::NAME | ShowFlags::PEER,
            cookie: [0; 8],
        });
        self.dump(request, |payload| {
            let record = parse_unix_record(payload)?;
            // An abstract name is shown the way ss and /proc/net/unix show it, with a leading @.
            let name = match record.name {
                Some([0, name @ ..]) => RawText::new([&b"@"[..], name].concat()),
                Some(path) => RawText::new(path),
                None => RawText::default(),
            };
            let inode = u64::from(record.inode);
            let mut row = Socket::new(
                SocketKey { netns: 0, inode },
                Family::Unix,
                unix_protocol(record.socket_type),
                SocketState::from_tcp_number(record.state),
                TableSource::SockDiag,
            );
            row.unix = Some(UnixInfo {
                name,
                peer: record.peer.map(u64::from),
                shutdown: record.shutdown,
            });
            table.insert(inode, row);
            Ok(())
        })
    }

    fn send(&mut self, request: SockDiagMessage, flags: u16) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, request.into());
        packet.finalize();
        let mut out = vec![0; packet.buffer_len()];
        packet.serialize(&mut out);
        self.socket.send(&out, 0)?;
        Ok(())
    }

    /// Sends a dump request and hands each record's payload to `on_record`, until the kernel
    /// says the dump is done.
    fn dump(
        &mut self,
        request: SockDiagMessage,
        mut on_record: impl FnMut(&[u8]) -> Result<(), ParseError>,
    ) -> io::Result<DumpEnd> {
        self.send(request, NLM_F_REQUEST | NLM_F_DUMP)?;
        let malformed = |e: ParseError| io::Error::new(io::ErrorKind::InvalidData, e.to_string());
        let mut interrupted = false;
        loop {
            let size = self.socket.recv(&mut &mut self.buf[..], 0)?;
            for message in diag_messages(&self.buf[..size]) {
                match message.map_err(malformed)? {
                    DiagMessage::Record { interrupted: flagged, payload } => {
                        interrupted |= flagged;
                        on_record(payload).map_err(malformed)?;
                    }
                    DiagMessage::Done { interrupted: flagged } => {
                        return Ok(match interrupted || flagged {
                            true => DumpEnd::Interrupted,
                            false => DumpEnd::Complete,
                        });
                    }
                    DiagMessage::Error(errno) => return Err(io::Error::from_raw_os_error(errno)),
                    DiagMessage::Other => {}
                }
            }
        }
    }
}

/// The protocol number of a protocol `lookup_inet` can look a socket up in.
pub(crate) fn lookup_protocol_number(protocol: &Protocol) -> Option<u8> {
    match protocol {
        Protocol::Tcp => Some(IPPROTO_TCP),
        Protocol::Udp => Some(IPPROTO_UDP),
        Protocol::Udplite => Some(IPPROTO_UDPLITE),
        _ => None,
    }
}

/// An inet record as a row of its namespace's table (namespace not set) and its inode.
fn inet_row(payload: &[u8], protocol: &Protocol) -> Result<(u64, Socket), ParseError> {
    let record = parse_inet_record(payload)?;
    let inode = u64::from(record.inode);
    let family = if record.family == AF_INET { Family::Inet } else { Family::Inet6 };
    let mut row = Socket::new(
        SocketKey { netns: 0, inode },
        family,
        protocol.clone(),
        SocketState::from_tcp_number(record.state),
        TableSource::SockDiag,
    );
    row.local = Some(Endpoint::new(record.local.0, record.local.1));
    row.remote = Some(Endpoint::new(record.remote.0, record.remote.1));
    row.uid = Some(record.uid);
    row.rx_queue = record.rx_queue;
    row.tx_queue = record.tx_queue;
    Ok((inode, row))
}

/// Maps a unix socket type number to the protocol enum.
pub(crate) fn unix_protocol(socket_type: u8) -> Protocol {
    match socket_type {
        1 => Protocol::Stream,
        2 => Protocol::Dgram,
        5 => Protocol::Seqpacket,
        other => Protocol::Other(format!("unix-type-{other}")),
    }
}
