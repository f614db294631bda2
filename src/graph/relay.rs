//! Stdio relay resolution (DESIGN §3, §10): for each process's stdin, stdout and stderr, the
//! network sockets it ultimately reads from (stdin) or writes to (stdout, stderr): directly, or
//! through pipes, FIFOs, ptys and connected unix sockets held by relay processes, through any
//! number of relays.
//!
//! Channels are modelled one way at a time (`Half`): a pipe or FIFO carries data from its write
//! end to its read end; a pty carries data written on the slave to the master's holders and the
//! other way; a connected unix socket carries data to its peer's holders and back, unless
//! `shutdown(2)` closed that direction (journald closes its sending side of every stdout stream).
//! A relay forwards whatever it reads to whatever it writes, and holds network sockets along the
//! way — all of which are reached, and the walk goes on past them: a relay holding a decoy socket
//! does not hide the connection behind it. A relay never sends data back into the channel it
//! came from (a terminal's master holder does not feed a client's output into the shell beside
//! it), which makes reach depend on how a relay was entered; each (relay, channel it was entered
//! by) is a node of its own, and prefix and suffix nodes keep the work linear even for a relay
//! with thousands of channels.
//!
//! Reach is computed once for the whole graph, not per walk: Tarjan's algorithm finds the
//! strongly connected parts (a shell, `cat` and `nc` around a FIFO are one), and each part's
//! reach is the union of what its members hold and what the parts after it reach, computed once
//! and shared. A reach lists at most `MAX_ROUTES` sockets, connections first, so sockets an
//! attacker adds as decoys cannot push a connection out; a reach cut short, or a walk stopped by
//! the work budget, is flagged as truncated — unknown, never "no link". The relays between a
//! stdio end and its sockets are found when first asked for (a rule reads them, an alert shows
//! them), by one breadth-first search from the stdio end.

use super::Graph;
use crate::model::{
    AccessMode, Fd, FdTarget, ProcKey, PtyId, Route, Socket, SocketState, StdioEnd, StdioReach,
    TableSource, Via,
};
use rustc_hash::FxHashMap as HashMap;
use std::cell::RefCell;
use std::collections::{BinaryHeap, VecDeque};
use std::rc::Rc;

/// Sockets one reach lists at most; beyond, the reach is truncated.
pub const MAX_ROUTES: usize = 256;
/// Socket entries all reaches of one scan may hold together; past it, new reaches keep only
/// `CUT_SET` entries and are truncated. Bounds memory against a crafted graph.
pub const MAX_SET_ENTRIES: usize = 1 << 20;
/// Nodes one direction of flow may create; past it the walk stops and what it did not finish is
/// truncated. Bounds work against a crafted graph (each process and channel makes a few).
pub const MAX_NODES: usize = 1 << 22;
const CUT_SET: usize = 16;
/// A relay with more channels than this (a channel with more processes at its far end) reaches
/// them through prefix and suffix nodes.
const DIRECT_CHANNELS: usize = 8;
const UNSET: u32 = u32::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Flow {
    /// Where the data read here comes from.
    Source,
    /// Where the data written here goes.
    Sink,
}

/// A one-way channel: what is written at one end is read at the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Half {
    Pipe(u64),
    Fifo(u64, u64),
    /// Written on the slave side, read on the master side.
    ToMaster(PtyId),
    /// Written on the master side, read on the slave side.
    ToSlave(PtyId),
    /// Written through socket `from`, read through its peer `to`.
    Unix {
        from: u64,
        to: u64,
    },
}

impl Half {
    /// The other direction of the same two-way channel.
    fn reverse(self) -> Option<Half> {
        match self {
            Half::ToMaster(pty) => Some(Half::ToSlave(pty)),
            Half::ToSlave(pty) => Some(Half::ToMaster(pty)),
            Half::Unix { from, to } => Some(Half::Unix { from: to, to: from }),
            Half::Pipe(_) | Half::Fifo(..) => None,
        }
    }

    fn via(self) -> Via {
        match self {
            Half::Pipe(_) => Via::Pipe,
            Half::Fifo(..) => Via::Fifo,
            Half::ToMaster(_) | Half::ToSlave(_) => Via::Pty,
            Half::Unix { .. } => Via::Unix,
        }
    }
}

/// A node of one flow's walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Node {
    /// A channel: leads to the processes at its far end.
    Half(Half),
    /// A channel entered by a relay that is also at its far end (a self-pipe, a FIFO it holds
    /// open both ways): leads to the far end's other processes only, so data cannot come back
    /// into the relay and shed the channel it must not echo into.
    HalfWithout(Half, u32),
    /// The first `k` processes at a channel's far end.
    FarBefore(Half, u32),
    /// The processes at a channel's far end from the `k`-th.
    FarFrom(Half, u32),
    /// A relay entered through a channel, with the half it must not send back into.
    Relay(ProcKey, Option<Half>),
    /// The first `k` channels a relay carries on.
    Before(ProcKey, u32),
    /// The channels a relay carries on from the `k`-th.
    From(ProcKey, u32),
}

/// A socket in a reach: how much it matters (lower first) and its position in
/// `Snapshot::sockets`.
type Entry = (u8, u32);

/// Sockets reached, most relevant first.
#[derive(Debug, Default, PartialEq, Eq)]
struct Set {
    entries: Vec<Entry>,
    truncated: bool,
}

/// How much a socket matters to a reach: established connections first, then connections
/// winding down, then connectionless transports, then listeners. A socket found in no table is
/// ranked with connections: what it is could not be seen.
fn relevance(socket: &Socket) -> u8 {
    use SocketState::*;
    if socket.source == TableSource::Unresolved {
        return 0;
    }
    let connected = socket.remote.is_some_and(|r| r.port != 0 || !r.addr.is_unspecified());
    match (&socket.protocol, socket.state) {
        (crate::model::Protocol::Tcp, Established | SynSent | SynRecv | NewSynRecv | CloseWait) => {
            0
        }
        (crate::model::Protocol::Tcp, Listen) => 3,
        (crate::model::Protocol::Tcp, Close) => 3,
        (crate::model::Protocol::Tcp, _) => 1,
        (crate::model::Protocol::Udp | crate::model::Protocol::Udplite, _) if connected => 0,
        _ => 2,
    }
}

