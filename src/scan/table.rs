//! One network namespace's socket table, filled by sock_diag or by the /proc text parsers.

use crate::model::Socket;
use std::collections::HashSet;

/// Rows of one namespace, with what did not fit. Rows are `Socket`s whose key carries the inode;
/// the join fills in the namespace and the holders. A Vec plus a set of inodes, not a map from
/// inode to row: at 100k rows a map's buckets cost twice the rows.
#[derive(Debug, Default)]
pub(crate) struct NetnsTable {
    pub rows: Vec<Socket>,
    seen: HashSet<u64>,
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

    /// Adds another table's rows and counters (the same namespace, another protocol).
    pub fn merge(&mut self, other: NetnsTable) {
        if self.rows.is_empty() && self.seen.is_empty() {
            self.rows = other.rows;
            self.seen = other.seen;
        } else {
            for row in other.rows {
                self.insert(row.key.inode, row);
            }
        }
        self.inode0_rows += other.inode0_rows;
        self.time_wait += other.time_wait;
        self.duplicate_rows += other.duplicate_rows;
        self.errors += other.errors;
        self.interrupted += other.interrupted;
    }
}
