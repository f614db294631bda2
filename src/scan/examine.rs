//! A targeted look between scans, within moments of a process executing: the process, its
//! ancestors, and the processes holding the other ends of their pipes, FIFOs, ptys and unix
//! sockets (with their ancestors), read afresh, with their sockets resolved from the last
//! scan's tables (sockets those tables did not list: looked up by their endpoints, or from a
//! fresh dump of the agent's own namespace). The result is a small snapshot the graph and the
//! rules read like a scan's: a command runner's `sh -c` that lives a few milliseconds is seen
//! while it lives.
//!
//! A look never replaces a scan: it can only add what a scan would also have seen had it run
//! at that moment. Its bounds (how many processes, how many holders a channel may have before
//! it counts as a hub not worth following) keep its cost at a few hundred microseconds; what it
//! leaves out the next scan sees whole.

use super::binaries::{Catalogue, HostRoot};
use super::endpoint_lookup::EndpointLookup;
use super::join::{family_of, fd_link_path, protocol_from_xattr};
use super::parse::{FdLink, parse_fd_link};
use super::process::ProcessReader;
use crate::model::{
    Coverage, Family, Fd, FdTarget, Holder, Process, Protocol, PtyId, Snapshot, Socket, SocketKey,
    SocketState, TableSource,
};
use rustc_hash::{FxHashMap, FxHashSet};
use rustix::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// At most this many processes are read in one look.
const MAX_PROCESSES: usize = 64;
/// A channel with more holders than this is a hub (a shared log pipe, journald's sockets): a
/// look does not follow it, the next scan does.
const HUB_HOLDERS: usize = 16;
/// A process the last scan saw holding more fds than this is not read by a look (a supervisor,
/// a test harness, a server with thousands of connections): reading it would cost more than
/// the rest of the look, and what it relays the next scan follows.
const BIG_PROCESS_FDS: u32 = 256;
/// New sockets a look looks up one by one by their endpoints; beyond these (a server's fresh
/// connections) one dump of the tables costs less.
const MAX_LOOKUPS: usize = 32;
/// Ancestors read above the process that executed.
const MAX_ANCESTORS: usize = 16;
/// How long processes read by a look stay known to later looks: long enough for the parts of a
/// pipeline started together (`nc | sh | nc`) to find each other, each at its own exec.
const RECENT_FOR: Duration = Duration::from_secs(5);
/// Entries kept in that memory.
const RECENT_MAX: usize = 4096;

/// What connects processes: both ends of a pipe or FIFO, a pty's master and slave, a unix socket
/// (and its peer); an inet socket joins the processes that hold it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Channel {
    Pipe(u64),
    Fifo(u64, u64),
    Pty(PtyId),
    Socket(u64),
}

fn channel_of(target: &FdTarget) -> Option<Channel> {
    match *target {
        FdTarget::Pipe { inode } => Some(Channel::Pipe(inode)),
        FdTarget::Fifo { dev, ino, .. } => Some(Channel::Fifo(dev, ino)),
        FdTarget::PtyMaster { pty } | FdTarget::PtySlave { pty } => Some(Channel::Pty(pty)),
        FdTarget::Socket { inode } => Some(Channel::Socket(inode)),
        _ => None,
    }
}

/// What the last scan knew, kept for looks until the next scan: its sockets, who held each
/// channel, and the host's known binaries.
pub struct Neighbourhood {
    snapshot: Arc<Snapshot>,
    /// Every socket's position by inode, made at the first lookup outside a known namespace.
    by_inode: std::sync::OnceLock<FxHashMap<u64, usize>>,
    /// Processes that held more than `BIG_PROCESS_FDS` fds.
    big: FxHashSet<i32>,
    holders: FxHashMap<Channel, Vec<i32>>,
    /// Listening sockets by (namespace, port), as positions in the snapshot's sockets: rules
    /// ask who serves a connection (pid 1's `Accept=yes`, an inetd).
    listeners: FxHashMap<(u64, u16), Vec<usize>>,
    catalogue: Arc<Catalogue>,
}

