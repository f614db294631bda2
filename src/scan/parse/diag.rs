//! sock_diag dump replies: netlink messages carrying `inet_diag_msg` and `unix_diag_msg` records
//! (include/uapi/linux/inet_diag.h, unix_diag.h), read in place. A dump is tens of thousands of
//! fixed-layout records a tick; a general netlink decoder that builds a value (and an error
//! context string) for every attribute cost more than the rest of the table handling, so only
//! the fields the scan keeps are read, from the bytes. Lengths come from the kernel but are
//! checked like any input: a short or inconsistent record is an error, never a panic.

use super::ParseError;
use super::netlink::{self, NLMSG_DONE, NLMSG_ERROR, u16_at, u32_at};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// `SOCK_DIAG_BY_FAMILY`: every record of a sock_diag dump.
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `NLM_F_DUMP_INTR`: the tables changed while the dump ran.
const NLM_F_DUMP_INTR: u16 = 0x10;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const INET_DIAG_MSG_LEN: usize = 72;
const UNIX_DIAG_MSG_LEN: usize = 16;
const UNIX_DIAG_NAME: u16 = 0;
const UNIX_DIAG_PEER: u16 = 2;
/// Sent with every record (net/unix/diag.c), asked for or not.
const UNIX_DIAG_SHUTDOWN: u16 = 6;
const INET_DIAG_INFO: u16 = 2;
const INET_DIAG_PROTOCOL: u16 = 10;
/// `struct tcp_info` up to `tcpi_segs_in`: the kernel has only appended to it since 4.2.
const TCP_INFO_COUNTERS_END: usize = 144;

/// One netlink message of a dump reply.
#[derive(Debug, PartialEq, Eq)]
pub enum DiagMessage<'a> {
    /// A record (the payload of a `SOCK_DIAG_BY_FAMILY` message).
    Record {
        /// The kernel flagged the dump as inconsistent.
        interrupted: bool,
        /// The `*_diag_msg` and its attributes.
        payload: &'a [u8],
    },
    /// The end of the dump.
    Done {
        /// The kernel flagged the dump as inconsistent.
        interrupted: bool,
    },
    /// The kernel refused the request (a positive errno).
    Error(i32),
    /// Anything else (no-op, overrun notices): skipped.
    Other,
}

/// The messages of one `recv` of a dump reply, in order.
pub fn diag_messages(buf: &[u8]) -> impl Iterator<Item = Result<DiagMessage<'_>, ParseError>> {
    netlink::parse_messages(buf, diag_message)
}

fn diag_message(message: netlink::Message<'_>) -> Result<DiagMessage<'_>, ParseError> {
    let netlink::Message { kind, flags, payload } = message;
    let interrupted = flags & NLM_F_DUMP_INTR != 0;
    Ok(match kind {
        SOCK_DIAG_BY_FAMILY => DiagMessage::Record { interrupted, payload },
        // A dump the kernel could not run (no diag handler for the protocol: raw_diag is a
        // separate kernel option) ends with a DONE carrying the negative errno, not an error.
        NLMSG_DONE => {
            match payload.get(..4).map(|c| i32::from_ne_bytes(c.try_into().expect("4"))) {
                Some(code) if code < 0 => DiagMessage::Error(code.wrapping_neg()),
                _ => DiagMessage::Done { interrupted },
            }
        }
        NLMSG_ERROR => {
            let code = payload.get(..4).ok_or(ParseError::MissingField("nlmsgerr"))?;
            // A negative errno; 0 would be an acknowledgement, which a dump does not send.
            DiagMessage::Error(i32::from_ne_bytes(code.try_into().expect("4 bytes")).wrapping_neg())
        }
        _ => DiagMessage::Other,
    })
}

/// The fields of an `inet_diag_msg` the scan keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InetDiagRecord {
    /// `AF_INET` or `AF_INET6`.
    pub family: u8,
    /// TCP state number (UDP and raw sockets use the same numbers).
    pub state: u8,
    /// Local address and port.
    pub local: (IpAddr, u16),
    /// Remote address and port.
    pub remote: (IpAddr, u16),
    /// Bytes queued to read.
    pub rx_queue: u32,
    /// Bytes queued to send.
    pub tx_queue: u32,
    /// Owning uid.
    pub uid: u32,
    /// Socket inode (0 for request and TIME_WAIT sockets).
    pub inode: u32,
}

