//! /proc/pid/stat, /proc/pid/status, /proc/pid/cmdline and /proc/pid/cgroup.

use super::number::{parse_dec, parse_dec_as, parse_i32};
use super::{ParseError, fields};
use crate::model::RawText;

/// The fields of /proc/pid/stat the scanner uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatFields {
    /// Field 1.
    pub pid: i32,
    /// Field 2, without the parentheses; may contain anything, including `)` and newlines.
    pub comm: RawText,
    /// Field 3 (R, S, D, Z, …).
    pub state: u8,
    /// Field 4.
    pub ppid: i32,
    /// Field 5.
    pub pgid: i32,
    /// Field 6.
    pub sid: i32,
    /// Field 7.
    pub tty_nr: u32,
    /// Field 9: `PF_*` flags.
    pub flags: u32,
    /// Field 20.
    pub threads: u32,
    /// Field 22: start time in clock ticks after boot.
    pub start_ticks: u64,
    /// Fields 48 and 49: where argv lies in the process's memory. An exec maps a new stack at a
    /// randomised address, so these move on every exec; `None` where the kernel hides them
    /// (no ptrace access, a zombie, a kernel thread) or prints zeros.
    pub arg_area: Option<(u64, u64)>,
}

/// Parses /proc/pid/stat. `comm` is whatever lies between the first `(` and the *last* `)`: the
/// process picks its comm freely (`prctl(PR_SET_NAME, "x) S 1 1")`), so splitting on spaces or on
/// the first `)` would let it forge every later field.
pub fn parse_stat(buf: &[u8]) -> Result<StatFields, ParseError> {
    let open = buf.iter().position(|&b| b == b'(').ok_or(ParseError::MissingField("comm"))?;
    let close = buf.iter().rposition(|&b| b == b')').ok_or(ParseError::MissingField("comm"))?;
    if close < open {
        return Err(ParseError::Malformed("comm"));
    }
    let pid = parse_i32("pid", buf[..open].trim_ascii())?;
    let comm = RawText::new(&buf[open + 1..close]);
    let mut rest = fields(buf[close + 1..].trim_ascii_end());
    let mut next = |name| rest.next().ok_or(ParseError::MissingField(name));
    let state = match next("state")? {
        [s] => *s,
        _ => return Err(ParseError::Malformed("state")),
    };
    let ppid = parse_i32("ppid", next("ppid")?)?;
    let pgid = parse_i32("pgrp", next("pgrp")?)?;
    let sid = parse_i32("session", next("session")?)?;
    // tty_nr is printed with %d but is a dev_t encoding; negative values do not occur.
    let tty_nr = parse_dec_as("tty_nr", next("tty_nr")?)?;
    next("tpgid")?;
    let flags = parse_dec_as("flags", next("flags")?)?;
    for name in ["minflt", "cminflt", "majflt", "cmajflt", "utime", "stime"] {
        next(name)?;
    }
    for name in ["cutime", "cstime", "priority", "nice"] {
        next(name)?;
    }
    let threads = parse_dec_as("num_threads", next("num_threads")?)?;
    next("itrealvalue")?;
    let start_ticks = parse_dec_as("starttime", next("starttime")?)?;
    // Fields 23-47 are skipped; 48 and 49 exist since Linux 3.5.
    let mut after_start = rest.skip(25);
    let arg_area = match (after_start.next(), after_start.next()) {
        (Some(start), Some(end)) => {
            match (parse_dec("arg_start", start)?, parse_dec("arg_end", end)?) {
                (0, _) | (_, 0) => None,
                area => Some(area),
            }
        }
        _ => None,
    };
    Ok(StatFields {
        pid,
        comm,
        state,
        ppid,
        pgid,
        sid,
        tty_nr,
        flags,
        threads,
        start_ticks,
        arg_area,
    })
}

/// Real and effective user and group ids from /proc/pid/status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatusIds {
    /// Real uid.
    pub uid: u32,
    /// Effective uid.
    pub euid: u32,
    /// Real gid.
    pub gid: u32,
    /// Effective gid.
    pub egid: u32,
}

