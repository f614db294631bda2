//! The least one agent tick can cost on this host: only the syscalls that cannot be avoided, no
//! parsing, no allocation per fd, no output. List /proc; for each process open its directory,
//! read `ns/net`, list `fd/` and readlink every fd; dump the own namespace's tcp, udp, udplite and
//! raw (v4 and v6, without TIME_WAIT rows, whose count comes from net/sockstat as in the agent)
//! and unix (with peers) tables through sock_diag, counting bytes.
//!
//! Two floors: `links` readlinks every fd and stops there; `fd_reads` also makes the one stat per
//! fd the graph cannot do without: which end of a pipe an fd is (lstat of the link: its mode
//! bits), and whether a path is a FIFO, a pty or a tty (stat through the link). Those are the
//! "fd reads" of a tick; nothing else per fd is needed.
//!
//! `cargo run --release --example tick_floor -- TICKS [INTERVAL_MS]` prints CPU seconds (user +
//! system) per tick for both, the yardstick for `sockwatch run`'s steady-state CPU
//! (bench/steady.py). With an interval the ticks are paced like the agent's (caches go cold
//! between them as they do for the agent); without one they run back to back.

use netlink_packet_core::{NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage};
use netlink_packet_sock_diag::SockDiagMessage;
use netlink_packet_sock_diag::constants::*;
use netlink_packet_sock_diag::inet::{ExtensionFlags, InetRequest, SocketId, StateFlags};
use netlink_packet_sock_diag::unix::{self, ShowFlags, UnixRequest};
use rustix::fd::AsFd;
use rustix::fs::{AtFlags, Mode, OFlags, RawDir};
use std::mem::MaybeUninit;

const NLMSG_DONE: u16 = 3;

fn walk(
    dirents: &mut [MaybeUninit<u8>],
    inner: &mut [MaybeUninit<u8>],
    link: &mut [u8],
    kinds: bool,
) -> u64 {
    fn dir(
        at: rustix::fd::BorrowedFd<'_>,
        path: &std::ffi::CStr,
    ) -> rustix::io::Result<rustix::fd::OwnedFd> {
        rustix::fs::openat(
            at,
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
    }
    let Ok(proc_dir) = dir(rustix::fs::CWD, c"/proc") else { return 0 };
    let mut fds = 0;
    let mut entries = RawDir::new(proc_dir.as_fd(), dirents);
    while let Some(Ok(entry)) = entries.next() {
        let name = entry.file_name();
        if !name.to_bytes().first().is_some_and(u8::is_ascii_digit) {
            continue;
        }
        let Ok(pid_dir) = dir(proc_dir.as_fd(), name) else { continue };
        let _ = rustix::fs::readlinkat_raw(pid_dir.as_fd(), "ns/net", &mut link[..]);
        let Ok(fd_dir) = dir(pid_dir.as_fd(), c"fd") else { continue };
        let mut fd_entries = RawDir::new(fd_dir.as_fd(), &mut inner[..]);
        while let Some(Ok(fd)) = fd_entries.next() {
            if fd.file_name().to_bytes()[0] != b'.' {
                let name = fd.file_name();
                let Ok(n) = rustix::fs::readlinkat_raw(fd_dir.as_fd(), name, &mut link[..]) else {
                    continue;
                };
                let text = &link[..n.min(link.len())];
                fds += 1;
                if kinds && text.starts_with(b"pipe:") {
                    let _ = rustix::fs::statat(fd_dir.as_fd(), name, AtFlags::SYMLINK_NOFOLLOW);
                } else if kinds && text.first() == Some(&b'/') {
                    let _ = rustix::fs::statat(fd_dir.as_fd(), name, AtFlags::empty());
                }
            }
        }
    }
    fds
}

fn dump(socket: &netlink_sys::Socket, request: SockDiagMessage, buf: &mut [u8]) -> usize {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let mut packet = NetlinkMessage::new(header, request.into());
    packet.finalize();
    let mut out = vec![0; packet.buffer_len()];
    packet.serialize(&mut out);
    socket.send(&out, 0).expect("send dump request");
    let mut total = 0;
    loop {
        let n = socket.recv(&mut &mut buf[..], 0).expect("recv dump");
        total += n;
        // Walk the message headers only, to find NLMSG_DONE.
        let mut offset = 0;
        while offset + 16 <= n {
            let len = u32::from_ne_bytes(buf[offset..offset + 4].try_into().unwrap()) as usize;
            let kind = u16::from_ne_bytes(buf[offset + 4..offset + 6].try_into().unwrap());
            if kind == NLMSG_DONE || len == 0 {
                return total;
            }
            offset += len.next_multiple_of(4);
        }
    }
}

fn tables(buf: &mut [u8]) -> usize {
    let mut socket = netlink_sys::Socket::new(netlink_sys::protocols::NETLINK_SOCK_DIAG).unwrap();
    socket.bind_auto().unwrap();
    socket.connect(&netlink_sys::SocketAddr::new(0, 0)).unwrap();
    let mut bytes = 0;
    for family in [AF_INET, AF_INET6] {
        for protocol in [IPPROTO_TCP, IPPROTO_UDP, IPPROTO_UDPLITE, IPPROTO_RAW] {
            let socket_id = if family == AF_INET { SocketId::new_v4() } else { SocketId::new_v6() };
            let request = SockDiagMessage::InetRequest(InetRequest {
                family,
                protocol,
                extensions: ExtensionFlags::empty(),
                // As the agent: TIME_WAIT rows are counted from net/sockstat, not dumped.
                states: StateFlags::all() - StateFlags::TIME_WAIT,
                socket_id,
            });
            bytes += dump(&socket, request, buf);
        }
    }
    let request = SockDiagMessage::UnixRequest(UnixRequest {
        state_flags: unix::StateFlags::all(),
        inode: 0,
        show_flags: ShowFlags::NAME | ShowFlags::PEER,
        cookie: [0; 8],
    });
    let sockstat = std::fs::read("/proc/thread-self/net/sockstat").map_or(0, |s| s.len());
    bytes + dump(&socket, request, buf) + sockstat
}

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct it is given and touches nothing else.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(usage.ru_utime) + t(usage.ru_stime)
}

fn main() {
    let ticks: u32 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(10);
    let interval: u64 = std::env::args().nth(2).and_then(|a| a.parse().ok()).unwrap_or(0);
    let mut dirents = vec![MaybeUninit::uninit(); 64 * 1024];
    let mut inner = vec![MaybeUninit::uninit(); 64 * 1024];
    let mut link = [0u8; 4096];
    let mut buf = vec![0u8; 64 * 1024];
    let (mut fds, mut bytes) = (0, 0);
    let mut per_tick = [0.0; 2];
    for (i, kinds) in [false, true].into_iter().enumerate() {
        let start = cpu_seconds();
        for _ in 0..ticks {
            let began = std::time::Instant::now();
            fds = walk(&mut dirents, &mut inner, &mut link, kinds);
            bytes = tables(&mut buf);
            let pace = std::time::Duration::from_millis(interval);
            std::thread::sleep(pace.saturating_sub(began.elapsed()));
        }
        per_tick[i] = (cpu_seconds() - start) / f64::from(ticks);
    }
    println!(
        "{{\"cpu_seconds_per_tick_links\": {:.6}, \"cpu_seconds_per_tick\": {:.6}, \"fds\": {fds}, \
         \"table_bytes\": {bytes}}}",
        per_tick[0], per_tick[1]
    );
}