impl Neighbourhood {
    /// The scan's snapshot (its fds may have been dropped) and those fds.
    pub(super) fn new(snapshot: Arc<Snapshot>, fds: &[Fd], catalogue: Arc<Catalogue>) -> Self {
        let mut holders: FxHashMap<Channel, Vec<i32>> = FxHashMap::default();
        let mut add = |channel: Channel, pid: i32| {
            let pids = holders.entry(channel).or_default();
            // One past the hub bound is enough to know it is one.
            if pids.last() != Some(&pid) && pids.len() <= HUB_HOLDERS {
                pids.push(pid);
            }
        };
        let mut counts: FxHashMap<i32, u32> = FxHashMap::default();
        for fd in fds {
            *counts.entry(fd.proc.pid).or_default() += 1;
        }
        let big =
            counts.into_iter().filter(|(_, n)| *n > BIG_PROCESS_FDS).map(|(p, _)| p).collect();
        for fd in fds {
            // Sockets are added from the socket list below: only unix ones connect processes
            // (inet sockets are where walks end), and the list knows which is which.
            if !matches!(fd.target, FdTarget::Socket { .. })
                && let Some(channel) = channel_of(&fd.target)
            {
                add(channel, fd.proc.pid);
            }
        }
        for socket in snapshot.sockets.iter().filter(|s| s.family == Family::Unix) {
            for holder in &socket.holders {
                add(Channel::Socket(socket.key.inode), holder.proc.pid);
            }
        }
        let mut listeners: FxHashMap<(u64, u16), Vec<usize>> = FxHashMap::default();
        for (i, socket) in snapshot.sockets.iter().enumerate() {
            if socket.state == SocketState::Listen
                && let Some(local) = socket.local
            {
                listeners.entry((socket.key.netns, local.port)).or_default().push(i);
            }
        }
        let by_inode = std::sync::OnceLock::new();
        Neighbourhood { snapshot, by_inode, big, holders, listeners, catalogue }
    }

    /// The scan this was made from.
    pub fn seq(&self) -> u64 {
        self.snapshot.seq
    }

    fn holders(&self, channel: Channel) -> &[i32] {
        self.holders.get(&channel).map_or(&[], Vec::as_slice)
    }

    /// The other end of a connection within its namespace (loopback), which tells its
    /// direction as it does in a scan.
    fn loopback_peer(&self, socket: &Socket) -> Option<&Socket> {
        let (local, remote) = (socket.local?, socket.remote?);
        if !remote.addr.is_loopback() {
            return None;
        }
        let sockets = &self.snapshot.sockets;
        let netns = socket.key.netns;
        let start = sockets.partition_point(|s| s.key.netns < netns);
        let end = sockets.partition_point(|s| s.key.netns <= netns);
        sockets[start..end].iter().find(|s| s.local == Some(remote) && s.remote == Some(local))
    }

    /// A socket of the last scan, looked for in the holder's namespace first.
    fn socket(&self, netns: Option<u64>, inode: u64) -> Option<&Socket> {
        let sockets = &self.snapshot.sockets;
        if let Some(netns) = netns
            && let Ok(i) = sockets.binary_search_by_key(&SocketKey { netns, inode }, |s| s.key)
        {
            return Some(&sockets[i]);
        }
        // A process can hold a socket of a namespace it left. New sockets are looked up several
        // times a look and are in no namespace: one index by inode per scan, made when first
        // needed, instead of a walk of every socket each time.
        let by_inode = self
            .by_inode
            .get_or_init(|| sockets.iter().enumerate().map(|(i, s)| (s.key.inode, i)).collect());
        by_inode.get(&inode).map(|&i| &sockets[i])
    }
}

/// The channels an fd joins: its pipe, FIFO, pty or socket, and a unix socket's peer when the
/// last scan knew it.
fn channels_through(near: &Neighbourhood, netns: Option<u64>, target: &FdTarget) -> Vec<Channel> {
    let Some(channel) = channel_of(target) else { return Vec::new() };
    let FdTarget::Socket { inode } = *target else { return vec![channel] };
    let peer = near.socket(netns, inode).and_then(|s| s.unix.as_ref()).and_then(|u| u.peer);
    std::iter::once(channel).chain(peer.map(Channel::Socket)).collect()
}

/// Why a look found nothing to evaluate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skipped {
    /// The process was gone before it could be read.
    Vanished,
    /// Its stdio leads to no socket, pipe, FIFO or pty: nothing a relay could carry.
    QuietStdio,
}

/// Reads processes between scans. Lives on the thread that hears exec events.
pub struct Examiner {
    root: PathBuf,
    /// The scan whose neighbourhood the reader's caches belong to.
    epoch: Option<u64>,
    proc_dir: OwnedFd,
    reader: ProcessReader,
    host_root: Option<Arc<HostRoot>>,
    /// Channels of processes read by recent looks.
    recent: Recent,
    endpoints: EndpointLookup,
}

impl Examiner {
    pub(super) fn new(root: PathBuf, proc_dir: OwnedFd, host_root: Option<Arc<HostRoot>>) -> Self {
        let reader = ProcessReader::new();
        let recent = Recent::default();
        let endpoints = EndpointLookup::default();
        Examiner { root, epoch: None, proc_dir, reader, host_root, recent, endpoints }
    }

    /// Looks at `pid`, which just executed, and what its stdio may lead to.
    pub fn look(&mut self, pid: u32, near: &Neighbourhood) -> Result<Snapshot, Skipped> {
        let grabbed = self.grab(pid, near)?;
        Ok(self.complete(grabbed, near))
    }

