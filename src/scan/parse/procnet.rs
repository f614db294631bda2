//! Rows of the /proc/<pid>/net text tables: tcp, udp, udplite, raw, icmp (v4 and v6), unix,
//! packet, netlink. These are the fallback when sock_diag cannot be used, and the only source for
//! ping (icmp), packet and netlink sockets.

use super::number::{parse_dec, parse_dec_as, parse_hex, parse_hex_as};
use super::{ParseError, fields};
use crate::model::{Endpoint, RawText};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The byte order of the machine that printed the table. The kernel prints each 32-bit word of an
/// address with `%08X` on the in-memory (network-order) value, so the text depends on the
/// printing host's endianness: 127.0.0.1 is `0100007F` on x86 and `7F000001` on s390x.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ByteOrder {
    /// Little-endian host.
    Little,
    /// Big-endian host.
    Big,
}

impl ByteOrder {
    /// The order of the machine this code runs on.
    pub const NATIVE: ByteOrder =
        if cfg!(target_endian = "little") { ByteOrder::Little } else { ByteOrder::Big };

    fn word_bytes(self, word: u32) -> [u8; 4] {
        match self {
            ByteOrder::Little => word.to_le_bytes(),
            ByteOrder::Big => word.to_be_bytes(),
        }
    }
}

/// One row of tcp/udp/udplite/raw/icmp (v4 or v6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InetRow {
    /// Local endpoint.
    pub local: Endpoint,
    /// Remote endpoint.
    pub remote: Endpoint,
    /// Numeric TCP-style state.
    pub state: u8,
    /// Send queue.
    pub tx_queue: u32,
    /// Receive queue.
    pub rx_queue: u32,
    /// Owner uid.
    pub uid: u32,
    /// Socket inode (0 for TIME_WAIT and request sockets).
    pub inode: u64,
}

/// Parses one data line (not the header) of an inet table. Extra trailing columns are ignored:
/// kernels add them over time.
pub fn parse_inet_line(line: &[u8], order: ByteOrder) -> Result<InetRow, ParseError> {
    let mut cols = fields(line);
    let mut next = |name| cols.next().ok_or(ParseError::MissingField(name));
    let slot = next("sl")?;
    if slot.last() != Some(&b':') {
        return Err(ParseError::Malformed("sl"));
    }
    let local = parse_endpoint(next("local_address")?, order)?;
    let remote = parse_endpoint(next("rem_address")?, order)?;
    let state = parse_hex_as("st", next("st")?)?;
    let (tx_queue, rx_queue) = pair(next("tx_queue:rx_queue")?, "tx_queue:rx_queue")?;
    next("tr:tm->when")?;
    next("retrnsmt")?;
    let uid = parse_dec_as("uid", next("uid")?)?;
    next("timeout")?;
    let inode = parse_dec("inode", next("inode")?)?;
    Ok(InetRow { local, remote, state, tx_queue, rx_queue, uid, inode })
}

fn pair(field: &[u8], name: &'static str) -> Result<(u32, u32), ParseError> {
    let colon = field.iter().position(|&b| b == b':').ok_or(ParseError::Malformed(name))?;
    Ok((parse_hex_as(name, &field[..colon])?, parse_hex_as(name, &field[colon + 1..])?))
}

fn parse_endpoint(field: &[u8], order: ByteOrder) -> Result<Endpoint, ParseError> {
    let colon = field.iter().position(|&b| b == b':').ok_or(ParseError::Malformed("address"))?;
    let (hex, port) = (&field[..colon], &field[colon + 1..]);
    let port = parse_hex_as("port", port)?;
    let addr = match hex.len() {
        8 => IpAddr::V4(Ipv4Addr::from(order.word_bytes(parse_hex_as("address", hex)?))),
        32 => {
            let mut octets = [0u8; 16];
            for (i, chunk) in hex.chunks_exact(8).enumerate() {
                let word = order.word_bytes(parse_hex_as("address", chunk)?);
                octets[i * 4..i * 4 + 4].copy_from_slice(&word);
            }
            IpAddr::V6(Ipv6Addr::from(octets))
        }
        _ => return Err(ParseError::Malformed("address")),
    };
    Ok(Endpoint::new(addr, port))
}

/// One row of /proc/net/unix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnixRow {
    /// Socket type: 1 stream, 2 dgram, 5 seqpacket.
    pub socket_type: u16,
    /// `SS_*` state: 1 unconnected, 2 connecting, 3 connected, 4 disconnecting.
    pub ss_state: u8,
    /// The socket listens (`__SO_ACCEPTCON` in flags).
    pub listening: bool,
    /// Inode.
    pub inode: u64,
    /// Bound name (abstract names start with `@`); empty when unnamed.
    pub name: RawText,
}

