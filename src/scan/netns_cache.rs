//! Which foreign network namespaces are read this scan. A TCP table costs the kernel a walk of
//! the host-wide connection hash whatever the namespace holds (1.5 ms per table here), so 2000
//! idle namespaces made by a local user with `unshare -rn` cost seconds per scan if each is read
//! every time. A namespace is due a read when something says its tables may have changed:
//!
//! - a process in it holds a socket its cached tables do not list (a new connection: where a
//!   shell would be), and that was not already unlisted after the last read;
//! - it was never read;
//! - its own counters in `net/sockstat` and `net/sockstat6` (sockets in use, TCP in TIME_WAIT)
//!   moved: a socket was bound, connected, accepted or closed there.
//!
//! Those reads are made in that order of urgency, oldest first within each, within the scan's
//! budget for changes (the agent gives half its interval): what remains waits for the next scan
//! and is counted (`namespaces_deferred`), so a user churning sockets in every namespace slows
//! the reading of namespaces round-robin but never stretches a scan. Namespaces where nothing
//! moved are then read again, oldest first, within a smaller budget (a tenth of the interval):
//! state changes of a socket that stays (a connection closing) move no counter. On a host with a
//! few containers that budget reads every namespace every scan; under a flood, each in turn.

use super::procfs::{NumName, open_dir, read_record};
use super::table::NetnsTable;
use crate::model::TableRead;
use rustc_hash::{FxHashMap, FxHashSet};
use rustix::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

/// Why a namespace is read now, most urgent first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Why {
    /// A process in it holds a socket its tables do not list.
    Unlisted,
    /// Never read.
    New,
    /// Its socket counters moved.
    Counted,
    /// Nothing moved: read again only with time to spare.
    Unchanged,
}

impl Why {
    /// Whether the namespace may have changed since its tables were read.
    pub(crate) fn changed(self) -> bool {
        self != Why::Unchanged
    }
}

/// Wall time a scan may spend reading foreign namespaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NamespaceBudget {
    /// For those that may have changed.
    pub changed: Duration,
    /// For the others, counted from the same start (so within `changed` when smaller).
    pub unchanged: Duration,
}

struct Entry {
    table: NetnsTable,
    read: TableRead,
    ports: Option<(u16, u16)>,
    counters: Option<Vec<u64>>,
    read_at: Instant,
    /// Sockets its processes held that the last read did not list (netlink-less families,
    /// sockets of other namespaces): known, so they do not ask for a read every scan.
    unlisted: FxHashSet<u64>,
}

/// The tables of foreign namespaces as last read, across scans.
#[derive(Default)]
pub(crate) struct NamespaceCache {
    entries: FxHashMap<u64, Entry>,
}

/// A namespace due a read, and why.
#[derive(Debug)]
pub(crate) struct Due {
    pub ns: u64,
    pub why: Why,
    /// Its counters now, stored with the tables once read.
    pub counters: Option<Vec<u64>>,
}

impl NamespaceCache {
    /// Every namespace of `foreign`, most urgent and then oldest first; `held` lists the socket
    /// inodes its processes hold.
    pub(crate) fn due<'a>(
        &self,
        proc_dir: BorrowedFd<'_>,
        foreign: impl Iterator<Item = (u64, Option<i32>, &'a [u64])>,
        buf: &mut Vec<u8>,
    ) -> Vec<Due> {
        let mut due: Vec<(Due, Option<Instant>)> = Vec::new();
        for (ns, member, held) in foreign {
            let counters = member.and_then(|pid| counters(proc_dir, pid, buf));
            let why = match self.entries.get(&ns) {
                None => Some(Why::New),
                Some(e) if held.iter().any(|i| !e.table.lists(*i) && !e.unlisted.contains(i)) => {
                    Some(Why::Unlisted)
                }
                // No counters to compare (no member process): read every scan, as before.
                Some(e) if counters.is_none() || e.counters != counters => Some(Why::Counted),
                Some(_) => Some(Why::Unchanged),
            };
            if let Some(why) = why {
                let read_at = self.entries.get(&ns).map(|e| e.read_at);
                due.push((Due { ns, why, counters }, read_at));
            }
        }
        due.sort_by_key(|(d, read_at)| (d.why, *read_at));
        due.into_iter().map(|(d, _)| d).collect()
    }

