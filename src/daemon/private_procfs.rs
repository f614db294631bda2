//! The agent reads a proc file system instance of its own: a bind mount over /proc/<pid> in the
//! host's mount namespace (`mount --bind EMPTYDIR /proc/PID`, MITRE T1564) empties that
//! process's entry for everyone reading the host's /proc, but not for another instance.
//!
//! - With CAP_SYS_ADMIN the agent creates one with the mount API (`fsopen`, `fsmount`) and keeps
//!   it detached: attached nowhere, in no mount namespace, it is reached only through the
//!   agent's own fd (`/proc/self/fd/N`), nobody can mount over anything in it, and nothing is
//!   left behind when the agent exits. The agent's mount namespace and what it sees of the
//!   host's later mounts (a file sink's disk, `ip netns add`) do not change.
//! - Under the packaged unit (no CAP_SYS_ADMIN, no mount system calls), systemd mounts one for
//!   the service (`ProtectProc=ptraceable`: with CAP_SYS_PTRACE every process is ptraceable, so
//!   none is hidden from the agent).
//! - Without either, it reads the host's /proc and says so; the mount itself is still alerted.

use rustix::fd::{AsRawFd, OwnedFd};
use rustix::mount::{FsMountFlags, FsOpenFlags, MountAttrFlags};
use serde_json::{Value, json};
use std::path::PathBuf;

/// Which /proc the agent reads.
pub(crate) enum ProcView {
    /// A detached instance it created, held open.
    Detached(OwnedFd),
    /// One it was given at /proc (systemd's `ProtectProc=`, a container's).
    Given,
    /// The host's: why not its own.
    Shared(String),
}

impl ProcView {
    /// Where to read it.
    pub(crate) fn root(&self) -> PathBuf {
        match self {
            ProcView::Detached(fd) => PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd())),
            ProcView::Given | ProcView::Shared(_) => PathBuf::from("/proc"),
        }
    }

    /// For `agent_started`.
    pub(crate) fn describe(&self) -> Value {
        match self {
            ProcView::Detached(_) => json!({"private": true, "by": "agent"}),
            ProcView::Given => json!({"private": true, "by": "service manager"}),
            ProcView::Shared(why) => json!({"private": false, "why": why}),
        }
    }

    /// The notice a shared /proc deserves.
    pub(crate) fn notice(&self) -> Option<super::detection::Notice> {
        let ProcView::Shared(why) = self else { return None };
        let fields = json!({
            "error": why,
            "needs": "CAP_SYS_ADMIN to create a procfs of its own, or ProtectProc=ptraceable in \
                      its systemd unit",
            "effect": "a bind mount over /proc/PID hides that process's fds from the scans (the \
                       mount itself is still alerted)",
        });
        Some(("private_procfs_unavailable", fields))
    }
}

/// A /proc of the agent's own, creating one if it can.
pub(crate) fn private_procfs() -> ProcView {
    if is_private() {
        return ProcView::Given;
    }
    match detached_procfs() {
        Ok(fd) => ProcView::Detached(fd),
        Err(e) => ProcView::Shared(format!("cannot create a procfs of its own: {e}")),
    }
}

/// Whether /proc is another instance than the one pid 1 sees: a different device number (every
/// procfs mount has its own superblock since Linux 5.8). pid 1's mountinfo says which it sees
/// (its /proc/1/root may be out of reach even for root).
fn is_private() -> bool {
    let Ok(own) = rustix::fs::stat("/proc") else { return false };
    let Ok(init) = std::fs::read("/proc/1/mountinfo") else { return false };
    crate::scan::parse::proc_device(&init)
        .is_some_and(|(major, minor)| rustix::fs::makedev(major, minor) != own.st_dev)
}

fn detached_procfs() -> rustix::io::Result<OwnedFd> {
    let context = rustix::mount::fsopen("proc", FsOpenFlags::FSOPEN_CLOEXEC)?;
    rustix::mount::fsconfig_create(&context)?;
    let attributes = MountAttrFlags::MOUNT_ATTR_NOSUID
        | MountAttrFlags::MOUNT_ATTR_NODEV
        | MountAttrFlags::MOUNT_ATTR_NOEXEC;
    rustix::mount::fsmount(&context, FsMountFlags::FSMOUNT_CLOEXEC, attributes)
}