/// Reads an `inet_diag_msg`: family, state, timer, retrans (1 byte each); the socket id (ports in
/// network order, then 16 bytes of source and of destination address, interface, cookie); then
/// expires, rqueue, wqueue, uid and inode (u32 each, host order).
pub fn parse_inet_record(payload: &[u8]) -> Result<InetDiagRecord, ParseError> {
    let msg = payload.get(..INET_DIAG_MSG_LEN).ok_or(ParseError::MissingField("inet_diag_msg"))?;
    let family = msg[0];
    let address = |at: usize| -> Result<IpAddr, ParseError> {
        let bytes: [u8; 16] = msg[at..at + 16].try_into().expect("16 bytes");
        match family {
            AF_INET => Ok(IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))),
            AF_INET6 => Ok(IpAddr::V6(Ipv6Addr::from(bytes))),
            _ => Err(ParseError::Malformed("idiag_family")),
        }
    };
    let port = |at: usize| u16::from_be_bytes([msg[at], msg[at + 1]]);
    Ok(InetDiagRecord {
        family,
        state: msg[1],
        local: (address(8)?, port(4)),
        remote: (address(24)?, port(6)),
        rx_queue: u32_at(msg, 56),
        tx_queue: u32_at(msg, 60),
        uid: u32_at(msg, 64),
        inode: u32_at(msg, 68),
    })
}

/// What the kernel says about a socket it frees, to listeners of sock_diag's destroy groups
/// (`sock_diag_broadcast_destroy`): the `inet_diag_msg` (no inode: the socket has left its file),
/// the protocol, and for TCP its `tcp_info`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DestroyedRecord {
    /// Addresses, ports and state; `inode` and `uid` are 0.
    pub record: InetDiagRecord,
    /// `INET_DIAG_PROTOCOL` (IPPROTO_TCP, IPPROTO_UDP, ...).
    pub protocol: u8,
    /// The `tcp_info` counters, for TCP.
    pub tcp: Option<crate::model::TcpCounters>,
}

/// Reads a destroy notification: an `inet_diag_msg` with `INET_DIAG_PROTOCOL` and, for TCP,
/// `INET_DIAG_INFO`. A record without its protocol is an error: the groups carry TCP and UDP
/// alike and the message itself does not tell them apart.
pub fn parse_destroyed_record(payload: &[u8]) -> Result<DestroyedRecord, ParseError> {
    let record = parse_inet_record(payload)?;
    let (mut protocol, mut tcp) = (None, None);
    let mut attributes = &payload[INET_DIAG_MSG_LEN..];
    while attributes.len() >= 4 {
        let len = usize::from(u16_at(attributes, 0));
        let kind = u16_at(attributes, 2) & 0x3fff;
        if len < 4 || len > attributes.len() {
            return Err(ParseError::Malformed("nlattr"));
        }
        let value = &attributes[4..len];
        match kind {
            INET_DIAG_PROTOCOL => {
                protocol = Some(*value.first().ok_or(ParseError::MissingField("protocol"))?);
            }
            INET_DIAG_INFO if value.len() >= TCP_INFO_COUNTERS_END => {
                let u64_at =
                    |at: usize| u64::from_ne_bytes(value[at..at + 8].try_into().expect("8 bytes"));
                tcp = Some(crate::model::TcpCounters {
                    bytes_acked: u64_at(120),
                    bytes_received: u64_at(128),
                    segs_out: u32_at(value, 136),
                    segs_in: u32_at(value, 140),
                });
            }
            _ => {}
        }
        attributes = attributes.get(len.next_multiple_of(4)..).unwrap_or_default();
    }
    let protocol = protocol.ok_or(ParseError::MissingField("INET_DIAG_PROTOCOL"))?;
    Ok(DestroyedRecord { record, protocol, tcp })
}

/// The fields of a `unix_diag_msg` and its attributes the scan keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnixDiagRecord<'a> {
    /// `SOCK_STREAM`, `SOCK_DGRAM` or `SOCK_SEQPACKET`.
    pub socket_type: u8,
    /// TCP state number.
    pub state: u8,
    /// Socket inode.
    pub inode: u32,
    /// The bound name: a path, or an abstract name starting with a NUL byte; `None` when
    /// unbound. Exact bytes (a path ends at its NUL).
    pub name: Option<&'a [u8]>,
    /// The connected peer's inode.
    pub peer: Option<u32>,
    /// `sk_shutdown`: `RCV_SHUTDOWN` (1) and `SEND_SHUTDOWN` (2) bits.
    pub shutdown: u8,
}