/// One direction of flow: the nodes met so far, their successors, and the reach of each
/// strongly connected part.
struct Walk {
    flow: Flow,
    ids: HashMap<Node, u32>,
    nodes: Vec<Node>,
    /// Range of each node's successors in `successors`; set when the node is first visited.
    edges: Vec<(u32, u32)>,
    successors: Vec<u32>,
    /// Tarjan's bookkeeping.
    index: Vec<u32>,
    lowlink: Vec<u32>,
    on_stack: Vec<bool>,
    /// The part each finished node belongs to.
    part: Vec<u32>,
    /// Each part's reach.
    sets: Vec<Rc<Set>>,
    next_index: u32,
    /// Channels each relay carries data on in this flow (sorted).
    carried: HashMap<ProcKey, Rc<[Half]>>,
    /// Processes at the far end of each channel in this flow (sorted).
    far: HashMap<Half, Rc<[ProcKey]>>,
    /// Processes at the near end of each channel in this flow (sorted).
    near: HashMap<Half, Rc<[ProcKey]>>,
    /// Each relay's channels by the fingerprint of their far ends.
    echoes: HashMap<ProcKey, Rc<HashMap<u64, Vec<Half>>>>,
    /// Whether a channel's far end is another's near end, once asked.
    same: HashMap<(Half, Half), bool>,
    /// Fingerprint sums of the `far` and `near` sets, by address (they live as long as the
    /// walk, in those maps).
    sums: HashMap<usize, u64>,
    /// Network sockets each relay holds, as a set.
    held: HashMap<ProcKey, Rc<Set>>,
    entries_used: usize,
    empty: Rc<Set>,
}

impl Walk {
    fn new(flow: Flow) -> Walk {
        Walk {
            flow,
            ids: HashMap::default(),
            nodes: Vec::new(),
            edges: Vec::new(),
            successors: Vec::new(),
            index: Vec::new(),
            lowlink: Vec::new(),
            on_stack: Vec::new(),
            part: Vec::new(),
            sets: Vec::new(),
            next_index: 0,
            carried: HashMap::default(),
            far: HashMap::default(),
            near: HashMap::default(),
            echoes: HashMap::default(),
            same: HashMap::default(),
            sums: HashMap::default(),
            held: HashMap::default(),
            entries_used: 0,
            empty: Rc::new(Set::default()),
        }
    }

    fn intern(&mut self, node: Node) -> u32 {
        if let Some(&id) = self.ids.get(&node) {
            return id;
        }
        let id = self.nodes.len() as u32;
        self.ids.insert(node, id);
        self.nodes.push(node);
        self.edges.push((0, 0));
        self.index.push(UNSET);
        self.lowlink.push(UNSET);
        self.on_stack.push(false);
        self.part.push(UNSET);
        id
    }

    /// The part a start node belongs to, walking what has not been walked yet.
    fn resolve(&mut self, graph: &Graph<'_>, start: Node) -> u32 {
        let start = self.intern(start);
        if self.part[start as usize] == UNSET {
            self.tarjan(graph, start);
        }
        self.part[start as usize]
    }

    /// Tarjan's strongly connected components from `root`, iteratively (chains can be as long
    /// as the host has processes). Each part's reach is computed as the part completes: every
    /// part after it has completed already.
    fn tarjan(&mut self, graph: &Graph<'_>, root: u32) {
        let mut stack: Vec<u32> = Vec::new();
        let mut calls: Vec<(u32, u32)> = Vec::new();
        self.visit(graph, root, &mut stack);
        calls.push((root, self.edges[root as usize].0));
        while let Some(&mut (node, ref mut next)) = calls.last_mut() {
            let (_, end) = self.edges[node as usize];
            if *next < end {
                let child = self.successors[*next as usize];
                *next += 1;
                let n = node as usize;
                if self.index[child as usize] == UNSET {
                    self.visit(graph, child, &mut stack);
                    calls.push((child, self.edges[child as usize].0));
                } else if self.on_stack[child as usize] {
                    self.lowlink[n] = self.lowlink[n].min(self.index[child as usize]);
                }
                continue;
            }
            calls.pop();
            if let Some(&(parent, _)) = calls.last() {
                let (p, n) = (parent as usize, node as usize);
                self.lowlink[p] = self.lowlink[p].min(self.lowlink[n]);
            }
            if self.lowlink[node as usize] == self.index[node as usize] {
                let at = stack.iter().rposition(|&m| m == node).expect("node on the stack");
                let members = stack.split_off(at);
                self.complete(members, graph);
            }
        }
    }

    fn visit(&mut self, graph: &Graph<'_>, node: u32, stack: &mut Vec<u32>) {
        let n = node as usize;
        self.index[n] = self.next_index;
        self.lowlink[n] = self.next_index;
        self.next_index += 1;
        self.on_stack[n] = true;
        stack.push(node);
        let start = self.successors.len() as u32;
        if self.nodes.len() < MAX_NODES {
            let successors = self.successors_of(graph, self.nodes[n]);
            for next in successors {
                let id = self.intern(next);
                self.successors.push(id);
            }
        }
        self.edges[n] = (start, self.successors.len() as u32);
    }

    fn successors_of(&mut self, graph: &Graph<'_>, node: Node) -> Vec<Node> {
        match node {
            Node::Half(half) => {
                let far = self.far(graph, half);
                far.iter().map(|&relay| self.entered(graph, relay, half)).collect()
            }
            Node::HalfWithout(half, k) => {
                let far = self.far(graph, half);
                let chains = (Node::FarBefore(half, k), Node::FarFrom(half, k + 1));
                all_but(far.len(), k as usize, chains, |i| self.entered(graph, far[i], half))
            }
            Node::FarBefore(half, k) => {
                let far = self.far(graph, half);
                let mut out = vec![self.entered(graph, far[k as usize - 1], half)];
                if k > 1 {
                    out.push(Node::FarBefore(half, k - 1));
                }
                out
            }
            Node::FarFrom(half, k) => {
                let far = self.far(graph, half);
                let mut out = vec![self.entered(graph, far[k as usize], half)];
                if (k as usize) + 1 < far.len() {
                    out.push(Node::FarFrom(half, k + 1));
                }
                out
            }
            Node::Relay(relay, back) => {
                let carried = self.carried(graph, relay);
                match back.and_then(|b| carried.binary_search(&b).ok()) {
                    None => carried.iter().map(|&h| self.onward(graph, relay, h)).collect(),
                    Some(k) => {
                        let chains =
                            (Node::Before(relay, k as u32), Node::From(relay, k as u32 + 1));
                        all_but(carried.len(), k, chains, |i| self.onward(graph, relay, carried[i]))
                    }
                }
            }
            Node::Before(relay, k) => {
                let carried = self.carried(graph, relay);
                let mut out = vec![self.onward(graph, relay, carried[k as usize - 1])];
                if k > 1 {
                    out.push(Node::Before(relay, k - 1));
                }
                out
            }
            Node::From(relay, k) => {
                let carried = self.carried(graph, relay);
                let mut out = vec![self.onward(graph, relay, carried[k as usize])];
                if (k as usize) + 1 < carried.len() {
                    out.push(Node::From(relay, k + 1));
                }
                out
            }
        }
    }

