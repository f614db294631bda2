//! Sockets from every network namespace's tables, with all of their holders.

use super::{ProcKey, RawText};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// A socket's identity: the inode of the network namespace whose table listed it, and the socket
/// inode. Inodes are unique per host at any instant, but the namespace keeps keys stable when a
/// table moves, and unresolved sockets (found in no table) carry netns 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SocketKey {
    /// Network namespace inode (0: unresolved, namespace unknown).
    pub netns: u64,
    /// Socket inode.
    pub inode: u64,
}

/// Address family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// AF_INET.
    Inet,
    /// AF_INET6.
    Inet6,
    /// AF_UNIX.
    Unix,
    /// AF_NETLINK.
    Netlink,
    /// AF_PACKET.
    Packet,
    /// Not known (an unresolved socket whose protocol name did not say).
    Unknown,
}

impl Family {
    /// The numeric AF_* value osquery reports (0 when unknown).
    pub fn number(self) -> u16 {
        match self {
            Family::Inet => 2,
            Family::Inet6 => 10,
            Family::Unix => 1,
            Family::Netlink => 16,
            Family::Packet => 17,
            Family::Unknown => 0,
        }
    }

    /// An internet family (v4 or v6).
    pub fn is_inet(self) -> bool {
        matches!(self, Family::Inet | Family::Inet6)
    }
}

/// Transport protocol or socket type.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// UDP-Lite.
    Udplite,
    /// Raw IP; the IP protocol number is the local port in the tables.
    Raw,
    /// ICMP "ping" sockets.
    Icmp,
    /// Unix stream.
    Stream,
    /// Unix datagram.
    Dgram,
    /// Unix seqpacket.
    Seqpacket,
    /// Packet socket (the ethertype is in `local.port`).
    PacketRaw,
    /// Packet socket, cooked (SOCK_DGRAM).
    PacketDgram,
    /// Netlink, with its protocol number.
    Netlink(u32),
    /// Something else, with its name (e.g. from the `system.sockprotoname` xattr).
    Other(String),
}

impl Protocol {
    /// The protocol as one word (`tcp`, `netlink`, or the kernel's name for another), the same
    /// type in every event and rule.
    pub fn name(&self) -> &str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Udplite => "udplite",
            Protocol::Raw => "raw",
            Protocol::Icmp => "icmp",
            Protocol::Stream => "stream",
            Protocol::Dgram => "dgram",
            Protocol::Seqpacket => "seqpacket",
            Protocol::PacketRaw => "packet_raw",
            Protocol::PacketDgram => "packet_dgram",
            Protocol::Netlink(_) => "netlink",
            Protocol::Other(name) => name,
        }
    }

    /// The IPPROTO_* number osquery reports for internet sockets (0 otherwise).
    pub fn ip_number(&self, family: Family) -> u16 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Udplite => 136,
            Protocol::Raw => 255,
            Protocol::Icmp if family == Family::Inet6 => 58,
            Protocol::Icmp => 1,
            _ => 0,
        }
    }
}

/// Socket state, in the kernel's TCP state names (unix sockets are mapped onto them the way
/// unix_diag does).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SocketState {
    /// Connected (TCP established, connected UDP, connected unix).
    Established,
    /// SYN sent (connect in progress).
    SynSent,
    /// SYN received.
    SynRecv,
    /// FIN_WAIT1.
    FinWait1,
    /// FIN_WAIT2.
    FinWait2,
    /// TIME_WAIT.
    TimeWait,
    /// Closed or unconnected.
    Close,
    /// The peer closed; we have not.
    CloseWait,
    /// LAST_ACK.
    LastAck,
    /// Listening.
    Listen,
    /// CLOSING.
    Closing,
    /// A request socket.
    NewSynRecv,
    /// A value this agent does not know.
    Unknown,
}

impl SocketState {
    /// Decodes the kernel's numeric TCP state (include/net/tcp_states.h).
    pub fn from_tcp_number(n: u8) -> Self {
        use SocketState::*;
        match n {
            1 => Established,
            2 => SynSent,
            3 => SynRecv,
            4 => FinWait1,
            5 => FinWait2,
            6 => TimeWait,
            7 => Close,
            8 => CloseWait,
            9 => LastAck,
            10 => Listen,
            11 => Closing,
            12 => NewSynRecv,
            _ => Unknown,
        }
    }

    /// The osquery / kernel name.
    pub fn name(self) -> &'static str {
        use SocketState::*;
        match self {
            Established => "ESTABLISHED",
            SynSent => "SYN_SENT",
            SynRecv => "SYN_RECV",
            FinWait1 => "FIN_WAIT1",
            FinWait2 => "FIN_WAIT2",
            TimeWait => "TIME_WAIT",
            Close => "CLOSE",
            CloseWait => "CLOSE_WAIT",
            LastAck => "LAST_ACK",
            Listen => "LISTEN",
            Closing => "CLOSING",
            NewSynRecv => "NEW_SYN_RECV",
            Unknown => "UNKNOWN",
        }
    }
}

