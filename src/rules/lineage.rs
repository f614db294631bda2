//! Where an alert's process comes from: its ancestors, and the ssh login it descends from. This
//! is context for the responder, never evidence for a verdict: a process can name itself
//! anything, so nothing here decides whether an alert is raised.

use super::subject::Context;
use crate::model::{Direction, FdTarget, LoginOrigin, Process, Protocol, SocketState};

/// The process's parent, grandparent, … nearest first, up to pid 1 or the init of its own pid
/// namespace: a container's shell is traced to the container's init, not into the host's
/// runtime processes.
pub(super) fn ancestors(cx: &Context<'_>, process: &Process) -> Vec<Process> {
    let mut chain = Vec::new();
    for ancestor in cx.ancestors(process) {
        // An unreadable namespace (pid 1's, in some sandboxes) is not a boundary.
        if let (Some(theirs), Some(own)) = (ancestor.pidns, process.pidns)
            && theirs != own
        {
            break;
        }
        chain.push(ancestor.clone());
    }
    chain
}

/// The nearest of `lineage` that is an sshd process holding an inbound TCP connection: the
/// session the user logged in with, and where from.
pub(super) fn login_origin<'a>(
    cx: &Context<'_>,
    lineage: impl Iterator<Item = &'a Process>,
) -> Option<LoginOrigin> {
    for process in lineage {
        if !process.exe.as_ref().is_some_and(crate::model::Exe::is_ssh_server) {
            continue;
        }
        for fd in cx.graph.fds_of(process.key) {
            let FdTarget::Socket { inode } = fd.target else { continue };
            let Some(socket) = cx.graph.socket(inode) else { continue };
            let inbound = cx.graph.direction(socket.key).0 == Direction::Inbound;
            if socket.protocol == Protocol::Tcp
                && socket.state == SocketState::Established
                && inbound
                && let (Some(remote), Some(local)) = (socket.remote, socket.local)
            {
                return Some(LoginOrigin { process: process.key, remote, local });
            }
        }
    }
    None
}