    /// `relay` entered through `half`: it does not send the data back to the processes it came
    /// from — into the other direction of the same channel (a pty, a socketpair), or into a
    /// channel whose far end is exactly those processes (a parent reading its workers' shared
    /// stdout pipe does not feed it into their shared stdin pipe). A working relay moves data
    /// from one party to another; sending it back to the same party is an echo, and counting it
    /// would make every worker of such a parent reach every other worker's sockets.
    fn entered(&mut self, graph: &Graph<'_>, relay: ProcKey, half: Half) -> Node {
        let carried = self.carried(graph, relay);
        if let Some(back) = half.reverse().filter(|b| carried.binary_search(b).is_ok()) {
            return Node::Relay(relay, Some(back));
        }
        let from = self.near(graph, half);
        let wanted = self.fingerprint(&from, relay);
        let candidates = self.echoes(graph, relay).get(&wanted).cloned().unwrap_or_default();
        let back = candidates.into_iter().find(|&c| self.echoes_back(graph, relay, half, c));
        Node::Relay(relay, back)
    }

    /// A hash of a process set without `relay`, to find equal sets without comparing every
    /// pair: a sum of the members' hashes (computed once per set), so that leaving one out
    /// costs a subtraction.
    fn fingerprint(&mut self, processes: &Rc<[ProcKey]>, relay: ProcKey) -> u64 {
        let key = Rc::as_ptr(processes) as *const ProcKey as usize;
        let sum = *self.sums.entry(key).or_insert_with(|| {
            processes.iter().fold(0u64, |sum, &p| sum.wrapping_add(member_hash(p)))
        });
        match processes.binary_search(&relay) {
            Ok(_) => sum.wrapping_sub(member_hash(relay)),
            Err(_) => sum,
        }
    }

    /// Whether the far end of `onward` is the near end of `entry`, `relay` apart.
    fn echoes_back(
        &mut self,
        graph: &Graph<'_>,
        relay: ProcKey,
        entry: Half,
        onward: Half,
    ) -> bool {
        let (to, from) = (self.far(graph, onward), self.near(graph, entry));
        let (in_to, in_from) =
            (to.binary_search(&relay).is_ok(), from.binary_search(&relay).is_ok());
        if to.len() - usize::from(in_to) != from.len() - usize::from(in_from) {
            return false;
        }
        // With the relay on both sides or on neither, the answer is the same for every relay:
        // a parent's thousand workers ask it once.
        if in_to == in_from {
            return *self.same.entry((onward, entry)).or_insert_with(|| to == from);
        }
        without(&to, relay) == without(&from, relay)
    }

    /// The processes at the near end of a half in this flow (where the data came from).
    fn near(&mut self, graph: &Graph<'_>, half: Half) -> Rc<[ProcKey]> {
        let opposite = match self.flow {
            Flow::Sink => Flow::Source,
            Flow::Source => Flow::Sink,
        };
        self.near
            .entry(half)
            .or_insert_with(|| {
                let mut relays = graph.far_ends(half, opposite);
                relays.sort_unstable();
                relays.dedup();
                relays.into()
            })
            .clone()
    }

    /// The channels `relay` carries on, by the fingerprint of their far ends (without `relay`).
    fn echoes(&mut self, graph: &Graph<'_>, relay: ProcKey) -> Rc<HashMap<u64, Vec<Half>>> {
        if let Some(index) = self.echoes.get(&relay) {
            return index.clone();
        }
        let mut index: HashMap<u64, Vec<Half>> = HashMap::default();
        for &half in self.carried(graph, relay).iter() {
            let far = self.far(graph, half);
            index.entry(self.fingerprint(&far, relay)).or_default().push(half);
        }
        let index = Rc::new(index);
        self.echoes.insert(relay, index.clone());
        index
    }

    /// Where `relay` sends data on through `half`: to the channel's far end, without `relay`
    /// itself.
    fn onward(&mut self, graph: &Graph<'_>, relay: ProcKey, half: Half) -> Node {
        match self.far(graph, half).binary_search(&relay) {
            Ok(k) => Node::HalfWithout(half, k as u32),
            Err(_) => Node::Half(half),
        }
    }

    /// The processes at the far end of a half (sorted).
    fn far(&mut self, graph: &Graph<'_>, half: Half) -> Rc<[ProcKey]> {
        let flow = self.flow;
        self.far
            .entry(half)
            .or_insert_with(|| {
                let mut relays = graph.far_ends(half, flow);
                relays.sort_unstable();
                relays.dedup();
                relays.into()
            })
            .clone()
    }

    /// The channels `relay` passes data on through: in the sink flow those it writes, in the
    /// source flow those it reads.
    fn carried(&mut self, graph: &Graph<'_>, relay: ProcKey) -> Rc<[Half]> {
        let flow = self.flow;
        self.carried
            .entry(relay)
            .or_insert_with(|| {
                let mut halves: Vec<Half> =
                    graph.fds_of(relay).iter().filter_map(|fd| graph.half(fd, flow)).collect();
                halves.sort_unstable();
                halves.dedup();
                halves.into()
            })
            .clone()
    }

    /// The network sockets `relay` holds.
    fn held(&mut self, graph: &Graph<'_>, relay: ProcKey) -> Rc<Set> {
        if let Some(set) = self.held.get(&relay) {
            return set.clone();
        }
        let mut entries: Vec<Entry> = graph
            .fds_of(relay)
            .iter()
            .filter_map(|fd| graph.network_socket_index(&fd.target))
            .map(|i| (relevance(&graph.snapshot.sockets[i]), i as u32))
            .collect();
        entries.sort_unstable();
        entries.dedup();
        let truncated = entries.len() > MAX_ROUTES;
        entries.truncate(MAX_ROUTES);
        let set = match entries.is_empty() {
            true => self.empty.clone(),
            false => Rc::new(Set { entries, truncated }),
        };
        self.held.insert(relay, set.clone());
        set
    }

