//! /proc/pid/mountinfo: the nsfs mounts that pin namespaces without a process (`ip netns add`).

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

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_nsfs_mounts(&bytes);
        }
    }
}
