//! The text of /proc/pid/fd/N links and the key/value lines of /proc/pid/fdinfo/N.

use super::number::parse_dec;

/// What an fd link says, before any further syscall.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FdLink<'a> {
    /// `socket:[N]`.
    Socket(u64),
    /// `pipe:[N]`.
    Pipe(u64),
    /// `anon_inode:[kind]` or `anon_inode:kind`.
    AnonInode(&'a [u8]),
    /// `net:[N]`, `mnt:[N]`, …: a namespace file.
    Namespace(&'a [u8], u64),
    /// An absolute path (a file, device, FIFO; possibly with a " (deleted)" suffix).
    Path(&'a [u8]),
    /// Anything else.
    Other(&'a [u8]),
}

const NAMESPACE_KINDS: [&[u8]; 9] =
    [b"net", b"mnt", b"pid", b"user", b"uts", b"ipc", b"cgroup", b"time", b"pid_for_children"];

/// Classifies a link's text.
pub fn parse_fd_link(link: &[u8]) -> FdLink<'_> {
    if link.first() == Some(&b'/') {
        return FdLink::Path(link);
    }
    if let Some(inode) = bracketed_number(link, b"socket:") {
        return FdLink::Socket(inode);
    }
    if let Some(inode) = bracketed_number(link, b"pipe:") {
        return FdLink::Pipe(inode);
    }
    if let Some(kind) = link.strip_prefix(b"anon_inode:") {
        let kind = kind.strip_prefix(b"[").and_then(|k| k.strip_suffix(b"]")).unwrap_or(kind);
        return FdLink::AnonInode(kind);
    }
    if let Some(colon) = link.iter().position(|&b| b == b':') {
        let kind = &link[..colon];
        if NAMESPACE_KINDS.contains(&kind)
            && let Some(inode) = bracketed_number(link, &link[..=colon])
        {
            return FdLink::Namespace(kind, inode);
        }
    }
    FdLink::Other(link)
}

fn bracketed_number(link: &[u8], prefix: &[u8]) -> Option<u64> {
    let digits = link.strip_prefix(prefix)?.strip_prefix(b"[")?.strip_suffix(b"]")?;
    parse_dec("inode", digits).ok()
}

/// The value of `key:` in an fdinfo file (`flags`, `tty-index`, `mnt_id`, …), trimmed.
pub fn fdinfo_field<'a>(fdinfo: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    fdinfo.split(|&b| b == b'\n').find_map(|line| {
        let rest = line.strip_prefix(key)?.strip_prefix(b":")?;
        Some(rest.trim_ascii())
    })
}

/// What an io_uring's fdinfo lists of its registered files: the `UserFiles:` section, one
/// `<slot>: <link>` line per occupied slot (`    0: socket:[4242]`). A socket registered and
/// then closed is held by the ring alone: no fd of any process links to it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RingFiles {
    /// The size of the registered file table (`UserFiles:`), occupied or not.
    pub table_size: u64,
    /// Occupied slots listed.
    pub listed: u64,
    /// (slot, inode) of each listed socket.
    pub sockets: Vec<(u32, u64)>,
}

/// Reads the registered files of a ring's fdinfo. The kernel lists the slots only when it gets
/// the ring's lock without waiting: a table with slots but no lines may be a busy ring.
pub fn io_uring_files(fdinfo: &[u8]) -> RingFiles {
    let mut lines = fdinfo.split(|&b| b == b'\n');
    let Some(size) = lines.by_ref().find_map(|line| line.strip_prefix(b"UserFiles:")) else {
        return RingFiles::default();
    };
    let mut files = RingFiles {
        table_size: parse_dec("UserFiles", size.trim_ascii()).unwrap_or(0),
        ..RingFiles::default()
    };
    for line in lines {
        let Some((slot, link)) = slot_line(line) else { break };
        files.listed += 1;
        if let FdLink::Socket(inode) = parse_fd_link(link) {
            files.sockets.push((slot, inode));
        }
    }
    files
}

