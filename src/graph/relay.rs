//! Stdio relay resolution (DESIGN §3): for each process and each of fd 0, 1, 2, the network
//! sockets it ultimately reads from (fd 0) or writes to (fd 1, 2): directly, or through a pipe,
//! FIFO, pty or connected unix socket whose other end is held by a relay process, continuing
//! through relays (`cat`, `tee`, `socat`, …) breadth-first.
//!
//! The walk follows data flow: from an fd that reads, it goes to the *writers* of the object
//! (for a pipe: the fds holding its write end; for a pty slave: the master's holders; for a unix
//! socket: its peer's holders), then into the relay's own inputs; from an fd that writes, to the
//! readers and the relay's outputs. A relay that holds a network socket ends the path there.
//! Depth, fan-out and total work are bounded; a walk that hits a bound is reported as truncated,
//! never as "no link". Results are memoised per (stdio object, flow): a shell's children share its
//! stdio objects, so each object is walked once.

use super::Graph;
use crate::model::{AccessMode, Fd, FdTarget, ProcKey, SocketKey, StdioLink, Via};
use std::collections::{HashMap, HashSet, VecDeque};

/// Relays allowed between a stdio fd and the socket.
pub const MAX_RELAY_DEPTH: usize = 8;
/// Holders of one object considered before the walk is flagged truncated.
pub const MAX_FANOUT: usize = 64;
/// Objects visited by one walk before it is flagged truncated.
pub const MAX_VISITS: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Flow {
    /// Where the data read here comes from.
    Source,
    /// Where the data written here goes.
    Sink,
}

/// A relay-capable object an fd points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Object {
    Pipe(u64),
    Fifo(u64, u64),
    PtySlave(crate::model::PtyId),
    PtyMaster(crate::model::PtyId),
    Unix(u64),
}

impl Object {
    fn via(self) -> Via {
        match self {
            Object::Pipe(_) => Via::Pipe,
            Object::Fifo(..) => Via::Fifo,
            Object::PtySlave(_) | Object::PtyMaster(_) => Via::Pty,
            Object::Unix(_) => Via::Unix,
        }
    }
}

/// What a walk from one object found.
#[derive(Clone, Debug, Default)]
struct Reach {
    /// (relays nearest first, socket), shortest path per socket.
    sockets: Vec<(Vec<ProcKey>, SocketKey)>,
    truncated: bool,
}

/// All stdio links of a snapshot, plus the (process, fd) pairs whose walk was truncated.
pub(crate) fn resolve(graph: &Graph<'_>) -> (Vec<StdioLink>, Vec<(ProcKey, i32)>) {
    let mut memo: HashMap<(Object, Flow), Reach> = HashMap::new();
    let mut links = Vec::new();
    let mut truncated = Vec::new();
    for fd in graph.snapshot.fds.iter().filter(|f| (0..=2).contains(&f.num) && f.tid.is_none()) {
        let flow = if fd.num == 0 { Flow::Source } else { Flow::Sink };
        if let Some(socket) = graph.network_socket(&fd.target) {
            links.push(StdioLink {
                proc: fd.proc,
                fd: fd.num,
                via: Via::Direct,
                relays: Vec::new(),
                socket,
            });
            continue;
        }
        let Some(object) = graph.relay_object(&fd.target) else { continue };
        let reach = memo.entry((object, flow)).or_insert_with(|| walk(graph, object, flow));
        if reach.truncated {
            truncated.push((fd.proc, fd.num));
        }
        for (relays, socket) in &reach.sockets {
            links.push(StdioLink {
                proc: fd.proc,
                fd: fd.num,
                via: object.via(),
                relays: relays.clone(),
                socket: *socket,
            });
        }
    }
    (links, truncated)
}

fn walk(graph: &Graph<'_>, start: Object, flow: Flow) -> Reach {
    let mut reach = Reach::default();
    let mut found: HashSet<SocketKey> = HashSet::new();
    let mut visited: HashSet<Object> = HashSet::from([start]);
    let mut expanded: HashSet<ProcKey> = HashSet::new();
    // (object, relays so far)
    let mut queue: VecDeque<(Object, Vec<ProcKey>)> = VecDeque::from([(start, Vec::new())]);
    while let Some((object, path)) = queue.pop_front() {
        let far_ends = graph.far_ends(object, flow);
        if far_ends.len() > MAX_FANOUT {
            reach.truncated = true;
        }
        for relay in far_ends.into_iter().take(MAX_FANOUT) {
            if path.contains(&relay) || !expanded.insert(relay) {
                continue;
            }
            let mut relays = path.clone();
            relays.push(relay);
            let relay_fds = graph.fds_of(relay);
            let sockets: Vec<SocketKey> =
                relay_fds.iter().filter_map(|f| graph.network_socket(&f.target)).collect();
            if !sockets.is_empty() {
                for socket in sockets {
                    if found.insert(socket) {
                        reach.sockets.push((relays.clone(), socket));
                    }
                }
                continue;
            }
            if relays.len() >= MAX_RELAY_DEPTH {
                reach.truncated = true;
                continue;
            }
            for next in relay_fds.iter().filter(|f| carries(f, flow)) {
                let Some(next) = graph.relay_object(&next.target) else { continue };
                if visited.len() >= MAX_VISITS {
                    reach.truncated = true;
                    return reach;
                }
                if visited.insert(next) {
                    queue.push_back((next, relays.clone()));
                }
            }
        }
    }
    reach
}

/// Whether data in `flow` can pass through this fd of a relay: a relay's inputs feed what we
/// read, its outputs carry what we write.
fn carries(fd: &Fd, flow: Flow) -> bool {
    let directional = matches!(fd.target, FdTarget::Pipe { .. } | FdTarget::Fifo { .. });
    if !directional {
        return true;
    }
    match flow {
        Flow::Source => fd.mode.reads() || fd.mode == AccessMode::Unknown,
        Flow::Sink => fd.mode.writes() || fd.mode == AccessMode::Unknown,
    }
}

impl Graph<'_> {
    /// The processes at the other end of `object` for `flow` (sorted, deduplicated).
    fn far_ends(&self, object: Object, flow: Flow) -> Vec<ProcKey> {
        let wanted = |f: &Fd| match flow {
            Flow::Source => f.mode.writes(),
            Flow::Sink => f.mode.reads(),
        };
        let mut procs: Vec<ProcKey> = match object {
            Object::Pipe(inode) => {
                self.pipe_ends(inode).filter(|f| wanted(f)).map(|f| f.proc).collect()
            }
            Object::Fifo(dev, ino) => {
                self.fifo_ends(dev, ino).filter(|f| wanted(f)).map(|f| f.proc).collect()
            }
            Object::PtySlave(pty) => self.pty_masters(pty).map(|f| f.proc).collect(),
            Object::PtyMaster(pty) => self.pty_slaves(pty).map(|f| f.proc).collect(),
            Object::Unix(inode) => self.unix_peer_holders(inode),
        };
        procs.sort();
        procs.dedup();
        procs
    }

    fn relay_object(&self, target: &FdTarget) -> Option<Object> {
        match target {
            FdTarget::Pipe { inode } => Some(Object::Pipe(*inode)),
            FdTarget::Fifo { dev, ino, .. } => Some(Object::Fifo(*dev, *ino)),
            FdTarget::PtySlave { pty } => Some(Object::PtySlave(*pty)),
            FdTarget::PtyMaster { pty } => Some(Object::PtyMaster(*pty)),
            FdTarget::Socket { inode } if self.unix_peer(*inode).is_some() => {
                Some(Object::Unix(*inode))
            }
            _ => None,
        }
    }
}
