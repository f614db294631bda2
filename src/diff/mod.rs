//! Pure snapshot-to-snapshot changes. Sockets are keyed by (netns, inode) and processes by
//! (pid, start ticks); both lists are sorted by key, so one merge walk finds every change.
//! `Differ` adds the little state a stream of snapshots needs: when each socket was first seen
//! (for durations), and the baseline on the first scan, which reports what is already open as
//! state rather than flooding sinks with "opened".

use crate::model::{Baseline, Change, Holder, Snapshot, Socket, SocketKey};
use rustc_hash::FxHashMap as HashMap;
use std::cmp::Ordering;

/// Every change from `prev` to `next`, sockets first (in key order), then exec'd processes.
/// `first_seen` gives each closed socket's first sighting (`next.taken_at_ms` is used when absent).
pub fn diff(
    prev: &Snapshot,
    next: &Snapshot,
    first_seen: &HashMap<SocketKey, (u64, bool)>,
) -> Vec<Change> {
    let mut changes = Vec::new();
    let (mut a, mut b) = (prev.sockets.iter().peekable(), next.sockets.iter().peekable());
    loop {
        let order = match (a.peek(), b.peek()) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some(x), Some(y)) => x.key.cmp(&y.key),
        };
        match order {
            Ordering::Less => {
                let gone = a.next().expect("peeked");
                let (first_seen_ms, seen_since_baseline) =
                    first_seen.get(&gone.key).copied().unwrap_or((prev.taken_at_ms, false));
                changes.push(Change::SocketClosed {
                    key: gone.key,
                    first_seen_ms,
                    seen_since_baseline,
                });
            }
            Ordering::Greater => {
                changes.push(Change::SocketOpened { key: b.next().expect("peeked").key });
            }
            Ordering::Equal => {
                let (before, after) = (a.next().expect("peeked"), b.next().expect("peeked"));
                if before.state != after.state {
                    changes.push(Change::SocketStateChanged { key: after.key, from: before.state });
                }
                let (added, removed) = holder_changes(&before.holders, &after.holders);
                if !added.is_empty() || !removed.is_empty() {
                    changes.push(Change::SocketHoldersChanged { key: after.key, added, removed });
                }
                if unheld_connection(before) && unheld_connection(after) {
                    changes.push(Change::ConnectionUnheld { key: after.key });
                }
            }
        }
    }
    carry_resolved(prev, next, &mut changes);
    let before: HashMap<_, _> = prev.processes.iter().map(|p| (p.key, p)).collect();
    for process in &next.processes {
        if let Some(old) = before.get(&process.key) {
            let identity =
                |p: &crate::model::Process| p.exe.as_ref().map(|e| (e.dev, e.ino, e.path.clone()));
            if identity(old) != identity(process) && process.exe.is_some() {
                let previous_exe = old.exe.as_ref().map(|e| e.path.clone());
                changes.push(Change::ProcessExec { proc: process.key, previous_exe });
            }
        }
    }
    changes
}

/// A socket no table listed (netns 0: made but not yet bound, or of a namespace not read) that
/// a table lists now is the same socket, not one closed and another opened: a SIEM would
/// otherwise be told of a close that never happened. Its state change (and holder change) is
/// said under its resolved key instead.
fn carry_resolved(prev: &Snapshot, next: &Snapshot, changes: &mut Vec<Change>) {
    let unresolved_gone: HashMap<u64, usize> = changes
        .iter()
        .enumerate()
        .filter_map(|(at, c)| match c {
            Change::SocketClosed { key, .. } if key.netns == 0 => Some((key.inode, at)),
            _ => None,
        })
        .collect();
    if unresolved_gone.is_empty() {
        return;
    }
    let mut carried: Vec<usize> = Vec::new();
    let mut extra: Vec<Change> = Vec::new();
    for change in changes.iter_mut() {
        let Change::SocketOpened { key } = *change else { continue };
        let Some(&closed_at) = unresolved_gone.get(&key.inode).filter(|_| key.netns != 0) else {
            continue;
        };
        let old = SocketKey { netns: 0, inode: key.inode };
        let (Some(before), Some(after)) = (prev.socket(old), next.socket(key)) else { continue };
        *change = Change::SocketStateChanged { key, from: before.state };
        let (added, removed) = holder_changes(&before.holders, &after.holders);
        if !added.is_empty() || !removed.is_empty() {
            extra.push(Change::SocketHoldersChanged { key, added, removed });
        }
        carried.push(closed_at);
    }
    carried.sort_unstable();
    for at in carried.into_iter().rev() {
        changes.remove(at);
    }
    changes.append(&mut extra);
}

/// An established TCP connection no fd table showed. A connection its last holder closed is past
/// ESTABLISHED (the close sends a FIN), and one waiting in a listener's accept queue is
/// inbound, which the caller leaves out by direction.
fn unheld_connection(socket: &crate::model::Socket) -> bool {
    socket.family.is_inet()
        && socket.protocol == crate::model::Protocol::Tcp
        && socket.state == crate::model::SocketState::Established
        && socket.holders.is_empty()
}

