//! /proc/pid/mountinfo: the nsfs mounts that pin namespaces without a process (`ip netns add`),
//! and mounts over a process's /proc directory, which hide it from whoever reads that /proc.

use super::fields;
use super::number::parse_dec;

/// A namespace file bind-mounted somewhere.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NsfsMount {
    /// Namespace kind (`net`, `mnt`, …).
    pub kind: Vec<u8>,
    /// Namespace inode.
    pub inode: u64,
    /// Mount point, with the kernel's octal escapes (`\040` for space, …) decoded.
    pub mount_point: Vec<u8>,
}

/// Finds the nsfs mounts. Lines look like
/// `412 29 0:4 net:[4026532288] /run/netns/t rw,… shared:5 - nsfs nsfs rw`.
pub fn parse_nsfs_mounts(buf: &[u8]) -> Vec<NsfsMount> {
    buf.split(|&b| b == b'\n').filter_map(parse_line).collect()
}

fn parse_line(line: &[u8]) -> Option<NsfsMount> {
    let mut cols = fields(line);
    let root = cols.nth(3)?;
    let mount_point = cols.next()?;
    let mut after_separator = cols.skip_while(|c| *c != b"-").skip(1);
    if after_separator.next()? != b"nsfs" {
        return None;
    }
    let colon = root.iter().position(|&b| b == b':')?;
    let digits = root[colon + 1..].strip_prefix(b"[")?.strip_suffix(b"]")?;
    Some(NsfsMount {
        kind: root[..colon].to_vec(),
        inode: parse_dec("inode", digits).ok()?,
        mount_point: unescape_octal(mount_point),
    })
}

/// A mount whose mount point is a process's /proc directory or under it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcPidMount {
    /// The mount id (unique while mounted).
    pub mount_id: u64,
    /// The pid its mount point names.
    pub pid: i32,
    /// Mount point, unescaped, as the reading process's root sees it.
    pub mount_point: Vec<u8>,
    /// The directory of its file system that was mounted there, unescaped.
    pub root: Vec<u8>,
    /// File system type.
    pub fstype: Vec<u8>,
    /// Mount source, unescaped.
    pub source: Vec<u8>,
}

/// Finds mounts whose mount point is `/proc/<pid>` or below it (`/proc/<pid>/fd`, …): bind
/// mounts that make a process's entry empty or someone else's. Other /proc mounts are the
/// ordinary work of container runtimes (a masked `/proc/kcore`, a read-only `/proc/sys`) and
/// are left out.
pub fn parse_proc_pid_mounts(buf: &[u8]) -> Vec<ProcPidMount> {
    buf.split(|&b| b == b'\n').filter_map(proc_pid_mount).collect()
}

fn proc_pid_mount(line: &[u8]) -> Option<ProcPidMount> {
    let mut cols = fields(line);
    let mount_id = parse_dec("mount id", cols.next()?).ok()?;
    let root = cols.nth(2)?;
    let mount_point = unescape_octal(cols.next()?);
    let rest = mount_point.strip_prefix(b"/proc/")?;
    let digits_end = rest.iter().position(|b| *b == b'/').unwrap_or(rest.len());
    let (digits, tail) = rest.split_at(digits_end);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) || tail == b"/" {
        return None;
    }
    let pid = i32::try_from(parse_dec("pid", digits).ok()?).ok()?;
    let mut after_separator = cols.skip_while(|c| *c != b"-").skip(1);
    let fstype = unescape_octal(after_separator.next()?);
    let source = unescape_octal(after_separator.next()?);
    Some(ProcPidMount { mount_id, pid, mount_point, root: unescape_octal(root), fstype, source })
}

/// The device (major, minor) of the procfs a process sees at `/proc`: the last such line, as
/// later mounts stack on earlier ones.
pub fn proc_device(buf: &[u8]) -> Option<(u32, u32)> {
    buf.split(|&b| b == b'\n').rev().find_map(|line| {
        let mut cols = fields(line);
        let device = cols.nth(2)?;
        if cols.nth(1)? != b"/proc" {
            return None;
        }
        if cols.skip_while(|c| *c != b"-").nth(1)? != b"proc" {
            return None;
        }
        let colon = device.iter().position(|&b| b == b':')?;
        let major = u32::try_from(parse_dec("major", &device[..colon]).ok()?).ok()?;
        let minor = u32::try_from(parse_dec("minor", &device[colon + 1..]).ok()?).ok()?;
        Some((major, minor))
    })
}

fn unescape_octal(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'\\'
            && let Some(oct) = s.get(i + 1..i + 4)
            && oct.iter().all(|b| (b'0'..=b'7').contains(b))
        {
            let value = oct.iter().fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
            if let Ok(byte) = u8::try_from(value) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn finds_netns_bind_mounts() {
        let buf = b"25 1 0:22 / /proc rw,nosuid - proc proc rw\n\
412 29 0:4 net:[4026532288] /run/netns/t\\040x rw shared:5 - nsfs nsfs rw\n\
413 29 0:4 mnt:[4026532290] /tmp/m rw - nsfs nsfs rw\n";
        let mounts = parse_nsfs_mounts(buf);
        assert_eq!(mounts.len(), 2);
        assert_eq!(mounts[0].kind, b"net");
        assert_eq!(mounts[0].inode, 4026532288);
        assert_eq!(mounts[0].mount_point, b"/run/netns/t x");
    }

    #[test]
    fn finds_mounts_over_process_directories_only() {
        // Lines shaped like a Docker host's (written for this test): a process hidden by
        // `mount --bind /tmp/e /proc/4242`, one whose fd directory was covered, and the
        // runtime's own masks, which stay out.
        let buf = b"25 1 0:22 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw\n\
            611 25 8:1 /tmp/e /proc/4242 rw,relatime shared:1 - ext4 /dev/sda1 rw\n\
            612 25 0:48 / /proc/77/fd rw - tmpfs none\\040x rw\n\
            613 25 0:5 /null /proc/kcore rw,nosuid master:2 - devtmpfs udev rw\n\
            614 25 0:22 /sys /proc/sys ro,nosuid - proc proc rw\n\
            615 25 0:49 / /proc/12ab rw - tmpfs t rw\n\
            616 25 0:50 / /proc/99999999999 rw - tmpfs t rw\n";
        let mounts = parse_proc_pid_mounts(buf);
        assert_eq!(mounts.len(), 2, "{mounts:?}");
        assert_eq!((mounts[0].mount_id, mounts[0].pid), (611, 4242));
        assert_eq!(mounts[0].root, b"/tmp/e");
        assert_eq!(mounts[0].fstype, b"ext4");
        assert_eq!(mounts[1].mount_point, b"/proc/77/fd");
        assert_eq!(mounts[1].source, b"none x");
        assert!(parse_nsfs_mounts(buf).is_empty());
        assert_eq!(proc_device(buf), Some((0, 22)));
        let stacked =
            b"22 27 0:21 / /proc rw - proc proc rw\n68 22 0:40 / /proc rw - proc proc rw\n";
        assert_eq!(proc_device(stacked), Some((0, 40)));
        assert_eq!(proc_device(b"22 27 0:21 / /proc rw - tmpfs t rw\n"), None);
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_nsfs_mounts(&bytes);
            let _ = parse_proc_pid_mounts(&bytes);
            let _ = proc_device(&bytes);
        }
    }
}
