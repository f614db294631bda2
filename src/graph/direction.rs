//! Which side opened a connection (DESIGN §3 "Direction").
//!
//! TCP is inbound when a LISTEN socket of the same namespace serves its local port (wildcard and
//! dual-stack listeners match any local address), in this snapshot or an earlier one
//! (`ListenerMemory`: `nc -l -e` closes its listener on accept). When both ends of a connection
//! are in one namespace (loopback, or a relay hop inside a host) and one end's direction rests on
//! its state or a listener, the other end is the opposite: a hop with both ports picked outside
//! the ephemeral range is still told. Without any of that, an ephemeral local port
//! (`ip_local_port_range` of that namespace) means outbound, an ephemeral remote port inbound,
//! and two ports outside the range leave the direction unknown — which rules treat as a
//! candidate, never as benign. Connected UDP is inbound when an unconnected socket binds its
//! local port. Loopback is never special here: it is a property for rules, not a filter.

use crate::model::{Direction, DirectionSource, Endpoint, Protocol, Snapshot, Socket, SocketState};
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use std::net::IpAddr;

/// The kernel's default `ip_local_port_range`, used when a namespace's own could not be read.
pub const DEFAULT_EPHEMERAL_PORTS: (u16, u16) = (32768, 60999);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Transport {
    Tcp,
    Udp,
}

fn transport(protocol: &Protocol) -> Option<Transport> {
    match protocol {
        Protocol::Tcp => Some(Transport::Tcp),
        Protocol::Udp | Protocol::Udplite => Some(Transport::Udp),
        _ => None,
    }
}

/// Listening (netns, transport, port) triples seen in earlier snapshots.
#[derive(Clone, Debug, Default)]
pub struct ListenerMemory {
    seen: HashSet<(u64, u8, u16)>,
}

impl ListenerMemory {
    /// Remembers every listener of `snapshot`.
    pub fn remember(&mut self, snapshot: &Snapshot) {
        for socket in &snapshot.sockets {
            if let (Some(t), Some(local)) = (transport(&socket.protocol), socket.local)
                && is_listener(socket, t)
            {
                self.seen.insert((socket.key.netns, t as u8, local.port));
            }
        }
    }

    fn contains(&self, netns: u64, t: Transport, port: u16) -> bool {
        self.seen.contains(&(netns, t as u8, port))
    }
}

fn is_listener(socket: &Socket, t: Transport) -> bool {
    match t {
        Transport::Tcp => socket.state == SocketState::Listen,
        Transport::Udp => !is_connected(socket),
    }
}

fn is_connected(socket: &Socket) -> bool {
    socket.remote.is_some_and(|r| r.port != 0 || !r.addr.is_unspecified())
}

/// Computes each socket's direction, in `snapshot.sockets` order.
pub fn directions(
    snapshot: &Snapshot,
    memory: Option<&ListenerMemory>,
) -> Vec<(Direction, DirectionSource)> {
    let mut listeners: HashMap<(u64, Transport, u16), Vec<IpAddr>> = HashMap::default();
    for socket in &snapshot.sockets {
        if let (Some(t), Some(local)) = (transport(&socket.protocol), socket.local)
            && is_listener(socket, t)
        {
            listeners.entry((socket.key.netns, t, local.port)).or_default().push(local.addr);
        }
    }
    let own_range = snapshot
        .namespaces
        .iter()
        .find(|n| n.inode == snapshot.own_netns)
        .and_then(|n| n.ephemeral_ports)
        .unwrap_or(DEFAULT_EPHEMERAL_PORTS);
    let ranges: HashMap<u64, (u16, u16)> = snapshot
        .namespaces
        .iter()
        .map(|n| (n.inode, n.ephemeral_ports.unwrap_or(own_range)))
        .collect();

    let mut verdicts: Vec<(Direction, DirectionSource)> =
        snapshot.sockets.iter().map(|socket| direction_of(socket, &listeners, memory)).collect();
    from_peers(snapshot, &mut verdicts);
    for (socket, verdict) in snapshot.sockets.iter().zip(&mut verdicts) {
        if verdict.1 == DirectionSource::None {
            let range = ranges.get(&socket.key.netns).copied().unwrap_or(own_range);
            *verdict = by_port_range(socket, range);
        }
    }
    verdicts
}

