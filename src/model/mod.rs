//! Plain data shared by every other module: processes, fds, sockets, snapshots and the relations
//! derived from them. No I/O, no threads; everything serialises, because the JSON form of a
//! snapshot is also the rule-test fixture format.

mod alert;
mod baseline;
mod binary;
mod bounded;
mod change;
mod container;
mod context;
mod fd;
#[cfg(test)]
pub(crate) mod fixture;
mod interval;
pub mod mitre;
mod proc_mount;
mod process;
mod relation;
mod short_lived;
mod snapshot;
mod socket;
mod text;

pub use alert::{Alert, AlertAction, IncidentEndpoint, RuleHit, Severity, StdioPath};
pub use baseline::Baseline;
pub use binary::{BinaryKind, Identity, IdentityMatch};
pub use bounded::Bounded;
pub use change::Change;
pub use container::{
    CgroupClaim, Container, ContainerSources, MetadataSource, Pod, Qos, Runtime, Verification,
    claim_of_cgroup,
};
pub use context::{ExeHash, LoginOrigin, ProcessContext};
pub use fd::{AccessMode, Fd, FdTarget, PtyId};
pub use interval::{Interval, MIN_INTERVAL, parse_interval};
pub use proc_mount::{Hiding, HidingAlert, ProcMount};
pub use process::{Exe, ProcKey, Process};
pub use relation::{Direction, DirectionSource, Route, StdioEnd, StdioLink, StdioReach, Via};
pub use short_lived::{ShortLived, TcpCounters};
pub use snapshot::{Coverage, NetnsInfo, Privileges, Snapshot, TableRead};
pub use socket::{
    Endpoint, Family, Holder, Protocol, Socket, SocketKey, SocketState, TableSource, UnixInfo,
};
pub use text::{RawText, escape_visible, write_json_escaped};
