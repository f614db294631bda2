//! Thin I/O over /proc: directory fds, whole small files, links, stats. Every per-process read goes
//! through a dirfd of /proc/<pid> opened once, so a pid recycled mid-scan answers ESRCH instead of
//! another process's data.

use rustix::buffer::spare_capacity;
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, Mode, OFlags, Stat};
use rustix::io::Errno;
use std::io;

/// How a failed read counts: the target went away, access was refused, or something else.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    Vanished,
    Denied,
    Other,
}

impl Failure {
    pub fn of(errno: Errno) -> Self {
        match errno {
            Errno::NOENT | Errno::SRCH | Errno::NOTDIR => Failure::Vanished,
            Errno::ACCESS | Errno::PERM => Failure::Denied,
            _ => Failure::Other,
        }
    }
}

/// Opens a directory relative to `dir` (or an absolute path when `dir` is CWD).
pub(crate) fn open_dir(dir: BorrowedFd<'_>, path: &str) -> Result<OwnedFd, Errno> {
    rustix::fs::openat(
        dir,
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// Opens a file for reading relative to `dir`.
pub(crate) fn open_file(dir: BorrowedFd<'_>, path: &str) -> Result<OwnedFd, Errno> {
    rustix::fs::openat(dir, path, OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY, Mode::empty())
}

/// Reads a whole file into `buf` (cleared first), at most `limit` bytes. Returns true when the
/// file was longer than `limit`.
pub(crate) fn read_file(
    dir: BorrowedFd<'_>,
    path: &str,
    buf: &mut Vec<u8>,
    limit: usize,
) -> Result<bool, Errno> {
    let fd = open_file(dir, path)?;
    buf.clear();
    read_all(fd.as_fd(), buf, limit)
}

/// Reads a /proc file that the kernel produces as one record (`single_open` seq files such as
/// `stat`, `status`, `cgroup`): one read into a buffer larger than the record returns all of it,
/// so the read that would only confirm EOF is skipped (three syscalls a process a tick). When the
/// record fills the buffer, it falls back to reading until EOF.
pub(crate) fn read_record(
    dir: BorrowedFd<'_>,
    path: &str,
    buf: &mut Vec<u8>,
    limit: usize,
) -> Result<bool, Errno> {
    let fd = open_file(dir, path)?;
    buf.clear();
    buf.reserve(limit.min(16 * 1024));
    // Into the spare capacity: zeroing a 16 KiB buffer for a 300-byte stat line cost more than
    // parsing it.
    let room = buf.capacity();
    let n = rustix::io::read(fd.as_fd(), spare_capacity(buf))?;
    if n < room {
        return Ok(cut(buf, limit));
    }
    read_all(fd.as_fd(), buf, limit)
}

/// Appends what `fd` holds until EOF to `buf`, until `buf` is `limit` bytes long. Returns true
/// when there was more.
pub(crate) fn read_all(fd: BorrowedFd<'_>, buf: &mut Vec<u8>, limit: usize) -> Result<bool, Errno> {
    loop {
        if buf.len() >= limit {
            if cut(buf, limit) {
                return Ok(true);
            }
            let mut probe = [0u8; 1];
            return Ok(rustix::io::read(fd, &mut probe)? > 0);
        }
        if buf.capacity() == buf.len() {
            buf.reserve(4096.min(limit - buf.len()).max(512));
        }
        if rustix::io::read(fd, spare_capacity(buf))? == 0 {
            return Ok(false);
        }
    }
}

/// Cuts `buf` to `limit` bytes; true when there was more.
fn cut(buf: &mut Vec<u8>, limit: usize) -> bool {
    let longer = buf.len() > limit;
    buf.truncate(limit);
    longer
}

/// Streams the lines of a file (without their `\n`) to `on_line`, using `buf` as the only buffer,
/// so a table of 100k rows never sits in memory whole. A final line without `\n` is passed too.
pub(crate) fn for_each_line(
    fd: BorrowedFd<'_>,
    buf: &mut Vec<u8>,
    mut on_line: impl FnMut(&[u8]),
) -> io::Result<()> {
    const CHUNK: usize = 64 * 1024;
    buf.clear();
    buf.resize(CHUNK, 0);
    let mut filled = 0;
    loop {
        if filled == buf.len() {
            // One line longer than the buffer (a hostile unix name): grow rather than split it.
            buf.resize(buf.len() * 2, 0);
        }
        let n = rustix::io::read(fd, &mut buf[filled..])?;
        if n == 0 {
            if filled > 0 {
                on_line(&buf[..filled]);
            }
            return Ok(());
        }
        filled += n;
        let mut start = 0;
        while let Some(pos) = buf[start..filled].iter().position(|&b| b == b'\n') {
            on_line(&buf[start..start + pos]);
            start += pos + 1;
        }
        buf.copy_within(start..filled, 0);
        filled -= start;
    }
}

/// Reads a link relative to `dir` into `buf`; returns the text.
pub(crate) fn read_link<'b>(
    dir: BorrowedFd<'_>,
    path: &str,
    buf: &'b mut [u8],
) -> Result<&'b [u8], Errno> {
    let n = rustix::fs::readlinkat_raw(dir, path, &mut buf[..])?;
    Ok(&buf[..n.min(buf.len())])
}

