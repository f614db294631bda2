//! Sockets no process holds (the kernel's own, a connection waiting in an accept queue, a
//! socket of a process the agent cannot read) are left out of the event stream unless `[events]
//! holderless = true`: on a busy host they are churn no responder acts on. A socket that was
//! reported while held stays reported to its end (its holder closing it leaves it holderless a
//! moment before it goes), and an established connection no process holds is still said
//! (`socket_unheld`): that one is evidence.
//!
//! A socket left out while unheld and held by a later scan (in flight over SCM_RIGHTS, or made
//! between a scan's fd walk and its table reads) is news to the stream then: it goes out as
//! `socket_opened`, with its holders, not as a change to something the stream never heard of.

use crate::model::{Change, Snapshot, SocketKey};
use rustc_hash::FxHashSet;

#[derive(Default)]
pub(super) struct Holderless {
    /// Report them all (`[events] holderless`).
    report_all: bool,
    /// Sockets reported while held, until their close is reported.
    reported: FxHashSet<SocketKey>,
}

/// What a reported change does to the set of reported sockets: `(key, still open)`.
pub(super) type Mark = (SocketKey, bool);

impl Holderless {
    pub(super) fn new(report_all: bool) -> Self {
        Holderless { report_all, reported: FxHashSet::default() }
    }

    /// The changes that go out, a socket's first held sighting as its opening.
    pub(super) fn select<'c>(
        &self,
        changes: impl Iterator<Item = &'c Change>,
        prev: Option<&Snapshot>,
        next: &Snapshot,
    ) -> Vec<Change> {
        if self.report_all {
            return changes.cloned().collect();
        }
        let held = |s: Option<&Snapshot>, key: SocketKey| {
            s.and_then(|s| s.socket(key)).is_some_and(|s| !s.holders.is_empty())
        };
        // Left out last time for want of a holder, held now.
        let first_held = |key: SocketKey| {
            !self.reported.contains(&key)
                && held(Some(next), key)
                && prev.and_then(|p| p.socket(key)).is_some_and(|s| s.holders.is_empty())
        };
        let mut opened: FxHashSet<SocketKey> = FxHashSet::default();
        let mut selected = Vec::new();
        for change in changes {
            match change {
                Change::SocketHoldersChanged { key, .. }
                | Change::SocketStateChanged { key, .. }
                    if first_held(*key) =>
                {
                    if opened.insert(*key) {
                        selected.push(Change::SocketOpened { key: *key });
                    }
                }
                Change::ExistingSocket { key }
                | Change::SocketOpened { key }
                | Change::SocketStateChanged { key, .. } => {
                    if held(Some(next), *key) || self.reported.contains(key) {
                        selected.push(change.clone());
                    }
                }
                Change::SocketClosed { key, .. } => {
                    if held(prev, *key) || self.reported.contains(key) {
                        selected.push(change.clone());
                    }
                }
                Change::SocketHoldersChanged { .. }
                | Change::ConnectionUnheld { .. }
                | Change::ProcessExec { .. } => selected.push(change.clone()),
            }
        }
        selected
    }

    /// What the selected `changes` will do once they went out (they may wait for a later scan).
    pub(super) fn marks(changes: &[Change]) -> Vec<Mark> {
        changes
            .iter()
            .filter_map(|change| match change {
                Change::ExistingSocket { key }
                | Change::SocketOpened { key }
                | Change::SocketStateChanged { key, .. }
                | Change::SocketHoldersChanged { key, .. } => Some((*key, true)),
                Change::SocketClosed { key, .. } => Some((*key, false)),
                Change::ConnectionUnheld { .. } | Change::ProcessExec { .. } => None,
            })
            .collect()
    }

    /// Records the changes that went out.
    pub(super) fn sent(&mut self, marks: Vec<Mark>) {
        for (key, open) in marks {
            match open {
                true => self.reported.insert(key),
                false => self.reported.remove(&key),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixture::Builder;
    use crate::model::{Protocol, SocketState};

    fn world(held: bool) -> (Snapshot, SocketKey) {
        let mut b = Builder::new();
        let shell = b.process(10, "bash");
        let key = match held {
            true => b.connection(7, shell, 3),
            false => {
                b.inet(7, Protocol::Tcp, "127.0.0.1:80", "127.0.0.1:40000", SocketState::SynRecv)
            }
        };
        (b.build(), key)
    }

    fn select(
        filter: &Holderless,
        change: Change,
        prev: Option<&Snapshot>,
        next: &Snapshot,
    ) -> Vec<Change> {
        filter.select(std::iter::once(&change), prev, next)
    }

    #[test]
    fn a_socket_never_held_is_left_out_and_one_reported_while_held_is_followed_to_its_close() {
        let (unheld, key) = world(false);
        let (held, _) = world(true);
        let mut filter = Holderless::new(false);
        let opened = Change::SocketOpened { key };
        assert!(select(&filter, opened.clone(), None, &unheld).is_empty());
        let out = select(&filter, opened, None, &held);
        assert_eq!(out.len(), 1);
        filter.sent(Holderless::marks(&out));
        let closed = Change::SocketClosed { key, first_seen_ms: 0, seen_since_baseline: false };
        let out = select(&filter, closed.clone(), Some(&unheld), &unheld);
        assert_eq!(out.len(), 1, "its holder let go first");
        filter.sent(Holderless::marks(&out));
        assert!(
            select(&filter, closed, Some(&unheld), &unheld).is_empty(),
            "a later one is another"
        );
        let all = Holderless::new(true);
        assert_eq!(select(&all, Change::SocketOpened { key }, None, &unheld).len(), 1);
    }

    #[test]
    fn a_socket_left_out_unheld_and_then_held_goes_out_as_opened_once() {
        let (unheld, key) = world(false);
        let (held, _) = world(true);
        let mut filter = Holderless::new(false);
        // Listed, held by nobody (in flight over SCM_RIGHTS): left out, and nothing recorded.
        let out = select(&filter, Change::SocketOpened { key }, None, &unheld);
        filter.sent(Holderless::marks(&out));
        // Received before the next scan, its state moved too: one opening goes out.
        let holder = held.sockets[0].holders[0];
        let moved = [
            Change::SocketStateChanged { key, from: SocketState::SynRecv },
            Change::SocketHoldersChanged { key, added: vec![holder], removed: vec![] },
        ];
        let out = filter.select(moved.iter(), Some(&unheld), &held);
        assert!(matches!(out[..], [Change::SocketOpened { key: k }] if k == key), "{out:?}");
        filter.sent(Holderless::marks(&out));
        // Known from then on: its later changes are changes.
        let out = filter.select(moved[1..].iter(), Some(&unheld), &held);
        assert!(matches!(out[..], [Change::SocketHoldersChanged { .. }]), "{out:?}");
    }

    #[test]
    fn a_socket_held_since_before_the_first_report_keeps_its_holders_changes() {
        // With no baseline, a socket held at the first scan was never reported; a holder more
        // is a change to it, not its opening.
        let (held, key) = world(true);
        let filter = Holderless::new(false);
        let holder = held.sockets[0].holders[0];
        let change = Change::SocketHoldersChanged { key, added: vec![holder], removed: vec![] };
        let out = select(&filter, change, Some(&held), &held);
        assert!(matches!(out[..], [Change::SocketHoldersChanged { .. }]), "{out:?}");
    }
}
