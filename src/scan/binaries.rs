//! The host's shells, interpreters and network tools, known by what they are rather than by what
//! they are called (DESIGN §10 "Identity is the file, not the name").
//!
//! The standard program directories of the host's root — pid 1's, so that a bind mount made in
//! some other mount namespace cannot change the reference — are listed, and every file whose name
//! is a known shell, interpreter or network tool is described by its device and inode and by the
//! SHA-256 of its bytes. A process's executable is that binary when it is the same file, or when
//! it has the same size *and* the same bytes: a renamed copy, a memfd, a deleted file. Only
//! executables whose size equals a known binary's are hashed, so the cost is paid for copies, not
//! for every program on the host, and a budget per scan bounds it when someone makes thousands.
//!
//! The same root answers "is this executable the very file its path names on the host?"
//! (`Exe::host_file`), which is what an allowlist by path must rest on.

use crate::model::{BinaryKind, Identity, IdentityMatch};

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{FileType, Mode, OFlags, ResolveFlags, Stat};
use rustix::io::Errno;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Where programs live, relative to the host's root.
const PROGRAM_DIRS: [&str; 6] =
    ["usr/local/sbin", "usr/local/bin", "usr/sbin", "usr/bin", "sbin", "bin"];
/// Known binaries bigger than this are known by inode only (no interpreter comes near).
const MAX_HASHED_SIZE: u64 = 512 << 20;
/// Bytes of executables a reader hashes in one scan at most; the rest wait for later scans
/// (counted in `Coverage::exes_unhashed`).
pub(crate) const HASH_BUDGET_PER_SCAN: u64 = 256 << 20;
/// Content verdicts remembered per reader before the memory is cleared.
const CONTENT_MEMORY: usize = 4096;

/// One known binary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Known {
    name: Arc<str>,
    kind: BinaryKind,
}

impl Known {
    fn identity(&self, by: IdentityMatch) -> Identity {
        Identity { name: self.name.clone(), kind: self.kind, by }
    }
}

/// A file's identity and version: a file rewritten in place has another mtime or ctime.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, u64),
    ctime: (i64, u64),
}

impl Stamp {
    pub(crate) fn of(st: &Stat) -> Stamp {
        Stamp {
            dev: st.st_dev,
            ino: st.st_ino,
            size: st.st_size as u64,
            mtime: (st.st_mtime, st.st_mtime_nsec),
            ctime: (st.st_ctime, st.st_ctime_nsec),
        }
    }
}

/// The host's root directory, from which reference files are read.
pub(crate) struct HostRoot {
    fd: OwnedFd,
    /// Pid 1's root; false when that was refused and the agent's own root stands in.
    pub pid1: bool,
}

impl HostRoot {
    /// Pid 1's root under `proc_dir`, or `/` when it cannot be opened (no CAP_SYS_PTRACE).
    pub fn open(proc_dir: BorrowedFd<'_>) -> Option<HostRoot> {
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        if let Ok(fd) = rustix::fs::openat(proc_dir, "1/root", flags, Mode::empty()) {
            return Some(HostRoot { fd, pid1: true });
        }
        let fd = rustix::fs::openat(rustix::fs::CWD, "/", flags, Mode::empty()).ok()?;
        Some(HostRoot { fd, pid1: false })
    }

    /// Opens `path` (relative, or absolute as seen from the host's root) as the host sees it:
    /// absolute symlinks resolve inside the host's root, not the agent's.
    fn open_in(&self, path: &[u8], flags: OFlags) -> Result<OwnedFd, Errno> {
        let path = path.strip_prefix(b"/").unwrap_or(path);
        let path = std::ffi::CString::new(path).map_err(|_| Errno::INVAL)?;
        // openat2 refuses O_PATH with any flag but O_DIRECTORY, O_NOFOLLOW and O_CLOEXEC.
        let flags = match flags.contains(OFlags::PATH) {
            true => flags | OFlags::CLOEXEC,
            false => flags | OFlags::CLOEXEC | OFlags::NOCTTY,
        };
        rustix::fs::openat2(
            self.fd.as_fd(),
            path.as_c_str(),
            flags,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        )
    }

    /// The file `path` names on the host: its device and inode.
    pub fn file_at(&self, path: &[u8]) -> Option<(u64, u64)> {
        let fd = self.open_in(path, OFlags::PATH).ok()?;
        let st = rustix::fs::fstat(&fd).ok()?;
        Some((st.st_dev, st.st_ino))
    }
}

