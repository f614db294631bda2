//! Reads one process: identity, credentials, exe, argv, namespaces, and its fd table(s).

use super::binaries::{Catalogue, HostRoot, Identifier};
use super::parse::{
    FdLink, RingFiles, StatFields, StatusIds, fdinfo_field, io_uring_files, parse_cgroup,
    parse_dec, parse_fd_link, parse_stat, parse_status_ids, split_cmdline,
};
use super::procfs::{
    Failure, NumName, namespace_inode, open_dir, read_file, read_link, read_record, stat_follow,
    stat_link,
};
use crate::model::{
    AccessMode, Coverage, Exe, Fd, FdTarget, Identity, ProcKey, Process, PtyId, RawText,
};
use rustc_hash::FxHashMap;
use rustix::fd::{AsFd, BorrowedFd};
use rustix::fs::{FileType, RawDir};
use std::collections::HashMap;
use std::mem::MaybeUninit;
use std::sync::Arc;

/// argv beyond this is cut (and flagged): a process can present megabytes.
const ARGV_LIMIT: usize = 64 * 1024;
/// A ring's fdinfo lists pending submissions and completions before its files, a line each;
/// a MiB holds some 40k registered files after a full queue.
const RING_FDINFO_LIMIT: usize = 1 << 20;
const PTY_SLAVE_MAJORS: std::ops::RangeInclusive<u32> = 136..=143;
const TTY_MAJOR: u32 = 4;
const TTYAUX_MAJOR: u32 = 5;
const PTMX_MINOR: u32 = 2;
/// `PF_KTHREAD` in /proc/pid/stat flags (include/linux/sched.h).
const PF_KTHREAD: u32 = 0x0020_0000;

/// Scans after which remembered facts about a process are read again.
const REFRESH_SCANS: u64 = 16;

/// Facts about a known process that are not re-read every scan. Its pid namespace never changes
/// (`setns` only moves its future children); its cgroup and working directory change rarely and
/// feed output and the container id, never the fd graph, so they are re-read every
/// `REFRESH_SCANS` scans. Its credentials (/proc/pid/status, costly for the kernel to format) are
/// re-read whenever the owner of /proc/pid changes and every `REFRESH_SCANS` scans otherwise. The
/// owner is the effective uid/gid of a dumpable process and root for one that is not; a change of
/// credentials resets dumpability, so a gain of root (uid 1000 -> 0) shows at once, while a drop
/// from root (which leaves /proc/pid owned by root) shows within the refresh. Its argv is re-read
/// when anything an exec changes has changed (see `ArgvMemo`) and every `REFRESH_SCANS` scans
/// otherwise. Everything the graph and the rules' trust decisions rest on (stat, exe and its
/// inode, mount and network namespaces, every fd) is read every scan.
#[derive(Default)]
struct Remembered {
    /// (scan read at, pid namespace, cgroup, cwd).
    slow: Option<(u64, SlowFacts)>,
    /// (scan read at, owner of /proc/pid then, the ids).
    ids: Option<(u64, (u32, u32), StatusIds)>,
    argv: Option<ArgvMemo>,
    seen_at_scan: u64,
}

/// A process's argv and what it was read under. An exec maps a new stack at a randomised address
/// (so the argument area of /proc/pid/stat moves), usually renames the process and often changes
/// its binary: argv is read again when any of the three differ. With address randomisation off
/// (`setarch -R`), an exec of the same binary under the same name with arguments of the same
/// total length escapes all three until the refresh; no trust decision rests on argv (DESIGN §5).
/// A process that rewrites its own argv in place (a process title) shows at the refresh.
struct ArgvMemo {
    read_at: u64,
    area: (u64, u64),
    comm: RawText,
    exe: Option<RawText>,
    argv: Vec<RawText>,
    truncated: bool,
}

/// What the stat of a binary tells.
#[derive(Clone)]
struct Binary {
    deleted: bool,
    dev: u64,
    ino: u64,
    owner_uid: u32,
    mode: u32,
    size: u64,
    identity: Option<Identity>,
    host_file: Option<bool>,
}

