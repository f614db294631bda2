//! One scan's view of the host, and what it could not see.

use super::{Fd, Process, Socket, SocketKey};
use serde::{Deserialize, Serialize};

/// How a network namespace's socket tables were read, or why they were not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TableRead {
    /// netlink sock_diag (unix peers included), plus /proc text for icmp, packet and netlink tables,
    /// which sock_diag does not cover here.
    SockDiag,
    /// /proc/<pid>/net text only: no unix peers.
    ProcNet,
    /// Not read: no member process to read through and no privilege to enter it.
    Unreadable,
}

/// A network namespace seen in this scan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetnsInfo {
    /// Namespace inode.
    pub inode: u64,
    /// How its tables were read.
    pub tables: TableRead,
    /// Number of processes whose netns this is.
    pub processes: u32,
    /// The namespace is pinned by a bind mount (e.g. /run/netns/NAME) or an fd.
    pub pinned: bool,
    /// `net.ipv4.ip_local_port_range` of this namespace, used to judge direction.
    pub ephemeral_ports: Option<(u16, u16)>,
    /// TCP connections in TIME_WAIT in this namespace.
    #[serde(default)]
    pub time_wait: u64,
    /// The tables are those of an earlier scan: nothing suggested a change since (or the read
    /// was deferred; see `Coverage::namespaces_deferred`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reused: bool,
}

/// Which privileges the scan ran with. Judged by capabilities, never by uid.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Privileges {
    /// CAP_SYS_PTRACE: read other users' fd links and namespaces.
    pub sys_ptrace: bool,
    /// CAP_DAC_READ_SEARCH: traverse other users' /proc/pid/fd.
    pub dac_read_search: bool,
    /// CAP_SYS_ADMIN: setns into other network namespaces for sock_diag.
    pub sys_admin: bool,
}

/// What the scan saw and what it could not. Races (a process exiting mid-scan) and refusals are
/// normal; they are counted here, never a failure of the scan.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coverage {
    /// Processes read.
    pub processes_seen: u64,
    /// Processes the scan could not fully read: /proc/<pid> refused (hidepid), or its exe or fd
    /// links refused (a target holding capabilities the agent lacks). Those read in part are also
    /// in `processes_seen`.
    pub processes_denied: u64,
    /// Processes that vanished while being read.
    pub processes_vanished: u64,
    /// fds read.
    pub fds_seen: u64,
    /// fd directories refused.
    pub fd_dirs_denied: u64,
    /// fd links refused (EACCES/EPERM).
    pub fds_denied: u64,
    /// fds closed between listing and reading.
    pub fds_vanished: u64,
    /// Threads found with their own fd table (`unshare(CLONE_FILES)`).
    pub threads_with_private_fds: u64,
    /// io_uring instances read, the sockets registered in them (held by the ring's holder), and
    /// rings whose files could not all be listed: too busy to list them (twice), or too many.
    #[serde(default)]
    pub io_uring_rings: u64,
    #[serde(default)]
    pub io_uring_sockets: u64,
    #[serde(default)]
    pub io_uring_files_unlisted: u64,
    /// Socket fds found in some table.
    pub sockets_resolved: u64,
    /// Sockets held by some process but found in no readable table.
    pub sockets_unresolved: u64,
    /// Of the sockets no table listed: those resolved by dumping the namespace a copy of the
    /// holder's fd named (a namespace no process is in and nothing mounts), those read from
    /// that copy, those whose fd could not be copied (no right to trace the holder, a seccomp
    /// filter, the fd gone), and the namespaces dumped that way.
    #[serde(default)]
    pub sockets_resolved_unpinned: u64,
    #[serde(default)]
    pub sockets_resolved_from_fd: u64,
    #[serde(default)]
    pub sockets_ungrabbable: u64,
    #[serde(default)]
    pub namespaces_unpinned: u64,
    /// Table rows with an inode but no holder the scan could see (in flight via SCM_RIGHTS, held
    /// by a process the scan could not read, or a kernel socket).
    pub sockets_unowned: u64,
    /// Rows with inode 0 other than TIME_WAIT (request sockets): counted, never keyed.
    pub inode0_rows: u64,
    /// TCP connections in TIME_WAIT (no inode, no holder). With sock_diag they are not dumped
    /// (on a busy server they are most of the rows) but counted from the namespace's
    /// `net/sockstat`; from /proc text they are counted row by row.
    #[serde(default)]
    pub time_wait: u64,
    /// Network namespaces found.
    pub namespaces_seen: u64,
    /// Namespaces whose tables came through sock_diag.
    pub namespaces_sock_diag: u64,
    /// Namespaces whose tables came from /proc text (no unix peers).
    pub namespaces_proc_net: u64,
    /// Namespaces the scan could not read at all.
    pub namespaces_unreadable: u64,
    /// Foreign namespaces whose tables were reused from an earlier scan: no process there holds
    /// a socket they do not list, and the namespace's socket counters did not move.
    #[serde(default)]
    pub namespaces_reused: u64,
    /// Namespaces that may have changed but were not read this scan: the scan's budget for
    /// foreign namespaces was spent (they are read first next scan, oldest first).
    #[serde(default)]
    pub namespaces_deferred: u64,
    /// Table reads that failed (one count per table and namespace).
    pub table_errors: u64,
    /// sock_diag dumps the kernel flagged as interrupted (inconsistent): retried once.
    pub dumps_interrupted: u64,
    /// Rows whose inode appeared twice in one text table: a forged row (a unix name with a newline)
    /// or a torn read. The later row is ignored.
    pub duplicate_rows: u64,
    /// Executables that may be copies of a known shell, interpreter or network tool (their size
    /// matches one) but were not compared this scan: the hashing budget was spent. Their identity
    /// rests on their name until a later scan compares them.
    #[serde(default)]
    pub exes_unhashed: u64,
    /// Mount namespaces whose mounts were read (for mounts over /proc/<pid>), and those whose
    /// member processes could not be read.
    #[serde(default)]
    pub mount_namespaces_read: u64,
    #[serde(default)]
    pub mount_namespaces_unreadable: u64,
    /// Processes the listing of /proc did not show but a lookup found (the parent of a listed
    /// process): hidden from the listing, read anyway. Their pids.
    #[serde(default)]
    pub processes_unlisted: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unlisted_pids: Vec<i32>,
    /// Scan wall time in microseconds.
    pub duration_us: u64,
}

