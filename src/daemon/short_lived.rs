//! Which freed sockets are news: a connection the last scan listed is reported by the next
//! diff (closed, with its holders), so only those no scan saw become `socket_short_lived`
//! events. Their holders are known when an exec check saw the socket held; otherwise the event
//! says they are not known. A notice carries no inode, so sockets are matched by namespace,
//! protocol and both endpoints: unique among live sockets of a namespace.

use crate::graph::{DEFAULT_EPHEMERAL_PORTS, ListenerMemory, of_unscanned};
use crate::model::{
    Endpoint, Family, Process, Protocol, ShortLived, Snapshot, Socket, SocketKey, SocketState,
    TableSource,
};
use crate::scan::Destroyed;
use rustc_hash::{FxHashMap, FxHashSet};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Connections reported a second, in bursts of as many: beyond it (a web server's clients, a
/// resolver's queries) they are counted, not reported one by one.
pub(crate) const REPORTED_PER_SECOND: u32 = 200;
/// How long what an exec check saw is kept to attribute a later notice.
const LOOKED_KEPT: Duration = Duration::from_secs(30);
/// Sockets kept from looks at most.
const LOOKED_MAX: usize = 4096;

/// (namespace, IP protocol number, local, remote).
type ConnectionKey = (u64, u8, Endpoint, Endpoint);

/// Counters for the heartbeat.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub(crate) struct ShortLivedCounts {
    /// Connections reported.
    pub reported: u64,
    /// Of those, with their holders.
    pub attributed: u64,
    /// Over `REPORTED_PER_SECOND`: counted only.
    pub over_budget: u64,
    /// Freed sockets a scan had listed (the diff reports them).
    pub scanned: u64,
    /// Freed sockets that never had a remote end (listeners, unconnected UDP, refused connects).
    pub unconnected: u64,
    /// Connections to the agent's own listeners (a metrics scrape): the agent's own business.
    pub own: u64,
}

/// A socket an exec check saw held, kept to name the holders of its connection once it closes.
struct Looked {
    socket: Socket,
    processes: Vec<Process>,
}

pub(crate) struct ShortLivedReport {
    scanned: FxHashSet<ConnectionKey>,
    /// (namespace, port) of listeners only the agent holds.
    own_listeners: FxHashSet<(u64, u16)>,
    ranges: FxHashMap<u64, (u16, u16)>,
    own_range: (u16, u16),
    looked: FxHashMap<ConnectionKey, Looked>,
    looked_at: VecDeque<(Instant, ConnectionKey)>,
    budget: super::exec_checks::Budget,
    pub counts: ShortLivedCounts,
}

impl Default for ShortLivedReport {
    fn default() -> Self {
        ShortLivedReport {
            scanned: FxHashSet::default(),
            own_listeners: FxHashSet::default(),
            ranges: FxHashMap::default(),
            own_range: DEFAULT_EPHEMERAL_PORTS,
            looked: FxHashMap::default(),
            looked_at: VecDeque::new(),
            budget: super::exec_checks::Budget::new(REPORTED_PER_SECOND),
            counts: ShortLivedCounts::default(),
        }
    }
}

impl ShortLivedReport {
    /// The connections a scan listed, and each namespace's port range.
    pub(crate) fn scanned(&mut self, snapshot: &Snapshot) {
        self.scanned.clear();
        self.scanned.extend(snapshot.sockets.iter().filter_map(connection_key));
        let own_pid = std::process::id() as i32;
        self.own_listeners.clear();
        self.own_listeners.extend(
            snapshot
                .sockets
                .iter()
                .filter(|s| s.state == SocketState::Listen && !s.holders.is_empty())
                .filter(|s| s.holders.iter().all(|h| h.proc.pid == own_pid))
                .filter_map(|s| Some((s.key.netns, s.local?.port))),
        );
        self.ranges.clear();
        self.ranges
            .extend(snapshot.namespaces.iter().filter_map(|n| Some((n.inode, n.ephemeral_ports?))));
        self.own_range =
            self.ranges.get(&snapshot.own_netns).copied().unwrap_or(DEFAULT_EPHEMERAL_PORTS);
        self.forget_old_looks();
    }