/// (added, removed) between two sorted holder lists.
fn holder_changes(before: &[Holder], after: &[Holder]) -> (Vec<Holder>, Vec<Holder>) {
    let added = after.iter().filter(|h| before.binary_search(h).is_err()).copied().collect();
    let removed = before.iter().filter(|h| after.binary_search(h).is_err()).copied().collect();
    (added, removed)
}

/// What a summary baseline lists one by one: what the host exposes (internet listeners) and
/// what reads or writes raw traffic (raw IP and packet sockets). Connections, unix sockets and
/// the rest are counted in the summary only.
pub fn of_interest(socket: &Socket) -> bool {
    use crate::model::{Protocol, SocketState};
    let listener = socket.family.is_inet() && socket.state == SocketState::Listen;
    listener
        || matches!(socket.protocol, Protocol::Raw | Protocol::PacketRaw | Protocol::PacketDgram)
}

/// Turns a stream of snapshots into changes.
pub struct Differ {
    baseline: Baseline,
    previous: Option<std::sync::Arc<Snapshot>>,
    /// First sighting of each live socket: (ms since the epoch, seen in the baseline scan).
    first_seen: HashMap<SocketKey, (u64, bool)>,
    /// Unheld connections already reported, until they are held again or gone.
    unheld_reported: rustc_hash::FxHashSet<SocketKey>,
}

impl Differ {
    /// `baseline`: which sockets open at the first scan are reported as `ExistingSocket`.
    pub fn new(baseline: Baseline) -> Self {
        Differ {
            baseline,
            previous: None,
            first_seen: HashMap::default(),
            unheld_reported: Default::default(),
        }
    }

    /// The changes `next` brings relative to the accepted previous snapshot (the baseline when
    /// there is none). Nothing is recorded until `accept`: a caller that cannot pass the changes
    /// on leaves the previous snapshot in place, and the next diff covers both intervals.
    pub fn changes(&self, next: &Snapshot) -> Vec<Change> {
        match &self.previous {
            None => {
                let wanted = |s: &&Socket| match self.baseline {
                    Baseline::Full => true,
                    Baseline::Summary => of_interest(s),
                    Baseline::Off => false,
                };
                let existing = next.sockets.iter().filter(wanted);
                existing.map(|s| Change::ExistingSocket { key: s.key }).collect()
            }
            Some(prev) => {
                let mut changes = diff(prev, next, &self.first_seen);
                changes.retain(|c| match c {
                    Change::ConnectionUnheld { key } => !self.unheld_reported.contains(key),
                    _ => true,
                });
                changes
            }
        }
    }

    /// Makes `next` the previous snapshot, recording first sightings from its `changes`; returns
    /// the snapshot it replaces.
    pub fn accept(
        &mut self,
        next: std::sync::Arc<Snapshot>,
        changes: &[Change],
    ) -> Option<std::sync::Arc<Snapshot>> {
        if self.previous.is_none() {
            for socket in &next.sockets {
                self.first_seen.insert(socket.key, (next.taken_at_ms, true));
            }
        }
        let still_unheld = |key: &SocketKey| {
            next.sockets
                .binary_search_by_key(key, |s| s.key)
                .is_ok_and(|at| unheld_connection(&next.sockets[at]))
        };
        self.unheld_reported.retain(|key| still_unheld(key));
        for change in changes {
            match change {
                Change::ConnectionUnheld { key } => {
                    self.unheld_reported.insert(*key);
                }
                Change::SocketOpened { key } => {
                    self.first_seen.insert(*key, (next.taken_at_ms, false));
                }
                // Resolved (see `carry_resolved`): first seen when it was seen unresolved.
                Change::SocketStateChanged { key, .. } if !self.first_seen.contains_key(key) => {
                    let unresolved = SocketKey { netns: 0, inode: key.inode };
                    if let Some(seen) = self.first_seen.remove(&unresolved) {
                        self.first_seen.insert(*key, seen);
                    }
                }
                Change::SocketClosed { key, .. } => {
                    self.first_seen.remove(key);
                }
                _ => {}
            }
        }
        self.previous.replace(next)
    }

    /// `changes` then `accept`: the changes `next` brings and the snapshot they were computed
    /// against (`None` for the first). Closed sockets are described by that previous snapshot.
    pub fn push(
        &mut self,
        next: std::sync::Arc<Snapshot>,
    ) -> (Vec<Change>, Option<std::sync::Arc<Snapshot>>) {
        let changes = self.changes(&next);
        let previous = self.accept(next, &changes);
        (changes, previous)
    }

    /// The accepted previous snapshot.
    pub fn previous(&self) -> Option<&std::sync::Arc<Snapshot>> {
        self.previous.as_ref()
    }

    /// When a live socket was first seen, and whether that was in the baseline scan.
    pub fn first_seen(&self, key: &SocketKey) -> Option<(u64, bool)> {
        self.first_seen.get(key).copied()
    }
}

#[cfg(test)]
mod tests;