    /// Reads `pid` alone, at once: a `sh -c` run by a command runner may live a millisecond,
    /// so every process that just executed is read before any look is completed.
    pub fn grab(&mut self, pid: u32, near: &Neighbourhood) -> Result<Grabbed, Skipped> {
        let started = Instant::now();
        let taken_at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.epoch(near);
        let mut look = Look::default();
        let first = self.read(pid as i32, &mut look, true);
        match first {
            None => Err(Skipped::Vanished),
            Some(i) if !stdio_may_relay(&look.fds, look.processes[i].key) => {
                Err(Skipped::QuietStdio)
            }
            Some(i) => {
                let (pid, ppid) = (look.processes[i].key.pid, look.processes[i].ppid);
                // The parent too, at once: a beacon's parent holds the connection only while
                // its `sh -c` runs.
                if ppid > 1 && !near.big.contains(&ppid) {
                    self.read(ppid, &mut look, true);
                }
                let protocols = self.new_socket_protocols(near, &look);
                Ok(Grabbed { look, pid, ppid, protocols, started, taken_at_ms })
            }
        }
    }

    /// The protocol of each socket the last scan did not list, read while the fd is open: if
    /// it closes before the look completes, the look still knows what it was.
    fn new_socket_protocols(&self, near: &Neighbourhood, look: &Look) -> Vec<(u64, Protocol)> {
        let mut found: Vec<(u64, Protocol)> = Vec::new();
        for fd in &look.fds {
            let FdTarget::Socket { inode } = fd.target else { continue };
            let known = near.socket(look.netns_of(fd.proc.pid), inode).is_some();
            if !known && !found.iter().any(|(i, _)| *i == inode) {
                found.push((inode, protocol_from_xattr(&self.root, fd)));
            }
        }
        found
    }

    /// Completes a look at a grabbed process: its ancestors and what its stdio leads to.
    pub fn complete(&mut self, grabbed: Grabbed, near: &Neighbourhood) -> Snapshot {
        let Grabbed { mut look, pid, ppid, protocols, started, taken_at_ms } = grabbed;
        self.epoch(near);
        look.ancestors = self.read_parents(ppid, &mut look, true);
        self.read_login_servers(&mut look);
        self.read_neighbours(near, &mut look, pid);
        self.read_neighbours_ancestors(&mut look);
        // The neighbours' chains may hold an sshd the first call did not see.
        self.read_login_servers(&mut look);
        self.assemble(near, look, &protocols, (taken_at_ms, started))
    }

    /// The reader's caches (binaries' stats, each process's slow facts and argv) serve every
    /// look between two scans, as they serve every process of one scan; a new scan starts a
    /// new epoch. Looks at ancestors cost a stat and the fd links, not a full read.
    fn epoch(&mut self, near: &Neighbourhood) {
        if self.epoch != Some(near.seq()) {
            if self.epoch.is_some() {
                self.reader.end_scan();
            }
            self.reader.begin_scan(&near.catalogue, self.host_root.as_ref());
            self.epoch = Some(near.seq());
        }
    }

    /// Reads a process into the look: whole (`with_fds`), or the process alone. A process read
    /// alone can be read whole later; one read whole is not read again.
    fn read(&mut self, pid: i32, look: &mut Look, with_fds: bool) -> Option<usize> {
        if pid <= 0 || look.whole.contains(&pid) || look.processes.len() >= MAX_PROCESSES {
            return None;
        }
        if look.alone.contains(&pid) {
            if !with_fds {
                return None;
            }
            look.alone.remove(&pid);
            look.processes.retain(|p| p.key.pid != pid);
        }
        match with_fds {
            true => look.whole.insert(pid),
            false => look.alone.insert(pid),
        };
        let before = look.processes.len();
        let fds = with_fds.then_some(&mut look.fds);
        let proc_dir = self.proc_dir.as_fd();
        let (reader, coverage) = (&mut self.reader, &mut look.coverage);
        super::read_one(proc_dir, pid as u32, reader, coverage, &mut look.processes, fds);
        (look.processes.len() > before).then_some(before)
    }

    /// Reads the chain of parents from `ppid` up to pid 1, which is not read (the host's init
    /// holds nothing a relay walk would follow), a process that cannot be read, or the bounds;
    /// returns its pids, nearest first. Each is read alone (what rules ask of ancestors); its
    /// fds are read only when a channel of the look has no other known holder (see
    /// `read_neighbours`) or it is an sshd (`read_login_servers`). `through_read`
    /// walks on through processes the look already read (the executed process's chain is
    /// wanted whole); otherwise the walk stops at the first of them, whose chain is read apart.
    fn read_parents(&mut self, mut ppid: i32, look: &mut Look, through_read: bool) -> Vec<i32> {
        let mut chain = Vec::new();
        for _ in 0..MAX_ANCESTORS {
            let read_before = look.whole.contains(&ppid) || look.alone.contains(&ppid);
            if ppid <= 1 || (read_before && !through_read) {
                break;
            }
            let read = self.read(ppid, look, false);
            let known = read.or_else(|| look.processes.iter().position(|p| p.key.pid == ppid));
            let Some(i) = known else { break };
            chain.push(ppid);
            ppid = look.processes[i].ppid;
        }
        chain
    }