/// An internet endpoint. IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are normalised to IPv4 so
/// that rules and allowlists see one form; `v4_mapped` keeps the original.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Endpoint {
    /// Address (normalised).
    pub addr: IpAddr,
    /// Port (for raw sockets: the IP protocol number; for packet sockets: the ethertype).
    pub port: u16,
    /// The table showed this address as IPv4-mapped IPv6.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub v4_mapped: bool,
}

impl Endpoint {
    /// Builds an endpoint, normalising IPv4-mapped IPv6.
    pub fn new(addr: IpAddr, port: u16) -> Self {
        match addr {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Endpoint { addr: IpAddr::V4(v4), port, v4_mapped: true },
                None => Endpoint { addr, port, v4_mapped: false },
            },
            IpAddr::V4(_) => Endpoint { addr, port, v4_mapped: false },
        }
    }

    /// The unspecified address (0.0.0.0 or ::).
    pub fn is_unspecified(&self) -> bool {
        self.addr.is_unspecified()
    }
}

/// Unix-socket specifics.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnixInfo {
    /// Bound name: a path, or an abstract name shown with a leading `@`. Empty when unnamed.
    pub name: RawText,
    /// The inode of the connected peer socket (sock_diag only: /proc/net/unix does not show it).
    pub peer: Option<u64>,
    /// `shutdown(2)` state (sock_diag only): bit 0 no more receiving, bit 1 no more sending.
    /// journald shuts down the sending side of every service's stdout stream, so data cannot
    /// flow from it back into the services.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub shutdown: u8,
}

impl UnixInfo {
    /// `RCV_SHUTDOWN`: nothing more can be read through this socket.
    pub const RECEIVE_SHUT: u8 = 1;
    /// `SEND_SHUTDOWN`: nothing more can be written through this socket.
    pub const SEND_SHUT: u8 = 2;

    /// Data can still be read through this socket.
    pub fn can_receive(&self) -> bool {
        self.shutdown & Self::RECEIVE_SHUT == 0
    }

    /// Data can still be written through this socket.
    pub fn can_send(&self) -> bool {
        self.shutdown & Self::SEND_SHUT == 0
    }
}

fn is_zero(value: &u8) -> bool {
    *value == 0
}

/// Where a socket's row came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TableSource {
    /// A netlink sock_diag dump.
    SockDiag,
    /// A /proc/<pid>/net text table.
    ProcNet,
    /// Held by a process but listed in no table the agent could read.
    Unresolved,
    /// Listed in no table the agent could read; read from a copy of its holder's fd (its
    /// addresses, owner and TCP state; no queues).
    HeldFd,
    /// The kernel's notice that it freed the socket (sock_diag's destroy groups): a connection
    /// no scan saw.
    DestroyNotice,
}

/// One holder of a socket: a process and the fd number (a socket can be held on many fds by many
/// processes: `bash -i >& /dev/tcp/…` holds it on 0, 1, 2 and 255, and its children inherit it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Holder {
    /// Holding process.
    pub proc: ProcKey,
    /// Set when held in a thread's private fd table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tid: Option<i32>,
    /// fd number.
    pub fd: i32,
    /// Set when held as a file registered in the io_uring behind `fd`: its slot there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io_uring_slot: Option<u32>,
}

/// One socket with its table row and all its holders.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Socket {
    /// Identity.
    pub key: SocketKey,
    /// Address family.
    pub family: Family,
    /// Protocol or socket type.
    pub protocol: Protocol,
    /// State.
    pub state: SocketState,
    /// Local endpoint (internet and packet sockets).
    pub local: Option<Endpoint>,
    /// Remote endpoint (internet sockets; unspecified when unconnected).
    pub remote: Option<Endpoint>,
    /// Unix specifics.
    pub unix: Option<UnixInfo>,
    /// Owning uid from the table.
    pub uid: Option<u32>,
    /// Bytes queued for receiving.
    pub rx_queue: u32,
    /// Bytes queued for sending.
    pub tx_queue: u32,
    /// Where the row came from.
    pub source: TableSource,
    /// Every (process, fd) holding it, sorted.
    pub holders: Vec<Holder>,
}

impl Socket {
    /// Whether the socket reaches the network: internet and packet sockets, and a socket no
    /// table listed whose protocol names an IP protocol.
    pub fn is_network(&self) -> bool {
        self.family.is_inet()
            || self.family == Family::Packet
            || (self.source == TableSource::Unresolved && self.protocol.ip_number(self.family) != 0)
    }

    /// A socket with no addresses, queues or holders yet.
    pub fn new(
        key: SocketKey,
        family: Family,
        protocol: Protocol,
        state: SocketState,
        source: TableSource,
    ) -> Self {
        Socket {
            key,
            family,
            protocol,
            state,
            local: None,
            remote: None,
            unix: None,
            uid: None,
            rx_queue: 0,
            tx_queue: 0,
            source,
            holders: Vec::new(),
        }
    }
}