    /// Gives a finished part its reach: what its relays hold and what the parts it leads to
    /// reach.
    fn complete(&mut self, members: Vec<u32>, graph: &Graph<'_>) {
        let part = self.sets.len() as u32;
        for &m in &members {
            self.part[m as usize] = part;
            self.on_stack[m as usize] = false;
        }
        let mut inputs: Vec<Rc<Set>> = Vec::new();
        let mut cut = false;
        for &m in &members {
            if let Node::Relay(relay, _) = self.nodes[m as usize] {
                inputs.push(self.held(graph, relay));
            }
            let (start, end) = self.edges[m as usize];
            // A node visited after the node budget ran out had its successors left unlisted.
            cut |= start == end && self.nodes.len() >= MAX_NODES;
            for &next in &self.successors[start as usize..end as usize] {
                let next_part = self.part[next as usize];
                if next_part != part {
                    inputs.push(self.sets[next_part as usize].clone());
                }
            }
        }
        let set = self.merge(inputs, cut);
        self.sets.push(set);
    }

    /// The union of sets, most relevant first, at most `MAX_ROUTES` (or `CUT_SET` once the
    /// entry budget is spent) long. A set shared unchanged is not copied.
    fn merge(&mut self, mut inputs: Vec<Rc<Set>>, cut: bool) -> Rc<Set> {
        inputs.retain(|s| !s.entries.is_empty() || s.truncated);
        inputs.sort_by_key(Rc::as_ptr);
        inputs.dedup_by(|a, b| Rc::ptr_eq(a, b));
        match (inputs.len(), cut) {
            (0, false) => return self.empty.clone(),
            (1, false) => return inputs.pop().expect("one input"),
            _ => {}
        }
        let limit = if self.entries_used >= MAX_SET_ENTRIES { CUT_SET } else { MAX_ROUTES };
        let mut truncated = cut || inputs.iter().any(|s| s.truncated);
        let mut heap: BinaryHeap<std::cmp::Reverse<(Entry, u32, u32)>> = inputs
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.entries.first().map(|&e| std::cmp::Reverse((e, i as u32, 0))))
            .collect();
        let mut entries: Vec<Entry> = Vec::new();
        while let Some(std::cmp::Reverse((entry, from, at))) = heap.pop() {
            if entries.last() != Some(&entry) {
                if entries.len() == limit {
                    truncated = true;
                    break;
                }
                entries.push(entry);
            }
            if let Some(&next) = inputs[from as usize].entries.get(at as usize + 1) {
                heap.push(std::cmp::Reverse((next, from, at + 1)));
            }
        }
        self.entries_used += entries.len();
        Rc::new(Set { entries, truncated })
    }

    /// Shortest ways from `start` to every socket it reaches: one breadth-first search, which
    /// records for each socket the first relay holding it and each node's parent.
    fn routes_from(&self, start: Node) -> Tree {
        let mut tree = Tree::default();
        let Some(&start) = self.ids.get(&start) else { return tree };
        let mut queue = VecDeque::from([start]);
        tree.parent.insert(start, start);
        while let Some(node) = queue.pop_front() {
            if let Node::Relay(relay, _) = self.nodes[node as usize]
                && let Some(held) = self.held.get(&relay)
            {
                for &(_, position) in &held.entries {
                    tree.holder.entry(position).or_insert(node);
                }
            }
            let (from, to) = self.edges[node as usize];
            for &next in &self.successors[from as usize..to as usize] {
                if let std::collections::hash_map::Entry::Vacant(e) = tree.parent.entry(next) {
                    e.insert(node);
                    queue.push_back(next);
                }
            }
        }
        tree
    }

    fn path(&self, mut node: u32, parent: &HashMap<u32, u32>) -> Vec<ProcKey> {
        let mut relays = Vec::new();
        loop {
            if let Node::Relay(relay, _) = self.nodes[node as usize]
                && !relays.contains(&relay)
            {
                relays.push(relay);
            }
            let up = parent[&node];
            if up == node {
                break;
            }
            node = up;
        }
        relays.reverse();
        relays
    }
}

/// A sorted process list without `relay`.
fn without(processes: &[ProcKey], relay: ProcKey) -> Vec<ProcKey> {
    processes.iter().copied().filter(|&p| p != relay).collect()
}

fn member_hash(process: ProcKey) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = rustc_hash::FxHasher::default();
    process.hash(&mut hasher);
    // FxHash of small integers is close to linear: spread the bits before summing.
    hasher.finish().wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29)
}

/// The successors of a node standing for every item of a list but the `k`-th: the items
/// themselves when the list is short, else the chain nodes for the items before and after it.
fn all_but(
    len: usize,
    k: usize,
    (before, after): (Node, Node),
    mut item: impl FnMut(usize) -> Node,
) -> Vec<Node> {
    if len <= DIRECT_CHANNELS {
        return (0..len).filter(|&i| i != k).map(&mut item).collect();
    }
    let mut out = Vec::with_capacity(2);
    if k > 0 {
        out.push(before);
    }
    if k + 1 < len {
        out.push(after);
    }
    out
}

/// Relays by (reach, socket position).
type RelayMemo = HashMap<(usize, u32), Rc<[ProcKey]>>;

/// A breadth-first search tree from a reach's start: each node's parent, and for each socket
/// (by position) the first relay node holding it.
#[derive(Default)]
struct Tree {
    parent: HashMap<u32, u32>,
    holder: HashMap<u32, u32>,
}

/// What `resolve` leaves for the graph: the walks, and where each reach starts.
pub(crate) struct Resolved {
    walks: [Walk; 2],
    /// Each reach: its flow (0 source, 1 sink), its start node and its part.
    reaches: Vec<(usize, Node, u32)>,
    /// Relays between a reach and a socket, found when first asked for.
    relays: RefCell<RelayMemo>,
    /// Each asked reach's shortest ways to its sockets.
    trees: RefCell<HashMap<usize, Rc<Tree>>>,
}

impl Resolved {
    /// Reaches found.
    pub fn len(&self) -> usize {
        self.reaches.len()
    }

    fn set(&self, reach: usize) -> &Set {
        let (flow, _, part) = self.reaches[reach];
        &self.walks[flow].sets[part as usize]
    }

