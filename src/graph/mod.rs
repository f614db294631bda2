//! Derived, pure relations over one snapshot: who holds what, socket direction, and where each
//! process's stdio ultimately leads (the stdio relay resolution). No I/O: everything here can be
//! computed again from a snapshot's JSON.

mod direction;
mod relay;

pub use direction::{DEFAULT_EPHEMERAL_PORTS, ListenerMemory, directions, of_unscanned};
pub use relay::{MAX_NODES, MAX_ROUTES, MAX_SET_ENTRIES};

use crate::model::{
    Direction, DirectionSource, Fd, FdTarget, ProcKey, PtyId, Snapshot, Socket, SocketKey,
    StdioEnd, StdioLink, StdioReach,
};
use rustc_hash::FxHashMap as HashMap;
use std::rc::Rc;

/// A snapshot with its derived relations.
pub struct Graph<'s> {
    /// The snapshot the relations were derived from.
    pub snapshot: &'s Snapshot,
    /// Direction of each socket, in `snapshot.sockets` order.
    pub directions: Vec<(Direction, DirectionSource)>,
    /// Each process's stdin, stdout and stderr that lead to a network socket or whose walk was
    /// truncated, sorted by (process, fd).
    pub stdio: Vec<StdioEnd>,
    /// Where each walked stdio object leads; `StdioEnd::reach` indexes it.
    resolved: Option<relay::Resolved>,
    socket_by_inode: HashMap<u64, usize>,
    fd_ranges: HashMap<ProcKey, (usize, usize)>,
    pipes: HashMap<u64, Vec<usize>>,
    fifos: HashMap<(u64, u64), Vec<usize>>,
    masters: HashMap<PtyId, Vec<usize>>,
    slaves: HashMap<PtyId, Vec<usize>>,
}

impl<'s> Graph<'s> {
    /// Derives every relation. `memory` carries listeners seen in earlier snapshots.
    pub fn build(snapshot: &'s Snapshot, memory: Option<&ListenerMemory>) -> Self {
        let mut graph = Graph {
            snapshot,
            directions: directions(snapshot, memory),
            stdio: Vec::new(),
            resolved: None,
            socket_by_inode: HashMap::with_capacity_and_hasher(
                snapshot.sockets.len(),
                Default::default(),
            ),
            fd_ranges: HashMap::default(),
            pipes: HashMap::default(),
            fifos: HashMap::default(),
            masters: HashMap::default(),
            slaves: HashMap::default(),
        };
        for (i, socket) in snapshot.sockets.iter().enumerate() {
            graph.socket_by_inode.insert(socket.key.inode, i);
        }
        // fds are sorted by process; record each process's run.
        let mut start = 0;
        for i in 1..=snapshot.fds.len() {
            if i == snapshot.fds.len() || snapshot.fds[i].proc != snapshot.fds[start].proc {
                graph.fd_ranges.insert(snapshot.fds[start].proc, (start, i));
                start = i;
            }
        }
        for (i, fd) in snapshot.fds.iter().enumerate() {
            match &fd.target {
                FdTarget::Pipe { inode } => graph.pipes.entry(*inode).or_default().push(i),
                FdTarget::Fifo { dev, ino, .. } => {
                    graph.fifos.entry((*dev, *ino)).or_default().push(i)
                }
                FdTarget::PtyMaster { pty } => graph.masters.entry(*pty).or_default().push(i),
                FdTarget::PtySlave { pty } => graph.slaves.entry(*pty).or_default().push(i),
                _ => {}
            }
        }
        let (stdio, resolved) = relay::resolve(&graph);
        graph.stdio = stdio;
        graph.resolved = Some(resolved);
        graph
    }

    fn resolved(&self) -> &relay::Resolved {
        self.resolved.as_ref().expect("relations resolved in build")
    }

    /// The links of one stdio end, one per network socket it reaches.
    pub fn links(&self, end: &StdioEnd) -> Vec<StdioLink> {
        let link = |relays: Vec<ProcKey>, socket| StdioLink {
            proc: end.proc,
            fd: end.fd,
            via: end.via,
            relays,
            socket,
        };
        match (end.socket, end.reach) {
            (Some(socket), _) => vec![link(Vec::new(), socket)],
            (None, Some(reach)) => self
                .resolved()
                .sockets(reach)
                .map(|i| link(self.relays(end, i).to_vec(), self.snapshot.sockets[i].key))
                .collect(),
            (None, None) => Vec::new(),
        }
    }

