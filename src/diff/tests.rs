use super::*;
use crate::model::{Baseline, Family, ProcKey, Protocol, Socket, SocketState, TableSource};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::sync::Arc;

fn socket(inode: u64, state: SocketState, holders: &[(i32, i32)]) -> Socket {
    socket_in(1, inode, state, holders)
}

fn socket_in(netns: u64, inode: u64, state: SocketState, holders: &[(i32, i32)]) -> Socket {
    let key = SocketKey { netns, inode };
    let mut s = Socket::new(key, Family::Inet, Protocol::Tcp, state, TableSource::SockDiag);
    s.holders = holders
        .iter()
        .map(|&(pid, fd)| Holder {
            proc: ProcKey { pid, start_ticks: 1 },
            tid: None,
            fd,
            io_uring_slot: None,
        })
        .collect();
    s.holders.sort();
    s
}

fn snapshot(at: u64, mut sockets: Vec<Socket>) -> Snapshot {
    sockets.sort_by_key(|s| s.key);
    Snapshot { taken_at_ms: at, sockets, ..Snapshot::default() }
}

#[test]
fn opened_closed_state_and_holders() {
    use SocketState::*;
    let prev = snapshot(
        1000,
        vec![
            socket(1, SynSent, &[(10, 3)]),
            socket(2, Established, &[(10, 4)]),
            socket(3, Listen, &[(11, 3)]),
        ],
    );
    let next = snapshot(
        2000,
        vec![
            socket(1, Established, &[(10, 3)]),
            socket(3, Listen, &[(11, 3), (12, 3)]),
            socket(4, Established, &[(12, 4)]),
        ],
    );
    let key = |inode| SocketKey { netns: 1, inode };
    let first_seen = HashMap::from_iter([(key(2), (500, true))]);
    let changes = diff(&prev, &next, &first_seen);
    assert_eq!(
        changes,
        vec![
            Change::SocketStateChanged { key: key(1), from: SynSent },
            Change::SocketClosed { key: key(2), first_seen_ms: 500, seen_since_baseline: true },
            Change::SocketHoldersChanged {
                key: key(3),
                added: vec![Holder {
                    proc: ProcKey { pid: 12, start_ticks: 1 },
                    tid: None,
                    fd: 3,
                    io_uring_slot: None
                }],
                removed: vec![],
            },
            Change::SocketOpened { key: key(4) },
        ]
    );
}

#[test]
fn the_first_snapshot_is_a_baseline_not_a_flood() {
    let first = Arc::new(snapshot(1000, vec![socket(1, SocketState::Listen, &[(10, 3)])]));
    let mut differ = Differ::new(Baseline::Full);
    let (changes, previous) = differ.push(first.clone());
    assert!(previous.is_none());
    assert_eq!(changes, vec![Change::ExistingSocket { key: SocketKey { netns: 1, inode: 1 } }]);
    assert!(Differ::new(Baseline::Off).push(first).0.is_empty());

    let second = Arc::new(snapshot(3000, vec![]));
    let (changes, previous) = differ.push(second);
    assert_eq!(previous.unwrap().taken_at_ms, 1000);
    assert_eq!(
        changes,
        vec![Change::SocketClosed {
            key: SocketKey { netns: 1, inode: 1 },
            first_seen_ms: 1000,
            seen_since_baseline: true,
        }]
    );
}