#[derive(Clone)]
struct SlowFacts {
    pidns: Option<u64>,
    cgroup: Option<RawText>,
    cwd: Option<RawText>,
}

/// What reading a process gave.
pub(crate) enum ProcOutcome {
    Read(Box<Process>),
    Vanished,
    Denied,
}

/// Reusable buffers and per-scan caches for reading processes.
pub(crate) struct ProcessReader {
    file: Vec<u8>,
    link: Vec<u8>,
    dirents: Vec<MaybeUninit<u8>>,
    /// devpts `st_dev` seen from each mount namespace's /dev/pts, for /dev/ptmx masters.
    devpts_by_mntns: HashMap<u64, Option<u64>>,
    /// kcmp is compiled out on some kernels; then every thread's fd table is walked.
    kcmp_works: bool,
    /// Facts about processes seen in earlier scans (see `Remembered`).
    remembered: FxHashMap<ProcKey, Remembered>,
    /// This scan's binaries by mount namespace and linked path (see `read_exe`).
    binaries: HashMap<u64, HashMap<Box<[u8]>, Binary>>,
    /// Known binaries by file and content, and host files by path.
    identifier: Identifier,
    /// Scans begun.
    scan: u64,
    /// Processes and fds this reader found in its last scan.
    last_counts: (usize, usize),
}

impl ProcessReader {
    pub fn new() -> Self {
        ProcessReader {
            file: Vec::with_capacity(4096),
            link: vec![0; 4096],
            dirents: vec![MaybeUninit::uninit(); 32 * 1024],
            devpts_by_mntns: HashMap::new(),
            kcmp_works: true,
            remembered: FxHashMap::default(),
            binaries: HashMap::new(),
            identifier: Identifier::new(),
            scan: 0,
            last_counts: (0, 0),
        }
    }

    /// Processes and fds this reader found in its last scan.
    pub fn last_counts(&self) -> (usize, usize) {
        self.last_counts
    }

    /// Records what this reader found in the scan ending.
    pub fn found(&mut self, processes: usize, fds: usize) {
        self.last_counts = (processes, fds);
    }

    /// Marks the start of a scan, with the host's known binaries as they stand.
    pub fn begin_scan(&mut self, catalogue: &Arc<Catalogue>, host_root: Option<&Arc<HostRoot>>) {
        self.scan += 1;
        self.binaries.clear();
        self.identifier.begin_scan(catalogue, host_root);
    }

    /// Forgets processes this reader did not see in the scan just ended.
    pub fn end_scan(&mut self) {
        let scan = self.scan;
        self.remembered.retain(|_, r| r.seen_at_scan == scan);
    }

    /// The pid namespace, cgroup and cwd of a process: remembered when fresh enough, else read.
    fn slow_facts(
        &mut self,
        pid_dir: BorrowedFd<'_>,
        key: ProcKey,
        kernel_thread: bool,
    ) -> SlowFacts {
        let scan = self.scan;
        let remembered = self.remembered.entry(key).or_default();
        remembered.seen_at_scan = scan;
        if let Some((read_at, facts)) = &remembered.slow
            && scan - read_at < REFRESH_SCANS
        {
            return facts.clone();
        }
        let earlier_pidns = remembered.slow.as_ref().and_then(|(_, f)| f.pidns);
        let cgroup = read_record(pid_dir, "cgroup", &mut self.file, 16 * 1024)
            .ok()
            .and_then(|_| parse_cgroup(&self.file));
        let (pidns, cwd) = if kernel_thread {
            (None, None)
        } else {
            let cwd = read_link(pid_dir, "cwd", &mut self.link).ok().map(RawText::from);
            // Immutable for the process's life: a read that failed now (a race) keeps the old.
            (namespace_inode(pid_dir, "ns/pid").or(earlier_pidns), cwd)
        };
        let facts = SlowFacts { pidns, cgroup, cwd };
        if let Some(remembered) = self.remembered.get_mut(&key) {
            remembered.slow = Some((scan, facts.clone()));
        }
        facts
    }