    /// Keeps what a read found.
    pub(crate) fn store(&mut self, due: Due, read: &super::netns::Read, held: &[u64]) {
        let (table, read, ports) = read;
        let unlisted = held.iter().copied().filter(|i| !table.lists(*i)).collect();
        let entry = Entry {
            table: table.clone(),
            read: *read,
            ports: *ports,
            counters: due.counters,
            read_at: Instant::now(),
            unlisted,
        };
        self.entries.insert(due.ns, entry);
    }

    /// The tables last read of `ns`, if it was ever read.
    pub(crate) fn reuse(&self, ns: u64) -> Option<super::netns::Read> {
        self.entries.get(&ns).map(|e| (e.table.clone(), e.read, e.ports))
    }

    /// Forgets namespaces that are gone.
    pub(crate) fn retain(&mut self, live: impl Fn(u64) -> bool) {
        self.entries.retain(|ns, _| live(*ns));
    }
}

/// The namespace's own counters from `net/sockstat` and `net/sockstat6` as seen through `pid`:
/// sockets in use per protocol and TCP TIME_WAIT. (`alloc`, `orphan` and `mem` are host-wide
/// and move with every other namespace: left out.)
fn counters(proc_dir: BorrowedFd<'_>, pid: i32, buf: &mut Vec<u8>) -> Option<Vec<u64>> {
    let path = NumName::new("", pid as u64);
    let net = open_dir(proc_dir, path.as_str()).and_then(|d| open_dir(d.as_fd(), "net")).ok()?;
    let mut values = Vec::new();
    for file in ["sockstat", "sockstat6"] {
        read_record(net.as_fd(), file, buf, 4096).ok()?;
        values.extend(per_namespace_counts(buf));
    }
    Some(values)
}

/// The values after `used`, `inuse` and `tw` in sockstat text.
fn per_namespace_counts(text: &[u8]) -> impl Iterator<Item = u64> + '_ {
    let mut words = text.split(|b| b.is_ascii_whitespace()).filter(|w| !w.is_empty()).peekable();
    std::iter::from_fn(move || {
        while let Some(word) = words.next() {
            if matches!(word, b"used" | b"inuse" | b"tw") {
                let value = words.next()?;
                return Some(std::str::from_utf8(value).ok()?.parse().unwrap_or(u64::MAX));
            }
        }
        None
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_namespaces_own_counters_are_compared() {
        let text = b"sockets: used 12\nTCP: inuse 3 orphan 9 tw 2 alloc 400 mem 17\n\
                     UDP: inuse 1 mem 4\nUDPLITE: inuse 0\nRAW: inuse 0\nFRAG: inuse 0 memory 0\n";
        assert_eq!(per_namespace_counts(text).collect::<Vec<_>>(), [12, 3, 2, 1, 0, 0, 0]);
        let host_wide_moved = b"sockets: used 12\nTCP: inuse 3 orphan 1 tw 2 alloc 9000 mem 1\n\
                     UDP: inuse 1 mem 40\nUDPLITE: inuse 0\nRAW: inuse 0\nFRAG: inuse 0 memory 0\n";
        assert!(per_namespace_counts(text).eq(per_namespace_counts(host_wide_moved)));
        assert_eq!(per_namespace_counts(b"TCP: inuse x").collect::<Vec<_>>(), [u64::MAX]);
    }

    #[test]
    fn urgency_orders_unlisted_sockets_first_and_oldest_first_within() {
        let mut order = [Why::Unchanged, Why::Counted, Why::New, Why::Unlisted];
        order.sort();
        assert_eq!(order, [Why::Unlisted, Why::New, Why::Counted, Why::Unchanged]);
        assert!(order.iter().filter(|w| w.changed()).count() == 3);
    }
}
