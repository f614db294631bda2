//! Relations derived from one snapshot by `graph`: socket direction and stdio relay links.

use super::{ProcKey, SocketKey};
use serde::{Deserialize, Serialize};

/// Which side opened a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Accepted from a remote peer.
    Inbound,
    /// Initiated locally.
    Outbound,
    /// Waiting for peers (TCP LISTEN, unconnected bound UDP, listening unix).
    Listening,
    /// Cannot be told.
    Unknown,
}

/// What a direction verdict rests on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DirectionSource {
    /// The socket's own state (LISTEN, unconnected).
    State,
    /// A listener (or unconnected UDP socket) of the same namespace serves the local port.
    Listener,
    /// The local (or remote) port lies in the namespace's ephemeral range.
    PortRange,
    /// Nothing to judge by.
    None,
}

/// How a stdio fd reaches a network socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// The fd is the socket.
    Direct,
    /// Through an anonymous pipe.
    Pipe,
    /// Through a named pipe.
    Fifo,
    /// Through a pseudo-terminal.
    Pty,
    /// Through a connected unix socket (socketpair or named).
    Unix,
}

/// One way from a stdio object to a network socket.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Route {
    /// Processes in between, nearest first (empty when the fd is the socket).
    pub relays: Vec<ProcKey>,
    /// The network socket reached.
    pub socket: SocketKey,
}

/// Where one stdio object (a pipe, FIFO, pty or unix socket) leads, in one direction of flow.
/// Computed once per object and shared by every process holding it: a shell's children, or a
/// thousand workers sharing one stdout pipe, all point at the same reach.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StdioReach {
    /// Shortest route to each network socket found.
    pub routes: Vec<Route>,
    /// The walk hit a bound (depth, fan-out, visits, routes): what it did not reach is unknown,
    /// not absent.
    pub truncated: bool,
}

/// What a process's fd 0, 1 or 2 leads to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StdioEnd {
    /// The process.
    pub proc: ProcKey,
    /// 0, 1 or 2.
    pub fd: i32,
    /// The kind of the first hop.
    pub via: Via,
    /// For `Via::Direct`, the socket itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket: Option<SocketKey>,
    /// Otherwise the index of the shared reach.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reach: Option<usize>,
}

/// A process's fd 0, 1 or 2 leads to a network socket, possibly through relay processes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StdioLink {
    /// The process whose stdio this is.
    pub proc: ProcKey,
    /// 0, 1 or 2.
    pub fd: i32,
    /// The kind of the first hop.
    pub via: Via,
    /// Processes in between, nearest first (empty when direct).
    pub relays: Vec<ProcKey>,
    /// The network socket reached.
    pub socket: SocketKey,
}