    /// A process's argv and whether it was cut at `ARGV_LIMIT`: remembered while nothing an exec
    /// changes has changed (see `ArgvMemo`), else read.
    fn argv(
        &mut self,
        pid_dir: BorrowedFd<'_>,
        key: ProcKey,
        stat: &StatFields,
        exe: Option<&RawText>,
    ) -> (Vec<RawText>, bool) {
        let scan = self.scan;
        let remembered = self.remembered.entry(key).or_default();
        remembered.seen_at_scan = scan;
        if let (Some(memo), Some(area)) = (&remembered.argv, stat.arg_area)
            && memo.area == area
            && memo.comm == stat.comm
            && memo.exe.as_ref() == exe
            && scan - memo.read_at < REFRESH_SCANS
        {
            return (memo.argv.clone(), memo.truncated);
        }
        // cmdline is produced whole by one read when the buffer is larger (the kernel copies
        // the argument area in a loop), so the read that would only confirm EOF is skipped.
        let (argv, truncated) = match read_record(pid_dir, "cmdline", &mut self.file, ARGV_LIMIT) {
            Ok(truncated) => (split_cmdline(&self.file), truncated),
            Err(_) => return (Vec::new(), false),
        };
        remembered.argv = stat.arg_area.map(|area| ArgvMemo {
            read_at: scan,
            area,
            comm: stat.comm.clone(),
            exe: exe.cloned(),
            argv: argv.clone(),
            truncated,
        });
        (argv, truncated)
    }

    /// Real and effective ids: re-read when the owner of /proc/pid (the effective ids) moved or
    /// the remembered ones are old. `Err` when the process vanished.
    fn ids(&mut self, pid_dir: BorrowedFd<'_>, key: ProcKey) -> Result<Option<StatusIds>, ()> {
        let scan = self.scan;
        let owner = rustix::fs::fstat(pid_dir).ok().map(|st| (st.st_uid, st.st_gid));
        let remembered = self.remembered.entry(key).or_default();
        remembered.seen_at_scan = scan;
        if let (Some((read_at, seen_owner, ids)), Some(owner)) = (remembered.ids, owner)
            && seen_owner == owner
            && scan - read_at < REFRESH_SCANS
        {
            return Ok(Some(ids));
        }
        let ids = match read_record(pid_dir, "status", &mut self.file, 16 * 1024) {
            Ok(_) => parse_status_ids(&self.file).ok(),
            Err(e) if Failure::of(e) == Failure::Vanished => return Err(()),
            Err(_) => None,
        };
        if let (Some(ids), Some(owner), Some(remembered)) =
            (ids, owner, self.remembered.get_mut(&key))
        {
            remembered.ids = Some((scan, owner, ids));
        }
        Ok(ids)
    }

