//! One network namespace's socket table, filled by sock_diag or by the /proc text parsers.

use crate::model::Socket;
use std::collections::HashMap;
use std::collections::hash_map::Entry;

/// Rows by inode for one namespace, with what did not fit. Rows are `Socket`s whose key and
/// holders the join fills in.
#[derive(Debug, Default)]
pub(crate) struct NetnsTable {
    pub rows: HashMap<u64, Socket>,
    pub inode0_rows: u64,
    pub duplicate_rows: u64,
    pub errors: u64,
    pub interrupted: u64,
}

impl NetnsTable {
    /// Files a row. Inode 0 (TIME_WAIT, request sockets) has no identity and is only counted; a
    /// repeated inode keeps the first row (text tables can be forged by a unix name holding a
    /// newline, and the genuine row comes first).
    pub fn insert(&mut self, inode: u64, row: Socket) {
        if inode == 0 {
            self.inode0_rows += 1;
            return;
        }
        match self.rows.entry(inode) {
            Entry::Occupied(_) => self.duplicate_rows += 1,
            Entry::Vacant(slot) => {
                slot.insert(row);
            }
        }
    }

    /// Adds another table's rows and counters (the same namespace, another protocol).
    pub fn merge(&mut self, other: NetnsTable) {
        if self.rows.is_empty() {
            self.rows = other.rows;
        } else {
            for (inode, row) in other.rows {
                self.insert(inode, row);
            }
        }
        self.inode0_rows += other.inode0_rows;
        self.duplicate_rows += other.duplicate_rows;
        self.errors += other.errors;
        self.interrupted += other.interrupted;
    }
}