/// A name a file was listed under: the name, its directory, and whether it is the file itself
/// (not a symlink to it).
type Listed = (Vec<u8>, &'static str, bool);

/// A known binary that can be compared by content: where it is, and its version.
struct Candidate {
    path: Vec<u8>,
    stamp: Stamp,
    known: Known,
}

/// The host's known binaries, by file and by content.
#[derive(Default)]
pub(crate) struct Catalogue {
    by_file: HashMap<(u64, u64), Known>,
    by_size: HashMap<u64, Vec<Candidate>>,
    /// Digests of known binaries, by file version, computed the first time an executable of the
    /// same size needs comparing (listing hashes nothing: most hosts never run a copy) and
    /// carried to the next listing.
    digests: Mutex<HashMap<Stamp, [u8; 32]>>,
    root: Option<Arc<HostRoot>>,
}

impl Catalogue {
    /// Lists the program directories of `root`; digests of files already known to `previous`
    /// (same device, inode, size and times) are kept.
    pub fn build(root: &Arc<HostRoot>, previous: Option<&Catalogue>) -> Catalogue {
        let mut files: HashMap<Stamp, Vec<Listed>> = HashMap::new();
        for dir in PROGRAM_DIRS {
            let Ok(fd) = root.open_in(dir.as_bytes(), OFlags::RDONLY | OFlags::DIRECTORY) else {
                continue;
            };
            let Ok(entries) = rustix::fs::Dir::read_from(&fd) else { continue };
            for entry in entries.flatten() {
                let name = entry.file_name().to_bytes();
                if BinaryKind::of_file_name(name).is_none() {
                    continue;
                }
                let path = [dir.as_bytes(), b"/", name].concat();
                let Ok(file) = root.open_in(&path, OFlags::PATH) else { continue };
                let Ok(st) = rustix::fs::fstat(&file) else { continue };
                if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
                    continue;
                }
                let is_link = entry.file_type() == FileType::Symlink;
                let names = files.entry(Stamp::of(&st)).or_default();
                if !names.iter().any(|(n, _, _)| n == name) {
                    names.push((name.to_vec(), dir, !is_link));
                }
            }
        }
        let kept = previous.map(|p| p.digests.lock().expect("digests").clone()).unwrap_or_default();
        let mut catalogue = Catalogue { root: Some(Arc::clone(root)), ..Catalogue::default() };
        for (stamp, mut names) in files {
            // The file's own name (`dash`, `python3.11`, `bsd-csh`) rather than a link to it
            // (`sh`, `python3`, `csh`): it is what /proc/<pid>/exe shows.
            names.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
            let kind = names
                .iter()
                .filter_map(|(n, _, _)| BinaryKind::of_file_name(n))
                .min_by_key(|k| *k as u8);
            let (Some(kind), Some((name, dir, _))) = (kind, names.first()) else { continue };
            let known = Known { name: String::from_utf8_lossy(name).into(), kind };
            catalogue.by_file.insert((stamp.dev, stamp.ino), known.clone());
            if stamp.size <= MAX_HASHED_SIZE {
                let path = [dir.as_bytes(), b"/", name].concat();
                let candidate = Candidate { path, stamp, known };
                catalogue.by_size.entry(stamp.size).or_default().push(candidate);
            }
        }
        let digests = kept.into_iter().filter(|(stamp, _)| catalogue.knows(stamp)).collect();
        catalogue.digests = Mutex::new(digests);
        catalogue
    }

    fn knows(&self, stamp: &Stamp) -> bool {
        self.by_size.get(&stamp.size).is_some_and(|c| c.iter().any(|c| c.stamp == *stamp))
    }

    /// Known binaries, for reports.
    pub fn len(&self) -> usize {
        self.by_file.len()
    }

    fn by_file(&self, dev: u64, ino: u64) -> Option<&Known> {
        self.by_file.get(&(dev, ino))
    }

    fn has_size(&self, size: u64) -> bool {
        self.by_size.contains_key(&size)
    }

    /// The known binary of `size` bytes whose content is `digest`, hashing the known ones of that
    /// size not hashed yet; `budget` pays for those reads.
    fn by_content(&self, size: u64, digest: &[u8; 32], budget: &mut u64) -> Option<&Known> {
        let candidates = self.by_size.get(&size)?;
        candidates
            .iter()
            .find(|c| self.digest(c, budget).as_ref() == Some(digest))
            .map(|c| &c.known)
    }

    fn digest(&self, candidate: &Candidate, budget: &mut u64) -> Option<[u8; 32]> {
        if let Some(digest) = self.digests.lock().expect("digests").get(&candidate.stamp) {
            return Some(*digest);
        }
        *budget = budget.saturating_sub(candidate.stamp.size);
        let fd = self.root.as_ref()?.open_in(&candidate.path, OFlags::RDONLY).ok()?;
        // The file changed since it was listed: another binary now, compared after the next
        // listing.
        let st = rustix::fs::fstat(&fd).ok()?;
        if Stamp::of(&st) != candidate.stamp {
            return None;
        }
        let digest = sha256(fd.as_fd()).ok()?;
        self.digests.lock().expect("digests").insert(candidate.stamp, digest);
        Some(digest)
    }
}