    /// Reads the process behind `pid_dir` (a dirfd of /proc/<pid>), appending its fds to `fds`.
    pub fn read(
        &mut self,
        pid_dir: BorrowedFd<'_>,
        coverage: &mut Coverage,
        fds: Option<&mut Vec<Fd>>,
    ) -> ProcOutcome {
        let stat = match read_record(pid_dir, "stat", &mut self.file, 4096) {
            Ok(_) => match parse_stat(&self.file) {
                Ok(stat) => stat,
                Err(_) => return ProcOutcome::Vanished,
            },
            Err(e) => return outcome_of(e),
        };
        let key = ProcKey { pid: stat.pid, start_ticks: stat.start_ticks };
        let kernel_thread = stat.flags & PF_KTHREAD != 0;
        let Ok(ids) = self.ids(pid_dir, key) else { return ProcOutcome::Vanished };
        let SlowFacts { pidns, cgroup, cwd } = self.slow_facts(pid_dir, key, kernel_thread);
        let mut denied = false;
        let (exe, mntns) = if kernel_thread {
            (None, None)
        } else {
            let mntns = namespace_inode(pid_dir, "ns/mnt");
            let exe = match self.read_exe(pid_dir, mntns, coverage) {
                Ok(exe) => Some(exe),
                Err(e) => {
                    denied |= Failure::of(e) == Failure::Denied;
                    None
                }
            };
            (exe, mntns)
        };
        // A kernel thread has no memory of its own, so no argv.
        let (argv, argv_truncated) = match kernel_thread {
            true => (Vec::new(), false),
            false => self.argv(pid_dir, key, &stat, exe.as_ref().map(|e| &e.path)),
        };
        let ids = ids.unwrap_or(super::parse::StatusIds { uid: 0, euid: 0, gid: 0, egid: 0 });
        let mut process = Process {
            key,
            ppid: stat.ppid,
            uid: ids.uid,
            euid: ids.euid,
            gid: ids.gid,
            egid: ids.egid,
            comm: stat.comm,
            exe,
            argv,
            argv_truncated,
            cwd,
            tty_nr: stat.tty_nr,
            sid: stat.sid,
            pgid: stat.pgid,
            netns: if kernel_thread { None } else { namespace_inode(pid_dir, "ns/net") },
            pidns,
            mntns,
            cgroup,
            container: None,
            threads: stat.threads,
            kernel_thread,
            denied: false,
        };
        // Without a list for them, the process alone (an ancestor in a look between scans).
        let (false, Some(fds)) = (kernel_thread, fds) else {
            return ProcOutcome::Read(Box::new(process));
        };

        let denied_before = coverage.fds_denied;
        match open_dir(pid_dir, "fd") {
            Ok(fd_dir) => {
                let ctx = FdContext { pid_dir, info_dir: pid_dir, proc: key, tid: None, mntns };
                self.walk_fds(fd_dir.as_fd(), &ctx, coverage, fds);
            }
            Err(e) if Failure::of(e) == Failure::Vanished => return ProcOutcome::Vanished,
            Err(_) => {
                coverage.fd_dirs_denied += 1;
                denied = true;
            }
        }
        if stat.threads > 1 {
            self.walk_private_thread_fds(pid_dir, key, mntns, coverage, fds);
        }
        process.denied = denied || coverage.fds_denied > denied_before;
        ProcOutcome::Read(Box::new(process))
    }

    /// The binary a process runs. Its stat is shared by the processes that run the same linked
    /// path in the same mount namespace during one scan (hundreds of workers run one binary): a
    /// path without the kernel's " (deleted)" suffix names a linked file, and within a scan that
    /// file is the one each of them runs. Only a binary replaced *and* executed again between
    /// two reads of one scan is described by its predecessor, for that scan.
    fn read_exe(
        &mut self,
        pid_dir: BorrowedFd<'_>,
        mntns: Option<u64>,
        coverage: &mut Coverage,
    ) -> Result<Exe, rustix::io::Errno> {
        let link = read_link(pid_dir, "exe", &mut self.link)?;
        let shareable = link.starts_with(b"/") && !link.ends_with(b" (deleted)");
        let known = mntns
            .filter(|_| shareable)
            .and_then(|ns| self.binaries.get(&ns))
            .and_then(|paths| paths.get(link).cloned());
        let binary = match known {
            Some(binary) => binary,
            None => {
                // Through the magic link: the binary itself, even deleted or outside our mount
                // namespace.
                let st = stat_follow(pid_dir, "exe")?;
                let deleted = st.st_nlink == 0;
                let identity = self.identifier.identify(pid_dir, &st).unwrap_or_else(|()| {
                    coverage.exes_unhashed += 1;
                    None
                });
                // A deleted file or a memfd is no file the host can name.
                let host_file = match shareable && !deleted {
                    true => self.identifier.is_host_file(link, st.st_dev, st.st_ino),
                    false => Some(false),
                };
                let binary = Binary {
                    deleted,
                    dev: st.st_dev,
                    ino: st.st_ino,
                    owner_uid: st.st_uid,
                    mode: st.st_mode & 0o7777,
                    size: st.st_size as u64,
                    identity,
                    host_file,
                };
                if let (Some(ns), true) = (mntns, shareable) {
                    self.binaries.entry(ns).or_default().insert(link.into(), binary.clone());
                }
                binary
            }
        };
        let path = RawText::from(link);
        Ok(Exe {
            memfd: binary.deleted && path.as_bytes().starts_with(b"/memfd:"),
            deleted: binary.deleted,
            dev: binary.dev,
            ino: binary.ino,
            owner_uid: binary.owner_uid,
            mode: binary.mode,
            size: binary.size,
            identity: binary.identity,
            host_file: binary.host_file,
            path,
        })
    }

