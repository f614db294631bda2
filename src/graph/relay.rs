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
//! never as "no link". Results are kept once per (stdio object, flow) and shared by reference: a
//! shell's children share its stdio objects, and a thousand workers can share one stdout pipe, so
//! output stays proportional to processes plus routes, never their product.

use super::Graph;
use crate::model::{
    AccessMode, Fd, FdTarget, ProcKey, Route, SocketKey, StdioEnd, StdioReach, Via,
};
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use std::collections::VecDeque;

/// Relays allowed between a stdio fd and the socket.
pub const MAX_RELAY_DEPTH: usize = 8;
/// Holders of one object considered before the walk is flagged truncated.
pub const MAX_FANOUT: usize = 64;
/// Objects visited by one walk before it is flagged truncated.
pub const MAX_VISITS: usize = 4096;
/// Routes one walk records before it is flagged truncated (a relay holding thousands of sockets
/// is a server, and listing all of them helps no one).
pub const MAX_ROUTES: usize = 64;

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

/// Every process's stdio ends, and the shared reaches they point at.
pub(crate) fn resolve(graph: &Graph<'_>) -> (Vec<StdioEnd>, Vec<StdioReach>) {
    let mut memo: HashMap<(Object, Flow), usize> = HashMap::default();
    let mut reaches = Vec::new();
    let mut ends = Vec::new();
    for fd in graph.snapshot.fds.iter().filter(|f| (0..=2).contains(&f.num) && f.tid.is_none()) {
        if let Some(socket) = graph.network_socket(&fd.target) {
            let (proc, fd, via) = (fd.proc, fd.num, Via::Direct);
            ends.push(StdioEnd { proc, fd, via, socket: Some(socket), reach: None });
            continue;
        }
        let Some(object) = graph.relay_object(&fd.target) else { continue };
        let flow = if fd.num == 0 { Flow::Source } else { Flow::Sink };
        let index = *memo.entry((object, flow)).or_insert_with(|| {
            reaches.push(walk(graph, object, flow));
            reaches.len() - 1
        });
        if !reaches[index].routes.is_empty() || reaches[index].truncated {
            let (proc, fd, via) = (fd.proc, fd.num, object.via());
            ends.push(StdioEnd { proc, fd, via, socket: None, reach: Some(index) });
        }
    }
    (ends, reaches)
}

fn walk(graph: &Graph<'_>, start: Object, flow: Flow) -> StdioReach {
    let mut reach = StdioReach::default();
    let mut found: HashSet<SocketKey> = HashSet::default();
    // Visited by channel, not by end: a relay never feeds a pty's or a socketpair's data back
    // into the same pty or pair. Without this, a terminal's master holder (sshd, tmux, a
    // terminal emulator) would seem to carry the output of a network client run in the terminal
    // (`nc`, `ssh`, `curl`) into the input of the shell on the same terminal.
    let mut visited: HashSet<Object> = HashSet::from_iter([graph.channel(start)]);
    let mut expanded: HashSet<ProcKey> = HashSet::default();
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
                    if reach.routes.len() >= MAX_ROUTES {
                        reach.truncated = true;
                        return reach;
                    }
                    if found.insert(socket) {
                        reach.routes.push(Route { relays: relays.clone(), socket });
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
                if visited.insert(graph.channel(next)) {
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

    /// The channel an object is an end of: both ends of a pty, or of a unix socket pair, are one
    /// channel.
    fn channel(&self, object: Object) -> Object {
        match object {
            Object::PtyMaster(pty) => Object::PtySlave(pty),
            Object::Unix(inode) => {
                let peer = self.socket(inode).and_then(|s| s.unix.as_ref()).and_then(|u| u.peer);
                Object::Unix(peer.map_or(inode, |p| p.min(inode)))
            }
            other => other,
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixture::Builder;

    fn pids(relays: &[ProcKey]) -> Vec<i32> {
        relays.iter().map(|r| r.pid).collect()
    }

    fn routes_of(
        snapshot: &crate::model::Snapshot,
        pid: i32,
        fd: i32,
    ) -> (Vec<(Vec<i32>, u64)>, bool) {
        let graph = Graph::build(snapshot, None);
        let end = graph.stdio.iter().find(|e| e.proc.pid == pid && e.fd == fd);
        match end {
            None => (Vec::new(), false),
            Some(end) => (
                graph.links(end).iter().map(|l| (pids(&l.relays), l.socket.inode)).collect(),
                graph.truncated(end),
            ),
        }
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
        let pty = crate::model::PtyId { devpts: Some(3), index: 0 };
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
        let pty = crate::model::PtyId { devpts: Some(3), index: 0 };
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
    fn a_pty_in_another_devpts_instance_is_another_pty() {
        let mut b = Builder::new();
        let (sh, relay) = (b.process(10, "sh"), b.process(12, "relay"));
        b.fd(
            sh,
            0,
            AccessMode::ReadWrite,
            FdTarget::PtySlave { pty: crate::model::PtyId { devpts: Some(3), index: 0 } },
        );
        b.fd(
            relay,
            5,
            AccessMode::ReadWrite,
            FdTarget::PtyMaster { pty: crate::model::PtyId { devpts: Some(4), index: 0 } },
        );
        b.connection(500, relay, 3);
        assert_eq!(routes_of(&b.build(), 10, 0), (vec![], false));
    }

    #[test]
    fn a_chain_longer_than_the_depth_bound_is_truncated_not_absent() {
        let mut b = Builder::new();
        let sh = b.process(10, "sh");
        let mut reader = (sh, 0);
        for i in 0..(MAX_RELAY_DEPTH as i32 + 2) {
            let cat = b.process(100 + i, "cat");
            b.pipe(1000 + i as u64, (cat, 1), reader);
            reader = (cat, 0);
        }
        let s = b.build();
        assert_eq!(routes_of(&s, 10, 0), (vec![], true));
    }

    #[test]
    fn fan_out_and_route_bounds_are_flagged() {
        let mut b = Builder::new();
        let sh = b.process(10, "sh");
        for i in 0..(MAX_FANOUT as i32 + 1) {
            let w = b.process(100 + i, "worker");
            b.fd(w, 1, AccessMode::Write, FdTarget::Pipe { inode: 7 });
        }
        b.fd(sh, 0, AccessMode::Read, FdTarget::Pipe { inode: 7 });
        assert!(routes_of(&b.build(), 10, 0).1, "too many writers");

        let mut b = Builder::new();
        let (sh, server) = (b.process(10, "sh"), b.process(11, "server"));
        b.pipe(7, (server, 1), (sh, 0));
        for i in 0..(MAX_ROUTES as i32 + 1) {
            b.connection(500 + i as u64, server, 10 + i);
        }
        let (routes, truncated) = routes_of(&b.build(), 10, 0);
        assert_eq!((routes.len(), truncated), (MAX_ROUTES, true));
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
}
