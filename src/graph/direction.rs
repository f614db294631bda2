//! Which side opened a connection (DESIGN §3 "Direction").
//!
//! TCP is inbound when a LISTEN socket of the same namespace serves its local port (wildcard and
//! dual-stack listeners match any local address), in this snapshot or an earlier one
//! (`ListenerMemory`: `nc -l -e` closes its listener on accept). Without a listener, an ephemeral
//! local port (`ip_local_port_range` of that namespace) means outbound, an ephemeral remote port
//! inbound. Connected UDP is inbound when an unconnected socket binds its local port. Loopback is
//! never special here: it is a property for rules, not a filter.

use crate::model::{Direction, DirectionSource, Endpoint, Protocol, Snapshot, Socket, SocketState};
use std::collections::{HashMap, HashSet};
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
    let mut listeners: HashMap<(u64, Transport, u16), Vec<IpAddr>> = HashMap::new();
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

    snapshot
        .sockets
        .iter()
        .map(|socket| {
            let range = ranges.get(&socket.key.netns).copied().unwrap_or(own_range);
            direction_of(socket, &listeners, memory, range)
        })
        .collect()
}

fn direction_of(
    socket: &Socket,
    listeners: &HashMap<(u64, Transport, u16), Vec<IpAddr>>,
    memory: Option<&ListenerMemory>,
    ephemeral: (u16, u16),
) -> (Direction, DirectionSource) {
    let Some(t) = transport(&socket.protocol) else {
        return match socket.state {
            SocketState::Listen => (Direction::Listening, DirectionSource::State),
            _ => (Direction::Unknown, DirectionSource::None),
        };
    };
    let (Some(local), Some(remote)) = (socket.local, socket.remote) else {
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
    let ephemeral = |e: &Endpoint| (ephemeral.0..=ephemeral.1).contains(&e.port);
    if ephemeral(&local) {
        (Direction::Outbound, DirectionSource::PortRange)
    } else if ephemeral(&remote) {
        (Direction::Inbound, DirectionSource::PortRange)
    } else {
        (Direction::Unknown, DirectionSource::None)
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