    /// The connections an exec check saw, with their holders.
    pub(crate) fn looked(&mut self, look: &Snapshot) {
        for socket in &look.sockets {
            let Some(key) = connection_key(socket) else { continue };
            if socket.holders.is_empty() {
                continue;
            }
            let mut processes: Vec<Process> = look
                .processes
                .iter()
                .filter(|p| socket.holders.iter().any(|h| h.proc == p.key))
                .cloned()
                .collect();
            processes.sort_by_key(|p| p.key);
            let mut socket = socket.clone();
            socket.holders.retain(|h| processes.iter().any(|p| p.key == h.proc));
            self.looked.insert(key, Looked { socket, processes });
            self.looked_at.push_back((Instant::now(), key));
        }
        while self.looked_at.len() > LOOKED_MAX {
            if let Some((_, key)) = self.looked_at.pop_front() {
                self.looked.remove(&key);
            }
        }
    }

    /// The connections among `destroyed` that no scan saw, within the budget.
    pub(crate) fn report(
        &mut self,
        destroyed: &[Destroyed],
        listeners: &ListenerMemory,
        now_ms: u64,
    ) -> Vec<ShortLived> {
        let mut reported = Vec::new();
        for d in destroyed {
            let Some(mut socket) = socket_of(d) else {
                self.counts.unconnected += 1;
                continue;
            };
            let Some(key) = connection_key(&socket) else {
                self.counts.unconnected += 1;
                continue;
            };
            if self.scanned.contains(&key) {
                self.counts.scanned += 1;
                continue;
            }
            if self.to_own_listener(&key) {
                self.counts.own += 1;
                continue;
            }
            if !self.budget.take() {
                self.counts.over_budget += 1;
                continue;
            }
            let mut processes = Vec::new();
            if let Some(looked) = self.looked.remove(&key) {
                socket.key.inode = looked.socket.key.inode;
                socket.holders = looked.socket.holders;
                processes = looked.processes;
                self.counts.attributed += 1;
            }
            let range = self.ranges.get(&socket.key.netns).copied().unwrap_or(self.own_range);
            let direction = of_unscanned(&socket, listeners, range);
            self.counts.reported += 1;
            reported.push(ShortLived {
                socket,
                processes,
                direction,
                tcp: d.record.tcp,
                closed_at_ms: now_ms,
            });
        }
        reported
    }

    /// The accepted end of a connection to one of the agent's listeners, or the client end of
    /// one over loopback.
    fn to_own_listener(&self, (netns, _, local, remote): &ConnectionKey) -> bool {
        self.own_listeners.contains(&(*netns, local.port))
            || (remote.addr.is_loopback() && self.own_listeners.contains(&(*netns, remote.port)))
    }

    fn forget_old_looks(&mut self) {
        while let Some((at, key)) = self.looked_at.front().copied() {
            if at.elapsed() < LOOKED_KEPT {
                break;
            }
            self.looked_at.pop_front();
            // A later look at the same connection keeps it.
            if !self.looked_at.iter().any(|(_, k)| *k == key) {
                self.looked.remove(&key);
            }
        }
    }
}

/// The socket a notice describes, when it ever had a remote end.
fn socket_of(d: &Destroyed) -> Option<Socket> {
    let record = &d.record.record;
    if record.remote.1 == 0 {
        return None;
    }
    let protocol = match d.record.protocol {
        6 => Protocol::Tcp,
        17 => Protocol::Udp,
        136 => Protocol::Udplite,
        _ => return None,
    };
    let family = if record.local.0.is_ipv4() { Family::Inet } else { Family::Inet6 };
    let mut socket = Socket::new(
        SocketKey { netns: d.netns, inode: 0 },
        family,
        protocol,
        SocketState::from_tcp_number(record.state),
        TableSource::DestroyNotice,
    );
    socket.local = Some(Endpoint::new(record.local.0, record.local.1));
    socket.remote = Some(Endpoint::new(record.remote.0, record.remote.1));
    Some(socket)
}

fn connection_key(socket: &Socket) -> Option<ConnectionKey> {
    let number = match socket.protocol {
        Protocol::Tcp => 6,
        Protocol::Udp => 17,
        Protocol::Udplite => 136,
        _ => return None,
    };
    let (local, remote) = (socket.local?, socket.remote?);
    if remote.port == 0 {
        return None;
    }
    Some((socket.key.netns, number, local, remote))
}
