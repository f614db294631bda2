//! Mounts over /proc/<pid> in every mount namespace: one member process's mountinfo per
//! namespace, each scan. A namespace where the agent is alone (a systemd service's) is left out:
//! the host's mounts it receives by propagation are the host's, read through the host's
//! processes, and reporting the copies would alert twice.

use super::parse::{ProcPidMount, parse_proc_pid_mounts};
use super::procfs::{NumName, read_file};
use crate::model::{Coverage, ProcKey, ProcMount, Process, RawText};
use rustix::fd::BorrowedFd;
use std::collections::BTreeMap;

/// mountinfo of a host with thousands of mounts (a Kubernetes node) stays well below this.
const MOUNTINFO_CAP: usize = 16 << 20;

/// The mounts over a process's /proc directory in every mount namespace but one the agent has to
/// itself. `own_pidns`: where the pid a mount point names is one of the agent's own pids.
pub(crate) fn proc_mounts(
    proc_dir: BorrowedFd<'_>,
    processes: &[Process],
    own_pidns: Option<u64>,
    buf: &mut Vec<u8>,
    coverage: &mut Coverage,
) -> Vec<ProcMount> {
    let own_pid = std::process::id() as i32;
    let mut members: BTreeMap<u64, Vec<&Process>> = BTreeMap::new();
    for process in processes.iter().filter(|p| !p.kernel_thread) {
        if let Some(ns) = process.mntns {
            members.entry(ns).or_default().push(process);
        }
    }
    members.retain(|_, members| members.iter().any(|p| p.key.pid != own_pid));
    let alive: BTreeMap<i32, ProcKey> = processes.iter().map(|p| (p.key.pid, p.key)).collect();
    let mut found = Vec::new();
    for (mntns, members) in members {
        // The first member that can be read speaks for the namespace.
        let read = members.iter().find_map(|member| {
            let path = NumName::new("", member.key.pid as u64);
            let path = format!("{}/mountinfo", path.as_str());
            read_file(proc_dir, &path, buf, MOUNTINFO_CAP).ok().map(|_| member)
        });
        let Some(member) = read else {
            coverage.mount_namespaces_unreadable += 1;
            continue;
        };
        coverage.mount_namespaces_read += 1;
        let same_pids = own_pidns.is_some() && member.pidns == own_pidns;
        for mount in parse_proc_pid_mounts(buf) {
            let ProcPidMount { mount_id, pid, mount_point, root, fstype, source } = mount;
            found.push(ProcMount {
                mntns,
                mount_id,
                mount_point: RawText::new(mount_point),
                pid,
                root: RawText::new(root),
                fstype: RawText::new(fstype),
                source: RawText::new(source),
                seen_through: member.key.pid,
                hidden: same_pids.then(|| alive.get(&pid).copied()).flatten(),
            });
        }
    }
    found
}
