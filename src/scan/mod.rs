//! Everything that touches /proc and netlink: one `Scanner::scan()` produces a `model::Snapshot`
//! of every process, fd, and every network namespace's socket tables, joined by socket inode.
//!
//! Invariants:
//! - Races are normal. A process that exits mid-scan, ENOENT, EACCES are counted in
//!   `Coverage`, never an error for the scan.
//! - Each namespace's tables are read once per scan, and socket inodes are looked up in one
//!   index over all of them: a process can hold a socket its own namespace does not list.
//! - Every holder of a socket is kept; a held socket in no table is kept as unresolved; a row
//!   with inode 0 is counted, never keyed.
//! - Pure parsers live in `parse` (fuzzed, property-tested); I/O lives beside it.

mod binaries;
mod containers;
mod context;
mod destroys;
mod endpoint_lookup;
mod examine;
mod exec_events;
mod join;
mod netns;
mod netns_cache;
pub mod parse;
mod privileges;
mod proc_mounts;
mod process;
mod procfs;
mod sockdiag;
mod table;
mod text_tables;
mod unlisted;

use crate::model::{Coverage, Fd, FdTarget, Snapshot};
use binaries::{Catalogue, HostRoot};
pub use destroys::{Destroyed, MAX_WATCHED_NAMESPACES, SocketDestroys, Watching};
pub use examine::{Examiner, Grabbed, Neighbourhood, Skipped};
pub use exec_events::{ExecEvents, READ_TIMEOUT};
use netns::NamespaceHandle;
pub use netns::TableInterface;
pub use netns_cache::NamespaceBudget;
use process::{ProcOutcome, ProcessReader};
use procfs::{NumName, namespace_inode, open_dir, read_file};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::RawDir;
use std::collections::BTreeMap;
use std::mem::MaybeUninit;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// Why a scan could not start at all (per-process trouble never ends up here).
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// The proc file system could not be opened.
    #[error("cannot open {path}: {source}")]
    ProcRoot {
        /// The path tried.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Below this many processes a second thread costs more than it saves.
const PARALLEL_MIN_PROCESSES: usize = 256;
/// Pids a reader thread claims at a time: small enough to balance a skewed host (one process can
/// hold thousands of fds), large enough to keep the shared cursor cold.
const PIDS_PER_CLAIM: usize = 16;

/// Takes snapshots of the host. Keeps buffers and caches between scans.
pub struct Scanner {
    root: PathBuf,
    proc_dir: OwnedFd,
    readers: Vec<ProcessReader>,
    interface: TableInterface,
    seq: u64,
    dirents: Vec<MaybeUninit<u8>>,
    file: Vec<u8>,
    /// The host's root, for reference files; `None` when not even `/` opened.
    host_root: Option<Arc<HostRoot>>,
    /// The host's shells, interpreters and network tools, and when they were last listed.
    catalogue: Arc<Catalogue>,
    catalogue_listed: Option<Instant>,
    /// Foreign namespaces' tables as last read.
    namespaces: netns_cache::NamespaceCache,
    /// Wall time a scan may spend reading foreign namespaces (none: all of them).
    namespace_budget: Option<NamespaceBudget>,
    /// Bumped as a scan advances (every few processes, every namespace read).
    progress: Arc<std::sync::atomic::AtomicU64>,
    /// Held sockets no table lists, already looked up.
    unlisted: unlisted::Unlisted,
    /// Alert context, and the account files and digests it read.
    context: context::ContextReader,
    /// Which container each process is in.
    containers: containers::Containers,
}

/// How often the host's program directories are listed again (packages change binaries).
const CATALOGUE_REFRESH: std::time::Duration = std::time::Duration::from_secs(300);

impl Scanner {
    /// A scanner over the host's /proc.
    pub fn new() -> Result<Self, ScanError> {
        Self::with_proc_root(Path::new("/proc"))
    }

    /// A scanner over a proc file system mounted elsewhere (a private procfs instance, which
    /// bind mounts over /proc/<pid> in the host's mount namespace cannot fool).
    pub fn with_proc_root(root: &Path) -> Result<Self, ScanError> {
        let path = root.to_str().unwrap_or("/proc");
        let proc_dir = open_dir(rustix::fs::CWD, path)
            .map_err(|e| ScanError::ProcRoot { path: root.to_path_buf(), source: e.into() })?;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(2));
        let host_root = HostRoot::open(proc_dir.as_fd()).map(Arc::new);
        let containers = containers::Containers::new(proc_dir.as_fd());
        let mut scanner = Scanner {
            root: root.to_path_buf(),
            proc_dir,
            readers: (0..threads).map(|_| ProcessReader::new()).collect(),
            interface: TableInterface::default(),
            seq: 0,
            dirents: vec![MaybeUninit::uninit(); 64 * 1024],
            file: Vec::new(),
            host_root,
            catalogue: Arc::default(),
            catalogue_listed: None,
            namespaces: Default::default(),
            namespace_budget: None,
            progress: Arc::default(),
            unlisted: Default::default(),
            context: Default::default(),
            containers,
        };
        // Listed before the first scan, so that it does not delay that scan past the agent's
        // start (hashing the host's interpreters takes a while).
        scanner.refresh_catalogue();
        Ok(scanner)
    }

    /// Names, audit identity and digests for an alert's subject and ancestors (the digest of
    /// the subject's executable and its parent's), read now: a process that has gone since the
    /// snapshot says so in `unavailable`.
    pub fn alert_context(
        &mut self,
        alert: &mut crate::model::Alert,
    ) -> Vec<crate::model::ProcessContext> {
        self.complete_lineage(alert);
        let proc_dir = self.proc_dir.as_fd();
        let lineage = alert.subject.iter().chain(&alert.ancestors);
        lineage.enumerate().map(|(at, p)| self.context.read(proc_dir, p, at < 2)).collect()
    }

    /// Reads the ancestors an alert's snapshot did not have, up to pid 1 or the subject's pid
    /// namespace's init: a look at an exec stops below pid 1, which rules never need but a
    /// responder reading the chain does.
    fn complete_lineage(&mut self, alert: &mut crate::model::Alert) {
        const MAX_ANCESTORS: usize = 64;
        let Some(subject) = &alert.subject else { return };
        let own_pidns = subject.pidns;
        let mut coverage = Coverage::default();
        while alert.ancestors.len() < MAX_ANCESTORS {
            let last = alert.ancestors.last().unwrap_or(subject);
            let Ok(ppid) = u32::try_from(last.ppid) else { break };
            if ppid == 0 || last.key.pid == 1 {
                break;
            }
            let mut read = Vec::new();
            let reader = &mut self.readers[0];
            read_one(self.proc_dir.as_fd(), ppid, reader, &mut coverage, &mut read, None);
            let Some(parent) = read.pop() else { break };
            if let (Some(theirs), Some(own)) = (parent.pidns, own_pidns)
                && theirs != own
            {
                break;
            }
            alert.ancestors.push(parent);
        }
    }

    /// Where the container runtimes' state files are (`[containers]`).
    pub fn set_container_sources(&mut self, sources: crate::model::ContainerSources) {
        self.containers.set_sources(sources);
    }

    /// Names the container of each process of a look (a scan's snapshot has them already).
    pub fn identify_containers(&mut self, snapshot: &mut Snapshot) {
        for process in &mut snapshot.processes {
            self.containers.identify(self.proc_dir.as_fd(), process);
        }
    }

    /// Reads processes on up to `threads` threads (at least 1) when the host is large. An agent
    /// that must stay in the background sets 1.
    pub fn set_threads(&mut self, threads: usize) {
        self.readers.resize_with(threads.max(1), ProcessReader::new);
    }

    /// Bounds the wall time a scan spends reading foreign network namespaces: beyond it they
    /// keep their last tables until a later scan (those that may have changed are counted as
    /// `namespaces_deferred`). Unbounded by default (a one-off scan reads everything).
    pub fn set_namespace_budget(&mut self, budget: NamespaceBudget) {
        self.namespace_budget = Some(budget);
    }

    /// A counter that moves while a scan makes progress: a watchdog fed from it tells a long
    /// scan from a hung one.
    pub fn progress(&self) -> Arc<std::sync::atomic::AtomicU64> {
        self.progress.clone()
    }

    /// How socket tables are read (sock_diag by default).
    pub fn set_table_interface(&mut self, interface: TableInterface) {
        self.interface = interface;
    }

    /// Whether reference files come from pid 1's root (false: the agent's own root stands in,
    /// as pid 1's was refused), and how many known binaries that root holds.
    pub fn host_root(&mut self) -> (bool, usize) {
        self.refresh_catalogue();
        (self.host_root.as_ref().is_some_and(|r| r.pid1), self.catalogue.len())
    }

    fn refresh_catalogue(&mut self) {
        let stale = self.catalogue_listed.is_none_or(|at| at.elapsed() >= CATALOGUE_REFRESH);
        if let (true, Some(root)) = (stale, &self.host_root) {
            self.catalogue = Arc::new(Catalogue::build(root, Some(&self.catalogue)));
            self.catalogue_listed = Some(Instant::now());
        }
    }

    /// A reader for looks between scans (see `examine`), with its own handle on the proc file
    /// system and its own caches, for another thread.
    pub fn examiner(&self) -> std::io::Result<Examiner> {
        let proc_dir = open_dir(rustix::fs::CWD, self.root.to_str().unwrap_or("/proc"))?;
        Ok(Examiner::new(self.root.clone(), proc_dir, self.host_root.clone()))
    }

    /// What looks between scans need from a scan: its snapshot and the fds it held (which the
    /// snapshot may have dropped since).
    pub fn neighbourhood(&self, snapshot: Arc<Snapshot>, fds: &[Fd]) -> Neighbourhood {
        Neighbourhood::new(snapshot, fds, self.catalogue.clone())
    }

    /// The privileges a scan would run with.
    pub fn privileges(&mut self) -> crate::model::Privileges {
        match read_file(self.proc_dir.as_fd(), "thread-self/status", &mut self.file, 16 * 1024) {
            Ok(_) => privileges::privileges_from_status(&self.file),
            Err(_) => crate::model::Privileges::default(),
        }
    }

    /// One snapshot of the host.
    pub fn scan(&mut self) -> Snapshot {
        let started = Instant::now();
        let taken_at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.seq += 1;
        let privileges = self.privileges();
        self.refresh_catalogue();
        let proc_dir = self.proc_dir.as_fd();
        let own_netns = namespace_inode(proc_dir, "thread-self/ns/net").unwrap_or(0);
        let pids = list_pids(proc_dir, &mut self.dirents);
        let readers = &mut self.readers;
        let (own_tables, (mut coverage, mut processes, mut fds)) = std::thread::scope(|scope| {
            // A thread starts in its creator's network namespace: this one dumps the agent's own.
            let interface = self.interface;
            let own = scope.spawn(move || netns::read_own_namespace(proc_dir, interface));
            let known = (&self.catalogue, self.host_root.as_ref());
            let walked = read_processes(proc_dir, &pids, readers, known, &self.progress);
            (own.join().expect("own namespace reader"), walked)
        });

        let handles = namespace_handles(proc_dir, &mut self.file, &processes, &fds);
        let namespaces = netns::read_all_namespaces(
            proc_dir,
            own_netns,
            own_tables,
            &handles,
            netns::ForeignReads {
                cache: &mut self.namespaces,
                budget: self.namespace_budget,
                progress: &self.progress,
            },
            privileges.sys_admin,
            self.interface,
        );
        coverage.namespaces_reused = namespaces.reused;
        coverage.namespaces_deferred = namespaces.deferred;
        let mut sockets = join::join_sockets(&self.root, namespaces.tables, &fds, &mut coverage);
        let mut infos = namespaces.infos;
        self.unlisted.resolve(
            proc_dir,
            &mut sockets,
            &mut infos,
            privileges.sys_admin,
            self.interface,
            &mut coverage,
        );
        for info in &infos {
            coverage.namespaces_seen += 1;
            match info.tables {
                crate::model::TableRead::SockDiag => coverage.namespaces_sock_diag += 1,
                crate::model::TableRead::ProcNet => coverage.namespaces_proc_net += 1,
                crate::model::TableRead::Unreadable => coverage.namespaces_unreadable += 1,
            }
        }
        processes.sort_by_key(|p| p.key);
        self.containers.identify_all(proc_dir, &mut processes);
        fds.sort_by_key(|f| (f.proc, f.tid, f.num));
        let proc_mounts = proc_mounts::proc_mounts(
            proc_dir,
            &processes,
            namespace_inode(proc_dir, "thread-self/ns/pid"),
            &mut self.file,
            &mut coverage,
        );
        coverage.duration_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        Snapshot {
            seq: self.seq,
            taken_at_ms,
            privileges,
            own_netns,
            namespaces: infos,
            processes,
            fds,
            sockets,
            proc_mounts,
            coverage,
        }
    }
}

