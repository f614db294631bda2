//! What changed between two snapshots. Changes name their subject by key; the data is in the
//! snapshot the change was computed from (the previous one for a closed socket).

use super::{Holder, ProcKey, RawText, SocketKey, SocketState};
use serde::{Deserialize, Serialize};

/// One difference between consecutive snapshots.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Change {
    /// A socket that was not in the previous snapshot.
    SocketOpened {
        /// The socket (in the new snapshot).
        key: SocketKey,
    },
    /// A socket of the previous snapshot that is gone.
    SocketClosed {
        /// The socket (in the previous snapshot).
        key: SocketKey,
        /// When the agent first saw it (ms since the epoch); the agent's start for a socket
        /// already open then, so the duration is a lower bound in that case.
        first_seen_ms: u64,
        /// The agent first saw it in its baseline scan.
        seen_since_baseline: bool,
    },
    /// A socket whose state moved. That includes a socket listed by no table before (netns 0,
    /// state unknown: made but not yet bound) and by one now, reported under its resolved key.
    SocketStateChanged {
        /// The socket.
        key: SocketKey,
        /// The state before.
        from: SocketState,
    },
    /// A socket whose holders changed (a fork, an exit, an fd closed or passed).
    SocketHoldersChanged {
        /// The socket.
        key: SocketKey,
        /// New holders.
        added: Vec<Holder>,
        /// Holders gone.
        removed: Vec<Holder>,
    },
    /// An established TCP connection no process held in two consecutive snapshots: in flight
    /// over SCM_RIGHTS, parked where no fd table shows it, held by a process the scan could not
    /// read, or the kernel's own (an NFS or iSCSI client). Reported once until it is held again.
    ConnectionUnheld {
        /// The socket.
        key: SocketKey,
    },
    /// A socket present at the agent's first scan (a state dump, not news).
    ExistingSocket {
        /// The socket.
        key: SocketKey,
    },
    /// A process whose executable changed under the same key (execve).
    ProcessExec {
        /// The process.
        proc: ProcKey,
        /// The executable before.
        previous_exe: Option<RawText>,
    },
}
