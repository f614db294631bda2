//! What an alert's processes are beyond a scan's reading: user and group names from the files
//! of each process's own root, the audit login uid and session, and the executable's SHA-256.
//! Read only for alerts, so a scan never pays for it; what repeats (the same passwd file, the
//! same binary) is read once and remembered by the file's identity and version.

use super::binaries::{Stamp, may_stall, sha256_until};
use super::parse::{parse_accounts, parse_stat};
use super::procfs::{Failure, open_dir, open_file, read_all, read_record};
use crate::model::{ExeHash, ProcKey, Process, ProcessContext, RawText};
use rustc_hash::FxHashMap;
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Executables larger than this are not hashed (a responder still gets path, inode and size).
const MAX_HASHED_BYTES: u64 = 256 << 20;
/// Time one executable's hashing may take: a binary on a stalled network disk must not hold
/// back the alert.
const HASH_TIME: Duration = Duration::from_secs(2);
/// Account files larger than this are not read (a container chooses its passwd's size).
const MAX_ACCOUNTS_FILE: usize = 4 << 20;
/// Versions of passwd/group files and executables remembered.
const REMEMBERED: usize = 1024;
/// `/proc/PID/loginuid` and `sessionid` of a process no login set.
const UNSET: u32 = u32::MAX;

/// Names by id, as one version of a passwd or group file gives them.
type Names = Arc<FxHashMap<u32, RawText>>;

/// Reads alert context; keeps what it read by file version.
#[derive(Default)]
pub(crate) struct ContextReader {
    accounts: FxHashMap<Stamp, Names>,
    hashes: FxHashMap<Stamp, ExeHash>,
    buf: Vec<u8>,
}

impl ContextReader {
    /// `process` as it is now, if it is still the process the snapshot saw; `hash` asks for its
    /// executable's digest.
    pub(crate) fn read(
        &mut self,
        proc_dir: BorrowedFd<'_>,
        process: &Process,
        hash: bool,
    ) -> ProcessContext {
        let mut context = ProcessContext::new(process.key);
        let pid_dir = match self.same_process(proc_dir, process.key) {
            Ok(dir) => dir,
            Err(why) => {
                context.unavailable = Some(why.to_string());
                return context;
            }
        };
        let pid_dir = pid_dir.as_fd();
        context.login_uid = self.audit_id(pid_dir, "loginuid");
        context.session_id = self.audit_id(pid_dir, "sessionid");
        match open_dir(pid_dir, "root") {
            Ok(root) => {
                let users = self.names(root.as_fd(), "etc/passwd");
                let groups = self.names(root.as_fd(), "etc/group");
                let user = |id: u32| users.as_ref().and_then(|n| n.get(&id).cloned());
                context.user_name = user(process.euid);
                if process.uid != process.euid {
                    context.real_user_name = user(process.uid);
                }
                context.login_user_name = context.login_uid.and_then(user);
                context.group_name = groups.as_ref().and_then(|n| n.get(&process.gid).cloned());
            }
            Err(e) => context.unavailable = Some(format!("root: {}", describe(e))),
        }
        if hash && !process.kernel_thread {
            context.hash = Some(self.hash(pid_dir));
        }
        context
    }