/// Reads every pid, on as many threads as there are readers when the host is large, and merges
/// what they found.
fn read_processes(
    proc_dir: BorrowedFd<'_>,
    pids: &[u32],
    readers: &mut [ProcessReader],
    (catalogue, host_root): (&Arc<Catalogue>, Option<&Arc<HostRoot>>),
    progress: &std::sync::atomic::AtomicU64,
) -> (Coverage, Vec<crate::model::Process>, Vec<Fd>) {
    let cursor = AtomicUsize::new(0);
    let threads = if pids.len() >= PARALLEL_MIN_PROCESSES { readers.len() } else { 1 };
    let work = |reader: &mut ProcessReader| {
        // Sized from what this reader found last scan: growing them by doubling moves every
        // process and fd several times a scan.
        let (processes, fds) = reader.last_counts();
        let mut found = (
            Coverage::default(),
            Vec::with_capacity(processes + processes / 8),
            Vec::with_capacity(fds + fds / 8),
        );
        loop {
            let start = cursor.fetch_add(PIDS_PER_CLAIM, Ordering::Relaxed);
            if start >= pids.len() {
                reader.found(found.1.len(), found.2.len());
                return found;
            }
            progress.fetch_add(1, Ordering::Relaxed);
            let end = (start + PIDS_PER_CLAIM).min(pids.len());
            for &pid in &pids[start..end] {
                let fds = Some(&mut found.2);
                read_one(proc_dir, pid, reader, &mut found.0, &mut found.1, fds);
            }
        }
    };
    readers.iter_mut().for_each(|r| r.begin_scan(catalogue, host_root));
    let (first, rest) = readers.split_first_mut().expect("at least one reader");
    let mut results = std::thread::scope(|scope| {
        let helpers: Vec<_> =
            rest.iter_mut().take(threads - 1).map(|r| scope.spawn(|| work(r))).collect();
        let mut results = vec![work(first)];
        results.extend(helpers.into_iter().map(|h| h.join().expect("reader thread")));
        results
    });
    let (mut coverage, mut processes, mut fds) = results.remove(0);
    for (more_coverage, more_processes, more_fds) in results {
        coverage.add_process_counts(&more_coverage);
        processes.extend(more_processes);
        fds.extend(more_fds);
    }
    // A parent the listing lacks but a lookup finds is hidden from the listing (a rootkit's
    // getdents filter): it is read like the others, and counted.
    for pid in unlisted_parents(pids, &processes) {
        let before = processes.len();
        read_one(proc_dir, pid, &mut readers[0], &mut coverage, &mut processes, Some(&mut fds));
        if processes.len() > before {
            coverage.processes_unlisted += 1;
            coverage.unlisted_pids.push(pid as i32);
        } else {
            // Gone since, or never there: not a process the listing hid.
            coverage.processes_vanished = coverage.processes_vanished.saturating_sub(1);
        }
    }
    readers.iter_mut().for_each(ProcessReader::end_scan);
    (coverage, processes, fds)
}