/// Gives an end not judged yet the opposite of its peer's direction, when the peer is in the same
/// namespace and was judged by its state or a listener.
fn from_peers(snapshot: &Snapshot, verdicts: &mut [(Direction, DirectionSource)]) {
    let key = |s: &Socket, swapped: bool| {
        let (t, local, remote) = (transport(&s.protocol)?, s.local?, s.remote?);
        let (a, b) = if swapped { (remote, local) } else { (local, remote) };
        Some((s.key.netns, t, a.addr, a.port, b.addr, b.port))
    };
    let undecided =
        |i: usize, s: &Socket| verdicts[i].1 == DirectionSource::None && is_connected(s);
    if !snapshot.sockets.iter().enumerate().any(|(i, s)| undecided(i, s)) {
        return;
    }
    // Only ends judged by their state or a listener can tell their peer anything.
    let decided = |i: usize| {
        matches!(verdicts[i].1, DirectionSource::State | DirectionSource::Listener)
            && matches!(verdicts[i].0, Direction::Inbound | Direction::Outbound)
    };
    let mut ends: HashMap<_, usize> = HashMap::default();
    for (i, socket) in snapshot.sockets.iter().enumerate() {
        if decided(i)
            && is_connected(socket)
            && let Some(k) = key(socket, false)
        {
            ends.insert(k, i);
        }
    }
    if ends.is_empty() {
        return;
    }
    for (i, socket) in snapshot.sockets.iter().enumerate() {
        if verdicts[i].1 != DirectionSource::None || !is_connected(socket) {
            continue;
        }
        let Some(&peer) = key(socket, true).and_then(|k| ends.get(&k)) else { continue };
        let opposite = match verdicts[peer] {
            (Direction::Inbound, DirectionSource::State | DirectionSource::Listener) => {
                Direction::Outbound
            }
            (Direction::Outbound, DirectionSource::State | DirectionSource::Listener) => {
                Direction::Inbound
            }
            _ => continue,
        };
        verdicts[i] = (opposite, DirectionSource::Peer);
    }
}

/// The direction from the socket's state and from listeners; `DirectionSource::None` when they
/// do not tell.
fn direction_of(
    socket: &Socket,
    listeners: &HashMap<(u64, Transport, u16), Vec<IpAddr>>,
    memory: Option<&ListenerMemory>,
) -> (Direction, DirectionSource) {
    let Some(t) = transport(&socket.protocol) else {
        return match socket.state {
            SocketState::Listen => (Direction::Listening, DirectionSource::State),
            _ => (Direction::Unknown, DirectionSource::None),
        };
    };
    let (Some(local), Some(_)) = (socket.local, socket.remote) else {
        return (Direction::Unknown, DirectionSource::None);
    };
    match (t, socket.state) {
        (Transport::Tcp, SocketState::Listen) => {
            return (Direction::Listening, DirectionSource::State);
        }
        (Transport::Tcp, SocketState::SynSent) => {
            return (Direction::Outbound, DirectionSource::State);
        }
        (Transport::Tcp, SocketState::SynRecv | SocketState::NewSynRecv) => {
            return (Direction::Inbound, DirectionSource::State);
        }
        (Transport::Tcp, SocketState::Close) if !is_connected(socket) => {
            return (Direction::Unknown, DirectionSource::None);
        }
        (Transport::Udp, _) if !is_connected(socket) => {
            return (Direction::Listening, DirectionSource::State);
        }
        _ => {}
    }
    if serves(listeners, socket.key.netns, t, &local)
        || memory.is_some_and(|m| m.contains(socket.key.netns, t, local.port))
    {
        return (Direction::Inbound, DirectionSource::Listener);
    }
    (Direction::Unknown, DirectionSource::None)
}

/// The last resort for a connected socket: which end's port the kernel picked.
/// The direction of a connection no scan saw, told when the kernel freed it: inbound when a
/// listener of its namespace served its local port in an earlier scan, else by port range.
pub fn of_unscanned(
    socket: &Socket,
    memory: &ListenerMemory,
    ephemeral: (u16, u16),
) -> (Direction, DirectionSource) {
    if let (Some(t), Some(local)) = (transport(&socket.protocol), socket.local)
        && is_connected(socket)
        && memory.contains(socket.key.netns, t, local.port)
    {
        return (Direction::Inbound, DirectionSource::Listener);
    }
    by_port_range(socket, ephemeral)
}