/// SHA-256 of everything `fd` reads.
fn sha256(fd: BorrowedFd<'_>) -> Result<[u8; 32], Errno> {
    sha256_until(fd, None)?.ok_or(Errno::TIMEDOUT)
}

/// File systems whose reads can block for as long as someone else decides: FUSE (its daemon
/// may be the attacker's), NFS, SMB/CIFS, 9P, Ceph. One read there can stall the scan thread
/// past any deadline checked between reads.
const STALLING_FILE_SYSTEMS: [i64; 7] =
    [0x6573_5546, 0x6969, 0x517b, 0xff53_4d42, 0xfe53_4d42, 0x0102_1997, 0x00c3_6400];

/// Whether reading `fd` could block without bound (see `STALLING_FILE_SYSTEMS`).
// `f_type` is i64 here and narrower on other architectures.
#[allow(clippy::unnecessary_cast)]
pub(crate) fn may_stall(fd: BorrowedFd<'_>) -> bool {
    rustix::fs::fstatfs(fd).is_ok_and(|st| STALLING_FILE_SYSTEMS.contains(&(st.f_type as i64)))
}

/// SHA-256 of everything `fd` reads; `None` when `deadline` passed first (a file on a slow
/// disk). A file on a file system whose reads can stall is not read at all: `Errno::NOTSUP`.
pub(crate) fn sha256_until(
    fd: BorrowedFd<'_>,
    deadline: Option<std::time::Instant>,
) -> Result<Option<[u8; 32]>, Errno> {
    if may_stall(fd) {
        return Err(Errno::NOTSUP);
    }
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
            return Ok(None);
        }
        match rustix::io::read(fd, &mut buf[..]) {
            Ok(0) => return Ok(Some(hasher.finalize().into())),
            Ok(n) => hasher.update(&buf[..n]),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// What one reader needs to tell executables apart, kept between scans.
pub(crate) struct Identifier {
    catalogue: Arc<Catalogue>,
    host_root: Option<Arc<HostRoot>>,
    /// Content verdicts by file version.
    content: HashMap<Stamp, Option<Known>>,
    /// Bytes this reader may still hash in the current scan.
    budget: u64,
    /// Host files by path: (scan the entry was read at, device and inode).
    host_files: HashMap<Box<[u8]>, HostFile>,
    scan: u64,
}

/// When a host path was read, and the file it named (device and inode).
type HostFile = (u64, Option<(u64, u64)>);

/// Scans a host file's identity is trusted for before it is read again (an upgrade replaces it).
const HOST_FILE_REFRESH_SCANS: u64 = 16;

impl Identifier {
    pub fn new() -> Identifier {
        Identifier {
            catalogue: Arc::default(),
            host_root: None,
            content: HashMap::new(),
            budget: HASH_BUDGET_PER_SCAN,
            host_files: HashMap::new(),
            scan: 0,
        }
    }

    /// Starts a scan with the current catalogue.
    pub fn begin_scan(&mut self, catalogue: &Arc<Catalogue>, host_root: Option<&Arc<HostRoot>>) {
        if !Arc::ptr_eq(&self.catalogue, catalogue) {
            self.catalogue = Arc::clone(catalogue);
            self.content.clear();
        }
        self.host_root = host_root.cloned();
        self.budget = HASH_BUDGET_PER_SCAN;
        self.scan += 1;
    }

    /// The known binary a process's executable is. `st` is the stat of `pid_dir/exe`; the bytes
    /// are read through that magic link (it reaches memfds and deleted files). `Err(())` when the
    /// bytes should have been compared but the scan's hashing budget is spent.
    pub fn identify(&mut self, pid_dir: BorrowedFd<'_>, st: &Stat) -> Result<Option<Identity>, ()> {
        if let Some(known) = self.catalogue.by_file(st.st_dev, st.st_ino) {
            return Ok(Some(known.identity(IdentityMatch::Inode)));
        }
        let stamp = Stamp::of(st);
        if !self.catalogue.has_size(stamp.size) {
            return Ok(None);
        }
        if let Some(verdict) = self.content.get(&stamp) {
            return Ok(verdict.as_ref().map(|k| k.identity(IdentityMatch::Content)));
        }
        if self.budget < stamp.size {
            return Err(());
        }
        self.budget -= stamp.size;
        let bytes = super::procfs::open_file(pid_dir, "exe").and_then(|fd| sha256(fd.as_fd()));
        // Gone or refused: nothing to remember.
        let Ok(digest) = bytes else { return Ok(None) };
        if self.content.len() >= CONTENT_MEMORY {
            self.content.clear();
        }
        let known = self.catalogue.by_content(stamp.size, &digest, &mut self.budget).cloned();
        let identity = known.as_ref().map(|k| k.identity(IdentityMatch::Content));
        self.content.insert(stamp, known);
        Ok(identity)
    }

    /// Whether (dev, ino) is the file `path` names in the host's root; `None` when the host's
    /// root is unknown or the path is not a plain absolute path.
    pub fn is_host_file(&mut self, path: &[u8], dev: u64, ino: u64) -> Option<bool> {
        let root = self.host_root.as_ref()?;
        if !path.starts_with(b"/") {
            return None;
        }
        let scan = self.scan;
        let (read_at, file) = match self.host_files.get(path) {
            Some(&(read_at, file)) => (read_at, file),
            None => (0, None),
        };
        let fresh = read_at != 0 && scan - read_at < HOST_FILE_REFRESH_SCANS;
        // A mismatch is read again (once a scan): the host file may just have been upgraded.
        if fresh && (file == Some((dev, ino)) || read_at == scan) {
            return Some(file == Some((dev, ino)));
        }
        let file = root.file_at(path);
        if self.host_files.len() >= CONTENT_MEMORY {
            self.host_files.clear();
        }
        self.host_files.insert(path.into(), (scan, file));
        Some(file == Some((dev, ino)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalogue_knows_this_hosts_shell_by_file_and_by_content() {
        let proc_dir = super::super::procfs::open_dir(rustix::fs::CWD, "/proc").unwrap();
        let root = Arc::new(HostRoot::open(proc_dir.as_fd()).unwrap());
        let catalogue = Catalogue::build(&root, None);
        let st = rustix::fs::stat("/bin/sh").unwrap();
        let known = catalogue.by_file(st.st_dev, st.st_ino).expect("/bin/sh is known");
        assert_eq!(known.kind, BinaryKind::Shell);
        assert_ne!(&*known.name, "sh", "named after the file, not the link");
        // A copy is known by its bytes.
        let dir = std::env::temp_dir().join(format!("sockwatch-binaries-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let copy = dir.join("innocent");
        std::fs::copy("/bin/sh", &copy).unwrap();
        let bytes = std::fs::read(&copy).unwrap();
        let digest: [u8; 32] = Sha256::digest(&bytes).into();
        let mut budget = u64::MAX;
        assert_eq!(catalogue.by_content(bytes.len() as u64, &digest, &mut budget), Some(known));
        assert!(budget < u64::MAX, "the known binary was hashed when first compared");
        std::fs::remove_dir_all(&dir).unwrap();
        // A rebuild keeps the digests of unchanged files.
        let again = Catalogue::build(&root, Some(&catalogue));
        assert_eq!(*again.digests.lock().unwrap(), *catalogue.digests.lock().unwrap());
        assert!(!again.digests.lock().unwrap().is_empty());
        assert!(root.file_at(b"/bin/sh").is_some());
        assert_eq!(root.file_at(b"/no/such/file"), None);
    }
}
