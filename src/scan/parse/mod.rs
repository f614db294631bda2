//! Pure parsers for what the kernel prints under /proc, answers to sock_diag dumps and sends from
//! the process connector. They take bytes and return values or a `ParseError`; they never panic,
//! never allocate per field where a slice will do, and keep attacker-chosen bytes (comm, paths,
//! socket names) exact. The I/O that feeds them lives in the sibling modules of `scan`.

mod accounts;
mod cnproc;
mod container_state;
mod diag;
mod fdlink;
mod mountinfo;
mod netlink;
mod number;
mod procnet;
mod stat;

pub use accounts::parse_accounts;
pub use cnproc::{CN_IDX_PROC, ProcEvent, proc_events, subscription_request};
pub use container_state::{
    ContainerRecord, parse_docker_config, parse_machine, parse_oci_config, parse_pid,
    parse_storage_containers,
};
pub use diag::{
    DestroyedRecord, DiagMessage, InetDiagRecord, UnixDiagRecord, diag_messages,
    parse_destroyed_record, parse_inet_record, parse_unix_record,
};
pub use fdlink::{FdLink, RingFiles, fdinfo_field, io_uring_files, parse_fd_link};
pub use mountinfo::{
    NsfsMount, ProcPidMount, parse_nsfs_mounts, parse_proc_pid_mounts, proc_device,
};
pub use number::{parse_dec, parse_hex};
pub use procnet::{
    ByteOrder, InetRow, NetlinkRow, PacketRow, UnixRow, parse_inet_line, parse_netlink_line,
    parse_packet_line, parse_unix_line,
};
pub use stat::{
    StatFields, StatusIds, parse_boot_time_ms, parse_cgroup, parse_stat, parse_status_ids,
    split_cmdline,
};

/// Why a line or file could not be parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The input ended before a required field.
    #[error("missing field {0}")]
    MissingField(&'static str),
    /// A field was not the number it should be (or overflowed).
    #[error("bad number in field {0}")]
    BadNumber(&'static str),
    /// A field had the wrong shape.
    #[error("malformed field {0}")]
    Malformed(&'static str),
}

/// Splits on ASCII spaces and tabs, skipping runs: the column layout of every /proc table.
pub(crate) fn fields(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    line.split(|b| *b == b' ' || *b == b'\t').filter(|f| !f.is_empty())
}