/// Parses one data line of /proc/net/unix. The name is the rest of the line after the inode and
/// one space: it may hold spaces. A name with a newline spills into the next line, which then
/// parses as garbage or as a forged row; sock_diag, which returns exact bytes, is why this is only
/// the fallback, and callers count rows whose inode repeats.
pub fn parse_unix_line(line: &[u8]) -> Result<UnixRow, ParseError> {
    const ACCEPTCON: u64 = 1 << 16;
    let mut rest = line.trim_ascii_start();
    let mut take = |name| -> Result<&[u8], ParseError> {
        let end = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
        let field = &rest[..end];
        rest = rest.get(end + 1..).unwrap_or(&[]);
        if field.is_empty() { Err(ParseError::MissingField(name)) } else { Ok(field) }
    };
    if take("Num")?.last() != Some(&b':') {
        return Err(ParseError::Malformed("Num"));
    }
    parse_hex("RefCount", take("RefCount")?)?;
    parse_hex("Protocol", take("Protocol")?)?;
    let flags = parse_hex("Flags", take("Flags")?)?;
    let socket_type = parse_hex_as("Type", take("Type")?)?;
    let ss_state = parse_hex_as("St", take("St")?)?;
    let inode = parse_dec("Inode", take("Inode")?)?;
    Ok(UnixRow {
        socket_type,
        ss_state,
        listening: flags & ACCEPTCON != 0,
        inode,
        name: RawText::from(rest),
    })
}

/// One row of /proc/net/packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketRow {
    /// SOCK_RAW (3) or SOCK_DGRAM (2).
    pub socket_type: u16,
    /// Ethertype (host order).
    pub protocol: u16,
    /// Interface index (0: all).
    pub ifindex: u32,
    /// Owner uid.
    pub uid: u32,
    /// Inode.
    pub inode: u64,
}

/// Parses one data line of /proc/net/packet:
/// `sk RefCnt Type Proto Iface R Rmem User Inode`.
pub fn parse_packet_line(line: &[u8]) -> Result<PacketRow, ParseError> {
    let mut cols = fields(line);
    let mut next = |name| cols.next().ok_or(ParseError::MissingField(name));
    parse_hex("sk", next("sk")?)?;
    next("RefCnt")?;
    let socket_type = parse_dec_as("Type", next("Type")?)?;
    let protocol = parse_hex_as("Proto", next("Proto")?)?;
    let ifindex = parse_dec_as("Iface", next("Iface")?)?;
    next("R")?;
    next("Rmem")?;
    let uid = parse_dec_as("User", next("User")?)?;
    let inode = parse_dec("Inode", next("Inode")?)?;
    Ok(PacketRow { socket_type, protocol, ifindex, uid, inode })
}

/// One row of /proc/net/netlink.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetlinkRow {
    /// Netlink protocol (NETLINK_ROUTE = 0, …).
    pub protocol: u32,
    /// Port id.
    pub portid: u32,
    /// Inode.
    pub inode: u64,
}

