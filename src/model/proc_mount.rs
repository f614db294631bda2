//! Processes hidden from /proc (MITRE T1564, Hide Artifacts): a mount over a process's /proc
//! directory (`mount --bind EMPTYDIR /proc/PID`) hides it from `ps`, `ss -p` and any agent that
//! reads that /proc; a kernel rootkit filters it out of the directory's listing.

use super::{AlertAction, ProcKey, Process, RawText};
use serde::{Deserialize, Serialize};

/// One such mount, in one mount namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcMount {
    /// The mount namespace it is in.
    pub mntns: u64,
    /// Its mount id there.
    pub mount_id: u64,
    /// The mount point, as that namespace's processes see it.
    pub mount_point: RawText,
    /// The pid the mount point names, in the pid namespace of that namespace's /proc.
    pub pid: i32,
    /// What was mounted: the directory of its file system, its type and its source.
    pub root: RawText,
    pub fstype: RawText,
    pub source: RawText,
    /// The process whose mountinfo showed it.
    pub seen_through: i32,
    /// The process whose entry it covers, when that /proc shows the agent's own pid namespace
    /// and the process lives.
    pub hidden: Option<ProcKey>,
}

impl ProcMount {
    /// Identity while mounted.
    pub fn key(&self) -> (u64, u64) {
        (self.mntns, self.mount_id)
    }
}

/// What hides a process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hiding {
    /// A mount over its /proc directory.
    Mount(ProcMount),
    /// Missing from the listing of /proc, found by a lookup (the parent of a listed process).
    Unlisted {
        /// Its pid.
        pid: i32,
    },
}

impl Hiding {
    /// Identity while it lasts: a mount's namespace and id, or (0, pid).
    pub fn key(&self) -> (u64, u64) {
        match self {
            Hiding::Mount(mount) => mount.key(),
            Hiding::Unlisted { pid } => (0, *pid as u64),
        }
    }
}

/// An alert about a hidden process, opened when a scan first finds the hiding and resolved when
/// one no longer does.
#[derive(Clone, Debug)]
pub struct HidingAlert {
    pub action: AlertAction,
    pub incident_id: String,
    pub hiding: Hiding,
    /// The hidden process as the agent read it.
    pub hidden: Option<Process>,
    pub at_ms: u64,
    pub snapshot_seq: u64,
}
