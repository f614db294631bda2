//! What rules look at: one *subject* per (process, network socket) pair where the process holds
//! the socket on some fd, or where one of its fds 0-2 leads to it through the stdio relay
//! resolution. A pair, not a single fd, because the questions rules ask span fds ("stdin *and*
//! stdout reach the socket") and because incidents are keyed by the socket.

use crate::graph::Graph;
use crate::model::{Direction, DirectionSource, ProcKey, Process, Snapshot, Socket, Via};
use std::cell::Cell;
use std::collections::HashMap;
use std::rc::Rc;

/// Ancestors followed at most (pid loops cannot occur, but a bound keeps a forged tree cheap).
const MAX_ANCESTORS: usize = 64;

/// The time base that turns start ticks into ages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Clock {
    /// Boot time, ms since the epoch.
    pub boot_time_ms: Option<u64>,
    /// Clock ticks per second.
    pub ticks_per_second: u64,
}

/// One snapshot's lookups shared by all its subjects.
pub struct Context<'g> {
    /// The graph.
    pub graph: &'g Graph<'g>,
    /// LISTEN sockets by (netns, local port).
    listeners: HashMap<(u64, u16), Vec<&'g Socket>>,
    clock: Clock,
}

impl<'g> Context<'g> {
    /// Builds the lookups for one graph.
    pub fn new(graph: &'g Graph<'g>, clock: Clock) -> Self {
        let mut listeners: HashMap<(u64, u16), Vec<&'g Socket>> = HashMap::new();
        for socket in &graph.snapshot.sockets {
            if let (crate::model::SocketState::Listen, Some(local)) = (socket.state, socket.local) {
                listeners.entry((socket.key.netns, local.port)).or_default().push(socket);
            }
        }
        Context { graph, listeners, clock }
    }

    /// The snapshot.
    pub fn snapshot(&self) -> &'g Snapshot {
        self.graph.snapshot
    }

    /// The live process with this pid.
    pub fn process(&self, pid: i32) -> Option<&'g Process> {
        let processes = &self.graph.snapshot.processes;
        let start = processes.partition_point(|p| p.key.pid < pid);
        processes.get(start).filter(|p| p.key.pid == pid)
    }

    /// The process with this key.
    pub fn by_key(&self, key: ProcKey) -> Option<&'g Process> {
        let processes = &self.graph.snapshot.processes;
        processes.binary_search_by_key(&key, |p| p.key).ok().map(|i| &processes[i])
    }

    /// Parent, grandparent, … up to pid 1.
    pub fn ancestors(&self, process: &Process) -> impl Iterator<Item = &'g Process> + '_ {
        let mut ppid = process.ppid;
        std::iter::from_fn(move || {
            if ppid <= 0 {
                return None;
            }
            let parent = self.process(ppid)?;
            ppid = if parent.key.pid == 1 { 0 } else { parent.ppid };
            Some(parent)
        })
        .take(MAX_ANCESTORS)
    }

    /// True when `ancestor` is an ancestor of `process`.
    pub fn is_ancestor(&self, ancestor: ProcKey, process: &Process) -> bool {
        self.ancestors(process).any(|p| p.key == ancestor)
    }

    /// Listening sockets serving the local port of an inbound socket in its namespace
    /// (wildcard, dual-stack and specific-address listeners alike).
    pub fn listeners_of(&self, socket: &Socket) -> &[&'g Socket] {
        let found = socket
            .local
            .filter(|_| socket.state != crate::model::SocketState::Listen)
            .and_then(|local| self.listeners.get(&(socket.key.netns, local.port)));
        found.map_or(&[], Vec::as_slice)
    }

    /// Seconds since the process started, when the clock is known.
    pub fn age_seconds(&self, process: &Process) -> Option<i64> {
        let boot = self.clock.boot_time_ms?;
        let ticks = self.clock.ticks_per_second.max(1);
        let started_ms = boot + process.key.start_ticks * 1000 / ticks;
        let age_ms = self.graph.snapshot.taken_at_ms.saturating_sub(started_ms);
        Some(i64::try_from(age_ms / 1000).unwrap_or(i64::MAX))
    }
}

/// One (process, network socket) pair and how the process reaches the socket.
pub struct Subject<'g> {
    /// The process.
    pub process: &'g Process,
    /// The socket.
    pub socket: &'g Socket,
    /// The socket's direction.
    pub direction: (Direction, DirectionSource),
    /// The process's own fds on the socket, ascending.
    pub fds: Vec<i32>,
    /// Bit n set: fd n (0, 1, 2) leads to the socket, directly or through relays.
    pub stdio_fds: u8,
    /// Bit per `Via` of the first hops that lead here.
    pub vias: u8,
    /// Some route here passes through a relay process (see `Subject::relays`).
    pub relayed: bool,
    /// Reached through relays, and held by an ancestor of this process (a parent serving its
    /// child's stdio).
    pub holder_is_ancestor: bool,
    /// The socket's position in the snapshot's sockets.
    position: usize,
    /// Some stdio walk of this process hit a bound: more may be reached than is listed.
    pub truncated: bool,
    /// Macro results already computed for this subject.
    memo: Memo,
    /// Results of macros that read only the process, shared by all of its subjects.
    process_memo: Rc<Memo>,
}

/// Remembered macro results: (known bits, value bits), one bit per macro slot.
#[derive(Default)]
struct Memo(Cell<u64>, Cell<u64>);

impl Memo {
    fn get_or(&self, slot: usize, compute: impl FnOnce() -> bool) -> bool {
        let bit = 1u64 << slot;
        if self.0.get() & bit != 0 {
            return self.1.get() & bit != 0;
        }
        let value = compute();
        self.0.set(self.0.get() | bit);
        if value {
            self.1.set(self.1.get() | bit);
        }
        value
    }