/// `stat` relative to `dir`, following the final link (through /proc magic links this reaches
/// the open file itself, even when deleted or in another mount namespace).
pub(crate) fn stat_follow(dir: BorrowedFd<'_>, path: &str) -> Result<Stat, Errno> {
    rustix::fs::statat(dir, path, AtFlags::empty())
}

/// `lstat` relative to `dir`: for an fd link, the mode bits say how the fd was opened.
pub(crate) fn stat_link(dir: BorrowedFd<'_>, path: &str) -> Result<Stat, Errno> {
    rustix::fs::statat(dir, path, AtFlags::SYMLINK_NOFOLLOW)
}

/// The inode of a namespace link such as `ns/net` (`net:[4026531840]`).
pub(crate) fn namespace_inode(dir: BorrowedFd<'_>, path: &str) -> Option<u64> {
    let mut buf = [0u8; 64];
    let link = read_link(dir, path, &mut buf).ok()?;
    match super::parse::parse_fd_link(link) {
        super::parse::FdLink::Namespace(_, inode) => Some(inode),
        _ => None,
    }
}

/// Formats an integer into a stack buffer: fd names and pids on the hot path without allocating.
pub(crate) struct NumName {
    buf: [u8; 24],
    len: usize,
}

impl NumName {
    pub fn new(prefix: &str, n: u64) -> Self {
        let mut buf = [0u8; 24];
        let p = prefix.as_bytes();
        buf[..p.len()].copy_from_slice(p);
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        let mut v = n;
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        let d = &digits[i..];
        buf[p.len()..p.len() + d.len()].copy_from_slice(d);
        NumName { buf, len: p.len() + d.len() }
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII digits and an ASCII prefix were written.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn num_names() {
        assert_eq!(NumName::new("", 0).as_str(), "0");
        assert_eq!(NumName::new("fdinfo/", 255).as_str(), "fdinfo/255");
        assert_eq!(NumName::new("", u64::from(u32::MAX)).as_str(), "4294967295");
    }

    #[test]
    fn records_are_read_whole_in_one_read_or_by_falling_back() {
        let self_dir = open_dir(rustix::fs::CWD, "/proc/self").unwrap();
        let mut buf = Vec::new();
        assert!(!read_record(self_dir.as_fd(), "stat", &mut buf, 4096).unwrap());
        assert!(buf.ends_with(b"\n") && buf.starts_with(std::process::id().to_string().as_bytes()));
        assert!(!read_record(self_dir.as_fd(), "status", &mut buf, 16 * 1024).unwrap());
        let status = String::from_utf8(buf.clone()).unwrap();
        assert!(status.contains("\nUid:") && status.contains("\nGid:") && status.ends_with('\n'));
        // A buffer smaller than the record: the rest is read until EOF, up to the limit.
        let path = std::env::temp_dir().join(format!("sockwatch-record-{}", std::process::id()));
        std::fs::write(&path, vec![b'x'; 40_000]).unwrap();
        let tmp = open_dir(rustix::fs::CWD, std::env::temp_dir().to_str().unwrap()).unwrap();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        assert!(!read_record(tmp.as_fd(), &name, &mut buf, 64 * 1024).unwrap());
        assert_eq!(buf.len(), 40_000);
        assert!(
            read_record(tmp.as_fd(), &name, &mut buf, 30_000).unwrap(),
            "longer than the limit"
        );
        assert_eq!(buf.len(), 30_000);
        // A buffer already larger than the limit (kept from an earlier read) still stops there.
        assert!(read_record(tmp.as_fd(), &name, &mut buf, 100).unwrap());
        assert_eq!(buf.len(), 100);
        assert!(!read_record(tmp.as_fd(), &name, &mut buf, 40_000).unwrap(), "exactly the limit");
        assert_eq!(buf.len(), 40_000);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn streams_long_lines_whole() {
        let dir = std::env::temp_dir().join(format!("sockwatch-lines-{}", std::process::id()));
        let long = "x".repeat(200_000);
        std::fs::write(&dir, format!("a\n{long}\nb")).unwrap();
        let fd = open_file(rustix::fs::CWD, dir.to_str().unwrap()).unwrap();
        let mut lines = Vec::new();
        for_each_line(fd.as_fd(), &mut Vec::new(), |l| lines.push(l.len())).unwrap();
        std::fs::remove_file(&dir).unwrap();
        assert_eq!(lines, vec![1, 200_000, 1]);
    }
}
