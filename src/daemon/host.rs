//! Who is reporting: host name, machine id, boot id, boot time, clock ticks.

use crate::event::HostIdentity;

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// Reads the host's identity; what cannot be read is left empty rather than failing the agent.
pub fn identity() -> HostIdentity {
    let boot_time_ms = std::fs::read("/proc/stat")
        .ok()
        .and_then(|stat| crate::scan::parse::parse_boot_time_ms(&stat));
    HostIdentity {
        name: rustix::system::uname().nodename().to_string_lossy().into_owned(),
        id: read_trimmed("/etc/machine-id").unwrap_or_default(),
        boot_id: read_trimmed("/proc/sys/kernel/random/boot_id").unwrap_or_default(),
        boot_time_ms,
        ticks_per_second: rustix::param::clock_ticks_per_second(),
    }
}