    /// The ancestors of the processes read for what the executed process's stdio leads to, read
    /// alone like its own: any of them can be what a rule matches (a shell reached through its
    /// connection when a child it left behind executes), and the rules and the alert ask about
    /// that process's parents (the ssh login it came from) as they would in a scan. A chain
    /// stops at a process already read.
    fn read_neighbours_ancestors(&mut self, look: &mut Look) {
        let mut reached: Vec<i32> = look.whole.iter().copied().collect();
        reached.sort_unstable();
        for pid in reached {
            let process = look.processes.iter().find(|p| p.key.pid == pid);
            if let Some(ppid) = process.map(|p| p.ppid) {
                self.read_parents(ppid, look, false);
            }
        }
    }

    /// The fds of an sshd among the ancestors read: its connection is where the login came
    /// from, which an alert names. Only processes descending from an ssh login pay for it.
    fn read_login_servers(&mut self, look: &mut Look) {
        // Only ancestors are read alone.
        let servers: Vec<i32> = look
            .processes
            .iter()
            .filter(|p| look.alone.contains(&p.key.pid))
            .filter(|p| p.exe.as_ref().is_some_and(crate::model::Exe::is_ssh_server))
            .map(|p| p.key.pid)
            .collect();
        for pid in servers {
            self.read(pid, look, true);
        }
    }

    /// Breadth first over channels from the process that executed: the other holders of every
    /// pipe, FIFO, pty and unix socket of each process reached, as the last scan, recent looks
    /// and this look's ancestors know them. Ancestors are read but not followed unless reached:
    /// a parent holding the other end of a child's pipe is reached through it.
    fn read_neighbours(&mut self, near: &Neighbourhood, look: &mut Look, first: i32) {
        let now = Instant::now();
        self.recent.expire(now);
        let mut reached: FxHashSet<i32> = FxHashSet::default();
        reached.insert(first);
        let mut queue = std::collections::VecDeque::from([first]);
        while let Some(pid) = queue.pop_front() {
            let netns = look.netns_of(pid);
            let mut channels: Vec<Channel> = Vec::new();
            for fd in look.fds.iter().filter(|fd| fd.proc.pid == pid) {
                channels.extend(channels_through(near, netns, &fd.target));
            }
            channels.sort_unstable();
            channels.dedup();
            for channel in channels {
                let mut pids = self.holders(near, look, netns, channel);
                // A new pipe, FIFO, pty or socketpair nobody known holds: its other end is with
                // an ancestor (a runner's popen pipe), nearest first. (A socket no table listed
                // yet may be a new socketpair.)
                let orphan = match channel {
                    Channel::Socket(inode) => {
                        near.socket(netns, inode).is_none_or(|s| s.family == Family::Unix)
                    }
                    _ => true,
                };
                if orphan && pids.iter().all(|&p| p == pid) {
                    for ancestor in look.ancestors.clone() {
                        if near.big.contains(&ancestor) {
                            continue;
                        }
                        if self.read(ancestor, look, true).is_some() {
                            pids = self.holders(near, look, netns, channel);
                            if pids.iter().any(|&p| p != pid) {
                                break;
                            }
                        }
                    }
                }
                if pids.len() > HUB_HOLDERS {
                    continue;
                }
                for pid in pids {
                    if !reached.insert(pid) || near.big.contains(&pid) {
                        continue;
                    }
                    self.read(pid, look, true);
                    if look.whole.contains(&pid) && look.processes.iter().any(|p| p.key.pid == pid)
                    {
                        queue.push_back(pid);
                    }
                }
            }
        }
        for fd in &look.fds {
            if let Some(channel) = channel_of(&fd.target) {
                self.recent.note(now, channel, fd.proc.pid);
            }
        }
    }