/// Parses the `Uid:` and `Gid:` lines of /proc/pid/status. The `Name:` line comes first and the
/// kernel escapes newlines in it, so a comm cannot forge these lines; we still match whole lines
/// from their start only.
pub fn parse_status_ids(buf: &[u8]) -> Result<StatusIds, ParseError> {
    let mut uid = None;
    let mut gid = None;
    for line in buf.split(|&b| b == b'\n') {
        if let Some(rest) = line.strip_prefix(b"Uid:") {
            uid = Some(two_ids("Uid", rest)?);
        } else if let Some(rest) = line.strip_prefix(b"Gid:") {
            gid = Some(two_ids("Gid", rest)?);
        }
        if uid.is_some() && gid.is_some() {
            break;
        }
    }
    let (uid, euid) = uid.ok_or(ParseError::MissingField("Uid"))?;
    let (gid, egid) = gid.ok_or(ParseError::MissingField("Gid"))?;
    Ok(StatusIds { uid, euid, gid, egid })
}

fn two_ids(name: &'static str, rest: &[u8]) -> Result<(u32, u32), ParseError> {
    let mut ids = fields(rest);
    let real = parse_dec_as(name, ids.next().ok_or(ParseError::MissingField(name))?)?;
    let effective = parse_dec_as(name, ids.next().ok_or(ParseError::MissingField(name))?)?;
    Ok((real, effective))
}

/// Splits /proc/pid/cmdline into argv. Arguments are NUL-terminated; a process that rewrote its
/// argv area may leave no final NUL, and the last piece is kept anyway.
pub fn split_cmdline(buf: &[u8]) -> Vec<RawText> {
    let body = buf.strip_suffix(b"\0").unwrap_or(buf);
    if body.is_empty() {
        return Vec::new();
    }
    body.split(|&b| b == 0).map(RawText::from).collect()
}

