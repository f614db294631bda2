//! Reads every network namespace's socket tables, once per scan.
//!
//! - The agent's own namespace: sock_diag on the scanning thread.
//! - Other namespaces, with CAP_SYS_ADMIN: a short-lived worker thread enters each one (`setns`
//!   is per thread, and a netlink socket dumps the namespace it was created in) and dumps it with
//!   sock_diag. The worker exits afterwards, so no thread of the agent stays in a foreign namespace.
//! - Other namespaces, without it: /proc/<member pid>/net text (no unix peers).
//! - Namespaces with no member process and no privilege to enter: counted as unreadable.

use super::netns_cache::{NamespaceBudget, NamespaceCache, Why};
use super::procfs::{NumName, open_dir, open_file, read_all, read_record};
use super::sockdiag::{DumpEnd, INET_TABLES, SockDiag};
use super::table::NetnsTable;
use super::text_tables::{DIAG_COVERED, TEXT_ONLY, read_text_table};
use crate::model::{NetnsInfo, TableRead};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::thread::LinkNameSpaceType;
use std::collections::BTreeMap;
use std::time::Instant;

/// How socket tables are read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TableInterface {
    /// netlink sock_diag, falling back to /proc text per table when the kernel refuses one.
    #[default]
    SockDiag,
    /// /proc/<pid>/net text only: for hosts where netlink sockets are filtered (seccomp, LSM).
    /// No unix peers, so no relay through unix sockets.
    ProcNet,
}

/// Where a namespace can be reached from.
#[derive(Clone, Debug, Default)]
pub(crate) struct NamespaceHandle {
    /// A live process inside it (for /proc/<pid>/ns/net and /proc/<pid>/net).
    pub member_pid: Option<i32>,
    /// Number of processes inside it.
    pub processes: u32,
    /// A bind mount of it (e.g. /run/netns/NAME).
    pub mount_point: Option<Vec<u8>>,
    /// An fd that pins it: (pid, fd).
    pub pinning_fd: Option<(i32, i32)>,
    /// Socket inodes its processes hold.
    pub held: Vec<u64>,
}

impl NamespaceHandle {
    fn pinned(&self) -> bool {
        self.mount_point.is_some() || self.pinning_fd.is_some()
    }

    /// Opens the namespace file, trying the member process first.
    fn open(&self, proc_dir: BorrowedFd<'_>) -> Option<OwnedFd> {
        if let Some(pid) = self.member_pid {
            let path = NumName::new("", pid as u64);
            if let Ok(pid_dir) = open_dir(proc_dir, path.as_str())
                && let Ok(fd) = open_file(pid_dir.as_fd(), "ns/net")
            {
                return Some(fd);
            }
        }
        if let Some((pid, fd)) = self.pinning_fd {
            let path = format!("{pid}/fd/{fd}");
            if let Ok(fd) = open_file(proc_dir, &path) {
                return Some(fd);
            }
        }
        let mount_point = std::str::from_utf8(self.mount_point.as_deref()?).ok()?;
        open_file(rustix::fs::CWD, mount_point).ok()
    }
}

/// The result of reading every namespace.
pub(crate) struct NamespaceTables {
    pub infos: Vec<NetnsInfo>,
    pub tables: BTreeMap<u64, NetnsTable>,
    /// Namespaces whose tables are those of an earlier scan: nothing suggested a change.
    pub reused: u64,
    /// Namespaces due a read that waited for the next scan (the budget was spent).
    pub deferred: u64,
}

/// The agent's own namespace's tables, read on the calling thread. It needs nothing from the
/// process walk, so the scanner runs it alongside.
pub(crate) struct OwnTables(Read);

/// Reads the namespace the calling thread is in.
pub(crate) fn read_own_namespace(proc_dir: BorrowedFd<'_>, interface: TableInterface) -> OwnTables {
    OwnTables(read_current_namespace(proc_dir, &mut Vec::new(), interface))
}

/// Every table of the namespace the calling thread is in, read as a scan reads it (sock_diag,
/// with the text tables it does not cover), for a look between scans.
pub(crate) fn read_calling_thread_tables(proc_dir: BorrowedFd<'_>) -> NetnsTable {
    read_current_namespace(proc_dir, &mut Vec::new(), TableInterface::SockDiag).0
}

/// The unix table alone of the namespace the calling thread is in: what a look needs for a new
/// socketpair, without the inet dumps' walk of the TCP hash.
pub(crate) fn read_calling_thread_unix_table(proc_dir: BorrowedFd<'_>) -> NetnsTable {
    let mut table = NetnsTable::default();
    let dumped =
        SockDiag::open().is_ok_and(|mut diag| dump_with_retry(&mut table, |t| diag.dump_unix(t)));
    if !dumped {
        let net_dir = open_dir(proc_dir, "thread-self/net");
        text_fallback(net_dir.as_ref().ok(), DIAG_COVERED[8], &mut Vec::new(), &mut table);
    }
    table
}

