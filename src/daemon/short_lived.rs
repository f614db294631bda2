//! Which freed sockets are news: a connection the last scan listed is reported by the next
//! diff (closed, with its holders), so only those no scan saw become `socket_short_lived`
//! events. Their holders are known when an exec check saw the socket held; otherwise the event
//! says they are not known. A notice carries no inode, so sockets are matched by namespace,
//! protocol and both endpoints: unique among live sockets of a namespace.

use super::exec_checks::Budget;
use crate::graph::{DEFAULT_EPHEMERAL_PORTS, ListenerMemory, of_unscanned};
use crate::model::{
    Endpoint, Family, Process, Protocol, ShortLived, Snapshot, Socket, SocketKey, SocketState,
    TableSource,
};
use crate::scan::Destroyed;
use rustc_hash::{FxHashMap, FxHashSet};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Connections reported a second in one namespace, in bursts of as many: beyond it (a web
/// server's clients, a resolver's queries) they are counted, not reported one by one. Each
/// namespace has its own, so a flood in one (a busy container, or an attacker's decoys) does not
/// silence the connections of the others.
pub(crate) const REPORTED_PER_SECOND: u32 = 200;
/// Connections reported a second on the whole host, whatever the namespaces: what bounds the
/// events a host of many busy containers sends.
pub(crate) const REPORTED_PER_SECOND_ALL: u32 = 2000;
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
    /// Connections of a family `[events] socket_families` leaves out.
    pub other_family: u64,
}

/// A socket an exec check saw held, kept to name the holders of its connection once it closes.
struct Looked {
    socket: Socket,
    processes: Vec<Process>,
}

pub(crate) struct ShortLivedReport {
    /// The connections of the last scan and of the one before: a notice is handed over up to
    /// 50 ms after the close (socket_destroys' gathering), and a scan may have come between.
    scanned: FxHashSet<ConnectionKey>,
    scanned_before: FxHashSet<ConnectionKey>,
    /// (namespace, port) of listeners only the agent holds.
    own_listeners: FxHashSet<(u64, u16)>,
    ranges: FxHashMap<u64, (u16, u16)>,
    own_range: (u16, u16),
    looked: FxHashMap<ConnectionKey, Looked>,
    looked_at: VecDeque<(Instant, ConnectionKey)>,
    budgets: FxHashMap<u64, Budget>,
    host_budget: Budget,
    pub counts: ShortLivedCounts,
}

impl Default for ShortLivedReport {
    fn default() -> Self {
        ShortLivedReport {
            scanned: FxHashSet::default(),
            scanned_before: FxHashSet::default(),
            own_listeners: FxHashSet::default(),
            ranges: FxHashMap::default(),
            own_range: DEFAULT_EPHEMERAL_PORTS,
            looked: FxHashMap::default(),
            looked_at: VecDeque::new(),
            budgets: FxHashMap::default(),
            host_budget: Budget::new(REPORTED_PER_SECOND_ALL),
            counts: ShortLivedCounts::default(),
        }
    }
}