/// The parents of listed processes that the listing lacks (pid 0 is no process). A process that
/// exits after the listing leaves children whose parent is then their reaper, which is listed:
/// what remains is a parent the listing did not show.
fn unlisted_parents(listed: &[u32], processes: &[crate::model::Process]) -> Vec<u32> {
    let listed: rustc_hash::FxHashSet<u32> = listed.iter().copied().collect();
    let mut unlisted: Vec<u32> = processes
        .iter()
        .filter_map(|p| u32::try_from(p.ppid).ok())
        .filter(|ppid| *ppid != 0 && !listed.contains(ppid))
        .collect();
    unlisted.sort_unstable();
    unlisted.dedup();
    unlisted
}

/// Reads one process, with its fds when given a list for them.
fn read_one(
    proc_dir: BorrowedFd<'_>,
    pid: u32,
    reader: &mut ProcessReader,
    coverage: &mut Coverage,
    processes: &mut Vec<crate::model::Process>,
    mut fds: Option<&mut Vec<Fd>>,
) {
    let name = NumName::new("", u64::from(pid));
    let pid_dir = match open_dir(proc_dir, name.as_str()) {
        Ok(dir) => dir,
        Err(e) => {
            match procfs::Failure::of(e) {
                procfs::Failure::Denied => coverage.processes_denied += 1,
                _ => coverage.processes_vanished += 1,
            }
            return;
        }
    };
    let fds_before = fds.as_ref().map_or(0, |f| f.len());
    match reader.read(pid_dir.as_fd(), coverage, fds.as_deref_mut()) {
        ProcOutcome::Read(process) => {
            coverage.processes_seen += 1;
            coverage.processes_denied += u64::from(process.denied);
            processes.push(*process);
        }
        ProcOutcome::Vanished => {
            fds.iter_mut().for_each(|f| f.truncate(fds_before));
            coverage.processes_vanished += 1;
        }
        ProcOutcome::Denied => {
            fds.iter_mut().for_each(|f| f.truncate(fds_before));
            coverage.processes_denied += 1;
        }
    }
}

