//! File descriptors and what they point at.

use super::{ProcKey, RawText};
use serde::{Deserialize, Serialize};

/// How an fd was opened: for a pipe or FIFO this says which end it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessMode {
    /// Opened for reading only.
    Read,
    /// Opened for writing only.
    Write,
    /// Opened for both.
    ReadWrite,
    /// Not determined (not needed for this kind of target, or unreadable).
    Unknown,
}

impl AccessMode {
    /// Data can be read through this fd.
    pub fn reads(self) -> bool {
        matches!(self, AccessMode::Read | AccessMode::ReadWrite | AccessMode::Unknown)
    }
    /// Data can be written through this fd.
    pub fn writes(self) -> bool {
        matches!(self, AccessMode::Write | AccessMode::ReadWrite | AccessMode::Unknown)
    }
}

/// A pseudo-terminal: the devpts instance (its `st_dev`) plus the index. The index alone is
/// ambiguous: every container has its own pts/0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PtyId {
    /// `st_dev` of the devpts mount the pty lives in; `None` when it could not be determined.
    pub devpts: Option<u64>,
    /// The pty index (N in /dev/pts/N).
    pub index: u32,
}

/// What an fd points at.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FdTarget {
    /// A socket, by inode; its table row (if any) is in `Snapshot::sockets`.
    Socket {
        /// Socket inode.
        inode: u64,
    },
    /// An anonymous pipe; both ends share the inode, `Fd::mode` says which end.
    Pipe {
        /// Pipe inode.
        inode: u64,
    },
    /// A named pipe.
    Fifo {
        /// Device of the FIFO's file system.
        dev: u64,
        /// Inode of the FIFO.
        ino: u64,
        /// Path as the link shows it.
        path: RawText,
    },
    /// The master side of a pty (/dev/ptmx).
    PtyMaster {
        /// Which pty.
        pty: PtyId,
    },
    /// The slave side of a pty (/dev/pts/N).
    PtySlave {
        /// Which pty.
        pty: PtyId,
    },
    /// Another terminal device (console, virtual terminal, serial line, /dev/tty).
    Tty {
        /// Device number.
        rdev: u64,
        /// Path as the link shows it.
        path: RawText,
    },
    /// A file or directory.
    File {
        /// Path as the link shows it.
        path: RawText,
    },
    /// An anonymous inode (eventfd, epoll, inotify, timerfd, pidfd, …).
    AnonInode {
        /// The kind, from `anon_inode:[kind]`.
        kind: RawText,
    },
    /// A namespace file (`net:[N]` and kin), which pins that namespace.
    Namespace {
        /// Namespace kind (`net`, `mnt`, …).
        kind: RawText,
        /// Namespace inode.
        inode: u64,
    },
    /// Anything else, with the raw link.
    Other {
        /// The raw link text.
        link: RawText,
    },
}

/// One open file descriptor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fd {
    /// The process holding it.
    pub proc: ProcKey,
    /// Set when the fd lives in a thread's private fd table (the thread called `unshare(CLONE_FILES)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tid: Option<i32>,
    /// The fd number.
    pub num: i32,
    /// Set when the target is a file registered in an io_uring and not this fd's own: `num` is
    /// the ring's fd, this its slot in the ring's registered file table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io_uring_slot: Option<u32>,
    /// How it was opened.
    pub mode: AccessMode,
    /// What it points at.
    pub target: FdTarget,
}