/// Reads the tables of the namespaces in `handles` other than `own` (whose tables were read
/// already) that `cache` says are due, within its budget; the others keep their last tables.
pub(crate) fn read_all_namespaces(
    proc_dir: BorrowedFd<'_>,
    own: u64,
    own_tables: OwnTables,
    handles: &BTreeMap<u64, NamespaceHandle>,
    foreign: ForeignReads<'_>,
    can_setns: bool,
    interface: TableInterface,
) -> NamespaceTables {
    let ForeignReads { cache, budget, progress } = foreign;
    let mut buf = Vec::new();
    let mut tables = BTreeMap::new();
    let mut infos = Vec::new();
    let (mut reused, mut deferred) = (0, 0);

    let own_handle = handles.get(&own).cloned().unwrap_or_default();
    let (table, read, ports) = own_tables.0;
    infos.push(info(own, &own_handle, read, ports, table.time_wait));
    tables.insert(own, table);

    let foreign = handles
        .iter()
        .filter(|(ns, _)| **ns != own)
        .map(|(ns, h)| (*ns, h.member_pid, h.held.as_slice()));
    let due = cache.due(proc_dir, foreign, &mut buf);
    let start = Instant::now();
    let deadline =
        |why: Why| budget.map(|b| start + if why.changed() { b.changed } else { b.unchanged });
    let in_time = |why: Why| deadline(why).is_none_or(|d| Instant::now() < d);
    let mut fresh: BTreeMap<u64, Read> = BTreeMap::new();
    if can_setns && !due.is_empty() {
        let wanted: Vec<(u64, NamespaceHandle, Option<Instant>)> =
            due.iter().map(|d| (d.ns, handles[&d.ns].clone(), deadline(d.why))).collect();
        fresh = read_by_setns(proc_dir, &wanted, interface);
        progress.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    for d in due {
        let handle = &handles[&d.ns];
        let done = match fresh.remove(&d.ns) {
            Some(done) => Some(done),
            None if in_time(d.why) => {
                progress.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Some(read_through_member(proc_dir, handle, &mut buf))
            }
            None => None,
        };
        if let Some(done) = done {
            let ns = d.ns;
            cache.store(d, &done, &handle.held);
            let (table, read, ports) = done;
            infos.push(info(ns, handle, read, ports, table.time_wait));
            tables.insert(ns, table);
        } else if d.why.changed() {
            deferred += 1;
        }
    }
    let waiting: Vec<(&u64, &NamespaceHandle)> =
        handles.iter().filter(|(ns, _)| **ns != own && !tables.contains_key(*ns)).collect();
    for (ns, handle) in waiting {
        let (table, read, ports) =
            cache.reuse(*ns).unwrap_or((NetnsTable::default(), TableRead::Unreadable, None));
        reused += 1;
        let mut info = info(*ns, handle, read, ports, table.time_wait);
        info.reused = true;
        infos.push(info);
        tables.insert(*ns, table);
    }
    cache.retain(|ns| handles.contains_key(&ns));
    infos.sort_by_key(|i| i.inode);
    NamespaceTables { infos, tables, reused: reused - deferred, deferred }
}

/// What reading foreign namespaces keeps across scans and may spend.
pub(crate) struct ForeignReads<'a> {
    /// Their tables as last read.
    pub cache: &'a mut NamespaceCache,
    /// Wall time this scan may spend on them (none: read them all).
    pub budget: Option<NamespaceBudget>,
    /// Moved at every namespace read.
    pub progress: &'a std::sync::atomic::AtomicU64,
}

/// A namespace's tables, how they were read, and its ephemeral port range.
pub(crate) type Read = (NetnsTable, TableRead, Option<(u16, u16)>);

fn info(
    inode: u64,
    handle: &NamespaceHandle,
    tables: TableRead,
    ports: Option<(u16, u16)>,
    time_wait: u64,
) -> NetnsInfo {
    NetnsInfo {
        inode,
        tables,
        processes: handle.processes,
        pinned: handle.pinned(),
        ephemeral_ports: ports,
        time_wait,
        reused: false,
    }
}