    /// A thread that called `unshare(CLONE_FILES)` has an fd table of its own, visible only under
    /// /proc/pid/task/tid/fd. kcmp(KCMP_FILES) tells whether a thread shares the leader's table.
    fn walk_private_thread_fds(
        &mut self,
        pid_dir: BorrowedFd<'_>,
        key: ProcKey,
        mntns: Option<u64>,
        coverage: &mut Coverage,
        fds: &mut Vec<Fd>,
    ) {
        let Ok(task_dir) = open_dir(pid_dir, "task") else { return };
        let mut tids = Vec::new();
        let mut dirents = std::mem::take(&mut self.dirents);
        let mut entries = RawDir::new(task_dir.as_fd(), &mut dirents);
        while let Some(Ok(entry)) = entries.next() {
            if let Ok(tid) = parse_dec("tid", entry.file_name().to_bytes())
                && let Ok(tid) = i32::try_from(tid)
                && tid != key.pid
            {
                tids.push(tid);
            }
        }
        self.dirents = dirents;
        for tid in tids {
            if self.kcmp_works {
                match kcmp_files(key.pid, tid) {
                    Ok(true) => continue,
                    Ok(false) => {}
                    Err(rustix::io::Errno::NOSYS) => self.kcmp_works = false,
                    Err(_) => continue, // the thread exited
                }
            }
            let name = NumName::new("", tid as u64);
            let Ok(thread_dir) = open_dir(task_dir.as_fd(), name.as_str()) else { continue };
            let Ok(fd_dir) = open_dir(thread_dir.as_fd(), "fd") else { continue };
            let before = fds.len();
            let ctx = FdContext {
                pid_dir,
                info_dir: thread_dir.as_fd(),
                proc: key,
                tid: Some(tid),
                mntns,
            };
            self.walk_fds(fd_dir.as_fd(), &ctx, coverage, fds);
            if self.kcmp_works {
                coverage.threads_with_private_fds += 1;
            } else {
                // Without kcmp, every thread was walked: keep only fds the leader does not have.
                let leader: std::collections::HashSet<(i32, FdTarget)> = fds[..before]
                    .iter()
                    .filter(|f| f.proc == key && f.tid.is_none())
                    .map(|f| (f.num, f.target.clone()))
                    .collect();
                let mut i = before;
                while i < fds.len() {
                    if leader.contains(&(fds[i].num, fds[i].target.clone())) {
                        fds.swap_remove(i);
                    } else {
                        i += 1;
                    }
                }
                if fds.len() > before {
                    coverage.threads_with_private_fds += 1;
                }
            }
        }
    }

    fn walk_fds(
        &mut self,
        fd_dir: BorrowedFd<'_>,
        ctx: &FdContext<'_>,
        coverage: &mut Coverage,
        fds: &mut Vec<Fd>,
    ) {
        let mut dirents = std::mem::take(&mut self.dirents);
        let mut entries = RawDir::new(fd_dir, &mut dirents);
        while let Some(entry) = entries.next() {
            let Ok(entry) = entry else { break };
            if entry.file_type() == FileType::Directory {
                continue; // . and ..
            }
            let Ok(num) = parse_dec("fd", entry.file_name().to_bytes()) else { continue };
            let Ok(num) = i32::try_from(num) else { continue };
            match self.read_fd(fd_dir, num, ctx) {
                Ok((mode, target)) => {
                    coverage.fds_seen += 1;
                    if matches!(&target, FdTarget::AnonInode { kind } if kind.as_bytes() == b"io_uring")
                    {
                        self.ring_sockets(num, ctx, coverage, fds);
                    }
                    fds.push(Fd {
                        proc: ctx.proc,
                        tid: ctx.tid,
                        num,
                        io_uring_slot: None,
                        mode,
                        target,
                    });
                }
                Err(e) if Failure::of(e) == Failure::Denied => coverage.fds_denied += 1,
                Err(_) => coverage.fds_vanished += 1,
            }
        }
        self.dirents = dirents;
    }

