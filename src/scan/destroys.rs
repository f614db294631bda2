//! The kernel's word on every TCP and UDP socket it frees: sock_diag's destroy multicast groups
//! (`SKNLGRP_INET{,6}_{TCP,UDP}_DESTROY`), so a connection that opened and closed between two
//! scans is still reported.
//!
//! - A group delivers only the namespace its socket was created in, so each network namespace
//!   gets its own subscription, made from a short-lived worker thread that entered it (like the
//!   foreign table reads in `netns`); that needs CAP_SYS_ADMIN, the agent's own needs only
//!   CAP_NET_ADMIN.
//! - A subscription holds a reference on its namespace: it is dropped as soon as a scan no longer
//!   sees the namespace, or the agent would keep dead namespaces alive.
//! - Only the kernel's messages count (sender port 0): any local process can address the socket.
//! - A notice carries no inode (the socket has left its file) and no owner; who held it is the
//!   agent's own knowledge, matched by its addresses.

use super::parse::{DestroyedRecord, DiagMessage, diag_messages, parse_destroyed_record};
use super::procfs::{NumName, namespace_inode, open_dir, open_file};
use netlink_sys::{Socket, protocols::NETLINK_SOCK_DIAG};
use rustix::event::epoll;
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::thread::LinkNameSpaceType;
use std::collections::BTreeMap;
use std::io;
use std::time::Duration;

/// `SKNLGRP_INET_TCP_DESTROY` … `SKNLGRP_INET6_UDP_DESTROY` (include/uapi/linux/sock_diag.h).
const DESTROY_GROUPS: [u32; 4] = [1, 2, 3, 4];
/// A burst of closes (a load balancer recycling its pool) must not overflow the queue between
/// two reads: asked for with CAP_NET_ADMIN, past the `rmem_max` an unprivileged socket gets.
const RECEIVE_BUFFER: usize = 4 << 20;
/// Namespaces subscribed to at most; the rest are counted as not watched.
pub const MAX_WATCHED_NAMESPACES: usize = 4096;

/// A socket the kernel freed, and the namespace it lived in.
#[derive(Clone, Copy, Debug)]
pub struct Destroyed {
    /// Network namespace inode.
    pub netns: u64,
    /// What the notice said.
    pub record: DestroyedRecord,
}

/// How many namespaces are heard.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Watching {
    /// Namespaces with a subscription.
    pub watched: usize,
    /// Namespaces the agent could not subscribe in (no CAP_SYS_ADMIN to enter them, gone
    /// before it could, or past `MAX_WATCHED_NAMESPACES`).
    pub unwatched: usize,
}

/// Subscriptions in every namespace the agent follows.
pub struct SocketDestroys {
    proc_dir: OwnedFd,
    own_netns: u64,
    epoll: OwnedFd,
    subscriptions: BTreeMap<u64, Socket>,
    events: Vec<epoll::Event>,
    buf: Vec<u8>,
}

impl SocketDestroys {
    /// Subscribes in the agent's own namespace; fails with the kernel's refusal (EPERM without
    /// CAP_NET_ADMIN).
    pub fn subscribe(proc_root: &std::path::Path) -> io::Result<SocketDestroys> {
        let root = proc_root.to_str().unwrap_or("/proc");
        let proc_dir = open_dir(rustix::fs::CWD, root)?;
        let own_netns = namespace_inode(proc_dir.as_fd(), "thread-self/ns/net")
            .ok_or_else(|| io::Error::other("cannot read the agent's own network namespace"))?;
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        let own = subscribe_here()?;
        epoll::add(&epoll, &own, epoll::EventData::new_u64(own_netns), epoll::EventFlags::IN)?;
        let mut subscriptions = BTreeMap::new();
        subscriptions.insert(own_netns, own);
        Ok(SocketDestroys {
            proc_dir,
            own_netns,
            epoll,
            subscriptions,
            events: Vec::with_capacity(64),
            buf: vec![0; 64 * 1024],
        })
    }

