//! Sockets no process holds (the kernel's own, a connection waiting in an accept queue, a
//! socket of a process the agent cannot read) are left out of the event stream unless `[events]
//! holderless = true`: on a busy host they are churn no responder acts on. A socket that was
//! reported while held stays reported to its end (its holder closing it leaves it holderless a
//! moment before it goes), and an established connection no process holds is still said
//! (`socket_unheld`): that one is evidence.

use crate::model::{Change, Snapshot, SocketKey};
use rustc_hash::FxHashSet;

#[derive(Default)]
pub(super) struct Holderless {
    /// Report them all (`[events] holderless`).
    report_all: bool,
    /// Sockets reported while held, until their close is reported.
    reported: FxHashSet<SocketKey>,
}

impl Holderless {
    pub(super) fn new(report_all: bool) -> Self {
        Holderless { report_all, reported: FxHashSet::default() }
    }

    /// Whether `change` goes out.
    pub(super) fn wanted(&self, change: &Change, prev: Option<&Snapshot>, next: &Snapshot) -> bool {
        if self.report_all {
            return true;
        }
        let held = |s: Option<&Snapshot>, key: SocketKey| {
            s.and_then(|s| s.socket(key)).is_some_and(|s| !s.holders.is_empty())
        };
        match change {
            Change::ExistingSocket { key }
            | Change::SocketOpened { key }
            | Change::SocketStateChanged { key, .. } => {
                held(Some(next), *key) || self.reported.contains(key)
            }
            Change::SocketClosed { key, .. } => held(prev, *key) || self.reported.contains(key),
            Change::SocketHoldersChanged { .. }
            | Change::ConnectionUnheld { .. }
            | Change::ProcessExec { .. } => true,
        }
    }

    /// Records the changes that went out.
    pub(super) fn sent(&mut self, changes: &[Change]) {
        for change in changes {
            match change {
                Change::ExistingSocket { key }
                | Change::SocketOpened { key }
                | Change::SocketStateChanged { key, .. }
                | Change::SocketHoldersChanged { key, .. } => {
                    self.reported.insert(*key);
                }
                Change::SocketClosed { key, .. } => {
                    self.reported.remove(key);
                }
                Change::ConnectionUnheld { .. } | Change::ProcessExec { .. } => {}
            }
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

    #[test]
    fn a_socket_never_held_is_left_out_and_one_reported_while_held_is_followed_to_its_close() {
        let (unheld, key) = world(false);
        let (held, _) = world(true);
        let mut filter = Holderless::new(false);
        let opened = Change::SocketOpened { key };
        assert!(!filter.wanted(&opened, None, &unheld));
        assert!(filter.wanted(&opened, None, &held));
        filter.sent(&[opened]);
        let closed = Change::SocketClosed { key, first_seen_ms: 0, seen_since_baseline: false };
        assert!(filter.wanted(&closed, Some(&unheld), &unheld), "its holder let go first");
        filter.sent(std::slice::from_ref(&closed));
        assert!(!filter.wanted(&closed, Some(&unheld), &unheld), "a later one is another");
        assert!(Holderless::new(true).wanted(&Change::SocketOpened { key }, None, &unheld));
    }
}