    /// Who holds a channel, as the last scan, recent looks and this look know it.
    fn holders(
        &self,
        near: &Neighbourhood,
        look: &Look,
        netns: Option<u64>,
        channel: Channel,
    ) -> Vec<i32> {
        let mut pids: Vec<i32> = near.holders(channel).to_vec();
        // Every holder of a socket: a shell's children share its connection.
        if let Channel::Socket(inode) = channel
            && let Some(socket) = near.socket(netns, inode)
            && socket.family != Family::Unix
        {
            pids.extend(socket.holders.iter().take(HUB_HOLDERS + 1).map(|h| h.proc.pid));
        }
        pids.extend(self.recent.holders(channel));
        let held_here = look.fds.iter().filter(|f| channel_of(&f.target) == Some(channel));
        pids.extend(held_here.map(|f| f.proc.pid));
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// The snapshot of what was read: its sockets from the last scan's tables, or dumped now
    /// from the agent's own namespace, or unresolved.
    fn assemble(
        &mut self,
        near: &Neighbourhood,
        mut look: Look,
        protocols: &[(u64, Protocol)],
        (taken_at_ms, started): (u64, Instant),
    ) -> Snapshot {
        let last = &near.snapshot;
        let mut sockets: FxHashMap<u64, Socket> = FxHashMap::default();
        let mut unknown: Vec<(u64, Option<u64>)> = Vec::new();
        for fd in &look.fds {
            let FdTarget::Socket { inode } = fd.target else { continue };
            if sockets.contains_key(&inode) || unknown.iter().any(|u| u.0 == inode) {
                continue;
            }
            let netns = look.netns_of(fd.proc.pid);
            match near.socket(netns, inode) {
                Some(known) => {
                    let mut socket = known.clone();
                    socket.holders.clear();
                    if let Some(peer) = socket.unix.as_ref().and_then(|u| u.peer)
                        && let Some(peer_socket) = near.socket(Some(socket.key.netns), peer)
                        && !sockets.contains_key(&peer)
                    {
                        let mut peer_socket = peer_socket.clone();
                        peer_socket.holders.clear();
                        sockets.insert(peer, peer_socket);
                    }
                    if let Some(peer) = near.loopback_peer(&socket)
                        && !sockets.contains_key(&peer.key.inode)
                    {
                        let mut peer = peer.clone();
                        peer.holders.clear();
                        sockets.insert(peer.key.inode, peer);
                    }
                    sockets.insert(inode, socket);
                }
                None => unknown.push((inode, netns)),
            }
        }
        let mut left: Vec<Unknown> = Vec::new();
        for looked_up in self.look_up_by_endpoints(&look.fds, last.own_netns, &unknown, protocols) {
            match looked_up {
                Ok(socket) => {
                    sockets.entry(socket.key.inode).or_insert(socket);
                }
                Err(unresolved) => left.push(unresolved),
            }
        }
        if !left.is_empty() {
            for socket in self.resolve(last.own_netns, &left) {
                sockets.insert(socket.key.inode, socket);
            }
        }
        // Connections of the agent's namespace that closed before its tables were read (a
        // beacon's, once its command ran): held, so kept as a scan keeps a held socket no table
        // lists, with the protocol read while they were open.
        let own = |inode: u64| unknown.iter().any(|u| u.0 == inode && u.1 == Some(last.own_netns));
        for (inode, protocol) in protocols {
            let connection = matches!(protocol, Protocol::Tcp | Protocol::Udp | Protocol::Udplite);
            // Still open yet in no table: a connect in progress (the kernel lists a socket once
            // it hashes it), not a closed connection. Left to the next look or scan, which
            // place it in its namespace: keyed here without one, it would be a second incident.
            if connection
                && own(*inode)
                && !sockets.contains_key(inode)
                && !self.still_held(&look.fds, *inode)
            {
                let key = SocketKey { netns: 0, inode: *inode };
                let (family, state) = (family_of(protocol), SocketState::Unknown);
                let socket =
                    Socket::new(key, family, protocol.clone(), state, TableSource::Unresolved);
                sockets.insert(*inode, socket);
            }
        }
        for fd in &look.fds {
            if let FdTarget::Socket { inode } = fd.target
                && let Some(socket) = sockets.get_mut(&inode)
            {
                socket.holders.push(Holder {
                    proc: fd.proc,
                    tid: fd.tid,
                    fd: fd.num,
                    io_uring_slot: fd.io_uring_slot,
                });
            }
        }
        let mut sockets: Vec<Socket> = sockets.into_values().collect();
        for socket in &mut sockets {
            socket.holders.sort_unstable();
        }
        self.add_listeners(near, &mut sockets, &mut look);
        sockets.sort_unstable_by_key(|s| s.key);
        look.processes.sort_by_key(|p| p.key);
        look.fds.sort_by_key(|f| (f.proc, f.tid, f.num));
        look.coverage.duration_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(0);
        Snapshot {
            seq: last.seq,
            taken_at_ms,
            privileges: last.privileges,
            own_netns: last.own_netns,
            namespaces: last.namespaces.clone(),
            processes: look.processes,
            fds: look.fds,
            sockets,
            proc_mounts: Vec::new(),
            coverage: look.coverage,
        }
    }

    /// Whether a holder's fd the look read still refers to socket `inode`.
    fn still_held(&self, fds: &[Fd], inode: u64) -> bool {
        fds.iter()
            .filter(|fd| fd.target == FdTarget::Socket { inode } && fd.io_uring_slot.is_none())
            .any(|fd| {
                std::fs::read_link(fd_link_path(&self.root, fd)).is_ok_and(|link| {
                    parse_fd_link(link.as_os_str().as_encoded_bytes()) == FdLink::Socket(inode)
                })
            })
    }

    /// The last scan's listeners serving the local ports of the look's connections, with their
    /// holders as that scan saw them: who serves a connection decides exceptions (pid 1's
    /// `Accept=yes` socket, an inetd) as it does in a scan.
    fn add_listeners(&self, near: &Neighbourhood, sockets: &mut Vec<Socket>, look: &mut Look) {
        let mut served: Vec<usize> = Vec::new();
        for socket in sockets.iter().filter(|s| s.state != SocketState::Listen) {
            if let Some(local) = socket.local
                && let Some(found) = near.listeners.get(&(socket.key.netns, local.port))
            {
                served.extend(found);
            }
        }
        served.sort_unstable();
        served.dedup();
        let last = &near.snapshot;
        for i in served {
            let listener = &last.sockets[i];
            if sockets.iter().any(|s| s.key == listener.key) {
                continue;
            }
            for holder in &listener.holders {
                let known = look.processes.iter().any(|p| p.key == holder.proc);
                if let (false, Ok(at)) =
                    (known, last.processes.binary_search_by_key(&holder.proc, |p| p.key))
                {
                    look.processes.push(last.processes[at].clone());
                }
            }
            sockets.push(listener.clone());
        }
    }

    /// The unknown internet sockets of the agent's own namespace that a lookup by their
    /// endpoints resolves (`Ok`, with their peers), and the unknown sockets left (`Err`).
    fn look_up_by_endpoints(
        &mut self,
        fds: &[Fd],
        own_netns: u64,
        unknown: &[(u64, Option<u64>)],
        protocols: &[(u64, Protocol)],
    ) -> Vec<Result<Socket, Unknown>> {
        let (mut out, mut tried) = (Vec::new(), 0);
        for &(inode, netns) in unknown {
            let holder = fds
                .iter()
                .find(|fd| fd.target == FdTarget::Socket { inode } && fd.io_uring_slot.is_none());
            let (mut resolved, mut protocol) = (None, None);
            if let Some(holder) = holder.filter(|_| netns == Some(own_netns)) {
                let known = protocols.iter().find(|p| p.0 == inode).map(|p| p.1.clone());
                let read = known.unwrap_or_else(|| protocol_from_xattr(&self.root, holder));
                tried +=
                    usize::from(matches!(read, Protocol::Tcp | Protocol::Udp | Protocol::Udplite));
                if tried <= MAX_LOOKUPS {
                    resolved = self.endpoints.resolve(holder, inode, &read);
                }
                protocol = Some(read);
            }
            match resolved {
                Some((row, peer)) => {
                    out.extend(peer.map(Ok));
                    out.push(Ok(row));
                }
                None => out.push(Err(Unknown { inode, netns, protocol })),
            }
        }
        for socket in out.iter_mut().flatten() {
            socket.key.netns = own_netns;
        }
        out
    }

    /// Sockets the last scan did not list, from the agent's own namespace's tables read now
    /// (as a scan reads them). Those of other namespaces, and those gone before the read, are
    /// left out: the look does not know what they are, and the next scan does.
    fn resolve(&mut self, own_netns: u64, unknown: &[Unknown]) -> Vec<Socket> {
        let own: Vec<&Unknown> = unknown.iter().filter(|u| u.netns == Some(own_netns)).collect();
        if own.is_empty() {
            return Vec::new();
        }
        // A new socketpair (a relay's) needs only the unix table.
        let unix = |u: &&Unknown| {
            matches!(u.protocol, Some(Protocol::Stream | Protocol::Dgram | Protocol::Seqpacket))
        };
        let proc_dir = self.proc_dir.as_fd();
        let rows = match own.iter().all(unix) {
            true => super::netns::read_calling_thread_unix_table(proc_dir).rows,
            false => super::netns::read_calling_thread_tables(proc_dir).rows,
        };
        let wanted: FxHashSet<u64> = own.iter().map(|u| u.inode).collect();
        let mut found: Vec<Socket> =
            rows.iter().filter(|row| wanted.contains(&row.key.inode)).cloned().collect();
        // The other end of a connection inside this namespace tells its direction (a loopback
        // hop whose peer was accepted from a listener is outbound), as in a scan.
        let peers: Vec<Socket> = rows
            .iter()
            .filter(|row| {
                row.remote.is_some()
                    && !wanted.contains(&row.key.inode)
                    && found.iter().any(|f| f.local == row.remote && f.remote == row.local)
            })
            .cloned()
            .collect();
        found.extend(peers);
        for row in &mut found {
            row.key.netns = own_netns;
        }
        found
    }
}

/// A socket the last scan did not list and a lookup by its endpoints did not resolve: its
/// namespace as its holder's, and its protocol when its holder's fd could tell.
struct Unknown {
    inode: u64,
    netns: Option<u64>,
    protocol: Option<Protocol>,
}

/// Who held which channel in recent looks, forgotten after `RECENT_FOR` (by then a scan has
/// seen them) and beyond `RECENT_MAX` entries, oldest first.
#[derive(Default)]
struct Recent {
    holders: FxHashMap<Channel, Vec<i32>>,
    order: std::collections::VecDeque<(Instant, Channel, i32)>,
}

impl Recent {
    fn note(&mut self, at: Instant, channel: Channel, pid: i32) {
        let pids = self.holders.entry(channel).or_default();
        if pids.contains(&pid) {
            return;
        }
        pids.push(pid);
        self.order.push_back((at, channel, pid));
        while self.order.len() > RECENT_MAX {
            self.forget_oldest();
        }
    }