fn list_pids(proc_dir: BorrowedFd<'_>, dirents: &mut [MaybeUninit<u8>]) -> Vec<u32> {
    let mut pids = Vec::new();
    let Ok(dir) = open_dir(proc_dir, ".") else { return pids };
    let mut entries = RawDir::new(dir.as_fd(), dirents);
    while let Some(Ok(entry)) = entries.next() {
        if let Ok(pid) = parse::parse_dec("pid", entry.file_name().to_bytes())
            && let Ok(pid) = u32::try_from(pid)
        {
            pids.push(pid);
        }
    }
    pids
}

/// Every network namespace: those of processes, those pinned by an fd, and those pinned by a bind
/// mount (`ip netns add`) with possibly no process at all.
fn namespace_handles(
    proc_dir: BorrowedFd<'_>,
    file: &mut Vec<u8>,
    processes: &[crate::model::Process],
    fds: &[Fd],
) -> BTreeMap<u64, NamespaceHandle> {
    let mut handles: BTreeMap<u64, NamespaceHandle> = BTreeMap::new();
    let mut netns_of: rustc_hash::FxHashMap<i32, u64> = Default::default();
    for process in processes {
        if let Some(ns) = process.netns {
            let handle = handles.entry(ns).or_default();
            handle.processes += 1;
            handle.member_pid.get_or_insert(process.key.pid);
            netns_of.insert(process.key.pid, ns);
        }
    }
    for fd in fds {
        if let FdTarget::Socket { inode } = fd.target
            && let Some(handle) = netns_of.get(&fd.proc.pid).and_then(|ns| handles.get_mut(ns))
        {
            handle.held.push(inode);
        }
        if let FdTarget::Namespace { kind, inode } = &fd.target
            && kind.as_bytes() == b"net"
        {
            handles.entry(*inode).or_default().pinning_fd.get_or_insert((fd.proc.pid, fd.num));
        }
    }
    if read_file(proc_dir, "thread-self/mountinfo", file, 16 << 20).is_ok() {
        for mount in parse::parse_nsfs_mounts(file) {
            if mount.kind == b"net" {
                handles
                    .entry(mount.inode)
                    .or_default()
                    .mount_point
                    .get_or_insert(mount.mount_point);
            }
        }
    }
    handles
}

#[cfg(test)]
mod listing_tests {
    use crate::model::fixture::Builder;

    #[test]
    fn parents_the_listing_lacks_are_the_ones_to_look_up() {
        let mut world = Builder::new();
        for (pid, ppid) in [(1, 0), (2, 0), (40, 1), (41, 666), (42, 666)] {
            world.process(pid, "p");
            world.snapshot_mut().processes.last_mut().unwrap().ppid = ppid;
        }
        let processes = &world.snapshot_mut().processes;
        assert_eq!(super::unlisted_parents(&[1, 2, 40, 41, 42], processes), [666]);
        assert!(super::unlisted_parents(&[1, 2, 40, 41, 42, 666], processes).is_empty());
    }
}