/// Dumps the namespace the calling thread is in.
fn read_current_namespace(
    proc_dir: BorrowedFd<'_>,
    buf: &mut Vec<u8>,
    interface: TableInterface,
) -> Read {
    let mut table = NetnsTable::default();
    let net_dir = open_dir(proc_dir, "thread-self/net");
    let diag = match interface {
        TableInterface::SockDiag => SockDiag::open(),
        TableInterface::ProcNet => Err(std::io::ErrorKind::Unsupported.into()),
    };
    let read = match diag {
        Ok(mut diag) => {
            dump_diag_tables(&mut diag, net_dir.as_ref().ok(), buf, &mut table);
            TableRead::SockDiag
        }
        Err(_) => match &net_dir {
            Ok(dir) => {
                for kind in DIAG_COVERED {
                    if read_text_table(dir.as_fd(), kind, buf, &mut table).is_err() {
                        table.errors += 1;
                    }
                }
                TableRead::ProcNet
            }
            Err(_) => TableRead::Unreadable,
        },
    };
    if let Ok(dir) = &net_dir {
        for kind in TEXT_ONLY {
            if read_text_table(dir.as_fd(), kind, buf, &mut table).is_err() {
                table.errors += 1;
            }
        }
    }
    let ports = open_file(proc_dir, "sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|fd| {
            buf.clear();
            read_all(fd.as_fd(), buf, 64).ok().map(|_| parse_port_range(buf))
        })
        .flatten();
    (table, read, ports)
}

/// All sock_diag tables; a table the kernel refuses (udplite compiled out, a diag module that
/// cannot load) falls back to its text file. A dump the kernel flags as inconsistent is retried
/// once, after its first attempt's rows are rolled back so they are not counted twice.
fn dump_diag_tables(
    diag: &mut SockDiag,
    net_dir: Option<&OwnedFd>,
    buf: &mut Vec<u8>,
    table: &mut NetnsTable,
) {
    let mut tcp_by_diag = true;
    for (index, (family, number, protocol)) in INET_TABLES.iter().enumerate() {
        let dumped = dump_with_retry(table, |t| diag.dump_inet(*family, *number, protocol, t));
        if !dumped {
            tcp_by_diag &= *protocol != crate::model::Protocol::Tcp;
            text_fallback(net_dir, DIAG_COVERED[index], buf, table);
        }
    }
    // The dumps leave TIME_WAIT out; count it from sockstat (v4 and v6 together), unless a TCP
    // table came from text, whose TIME_WAIT rows were counted one by one.
    if tcp_by_diag && let Some(dir) = net_dir {
        match read_record(dir.as_fd(), "sockstat", buf, 4096) {
            Ok(_) => table.time_wait += parse_sockstat_time_wait(buf).unwrap_or(0),
            Err(_) => table.errors += 1,
        }
    }
    if !dump_with_retry(table, |t| diag.dump_unix(t)) {
        text_fallback(net_dir, DIAG_COVERED[8], buf, table);
    }
}

fn dump_with_retry(
    table: &mut NetnsTable,
    mut dump: impl FnMut(&mut NetnsTable) -> std::io::Result<DumpEnd>,
) -> bool {
    // Rows go straight into the namespace's table; a dump to redo is rolled back first.
    let mark = table.mark();
    match dump(table) {
        Ok(DumpEnd::Complete) => true,
        Ok(DumpEnd::Interrupted) => {
            table.roll_back(mark);
            table.interrupted += 1;
            match dump(table) {
                Ok(_) => true,
                Err(_) => {
                    table.roll_back(mark);
                    false
                }
            }
        }
        Err(_) => {
            table.roll_back(mark);
            false
        }
    }
}

fn text_fallback(
    net_dir: Option<&OwnedFd>,
    kind: super::text_tables::TextTable,
    buf: &mut Vec<u8>,
    table: &mut NetnsTable,
) {
    match net_dir {
        Some(dir) if read_text_table(dir.as_fd(), kind, buf, table).is_ok() => {}
        _ => table.errors += 1,
    }
}

/// The `tw` count of /proc/net/sockstat's `TCP:` line.
fn parse_sockstat_time_wait(text: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(text).ok()?;
    let tcp = text.lines().find_map(|l| l.strip_prefix("TCP:"))?;
    let mut words = tcp.split_whitespace();
    while let Some(word) = words.next() {
        if word == "tw" {
            return words.next()?.parse().ok();
        }
    }
    None
}

/// Enters each namespace from a worker thread and dumps it there, each unless its deadline has
/// passed.
fn read_by_setns(
    proc_dir: BorrowedFd<'_>,
    others: &[(u64, NamespaceHandle, Option<Instant>)],
    interface: TableInterface,
) -> BTreeMap<u64, Read> {
    let opened: Vec<(u64, OwnedFd, Option<Instant>)> =
        others.iter().filter_map(|(ns, h, d)| Some((*ns, h.open(proc_dir)?, *d))).collect();
    read_opened(proc_dir, opened, interface)
}