    fn expire(&mut self, now: Instant) {
        while self.order.front().is_some_and(|(at, _, _)| now.duration_since(*at) >= RECENT_FOR) {
            self.forget_oldest();
        }
    }

    fn forget_oldest(&mut self) {
        let Some((_, channel, pid)) = self.order.pop_front() else { return };
        if let Some(pids) = self.holders.get_mut(&channel) {
            pids.retain(|&p| p != pid);
            if pids.is_empty() {
                self.holders.remove(&channel);
            }
        }
    }

    fn holders(&self, channel: Channel) -> impl Iterator<Item = i32> + '_ {
        self.holders.get(&channel).into_iter().flatten().copied()
    }
}

/// A process read as it executed, its look not completed yet.
pub struct Grabbed {
    look: Look,
    pid: i32,
    ppid: i32,
    protocols: Vec<(u64, Protocol)>,
    started: Instant,
    taken_at_ms: u64,
}

impl Grabbed {
    /// Whether the process holds the same fds as it did in an earlier look.
    pub fn same_fds_as(&self, earlier: &Snapshot) -> bool {
        let Some(process) = self.look.processes.first() else { return false };
        let now = self.look.fds.iter().filter(|f| f.proc == process.key);
        let then = earlier.fds.iter().filter(|f| f.proc == process.key);
        now.eq(then)
    }
}