impl ShortLivedReport {
    /// The connections a scan listed, and each namespace's port range.
    pub(crate) fn scanned(&mut self, snapshot: &Snapshot) {
        std::mem::swap(&mut self.scanned, &mut self.scanned_before);
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
        let live: FxHashSet<u64> = snapshot.namespaces.iter().map(|n| n.inode).collect();
        self.budgets.retain(|netns, _| live.contains(netns));
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

    /// The connections among `destroyed` that no scan saw, of the reported `families` (all
    /// when empty), within the budget.
    pub(crate) fn report(
        &mut self,
        destroyed: &[Destroyed],
        listeners: &ListenerMemory,
        families: &[Family],
        now_ms: u64,
    ) -> Vec<ShortLived> {
        let mut reported = Vec::new();
        for d in destroyed {
            let Some(mut socket) = socket_of(d) else {
                self.counts.unconnected += 1;
                continue;
            };
            if !families.is_empty() && !families.contains(&socket.family) {
                self.counts.other_family += 1;
                continue;
            }
            let Some(key) = connection_key(&socket) else {
                self.counts.unconnected += 1;
                continue;
            };
            if self.scanned.contains(&key) || self.scanned_before.contains(&key) {
                self.counts.scanned += 1;
                continue;
            }
            if self.to_own_listener(&key) {
                self.counts.own += 1;
                continue;
            }
            let namespace =
                self.budgets.entry(key.0).or_insert_with(|| Budget::new(REPORTED_PER_SECOND));
            if !(namespace.take() && self.host_budget.take()) {
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
    let family = if record.family == libc::AF_INET as u8 { Family::Inet } else { Family::Inet6 };
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixture::{Builder, NETNS};
    use crate::scan::parse::{DestroyedRecord, InetDiagRecord};

    fn freed(local: (&str, u16), remote: (&str, u16)) -> Destroyed {
        let record = InetDiagRecord {
            family: 2,
            state: 7,
            local: (local.0.parse().unwrap(), local.1),
            remote: (remote.0.parse().unwrap(), remote.1),
            rx_queue: 0,
            tx_queue: 0,
            uid: 0,
            inode: 0,
        };
        Destroyed { netns: NETNS, record: DestroyedRecord { record, protocol: 6, tcp: None } }
    }

    #[test]
    fn only_connections_no_scan_listed_are_reported_with_what_looks_saw() {
        let mut scan = Builder::new();
        let shell = scan.process(100, "bash");
        scan.connection(7, shell, 3); // 127.0.0.1:45000 -> 127.0.0.1:4444
        let scan = scan.build();
        let mut look = Builder::new();
        let sh = look.process(200, "sh");
        look.inet(9, Protocol::Tcp, "127.0.0.1:46000", "10.0.0.1:443", SocketState::Established);
        look.fd(
            sh,
            3,
            crate::model::AccessMode::Unknown,
            crate::model::FdTarget::Socket { inode: 9 },
        );
        let look = look.build();

        let mut report = ShortLivedReport::default();
        report.scanned(&scan);
        report.looked(&look);
        let memory = ListenerMemory::default();
        let reported = report.report(
            &[
                freed(("127.0.0.1", 45000), ("127.0.0.1", 4444)),
                freed(("127.0.0.1", 46000), ("10.0.0.1", 443)),
                freed(("127.0.0.1", 47000), ("10.0.0.2", 80)),
                freed(("0.0.0.0", 8080), ("0.0.0.0", 0)),
            ],
            &memory,
            &[],
            1,
        );
        assert_eq!(reported.len(), 2, "{reported:?}");
        let attributed = &reported[0];
        assert_eq!(attributed.socket.key.inode, 9);
        assert_eq!(attributed.processes[0].key, sh);
        assert_eq!(attributed.direction.0, crate::model::Direction::Outbound);
        assert!(reported[1].socket.holders.is_empty() && reported[1].processes.is_empty());
        let counts = report.counts;
        assert_eq!((counts.scanned, counts.unconnected, counts.attributed), (1, 1, 1));

        // A scan later, the first scan's connections still count as listed (a notice can be
        // handed over after the next scan); two scans later they do not.
        report.scanned(&Builder::new().build());
        let again = [freed(("127.0.0.1", 45000), ("127.0.0.1", 4444))];
        assert!(report.report(&again, &memory, &[], 2).is_empty());
        report.scanned(&Builder::new().build());
        assert_eq!(report.report(&again, &memory, &[], 3).len(), 1);
    }

    #[test]
    fn families_left_out_by_the_config_are_counted_not_reported() {
        let mut report = ShortLivedReport::default();
        let memory = ListenerMemory::default();
        // An AF_INET6 socket talking to an IPv4 peer (v4-mapped): inet6, as its table says.
        let mut freed_v6 = freed(("::ffff:127.0.0.1", 45000), ("::ffff:127.0.0.1", 4444));
        freed_v6.record.record.family = libc::AF_INET6 as u8;
        let freed_v4 = freed(("127.0.0.1", 46000), ("127.0.0.1", 4444));
        let reported = report.report(&[freed_v6, freed_v4], &memory, &[Family::Inet], 1);
        assert_eq!(reported.len(), 1, "{reported:?}");
        assert_eq!(reported[0].socket.family, Family::Inet);
        assert_eq!(report.counts.other_family, 1);
        // A family left out spends no budget.
        assert_eq!(report.counts.over_budget, 0);
    }

    #[test]
    fn the_budget_counts_what_it_leaves_out() {
        let mut report = ShortLivedReport::default();
        let many: Vec<Destroyed> = (0..REPORTED_PER_SECOND as u16 + 50)
            .map(|i| freed(("127.0.0.1", 40000 + i), ("10.0.0.1", 443)))
            .collect();
        let reported = report.report(&many, &ListenerMemory::default(), &[], 1);
        assert_eq!(reported.len(), REPORTED_PER_SECOND as usize);
        assert_eq!(report.counts.over_budget, 50);
    }

    #[test]
    fn a_flood_in_one_namespace_leaves_the_others_reported_within_the_hosts_ceiling() {
        let mut report = ShortLivedReport::default();
        let memory = ListenerMemory::default();
        let in_namespace = |netns: u64, port: u16| Destroyed {
            netns,
            ..freed(("127.0.0.1", port), ("10.0.0.1", 443))
        };
        let flood: Vec<Destroyed> =
            (0..REPORTED_PER_SECOND as u16 * 2).map(|i| in_namespace(NETNS, 20000 + i)).collect();
        assert_eq!(report.report(&flood, &memory, &[], 1).len(), REPORTED_PER_SECOND as usize);
        let beacon = report.report(&[in_namespace(NETNS + 1, 40000)], &memory, &[], 1);
        assert_eq!(beacon.len(), 1, "another namespace's connection was silenced");
        assert_eq!(beacon[0].socket.key.netns, NETNS + 1);

        // Every namespace at its own rate still stops at the host's.
        let namespaces = u64::from(REPORTED_PER_SECOND_ALL / REPORTED_PER_SECOND) + 2;
        let everywhere: Vec<Destroyed> = (NETNS + 2..NETNS + 2 + namespaces)
            .flat_map(|ns| (0..REPORTED_PER_SECOND as u16).map(move |i| (ns, 20000 + i)))
            .map(|(ns, port)| in_namespace(ns, port))
            .collect();
        let reported = report.report(&everywhere, &memory, &[], 1).len();
        assert!(reported < REPORTED_PER_SECOND_ALL as usize, "{reported}");
        assert_eq!(
            report.counts.over_budget as usize,
            flood.len() + everywhere.len() - REPORTED_PER_SECOND as usize - reported
        );
    }
}