/// Reads a `unix_diag_msg` (family, type, state, pad: 1 byte each; inode; cookie) and its
/// `UNIX_DIAG_NAME` and `UNIX_DIAG_PEER` attributes (the ones the scan asks for), and
/// `UNIX_DIAG_SHUTDOWN`, which the kernel always sends.
pub fn parse_unix_record(payload: &[u8]) -> Result<UnixDiagRecord<'_>, ParseError> {
    let msg = payload.get(..UNIX_DIAG_MSG_LEN).ok_or(ParseError::MissingField("unix_diag_msg"))?;
    let mut record = UnixDiagRecord {
        socket_type: msg[1],
        state: msg[2],
        inode: u32_at(msg, 4),
        name: None,
        peer: None,
        shutdown: 0,
    };
    let mut attributes = &payload[UNIX_DIAG_MSG_LEN..];
    while attributes.len() >= 4 {
        let len = usize::from(u16_at(attributes, 0));
        let kind = u16_at(attributes, 2) & 0x3fff; // without NLA_F_NESTED / NET_BYTEORDER
        if len < 4 || len > attributes.len() {
            return Err(ParseError::Malformed("nlattr"));
        }
        let value = &attributes[4..len];
        match kind {
            UNIX_DIAG_NAME => {
                record.name = Some(match value.split_first() {
                    Some((0, _)) => value,
                    _ => value.split(|&b| b == 0).next().unwrap_or_default(),
                });
            }
            UNIX_DIAG_PEER => {
                let peer = value.get(..4).ok_or(ParseError::MissingField("UNIX_DIAG_PEER"))?;
                record.peer = Some(u32_at(peer, 0));
            }
            UNIX_DIAG_SHUTDOWN => {
                let state = value.first().ok_or(ParseError::MissingField("UNIX_DIAG_SHUTDOWN"))?;
                record.shutdown = *state;
            }
            _ => {}
        }
        attributes = attributes.get(len.next_multiple_of(4)..).unwrap_or_default();
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use netlink::frame as message;

    fn inet_msg(family: u8, local: [u8; 16], remote: [u8; 16]) -> Vec<u8> {
        let mut msg = vec![family, 1, 0, 0];
        msg.extend_from_slice(&45000u16.to_be_bytes());
        msg.extend_from_slice(&4444u16.to_be_bytes());
        msg.extend_from_slice(&local);
        msg.extend_from_slice(&remote);
        msg.extend_from_slice(&[0; 12]); // interface, cookie
        for value in [0u32, 7, 9, 1000, 123_456] {
            msg.extend_from_slice(&value.to_ne_bytes());
        }
        msg
    }

    fn attribute(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(value);
        out.resize(out.len().next_multiple_of(4), 0);
        out
    }

    #[test]
    fn a_dump_is_records_then_done() {
        let v4 = inet_msg(AF_INET, [127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], [0; 16]);
        let mut buf = message(SOCK_DIAG_BY_FAMILY, 0x2, &v4);
        buf.extend(message(SOCK_DIAG_BY_FAMILY, NLM_F_DUMP_INTR, &v4));
        buf.extend(message(NLMSG_DONE, 0, &0i32.to_ne_bytes()));
        let messages: Vec<_> = diag_messages(&buf).collect::<Result<_, _>>().unwrap();
        assert_eq!(messages.len(), 3);
        assert_eq!(messages[0], DiagMessage::Record { interrupted: false, payload: &v4 });
        assert!(matches!(messages[1], DiagMessage::Record { interrupted: true, .. }));
        assert_eq!(messages[2], DiagMessage::Done { interrupted: false });
        // The kernel has no handler for the protocol: the dump "ends" with -ENOENT.
        let refused = message(NLMSG_DONE, 0x2, &(-2i32).to_ne_bytes());
        let messages: Vec<_> = diag_messages(&refused).collect::<Result<_, _>>().unwrap();
        assert_eq!(messages, [DiagMessage::Error(2)]);
        let refused = message(NLMSG_ERROR, 0, &(-22i32).to_ne_bytes());
        assert_eq!(diag_messages(&refused).next(), Some(Ok(DiagMessage::Error(22))));
    }

    #[test]
    fn inet_records_give_addresses_ports_queues_and_inode() {
        let record = parse_inet_record(&inet_msg(
            AF_INET,
            [127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            [10, 1, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        ))
        .unwrap();
        assert_eq!(record.local, ("127.0.0.1".parse().unwrap(), 45000));
        assert_eq!(record.remote, ("10.1.2.3".parse().unwrap(), 4444));
        assert_eq!((record.rx_queue, record.tx_queue, record.uid), (7, 9, 1000));
        assert_eq!((record.state, record.inode), (1, 123_456));
        let mut mapped = [0u8; 16];
        mapped[10..].copy_from_slice(&[0xff, 0xff, 127, 0, 0, 1]);
        let v6 = parse_inet_record(&inet_msg(AF_INET6, mapped, [0; 16])).unwrap();
        assert_eq!(v6.local.0, "::ffff:127.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(v6.remote.0, "::".parse::<IpAddr>().unwrap());
        assert!(parse_inet_record(&inet_msg(7, [0; 16], [0; 16])).is_err());
        assert!(parse_inet_record(&[AF_INET; 71]).is_err());
    }

    #[test]
    fn destroy_notices_carry_protocol_and_tcp_counters() {
        // Captured on Linux 6.18: a loopback TCP connection (the client sent 1000 bytes, read
        // 10, and closed first), both ends freed, then a connected UDP socket on ::1. Sequence
        // space: the client's SYN and FIN are acked bytes too.
        let captured = include_bytes!("../../../fuzz/seeds/net_tables/sock_destroy.bin");
        let records: Vec<DestroyedRecord> = diag_messages(captured)
            .map(|m| match m.unwrap() {
                DiagMessage::Record { payload, .. } => parse_destroyed_record(payload).unwrap(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(records.len(), 3);
        let client = records[0];
        assert_eq!((client.protocol, client.record.inode), (6, 0));
        assert_eq!(client.record.local, ("127.0.0.1".parse().unwrap(), 54954));
        assert_eq!(client.record.remote, ("127.0.0.1".parse().unwrap(), 47367));
        let tcp = client.tcp.unwrap();
        assert_eq!((tcp.bytes_acked, tcp.bytes_received), (1002, 11));
        let server = records[1].tcp.unwrap();
        assert_eq!((server.bytes_acked, server.bytes_received), (11, 1001));
        let udp = records[2];
        assert_eq!((udp.protocol, udp.tcp), (17, None));
        assert_eq!(udp.record.remote, ("::1".parse().unwrap(), 53));
        // Without its protocol a notice cannot be told TCP from UDP; a short tcp_info is left out.
        let bare = inet_msg(AF_INET, [0; 16], [0; 16]);
        assert!(parse_destroyed_record(&bare).is_err());
        let mut short = bare.clone();
        short.extend(attribute(INET_DIAG_PROTOCOL, &[6]));
        short.extend(attribute(INET_DIAG_INFO, &[0; 100]));
        assert_eq!(parse_destroyed_record(&short).unwrap().tcp, None);
        short.extend([200, 0, 2, 0]); // claims more bytes than follow
        assert!(parse_destroyed_record(&short).is_err());
    }

    #[test]
    fn unix_records_keep_names_exact() {
        let mut msg = vec![1, 1, 10, 0];
        msg.extend_from_slice(&77u32.to_ne_bytes());
        msg.extend_from_slice(&[0; 8]);
        let mut path = msg.clone();
        path.extend(attribute(UNIX_DIAG_NAME, b"/run/a\nb\xff.sock\0"));
        path.extend(attribute(9, &[3, 0, 0, 0, 128, 0, 0, 0]));
        let record = parse_unix_record(&path).unwrap();
        assert_eq!(record.name, Some(&b"/run/a\nb\xff.sock"[..]));
        assert_eq!((record.inode, record.state, record.socket_type), (77, 10, 1));
        assert_eq!(record.peer, None, "an attribute it does not know is skipped");
        let mut abstract_name = msg.clone();
        abstract_name.extend(attribute(UNIX_DIAG_NAME, b"\0bus\0x"));
        abstract_name.extend(attribute(UNIX_DIAG_PEER, &88u32.to_ne_bytes()));
        let record = parse_unix_record(&abstract_name).unwrap();
        assert_eq!(record.name, Some(&b"\0bus\0x"[..]));
        assert_eq!(record.peer, Some(88));
        assert_eq!(record.shutdown, 0);
        let mut shut = msg.clone();
        shut.extend(attribute(UNIX_DIAG_SHUTDOWN, &[2]));
        assert_eq!(parse_unix_record(&shut).unwrap().shutdown, 2, "journald's SHUT_WR");
        let mut empty_shutdown = msg.clone();
        empty_shutdown.extend(attribute(UNIX_DIAG_SHUTDOWN, &[]));
        assert!(parse_unix_record(&empty_shutdown).is_err());
        assert_eq!(parse_unix_record(&msg).unwrap().name, None);
        let mut lying = msg.clone();
        lying.extend_from_slice(&[200, 0, 0, 0]);
        assert_eq!(parse_unix_record(&lying), Err(ParseError::Malformed("nlattr")));
    }

    #[test]
    fn a_message_longer_than_the_buffer_is_an_error_and_ends_the_walk() {
        let mut buf = message(NLMSG_DONE, 0, &[0; 4]);
        buf[0] = 200;
        let all: Vec<_> = diag_messages(&buf).collect();
        assert_eq!(all, vec![Err(ParseError::Malformed("nlmsg_len"))]);
    }

    proptest! {
        #[test]
        fn no_input_panics(buf in prop::collection::vec(any::<u8>(), 0..512)) {
            for message in diag_messages(&buf) {
                if let Ok(DiagMessage::Record { payload, .. }) = message {
                    let _ = parse_inet_record(payload);
                    let _ = parse_unix_record(payload);
                }
            }
            let _ = parse_inet_record(&buf);
            let _ = parse_unix_record(&buf);
        }
    }
}