/// Dumps namespaces no process is in and nothing mounts, reached through a socket in each (see
/// `unlisted`): what a scan knows of them is their tables alone.
pub(crate) fn read_unpinned(
    proc_dir: BorrowedFd<'_>,
    namespaces: Vec<(u64, OwnedFd)>,
    interface: TableInterface,
) -> Vec<(NetnsInfo, NetnsTable)> {
    let opened = namespaces.into_iter().map(|(ns, fd)| (ns, fd, None)).collect();
    read_opened(proc_dir, opened, interface)
        .into_iter()
        .map(|(ns, (table, read, ports))| {
            let info = info(ns, &NamespaceHandle::default(), read, ports, table.time_wait);
            (info, table)
        })
        .collect()
}

fn read_opened(
    proc_dir: BorrowedFd<'_>,
    opened: Vec<(u64, OwnedFd, Option<Instant>)>,
    interface: TableInterface,
) -> BTreeMap<u64, Read> {
    let proc_fd = match rustix::io::fcntl_dupfd_cloexec(proc_dir, 0) {
        Ok(fd) => fd,
        Err(_) => return BTreeMap::new(),
    };
    let worker = std::thread::Builder::new().name("sockwatch-netns".into()).spawn(move || {
        let mut buf = Vec::new();
        let mut done = BTreeMap::new();
        for (ns, fd, deadline) in opened {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                continue;
            }
            if rustix::thread::move_into_link_name_space(
                fd.as_fd(),
                Some(LinkNameSpaceType::Network),
            )
            .is_ok()
            {
                done.insert(ns, read_current_namespace(proc_fd.as_fd(), &mut buf, interface));
            }
        }
        done
    });
    match worker.map(|w| w.join()) {
        Ok(Ok(done)) => done,
        _ => BTreeMap::new(),
    }
}

/// Reads /proc/<member>/net text tables: all that is possible without entering the namespace.
fn read_through_member(
    proc_dir: BorrowedFd<'_>,
    handle: &NamespaceHandle,
    buf: &mut Vec<u8>,
) -> Read {
    let mut table = NetnsTable::default();
    let Some(pid) = handle.member_pid else {
        return (table, TableRead::Unreadable, None);
    };
    let path = NumName::new("", pid as u64);
    let Ok(net_dir) = open_dir(proc_dir, path.as_str()).and_then(|d| open_dir(d.as_fd(), "net"))
    else {
        return (table, TableRead::Unreadable, None);
    };
    for kind in DIAG_COVERED.into_iter().chain(TEXT_ONLY) {
        if read_text_table(net_dir.as_fd(), kind, buf, &mut table).is_err() {
            table.errors += 1;
        }
    }
    (table, TableRead::ProcNet, None)
}

fn parse_port_range(buf: &[u8]) -> Option<(u16, u16)> {
    let mut fields = super::parse::fields(buf.trim_ascii());
    let low = super::parse::parse_dec(" port", fields.next()?).ok()?;
    let high = super::parse::parse_dec("port", fields.next()?).ok()?;
    Some((u16::try_from(low).ok()?, u16::try_from(high).ok()?))
}

#[cfg(test)]
mod sockstat_tests {
    #[test]
    fn time_wait_comes_from_the_tcp_line() {
        let text =
            b"sockets: used 123\nTCP: inuse 5 orphan 0 tw 17 alloc 9 mem 2\nUDP: inuse 1 mem 0\n";
        assert_eq!(super::parse_sockstat_time_wait(text), Some(17));
        assert_eq!(super::parse_sockstat_time_wait(b"UDP: inuse 1\n"), None);
        assert_eq!(super::parse_sockstat_time_wait(b"TCP: inuse 5 tw"), None);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_look_at_a_new_socketpair_reads_the_unix_table_alone() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let inode = |fd: &dyn rustix::fd::AsFd| rustix::fs::fstat(fd).unwrap().st_ino;
        let proc_dir = super::open_dir(rustix::fs::CWD, "/proc").unwrap();
        let table = super::read_calling_thread_unix_table(rustix::fd::AsFd::as_fd(&proc_dir));
        let row = |i: u64| table.rows.iter().find(|r| r.key.inode == i);
        let peer = |i: u64| row(i).and_then(|r| r.unix.as_ref()).and_then(|u| u.peer);
        assert_eq!(peer(inode(&a)), Some(inode(&b)));
        assert_eq!(peer(inode(&b)), Some(inode(&a)));
        assert!(row(inode(&listener)).is_none(), "no inet table read");
        assert!(table.rows.iter().all(|r| r.unix.is_some()));
    }

    #[test]
    fn port_range() {
        assert_eq!(super::parse_port_range(b"32768\t60999\n"), Some((32768, 60999)));
        assert_eq!(super::parse_port_range(b"1 99999"), None);
        assert_eq!(super::parse_port_range(b""), None);
    }
}