    /// Follows the namespaces a scan saw, each with a member process (`None`: only pinned by a
    /// mount or an fd, which this does not enter): subscribes in new ones when `can_enter`, and
    /// drops those gone. Called when the namespaces changed, so one that could not be entered
    /// (its member gone meanwhile) is tried again then.
    pub fn follow(&mut self, seen: &[(u64, Option<i32>)], can_enter: bool) -> Watching {
        let own = self.own_netns;
        let gone: Vec<u64> = self
            .subscriptions
            .keys()
            .copied()
            .filter(|ns| *ns != own && seen.binary_search_by_key(ns, |s| s.0).is_err())
            .collect();
        for ns in gone {
            if let Some(socket) = self.subscriptions.remove(&ns) {
                let _ = epoll::delete(&self.epoll, &socket);
            }
        }
        let room = MAX_WATCHED_NAMESPACES.saturating_sub(self.subscriptions.len());
        let new: Vec<(u64, i32)> = seen
            .iter()
            .filter(|(ns, _)| !self.subscriptions.contains_key(ns))
            .filter_map(|(ns, pid)| Some((*ns, (*pid)?)))
            .take(room)
            .collect();
        if can_enter && !new.is_empty() {
            for (ns, socket) in subscribe_in(self.proc_dir.as_fd(), &new) {
                let data = epoll::EventData::new_u64(ns);
                if let Some(socket) = socket
                    && epoll::add(&self.epoll, &socket, data, epoll::EventFlags::IN).is_ok()
                {
                    self.subscriptions.insert(ns, socket);
                }
            }
        }
        let watched = seen.iter().filter(|(ns, _)| self.subscriptions.contains_key(ns)).count();
        Watching { watched, unwatched: seen.len() - watched }
    }

    /// Waits up to `timeout` for notices and appends them to `out`; returns how many
    /// subscriptions overflowed (their notices since the last read are partly lost).
    pub fn wait(&mut self, timeout: Duration, out: &mut Vec<Destroyed>) -> io::Result<u64> {
        self.events.clear();
        let timeout = rustix::event::Timespec::try_from(timeout).unwrap_or_default();
        match epoll::wait(
            &self.epoll,
            rustix::buffer::spare_capacity(&mut self.events),
            Some(&timeout),
        ) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => return Ok(0),
            Err(e) => return Err(e.into()),
        }
        let SocketDestroys { events, subscriptions, buf, .. } = self;
        let mut overflowed = 0;
        for event in events.iter() {
            let ns = event.data.u64();
            let Some(socket) = subscriptions.get(&ns) else { continue };
            overflowed += u64::from(drain(socket, ns, buf, out));
        }
        Ok(overflowed)
    }
}

/// Reads every notice waiting on one subscription; `true` when its queue had overflowed.
fn drain(socket: &Socket, netns: u64, buf: &mut [u8], out: &mut Vec<Destroyed>) -> bool {
    let mut overflowed = false;
    loop {
        match socket.recv_from(&mut &mut buf[..], libc::MSG_DONTWAIT) {
            Ok((size, sender)) if sender.port_number() == 0 => {
                // A malformed message ends what can be read of this datagram.
                for message in diag_messages(&buf[..size.min(buf.len())]).map_while(Result::ok) {
                    if let DiagMessage::Record { payload, .. } = message
                        && let Ok(record) = parse_destroyed_record(payload)
                    {
                        out.push(Destroyed { netns, record });
                    }
                }
            }
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => overflowed = true,
            Err(_) => return overflowed,
        }
    }
}

/// A subscription in the calling thread's namespace.
fn subscribe_here() -> io::Result<Socket> {
    let mut socket = Socket::new(NETLINK_SOCK_DIAG)?;
    socket.bind_auto()?;
    socket.set_non_blocking(true)?;
    for group in DESTROY_GROUPS {
        socket.add_membership(group)?;
    }
    if rustix::net::sockopt::set_socket_recv_buffer_size_force(&socket, RECEIVE_BUFFER).is_err() {
        let _ = rustix::net::sockopt::set_socket_recv_buffer_size(&socket, RECEIVE_BUFFER);
    }
    Ok(socket)
}

/// Enters each namespace through its member's /proc entry from a worker thread and subscribes
/// there; the worker exits afterwards, so no thread of the agent stays in a foreign namespace.
/// A member that no longer lives in the namespace (its pid reused, or it moved) is refused.
fn subscribe_in(proc_dir: BorrowedFd<'_>, wanted: &[(u64, i32)]) -> Vec<(u64, Option<Socket>)> {
    let opened: Vec<(u64, Option<OwnedFd>)> = wanted
        .iter()
        .map(|&(ns, pid)| {
            let path = NumName::new("", pid as u64);
            let file = open_dir(proc_dir, path.as_str())
                .ok()
                .filter(|dir| namespace_inode(dir.as_fd(), "ns/net") == Some(ns))
                .and_then(|dir| open_file(dir.as_fd(), "ns/net").ok());
            (ns, file)
        })
        .collect();
    let worker = std::thread::Builder::new().name("sockwatch-netns".into()).spawn(move || {
        opened
            .into_iter()
            .map(|(ns, file)| {
                let entered = file.is_some_and(|f| {
                    rustix::thread::move_into_link_name_space(
                        f.as_fd(),
                        Some(LinkNameSpaceType::Network),
                    )
                    .is_ok()
                });
                (ns, entered.then(subscribe_here).and_then(Result::ok))
            })
            .collect()
    });
    match worker.map(|w| w.join()) {
        Ok(Ok(done)) => done,
        _ => wanted.iter().map(|(ns, _)| (*ns, None)).collect(),
    }
}