/// What one look has read so far.
#[derive(Default)]
struct Look {
    /// Processes read with their fds, and read alone.
    whole: FxHashSet<i32>,
    alone: FxHashSet<i32>,
    /// Ancestors of the process that executed, nearest first.
    ancestors: Vec<i32>,
    processes: Vec<Process>,
    fds: Vec<Fd>,
    coverage: Coverage,
}

impl Look {
    fn netns_of(&self, pid: i32) -> Option<u64> {
        self.processes.iter().find(|p| p.key.pid == pid).and_then(|p| p.netns)
    }
}

/// Whether a process's stdio (fds 0-2, and the csh family's 16-19) is something a relay could
/// carry: a socket, pipe, FIFO or pty. A process reading /dev/null and writing a file is not
/// worth a look.
fn stdio_may_relay(fds: &[Fd], process: crate::model::ProcKey) -> bool {
    fds.iter()
        .filter(|fd| fd.proc == process && fd.tid.is_none())
        .any(|fd| matches!(fd.num, 0..=2 | 16..=19) && channel_of(&fd.target).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AccessMode, ProcKey, Protocol};

    fn fd(pid: i32, num: i32, target: FdTarget) -> Fd {
        let proc = ProcKey { pid, start_ticks: 1 };
        Fd { proc, tid: None, num, io_uring_slot: None, mode: AccessMode::ReadWrite, target }
    }

    #[test]
    fn new_connections_are_looked_up_up_to_a_bound_and_the_rest_left_to_a_dump() {
        use rustix::fd::AsRawFd;
        let proc_dir = super::super::procfs::open_dir(rustix::fs::CWD, "/proc").unwrap();
        let mut examiner = Examiner::new(PathBuf::from("/proc"), proc_dir, None);
        let own = rustix::fs::stat("/proc/thread-self/ns/net").unwrap().st_ino;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let clients: Vec<std::net::TcpStream> = (0..MAX_LOOKUPS + 3)
            .map(|_| std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap())
            .collect();
        let (pair, _) = std::os::unix::net::UnixStream::pair().unwrap();
        let pid = std::process::id() as i32;
        let mut fds = Vec::new();
        let mut unknown = Vec::new();
        for socket in [&pair as &dyn AsFd].into_iter().chain(clients.iter().map(|c| c as _)) {
            let inode = rustix::fs::fstat(socket).unwrap().st_ino;
            let num = socket.as_fd().as_raw_fd();
            fds.push(self::fd(pid, num, FdTarget::Socket { inode }));
            unknown.push((inode, Some(own)));
        }
        let results = examiner.look_up_by_endpoints(&fds, own, &unknown, &[]);
        let found: Vec<&Socket> = results.iter().flatten().collect();
        let left: Vec<&Unknown> = results.iter().filter_map(|r| r.as_ref().err()).collect();
        // The ends the listener queued have no inode until accepted: no peers here.
        assert_eq!(found.len(), MAX_LOOKUPS);
        assert!(found.iter().all(|s| s.key.netns == own && s.source == TableSource::SockDiag));
        let protocols: Vec<Option<Protocol>> = left.iter().map(|u| u.protocol.clone()).collect();
        let mut expected = vec![Some(Protocol::Tcp); 3];
        expected.insert(0, Some(Protocol::Stream));
        assert_eq!(protocols, expected, "the socketpair and the clients beyond the bound");
    }

    fn neighbourhood(snapshot: Snapshot) -> Neighbourhood {
        let fds = snapshot.fds.clone();
        Neighbourhood::new(Arc::new(snapshot), &fds, Arc::default())
    }

    #[test]
    fn channels_know_their_holders_up_to_a_hub() {
        let mut b = crate::model::fixture::Builder::new();
        let shell = b.process(10, "sh");
        let relay = b.process(11, "nc");
        b.pipe(500, (relay, 1), (shell, 0));
        b.unix_pair((600, shell, 1), (601, relay, 5));
        b.connection(700, relay, 3);
        let writers: Vec<ProcKey> =
            (0..HUB_HOLDERS as i32 + 5).map(|i| b.process(100 + i, "w")).collect();
        for w in &writers {
            b.fd(*w, 1, AccessMode::Write, FdTarget::Pipe { inode: 800 });
        }
        let near = neighbourhood(b.build());
        assert_eq!(near.holders(Channel::Pipe(500)), [10, 11]);
        assert_eq!(near.holders(Channel::Socket(600)), [10]);
        // A unix socket leads to its peer; an inet socket is a channel of its holders.
        let unix = FdTarget::Socket { inode: 600 };
        let netns = Some(crate::model::fixture::NETNS);
        assert_eq!(
            channels_through(&near, netns, &unix),
            [Channel::Socket(600), Channel::Socket(601)]
        );
        let inet = FdTarget::Socket { inode: 700 };
        assert_eq!(channels_through(&near, netns, &inet), [Channel::Socket(700)]);
        // Past the hub bound one more holder is kept: enough to know it is a hub.
        assert_eq!(near.holders(Channel::Pipe(800)).len(), HUB_HOLDERS + 1);
    }

    #[test]
    fn recent_holders_are_forgotten_in_time_and_beyond_the_bound() {
        let mut recent = Recent::default();
        let start = Instant::now();
        recent.note(start, Channel::Pipe(1), 10);
        recent.note(start, Channel::Pipe(1), 10);
        recent.note(start + Duration::from_secs(1), Channel::Pipe(1), 11);
        assert_eq!(recent.holders(Channel::Pipe(1)).collect::<Vec<_>>(), [10, 11]);
        recent.expire(start + RECENT_FOR);
        assert_eq!(recent.holders(Channel::Pipe(1)).collect::<Vec<_>>(), [11]);
        for pid in 0..RECENT_MAX as i32 {
            recent.note(start + RECENT_FOR, Channel::Pipe(2), pid);
        }
        assert_eq!(recent.holders(Channel::Pipe(1)).count(), 0, "the oldest went first");
        assert_eq!(recent.order.len(), RECENT_MAX);
    }

    #[test]
    fn a_loopback_connection_finds_its_other_end_in_the_last_scan() {
        let mut b = crate::model::fixture::Builder::new();
        let shell = b.process(10, "sh");
        let out = b.connection(700, shell, 3);
        b.inet(701, Protocol::Tcp, "127.0.0.1:4444", "127.0.0.1:45000", SocketState::Established);
        b.inet(702, Protocol::Tcp, "127.0.0.1:4444", "127.0.0.1:45001", SocketState::Established);
        let near = neighbourhood(b.build());
        let socket = near.socket(Some(out.netns), out.inode).expect("known").clone();
        assert_eq!(near.loopback_peer(&socket).map(|s| s.key.inode), Some(701));
        // A socket the holder's namespace does not list is looked for in every namespace.
        assert_eq!(near.socket(Some(1), 702).map(|s| s.key.inode), Some(702));
    }

    #[test]
    fn stdio_on_files_is_quiet_and_on_a_pipe_is_not() {
        let file = FdTarget::File { path: crate::model::RawText::new(b"/dev/null") };
        let process = ProcKey { pid: 7, start_ticks: 1 };
        let quiet =
            [fd(7, 0, file.clone()), fd(7, 1, file.clone()), fd(7, 5, FdTarget::Pipe { inode: 3 })];
        assert!(!stdio_may_relay(&quiet, process));
        let piped = [fd(7, 0, file.clone()), fd(7, 1, FdTarget::Pipe { inode: 3 })];
        assert!(stdio_may_relay(&piped, process));
        let csh = [fd(7, 17, FdTarget::Socket { inode: 9 })];
        assert!(stdio_may_relay(&csh, process));
        let others = [fd(8, 1, FdTarget::Pipe { inode: 3 })];
        assert!(!stdio_may_relay(&others, process));
    }
}