    fn clear(&self) {
        self.0.set(0);
        self.1.set(0);
    }
}

impl Subject<'_> {
    /// Relay processes on the routes from the process's stdio to the socket, nearest first, each
    /// once. Read from the graph when asked (by `stdio.relay.*` fields and alerts), not kept: a
    /// host with piped workers has tens of thousands of relayed subjects a scan, and rules ask
    /// for the relays of a few.
    pub fn relays(&self, cx: &Context<'_>) -> Vec<ProcKey> {
        let graph = cx.graph;
        let mut found: Vec<ProcKey> = Vec::new();
        for end in graph.ends_of(self.process.key) {
            if end.reach.is_none() || !graph.reached(end).any(|p| p == self.position) {
                continue;
            }
            for relay in graph.relays(end, self.position).iter() {
                if !found.contains(relay) {
                    found.push(*relay);
                }
            }
        }
        found
    }

    /// Macros whose results a subject remembers.
    pub const MEMO_SLOTS: usize = 64;

    /// The result of macro `slot`, computed once per subject.
    pub fn memo(&self, slot: usize, compute: impl FnOnce() -> bool) -> bool {
        self.memo.get_or(slot, compute)
    }

    /// The result of macro `slot`, which reads only the process: computed once per process.
    pub fn process_memo(&self, slot: usize, compute: impl FnOnce() -> bool) -> bool {
        self.process_memo.get_or(slot, compute)
    }

    /// Forgets remembered macro results (before evaluating a changed rule set again).
    pub fn forget(&self) {
        self.memo.clear();
        self.process_memo.clear();
    }
}

/// The bit of a `Via` in `Subject::vias`.
pub fn via_bit(via: Via) -> u8 {
    1 << (via as u8)
}

/// Every `Via`, in bit order.
pub const VIAS: [Via; 5] = [Via::Direct, Via::Pipe, Via::Fifo, Via::Pty, Via::Unix];

/// Builds subjects process by process, reusing its tables: the engine evaluates one process's
/// subjects and lets them go, so memory follows the matches, not the sockets.
#[derive(Default)]
pub struct Subjects {
    /// Per socket (by its position in the snapshot): the process that last made a subject of it
    /// (a generation number) and that subject's index in the batch. An array, not a map: a
    /// supervisor's workers reach dozens of sockets each through shared pipes, tens of thousands
    /// of lookups a scan.
    made_by: Vec<(u32, u32)>,
    generation: u32,
    /// The current process's ancestors, looked up once it has a relayed route.
    ancestors: Vec<ProcKey>,
}

impl Subjects {
    /// Appends the subjects of one process to `out`, by socket.
    pub fn of<'g>(&mut self, cx: &Context<'g>, process: &'g Process, out: &mut Vec<Subject<'g>>) {
        let graph = cx.graph;
        let sockets = &graph.snapshot.sockets;
        if self.made_by.len() != sockets.len() {
            self.made_by = vec![(0, 0); sockets.len()];
            self.generation = 0;
        }
        self.generation += 1;
        let generation = self.generation;
        let made_by = &mut self.made_by;
        let first = out.len();
        // Shared by this process's subjects; made with the first one (most processes have none).
        let mut process_memo: Option<Rc<Memo>> = None;
        let mut entry = |position: usize, out: &mut Vec<Subject<'g>>| -> usize {
            let (by, index) = made_by[position];
            if by == generation {
                return index as usize;
            }
            out.push(Subject {
                process,
                socket: &sockets[position],
                direction: graph.directions[position],
                fds: Vec::new(),
                stdio_fds: 0,
                vias: 0,
                relayed: false,
                holder_is_ancestor: false,
                position,
                truncated: false,
                memo: Memo::default(),
                process_memo: Rc::clone(process_memo.get_or_insert_default()),
            });
            made_by[position] = (generation, (out.len() - 1) as u32);
            out.len() - 1
        };
        for fd in graph.fds_of(process.key) {
            let Some(position) = graph.network_socket_index(&fd.target) else { continue };
            let i = entry(position, out);
            let subject = &mut out[i];
            if !subject.fds.contains(&fd.num) {
                subject.fds.push(fd.num);
            }
        }
        let mut truncated = false;
        let ancestors = &mut self.ancestors;
        ancestors.clear();
        for end in graph.ends_of(process.key) {
            truncated |= graph.truncated(end);
            let relayed = end.reach.is_some();
            for position in graph.reached(end) {
                let i = entry(position, out);
                if ancestors.is_empty() && relayed {
                    ancestors.extend(cx.ancestors(process).map(|p| p.key));
                }
                let holders = &sockets[position].holders;
                let holder_is_ancestor =
                    relayed && holders.iter().any(|h| ancestors.contains(&h.proc));
                let subject = &mut out[i];
                subject.stdio_fds |= 1 << end.stream();
                subject.vias |= via_bit(end.via);
                subject.holder_is_ancestor |= holder_is_ancestor;
                subject.relayed |= relayed;
            }
        }
        for subject in &mut out[first..] {
            subject.fds.sort_unstable();
            subject.truncated = truncated;
        }
    }
}

/// Every subject of a snapshot, grouped by process in process order, then by socket.
pub fn subjects<'g>(cx: &Context<'g>) -> Vec<Subject<'g>> {
    let mut builder = Subjects::default();
    let mut out = Vec::new();
    for process in &cx.graph.snapshot.processes {
        builder.of(cx, process, &mut out);
    }
    out
}