    /// A ring's registered sockets are held by whoever holds the ring: a relay may register its
    /// connection and close the fd, leaving it in no fd table. A ring too busy to list its files
    /// is asked once more, then counted.
    fn ring_sockets(
        &mut self,
        ring: i32,
        ctx: &FdContext<'_>,
        coverage: &mut Coverage,
        fds: &mut Vec<Fd>,
    ) {
        let info = NumName::new("fdinfo/", ring as u64);
        let (mut files, mut truncated) = (RingFiles::default(), false);
        for _ in 0..2 {
            match read_file(ctx.info_dir, info.as_str(), &mut self.file, RING_FDINFO_LIMIT) {
                Ok(more) => truncated = more,
                Err(_) => return,
            }
            files = io_uring_files(&self.file);
            if files.table_size == 0 || files.listed > 0 {
                break;
            }
        }
        coverage.io_uring_rings += 1;
        if truncated || (files.table_size > 0 && files.listed == 0) {
            coverage.io_uring_files_unlisted += 1;
        }
        for (slot, inode) in files.sockets {
            coverage.io_uring_sockets += 1;
            fds.push(Fd {
                proc: ctx.proc,
                tid: ctx.tid,
                num: ring,
                io_uring_slot: Some(slot),
                mode: AccessMode::Unknown,
                target: FdTarget::Socket { inode },
            });
        }
    }

    fn read_fd(
        &mut self,
        fd_dir: BorrowedFd<'_>,
        num: i32,
        ctx: &FdContext<'_>,
    ) -> Result<(AccessMode, FdTarget), rustix::io::Errno> {
        let name = NumName::new("", num as u64);
        let link = read_link(fd_dir, name.as_str(), &mut self.link)?;
        let target = match parse_fd_link(link) {
            FdLink::Socket(inode) => return Ok((AccessMode::Unknown, FdTarget::Socket { inode })),
            FdLink::Pipe(inode) => {
                return Ok((link_mode(fd_dir, name.as_str()), FdTarget::Pipe { inode }));
            }
            FdLink::AnonInode(kind) => FdTarget::AnonInode { kind: RawText::from(kind) },
            FdLink::Namespace(kind, inode) => {
                FdTarget::Namespace { kind: RawText::from(kind), inode }
            }
            FdLink::Other(other) => FdTarget::Other { link: RawText::from(other) },
            FdLink::Path(path) => {
                let path = RawText::from(path);
                return Ok(self.classify_path(fd_dir, name.as_str(), num, path, ctx));
            }
        };
        Ok((AccessMode::Unknown, target))
    }

    /// A path target may be a FIFO or a terminal anywhere in the file system, so it is stat'ed
    /// through the magic link (which also works when the path is deleted or in another mount
    /// namespace).
    fn classify_path(
        &mut self,
        fd_dir: BorrowedFd<'_>,
        name: &str,
        num: i32,
        path: RawText,
        ctx: &FdContext<'_>,
    ) -> (AccessMode, FdTarget) {
        let Ok(st) = stat_follow(fd_dir, name) else {
            return (AccessMode::Unknown, FdTarget::File { path });
        };
        match FileType::from_raw_mode(st.st_mode) {
            // Only a FIFO's end matters to the relay walk; ptys and ttys carry both ways.
            FileType::Fifo => {
                let mode = link_mode(fd_dir, name);
                (mode, FdTarget::Fifo { dev: st.st_dev, ino: st.st_ino, path })
            }
            FileType::CharacterDevice => {
                let (major, minor) = (rustix::fs::major(st.st_rdev), rustix::fs::minor(st.st_rdev));
                let unknown = AccessMode::Unknown;
                if PTY_SLAVE_MAJORS.contains(&major) {
                    let index = (major - PTY_SLAVE_MAJORS.start()) * 256 + minor;
                    (unknown, FdTarget::PtySlave { pty: PtyId { devpts: Some(st.st_dev), index } })
                } else if major == TTYAUX_MAJOR && minor == PTMX_MINOR {
                    (
                        unknown,
                        FdTarget::PtyMaster { pty: self.pty_master(&path, st.st_dev, num, ctx) },
                    )
                } else if major == TTY_MAJOR || major == TTYAUX_MAJOR {
                    (unknown, FdTarget::Tty { rdev: st.st_rdev, path })
                } else {
                    (unknown, FdTarget::File { path })
                }
            }
            _ => (AccessMode::Unknown, FdTarget::File { path }),
        }
    }