    /// Positions in `Snapshot::sockets` of the sockets a reach lists, most relevant first.
    pub fn sockets(&self, reach: usize) -> impl Iterator<Item = usize> + '_ {
        self.set(reach).entries.iter().map(|&(_, i)| i as usize)
    }

    /// The reach was cut short.
    pub fn truncated(&self, reach: usize) -> bool {
        self.set(reach).truncated
    }

    /// The relays between a reach's stdio object and the socket at `position`, nearest first.
    pub fn relays(&self, reach: usize, position: usize) -> Rc<[ProcKey]> {
        let key = (reach, position as u32);
        if let Some(found) = self.relays.borrow().get(&key) {
            return found.clone();
        }
        let (flow, start, _) = self.reaches[reach];
        let walk = &self.walks[flow];
        let tree = self
            .trees
            .borrow_mut()
            .entry(reach)
            .or_insert_with(|| Rc::new(walk.routes_from(start)))
            .clone();
        let found: Rc<[ProcKey]> = match tree.holder.get(&(position as u32)) {
            Some(&node) => walk.path(node, &tree.parent).into(),
            None => Rc::from([]),
        };
        self.relays.borrow_mut().insert(key, found.clone());
        found
    }

    /// A reach with the relays of each of its routes, as `scan --format json` shows it.
    pub fn described(&self, graph: &Graph<'_>, reach: usize) -> StdioReach {
        let sockets = &graph.snapshot.sockets;
        StdioReach {
            routes: self
                .sockets(reach)
                .map(|i| Route { relays: self.relays(reach, i).to_vec(), socket: sockets[i].key })
                .collect(),
            truncated: self.truncated(reach),
        }
    }
}

/// Every process's stdio ends, and the shared reaches they point at.
pub(crate) fn resolve(graph: &Graph<'_>) -> (Vec<StdioEnd>, Resolved) {
    let mut walks = [Walk::new(Flow::Source), Walk::new(Flow::Sink)];
    let mut memo: HashMap<(Half, usize), usize> = HashMap::default();
    let mut reaches: Vec<(usize, Node, u32)> = Vec::new();
    let mut ends = Vec::new();
    for process in &graph.snapshot.processes {
        let fds = graph.fds_of(process.key);
        for (num, stream) in process.stdio_fds() {
            let Some(fd) = own_fd(fds, num) else { continue };
            let alias = (num != stream).then_some(stream);
            if let Some(socket) = graph.network_socket(&fd.target) {
                let (proc, fd, via) = (fd.proc, fd.num, Via::Direct);
                ends.push(StdioEnd {
                    proc,
                    fd,
                    stream: alias,
                    via,
                    socket: Some(socket),
                    reach: None,
                });
                continue;
            }
            let flow = if stream == 0 { Flow::Source } else { Flow::Sink };
            let Some(half) = graph.half(fd, flow) else { continue };
            let w = flow as usize;
            let index = *memo.entry((half, w)).or_insert_with(|| {
                let part = walks[w].resolve(graph, Node::Half(half));
                reaches.push((w, Node::Half(half), part));
                reaches.len() - 1
            });
            let (_, _, part) = reaches[index];
            let set = &walks[w].sets[part as usize];
            if !set.entries.is_empty() || set.truncated {
                let (proc, fd, via) = (fd.proc, fd.num, half.via());
                ends.push(StdioEnd {
                    proc,
                    fd,
                    stream: alias,
                    via,
                    socket: None,
                    reach: Some(index),
                });
            }
        }
    }
    (ends, Resolved { walks, reaches, relays: RefCell::default(), trees: RefCell::default() })
}

/// The fd `num` of the process's own table (not a thread's private one), from its sorted fds.
fn own_fd(fds: &[Fd], num: i32) -> Option<&Fd> {
    let own = &fds[..fds.partition_point(|f| f.tid.is_none())];
    own.binary_search_by_key(&num, |f| f.num).ok().map(|i| &own[i])
}

impl Graph<'_> {
    /// The one-way channel an fd reads from (source flow) or writes into (sink flow).
    fn half(&self, fd: &Fd, flow: Flow) -> Option<Half> {
        let reading = flow == Flow::Source;
        let allowed = |mode: AccessMode| if reading { mode.reads() } else { mode.writes() };
        match &fd.target {
            FdTarget::Pipe { inode } => allowed(fd.mode).then_some(Half::Pipe(*inode)),
            FdTarget::Fifo { dev, ino, .. } => allowed(fd.mode).then_some(Half::Fifo(*dev, *ino)),
            FdTarget::PtySlave { pty } if reading => Some(Half::ToSlave(*pty)),
            FdTarget::PtySlave { pty } => Some(Half::ToMaster(*pty)),
            FdTarget::PtyMaster { pty } if reading => Some(Half::ToMaster(*pty)),
            FdTarget::PtyMaster { pty } => Some(Half::ToSlave(*pty)),
            FdTarget::Socket { inode } => {
                let peer = self.unix_peer(*inode)?.key.inode;
                let half = match reading {
                    true => Half::Unix { from: peer, to: *inode },
                    false => Half::Unix { from: *inode, to: peer },
                };
                self.half_open(half).then_some(half)
            }
            _ => None,
        }
    }

    /// A unix half is closed when its writer shut down sending or its reader receiving.
    fn half_open(&self, half: Half) -> bool {
        let Half::Unix { from, to } = half else { return true };
        let info = |inode| self.socket(inode).and_then(|s| s.unix.as_ref());
        info(from).is_none_or(|u| u.can_send()) && info(to).is_none_or(|u| u.can_receive())
    }

    /// The processes at the far end of a half: its readers for the sink flow, its writers for
    /// the source flow.
    fn far_ends(&self, half: Half, flow: Flow) -> Vec<ProcKey> {
        let reading = flow == Flow::Sink;
        let wanted = |f: &&Fd| if reading { f.mode.reads() } else { f.mode.writes() };
        match half {
            Half::Pipe(inode) => self.pipe_ends(inode).filter(wanted).map(|f| f.proc).collect(),
            Half::Fifo(dev, ino) => {
                self.fifo_ends(dev, ino).filter(wanted).map(|f| f.proc).collect()
            }
            Half::ToMaster(pty) if reading => self.pty_masters(pty).map(|f| f.proc).collect(),
            Half::ToMaster(pty) => self.pty_slaves(pty).map(|f| f.proc).collect(),
            Half::ToSlave(pty) if reading => self.pty_slaves(pty).map(|f| f.proc).collect(),
            Half::ToSlave(pty) => self.pty_masters(pty).map(|f| f.proc).collect(),
            Half::Unix { .. } if !self.half_open(half) => Vec::new(),
            Half::Unix { from, to } => {
                let end = if reading { to } else { from };
                self.socket(end)
                    .map(|s| s.holders.iter().map(|h| h.proc).collect())
                    .unwrap_or_default()
            }
        }
    }
}