/// The cgroup path from /proc/pid/cgroup: the v2 entry (`0::/path`) when present, else the first
/// hierarchy's path.
pub fn parse_cgroup(buf: &[u8]) -> Option<RawText> {
    let mut first = None;
    for line in buf.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let mut parts = line.splitn(3, |&b| b == b':');
        let (Some(id), Some(_controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if id == b"0" {
            return Some(RawText::from(path));
        }
        first.get_or_insert(path);
    }
    first.map(RawText::from)
}

/// The boot time from /proc/stat (`btime`, whole seconds), in milliseconds since the epoch.
pub fn parse_boot_time_ms(stat: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(stat).ok()?;
    let secs = text.lines().find_map(|l| l.strip_prefix("btime "))?;
    secs.trim().parse::<u64>().ok()?.checked_mul(1000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const BASH: &[u8] = b"4242 (bash) S 4200 4242 4242 34816 4250 4194560 1500 0 0 0 3 1 0 0 20 0 1 0 123456 9000000 900 18446744073709551615 1 1 0 0 0 0 65536 3670020 1266777851 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n";

    #[test]
    fn boot_time_is_read_from_btime() {
        let stat = b"cpu  1 2 3\nintr 5\nbtime 1765000000\nprocesses 9\n";
        assert_eq!(parse_boot_time_ms(stat), Some(1_765_000_000_000));
        assert_eq!(parse_boot_time_ms(b"btime x\n"), None);
        assert_eq!(parse_boot_time_ms(b"btime 99999999999999999\n"), None);
    }

    #[test]
    fn parses_captured_stat() {
        let s = parse_stat(BASH).unwrap();
        assert_eq!(
            (s.pid, s.comm.as_bytes(), s.state, s.ppid, s.pgid, s.sid, s.tty_nr),
            (4242, &b"bash"[..], b'S', 4200, 4242, 4242, 34816)
        );
        assert_eq!((s.threads, s.start_ticks, s.flags), (1, 123456, 4194560));
        assert_eq!(s.arg_area, None, "zeros: hidden from a reader without ptrace access");
        let visible = b"7 (sh) S 1 7 7 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 50 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 1 2 3 140735568992985 140735568993005 140735568993005 140735568994283 0\n";
        assert_eq!(parse_stat(visible).unwrap().arg_area, Some((140735568992985, 140735568993005)));
        // A kernel older than 3.5 stops at field 44.
        let old = b"7 (sh) S 1 7 7 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 50 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n";
        assert_eq!(parse_stat(old).unwrap().arg_area, None);
    }

    #[test]
    fn comm_with_parens_newline_and_escapes_cannot_forge_fields() {
        let buf =
            b"77 (x) S 1 1\n(\x1b[31m) R 5 77 77 0 -1 4194304 0 0 0 0 0 0 0 0 20 0 3 0 999 0 0";
        let s = parse_stat(buf).unwrap();
        assert_eq!(s.comm.as_bytes(), b"x) S 1 1\n(\x1b[31m");
        assert_eq!((s.state, s.ppid, s.threads, s.start_ticks), (b'R', 5, 3, 999));
    }

    #[test]
    fn truncated_or_hostile_stat_is_an_error() {
        assert!(parse_stat(b"12 (a) S 1 2").is_err());
        assert!(parse_stat(b"12 a S 1").is_err());
        assert!(parse_stat(b") (").is_err());
        assert!(parse_stat(&BASH[..60]).is_err());
        let huge = b"1 (a) S 99999999999999999999 1 1 0 0 0 0 0 0 0 0 0 0 0 0 0 1 0 5";
        assert_eq!(parse_stat(huge), Err(ParseError::BadNumber("ppid")));
    }

    #[test]
    fn status_ids() {
        let buf = b"Name:\tx\\nUid:\t0 0 0 0\nUid:\t1000\t1001\t1001\t1001\nGid:\t5\t6\t6\t6\n";
        // The escaped "\n" in Name is two bytes, not a line break: the first real Uid line wins.
        assert_eq!(
            parse_status_ids(buf).unwrap(),
            StatusIds { uid: 1000, euid: 1001, gid: 5, egid: 6 }
        );
        assert!(parse_status_ids(b"Name:\tx\n").is_err());
    }

    #[test]
    fn cmdline_keeps_hostile_bytes_and_missing_terminator() {
        let argv = split_cmdline(b"sh\0-c\0echo \xff\n\x1b\0");
        assert_eq!(argv.len(), 3);
        assert_eq!(argv[2].as_bytes(), b"echo \xff\n\x1b");
        assert_eq!(split_cmdline(b"rewritten title").len(), 1);
        assert!(split_cmdline(b"").is_empty());
        assert_eq!(split_cmdline(b"a\0\0b\0").len(), 3);
    }

    #[test]
    fn cgroup_prefers_v2() {
        let buf = b"12:pids:/a\n0::/system.slice/x.service\n";
        assert_eq!(parse_cgroup(buf).unwrap().as_bytes(), b"/system.slice/x.service");
        assert_eq!(parse_cgroup(b"3:cpu:/b\n").unwrap().as_bytes(), b"/b");
        assert_eq!(parse_cgroup(b"garbage"), None);
    }

    proptest! {
        #[test]
        fn stat_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_stat(&bytes);
            let _ = parse_status_ids(&bytes);
            let _ = parse_cgroup(&bytes);
            let _ = split_cmdline(&bytes);
        }

        #[test]
        fn any_comm_survives(comm in proptest::collection::vec(any::<u8>(), 0..32)) {
            let mut buf = b"9 (".to_vec();
            buf.extend_from_slice(&comm);
            buf.extend_from_slice(b") S 1 9 9 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 77 0 0\n");
            let s = parse_stat(&buf).unwrap();
            prop_assert_eq!(s.comm.as_bytes(), &comm[..]);
            prop_assert_eq!(s.start_ticks, 77);
        }
    }
}