    /// The positions in `snapshot.sockets` (and `directions`) of the sockets one stdio end
    /// reaches, most relevant first; a direct end's socket when some table has it.
    pub fn reached<'a>(&'a self, end: &StdioEnd) -> impl Iterator<Item = usize> + 'a {
        let direct = end.socket.and_then(|s| self.socket_index(s.inode));
        let relayed = end.reach.map(|reach| self.resolved().sockets(reach));
        direct.into_iter().chain(relayed.into_iter().flatten())
    }

    /// The relay processes between a stdio end and the socket at `position`, nearest first
    /// (none when the end is the socket). Found when first asked for, then remembered.
    pub fn relays(&self, end: &StdioEnd, position: usize) -> Rc<[ProcKey]> {
        match end.reach {
            Some(reach) => self.resolved().relays(reach, position),
            None => Rc::from([]),
        }
    }

    /// Every stdio link of one process.
    pub fn links_of(&self, proc: ProcKey) -> Vec<StdioLink> {
        self.ends_of(proc).iter().flat_map(|e| self.links(e)).collect()
    }

    /// The stdio ends of one process.
    pub fn ends_of(&self, proc: ProcKey) -> &[StdioEnd] {
        let start = self.stdio.partition_point(|e| e.proc < proc);
        let len = self.stdio[start..].partition_point(|e| e.proc == proc);
        &self.stdio[start..start + len]
    }

    /// True when the walk from this stdio end was cut short.
    pub fn truncated(&self, end: &StdioEnd) -> bool {
        end.reach.is_some_and(|i| self.resolved().truncated(i))
    }

    /// Every reach with its routes' relays, as `scan --format json` shows them (`StdioEnd::reach`
    /// indexes this).
    pub fn reaches(&self) -> Vec<StdioReach> {
        let resolved = self.resolved();
        (0..resolved.len()).map(|i| resolved.described(self, i)).collect()
    }

    /// The socket with this inode, if any table (or the unresolved set) has it.
    pub fn socket(&self, inode: u64) -> Option<&'s Socket> {
        self.socket_index(inode).map(|i| &self.snapshot.sockets[i])
    }

    /// Where the socket with this inode is in `snapshot.sockets` (and `directions`).
    pub fn socket_index(&self, inode: u64) -> Option<usize> {
        self.socket_by_inode.get(&inode).copied()
    }

    /// The direction of the socket with this key.
    pub fn direction(&self, key: SocketKey) -> (Direction, DirectionSource) {
        self.socket_by_inode
            .get(&key.inode)
            .map(|&i| self.directions[i])
            .unwrap_or((Direction::Unknown, DirectionSource::None))
    }

    /// Every fd of a process (all its threads' tables included).
    pub fn fds_of(&self, proc: ProcKey) -> &'s [Fd] {
        match self.fd_ranges.get(&proc) {
            Some(&(start, end)) => &self.snapshot.fds[start..end],
            None => &[],
        }
    }

    /// Every fd on an anonymous pipe (both ends; `Fd::mode` tells which).
    pub fn pipe_ends(&self, inode: u64) -> impl Iterator<Item = &'s Fd> + '_ {
        self.indexed(self.pipes.get(&inode))
    }

    /// Every fd on a FIFO.
    pub fn fifo_ends(&self, dev: u64, ino: u64) -> impl Iterator<Item = &'s Fd> + '_ {
        self.indexed(self.fifos.get(&(dev, ino)))
    }

    /// Every fd on the master side of a pty.
    pub fn pty_masters(&self, pty: PtyId) -> impl Iterator<Item = &'s Fd> + '_ {
        self.indexed(self.masters.get(&pty))
    }

    /// Every fd on the slave side of a pty.
    pub fn pty_slaves(&self, pty: PtyId) -> impl Iterator<Item = &'s Fd> + '_ {
        self.indexed(self.slaves.get(&pty))
    }

    /// The connected peer of a unix socket (sock_diag tables only).
    pub fn unix_peer(&self, inode: u64) -> Option<&'s Socket> {
        let peer = self.socket(inode)?.unix.as_ref()?.peer?;
        self.socket(peer)
    }

    /// The socket key when `target` is a network socket (see `is_network`).
    pub fn network_socket(&self, target: &FdTarget) -> Option<SocketKey> {
        self.network_socket_index(target).map(|i| self.snapshot.sockets[i].key)
    }

    /// Like `network_socket`, the socket's position in `snapshot.sockets`.
    pub fn network_socket_index(&self, target: &FdTarget) -> Option<usize> {
        let FdTarget::Socket { inode } = target else { return None };
        let i = self.socket_index(*inode)?;
        self.is_network(&self.snapshot.sockets[i]).then_some(i)
    }

    /// An internet or packet socket, or a held one found in no table whose protocol is an IP
    /// one. Packet sockets count: a shell can talk over raw frames as well as over TCP.
    pub fn is_network(&self, socket: &Socket) -> bool {
        socket.is_network()
    }

    fn indexed<'a>(&'a self, indices: Option<&'a Vec<usize>>) -> impl Iterator<Item = &'s Fd> + 'a {
        indices.into_iter().flatten().map(|&i| &self.snapshot.fds[i])
    }
}