fn by_port_range(socket: &Socket, ephemeral: (u16, u16)) -> (Direction, DirectionSource) {
    let unknown = (Direction::Unknown, DirectionSource::None);
    let (Some(_), Some(local), Some(remote)) =
        (transport(&socket.protocol), socket.local, socket.remote)
    else {
        return unknown;
    };
    if !is_connected(socket) {
        return unknown;
    }
    let ephemeral = |e: &Endpoint| (ephemeral.0..=ephemeral.1).contains(&e.port);
    if ephemeral(&local) {
        (Direction::Outbound, DirectionSource::PortRange)
    } else if ephemeral(&remote) {
        (Direction::Inbound, DirectionSource::PortRange)
    } else {
        unknown
    }
}

fn serves(
    listeners: &HashMap<(u64, Transport, u16), Vec<IpAddr>>,
    netns: u64,
    t: Transport,
    local: &Endpoint,
) -> bool {
    listeners.get(&(netns, t, local.port)).is_some_and(|addrs| {
        // A v6 wildcard listener also serves v4 unless IPV6_V6ONLY, which the tables do not show:
        // counting it as serving errs towards "inbound" only for a port something listens on.
        addrs.iter().any(|a| a.is_unspecified() || *a == local.addr)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixture::{Builder, NETNS};
    use crate::model::{Protocol::*, SocketState::*};

    fn verdicts(
        b: Builder,
        memory: Option<&ListenerMemory>,
    ) -> Vec<(u64, Direction, DirectionSource)> {
        let snapshot = b.build();
        let d = directions(&snapshot, memory);
        snapshot.sockets.iter().zip(d).map(|(s, (dir, src))| (s.key.inode, dir, src)).collect()
    }

    fn verdict_of(
        v: &[(u64, Direction, DirectionSource)],
        inode: u64,
    ) -> (Direction, DirectionSource) {
        v.iter().find(|x| x.0 == inode).map(|x| (x.1, x.2)).unwrap()
    }

    #[test]
    fn tcp_by_listener_state_and_port_range() {
        let mut b = Builder::new();
        b.inet(1, Tcp, "0.0.0.0:8080", "0.0.0.0:0", Listen);
        b.inet(2, Tcp, "127.0.0.1:8080", "127.0.0.1:50000", Established);
        b.inet(3, Tcp, "127.0.0.1:45000", "127.0.0.1:443", Established);
        b.inet(4, Tcp, "127.0.0.1:9000", "127.0.0.1:443", Established);
        b.inet(5, Tcp, "127.0.0.1:7000", "127.0.0.1:50001", CloseWait);
        b.inet(6, Tcp, "127.0.0.1:45001", "10.0.0.1:22", SynSent);
        b.inet(7, Tcp, "[::]:2222", "[::]:0", Listen);
        b.inet(8, Tcp, "10.1.1.1:2222", "10.9.9.9:22", Established);
        let v = verdicts(b, None);
        use Direction::*;
        use DirectionSource as S;
        assert_eq!(verdict_of(&v, 1), (Listening, S::State));
        assert_eq!(verdict_of(&v, 2), (Inbound, S::Listener));
        assert_eq!(verdict_of(&v, 3), (Outbound, S::PortRange));
        assert_eq!(verdict_of(&v, 4), (Unknown, S::None));
        assert_eq!(verdict_of(&v, 5), (Inbound, S::PortRange), "an ephemeral remote port");
        assert_eq!(verdict_of(&v, 6), (Outbound, S::State));
        assert_eq!(verdict_of(&v, 8), (Inbound, S::Listener), "a v6 wildcard serves v4");
    }

    #[test]
    fn a_listener_of_another_namespace_does_not_count() {
        let mut b = Builder::new();
        b.inet(1, Tcp, "0.0.0.0:8080", "0.0.0.0:0", Listen);
        b.inet(2, Tcp, "127.0.0.1:8080", "127.0.0.1:443", Established);
        b.snapshot_mut().sockets[0].key.netns = NETNS + 1;
        let v = verdicts(b, None);
        assert_eq!(verdict_of(&v, 2), (Direction::Unknown, DirectionSource::None));
    }

    #[test]
    fn a_listener_seen_earlier_still_marks_inbound() {
        // nc -l -e closes its listener on accept: only an earlier snapshot saw it.
        let mut earlier = Builder::new();
        earlier.inet(1, Tcp, "0.0.0.0:4444", "0.0.0.0:0", Listen);
        let mut memory = ListenerMemory::default();
        memory.remember(&earlier.build());
        let accepted = || {
            let mut b = Builder::new();
            b.inet(2, Tcp, "127.0.0.1:4444", "127.0.0.1:4000", Established);
            b
        };
        let v = verdicts(accepted(), None);
        assert_eq!(verdict_of(&v, 2), (Direction::Unknown, DirectionSource::None));
        let v = verdicts(accepted(), Some(&memory));
        assert_eq!(verdict_of(&v, 2), (Direction::Inbound, DirectionSource::Listener));
    }

    #[test]
    fn a_loopback_peer_judged_by_a_listener_tells_the_other_end() {
        // A relay hop with both ports chosen below the ephemeral range: `nc -p 5555 127.0.0.1
        // 6666` to a listener on 6666 that is still there, and to one already gone.
        let mut b = Builder::new();
        b.inet(1, Tcp, "127.0.0.1:6666", "0.0.0.0:0", Listen);
        b.inet(2, Tcp, "127.0.0.1:5555", "127.0.0.1:6666", Established);
        b.inet(3, Tcp, "127.0.0.1:6666", "127.0.0.1:5555", Established);
        b.inet(4, Tcp, "127.0.0.1:7001", "127.0.0.1:7002", Established);
        b.inet(5, Tcp, "127.0.0.1:7002", "127.0.0.1:7001", Established);
        // Port range says inbound (an ephemeral remote port), the peer's listener says outbound.
        b.inet(6, Tcp, "0.0.0.0:50000", "0.0.0.0:0", Listen);
        b.inet(7, Tcp, "127.0.0.1:4444", "127.0.0.1:50000", Established);
        b.inet(8, Tcp, "127.0.0.1:50000", "127.0.0.1:4444", Established);
        let v = verdicts(b, None);
        use Direction::*;
        use DirectionSource as S;
        assert_eq!(verdict_of(&v, 3), (Inbound, S::Listener));
        assert_eq!(verdict_of(&v, 2), (Outbound, S::Peer));
        assert_eq!(verdict_of(&v, 4), (Unknown, S::None), "nothing to tell either end by");
        assert_eq!(verdict_of(&v, 5), (Unknown, S::None));
        assert_eq!(verdict_of(&v, 7), (Outbound, S::Peer));
        // Remembered listeners count as listeners for the peer too.
        let mut earlier = Builder::new();
        earlier.inet(9, Tcp, "0.0.0.0:7002", "0.0.0.0:0", Listen);
        let mut memory = ListenerMemory::default();
        memory.remember(&earlier.build());
        let mut b = Builder::new();
        b.inet(4, Tcp, "127.0.0.1:7001", "127.0.0.1:7002", Established);
        b.inet(5, Tcp, "127.0.0.1:7002", "127.0.0.1:7001", Established);
        let v = verdicts(b, Some(&memory));
        assert_eq!(verdict_of(&v, 5), (Inbound, S::Listener));
        assert_eq!(verdict_of(&v, 4), (Outbound, S::Peer));
    }

    #[test]
    fn udp_by_unconnected_socket_on_the_port() {
        let mut b = Builder::new();
        b.inet(1, Udp, "0.0.0.0:53", "0.0.0.0:0", Close);
        b.inet(2, Udp, "127.0.0.1:53", "127.0.0.1:40000", Established);
        b.inet(3, Udp, "127.0.0.1:40001", "127.0.0.1:53", Established);
        let v = verdicts(b, None);
        assert_eq!(verdict_of(&v, 1), (Direction::Listening, DirectionSource::State));
        assert_eq!(verdict_of(&v, 2), (Direction::Inbound, DirectionSource::Listener));
        assert_eq!(verdict_of(&v, 3), (Direction::Outbound, DirectionSource::PortRange));
    }

    #[test]
    fn the_namespace_port_range_is_used() {
        let mut b = Builder::new();
        b.snapshot_mut().namespaces[0].ephemeral_ports = Some((1000, 2000));
        b.inet(1, Tcp, "127.0.0.1:1500", "127.0.0.1:443", Established);
        b.inet(2, Tcp, "127.0.0.1:45000", "127.0.0.1:443", Established);
        let v = verdicts(b, None);
        assert_eq!(verdict_of(&v, 1), (Direction::Outbound, DirectionSource::PortRange));
        assert_eq!(verdict_of(&v, 2), (Direction::Unknown, DirectionSource::None));
    }
}
