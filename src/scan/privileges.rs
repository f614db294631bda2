//! The capabilities the scan runs with, read from the effective set (never inferred from uid 0:
//! root in a user namespace or a capability-less root has uid 0 too).

use super::parse::{fields, parse_hex};
use crate::model::Privileges;

const CAP_DAC_READ_SEARCH: u32 = 2;
const CAP_SYS_PTRACE: u32 = 19;
const CAP_SYS_ADMIN: u32 = 21;

/// Decodes `CapEff:` from a /proc/pid/status buffer.
pub(crate) fn privileges_from_status(status: &[u8]) -> Privileges {
    let effective = status
        .split(|&b| b == b'\n')
        .find_map(|line| line.strip_prefix(b"CapEff:"))
        .and_then(|rest| fields(rest).next())
        .and_then(|hex| parse_hex("CapEff", hex).ok())
        .unwrap_or(0);
    let has = |cap: u32| effective & (1u64 << cap) != 0;
    Privileges {
        sys_ptrace: has(CAP_SYS_PTRACE),
        dac_read_search: has(CAP_DAC_READ_SEARCH),
        sys_admin: has(CAP_SYS_ADMIN),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_effective_set() {
        let all = privileges_from_status(b"Name:\tx\nCapEff:\t000001fffeffffff\n");
        assert!(all.sys_ptrace && all.dac_read_search && all.sys_admin);
        let two = privileges_from_status(b"CapEff:\t0000000000080004\n");
        assert!(two.sys_ptrace && two.dac_read_search && !two.sys_admin);
        assert_eq!(privileges_from_status(b"junk"), Privileges::default());
    }
}