#[test]
fn a_summary_baseline_lists_listeners_and_raw_sockets_and_counts_the_rest() {
    use SocketState::*;
    let mut raw = socket(3, Unknown, &[(12, 3)]);
    raw.protocol = Protocol::Raw;
    let mut unix_listener = socket(4, Listen, &[(13, 3)]);
    unix_listener.family = Family::Unix;
    let first = snapshot(
        1000,
        vec![socket(1, Listen, &[(10, 3)]), socket(2, Established, &[(11, 3)]), raw, unix_listener],
    );
    let inodes: Vec<u64> = Differ::new(Baseline::Summary)
        .changes(&first)
        .iter()
        .map(|c| match c {
            Change::ExistingSocket { key } => key.inode,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(inodes, [1, 3]);
}

#[test]
fn a_snapshot_not_accepted_is_covered_by_the_next_diff() {
    use SocketState::*;
    let mut differ = Differ::new(Baseline::Off);
    differ.push(Arc::new(snapshot(1000, vec![socket(1, Established, &[(10, 3)])])));
    // Scan 2 opens socket 2 and closes socket 1, but its changes could not be passed on.
    let second = snapshot(2000, vec![socket(2, Established, &[(10, 4)])]);
    assert_eq!(differ.changes(&second).len(), 2);
    // Scan 3 (socket 2 still open, socket 3 new) is diffed against scan 1: nothing is lost.
    let third = Arc::new(snapshot(
        3000,
        vec![socket(2, Established, &[(10, 4)]), socket(3, Listen, &[(10, 5)])],
    ));
    let changes = differ.changes(&third);
    let key = |inode| SocketKey { netns: 1, inode };
    assert_eq!(
        changes,
        vec![
            Change::SocketClosed { key: key(1), first_seen_ms: 1000, seen_since_baseline: true },
            Change::SocketOpened { key: key(2) },
            Change::SocketOpened { key: key(3) },
        ]
    );
    let previous = differ.accept(third, &changes);
    assert_eq!(previous.unwrap().taken_at_ms, 1000);
    assert_eq!(differ.first_seen(&key(2)), Some((3000, false)));
    assert_eq!(differ.first_seen(&key(1)), None);
}

#[test]
fn exec_under_the_same_key_is_a_change() {
    use crate::model::RawText;
    use crate::model::fixture::Builder;
    let with_exe = |path: &str, ino: u64| {
        let mut b = Builder::new();
        b.process(7, "x");
        let mut s = b.build();
        s.processes[0].exe = Some(crate::model::fixture::exe(path, ino));
        s
    };
    let (prev, next) = (with_exe("/usr/bin/bash", 5), with_exe("/usr/bin/sleep", 6));
    assert_eq!(
        diff(&prev, &next, &HashMap::default()),
        vec![Change::ProcessExec {
            proc: next.processes[0].key,
            previous_exe: Some(RawText::from("/usr/bin/bash")),
        }]
    );
    assert!(diff(&next, &next, &HashMap::default()).is_empty());
}

#[test]
fn a_connection_unheld_for_two_snapshots_is_reported_once_until_held_again() {
    use SocketState::*;
    let key = SocketKey { netns: 1, inode: 7 };
    let unheld = |at| snapshot(at, vec![socket(7, Established, &[]), socket(8, Listen, &[])]);
    let held = |at| snapshot(at, vec![socket(7, Established, &[(10, 3)])]);
    let unheld_changes = |changes: &[Change]| {
        changes
            .iter()
            .filter(|c| matches!(c, Change::ConnectionUnheld { .. }))
            .cloned()
            .collect::<Vec<_>>()
    };
    let mut differ = Differ::new(Baseline::Off);
    assert!(unheld_changes(&differ.push(Arc::new(unheld(1))).0).is_empty(), "one scan is not two");
    assert_eq!(
        unheld_changes(&differ.push(Arc::new(unheld(2))).0),
        [Change::ConnectionUnheld { key }]
    );
    assert!(unheld_changes(&differ.push(Arc::new(unheld(3))).0).is_empty(), "reported once");
    assert!(unheld_changes(&differ.push(Arc::new(held(4))).0).is_empty());
    assert!(unheld_changes(&differ.push(Arc::new(unheld(5))).0).is_empty());
    assert_eq!(
        unheld_changes(&differ.push(Arc::new(unheld(6))).0),
        [Change::ConnectionUnheld { key }],
        "parked again after it was held"
    );
    // A connection winding down after its holder closed it is not parked.
    let closing = |at| snapshot(at, vec![socket(9, FinWait1, &[])]);
    let changes = diff(&closing(1), &closing(2), &HashMap::default());
    assert!(unheld_changes(&changes).is_empty());
}

#[test]
fn a_socket_a_table_lists_once_bound_is_the_socket_seen_unresolved() {
    use SocketState::*;
    let mut unresolved = socket_in(0, 7, Unknown, &[(10, 3)]);
    unresolved.source = TableSource::Unresolved;
    let mut differ = Differ::new(Baseline::Off);
    differ.push(Arc::new(snapshot(1000, vec![])));
    let (changes, _) = differ.push(Arc::new(snapshot(2000, vec![unresolved])));
    assert_eq!(changes, vec![Change::SocketOpened { key: SocketKey { netns: 0, inode: 7 } }]);
    let listed = SocketKey { netns: 1, inode: 7 };
    let (changes, _) =
        differ.push(Arc::new(snapshot(3000, vec![socket(7, Listen, &[(10, 3), (11, 3)])])));
    let forked =
        Holder { proc: ProcKey { pid: 11, start_ticks: 1 }, tid: None, fd: 3, io_uring_slot: None };
    assert_eq!(
        changes,
        vec![
            Change::SocketStateChanged { key: listed, from: Unknown },
            Change::SocketHoldersChanged { key: listed, added: vec![forked], removed: vec![] },
        ]
    );
    assert_eq!(differ.first_seen(&listed), Some((2000, false)));
    let (changes, _) = differ.push(Arc::new(snapshot(4000, vec![])));
    assert_eq!(
        changes,
        vec![Change::SocketClosed { key: listed, first_seen_ms: 2000, seen_since_baseline: false }]
    );
    assert_eq!(differ.first_seen(&SocketKey { netns: 0, inode: 7 }), None);
}

fn arbitrary_sockets() -> impl Strategy<Value = Vec<Socket>> {
    let state = prop_oneof![
        Just(SocketState::Established),
        Just(SocketState::Listen),
        Just(SocketState::CloseWait)
    ];
    let holders = proptest::collection::btree_set((1..4i32, 0..3i32), 0..4);
    // Namespace 0: the socket was listed by no table (see `carry_resolved`).
    let netns = prop_oneof![Just(0u64), Just(1u64)];
    proptest::collection::btree_map(0..24u64, (netns, state, holders), 0..16).prop_map(|m| {
        m.into_iter()
            .map(|(inode, (netns, state, holders))| {
                socket_in(netns, inode, state, &holders.into_iter().collect::<Vec<_>>())
            })
            .collect()
    })
}

proptest! {
    /// Applying the changes to the previous snapshot gives the next one, exactly.
    #[test]
    fn changes_replay_prev_into_next(prev in arbitrary_sockets(), next in arbitrary_sockets()) {
        let (prev, next) = (snapshot(1, prev), snapshot(2, next));
        let mut replay: BTreeMap<SocketKey, Socket> =
            prev.sockets.iter().map(|s| (s.key, s.clone())).collect();
        let lookup: BTreeMap<SocketKey, &Socket> = next.sockets.iter().map(|s| (s.key, s)).collect();
        for change in diff(&prev, &next, &HashMap::default()) {
            match change {
                Change::SocketOpened { key } => {
                    prop_assert!(replay.insert(key, lookup[&key].clone()).is_none());
                }
                Change::SocketClosed { key, .. } => {
                    prop_assert!(replay.remove(&key).is_some());
                }
                Change::SocketStateChanged { key, from } => {
                    if !replay.contains_key(&key) {
                        let unresolved = SocketKey { netns: 0, inode: key.inode };
                        let mut s = replay.remove(&unresolved).unwrap();
                        s.key = key;
                        replay.insert(key, s);
                    }
                    let s = replay.get_mut(&key).unwrap();
                    prop_assert_eq!(s.state, from);
                    s.state = lookup[&key].state;
                }
                Change::SocketHoldersChanged { key, added, removed } => {
                    let s = replay.get_mut(&key).unwrap();
                    s.holders.retain(|h| !removed.contains(h));
                    s.holders.extend(added);
                    s.holders.sort();
                }
                // Changes nothing: says the socket stayed unheld and established.
                Change::ConnectionUnheld { key } => {
                    let s = &replay[&key];
                    prop_assert!(s.holders.is_empty() && s.state == SocketState::Established);
                    prop_assert!(lookup[&key].holders.is_empty());
                }
                other => prop_assert!(false, "unexpected {:?}", other),
            }
        }
        let replayed: Vec<Socket> = replay.into_values().collect();
        prop_assert_eq!(replayed, next.sockets);
    }
}
