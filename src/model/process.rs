//! Processes, identified so that pid reuse can never alias two of them.

use super::{Identity, RawText};
use serde::{Deserialize, Serialize};

/// A process identity: the pid plus its start time in clock ticks since boot (/proc/pid/stat field
/// 22). `execve` keeps the key; a recycled pid gets a new one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ProcKey {
    /// Process id in the agent's pid namespace.
    pub pid: i32,
    /// Start time in clock ticks after boot.
    pub start_ticks: u64,
}

/// The executable behind /proc/pid/exe.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exe {
    /// The link text, as the kernel renders it (may end in " (deleted)", which proves nothing).
    pub path: RawText,
    /// The binary has no links left (`st_nlink == 0` through the magic link), judged by the inode,
    /// not by the suffix, which a file name can fake.
    pub deleted: bool,
    /// The binary is a memfd (fileless execution).
    pub memfd: bool,
    /// Device and inode of the binary, stable across renames.
    pub dev: u64,
    /// Inode number of the binary.
    pub ino: u64,
    /// Owner uid of the binary.
    pub owner_uid: u32,
    /// Permission bits of the binary (`st_mode & 0o7777`).
    pub mode: u32,
    /// Size of the binary in bytes.
    #[serde(default)]
    pub size: u64,
    /// The host's shell, interpreter or network tool this binary is, by inode or by content;
    /// `None` when it is none of them (or could not be told).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<Identity>,
    /// Whether the binary is the very file its path names in the host's mount namespace (pid
    /// 1's): false for a container's own copy or a bind mount over the path in a private mount
    /// namespace; `None` when that could not be checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_file: Option<bool>,
}

impl Exe {
    /// The OpenSSH server process that holds a login's connection (`sshd-session` since 9.8,
    /// `sshd` before), by file name: context for a responder, never evidence.
    pub fn is_ssh_server(&self) -> bool {
        let path = self.path.as_bytes();
        let name = path.rsplit(|&b| b == b'/').next().unwrap_or(path);
        matches!(name, b"sshd" | b"sshd-session")
    }

    /// A binary of the csh family (`csh`, `bsd-csh`, `tcsh`), by what it is or, failing that, by
    /// its file name. They move their stdio to fds 16-19 at start (see `Process::stdio_fds`).
    pub fn is_csh_family(&self) -> bool {
        let csh = |name: &[u8]| matches!(name, b"csh" | b"bsd-csh" | b"tcsh");
        if let Some(identity) = &self.identity {
            return csh(identity.name.as_bytes());
        }
        let path = self.path.as_bytes();
        let path =
            if self.deleted { path.strip_suffix(b" (deleted)").unwrap_or(path) } else { path };
        csh(path.rsplit(|&b| b == b'/').next().unwrap_or(path))
    }
}

/// One process (thread-group leader) as seen in one scan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Process {
    /// Identity.
    pub key: ProcKey,
    /// Parent pid.
    pub ppid: i32,
    /// Real, effective user id.
    pub uid: u32,
    /// Effective user id.
    pub euid: u32,
    /// Real group id.
    pub gid: u32,
    /// Effective group id.
    pub egid: u32,
    /// `comm`, chosen freely by the process: a display field, never an identity.
    pub comm: RawText,
    /// The executable; `None` for kernel threads or when unreadable.
    pub exe: Option<Exe>,
    /// argv as the process currently presents it (it can rewrite it).
    pub argv: Vec<RawText>,
    /// argv was longer than the scanner reads and was cut.
    pub argv_truncated: bool,
    /// Current working directory.
    pub cwd: Option<RawText>,
    /// Controlling terminal device number (`tty_nr`, 0 when none).
    pub tty_nr: u32,
    /// Session id.
    pub sid: i32,
    /// Process group id.
    pub pgid: i32,
    /// Network namespace inode.
    pub netns: Option<u64>,
    /// Pid namespace inode.
    pub pidns: Option<u64>,
    /// Mount namespace inode.
    pub mntns: Option<u64>,
    /// The unified cgroup path (or the first hierarchy's on cgroup v1).
    pub cgroup: Option<RawText>,
    /// The container the cgroup path places the process in, with what the runtime's state
    /// files say of it; `None` on the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<std::sync::Arc<super::Container>>,
    /// Number of threads.
    pub threads: u32,
    /// A kernel thread (`PF_KTHREAD`): no exe, no fds, no argv.
    pub kernel_thread: bool,
    /// Something the scan needed was refused (exe link, fd links): this process's fds may be
    /// incomplete. Counted in `Coverage::processes_denied`.
    pub denied: bool,
}

/// The csh family's copies of its stdio (sh.h: `SHIN`, `SHOUT`, `SHDIAG`, `OLDSTD`) and the
/// stream each stands for. csh closes fds 0-2 after copying them; tcsh points them at /dev/null.
const CSH_STDIO: [(i32, i32); 4] = [(16, 0), (17, 1), (18, 2), (19, 0)];
const STDIO: [(i32, i32); 3] = [(0, 0), (1, 1), (2, 2)];

impl Process {
    /// The fds that are this process's stdin, stdout and stderr: (fd, stream 0-2). fds 0-2, plus
    /// 16-19 for the csh family.
    pub fn stdio_fds(&self) -> impl Iterator<Item = (i32, i32)> {
        let csh = self.exe.as_ref().is_some_and(Exe::is_csh_family);
        STDIO.into_iter().chain(CSH_STDIO.into_iter().filter(move |_| csh))
    }
}