/// The snapshot's stdio reaches, for tests of this module.
#[cfg(test)]
fn snapshot_routes(
    snapshot: &crate::model::Snapshot,
    pid: i32,
    fd: i32,
) -> (Vec<(Vec<i32>, u64)>, bool) {
    let graph = Graph::build(snapshot, None);
    let end = graph.stdio.iter().find(|e| e.proc.pid == pid && e.fd == fd);
    match end {
        None => (Vec::new(), false),
        Some(end) => (
            graph
                .links(end)
                .iter()
                .map(|l| (l.relays.iter().map(|r| r.pid).collect(), l.socket.inode))
                .collect(),
            graph.truncated(end),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::snapshot_routes as routes_of;
    use super::*;
    use crate::model::fixture::Builder;
    use crate::model::{Protocol, UnixInfo};

    fn sorted(mut routes: (Vec<(Vec<i32>, u64)>, bool)) -> (Vec<(Vec<i32>, u64)>, bool) {
        routes.0.sort();
        routes
    }

    #[test]
    fn follows_pipes_and_a_fifo_through_relays_in_the_direction_of_flow() {
        // cat f | sh -i | nc host port > f
        let mut b = Builder::new();
        let (sh, cat, nc) = (b.process(10, "sh"), b.process(11, "cat"), b.process(12, "nc"));
        b.pipe(100, (cat, 1), (sh, 0));
        b.pipe(101, (sh, 1), (nc, 0));
        let fifo = FdTarget::Fifo { dev: 8, ino: 9, path: "f".into() };
        b.fd(cat, 3, AccessMode::Read, fifo.clone());
        b.fd(nc, 1, AccessMode::Write, fifo);
        b.connection(500, nc, 3);
        let s = b.build();
        assert_eq!(routes_of(&s, 10, 0), (vec![(vec![11, 12], 500)], false));
        assert_eq!(routes_of(&s, 10, 1), (vec![(vec![12], 500)], false));
    }

    #[test]
    fn a_co_writer_is_not_where_output_goes() {
        // sh and a networked process both write into a pipe that only `logger` reads.
        let mut b = Builder::new();
        let (sh, other, logger) =
            (b.process(10, "sh"), b.process(11, "srv"), b.process(12, "logger"));
        b.pipe(100, (sh, 1), (logger, 0));
        b.fd(other, 1, AccessMode::Write, FdTarget::Pipe { inode: 100 });
        b.connection(500, other, 3);
        let s = b.build();
        assert_eq!(routes_of(&s, 10, 1), (vec![], false));
    }

    #[test]
    fn ptys_and_unix_peers_lead_to_the_other_side_only() {
        let mut b = Builder::new();
        let (sh, child, socat) = (b.process(10, "sh"), b.process(11, "id"), b.process(12, "socat"));
        let pty = PtyId { devpts: Some(3), index: 0 };
        for p in [sh, child] {
            b.fd(p, 0, AccessMode::ReadWrite, FdTarget::PtySlave { pty });
        }
        b.fd(socat, 5, AccessMode::ReadWrite, FdTarget::PtyMaster { pty });
        b.connection(500, socat, 3);
        let (py, sh2) = (b.process(20, "python3"), b.process(21, "sh"));
        b.unix_pair((600, py, 4), (601, sh2, 0));
        b.connection(501, py, 3);
        let s = b.build();
        assert_eq!(routes_of(&s, 10, 0), (vec![(vec![12], 500)], false));
        assert_eq!(routes_of(&s, 11, 0), (vec![(vec![12], 500)], false));
        assert_eq!(routes_of(&s, 21, 0), (vec![(vec![20], 501)], false));
    }

    #[test]
    fn a_terminal_does_not_carry_a_clients_output_into_the_shell_beside_it() {
        // An ssh or tmux session: bash and `nc host port` share the pty; sshd/tmux holds the
        // master. nc's output goes to the screen, not into bash's stdin.
        let mut b = Builder::new();
        let (bash, nc, tmux) = (b.process(10, "bash"), b.process(11, "nc"), b.process(12, "tmux"));
        let pty = PtyId { devpts: Some(3), index: 0 };
        for p in [bash, nc] {
            for fd in 0..3 {
                b.fd(p, fd, AccessMode::ReadWrite, FdTarget::PtySlave { pty });
            }
        }
        b.fd(tmux, 5, AccessMode::ReadWrite, FdTarget::PtyMaster { pty });
        b.connection(500, nc, 3);
        let s = b.build();
        assert_eq!(routes_of(&s, 10, 0), (vec![], false));
        assert_eq!(routes_of(&s, 10, 1), (vec![], false));
    }

    #[test]
    fn a_relay_with_many_channels_still_does_not_echo_into_the_one_it_came_from() {
        // The same terminal as above, but the master's holder carries dozens of other ptys
        // (prefix and suffix nodes instead of one edge per channel): still no echo, and a
        // networked client on another pty is reached through it.
        let mut b = Builder::new();
        let (bash, nc, tmux) = (b.process(10, "bash"), b.process(11, "nc"), b.process(12, "tmux"));
        let pty = |index| PtyId { devpts: Some(3), index };
        for p in [bash, nc] {
            for fd in 0..3 {
                b.fd(p, fd, AccessMode::ReadWrite, FdTarget::PtySlave { pty: pty(7) });
            }
        }
        for i in 0..40 {
            b.fd(tmux, 5 + i, AccessMode::ReadWrite, FdTarget::PtyMaster { pty: pty(i as u32) });
        }
        b.connection(500, nc, 3);
        let s = b.build();
        assert_eq!(routes_of(&s, 10, 0), (vec![], false));
        assert_eq!(routes_of(&s, 10, 1), (vec![], false));
        let client = b_with_client_on(&s, pty(20));
        assert_eq!(routes_of(&client, 10, 0), (vec![(vec![12, 30], 501)], false));
    }

    #[test]
    fn a_relays_own_self_pipe_does_not_let_it_echo() {
        // tmux's server holds both ends of a self-pipe: data it reads from a pane must not come
        // back out of the pipe into it and on into the same pane, where `nc` is.
        let mut b = Builder::new();
        let (bash, nc, tmux) = (b.process(10, "bash"), b.process(11, "nc"), b.process(12, "tmux"));
        let pty = PtyId { devpts: Some(3), index: 0 };
        for p in [bash, nc] {
            for fd in 0..3 {
                b.fd(p, fd, AccessMode::ReadWrite, FdTarget::PtySlave { pty });
            }
        }
        b.fd(tmux, 5, AccessMode::ReadWrite, FdTarget::PtyMaster { pty });
        b.pipe(77, (tmux, 4), (tmux, 3));
        b.connection(500, nc, 3);
        let s = b.build();
        assert_eq!(routes_of(&s, 10, 0), (vec![], false));
        assert_eq!(routes_of(&s, 10, 1), (vec![], false));
    }

    #[test]
    fn a_parent_does_not_echo_its_workers_output_back_into_their_input() {
        // A parent writing the stdin pipe and reading the stdout pipe that 100 workers share;
        // one worker holds a connection. What the parent reads from the workers does not go back
        // into their stdin: no worker's stdio reaches another's sockets through it.
        let mut b = Builder::new();
        let parent = b.process(10, "python3");
        for i in 0..100 {
            let w = b.process(100 + i, "worker");
            b.fd(w, 0, AccessMode::Read, FdTarget::Pipe { inode: 7 });
            b.fd(w, 1, AccessMode::Write, FdTarget::Pipe { inode: 8 });
            if i == 50 {
                b.connection(500, w, 3);
            }
        }
        b.fd(parent, 4, AccessMode::Write, FdTarget::Pipe { inode: 7 });
        b.fd(parent, 5, AccessMode::Read, FdTarget::Pipe { inode: 8 });
        let s = b.build();
        assert_eq!(routes_of(&s, 110, 0), (vec![], false));
        assert_eq!(routes_of(&s, 110, 1), (vec![], false));
        // A relay between two different children still relays: python spawning nc and sh.
        let mut b = Builder::new();
        let (py, nc, sh) = (b.process(10, "python3"), b.process(11, "nc"), b.process(12, "sh"));
        b.pipe(100, (nc, 1), (py, 4));
        b.pipe(101, (py, 5), (nc, 0));
        b.pipe(102, (py, 6), (sh, 0));
        b.pipe(103, (sh, 1), (py, 7));
        b.connection(500, nc, 3);
        let s = b.build();
        assert_eq!(routes_of(&s, 12, 0), (vec![(vec![10, 11], 500)], false));
        assert_eq!(routes_of(&s, 12, 1), (vec![(vec![10, 11], 500)], false));
    }

    #[test]
    fn a_fifo_a_relay_holds_both_ways_still_carries_a_writers_data() {
        // `nc HOST PORT <> f` feeding `sh < f`: nc reads and writes f, the shell reads it.
        let mut b = Builder::new();
        let (sh, nc) = (b.process(10, "sh"), b.process(11, "nc"));
        let fifo = FdTarget::Fifo { dev: 8, ino: 9, path: "f".into() };
        b.fd(sh, 0, AccessMode::Read, fifo.clone());
        b.fd(nc, 1, AccessMode::ReadWrite, fifo);
        b.connection(500, nc, 3);
        assert_eq!(routes_of(&b.build(), 10, 0), (vec![(vec![11], 500)], false));
    }

    #[test]
    fn a_pipe_shared_by_thousands_reading_and_writing_stays_linear() {
        // 5000 processes with stdin and stdout on one pipe; one of them holds a connection.
        let mut b = Builder::new();
        for i in 0..5000 {
            let p = b.process(100 + i, "worker");
            b.fd(p, 0, AccessMode::Read, FdTarget::Pipe { inode: 7 });
            b.fd(p, 1, AccessMode::Write, FdTarget::Pipe { inode: 7 });
        }
        let holder = ProcKey { pid: 2600, start_ticks: 2700 };
        b.connection(500, holder, 3);
        let s = b.build();
        let graph = Graph::build(&s, None);
        let first = graph.stdio.iter().find(|e| e.proc.pid == 100).expect("worker 100 reaches");
        assert_eq!(graph.reached(first).count(), 1);
        assert_eq!(graph.relays(first, graph.socket_index(500).unwrap()).len(), 1);
    }

    /// `s` plus a networked process on the slave side of `pty`.
    fn b_with_client_on(s: &crate::model::Snapshot, pty: PtyId) -> crate::model::Snapshot {
        let mut b = Builder::new();
        *b.snapshot_mut() = s.clone();
        let client = b.process(30, "nc");
        b.fd(client, 1, AccessMode::ReadWrite, FdTarget::PtySlave { pty });
        b.connection(501, client, 3);
        b.snapshot_mut().sockets.iter_mut().for_each(|s| s.holders.clear());
        b.build()
    }

    #[test]
    fn a_pty_in_another_devpts_instance_is_another_pty() {
        let mut b = Builder::new();
        let (sh, relay) = (b.process(10, "sh"), b.process(12, "relay"));
        let slave = FdTarget::PtySlave { pty: PtyId { devpts: Some(3), index: 0 } };
        b.fd(sh, 0, AccessMode::ReadWrite, slave);
        let master = FdTarget::PtyMaster { pty: PtyId { devpts: Some(4), index: 0 } };
        b.fd(relay, 5, AccessMode::ReadWrite, master);
        b.connection(500, relay, 3);
        assert_eq!(routes_of(&b.build(), 10, 0), (vec![], false));
    }

    #[test]
    fn long_chains_are_followed_to_the_end() {
        // `nc | cat | cat | … | sh`: 1000 relays, no depth bound.
        let mut b = Builder::new();
        let sh = b.process(10, "sh");
        let mut reader = (sh, 0);
        for i in 0..1000 {
            let cat = b.process(100 + i, "cat");
            b.pipe(1000 + i as u64, (cat, 1), reader);
            reader = (cat, 0);
        }
        let nc = b.process(5000, "nc");
        b.pipe(9999, (nc, 1), reader);
        b.connection(500, nc, 3);
        let (routes, truncated) = routes_of(&b.build(), 10, 0);
        assert!(!truncated);
        assert_eq!(routes.len(), 1);
        assert_eq!(routes[0].0.len(), 1001, "every cat, then nc");
        assert_eq!(routes[0].0.last(), Some(&5000));
    }

    #[test]
    fn decoy_writers_and_decoy_sockets_do_not_hide_the_connection() {
        // 70 idle writers on the FIFO the shell reads, before the real one (lower pids); the
        // relay holding the connection also holds 70 unconnected UDP sockets and listeners.
        let mut b = Builder::new();
        let sh = b.process(1000, "sh");
        let fifo = FdTarget::Fifo { dev: 8, ino: 9, path: "f".into() };
        b.fd(sh, 0, AccessMode::Read, fifo.clone());
        for i in 0..70 {
            let idle = b.process(10 + i, "sleep");
            b.fd(idle, 5, AccessMode::Write, fifo.clone());
        }
        let nc = b.process(2000, "nc");
        b.fd(nc, 1, AccessMode::Write, fifo);
        for i in 0..70u64 {
            let (protocol, state) = match i % 2 {
                0 => (Protocol::Udp, SocketState::Close),
                _ => (Protocol::Tcp, SocketState::Listen),
            };
            b.inet(100 + i, protocol, &format!("0.0.0.0:{}", 2000 + i), "0.0.0.0:0", state);
            b.fd(nc, 10 + i as i32, AccessMode::Unknown, FdTarget::Socket { inode: 100 + i });
        }
        b.connection(9000, nc, 3);
        let (routes, truncated) = routes_of(&b.build(), 1000, 0);
        assert!(!truncated, "71 sockets fit");
        assert_eq!(routes[0], (vec![2000], 9000), "the connection comes first");
    }

    #[test]
    fn a_relay_holding_a_socket_does_not_end_the_walk() {
        // sh's stdin comes from `python` holding a decoy UDP socket, which reads from `nc`
        // holding the connection.
        let mut b = Builder::new();
        let (sh, py, nc) = (b.process(10, "sh"), b.process(11, "python3"), b.process(12, "nc"));
        b.pipe(100, (py, 1), (sh, 0));
        b.pipe(101, (nc, 1), (py, 0));
        b.inet(300, Protocol::Udp, "0.0.0.0:5353", "0.0.0.0:0", SocketState::Close);
        b.fd(py, 4, AccessMode::Unknown, FdTarget::Socket { inode: 300 });
        b.connection(500, nc, 3);
        let s = b.build();
        assert_eq!(routes_of(&s, 10, 0), (vec![(vec![11, 12], 500), (vec![11], 300)], false));
    }

    #[test]
    fn more_sockets_than_a_reach_lists_is_truncated_with_connections_kept() {
        let mut b = Builder::new();
        let (sh, server) = (b.process(10, "sh"), b.process(11, "server"));
        b.pipe(7, (server, 1), (sh, 0));
        for i in 0..(MAX_ROUTES as i32 + 10) {
            b.inet(500 + i as u64, Protocol::Udp, "0.0.0.0:53", "0.0.0.0:0", SocketState::Close);
            b.fd(server, 10 + i, AccessMode::Unknown, FdTarget::Socket { inode: 500 + i as u64 });
        }
        b.connection(99_999, server, 3);
        let (routes, truncated) = routes_of(&b.build(), 10, 0);
        assert_eq!((routes.len(), truncated), (MAX_ROUTES, true));
        assert!(routes.contains(&(vec![11], 99_999)));
    }

    #[test]
    fn a_shut_down_direction_carries_nothing() {
        // A service's stdout is a stream to journald, which shut down its sending side: the
        // service's stdin cannot come from what journald reads (other services' output).
        let mut b = Builder::new();
        let (svc, journald, other) =
            (b.process(10, "svc"), b.process(11, "journald"), b.process(12, "other"));
        b.unix_pair((600, journald, 4), (601, svc, 0));
        b.unix_pair((602, journald, 5), (603, other, 1));
        b.connection(500, other, 3);
        let mut s = b.build();
        assert_eq!(sorted(routes_of(&s, 10, 0)), (vec![(vec![11, 12], 500)], false));
        for socket in s.sockets.iter_mut().filter(|s| [600, 602].contains(&s.key.inode)) {
            socket.unix =
                Some(UnixInfo { shutdown: UnixInfo::SEND_SHUT, ..socket.unix.clone().unwrap() });
        }
        assert_eq!(routes_of(&s, 10, 0), (vec![], false));
    }

    #[test]
    fn cycles_terminate_and_stdio_objects_are_walked_once() {
        let mut b = Builder::new();
        let (a, c) = (b.process(10, "a"), b.process(11, "b"));
        b.pipe(1, (a, 1), (c, 0));
        b.pipe(2, (c, 1), (a, 0));
        assert_eq!(routes_of(&b.build(), 10, 0), (vec![], false));

        let mut b = Builder::new();
        let nc = b.process(5, "nc");
        let children: Vec<ProcKey> = (0..3).map(|i| b.process(10 + i, "sh")).collect();
        for child in &children {
            b.fd(*child, 0, AccessMode::Read, FdTarget::Pipe { inode: 9 });
        }
        b.fd(nc, 1, AccessMode::Write, FdTarget::Pipe { inode: 9 });
        b.connection(500, nc, 3);
        let snapshot = b.build();
        let graph = Graph::build(&snapshot, None);
        let shared: Vec<_> =
            graph.stdio.iter().filter(|e| children.contains(&e.proc)).map(|e| e.reach).collect();
        assert_eq!(shared.len(), 3);
        assert!(shared.iter().all(|r| r.is_some() && *r == shared[0]), "one walk, three holders");
        assert!(children.iter().all(|c| graph.links_of(*c).len() == 1));
    }

    #[test]
    fn the_csh_familys_copies_of_stdio_are_its_stdio() {
        // csh keeps stdin on fd 16 (and 19), stdout on 17, stderr on 18, and closes 0-2.
        let mut b = Builder::new();
        let (csh, nc) = (b.process(10, "csh"), b.process(11, "nc"));
        b.snapshot_mut().processes[0].exe = Some(crate::model::fixture::exe("/usr/bin/bsd-csh", 3));
        b.pipe(100, (nc, 1), (csh, 16));
        b.pipe(101, (csh, 17), (nc, 0));
        b.fd(csh, 19, AccessMode::Read, FdTarget::Pipe { inode: 100 });
        b.connection(500, nc, 3);
        let s = b.build();
        let graph = Graph::build(&s, None);
        let streams: Vec<(i32, i32)> =
            graph.stdio.iter().filter(|e| e.proc == csh).map(|e| (e.fd, e.stream())).collect();
        assert_eq!(streams, [(16, 0), (17, 1), (19, 0)]);
        // Another program's fd 16 is nothing special.
        let mut b = Builder::new();
        let (other, nc) = (b.process(10, "other"), b.process(11, "nc"));
        b.pipe(100, (nc, 1), (other, 16));
        b.connection(500, nc, 3);
        let s = b.build();
        assert!(Graph::build(&s, None).stdio.iter().all(|e| e.proc != other));
    }

    #[test]
    fn the_node_budget_truncates_rather_than_forgets() {
        // A graph bigger than the budget is not built here; instead the walk is checked to flag
        // what it could not finish: a node with no successors listed past the budget counts.
        let mut walk = Walk::new(Flow::Sink);
        let set = walk.merge(vec![], true);
        assert!(set.truncated && set.entries.is_empty());
        let (a, b) = (
            Rc::new(Set { entries: vec![(0, 1), (2, 5)], truncated: false }),
            Rc::new(Set { entries: vec![(0, 1), (1, 3)], truncated: false }),
        );
        let merged = walk.merge(vec![a.clone(), b, a.clone()], false);
        assert_eq!(merged.entries, [(0, 1), (1, 3), (2, 5)]);
        assert!(
            Rc::ptr_eq(&walk.merge(vec![a.clone(), a.clone()], false), &a),
            "shared, not copied"
        );
    }
}
