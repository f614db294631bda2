//! Connections that opened and closed between two scans: the kernel tells sock_diag's destroy
//! listeners when it frees a TCP or UDP socket, and the agent says what it knew of its holders.

use super::{Direction, DirectionSource, Process, Socket};
use serde::{Deserialize, Serialize};

/// The traffic counters of a TCP socket's `tcp_info` as it was freed. The kernel counts
/// sequence space: the connecting side's SYN and each FIN add one byte, so a connection that
/// carried no data shows 2 acked on its client and 1 on its server; 0 means nothing was ever
/// acknowledged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpCounters {
    /// `tcpi_bytes_acked`: sent and acknowledged by the peer.
    pub bytes_acked: u64,
    /// `tcpi_bytes_received`.
    pub bytes_received: u64,
    /// `tcpi_segs_out`.
    pub segs_out: u32,
    /// `tcpi_segs_in`.
    pub segs_in: u32,
}

/// A connection no scan saw, reported when the kernel freed its socket.
#[derive(Clone, Debug)]
pub struct ShortLived {
    /// The socket as the kernel described it: `key.netns` is its namespace; `key.inode` and
    /// `holders` are known only when an exec check saw the socket held (0 and empty otherwise).
    pub socket: Socket,
    /// The holders' processes as that exec check read them, sorted by key.
    pub processes: Vec<Process>,
    /// Which side opened it, judged from the namespace's listeners and port range.
    pub direction: (Direction, DirectionSource),
    /// For TCP, its counters.
    pub tcp: Option<TcpCounters>,
    /// When the agent heard of its end, ms since the epoch.
    pub closed_at_ms: u64,
}