/// Parses one data line of /proc/net/netlink:
/// `sk Eth Pid Groups Rmem Wmem Dump Locks Drops Inode`.
pub fn parse_netlink_line(line: &[u8]) -> Result<NetlinkRow, ParseError> {
    let mut cols = fields(line);
    let mut next = |name| cols.next().ok_or(ParseError::MissingField(name));
    parse_hex("sk", next("sk")?)?;
    let protocol = parse_dec_as("Eth", next("Eth")?)?;
    let portid = parse_dec_as("Pid", next("Pid")?)?;
    for name in ["Groups", "Rmem", "Wmem", "Dump", "Locks", "Drops"] {
        next(name)?;
    }
    let inode = parse_dec("Inode", next("Inode")?)?;
    Ok(NetlinkRow { protocol, portid, inode })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TCP: &[u8] = b"   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 31337 1 0000000000000000 100 0 0 10 0";
    const TCP6_MAPPED: &[u8] = b"   1: 0000000000000000FFFF00000100007F:A2C4 0000000000000000FFFF00000100007F:1F90 01 00000010:00000002 00:00000000 00000000  1000        0 424242 1 0000000000000000 20 4 29 10 -1";

    #[test]
    fn captured_tcp_listener() {
        let row = parse_inet_line(TCP, ByteOrder::Little).unwrap();
        assert_eq!(row.local.addr, "127.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!((row.local.port, row.state, row.inode), (8080, 10, 31337));
        assert!(row.remote.is_unspecified());
    }

    #[test]
    fn v4_mapped_is_normalised_and_remembered() {
        let row = parse_inet_line(TCP6_MAPPED, ByteOrder::Little).unwrap();
        assert_eq!(row.local.addr, "127.0.0.1".parse::<IpAddr>().unwrap());
        assert!(row.local.v4_mapped);
        assert_eq!((row.remote.port, row.tx_queue, row.rx_queue, row.uid), (8080, 16, 2, 1000));
    }

    #[test]
    fn big_endian_hosts_print_addresses_the_other_way() {
        let be =
            b"0: 7F000001:0016 0A000002:D431 01 00000000:00000000 00:00000000 00000000 0 0 7 1";
        let row = parse_inet_line(be, ByteOrder::Big).unwrap();
        assert_eq!(row.local.addr, "127.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(row.remote.addr, "10.0.0.2".parse::<IpAddr>().unwrap());
        let v6 = b"0: 00000000000000000000000000000001:0016 00000000000000000000000000000000:0000 0A 0:0 0:0 0 0 0 8";
        let row = parse_inet_line(v6, ByteOrder::Big).unwrap();
        assert_eq!(row.local.addr, "::1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn hostile_inet_lines_are_errors() {
        assert!(parse_inet_line(b"", ByteOrder::Little).is_err());
        assert!(parse_inet_line(&TCP[..40], ByteOrder::Little).is_err());
        let huge_inode = b"0: 0100007F:1F90 00000000:0000 0A 0:0 0:0 0 0 0 99999999999999999999999";
        assert_eq!(
            parse_inet_line(huge_inode, ByteOrder::Little),
            Err(ParseError::BadNumber("inode"))
        );
        let bad_addr = b"0: 0100007:1F90 00000000:0000 0A 0:0 0:0 0 0 0 1";
        assert!(parse_inet_line(bad_addr, ByteOrder::Little).is_err());
        let big_port = b"0: 0100007F:1FFFF 00000000:0000 0A 0:0 0:0 0 0 0 1";
        assert!(parse_inet_line(big_port, ByteOrder::Little).is_err());
    }

    #[test]
    fn unix_rows_keep_spaces_and_bytes_in_names() {
        let row = parse_unix_line(
            b"0000000000000000: 00000002 00000000 00010000 0001 01 23456 /run/a b\xff",
        )
        .unwrap();
        assert!(row.listening);
        assert_eq!((row.socket_type, row.ss_state, row.inode), (1, 1, 23456));
        assert_eq!(row.name.as_bytes(), b"/run/a b\xff");
        let unnamed =
            parse_unix_line(b"0000000000000000: 00000003 00000000 00000000 0001 03 777").unwrap();
        assert!(unnamed.name.is_empty() && !unnamed.listening);
        assert!(parse_unix_line(b"0000000000000000: 00000003").is_err());
        assert!(parse_unix_line(b"evil row").is_err());
    }

    #[test]
    fn packet_and_netlink_rows() {
        let p = parse_packet_line(
            b"ffff8880059ee000 3      3     0003   2     1     0      0      18372",
        )
        .unwrap();
        assert_eq!((p.socket_type, p.protocol, p.ifindex, p.inode), (3, 3, 2, 18372));
        let n = parse_netlink_line(b"ffff88800579b800 0   1         00000551 0        0        0     2        0        11234").unwrap();
        assert_eq!((n.protocol, n.portid, n.inode), (0, 1, 11234));
    }

    proptest! {
        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_inet_line(&bytes, ByteOrder::Little);
            let _ = parse_inet_line(&bytes, ByteOrder::Big);
            let _ = parse_unix_line(&bytes);
            let _ = parse_packet_line(&bytes);
            let _ = parse_netlink_line(&bytes);
        }

        #[test]
        fn inet_roundtrip(a in any::<[u8; 4]>(), port in any::<u16>(), inode in any::<u64>()) {
            let word = u32::from_le_bytes(a);
            let line = format!("0: {word:08X}:{port:04X} 00000000:0000 01 0:0 0:0 0 0 0 {inode} extra cols");
            let row = parse_inet_line(line.as_bytes(), ByteOrder::Little).unwrap();
            prop_assert_eq!(row.local.addr, IpAddr::V4(Ipv4Addr::from(a)));
            prop_assert_eq!((row.local.port, row.inode), (port, inode));
        }
    }
}
