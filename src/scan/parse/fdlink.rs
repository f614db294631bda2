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
        }
    }
}