fn slot_line(line: &[u8]) -> Option<(u32, &[u8])> {
    let line = line.trim_ascii_start();
    let colon = line.iter().position(|&b| b == b':')?;
    let slot = u32::try_from(parse_dec("slot", &line[..colon]).ok()?).ok()?;
    Some((slot, line[colon + 1..].trim_ascii()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn classifies_captured_links() {
        assert_eq!(parse_fd_link(b"socket:[123456]"), FdLink::Socket(123456));
        assert_eq!(parse_fd_link(b"pipe:[42]"), FdLink::Pipe(42));
        assert_eq!(parse_fd_link(b"anon_inode:[eventfd]"), FdLink::AnonInode(b"eventfd"));
        assert_eq!(parse_fd_link(b"anon_inode:inotify"), FdLink::AnonInode(b"inotify"));
        assert_eq!(parse_fd_link(b"net:[4026531840]"), FdLink::Namespace(b"net", 4026531840));
        assert_eq!(parse_fd_link(b"/dev/pts/3"), FdLink::Path(b"/dev/pts/3"));
        assert_eq!(parse_fd_link(b"/memfd:x (deleted)"), FdLink::Path(b"/memfd:x (deleted)"));
    }

    #[test]
    fn hostile_links_are_other_not_misparsed() {
        assert_eq!(
            parse_fd_link(b"socket:[99999999999999999999]"),
            FdLink::Other(b"socket:[99999999999999999999]")
        );
        assert_eq!(parse_fd_link(b"socket:[12"), FdLink::Other(b"socket:[12"));
        assert_eq!(parse_fd_link(b"evil:[12]"), FdLink::Other(b"evil:[12]"));
        assert_eq!(parse_fd_link(b""), FdLink::Other(b""));
    }

    #[test]
    fn io_uring_registered_sockets() {
        // Captured on 6.18 (tail of a ring's fdinfo, two sockets registered).
        let info = b"SqThreadCpu:\t-1\nUserFiles:\t3\n    0: socket:[13946786]\n    1: \
            socket:[13946785]\n    2: /tmp/a file: x\nUserBufs:\t0\nPollList:\n";
        let files = io_uring_files(info);
        assert_eq!(files.table_size, 3);
        assert_eq!(files.listed, 3);
        assert_eq!(files.sockets, [(0, 13946786), (1, 13946785)]);
        // A sparse table lists only occupied slots; a busy ring lists none.
        let sparse = io_uring_files(b"UserFiles:\t64\n    7: socket:[9]\nUserBufs:\t0\n");
        assert_eq!((sparse.table_size, sparse.listed, sparse.sockets), (64, 1, vec![(7, 9)]));
        let busy = io_uring_files(b"UserFiles:\t2\nUserBufs:\t0\n");
        assert_eq!((busy.table_size, busy.listed), (2, 0));
        assert_eq!(io_uring_files(b"pos:\t0\n    0: socket:[1]\n"), RingFiles::default());
        // Hostile: a huge slot number, a missing colon, garbage after the section.
        let hostile = io_uring_files(b"UserFiles:\tx\n 99999999999: socket:[1]\n");
        assert_eq!(hostile, RingFiles::default());
    }

    #[test]
    fn fdinfo_fields() {
        let info = b"pos:\t0\nflags:\t0100002\nmnt_id:\t27\nino:\t5\ntty-index:\t3\n";
        assert_eq!(fdinfo_field(info, b"tty-index"), Some(&b"3"[..]));
        assert_eq!(fdinfo_field(info, b"flags"), Some(&b"0100002"[..]));
        assert_eq!(fdinfo_field(info, b"tty"), None);
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse_fd_link(&bytes);
            let _ = fdinfo_field(&bytes, b"flags");
            let files = io_uring_files(&bytes);
            prop_assert!(files.sockets.len() as u64 <= files.listed);
        }

        #[test]
        fn ring_slots_round_trip(slots in proptest::collection::btree_map(any::<u32>(), 1..u64::MAX, 0..16)) {
            let mut info = format!("UserFiles:\t{}\n", slots.len()).into_bytes();
            for (slot, inode) in &slots {
                info.extend_from_slice(format!("{slot:5}: socket:[{inode}]\n").as_bytes());
            }
            info.extend_from_slice(b"UserBufs:\t0\n");
            let files = io_uring_files(&info);
            prop_assert_eq!(files.sockets, slots.into_iter().collect::<Vec<_>>());
        }
    }
}