    /// A master's index is in fdinfo `tty-index`. Opened as /dev/pts/ptmx it stats as the devpts
    /// instance itself; opened as /dev/ptmx it stats as devtmpfs, and its devpts is the one
    /// mounted at /dev/pts in the holder's mount namespace (one stat per namespace).
    fn pty_master(&mut self, path: &RawText, st_dev: u64, num: i32, ctx: &FdContext<'_>) -> PtyId {
        let info = NumName::new("fdinfo/", num as u64);
        let index = read_file(ctx.info_dir, info.as_str(), &mut self.file, 4096)
            .ok()
            .and_then(|_| fdinfo_field(&self.file, b"tty-index"))
            .and_then(|v| parse_dec("tty-index", v).ok())
            .and_then(|v| u32::try_from(v).ok());
        let devpts = if path.as_bytes().ends_with(b"/pts/ptmx") {
            Some(st_dev)
        } else {
            let pid_dir = ctx.pid_dir;
            match ctx.mntns {
                Some(ns) => *self
                    .devpts_by_mntns
                    .entry(ns)
                    .or_insert_with(|| stat_follow(pid_dir, "root/dev/pts").ok().map(|s| s.st_dev)),
                None => stat_follow(pid_dir, "root/dev/pts").ok().map(|s| s.st_dev),
            }
        };
        // Without tty-index (kernels before 4.x) the pty cannot be linked; u32::MAX never matches.
        PtyId { devpts, index: index.unwrap_or(u32::MAX) }
    }
}

struct FdContext<'a> {
    pid_dir: BorrowedFd<'a>,
    /// The directory holding `fdinfo/` for this fd table (the process's or the thread's).
    info_dir: BorrowedFd<'a>,
    proc: ProcKey,
    tid: Option<i32>,
    mntns: Option<u64>,
}

/// The owner permission bits of an fd link mirror how it was opened (read → r, write → w).
fn link_mode(fd_dir: BorrowedFd<'_>, name: &str) -> AccessMode {
    match stat_link(fd_dir, name) {
        Ok(st) => match (st.st_mode & 0o400 != 0, st.st_mode & 0o200 != 0) {
            (true, true) => AccessMode::ReadWrite,
            (true, false) => AccessMode::Read,
            (false, true) => AccessMode::Write,
            (false, false) => AccessMode::Unknown,
        },
        Err(_) => AccessMode::Unknown,
    }
}

fn outcome_of(errno: rustix::io::Errno) -> ProcOutcome {
    match Failure::of(errno) {
        Failure::Denied => ProcOutcome::Denied,
        _ => ProcOutcome::Vanished,
    }
}

/// kcmp(pid, tid, KCMP_FILES): Ok(true) when both share one fd table.
fn kcmp_files(pid: i32, tid: i32) -> Result<bool, rustix::io::Errno> {
    const KCMP_FILES: libc::c_int = 2;
    // SAFETY: kcmp takes plain integers and touches no memory of ours.
    let r = unsafe { libc::syscall(libc::SYS_kcmp, pid, tid, KCMP_FILES, 0, 0) };
    if r < 0 {
        Err(rustix::io::Errno::from_raw_os_error(
            std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO),
        ))
    } else {
        Ok(r == 0)
    }
}