impl Coverage {
    /// Adds the per-process counters of another partial scan (another reader thread's share).
    pub fn add_process_counts(&mut self, other: &Coverage) {
        self.processes_seen += other.processes_seen;
        self.processes_denied += other.processes_denied;
        self.processes_vanished += other.processes_vanished;
        self.fds_seen += other.fds_seen;
        self.exes_unhashed += other.exes_unhashed;
        self.fd_dirs_denied += other.fd_dirs_denied;
        self.fds_denied += other.fds_denied;
        self.fds_vanished += other.fds_vanished;
        self.threads_with_private_fds += other.threads_with_private_fds;
        self.io_uring_rings += other.io_uring_rings;
        self.io_uring_sockets += other.io_uring_sockets;
        self.io_uring_files_unlisted += other.io_uring_files_unlisted;
    }
}

/// One scan of the host.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Scan number, counting from 1 for each scanner.
    #[serde(default)]
    pub seq: u64,
    /// When the scan started, in milliseconds since the Unix epoch.
    #[serde(default)]
    pub taken_at_ms: u64,
    /// Privileges the scan ran with.
    pub privileges: Privileges,
    /// The agent's own network namespace.
    pub own_netns: u64,
    /// Every network namespace found.
    pub namespaces: Vec<NetnsInfo>,
    /// Every process, sorted by key.
    pub processes: Vec<Process>,
    /// Every fd, sorted by (process, tid, fd).
    pub fds: Vec<Fd>,
    /// Every socket, sorted by key.
    pub sockets: Vec<Socket>,
    /// Mounts over a process's /proc directory, in any mount namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub proc_mounts: Vec<super::ProcMount>,
    /// What the scan could and could not see.
    pub coverage: Coverage,
}

impl Snapshot {
    /// The socket under `key`.
    pub fn socket(&self, key: SocketKey) -> Option<&Socket> {
        self.sockets.binary_search_by_key(&key, |s| s.key).ok().map(|at| &self.sockets[at])
    }
}
