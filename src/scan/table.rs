//! One network namespace's socket table, filled by sock_diag or by the /proc text parsers.

use crate::model::Socket;
use rustc_hash::FxHashSet;

/// Rows of one namespace, with what did not fit. Rows are `Socket`s whose key carries the inode;
/// the join fills in the namespace and the holders. A Vec plus a set of inodes, not a map from
/// inode to row: at 100k rows a map's buckets cost twice the rows.
#[derive(Clone, Debug, Default)]
pub(crate) struct NetnsTable {
    pub rows: Vec<Socket>,
    seen: FxHashSet<u64>,
    pub inode0_rows: u64,
    pub time_wait: u64,
    pub duplicate_rows: u64,
    pub errors: u64,
    pub interrupted: u64,
}

impl NetnsTable {
    /// Files a row. Inode 0 (TIME_WAIT, request sockets) has no identity and is only counted; a
    /// repeated inode keeps the first row (text tables can be forged by a unix name holding a
    /// newline, and the genuine row comes first).
    pub fn insert(&mut self, inode: u64, mut row: Socket) {
        if inode == 0 && row.state == crate::model::SocketState::TimeWait {
            self.time_wait += 1;
        } else if inode == 0 {
            self.inode0_rows += 1;
        } else if !self.seen.insert(inode) {
            self.duplicate_rows += 1;
        } else {
            row.key.inode = inode;
            self.rows.push(row);
        }
    }

    /// Whether a row has this inode.
    pub fn lists(&self, inode: u64) -> bool {
        self.seen.contains(&inode)
    }

    /// Where the table stands, to roll back a dump that must be redone.
    pub fn mark(&self) -> Mark {
        Mark {
            rows: self.rows.len(),
            inode0_rows: self.inode0_rows,
            time_wait: self.time_wait,
            duplicate_rows: self.duplicate_rows,
        }
    }

    /// Forgets every row and count filed since `mark`.
    pub fn roll_back(&mut self, mark: Mark) {
        for row in self.rows.drain(mark.rows..) {
            self.seen.remove(&row.key.inode);
        }
        self.inode0_rows = mark.inode0_rows;
        self.time_wait = mark.time_wait;
        self.duplicate_rows = mark.duplicate_rows;
    }
}

/// What a table held at some point (see `NetnsTable::mark`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Mark {
    rows: usize,
    inode0_rows: u64,
    time_wait: u64,
    duplicate_rows: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Family, Protocol, SocketKey, SocketState, TableSource};

    fn row(state: SocketState) -> Socket {
        let key = SocketKey { netns: 0, inode: 0 };
        Socket::new(key, Family::Inet, Protocol::Tcp, state, TableSource::SockDiag)
    }

    #[test]
    fn a_rolled_back_dump_leaves_no_row_and_no_count_behind() {
        let mut table = NetnsTable::default();
        table.insert(1, row(SocketState::Listen));
        let mark = table.mark();
        table.insert(2, row(SocketState::Established));
        table.insert(1, row(SocketState::Established)); // already filed before the mark
        table.insert(0, row(SocketState::TimeWait));
        table.insert(0, row(SocketState::SynRecv));
        table.roll_back(mark);
        assert_eq!(table.rows.len(), 1);
        assert_eq!((table.duplicate_rows, table.time_wait, table.inode0_rows), (0, 0, 0));
        // The redone dump files the same sockets again, once.
        table.insert(2, row(SocketState::Established));
        table.insert(1, row(SocketState::Established));
        assert_eq!(table.rows.iter().map(|r| r.key.inode).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(table.duplicate_rows, 1);
    }
}