    /// A dirfd of /proc/<pid>, if that pid is still the process `key` names.
    fn same_process(
        &mut self,
        proc_dir: BorrowedFd<'_>,
        key: ProcKey,
    ) -> Result<OwnedFd, &'static str> {
        let dir = open_dir(proc_dir, &key.pid.to_string()).map_err(|_| "exited")?;
        read_record(dir.as_fd(), "stat", &mut self.buf, 4096).map_err(|_| "exited")?;
        match parse_stat(&self.buf) {
            Ok(stat) if stat.start_ticks == key.start_ticks => Ok(dir),
            _ => Err("exited"),
        }
    }

    fn audit_id(&mut self, pid_dir: BorrowedFd<'_>, file: &str) -> Option<u32> {
        read_record(pid_dir, file, &mut self.buf, 64).ok()?;
        let id: u32 = std::str::from_utf8(&self.buf).ok()?.trim().parse().ok()?;
        (id != UNSET).then_some(id)
    }

    /// The names in `path` under `root`, resolved as the process resolves it: its symlinks stay
    /// inside its root (a container's `/etc/passwd -> /etc/shadow` is its own shadow, not the
    /// host's), and a FIFO or a device planted there is not read.
    fn names(&mut self, root: BorrowedFd<'_>, path: &str) -> Option<Names> {
        let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK;
        let resolve = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
        let fd = rustix::fs::openat2(root, path, flags, Mode::empty(), resolve).ok()?;
        if may_stall(fd.as_fd()) {
            return None;
        }
        let st = rustix::fs::fstat(&fd).ok()?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile
            || st.st_size as u64 > MAX_ACCOUNTS_FILE as u64
        {
            return None;
        }
        let stamp = Stamp::of(&st);
        if let Some(names) = self.accounts.get(&stamp) {
            return Some(names.clone());
        }
        self.buf.clear();
        read_all(fd.as_fd(), &mut self.buf, MAX_ACCOUNTS_FILE).ok()?;
        let names: Names = Arc::new(parse_accounts(&self.buf));
        remember(&mut self.accounts, stamp, names.clone());
        Some(names)
    }

    /// The digest of the file the process executes (through /proc/PID/exe: a deleted binary
    /// and a memfd are read as they are).
    fn hash(&mut self, pid_dir: BorrowedFd<'_>) -> ExeHash {
        let fd = match open_file(pid_dir, "exe") {
            Ok(fd) => fd,
            Err(e) => return ExeHash::Skipped(format!("unreadable: {}", describe(e))),
        };
        let st = match rustix::fs::fstat(&fd) {
            Ok(st) => st,
            Err(e) => return ExeHash::Skipped(format!("unreadable: {}", describe(e))),
        };
        let stamp = Stamp::of(&st);
        if let Some(known) = self.hashes.get(&stamp) {
            return known.clone();
        }
        let size = st.st_size as u64;
        let hash = if size > MAX_HASHED_BYTES {
            ExeHash::Skipped(format!("larger than {MAX_HASHED_BYTES} bytes ({size})"))
        } else {
            match sha256_until(fd.as_fd(), Some(Instant::now() + HASH_TIME)) {
                Ok(Some(digest)) => ExeHash::Sha256(hex(&digest)),
                Ok(None) => {
                    // Not remembered: the disk may be faster next time.
                    return ExeHash::Skipped(format!("took longer than {HASH_TIME:?}"));
                }
                Err(rustix::io::Errno::NOTSUP) => ExeHash::Skipped(
                    "on a FUSE or network file system, whose reads can stall: not read".into(),
                ),
                Err(e) => return ExeHash::Skipped(format!("unreadable: {}", describe(e))),
            }
        };
        remember(&mut self.hashes, stamp, hash.clone());
        hash
    }
}

fn remember<V>(memory: &mut FxHashMap<Stamp, V>, stamp: Stamp, value: V) {
    // Versions of files come and go slowly; a full memory starts over rather than tracking age.
    if memory.len() >= REMEMBERED {
        memory.clear();
    }
    memory.insert(stamp, value);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn describe(errno: rustix::io::Errno) -> String {
    match Failure::of(errno) {
        Failure::Vanished => "exited".into(),
        Failure::Denied => "permission denied".into(),
        Failure::Other => std::io::Error::from(errno).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_on_a_local_file_system_is_hashed_and_remembered() {
        let path = std::env::temp_dir().join(format!("sockwatch-hash-{}", std::process::id()));
        std::fs::write(&path, b"abc").unwrap();
        let fd = rustix::fs::open(&path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).unwrap();
        assert!(!may_stall(fd.as_fd()));
        let digest = sha256_until(fd.as_fd(), Some(Instant::now() + HASH_TIME)).unwrap().unwrap();
        assert_eq!(
            hex(&digest),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        std::fs::remove_file(&path).unwrap();
    }
}
